// The function bundles (dist/<fn>.mjs) over HTTP against clients that misbehave, and what their
// process does with errors nobody handled (issue 8, findings 1, 7 and 8): uploads that stall or go
// away, too many connections, a SIGTERM with a stalled upload, the address they listen on, the
// memory that one pod's containerConcurrency of maximum-size events costs, and a bug outside any
// request.
import { fixture } from "../helpers/kubernetes.js";
import { serviceName, STEPS } from "../../shared/steps.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { common, sideEffectFree } from "../../esbuild.config.mjs";
import { MAX_EVENT_BYTES } from "../../shared/events/codec.js";
import { MAX_JSON_VALUES } from "../../shared/events/json-shape.js";
import { parseContainerConcurrency } from "../../local-cluster/broker.js";
import { DEFAULT_MAX_CONNECTIONS } from "../../shared/runtime/http.js";
import { startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { listeningAddress, openRaw, postHead } from "../helpers/raw-http.js";
import { memoryLimitMiB, procMemoryMiB } from "../helpers/matrix.js";

let env: BundleEnv;

beforeAll(async () => {
  env = await startBundleEnv();
});

afterAll(async () => {
  await env?.stop();
});

/** How long expect.poll waits for something a bundle does (a bound, not a measurement). */
const WAIT = { timeout: 15_000, interval: 50 };

const logLines = (b: ServedBundle) =>
  b
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { level: string; msg: string; [k: string]: unknown });

describe("uploads and connections, against a bundle", () => {
  it("answers a stalled upload 408 within the body timeout and logs it as such, not as a handler failure", async () => {
    const validate = await env.serve("validate");
    const c = await openRaw(validate.url);
    await c.write(postHead({ host: "x", contentLength: 2000 }) + '{"apiVersion":');
    const res = await c.response();
    expect(res.status).toBe(408);
    await c.closed;
    const lines = logLines(validate);
    expect(lines.some((l) => l.msg === "upload timed out" && l.level === "warn")).toBe(true);
    expect(lines.some((l) => l.msg === "handler failed")).toBe(false);
  });

  it("logs an upload the client abandons as aborted, and counts it 499, not 500", async () => {
    const validate = await env.serve("validate");
    const c = await openRaw(validate.url);
    await c.write(postHead({ host: "x", contentLength: 2000 }) + '{"apiVersion":');
    c.close();
    await expect.poll(() => logLines(validate).some((l) => l.msg === "upload aborted by the client"), WAIT).toBe(true);
    expect(logLines(validate).some((l) => l.level === "error")).toBe(false);
    const metrics = await (await fetch(`${validate.url}/metrics`)).text();
    expect(metrics).toMatch(/podcert_events_received_total\{type="invalid",status="499",function="validate"\} 1/);
    expect(metrics).not.toMatch(/podcert_events_received_total\{[^}]*status="500"/);
  });

  it("caps its connections (PODCERT_MAX_CONNECTIONS) and logs the ones it refuses", async () => {
    const validate = await env.serve("validate", { PODCERT_MAX_CONNECTIONS: "4" });
    const held = await Promise.all([1, 2, 3, 4].map(() => openRaw(validate.url)));
    for (const c of held) {
      await c.write("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
      expect((await c.response()).status).toBe(200);
    }
    const fifth = await openRaw(validate.url);
    await fifth.write("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").catch(() => {});
    expect((await fifth.response()).status).toBe(0);
    await expect.poll(() => logLines(validate).some((l) => l.msg === "connections refused at the cap" && l.maxConnections === 4), WAIT).toBe(true);
    for (const c of held) c.close();
  });

  it("by default accepts the connections knative/services.yaml sends it, with room to spare", () => {
    // queue-proxy admits containerConcurrency requests per pod and pools as many connections
    // The functions' Services, and the dead-letter sink's in its own file.
    const concurrency = new Map([...parseContainerConcurrency(readFileSync("knative/services.yaml", "utf8")), ...parseContainerConcurrency(readFileSync("knative/dead-letter.yaml", "utf8"))]);
    expect([...concurrency.keys()].sort()).toEqual(STEPS.map(serviceName).sort());
    for (const [service, cc] of concurrency) expect(DEFAULT_MAX_CONNECTIONS, service).toBeGreaterThan(cc);
  });

  it("exits on SIGTERM while an upload is stalled, without waiting for it", async () => {
    const validate = await env.serve("validate");
    const c = await openRaw(validate.url);
    await c.write(postHead({ host: "x", contentLength: 2000 }) + '{"apiVersion":');
    validate.child.kill("SIGTERM");
    expect(await validate.exited).toBe(0);
    await c.closed;
    // the upload it gave up on is not a handler failure
    expect(logLines(validate).some((l) => l.msg === "handler failed")).toBe(false);
  });
});

describe("the address a bundle listens on", () => {
  it("is every interface by default (a container's), and HOST when it is set", async () => {
    const all = await env.serve("deny");
    const loopback = await env.serve("deny", { HOST: "127.0.0.1" });
    const where = await listeningAddress(Number(new URL(all.url).port));
    if (where === undefined) return; // no /proc/net/tcp on this system
    expect(where).toBe("0.0.0.0");
    expect(await listeningAddress(Number(new URL(loopback.url).port))).toBe("127.0.0.1");
  });
});

/**
 * A structured-mode ApiServerSource event for a real PCR of the cluster, padded to exactly
 * MAX_EVENT_BYTES (whatever it is): by one long annotation, or by as many small JSON values as
 * the structure budget lets through and a long annotation for the rest.
 */
function maxSizeEvent(shape: "long string" | "many values"): string {
  const event = JSON.parse(readFileSync(fixture("events/issued/api-ecdsap256.json"), "utf8")) as { data: { spec: { unverifiedUserAnnotations: Record<string, unknown> } } };
  const annotations = event.data.spec.unverifiedUserAnnotations;
  // each {} is two values with its comma; keep clear of the budget for the rest of the event
  if (shape === "many values") annotations["example.com/many"] = new Array(Math.floor(MAX_JSON_VALUES / 2) - 200).fill({});
  annotations["example.com/pad"] = "";
  const room = MAX_EVENT_BYTES - Buffer.byteLength(JSON.stringify(event));
  expect(room).toBeGreaterThan(0);
  annotations["example.com/pad"] = "x".repeat(room);
  const text = JSON.stringify(event);
  expect(Buffer.byteLength(text)).toBe(MAX_EVENT_BYTES);
  return text;
}

describe("memory", () => {
  // The share of the manifest's memory limit a pod may reach at full concurrency. Identical runs
  // here differ by up to 45 MiB (GC timing, load from other processes): measured 150–172 MiB on
  // an idle machine and 205 MiB once while the whole suite ran (2026-11-30), against 256 MiB.
  // Most of it is outside V8's old space (bodies, strings, the young generation): capping the
  // heap (--max-old-space-size=128) did not lower it. 0.9 keeps 25 MiB below the limit and still
  // fails on a regression of ~60 MiB over the idle figure.
  const MAX_SHARE = 0.9;

  it.each(["long string", "many values"] as const)(
    "containerConcurrency maximum-size events at once (%s) stay below the manifest's memory limit with headroom",
    async (shape) => {
      const concurrency = parseContainerConcurrency(readFileSync("knative/services.yaml", "utf8")).get("podcert-validate");
      expect(concurrency).toBeGreaterThan(0);
      const limitMiB = memoryLimitMiB("podcert-validate");
      const validate = await env.serve("validate");
      const pid = validate.child.pid!;
      if (procMemoryMiB(pid, "VmHWM") === undefined) return; // no /proc on this system
      const body = maxSizeEvent(shape);
      const statuses = await Promise.all(
        Array.from({ length: concurrency! }, () =>
          fetch(validate.url, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body }).then(async (r) => {
            await r.arrayBuffer();
            return r.status;
          }),
        ),
      );
      // handled, not refused: each event went through parsing and the handler
      expect(new Set(statuses)).toEqual(new Set([200]));
      const peak = procMemoryMiB(pid, "VmHWM")!;
      expect(peak, `peak RSS ${peak.toFixed(1)} MiB at ${concurrency} × ${MAX_EVENT_BYTES} bytes, limit ${limitMiB} MiB`).toBeLessThan(limitMiB * MAX_SHARE);
    },
    120_000,
  );
});

describe("errors nobody handled, in a function process", () => {
  let bundle: string;

  beforeAll(async () => {
    // A function built like the real ones (runtime/main.ts), whose handler leaves a bug behind
    // outside the request: an exception thrown from a timer, or a rejection nobody awaits.
    bundle = join(env.dir, "buggy.mjs");
    await build({
      ...common,
      plugins: [sideEffectFree],
      metafile: false,
      sourcemap: false,
      stdin: {
        contents: `import { runFunction } from "./shared/runtime/main.ts";
await runFunction({
  step: "deny",
  consumes: ["test.throw-later", "test.reject-later"],
  emits: [],
  async handle(event) {
    if (event.type === "test.throw-later") setImmediate(() => { throw new Error("thrown outside any request"); });
    else void Promise.reject(new Error("rejected with nobody waiting"));
    return undefined;
  },
});
`,
        resolveDir: ".",
        sourcefile: "buggy-entry.ts",
        loader: "ts",
      },
      outfile: bundle,
    });
  });

  const post = (url: string, type: string) =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/test", "ce-type": type }, body: "{}" });

  it("an unhandled rejection is logged and the function keeps serving", async () => {
    const fn = await env.serve("deny", {}, bundle);
    expect((await post(fn.url, "test.reject-later")).status).toBe(204);
    await expect.poll(() => logLines(fn).some((l) => l.level === "error" && l.msg === "unhandled promise rejection (a bug); still serving"), WAIT).toBe(true);
    expect((await post(fn.url, "test.reject-later")).status).toBe(204);
    expect(fn.child.exitCode).toBeNull();
  });

  it("an uncaught exception is logged, the function drains and exits 70 (Knative restarts it)", async () => {
    const fn = await env.serve("deny", {}, bundle);
    expect((await post(fn.url, "test.throw-later")).status).toBe(204);
    expect(await fn.exited).toBe(70);
    const lines = logLines(fn);
    const crash = lines.find((l) => l.msg === "uncaught exception (a bug); stopping");
    expect(crash?.level).toBe("error");
    expect(JSON.stringify(crash?.error)).toContain("thrown outside any request");
    expect(lines.some((l) => l.msg === "draining" && l.reason === "uncaughtException")).toBe(true);
  });
});
