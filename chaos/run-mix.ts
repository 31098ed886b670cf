/**
 * One fault mix against a fresh local flow (function processes, the local broker, the emulated
 * ApiServerSource, the embedded API server, resync on a short timer): the burst of PCRs is created
 * as kubelets would, the late Services appear during it, and the run ends when every PCR is
 * terminal or the 15-minute cleaner would have deleted them.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { throwawayCaPool } from "../cli/ca-create.js";
import type { FaultKind } from "../local-cluster/faults.js";
import type { Delivery } from "../local-cluster/broker.js";
import { startLocalFlow, type LocalFlow } from "../local-cluster/flow.js";
import { mapLimit } from "../local-cluster/pipeline.js";
import { EVENT_TYPES, stepEntry, STEPS } from "../shared/steps.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { injectsNetworkFaults, type FaultMix } from "./mixes.js";
import type { ChaosScenario } from "./scenario.js";
import { judge, PCR_CLEANER_MS, pcrKeyOfSubject, type Judgement, type ObservedDeadLetter, type ObservedRequest } from "./verdict.js";

export interface MixTiming {
  /** How often the resync PingSource ticks (on a cluster: its schedule, 60 s by default). */
  resyncIntervalMs: number;
  /** resync's grace period (PODCERT_RESYNC_GRACE_SECONDS; 30 s by default). */
  resyncGraceSeconds: number;
  /** When the late Services are created, after the first PCR. */
  lateServiceDelayMs: number;
  /** Give up waiting this long after the first create (the cleaner's 15 minutes by default). */
  deadlineMs: number;
}

export const DEFAULT_TIMING: MixTiming = { resyncIntervalMs: 5_000, resyncGraceSeconds: 10, lateServiceDelayMs: 15_000, deadlineMs: PCR_CLEANER_MS };

export interface MixResult {
  mix: FaultMix;
  requests: ObservedRequest[];
  faults: Partial<Record<FaultKind, number>>;
  deadLetters: ObservedDeadLetter[];
  /** Deliveries the broker dropped on purpose (the drop fault). */
  lost: number;
  /**
   * PCRs resync re-announced before they ended, and of those the ones whose live chain had broken
   * (a dead letter, a dropped delivery, or no add event at all: the watch skipped it).
   */
  resyncResent: number;
  resyncRescued: number;
  restarts: number;
  /** Function processes that exited on their own (not killed by the run): each a bug. */
  unexpectedExits: number;
  judgement: Judgement;
  seconds: number;
}

export async function runMix(o: {
  mix: FaultMix;
  scenario: ChaosScenario;
  seed: number;
  logDir: string;
  timing?: Partial<MixTiming>;
  say?: (m: string) => void;
}): Promise<MixResult> {
  const timing = { ...DEFAULT_TIMING, ...o.timing };
  const say = o.say ?? (() => {});
  const config = defaultSignerConfig();
  const resyncAt = new Map<string, number[]>();
  const brokenChain = new Set<string>();
  // PCRs whose creation reached the broker (a watch that skipped it leaves only resync to find it).
  const announced = new Set<string>();
  const flow: LocalFlow = await startLocalFlow({
    objects: o.scenario.objects,
    config,
    caPool: await throwawayCaPool(config.signers.keys()),
    knativeDir: "knative",
    logDir: o.logDir,
    logLevel: "info",
    pingIntervalMs: timing.resyncIntervalMs,
    env: { PODCERT_RESYNC_GRACE_SECONDS: String(timing.resyncGraceSeconds) },
    faults: { seed: o.seed },
    onDelivery: (d: Delivery) => {
      const key = pcrKeyOfSubject(d.subject);
      if (key === undefined) return;
      const ok = typeof d.status === "number" && d.status >= 200 && d.status < 300;
      if (d.eventType === EVENT_TYPES.resync && ok) resyncAt.set(key, [...(resyncAt.get(key) ?? []), performance.now()]);
      if (d.eventType === EVENT_TYPES.apiServerAdd) announced.add(key);
    },
  });
  try {
    const byName = new Map(o.scenario.requests.map((r) => [`${r.pcr.metadata.namespace}/${r.pcr.metadata.name}`, r]));
    const observed = new Map<string, ObservedRequest>();
    for (const [key, r] of byName) {
      observed.set(key, { name: key, kind: r.kind, expected: r.expected, spki: r.spki, createdAt: Number.NaN, chainsWritten: [] });
    }
    // Every status the store accepts, in-process: when each PCR ended and each certificate written.
    const unwatch = flow.api.store.watch("podcertificaterequests", (e) => {
      const pcr = e.object as unknown as PodCertificateRequest;
      const r = observed.get(`${pcr.metadata.namespace}/${pcr.metadata.name}`);
      if (r === undefined || e.type === "DELETED") return;
      const chain = pcr.status?.certificateChain;
      if (chain !== undefined && chain !== r.chainsWritten[r.chainsWritten.length - 1]) r.chainsWritten.push(chain);
      const t = terminalCondition(pcr);
      if (t !== undefined && r.terminalAt === undefined) r.terminalAt = performance.now();
    });

    flow.setFaults({ ...(o.mix.api ? { api: o.mix.api } : {}), ...(o.mix.delivery ? { delivery: o.mix.delivery } : {}) });
    const started = performance.now();
    const late = setTimeout(() => {
      void mapLimit(o.scenario.lateServices, 4, (s) => create(flow, "/api/v1", s)).catch((e: unknown) => say(`   creating the late Services failed: ${(e as Error).message}`));
    }, timing.lateServiceDelayMs);
    // As many kubelets at once would: creates run concurrently, as the administrator (never faulted).
    await mapLimit(o.scenario.requests, 32, async (r) => {
      const key = `${r.pcr.metadata.namespace}/${r.pcr.metadata.name}`;
      observed.get(key)!.createdAt = performance.now();
      await create(flow, `/apis/${r.pcr.apiVersion}`, r.pcr as unknown as Record<string, unknown>);
    });

    const deadline = started + timing.deadlineMs;
    let lastReport = performance.now();
    const pending = () => [...observed.values()].filter((r) => r.terminalAt === undefined).length;
    while (performance.now() < deadline && pending() > 0) {
      await new Promise((r) => setTimeout(r, 100));
      if (performance.now() - lastReport > 5_000) {
        lastReport = performance.now();
        say(`   ${o.mix.name}: ${observed.size - pending()}/${observed.size} terminal after ${Math.round((lastReport - started) / 1000)} s, ${Object.values(flow.faultCounts()).reduce((a, b) => a + (b ?? 0), 0)} faults, ${flow.deadLetters.length} dead letters`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    clearTimeout(late);
    // The run is judged on what happened under faults; the deliveries still in flight (duplicates,
    // retries) finish without new faults, and any second certificate they wrote is counted.
    flow.setFaults({ api: undefined, delivery: undefined });
    await Promise.race([flow.broker.idle(), new Promise((r) => setTimeout(r, 30_000))]);
    unwatch();

    for (const pcr of flow.api.store.list("podcertificaterequests").items as unknown as PodCertificateRequest[]) {
      const r = observed.get(`${pcr.metadata.namespace}/${pcr.metadata.name}`);
      const t = pcr.status === undefined ? undefined : terminalCondition(pcr);
      if (r === undefined || t === undefined) continue;
      r.terminal = { type: t.type, ...(t.reason ? { reason: t.reason } : {}), ...(t.message ? { message: t.message } : {}) };
      if (pcr.status?.certificateChain !== undefined) r.certificateChain = pcr.status.certificateChain;
    }
    const failures = loggedFailures(o.logDir, new Set(flow.deadLetters.map((d) => d.event.id)));
    const deadLetters: ObservedDeadLetter[] = flow.deadLetters.map((d) => ({
      eventType: d.event.type,
      subscriber: d.subscriber,
      ...(d.event.subject === undefined ? {} : { subject: d.event.subject }),
      lastStatus: d.lastStatus,
      lastError: d.lastError,
      ...(failures.has(d.event.id) ? { logged: failures.get(d.event.id)! } : {}),
    }));
    for (const d of [...flow.deadLetters, ...flow.lostDeliveries]) {
      const key = pcrKeyOfSubject(d.event.subject);
      if (key !== undefined) brokenChain.add(key);
    }
    for (const key of observed.keys()) if (!announced.has(key)) brokenChain.add(key);
    let resyncResent = 0;
    let resyncRescued = 0;
    for (const r of observed.values()) {
      const before = (resyncAt.get(r.name) ?? []).filter((t) => r.terminalAt === undefined || t <= r.terminalAt);
      if (before.length === 0) continue;
      resyncResent++;
      if (brokenChain.has(r.name)) resyncRescued++;
    }
    const requests = [...observed.values()];
    const judgement = judge({ requests, deadLetters, injectedNetworkFaults: injectsNetworkFaults(o.mix) });
    if (flow.exits.length > 0) judgement.problems.push(`${flow.exits.length} function process(es) exited on their own: ${flow.exits.map((e) => e.name).join(", ")}`);
    return {
      mix: o.mix,
      requests,
      faults: flow.faultCounts(),
      deadLetters,
      lost: flow.lostDeliveries.length,
      resyncResent,
      resyncRescued,
      restarts: flow.kills.length + flow.exits.length,
      unexpectedExits: flow.exits.length,
      judgement,
      seconds,
    };
  } finally {
    await flow.stop();
  }
}

/**
 * The last failure each function logged for the given event ids (its error's message), from the
 * run's function logs: what a dead letter without an HTTP answer is explained by.
 */
function loggedFailures(logDir: string, ids: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  if (ids.size === 0) return out;
  // Not the dead-letter sink's log: its line for an event says only that it was dead-lettered.
  for (const step of STEPS.filter((s) => !stepEntry(s).deadLetterSink)) {
    let text: string;
    try {
      text = readFileSync(join(logDir, `${step}.log`), "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const id = /"eventId":"([^"]+)"/.exec(line)?.[1];
      if (id === undefined || !ids.has(id) || !/"level":"(warn|error)"/.test(line)) continue;
      try {
        const entry = JSON.parse(line) as { msg?: string; error?: { message?: string } };
        out.set(id, `${entry.msg ?? "failure"}: ${entry.error?.message ?? ""}`);
      } catch {
        // A line cut short by a killed process: the next one may do.
      }
    }
  }
  return out;
}

async function create(flow: LocalFlow, prefix: string, obj: Record<string, unknown>): Promise<void> {
  const meta = obj.metadata as { name: string; namespace: string };
  const plural = obj.kind === "Service" ? "services" : "podcertificaterequests";
  const res = await request(`${flow.api.url}${prefix}/namespaces/${meta.namespace}/${plural}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${flow.api.token()}` },
    body: JSON.stringify({ ...obj, metadata: { name: meta.name, namespace: meta.namespace } }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`creating ${String(obj.kind)} ${meta.namespace}/${meta.name} answered HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
}
