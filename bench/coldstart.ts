/**
 * Part 4 of the benchmark: cold start. For each function bundle, the time from spawning
 * `node dist/<fn>.mjs` to the first event answered (a 2xx to a POST of a valid event, polled until
 * the process answers), next to bundles built in the same run that show what the runtime and each
 * dependency cost: a bare node:http server, @kubernetes/client-node alone, and each other
 * dependency alone.
 *
 * Everything a function needs is real and local: an embedded API server holding the fixture
 * cluster, step keys and a CA pool in temporary folders, and events made in-process by running the
 * previous steps' handlers with the same step keys the processes load.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request, type IncomingHttpHeaders } from "node:http";
import { connect, createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";
import type { BuildOptions, BuildResult } from "esbuild";
import { common } from "../esbuild.config.mjs";
import { parseClusterFile } from "../local-cluster/apiserver/cluster-file.js";
import { startApiServer, type EmbeddedApiServer } from "../local-cluster/apiserver/server.js";
import { parseCaPool, serializeCaPool } from "../shared/ca/pool.js";
import { createCaPool } from "../cli/ca-create.js";
import { clusterApiFor, stepContexts } from "../cli/cluster.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { eventFromJson, eventToBinaryHttp } from "../shared/events/codec.js";
import { EDGE_KEYS_FILE, generateStepSecrets, loadStepKeys } from "../shared/events/step-keys.js";
import { type PodcertEvent } from "../shared/events/types.js";
import { EVENT_TYPES, KEYED_STEPS, stepEntry, STEPS, type KeyedStep, type StepName } from "../shared/steps.js";
import { dispatch } from "../shared/runtime/http.js";
import { loadSignerConfig } from "../shared/runtime/load.js";
import { silentLogger } from "../shared/runtime/log.js";
import { target, type BenchPart, type TargetCheck } from "./report.js";

export interface ColdStartOptions {
  /** Starts per bundle (at least 5); default 7. */
  runs?: number;
  /** Repository root (where dist/, node_modules/ and test/fixtures/ are); default the working directory. */
  root?: string;
  /** Give up on one start after this long; default 15 s. */
  timeoutMs?: number;
  /** Where the function bundles are; default <root>/dist (built first when missing). */
  distDir?: string;
}

/** The four function bundles, in pipeline order. */
// The functions on a request's path: those woken only by PingSource ticks (the trust publisher,
// the resync sender) are off that path.
const FUNCTION_BUNDLES: readonly StepName[] = STEPS.filter((s) => !stepEntry(s).consumes.every((t) => t === EVENT_TYPES.ping));

/**
 * The comparison bundles are built with the functions' options (esbuild.config.mjs) but without
 * its plugins, which treat client-node and @peculiar/x509 as free of side effects and load Node.js
 * built-ins with require: each comparison shows what a dependency costs as an application usually
 * imports it.
 */
const COMMON: BuildOptions = { ...common, metafile: true };

/** A server that answers every POST with 200 once the request body has arrived. */
const LISTEN = `
import { createServer } from "node:http";
createServer((req, res) => {
  req.resume();
  req.on("end", () => { res.writeHead(200, { "content-type": "text/plain" }); res.end("ok\\n"); });
}).listen(Number(process.env.PORT ?? 8080), "0.0.0.0");
`;

interface Comparison {
  name: string;
  /** What the bundle imports and does before it listens. */
  source: string;
}

/** Each keeps what it imports alive (globalThis.__keep), so tree shaking cannot drop the module. */
const COMPARISONS: readonly Comparison[] = [
  { name: "bare node:http server", source: "" },
  {
    name: "@kubernetes/client-node",
    source: `import { KubeConfig, CoreV1Api } from "@kubernetes/client-node";
const kc = new KubeConfig(); kc.loadFromDefault(); globalThis.__keep = kc.makeApiClient(CoreV1Api);`,
  },
  { name: "cloudevents", source: `import { CloudEvent, HTTP } from "cloudevents"; globalThis.__keep = [CloudEvent, HTTP];` },
  { name: "jose", source: `import * as jose from "jose"; globalThis.__keep = [jose.SignJWT, jose.jwtVerify];` },
  // What the functions carry: zod/mini with the English messages (shared/zod.ts), not classic zod.
  {
    name: "zod",
    source: `import * as z from "zod/mini"; import { en } from "zod/locales"; z.config(en()); globalThis.__keep = z.object({ a: z.string() });`,
  },
  { name: "yaml", source: `import YAML from "yaml"; globalThis.__keep = YAML.parse;` },
  { name: "prom-client", source: `import { Registry } from "prom-client"; globalThis.__keep = new Registry();` },
  {
    name: "@peculiar/x509 + reflect-metadata",
    source: `import "reflect-metadata"; import * as x509 from "@peculiar/x509"; globalThis.__keep = x509.X509Certificate;`,
  },
];

interface Candidate {
  name: string;
  kind: "function" | "comparison";
  bundle: string;
  bytes: number;
  env: Record<string, string>;
  request: { headers: Record<string, string>; body: string };
  /** The answer that shows the event took the full path (e.g. 200 with a reply, not 204 "skipped"). */
  expectStatus: number;
  times: number[];
  /** When the process logged that it listens (functions only; the log line may arrive late). */
  listening: number[];
  /** Runs before each start (outside the timed window); may replace `request`. */
  before?: () => void | Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolveP, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolveP(port));
    });
  });
}

/** One POST; resolves with the status, or undefined when nothing answers (yet). */
function post(port: number, r: { headers: Record<string, string>; body: string }): Promise<{ status: number; headers: IncomingHttpHeaders; body: string } | undefined> {
  return new Promise((resolveP) => {
    const req = request(
      { host: "127.0.0.1", port, method: "POST", path: "/", agent: false, headers: { ...r.headers, "content-length": String(Buffer.byteLength(r.body)) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolveP({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", () => resolveP(undefined));
      },
    );
    req.on("error", () => resolveP(undefined));
    req.end(r.body);
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolveP) => {
    const sock = connect({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolveP(true);
    });
    sock.once("error", () => resolveP(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns the bundle and POSTs the event once it listens; returns the milliseconds from spawn to
 * the answer. Any answer but the expected one (the event was wrong, or took a shortcut) or an
 * exit fails the run.
 */
async function startOnce(c: Candidate, root: string, timeoutMs: number): Promise<{ answered: number; listening?: number }> {
  const port = await freePort();
  let stderr = "";
  let listening: number | undefined;
  let exited: number | null | undefined;
  const t0 = performance.now();
  const child: ChildProcess = spawn(process.execPath, [c.bundle], {
    cwd: root,
    env: { ...process.env, ...c.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (d: Buffer) => {
    if (stderr.length < 20_000) stderr += d.toString();
    // The functions log {"msg":"listening"} once their server is up.
    if (listening === undefined && stderr.includes('"msg":"listening"')) listening = performance.now() - t0;
  });
  const gone = new Promise<void>((r) => {
    child.once("exit", (code) => ((exited = code), r()));
    child.once("error", (e) => ((stderr += `\nspawn failed: ${e.message}`), (exited = null), r()));
  });
  try {
    for (;;) {
      // A bare TCP connect is the cheapest poll (the harness shares the machine's two cores with
      // the process it times); once something listens, the event is POSTed.
      if (await canConnect(port)) {
        const res = await post(port, c.request);
        if (res !== undefined) {
          if (res.status === c.expectStatus) {
            const answered = performance.now() - t0;
            return listening === undefined ? { answered } : { answered, listening };
          }
          throw new Error(`${c.name} answered ${res.status}, not ${c.expectStatus}: ${res.body.slice(0, 300)}\n${stderr.slice(-2000)}`);
        }
      }
      if (exited !== undefined) throw new Error(`${c.name} exited ${exited} before answering:\n${stderr.slice(-2000)}`);
      if (performance.now() - t0 > timeoutMs) throw new Error(`${c.name} did not answer within ${timeoutMs} ms:\n${stderr.slice(-2000)}`);
      await sleep(1);
    }
  } finally {
    if (exited === undefined) child.kill("SIGKILL");
    await gone;
  }
}

/** Builds one comparison bundle with the same esbuild options as the function bundles. */
async function buildComparison(cmp: Comparison, dir: string, root: string, i: number): Promise<string> {
  const file = join(dir, `compare-${i}.mjs`);
  await esbuildFrom(root).build({
    ...COMMON,
    stdin: { contents: `${cmp.source}\n${LISTEN}`, resolveDir: root, sourcefile: `compare-${i}.ts`, loader: "ts" },
    outfile: file,
  });
  return file;
}

/** The npm packages a bundle was built from, read from its source map (undefined without one). */
function bundledPackages(file: string): Set<string> | undefined {
  let map: { sources?: unknown };
  try {
    map = JSON.parse(readFileSync(`${file}.map`, "utf8")) as { sources?: unknown };
  } catch {
    return undefined;
  }
  const out = new Set<string>();
  for (const src of Array.isArray(map.sources) ? map.sources : []) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(String(src));
    if (m) out.add(m[1]!);
  }
  return out;
}

/**
 * esbuild, loaded from the repository's node_modules at run time: its JS API finds its native
 * binary relative to its own files, so it must not be bundled into the harness.
 */
function esbuildFrom(root: string): { build(o: BuildOptions): Promise<BuildResult> } {
  return createRequire(join(root, "package.json"))("esbuild") as { build(o: BuildOptions): Promise<BuildResult> };
}

/** What a bundle (dist/<fn>.mjs and any chunks it imports statically) weighs, in bytes. */
function bundleBytes(file: string): number {
  return statSync(file).size;
}

function stats(xs: readonly number[]): { median: number; min: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]! };
}

/**
 * The events each function is started with, made in-process against `api` with the processes' step
 * keys, and how to make sign's again (`signEvent`): it carries validate's attestation of the PCR's
 * resourceVersion, which putting the PCR back moves on.
 */
async function makeEvents(o: {
  root: string;
  api: EmbeddedApiServer;
  deniedApi: EmbeddedApiServer;
  secrets: ReturnType<typeof generateStepSecrets>;
  caPoolText: string;
}): Promise<{ events: Partial<Record<StepName, PodcertEvent>>; signEvent: () => Promise<PodcertEvent> }> {
  const config = loadSignerConfig(undefined);
  const keys = Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeys(s, o.secrets[s])])) as Record<KeyedStep, ReturnType<typeof loadStepKeys>>;
  const caPool = parseCaPool(o.caPoolText);
  const run = async (api: EmbeddedApiServer, step: StepName, event: PodcertEvent): Promise<PodcertEvent> => {
    const ctx = stepContexts({ config, cluster: clusterApiFor(api), keys, caPool, log: silentLogger, events: false })[step];
    const r = await dispatch((await loadFunctions())[step], ctx, event);
    if (!r.reply) throw new Error(`in-process ${step} gave no reply (HTTP ${r.status}): ${r.error instanceof Error ? r.error.message : String(r.error)}`);
    return r.reply;
  };
  const fixture = (p: string) => eventFromJson(JSON.parse(readFileSync(join(o.root, p), "utf8")));
  const add = fixture("test/fixtures/events/issued/router-ed25519.json");
  const signEvent = async () => run(o.api, "derive-sans", await run(o.api, "validate", add));
  const validated = await run(o.api, "validate", add);
  const derived = await run(o.api, "derive-sans", validated);
  const denied = await run(o.deniedApi, "validate", fixture("test/fixtures/events/denied/wrong-proof.json"));
  if (denied.type !== stepEntry("deny").consumes[0]) throw new Error(`wrong-proof.json was not denied by validate (got ${denied.type})`);
  return { events: { validate: add, "derive-sans": validated, sign: derived, deny: denied }, signEvent };
}

/**
 * Cold start per function bundle and for the comparison bundles, measured in interleaved
 * rounds (every bundle once per round), so drift in the machine's speed hits all alike.
 */
export async function runColdStart(o: ColdStartOptions = {}): Promise<BenchPart> {
  const root = resolve(o.root ?? process.cwd());
  const runs = Math.max(5, o.runs ?? 7);
  const timeoutMs = o.timeoutMs ?? 15_000;
  const distDir = resolve(root, o.distDir ?? "dist");
  const dist = (fn: string) => join(distDir, `${fn}.mjs`);
  if (o.distDir === undefined && FUNCTION_BUNDLES.some((fn) => !existsSync(dist(fn)))) {
    execFileSync(process.execPath, ["esbuild.config.mjs"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  }

  const dir = mkdtempSync(join(tmpdir(), "podcert-coldstart-"));
  const servers: EmbeddedApiServer[] = [];
  try {
    // The cluster, keys and CA pool the processes use.
    const read = (p: string) => readFileSync(join(root, p), "utf8");
    const startCluster = async (file: string) => {
      const s = await startApiServer({ objects: parseClusterFile(read(file)) });
      servers.push(s);
      return s;
    };
    const issuedApi = await startCluster("test/fixtures/clusters/issued.yaml");
    const deniedApi = await startCluster("test/fixtures/clusters/denied.yaml");
    const kubeconfig = (name: string, s: EmbeddedApiServer) => {
      const p = join(dir, name);
      writeFileSync(p, s.kubeconfig());
      return p;
    };
    const issuedKubeconfig = kubeconfig("issued.kubeconfig", issuedApi);
    const deniedKubeconfig = kubeconfig("denied.kubeconfig", deniedApi);
    const secrets = generateStepSecrets();
    for (const step of KEYED_STEPS) {
      mkdirSync(join(dir, "keys", step), { recursive: true });
      writeFileSync(join(dir, "keys", step, EDGE_KEYS_FILE), secrets[step][EDGE_KEYS_FILE], { mode: 0o600 });
    }
    const config = loadSignerConfig(undefined);
    const caPoolText = serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() }));
    const caPoolPath = join(dir, "ca-pool.yaml");
    writeFileSync(caPoolPath, caPoolText, { mode: 0o600 });

    const { events, signEvent } = await makeEvents({ root, api: issuedApi, deniedApi, secrets, caPoolText });
    // sign and deny write the PCR's status: before every start the PCR is put back as it was
    // (same uid and creation time, no status), so every function takes its full path each time.
    // Put back, it has a new resourceVersion: sign gets an event attesting that one, made anew,
    // or its status write would conflict and take the conflict's path (read back, write again).
    const restorer = (api: EmbeddedApiServer, e: PodcertEvent): (() => void) => {
      // An ApiServerSource event carries the PCR itself; the steps' events carry a reference.
      const data = e.data as { pcr?: { namespace: string; name: string }; metadata?: { namespace: string; name: string } };
      const { namespace, name } = (data.pcr ?? data.metadata)!;
      const original = api.store.get("podcertificaterequests", namespace, name);
      if (original === undefined) throw new Error(`PCR ${namespace}/${name} is not in the cluster`);
      return () => {
        api.store.delete("podcertificaterequests", namespace, name);
        api.store.create(structuredClone(original), { seed: true });
      };
    };

    const candidates: Candidate[] = [];
    for (const fn of FUNCTION_BUNDLES) {
      const e = events[fn]!;
      const c: Candidate = {
        name: fn,
        kind: "function",
        bundle: dist(fn),
        bytes: bundleBytes(dist(fn)),
        env: {
          KUBECONFIG: fn === "deny" ? deniedKubeconfig : issuedKubeconfig,
          PODCERT_KEYS_DIR: join(dir, "keys", fn),
          ...(stepEntry(fn).holdsCaPool ? { PODCERT_CA_POOL: caPoolPath } : {}),
          LOG_LEVEL: "info",
        },
        request:
          fn === "validate"
            ? { headers: { "content-type": "application/cloudevents+json" }, body: read("test/fixtures/events/issued/router-ed25519.json") }
            : eventToBinaryHttp(e),
        // deny writes Denied and replies with nothing; the others hand on the next event.
        expectStatus: fn === "deny" ? 204 : 200,
        times: [],
        listening: [],
        before: restorer(fn === "deny" ? deniedApi : issuedApi, e),
      };
      if (fn === "sign") {
        const restore = c.before!;
        c.before = async () => {
          await restore();
          c.request = eventToBinaryHttp(await signEvent());
        };
      }
      candidates.push(c);
    }
    for (const [i, cmp] of COMPARISONS.entries()) {
      const file = await buildComparison(cmp, dir, root, i);
      candidates.push({
        name: cmp.name,
        kind: "comparison",
        bundle: file,
        bytes: bundleBytes(file),
        env: { KUBECONFIG: issuedKubeconfig },
        request: { headers: { "content-type": "application/json" }, body: "{}" },
        expectStatus: 200,
        times: [],
        listening: [],
      });
    }

    for (let r = 0; r < runs; r++) {
      for (const c of candidates) {
        await c.before?.();
        const t = await startOnce(c, root, timeoutMs);
        c.times.push(t.answered);
        if (t.listening !== undefined) c.listening.push(t.listening);
      }
    }
    return report(candidates, runs);
  } finally {
    for (const s of servers) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(candidates: readonly Candidate[], runs: number): BenchPart {
  const byName = new Map(candidates.map((c) => [c.name, c]));
  const bare = stats(byName.get("bare node:http server")!.times);
  const clientNode = stats(byName.get("@kubernetes/client-node")!.times);
  const budget = 1.25 * clientNode.median;
  const rows: BenchPart["rows"] = [];
  const targets: TargetCheck[] = [];
  for (const c of candidates) {
    const s = stats(c.times);
    rows.push({
      bundle: c.kind === "function" ? `dist/${c.name}.mjs` : `only ${c.name}`,
      "size KiB": Math.round(c.bytes / 1024),
      "median ms": Math.round(s.median),
      "min ms": Math.round(s.min),
      "listening ms": c.listening.length > 0 ? Math.round(stats(c.listening).median) : "",
      "minus bare server ms": c.name === "bare node:http server" ? "" : Math.round(s.median - bare.median),
      "/ client-node bundle": s.median / clientNode.median,
    });
    if (c.kind === "function") {
      targets.push(
        target(
          `cold start to first event answered, ${c.name}`,
          Math.round(s.median),
          "max",
          Math.round(budget),
          "ms",
          `1.25 × the client-node-only bundle's median (${Math.round(clientNode.median)} ms) in the same run`,
        ),
      );
    }
  }
  // Which of the dependencies measured alone each function bundle carries (from its source map).
  const measured = COMPARISONS.slice(2).flatMap((c) => c.name.split(" + "));
  const carried = candidates
    .filter((c) => c.kind === "function")
    .map((c) => {
      const pkgs = bundledPackages(c.bundle);
      return pkgs ? `${c.name}: ${measured.filter((d) => pkgs.has(d)).join(", ") || "none"}` : `${c.name}: (no source map)`;
    });
  // What the dependencies every function evaluates before its first answer cost on their own.
  const atStart = ["cloudevents", "jose", "zod", "yaml"];
  const depCost = atStart.reduce((sum, d) => sum + stats(byName.get(d)!.times).median - bare.median, 0);
  const fnStats = candidates.filter((c) => c.kind === "function").map((c) => ({ answered: stats(c.times).median, listening: c.listening.length ? stats(c.listening).median : NaN }));
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    title: "4. cold start",
    rows,
    targets,
    notes: [
      `budget: 1.25 × ${Math.round(clientNode.median)} ms = ${Math.round(budget)} ms; the functions listen after ${Math.round(avg(fnStats.map((f) => f.listening)))} ms and answer ${Math.round(avg(fnStats.map((f) => f.answered - f.listening)))} ms later (means of the medians); ${atStart.join(", ")} alone add ${Math.round(depCost)} ms together (sum of their 'minus bare server')`,
      `dependencies (other than @kubernetes/client-node) bundled into each function: ${carried.join("; ")}`,
      `time from spawn (node ${process.version}) to the answer to one POSTed event (polled by TCP connect every millisecond, POSTed once the process listens), which must be the full path's answer: 200 with the next event, 204 for deny; ${runs} starts per bundle, every bundle once per round; median and minimum; 'listening ms' is when the function logged that it listens`,
      "functions get a real event: validate the fixture router-ed25519 add event; derive-sans, sign and deny the reply of the previous steps run in-process with the same step keys (deny: wrong-proof through validate against the denied cluster); an embedded API server serves both clusters",
      "prom-client is bundled but evaluated only after the first event is answered (or 1 s after listening); @peculiar/x509 is left out of the function bundles (esbuild.config.mjs), since only creating a CA uses it",
      "comparison bundles are built in the same run with esbuild.config.mjs's options: a bare node:http server, and a server importing only one dependency (kept alive so it is evaluated); 'minus bare server' is what that dependency adds",
    ],
  };
}
