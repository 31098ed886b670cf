/**
 * Parts 3 and 6: a burst of PCRs through the local event flow over HTTP (separate function
 * processes, the local broker, the emulated ApiServerSource, the embedded API server), as a
 * kubelet restart or a worker-pool scale-up would send them; and each function's peak memory.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { throwawayCaPool } from "../cli/ca-create.js";
import { startApiServer } from "../local-cluster/apiserver/server.js";
import { startApiServerSource } from "../local-cluster/apiserver-source.js";
import { LocalBroker, parseBrokerDelivery, parseContainerConcurrency } from "../local-cluster/broker.js";
import { startLocalFlow } from "../local-cluster/flow.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "../local-cluster/identities.js";
import { mapLimit } from "../local-cluster/pipeline.js";
import { startFunctionProcess, stopFunctionProcess } from "../local-cluster/processes.js";
import { BROKER_NAME } from "../local-cluster/router.js";
import { parseCaPool, serializeCaPool } from "../shared/ca/pool.js";
import { loadKubeConfig } from "../shared/kube/client-node.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { readText } from "../shared/runtime/load.js";
import { EVENT_TYPES, serviceName } from "../shared/steps.js";
import { syntheticCluster } from "./cluster.js";
import { premadeStatuses } from "./pipeline.js";
import { floorVerdict, percentile, target, type BenchPart } from "./report.js";

/** Peak resident set size of a process, from /proc (Linux). */
function peakRssMiB(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. The
 * kernel counts in ticks of 1/100 s (USER_HZ, 100 on every Linux build node runs on).
 */
function cpuSeconds(pid: number | undefined): { user: number; system: number } {
  if (pid === undefined) return { user: Number.NaN, system: Number.NaN };
  try {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }; // utime, stime (fields 14 and 15)
  } catch {
    return { user: Number.NaN, system: Number.NaN };
  }
}

/** The half-and-half PCRs of a burst of `n` and the cluster objects they need (PCRs not stored yet). */
function burstCluster(n: number): { objects: Record<string, unknown>[]; pcrs: PodCertificateRequest[] } {
  // Half control-plane requests with DNS names (the heaviest path), half workers.
  const ate = syntheticCluster({ pods: Math.ceil(n / 2), keyType: "ECDSAP256", signer: "atesystem" });
  const workers = syntheticCluster({ pods: Math.floor(n / 2), keyType: "ECDSAP256", signer: "workerpool" });
  const nonPcr = (objs: Record<string, unknown>[]) => objs.filter((x) => x.kind !== "PodCertificateRequest");
  return { objects: [...nonPcr(ate.objects), ...nonPcr(workers.objects).filter((x) => x.kind !== "Node")], pcrs: [...ate.pcrs, ...workers.pcrs] };
}

/**
 * Creates every PCR as many kubelets at once would (32 creates in flight), and returns when (by
 * performance.now()) each create was sent, by the uid the API server gave it. They are plain POSTs
 * (undici's request, as podcert's own calls): the harness shares the two cores with what it measures.
 */
async function createAll(apiUrl: string, token: string | undefined, pcrs: readonly PodCertificateRequest[]): Promise<Map<string, number>> {
  const createdAt = new Map<string, number>();
  await mapLimit(pcrs, 32, async (pcr) => {
    const body = JSON.stringify({ ...pcr, metadata: { name: pcr.metadata.name, namespace: pcr.metadata.namespace } });
    const t = performance.now();
    const res = await request(`${apiUrl}/apis/${pcr.apiVersion}/namespaces/${pcr.metadata.namespace}/podcertificaterequests`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${token}` },
      body,
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new Error(`creating PCR ${pcr.metadata.name} answered HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
    createdAt.set((JSON.parse(text) as PodCertificateRequest).metadata.uid ?? "", t);
  });
  return createdAt;
}

/** Waits until every created PCR finished (or the timeout); the latencies sorted, and the last finish. */
async function latencies(createdAt: ReadonlyMap<string, number>, finishedAt: ReadonlyMap<string, number>, timeoutSeconds: number): Promise<{ sorted: number[]; lastFinish: number }> {
  const deadline = performance.now() + timeoutSeconds * 1000;
  while (performance.now() < deadline) {
    if ([...createdAt.keys()].every((uid) => finishedAt.has(uid))) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const sorted = [...createdAt.entries()].filter(([uid]) => finishedAt.has(uid)).map(([uid, t]) => finishedAt.get(uid)! - t).sort((a, b) => a - b);
  return { sorted, lastFinish: Math.max(...finishedAt.values()) };
}

/**
 * The floor under the burst's p99 on this machine: the same stand-ins (the embedded API server with
 * the manifests' RBAC, the emulated ApiServerSource, the local broker with its delivery settings,
 * the same creates) with one subscriber process in place of podcert's functions that does the least
 * any signer must — take each PCR's add event and write its status with a certificate made before
 * the clock started (bench/floor-issuer.ts, as sign's ServiceAccount). No validation, no SANs, no
 * hops between steps, no attestations, no cryptography: podcert's flow cannot beat it.
 */
export async function measureBurstFloor(o: { pcrs: number; knativeDir?: string; distDir?: string; timeoutSeconds?: number }) {
  const { objects, pcrs } = burstCluster(o.pcrs);
  const knativeDir = o.knativeDir ?? "knative";
  const ids = loadKnativeIdentities(knativeDir);
  const signer = userOfService(ids, serviceName("sign"));
  const api = await startApiServer({ objects: [...objects, ...manifestNamespaces(ids, objects)], authorization: { rbac: ids.documents, users: [...ids.services.values(), ids.source] } });
  const state = mkdtempSync(join(tmpdir(), "podcert-floor-"));
  const stops: (() => Promise<unknown> | void)[] = [() => api.stop(), () => rmSync(state, { recursive: true, force: true })];
  try {
    const caPool = parseCaPool(serializeCaPool(await throwawayCaPool(defaultSignerConfig().signers.keys())));
    const statusFile = join(state, "statuses.json");
    writeFileSync(statusFile, JSON.stringify(Object.fromEntries(premadeStatuses(pcrs, caPool, "ECDSAP256"))), { mode: 0o600 });
    const issuer = await startFunctionProcess({
      name: "floor",
      bundle: join(o.distDir ?? "dist", "bench-floor-issuer.mjs"),
      port: 0,
      env: { FLOOR_API_URL: api.url, FLOOR_TOKEN: api.token(signer.name) ?? "", FLOOR_STATUSES: statusFile },
    });
    stops.push(() => stopFunctionProcess(issuer));
    const validate = serviceName("validate");
    const concurrency = parseContainerConcurrency(readText(join(knativeDir, "services.yaml"), "Service manifest")).get(validate);
    const broker = new LocalBroker({
      // validate's first Trigger, delivered to the floor as it would be to validate.
      routes: [{ name: "floor", broker: BROKER_NAME, filter: { type: EVENT_TYPES.apiServerAdd, kind: "PodCertificateRequest" }, subscriber: "floor" }],
      delivery: parseBrokerDelivery(readText(join(knativeDir, "broker.yaml"), "Broker manifest"), BROKER_NAME),
      brokerName: BROKER_NAME,
      subscribers: new Map([["floor", issuer.url]]),
      ...(concurrency === undefined ? {} : { concurrency: new Map([["floor", concurrency]]) }),
    });
    await broker.listen(0);
    stops.push(() => broker.close());
    const finishedAt = new Map<string, number>();
    const source = await startApiServerSource(loadKubeConfig({ kubeconfigText: api.kubeconfig(ids.source.name) }), (event) => {
      const pcr = event.data as PodCertificateRequest;
      if (event.type === EVENT_TYPES.apiServerUpdate && terminalCondition(pcr) && !finishedAt.has(pcr.metadata.uid ?? "")) finishedAt.set(pcr.metadata.uid ?? "", performance.now());
      broker.publish(event);
    });
    stops.push(() => source.stop());

    const harnessCpu = process.cpuUsage();
    const issuerCpu = cpuSeconds(issuer.child.pid);
    const firstCreate = performance.now();
    const createdAt = await createAll(api.url, api.token(), pcrs);
    const { sorted, lastFinish } = await latencies(createdAt, finishedAt, o.timeoutSeconds ?? 120);
    await broker.idle();
    const harnessUsed = process.cpuUsage(harnessCpu);
    const issuerNow = cpuSeconds(issuer.child.pid);
    if (sorted.length !== pcrs.length) throw new Error(`the burst floor issued ${sorted.length} of ${pcrs.length} PCRs`);
    return {
      seconds: (lastFinish - firstCreate) / 1000,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      harnessCpuSeconds: (harnessUsed.user + harnessUsed.system) / 1e6,
      issuerCpuSeconds: issuerNow.user + issuerNow.system - issuerCpu.user - issuerCpu.system,
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

export async function runBurst(o: { pcrs?: number; timeoutSeconds?: number; say?: (m: string) => void } = {}): Promise<BenchPart[]> {
  const n = o.pcrs ?? 1000;
  const { objects, pcrs } = burstCluster(n);
  const flow = await startLocalFlow({ objects, config: defaultSignerConfig(), caPool: await throwawayCaPool(defaultSignerConfig().signers.keys()), knativeDir: "knative", logLevel: "warn", ...(o.say ? { say: o.say } : {}) });
  let measured: BenchPart[];
  let p99 = Number.NaN;
  try {
    // Where the two cores go during the burst: the harness process (the embedded API server, the
    // broker, the emulated source, the PCR creates) and each function process.
    const harnessCpu = process.cpuUsage();
    const functionCpu = flow.processes.map((p) => cpuSeconds(p.child.pid));
    const firstCreate = performance.now();
    // The kubelets' stand-in is the cluster admin (the flow's API server enforces RBAC).
    const createdAt = await createAll(flow.api.url, flow.api.token(), pcrs);
    const { sorted, lastFinish } = await latencies(createdAt, flow.finishedAt, o.timeoutSeconds ?? 120);
    await flow.broker.idle();
    const stored = flow.api.store.list("podcertificaterequests").items as unknown as PodCertificateRequest[];
    const issued = stored.filter((p) => terminalCondition(p)?.type === "Issued").length;
    const seconds = (lastFinish - firstCreate) / 1000;
    p99 = percentile(sorted, 99) / 1000;
    const harnessUsed = process.cpuUsage(harnessCpu);
    const cpu = [
      { process: "harness: API server, broker, source, creates", seconds: (harnessUsed.user + harnessUsed.system) / 1e6, system: harnessUsed.system / 1e6 },
      ...flow.processes.map((p, i) => {
        const now = cpuSeconds(p.child.pid);
        const user = now.user - functionCpu[i]!.user;
        const system = now.system - functionCpu[i]!.system;
        return { process: p.name, seconds: user + system, system };
      }),
    ];
    const cpuTotal = cpu.reduce((a, c) => a + c.seconds, 0);
    measured = [
      {
        title: `3. event flow over HTTP: burst of ${n} PCRs (P-256, half with DNS names)`,
        rows: [
          {
            run: "podcert: validate → derive-sans → sign, 4 function processes",
            PCRs: n,
            issued,
            "dead letters": flow.deadLetters.length,
            "seconds (first create → last Issued)": seconds,
            "PCRs/s": Math.round(issued / seconds),
            "p50 ms": Math.round(percentile(sorted, 50)),
            "p95 ms": Math.round(percentile(sorted, 95)),
            "p99 ms": Math.round(p99 * 1000),
          },
        ],
        targets: [target("burst: all issued", issued, "min", n, "PCRs")],
        notes: [
          "Creation time is recorded by the harness when it sends the create; Issued when the emulated ApiServerSource sees the status.",
          `CPU from the first create to the end, per process (ms per PCR, of which in the kernel): ${cpu.map((c) => `${c.process} ${((c.seconds * 1000) / n).toFixed(1)} (${((c.system * 1000) / n).toFixed(1)})`).join(", ")}; the whole flow used ${cpuTotal.toFixed(1)} CPU s, ${((cpuTotal / seconds / 2) * 100).toFixed(0)}% of the two cores while it ran`,
        ],
      },
      {
        title: "6. memory: peak RSS per function under the burst",
        rows: flow.processes.map((p) => ({ function: p.name, "peak RSS MiB": Math.round(peakRssMiB(p.child.pid) * 10) / 10 })),
        targets: [],
      },
    ];
  } finally {
    await flow.stop();
  }
  // After podcert's processes have stopped, so the floor has the machine to itself as they had.
  const floor = await measureBurstFloor({ pcrs: n, ...(o.timeoutSeconds === undefined ? {} : { timeoutSeconds: o.timeoutSeconds }) });
  const [burst] = measured;
  burst!.rows.push({
    run: "floor: the same stand-ins, one subscriber writing certificates made beforehand",
    PCRs: n,
    issued: n,
    "dead letters": 0,
    "seconds (first create → last Issued)": floor.seconds,
    "PCRs/s": Math.round(n / floor.seconds),
    "p50 ms": Math.round(floor.p50),
    "p95 ms": Math.round(floor.p95),
    "p99 ms": Math.round(floor.p99),
  });
  burst!.targets.push(
    target(
      "burst: p99 creation → Issued",
      p99,
      "max",
      2,
      "s",
      `floor p99 ${(floor.p99 / 1000).toFixed(2)} s in the same run (${floorVerdict(floor.p99 / 1000, 2, "max")}); podcert's p99 is ${(p99 / (floor.p99 / 1000)).toFixed(1)}× the floor's`,
    ),
  );
  burst!.notes!.push(
    `floor (bench/floor-issuer.ts): the embedded API server with the manifests' RBAC, the emulated ApiServerSource, the local broker and the same creates, with one subscriber process that writes each PCR's status with a certificate made before the clock started — one delivery and one status write per PCR, no checks, steps, attestations or cryptography; CPU per PCR: harness ${((floor.harnessCpuSeconds * 1000) / n).toFixed(1)} ms, subscriber ${((floor.issuerCpuSeconds * 1000) / n).toFixed(1)} ms`,
  );
  return measured;
}
