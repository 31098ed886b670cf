// The demo's Prometheus (local-cluster/prometheus.ts) for real, where Debian's `prometheus` is
// installed: started with the configuration the demo writes, against tiny HTTP servers serving a
// metric as the functions do, it scrapes them (`up` is 1, the series keep their `function` label
// and get their function's job) and loads every alert of knative/monitoring/. Skipped otherwise.
import { createServer, type Server } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { jobName, prometheusInstalled, startPrometheus, writePrometheusFiles, type RunningPrometheus } from "../../local-cluster/prometheus.js";
import { tempDir } from "../helpers/temp.js";

const RULE_PATH = "knative/monitoring/prometheusrule.yaml";
const installed = prometheusInstalled();
const servers: Server[] = [];
let prometheus: RunningPrometheus | undefined;

afterAll(async () => {
  await prometheus?.stop();
  for (const s of servers) await new Promise((r) => s.close(r));
});

/** A stand-in function: GET /metrics answers one series labelled with its name. */
async function fakeFunction(name: string): Promise<{ name: string; url: string }> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    res.end(`# HELP podcert_build_info test\n# TYPE podcert_build_info gauge\npodcert_build_info{function="${name}",version="0.0.0-test"} 1\n`);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const a = server.address();
  return { name, url: `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}` };
}

type Sample = { metric: Record<string, string>; value: [number, string] };

async function query(url: string, q: string): Promise<Sample[]> {
  const r = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await r.json()) as { status: string; data: { result: Sample[] } };
  expect(body.status).toBe("success");
  return body.data.result;
}

describe.skipIf(!installed)("the demo's Prometheus (skipped where prometheus, Debian's package, is not installed)", () => {
  it("scrapes every target (`up` 1, job per function, `function` kept) and loads every alert", async () => {
    const targets = [await fakeFunction("validate"), await fakeFunction("sign")];
    const dir = tempDir("podcert-prometheus-");
    const files = writePrometheusFiles(dir, targets, RULE_PATH);
    prometheus = await startPrometheus({ configPath: files.configPath, dataDir: join(dir, "prometheus-data"), logFile: join(dir, "prometheus.log") });

    const deadline = Date.now() + 45_000;
    let up: Sample[] = [];
    while (Date.now() < deadline) {
      up = await query(prometheus.url, "up");
      if (up.length === targets.length && up.every((s) => s.value[1] === "1")) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(up.map((s) => [s.metric.job, s.value[1]]).sort(), readFileSync(join(dir, "prometheus.log"), "utf8")).toEqual(targets.map((t) => [jobName(t.name), "1"]).sort());

    const info = await query(prometheus.url, "count by (function, job) (podcert_build_info)");
    expect(info.map((s) => [s.metric.function, s.metric.job]).sort()).toEqual(targets.map((t) => [t.name, jobName(t.name)]).sort());

    const rules = (await (await fetch(`${prometheus.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; type: string; health: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules).filter((r) => r.type === "alerting");
    const alerts = [...readFileSync(RULE_PATH, "utf8").matchAll(/^\s*- alert: (\S+)$/gm)].map((m) => m[1]!);
    expect(loaded.map((r) => r.name)).toEqual(alerts);
    expect(loaded.every((r) => r.health !== "err")).toBe(true);

    await prometheus.stop();
    expect(prometheus.child.exitCode !== null || prometheus.child.signalCode !== null).toBe(true);
  }, 60_000);
});

// Registered only where it applies, so a run with prometheus counts nothing as skipped.
if (!installed) {
  describe("without prometheus", () => {
    it.skip("the demo's Prometheus is not tested: prometheus (Debian's package) is not installed", () => {});
  });
}
