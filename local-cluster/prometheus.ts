/**
 * A real Prometheus for `podcert demo --keep-running`, where one is installed (Debian's
 * `prometheus` package): it scrapes every function process's GET /metrics and evaluates the alerts
 * of knative/monitoring/prometheusrule.yaml, so the README's queries and the dashboard's can be
 * tried against the local run. The configuration is built here as plain data (unit-tested); the
 * process is started with it and stopped with the rest of the run.
 *
 * Labels: each function's series carry `function` themselves (shared/runtime/metrics.ts), which is
 * what the rules and the dashboard select on; the scrape adds only `job` (the function's Service,
 * podcert-<name>) and `instance`, so no target label clashes with a scraped one.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { serviceName } from "../shared/steps.js";
import { freePort } from "./processes.js";

/** Seconds between scrapes and rule evaluations: short, so a local run shows up within seconds. */
export const SCRAPE_INTERVAL_SECONDS = 5;

export interface ScrapeTarget {
  /** The function (a step of shared/steps.ts). */
  name: string;
  /** Where it serves, e.g. http://127.0.0.1:41234 (its /metrics is scraped). */
  url: string;
}

/** The scrape job of a function: its Knative Service's name, as a Service-based scrape would label it. */
export const jobName = (fn: string): string => serviceName(fn);

/** prometheus.yml: one job per function, scraping its URL's /metrics; `rulesFile` as rule_files. */
export function prometheusConfig(o: { targets: readonly ScrapeTarget[]; rulesFile?: string; intervalSeconds?: number }): Record<string, unknown> {
  const interval = `${o.intervalSeconds ?? SCRAPE_INTERVAL_SECONDS}s`;
  return {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    ...(o.rulesFile === undefined ? {} : { rule_files: [o.rulesFile] }),
    scrape_configs: o.targets.map((t) => {
      const u = new URL(t.url);
      return {
        job_name: jobName(t.name),
        scheme: u.protocol.replace(/:$/, ""),
        metrics_path: "/metrics",
        static_configs: [{ targets: [u.host] }],
      };
    }),
  };
}

/**
 * The rule groups of a PrometheusRule (Prometheus Operator) as a plain Prometheus rules file:
 * `groups:` is its spec.groups, unchanged.
 */
export function rulesFromPrometheusRule(manifestYaml: string): { groups: unknown[] } {
  const doc = parse(manifestYaml) as { kind?: string; spec?: { groups?: unknown } } | null;
  if (doc?.kind !== "PrometheusRule" || !Array.isArray(doc.spec?.groups)) throw new Error("not a PrometheusRule with spec.groups");
  return { groups: doc.spec.groups };
}

/** Whether a `prometheus` binary is on PATH. */
export function prometheusInstalled(binary = "prometheus"): boolean {
  const r = spawnSync(binary, ["--version"], { stdio: "ignore" });
  return r.error === undefined && r.status === 0;
}

export interface PrometheusFiles {
  configPath: string;
  /** Undefined when there was no PrometheusRule to read (the scrape still works). */
  rulesPath?: string;
}

/** Writes prometheus.yml (and prometheus-rules.yaml, from `prometheusRulePath` when given) into `dir`. */
export function writePrometheusFiles(dir: string, targets: readonly ScrapeTarget[], prometheusRulePath?: string): PrometheusFiles {
  mkdirSync(dir, { recursive: true });
  let rulesPath: string | undefined;
  if (prometheusRulePath !== undefined) {
    rulesPath = join(dir, "prometheus-rules.yaml");
    writeFileSync(rulesPath, stringify(rulesFromPrometheusRule(readFileSync(prometheusRulePath, "utf8"))));
  }
  const configPath = join(dir, "prometheus.yml");
  // Absolute paths are not needed: Prometheus resolves rule_files against the config's folder.
  writeFileSync(configPath, stringify(prometheusConfig({ targets, ...(rulesPath === undefined ? {} : { rulesFile: "prometheus-rules.yaml" }) })));
  return { configPath, ...(rulesPath === undefined ? {} : { rulesPath }) };
}

export interface RunningPrometheus {
  url: string;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves once it exited. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Starts `prometheus` on 127.0.0.1 (a free port unless given) and waits until /-/ready answers.
 * Its output goes to `logFile` when given. Rejects, with the process stopped, if it exits or is
 * not ready within `readyTimeoutMs`.
 */
export async function startPrometheus(o: { configPath: string; dataDir: string; port?: number; logFile?: string; binary?: string; readyTimeoutMs?: number }): Promise<RunningPrometheus> {
  const port = o.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const log = o.logFile === undefined ? "ignore" : openSync(o.logFile, "a");
  const child = spawn(o.binary ?? "prometheus", [`--config.file=${o.configPath}`, `--storage.tsdb.path=${o.dataDir}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: ["ignore", log, log],
  });
  if (typeof log === "number") closeSync(log);
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = signal ?? `code ${code}`;
      resolve();
    });
    child.once("error", (e) => {
      exited = e.message;
      resolve();
    });
  });
  const stop = async (timeoutMs = 5_000) => {
    if (exited !== undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    await exit;
    clearTimeout(timer);
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exited !== undefined) throw new Error(`prometheus exited (${exited})${o.logFile ? `; see ${o.logFile}` : ""}`);
    try {
      const r = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready at ${url} within ${o.readyTimeoutMs ?? 30_000} ms${o.logFile ? `; see ${o.logFile}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, child, stop };
}

/**
 * The demo's Prometheus (--keep-running): files in `outDir` (prometheus.yml, prometheus-rules.yaml,
 * prometheus-data/, logs/prometheus.log), the rules from `<knativeDir>/monitoring/prometheusrule.yaml`.
 * Where prometheus is not installed, or does not start, says so in one line and returns undefined:
 * the run goes on without it.
 */
export async function startDemoPrometheus(o: { outDir: string; knativeDir: string; targets: readonly ScrapeTarget[]; say: (m: string) => void; binary?: string }): Promise<RunningPrometheus | undefined> {
  const binary = o.binary ?? "prometheus";
  if (!prometheusInstalled(binary)) {
    o.say("      prometheus is not installed (Debian: apt-get install prometheus): no Prometheus for this run");
    return undefined;
  }
  try {
    const rule = join(o.knativeDir, "monitoring", "prometheusrule.yaml");
    const files = writePrometheusFiles(o.outDir, o.targets, existsSync(rule) ? rule : undefined);
    const logDir = join(o.outDir, "logs");
    mkdirSync(logDir, { recursive: true });
    const p = await startPrometheus({ binary, configPath: files.configPath, dataDir: join(o.outDir, "prometheus-data"), logFile: join(logDir, "prometheus.log") });
    o.say(`      Prometheus at ${p.url} scraping ${o.targets.length} functions every ${SCRAPE_INTERVAL_SECONDS} s (${files.configPath}${files.rulesPath ? `, alerts ${files.rulesPath}` : ""})`);
    return p;
  } catch (e) {
    o.say(`      Prometheus not started: ${(e as Error).message}`);
    return undefined;
  }
}
