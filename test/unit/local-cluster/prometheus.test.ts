// The demo's Prometheus configuration (local-cluster/prometheus.ts): one scrape job per function
// process of the local run, labelled as the queries of knative/monitoring/ expect, and the alerts
// of the PrometheusRule as a plain rules file.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { jobName, prometheusConfig, rulesFromPrometheusRule, SCRAPE_INTERVAL_SECONDS, startDemoPrometheus, writePrometheusFiles } from "../../../local-cluster/prometheus.js";
import { serviceName, STEPS } from "../../../shared/steps.js";
import { tempDir } from "../../helpers/temp.js";

const RULE_PATH = "knative/monitoring/prometheusrule.yaml";
const ruleManifest = readFileSync(RULE_PATH, "utf8");
const alerts = [...ruleManifest.matchAll(/^\s*- alert: (\S+)$/gm)].map((m) => m[1]!);
// As the local run starts them (local-cluster/flow.ts): one process per step of the registry.
const processes = STEPS.map((name, i) => ({ name, url: `http://127.0.0.1:${41000 + i}` }));

type ScrapeConfig = { job_name: string; scheme: string; metrics_path: string; static_configs: { targets: string[]; labels?: Record<string, string> }[] };

describe("the demo's Prometheus configuration", () => {
  const config = prometheusConfig({ targets: processes, rulesFile: "rules.yaml" }) as { global: Record<string, string>; rule_files: string[]; scrape_configs: ScrapeConfig[] };

  it("scrapes GET /metrics of every function process of the run, one job each", () => {
    const scraped = config.scrape_configs.map((s) => ({ job: s.job_name, url: `${s.scheme}://${s.static_configs.flatMap((c) => c.targets).join(",")}${s.metrics_path}` }));
    expect(scraped).toEqual(processes.map((p) => ({ job: serviceName(p.name), url: `${p.url}/metrics` })));
    expect(config.scrape_configs.map((s) => s.job_name)).toEqual(STEPS.map(jobName));
    expect(new Set(config.scrape_configs.map((s) => s.job_name)).size).toBe(STEPS.length);
  });

  it("adds no `function` target label (the series carry it, as the rules and the dashboard expect)", () => {
    const dashboard = readFileSync("knative/monitoring/dashboard.json", "utf8");
    expect(ruleManifest).toMatch(/\bfunction="deny"|by \(function/);
    expect(dashboard).toMatch(/by \(function/);
    for (const s of config.scrape_configs) for (const c of s.static_configs) expect(c.labels?.function).toBeUndefined();
  });

  it("scrapes and evaluates every few seconds, with the rules file", () => {
    expect(config.global.scrape_interval).toBe(`${SCRAPE_INTERVAL_SECONDS}s`);
    expect(config.global.evaluation_interval).toBe(`${SCRAPE_INTERVAL_SECONDS}s`);
    expect(SCRAPE_INTERVAL_SECONDS).toBeLessThanOrEqual(15);
    expect(config.rule_files).toEqual(["rules.yaml"]);
    expect(prometheusConfig({ targets: processes })).not.toHaveProperty("rule_files");
  });

  it("turns the PrometheusRule into a rules file holding every alert", () => {
    expect(alerts.length).toBeGreaterThanOrEqual(6);
    const rules = rulesFromPrometheusRule(ruleManifest) as { groups: { name: string; rules: { alert?: string; expr: string }[] }[] };
    expect(rules.groups.flatMap((g) => g.rules.map((r) => r.alert))).toEqual(alerts);
    expect(() => rulesFromPrometheusRule("kind: ConfigMap\n")).toThrow(/PrometheusRule/);
  });

  it("writes prometheus.yml and the rules file, which parse with the yaml package", () => {
    const dir = tempDir("podcert-prom-");
    const files = writePrometheusFiles(dir, processes, RULE_PATH);
    expect(files).toEqual({ configPath: join(dir, "prometheus.yml"), rulesPath: join(dir, "prometheus-rules.yaml") });
    const written = parse(readFileSync(files.configPath, "utf8")) as { rule_files: string[]; scrape_configs: ScrapeConfig[] };
    expect(written.rule_files).toEqual(["prometheus-rules.yaml"]);
    expect(written.scrape_configs.map((s) => s.static_configs[0]!.targets[0])).toEqual(processes.map((p) => new URL(p.url).host));
    const docs = parseAllDocuments(readFileSync(files.rulesPath!, "utf8"));
    expect(docs).toHaveLength(1);
    expect(docs[0]!.errors).toEqual([]);
    const rules = docs[0]!.toJS() as { groups: { rules: { alert?: string; expr: string; for?: string }[] }[] };
    expect(rules.groups.flatMap((g) => g.rules.map((r) => r.alert))).toEqual(alerts);
    for (const r of rules.groups.flatMap((g) => g.rules)) expect(r.expr.trim().length).toBeGreaterThan(0);
    expect(writePrometheusFiles(tempDir("podcert-prom-"), processes)).not.toHaveProperty("rulesPath");
  });
});

describe("the demo without prometheus", () => {
  it("says so in one line and goes on", async () => {
    const lines: string[] = [];
    const p = await startDemoPrometheus({ outDir: tempDir("podcert-prom-"), knativeDir: "knative", targets: processes, say: (m) => lines.push(m), binary: "podcert-no-such-prometheus" });
    expect(p).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/prometheus is not installed/);
  });
});
