// knative/monitoring/ (issue 12): the PrometheusRule's alerts, unit-tested with the real
// `promtool test rules` (test/knative/prometheusrule.promtool.yaml), and the Grafana dashboard.
// Every metric the rules and the dashboard query is one podcert exports (read from a registry fed
// one observation of each kind, so each series and its labels show), or the one named below that
// podcert cannot know.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import type { CaPoolFileState } from "../../shared/ca/pool-source.js";
import type { LoadedCa } from "../../shared/ca/pool.js";
import { createMetrics } from "../../shared/runtime/metrics.js";
import { tempDir } from "../helpers/temp.js";
import { hasKubectl } from "../helpers/tools.js";

const DIR = "knative/monitoring";

/** Queried but not podcert's: who exports them, and the one alert that may use each. */
const EXTERNAL: Record<string, { from: string; alert: string }> = {
  kube_pod_container_status_ready: { from: "kube-state-metrics", alert: "PodcertFunctionNotReady" },
};

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const ruleDoc = YAML.parse(readFileSync(join(DIR, "prometheusrule.yaml"), "utf8")) as { kind: string; spec: { groups: { name: string; rules: Rule[] }[] } };
const rules = ruleDoc.spec.groups.flatMap((g) => g.rules);
interface Panel {
  title: string;
  type: string;
  datasource: { uid: string };
  targets: { expr: string; refId: string }[];
}
const dashboard = JSON.parse(readFileSync(join(DIR, "dashboard.json"), "utf8")) as { uid: string; panels: Panel[]; templating: { list: { name: string; type: string }[] } };

/** Series name → its label names, from a registry given one observation of every kind. */
async function exported(): Promise<Map<string, Set<string>>> {
  const m = createMetrics("sign");
  m.eventHandled({ fn: "sign", type: "t", status: 200, seconds: 0.01 });
  m.decision({ fn: "sign", signer: "s", outcome: "denied", reason: "r" });
  m.issued({ signer: "s", signSeconds: 0.001, secondsSinceCreation: 1 });
  m.apiCall({ operation: "get pod", seconds: 0.01, outcome: "error" });
  m.trustPublished({ signer: "s", at: new Date() });
  m.signerLimits([{ signer: "s", maxLifetimeSeconds: 86400 }]);
  m.pendingListed({ at: new Date(), counts: [{ signer: "s", age: "0-1m", count: 1 }] });
  m.deadLettered({ type: "other" });
  const ca = { serialHex: "01", state: "active", notAfter: new Date(Date.now() + 86_400_000) } as LoadedCa;
  const state: CaPoolFileState = { pool: { signers: new Map([["s", [ca]]]) }, loadedAt: new Date(), upToDate: true, refusals: 0 };
  m.watchCaPool({ state: () => state });
  const series = new Map<string, Set<string>>();
  for (const line of (await m.render()).body.split("\n")) {
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (sample === null) continue;
    const labels = [...(sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((l) => l[1]!);
    series.set(sample[1]!, new Set([...(series.get(sample[1]!) ?? []), ...labels]));
  }
  return series;
}

/** The metric names a PromQL expression selects, each with the label names its matchers use. */
function selected(expr: string): { name: string; labels: string[] }[] {
  const out: { name: string; labels: string[] }[] = [];
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    out.push({ name: m[1]!, labels: [...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!) });
  }
  // Bare names (no braces) podcert could export.
  for (const m of expr.matchAll(/\b(podcert_[a-z0-9_]+)\b(?!\s*\{)/g)) out.push({ name: m[1]!, labels: [] });
  return out;
}

const queries = [
  ...rules.map((r) => ({ where: `alert ${r.alert}`, alert: r.alert, expr: r.expr })),
  ...dashboard.panels.flatMap((p) => p.targets.map((t) => ({ where: `panel "${p.title}" ${t.refId}`, alert: undefined, expr: t.expr }))),
];

describe("knative/monitoring/", () => {
  it("queries only metrics podcert exports, with labels they carry (or the external one, where documented)", async () => {
    const series = await exported();
    const problems: string[] = [];
    for (const q of queries) {
      const names = selected(q.expr);
      if (names.length === 0) problems.push(`${q.where}: names no metric`);
      for (const { name, labels } of names) {
        const external = EXTERNAL[name];
        if (external !== undefined) {
          if (external.alert !== q.alert) problems.push(`${q.where}: ${name} (${external.from}) is only for ${external.alert}`);
          continue;
        }
        const known = series.get(name);
        if (known === undefined) {
          problems.push(`${q.where}: ${name} is not a metric podcert exports`);
          continue;
        }
        for (const l of labels) if (!known.has(l)) problems.push(`${q.where}: ${name} has no label ${l}`);
      }
    }
    expect(problems).toEqual([]);
    // The check sees what it should: the CA gauges and the new series are exported.
    for (const name of ["podcert_ca_seconds_until_expiry", "podcert_build_info", "podcert_pending_requests", "podcert_signer_max_lifetime_seconds", "podcert_time_to_issue_seconds_bucket", "podcert_dead_letters_total"]) {
      expect(series.has(name), name).toBe(true);
    }
    expect(selected('sum(rate(podcert_not_a_metric{x="1"}[5m])) + other_metric{a="b"}').map((s) => s.name)).toEqual(["podcert_not_a_metric", "other_metric"]);
  });

  it("has the alerts issue 12 asks for, each with a severity, summary and description", () => {
    expect(ruleDoc.kind).toBe("PrometheusRule");
    expect(rules.map((r) => r.alert).sort()).toEqual(
      ["PodcertCAExpiringSoon", "PodcertDenialsRising", "PodcertEventsDeadLettered", "PodcertFunctionNotReady", "PodcertKubernetesAPIErrors", "PodcertRequestsPendingTooLong"].sort(),
    );
    for (const r of rules) {
      expect(r.labels?.severity, r.alert).toMatch(/^(critical|warning|info)$/);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
    }
  });

  it("has a dashboard with the panels issue 12 asks for, on a chosen Prometheus data source", () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const want of [/issued/i, /time to issue/i, /denials/i, /pending/i, /CA .*lifetime/i, /API errors/i]) expect(titles.some((t) => want.test(t)), String(want)).toBe(true);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource" }));
    for (const p of dashboard.panels) expect(p.datasource.uid, p.title).toBe("${datasource}");
    const time = dashboard.panels.find((p) => /time to issue/i.test(p.title))!;
    expect(time.targets.map((t) => /histogram_quantile\((0\.\d+),/.exec(t.expr)?.[1])).toEqual(["0.5", "0.99"]);
  });

  it("lists its files in the kustomize Component", () => {
    const k = YAML.parse(readFileSync(join(DIR, "kustomization.yaml"), "utf8")) as { kind: string; resources: string[]; configMapGenerator: { files: string[] }[] };
    expect(k.kind).toBe("Component");
    expect(k.resources).toEqual(["prometheusrule.yaml"]);
    expect(k.configMapGenerator[0]!.files).toEqual(["podcert.json=dashboard.json"]);
  });

  const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8" });
  const noPromtool = promtool.error !== undefined || promtool.status !== 0;
  it.skipIf(noPromtool)("passes `promtool test rules` (skipped where promtool, from Debian's prometheus package, is not installed)", () => {
    const dir = tempDir("podcert-promtool-");
    writeFileSync(join(dir, "rules.yaml"), YAML.stringify(ruleDoc.spec));
    copyFileSync("test/knative/prometheusrule.promtool.yaml", join(dir, "tests.yaml"));
    const check = spawnSync("promtool", ["check", "rules", join(dir, "rules.yaml")], { encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = spawnSync("promtool", ["test", "rules", join(dir, "tests.yaml")], { encoding: "utf8" });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/SUCCESS/);
  });

  it.skipIf(!hasKubectl)("renders with the base as the README says, the dashboard in a ConfigMap (skipped without kubectl)", () => {
    const dir = tempDir("podcert-monitoring-overlay-");
    cpSync("knative", join(dir, "knative"), { recursive: true });
    mkdirSync(join(dir, "deploy"));
    writeFileSync(join(dir, "deploy", "kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../knative\ncomponents:\n  - ../knative/monitoring\n");
    const r = spawnSync("kubectl", ["kustomize", join(dir, "deploy")], { encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const docs = YAML.parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; data?: Record<string, string> });
    const rule = docs.find((d) => d.kind === "PrometheusRule");
    expect(rule?.metadata).toMatchObject({ name: "podcert", namespace: "podcert" });
    const cm = docs.find((d) => d.kind === "ConfigMap" && d.metadata.name === "podcert-grafana-dashboard");
    expect(cm?.metadata.labels?.grafana_dashboard).toBe("1");
    expect(JSON.parse(cm!.data!["podcert.json"]!)).toEqual(dashboard);
  });
});

