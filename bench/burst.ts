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
import { noteFinished, startLocalFlow } from "../local-cluster/flow.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "../local-cluster/identities.js";
import { mapLimit } from "../local-cluster/pipeline.js";
import { startFunctionProcess, stopFunctionProcess, type FunctionProcess } from "../local-cluster/processes.js";
import { BROKER_NAME, loadTriggers, type TriggerRoute } from "../local-cluster/router.js";
import { parseCaPool, serializeCaPool } from "../shared/ca/pool.js";
import { loadKubeConfig } from "../shared/kube/client-node.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { readText } from "../shared/runtime/load.js";
import { EVENT_TYPES, serviceName, type StepName } from "../shared/steps.js";
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

/** The floors of the burst's p99 (bench/floor-issuer.ts says what each subscriber does). */
export type BurstFloor = "one write" | "podcert's hops";

/**
 * A floor under the burst's p99 on this machine, measured with the same stand-ins (the embedded API
 * server with the manifests' RBAC, the emulated ApiServerSource, the local broker with its delivery
 * settings and containerConcurrency, the same creates) and subscriber processes that do no work of
 * their own — no checks, no attestations, no cryptography; the certificates are made before the
 * clock starts (bench/floor-issuer.ts):
 * - "one write": one subscriber takes each PCR's add event and writes its status, the least any
 *   signer behind this broker must do;
 * - "podcert's hops": three, in validate's, derive-sans' and sign's places with their
 *   ServiceAccounts, passing each PCR along knative/triggers.yaml's routes with the same Kubernetes
 *   API calls as podcert's steps.
 * podcert's flow does all of the second and its own work besides, so it cannot beat either.
 */
export async function measureBurstFloor(o: { pcrs: number; floor: BurstFloor; knativeDir?: string; distDir?: string; timeoutSeconds?: number }) {
  const { objects, pcrs } = burstCluster(o.pcrs);
  const knativeDir = o.knativeDir ?? "knative";
  const ids = loadKnativeIdentities(knativeDir);
  const api = await startApiServer({ objects: [...objects, ...manifestNamespaces(ids, objects)], authorization: { rbac: ids.documents, users: [...ids.services.values(), ids.source] } });
  const state = mkdtempSync(join(tmpdir(), "podcert-floor-"));
  const stops: (() => Promise<unknown> | void)[] = [() => api.stop(), () => rmSync(state, { recursive: true, force: true })];
  try {
    const caPool = parseCaPool(serializeCaPool(await throwawayCaPool(defaultSignerConfig().signers.keys())));
    const statusFile = join(state, "statuses.json");
    writeFileSync(statusFile, JSON.stringify(Object.fromEntries(premadeStatuses(pcrs, caPool, "ECDSAP256"))), { mode: 0o600 });
    const concurrency = parseContainerConcurrency(readText(join(knativeDir, "services.yaml"), "Service manifest"));
    // Each floor process in a step's place: its Knative Service, its ServiceAccount, its role.
    const places: { step: StepName; role: string }[] = o.floor === "one write" ? [{ step: "sign", role: "issuer" }] : (["validate", "derive-sans", "sign"] as const).map((step) => ({ step, role: step }));
    const subscribers = new Map<string, string>();
    const processes: FunctionProcess[] = [];
    for (const { step, role } of places) {
      const p = await startFunctionProcess({
        name: `floor ${role}`,
        bundle: join(o.distDir ?? "dist", "bench-floor-issuer.mjs"),
        port: 0,
        env: { FLOOR_ROLE: role, FLOOR_API_URL: api.url, FLOOR_TOKEN: api.token(userOfService(ids, serviceName(step)).name) ?? "", FLOOR_STATUSES: statusFile },
      });
      stops.push(() => stopFunctionProcess(p));
      processes.push(p);
      subscribers.set(serviceName(step), p.url);
    }
    const routes: TriggerRoute[] =
      o.floor === "one write"
        ? // validate's first Trigger, delivered to the one subscriber (in sign's place, which may write statuses).
          [{ name: "floor", broker: BROKER_NAME, filter: { type: EVENT_TYPES.apiServerAdd, kind: "PodCertificateRequest" }, subscriber: serviceName("sign") }]
        : loadTriggers(knativeDir).filter((r) => subscribers.has(r.subscriber));
    const broker = new LocalBroker({
      routes,
      delivery: parseBrokerDelivery(readText(join(knativeDir, "broker.yaml"), "Broker manifest"), BROKER_NAME),
      brokerName: BROKER_NAME,
      subscribers,
      concurrency,
    });
    await broker.listen(0);
    stops.push(() => broker.close());
    const finishedAt = new Map<string, number>();
    const source = await startApiServerSource(loadKubeConfig({ kubeconfigText: api.kubeconfig(ids.source.name) }), (event) => {
      noteFinished(finishedAt, event);
      broker.publish(event);
    });
    stops.push(() => source.stop());

    const harnessCpu = process.cpuUsage();
    const floorCpu = processes.map((p) => cpuSeconds(p.child.pid));
    const firstCreate = performance.now();
    const createdAt = await createAll(api.url, api.token(), pcrs);
    const { sorted, lastFinish } = await latencies(createdAt, finishedAt, o.timeoutSeconds ?? 120);
    await broker.idle();
    const harnessUsed = process.cpuUsage(harnessCpu);
    const subscriberSeconds = processes.reduce((sum, p, i) => {
      const now = cpuSeconds(p.child.pid);
      return sum + now.user + now.system - floorCpu[i]!.user - floorCpu[i]!.system;
    }, 0);
    if (sorted.length !== pcrs.length) throw new Error(`the burst floor (${o.floor}) issued ${sorted.length} of ${pcrs.length} PCRs`);
    return {
      seconds: (lastFinish - firstCreate) / 1000,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      harnessCpuSeconds: (harnessUsed.user + harnessUsed.system) / 1e6,
      subscriberCpuSeconds: subscriberSeconds,
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
  // After podcert's processes have stopped, so each floor has the machine to itself as they had.
  const [burst] = measured;
  const floors: { floor: BurstFloor; run: string; r: Awaited<ReturnType<typeof measureBurstFloor>> }[] = [];
  for (const [floor, run] of [
    ["one write", "floor: the same stand-ins, one subscriber writing certificates made beforehand"],
    ["podcert's hops", "floor: the same stand-ins, podcert's hops and API calls with no work (3 processes)"],
  ] as const) {
    const r = await measureBurstFloor({ pcrs: n, floor, ...(o.timeoutSeconds === undefined ? {} : { timeoutSeconds: o.timeoutSeconds }) });
    floors.push({ floor, run, r });
    burst!.rows.push({
      run,
      PCRs: n,
      issued: n,
      "dead letters": 0,
      "seconds (first create → last Issued)": r.seconds,
      "PCRs/s": Math.round(n / r.seconds),
      "p50 ms": Math.round(r.p50),
      "p95 ms": Math.round(r.p95),
      "p99 ms": Math.round(r.p99),
    });
  }
  const said = floors.map(({ floor, r }) => `${floor} ${(r.p99 / 1000).toFixed(2)} s (${floorVerdict(r.p99 / 1000, 2, "max")})`).join("; ");
  const hops = floors.find((f) => f.floor === "podcert's hops")!.r;
  burst!.targets.push(target("burst: p99 creation → Issued", p99, "max", 2, "s", `floors' p99 in the same run: ${said}; podcert's p99 is ${(p99 / (hops.p99 / 1000)).toFixed(1)}× its hops' floor`));
  burst!.notes!.push(
    "floors (bench/floor-issuer.ts): the embedded API server with the manifests' RBAC, the emulated ApiServerSource, the local broker with its delivery settings and the same creates, with subscriber processes that do no work of their own (certificates made before the clock started; no checks, attestations or cryptography). `one write`: one subscriber writes each PCR's status on its add event — the least any signer behind this broker must do. `podcert's hops`: three subscribers in validate's, derive-sans' and sign's places (their ServiceAccounts, knative/triggers.yaml's routes) with the steps' Kubernetes API calls.",
    `floors' CPU per PCR (ms): ${floors.map(({ floor, r }) => `${floor}: harness ${((r.harnessCpuSeconds * 1000) / n).toFixed(1)}, subscribers ${((r.subscriberCpuSeconds * 1000) / n).toFixed(1)}`).join("; ")}`,
  );
  return measured;
}
