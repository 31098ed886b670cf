/**
 * Parts 3 and 6: a burst of PCRs through the local event flow over HTTP (separate function
 * processes, the local broker, the emulated ApiServerSource, the embedded API server), as a
 * kubelet restart or a worker-pool scale-up would send them; and each function's peak memory.
 */
import { throwawayCaPool } from "../cli/ca-create.js";
import { readFileSync } from "node:fs";
import { request } from "undici";
import { startLocalFlow } from "../local-cluster/flow.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { mapLimit } from "../local-cluster/pipeline.js";
import { syntheticCluster } from "./cluster.js";
import { percentile, target, type BenchPart } from "./report.js";

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

export async function runBurst(o: { pcrs?: number; timeoutSeconds?: number; say?: (m: string) => void } = {}): Promise<BenchPart[]> {
  const n = o.pcrs ?? 1000;
  // Half control-plane requests with DNS names (the heaviest path), half workers.
  const ate = syntheticCluster({ pods: Math.ceil(n / 2), keyType: "ECDSAP256", signer: "atesystem" });
  const workers = syntheticCluster({ pods: Math.floor(n / 2), keyType: "ECDSAP256", signer: "workerpool" });
  const nonPcr = (objs: Record<string, unknown>[]) => objs.filter((x) => x.kind !== "PodCertificateRequest");
  const objects = [...nonPcr(ate.objects), ...nonPcr(workers.objects).filter((x) => x.kind !== "Node")];
  const pcrs = [...ate.pcrs, ...workers.pcrs];

  const flow = await startLocalFlow({ objects, config: defaultSignerConfig(), caPool: await throwawayCaPool(defaultSignerConfig().signers.keys()), knativeDir: "knative", logLevel: "warn", ...(o.say ? { say: o.say } : {}) });
  try {
    const createdAt = new Map<string, number>();
    // Where the two cores go during the burst: the harness process (the embedded API server, the
    // broker, the emulated source, the PCR creates) and each function process.
    const harnessCpu = process.cpuUsage();
    const functionCpu = flow.processes.map((p) => cpuSeconds(p.child.pid));
    const firstCreate = performance.now();
    // As many kubelets at once would: creates run concurrently. They are plain POSTs (undici's
    // request, as podcert's own calls): the harness shares the two cores with what it measures.
    await mapLimit(pcrs, 32, async (pcr) => {
      const body = JSON.stringify({ ...pcr, metadata: { name: pcr.metadata.name, namespace: pcr.metadata.namespace } });
      const t = performance.now();
      const res = await request(`${flow.api.url}/apis/${pcr.apiVersion}/namespaces/${pcr.metadata.namespace}/podcertificaterequests`, {
        method: "POST",
        // The kubelets' stand-in is the cluster admin (the flow's API server enforces RBAC).
        headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${flow.api.token()}` },
        body,
      });
      const text = await res.body.text();
      if (res.statusCode !== 201) throw new Error(`creating PCR ${pcr.metadata.name} answered HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
      createdAt.set((JSON.parse(text) as PodCertificateRequest).metadata.uid ?? "", t);
    });
    const deadline = performance.now() + (o.timeoutSeconds ?? 120) * 1000;
    while (performance.now() < deadline) {
      if ([...createdAt.keys()].every((uid) => flow.finishedAt.has(uid))) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await flow.broker.idle();
    const latencies = [...createdAt.entries()].filter(([uid]) => flow.finishedAt.has(uid)).map(([uid, t]) => flow.finishedAt.get(uid)! - t).sort((a, b) => a - b);
    const lastFinish = Math.max(...[...flow.finishedAt.values()]);
    const stored = flow.api.store.list("podcertificaterequests").items as unknown as PodCertificateRequest[];
    const issued = stored.filter((p) => terminalCondition(p)?.type === "Issued").length;
    const seconds = (lastFinish - firstCreate) / 1000;
    const p99 = percentile(latencies, 99);
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
    const standIns = cpu[0]!.seconds;
    const burst: BenchPart = {
      title: `3. event flow over HTTP: burst of ${n} PCRs (P-256, half with DNS names)`,
      rows: [
        {
          PCRs: n,
          issued,
          "dead letters": flow.deadLetters.length,
          "seconds (first create → last Issued)": seconds,
          "PCRs/s": Math.round(issued / seconds),
          "p50 ms": Math.round(percentile(latencies, 50)),
          "p95 ms": Math.round(percentile(latencies, 95)),
          "p99 ms": Math.round(p99),
        },
      ],
      targets: [
        target("burst: all issued", issued, "min", n, "PCRs"),
        target(
          "burst: p99 creation → Issued",
          p99 / 1000,
          "max",
          2,
          "s",
          `the stand-ins alone (harness) used ${standIns.toFixed(1)} CPU s, ${(standIns / 2).toFixed(1)} s of both cores, and the whole flow ${cpuTotal.toFixed(1)} CPU s (${((cpuTotal / seconds / 2) * 100).toFixed(0)}% of the two cores while it ran)`,
        ),
      ],
      notes: [
        "Creation time is recorded by the harness when it sends the create; Issued when the emulated ApiServerSource sees the status.",
        `CPU from the first create to the end, per process (ms per PCR, of which in the kernel): ${cpu.map((c) => `${c.process} ${((c.seconds * 1000) / n).toFixed(1)} (${((c.system * 1000) / n).toFixed(1)})`).join(", ")}`,
      ],
    };
    const memory: BenchPart = {
      title: "6. memory: peak RSS per function under the burst",
      rows: flow.processes.map((p) => ({ function: p.name, "peak RSS MiB": Math.round(peakRssMiB(p.child.pid) * 10) / 10 })),
      targets: [],
    };
    return [burst, memory];
  } finally {
    await flow.stop();
  }
}
