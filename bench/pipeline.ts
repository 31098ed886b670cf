/**
 * Part 2: the whole in-process pipeline (`podcert issue`): validate → derive-sans → sign, with
 * the step attestations and every Kubernetes API call going to the embedded API server over HTTP.
 * The server runs on its own thread (as kube-apiserver runs elsewhere in a cluster, and as
 * `podcert issue` runs it); the pipeline runs on the harness's one thread. Then `podcert issue`
 * itself, as a whole process over a JSON List.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { activeCa, parseCaPool, serializeCaPool, type CaPool } from "../shared/ca/pool.js";
import { issuedStatus } from "../shared/pcr/status.js";
import { certificateTimes } from "../shared/policy/lifetime.js";
import { issueLeaf } from "../shared/x509/leaf.js";
import { mapLimit } from "../local-cluster/pipeline.js";
import { spiffeId } from "../shared/policy/identity.js";
import { createCaPool, throwawayCaPool } from "../cli/ca-create.js";
import { stepContexts } from "../cli/cluster.js";
import { issueAll } from "../cli/issue.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import { KEY_TYPES, terminalCondition, type KeyType, type PcrStatus, type PodCertificateRequest } from "../shared/pcr/model.js";
import { STEPS, type StepName } from "../shared/steps.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { silentLogger } from "../shared/runtime/log.js";
import { startApiServerThread } from "../local-cluster/apiserver/thread.js";
import { syntheticCluster } from "./cluster.js";
import { floorVerdict, percentile, target, type BenchPart } from "./report.js";

/** validate's lookups that its cache answers (kube/lookup-cache.ts) once filled. */
const CACHED_LOOKUPS = new Set(["get namespace", "get serviceaccount", "get node"]);

export async function measurePipeline(o: { pods: number; keyType: KeyType; signer: "atesystem" | "workerpool"; concurrency?: number }) {
  const { objects } = syntheticCluster(o);
  const api = await startApiServerThread({ objects });
  try {
    const config = defaultSignerConfig();
    const caPool = parseCaPool(serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
    const cluster = new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig }));
    // One client per step, as one process per step in a cluster (each with its own lookup cache),
    // counting the calls each makes on the hot path: Events (sent in the background, sampled
    // under load) and the once-per-process discovery aside. validate's Namespace, ServiceAccount
    // and Node lookups come from its cache (5 s) but when it fills: counted apart, as `lookups`.
    const calls = new Map<StepName, number>(STEPS.map((s) => [s, 0]));
    let lookups = 0;
    const perStep = Object.fromEntries(STEPS.map((step) => [step, new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig }), (c) => {
      if (c.operation === "create event" || c.operation.startsWith("discover ")) return;
      if (CACHED_LOOKUPS.has(c.operation)) lookups++;
      else calls.set(step, calls.get(step)! + 1);
    })])) as Record<StepName, KubeClusterApi>;
    const contexts = stepContexts({ config, cluster: perStep, keys: ephemeralStepKeys(), caPool, log: silentLogger });
    const result = await issueAll({ cluster, contexts, concurrency: o.concurrency ?? 64 });
    const issued = result.pcrs.filter((p) => terminalCondition(p)?.type === "Issued").length;
    const t = [...result.timings.values()];
    // Until the last PCR is done and the Kubernetes Events recorded in the background are sent.
    const seconds = (Math.max(result.eventsFlushedAt, ...t.map((x) => x.end)) - Math.min(...t.map((x) => x.start))) / 1000;
    const perPcr = Object.fromEntries([...calls].filter(([, n]) => n > 0).map(([step, n]) => [step, n / result.pcrs.length])) as Partial<Record<StepName, number>>;
    return { issued, total: result.pcrs.length, perSecond: issued / seconds, seconds, apiCallsPerPcr: perPcr, cachedLookupsPerPcr: lookups / result.pcrs.length };
  } finally {
    await api.stop();
  }
}

/**
 * The floor under part 2's rate on this machine: the Kubernetes API calls the pipeline makes per
 * PCR (validate: the PCR and the pod; derive-sans, for DNS names: the Service; sign: the pod and
 * the status write), from one thread to the embedded API server's thread, as many at once as
 * `podcert issue` has, with each PCR's certificate made before the clock starts: no checks, no
 * attestations, no cryptography. podcert's pipeline does these calls and its own work on the same
 * thread, so it cannot go faster than this.
 */
export async function measureApiFloor(o: { pods: number; keyType: KeyType; signer: "atesystem" | "workerpool"; concurrency?: number }) {
  const { objects, pcrs } = syntheticCluster(o);
  const api = await startApiServerThread({ objects });
  try {
    const cluster = new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig }));
    const signerName = pcrs[0]!.spec.signerName;
    const caPool = parseCaPool(serializeCaPool(await createCaPool([...defaultSignerConfig().signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
    const statuses = premadeStatuses(pcrs, caPool, o.keyType);
    const listed = await cluster.listPcrs({ signerName });
    const elu = performance.eventLoopUtilization();
    const cpu = process.cpuUsage();
    const start = performance.now();
    let issued = 0;
    await mapLimit(listed, o.concurrency ?? 64, async (pcr) => {
      const { namespace, name } = pcr.metadata;
      const stored = await cluster.readPcr(namespace, name);
      await cluster.readPod(namespace, stored!.spec.podName);
      if (o.signer === "atesystem") await cluster.readService(namespace, "api");
      await cluster.readPod(namespace, stored!.spec.podName);
      const written = await cluster.replacePcrStatus(stored!, statuses.get(`${namespace}/${name}`)!);
      if (written !== undefined && terminalCondition(written)?.type === "Issued") issued++;
    });
    const seconds = (performance.now() - start) / 1000;
    // Which side is the limit: how busy the calling thread was, and the process' CPU (both threads) in cores.
    const callerBusy = performance.eventLoopUtilization(elu).utilization;
    const used = process.cpuUsage(cpu);
    const cores = (used.user + used.system) / 1e6 / seconds;
    if (issued !== listed.length) throw new Error(`the API floor wrote ${issued} of ${listed.length} statuses`);
    return { perSecond: issued / seconds, seconds, callerBusy, cores };
  } finally {
    await api.stop();
  }
}

/**
 * `podcert issue` as a user runs it (bin/podcert.mjs, a process of its own, the embedded API
 * server on its thread): over a JSON List of `small` and one of `large` fresh P-256 PCRs, `rounds`
 * times each, one after the other. The rate is the `large - small` PCRs over the median of the
 * rounds' differences of wall time, so the process' start, loading the CA pool and the steps cancel
 * out; what is left is what each PCR costs it: reading the file, seeding the server, the pipeline,
 * listing the PCRs and printing the List. The CA pool is written to a directory of its own
 * (mode 0700) that is removed afterwards.
 */
export async function measureWholeProcess(o: { signer: "atesystem" | "workerpool"; small: number; large: number; rounds: number }) {
  const dir = mkdtempSync(join(tmpdir(), "podcert-bench-issue-"));
  try {
    const caPoolPath = join(dir, "ca-pool.yaml");
    writeFileSync(caPoolPath, serializeCaPool(await throwawayCaPool(defaultSignerConfig().signers.keys())), { mode: 0o600 });
    const files = new Map<number, string>();
    for (const n of [o.small, o.large]) {
      const path = join(dir, `cluster-${n}.json`);
      writeFileSync(path, JSON.stringify({ apiVersion: "v1", kind: "List", items: syntheticCluster({ pods: n, keyType: "ECDSAP256", signer: o.signer }).objects }));
      files.set(n, path);
    }
    const differences: number[] = [];
    for (let round = 0; round < o.rounds; round++) {
      const small = await timeIssue(files.get(o.small)!, caPoolPath, o.small);
      const large = await timeIssue(files.get(o.large)!, caPoolPath, o.large);
      differences.push(large - small);
    }
    const seconds = percentile([...differences].sort((a, b) => a - b), 50);
    return { perSecond: (o.large - o.small) / seconds, seconds, pcrs: o.large - o.small };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Seconds from spawning `podcert issue` to its exit; throws unless it exits 0 having issued all `n`. */
async function timeIssue(cluster: string, caPool: string, n: number): Promise<number> {
  const bin = fileURLToPath(new URL("../bin/podcert.mjs", import.meta.url));
  const start = performance.now();
  const child = spawn(process.execPath, [bin, "issue", "--cluster", cluster, "--ca-pool", caPool], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => {
    child.once("close", resolve);
    child.once("error", (e) => ((stderr += `\nspawn failed: ${e.message}`), resolve(null)));
  });
  const seconds = (performance.now() - start) / 1000;
  if (code !== 0 || !stderr.includes(`\n${n} issued, 0 denied or failed, 0 pending\n`)) {
    throw new Error(`podcert issue over ${n} PCRs exited ${code}:\n${stderr.slice(-2000)}`);
  }
  return seconds;
}

/**
 * For each PCR ("<namespace>/<name>"), the Issued status podcert would write, made now with the
 * pool's active CA for its signer: what the floors write without doing any of the work.
 */
export function premadeStatuses(pcrs: readonly PodCertificateRequest[], caPool: CaPool, keyType: KeyType): Map<string, PcrStatus> {
  const config = defaultSignerConfig();
  const now = new Date();
  return new Map(
    pcrs.map((pcr) => {
      const ca = activeCa(caPool, pcr.spec.signerName, now);
      const profile = config.signers.get(pcr.spec.signerName)!;
      const times = certificateTimes({ now, lifetimeSeconds: pcr.spec.maxExpirationSeconds ?? 86_400, ca, refreshFraction: profile.refreshFraction });
      const leaf = issueLeaf(ca.signer, {
        spkiDer: Buffer.from(pcr.spec.pkixPublicKey!, "base64"),
        keyType,
        uris: [spiffeId(profile.trustDomain, pcr.metadata.namespace, pcr.spec.serviceAccountName)],
        dnsNames: [],
        notBefore: times.notBefore,
        notAfter: times.notAfter,
      });
      return [`${pcr.metadata.namespace}/${pcr.metadata.name}`, issuedStatus({ chainPem: leaf.chainPem, ...times, message: "floor", now })] as const;
    }),
  );
}

export async function runPipeline(o: { pods?: number; wholeProcess?: { small: number; large: number; rounds: number } } = {}): Promise<BenchPart> {
  const pods = o.pods ?? 1000;
  const whole = o.wholeProcess ?? { small: 200, large: 2200, rounds: 3 };
  const rows: BenchPart["rows"] = [];
  const targets = [];
  for (const keyType of KEY_TYPES) {
    // RSA keys take long to generate: fewer of them, same rate measure.
    const n = keyType.startsWith("RSA") ? Math.min(pods, 100) : pods;
    for (const signer of ["atesystem", "workerpool"] as const) {
      const r = await measurePipeline({ pods: n, keyType, signer });
      const calls = Object.values(r.apiCallsPerPcr).reduce((a, b) => a + b, 0);
      const bySteps = Object.entries(r.apiCallsPerPcr).map(([step, n]) => `${step} ${Math.round(n * 100) / 100}`).join(", ");
      const lookups = Math.round(r.cachedLookupsPerPcr * 1000) / 1000;
      rows.push({ "request key": keyType, signer, PCRs: r.total, issued: r.issued, seconds: r.seconds, "PCRs/s": Math.round(r.perSecond), "API calls per PCR": `${Math.round(calls * 100) / 100} (${bySteps}; cache fills ${lookups})` });
      if (keyType === "ECDSAP256") {
        const floor = await measureApiFloor({ pods: n, keyType, signer });
        rows.push({ "request key": keyType, signer, PCRs: n, issued: n, seconds: floor.seconds, "PCRs/s": Math.round(floor.perSecond), "API calls per PCR": `floor: the same API calls alone (certificates made beforehand; no checks, attestations or crypto); calling thread ${Math.round(floor.callerBusy * 100)}% busy, ${floor.cores.toFixed(2)} cores in all, ${((floor.cores * 1000) / floor.perSecond).toFixed(2)} ms of CPU per PCR` });
        const floorNote = `the API calls alone reach ${Math.round(floor.perSecond)} PCRs/s in the same run (${floorVerdict(floor.perSecond, 1000)}); the pipeline runs at ${(r.perSecond / floor.perSecond).toFixed(2)} of that`;
        targets.push(target(`in-process pipeline, P-256 requests, ${signer}`, r.perSecond, "min", 1000, "PCRs/s", r.perSecond < 1000 ? floorNote : undefined));
        const w = await measureWholeProcess({ signer, ...whole });
        rows.push({ "request key": keyType, signer, PCRs: w.pcrs, issued: w.pcrs, seconds: w.seconds, "PCRs/s": Math.round(w.perSecond), "API calls per PCR": `whole process: \`podcert issue\` over a JSON List of ${whole.large} fresh PCRs minus one of ${whole.small} (median of ${whole.rounds} rounds), so its start cancels out` });
        // The same calls to the same server on its own thread, plus reading the file, seeding the
        // server and printing the List: the API floor bounds this rate too.
        const wholeNote = `the same API calls alone reach ${Math.round(floor.perSecond)} PCRs/s in the same run (${floorVerdict(floor.perSecond, 1000)}); the whole process runs at ${(w.perSecond / floor.perSecond).toFixed(2)} of that`;
        targets.push(target(`\`podcert issue\` as a whole process, P-256 requests, ${signer}`, w.perSecond, "min", 1000, "PCRs/s", w.perSecond < 1000 ? wholeNote : undefined));
        // atesystem's synthetic pods opt in to DNS names (a Service read); workerpool's do not.
        targets.push(target(`Kubernetes API calls per issued PCR, ${signer === "atesystem" ? "with" : "without"} DNS names (hot path, Events aside)`, calls, "max", signer === "atesystem" ? 5 : 4, "calls"));
      }
    }
  }
  return {
    title: "2. in-process issuance (validate → derive-sans → sign, embedded API server)",
    rows,
    targets,
    notes: [
      "Measured from the first PCR processed to the last (and its Kubernetes Events sent); the pipeline on one thread, the embedded API server on a second thread of the same process; includes attestations and every API call over HTTP.",
      "API calls per PCR: counted per step, each step with its own client and lookup cache as one process per step in a cluster; Kubernetes Events (background, sampled under load) and the once-per-process discovery are not counted, and validate's cached Namespace/ServiceAccount/Node lookups only as `cache fills` (the first request per object and every 5 s after, not per PCR).",
      "Since issue 14 validate attests what the others read before: derive-sans reads only the Services, sign only the pod (and writes on the resourceVersion validate attested).",
    ],
  };
}
