/**
 * `podcert issue`: every PCR in a cluster through validate → derive-sans → sign/deny in one
 * process, routed as the Broker routes them (the Triggers of knative/). Returns the PCRs afterwards, with their status.
 */
import type { StepName } from "../shared/steps.js";
import type { ClusterApi } from "../shared/kube/cluster.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import type { FunctionContext } from "../shared/runtime/function.js";
import { apiServerAddEvent } from "../shared/events/pcr-event.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { checkRoutes, deliver, mapLimit, type InProcessPipeline, type PipelineHop } from "../local-cluster/pipeline.js";
import { BROKER_NAME, loadTriggers, type TriggerRoute } from "../local-cluster/router.js";

export interface IssueResult {
  pcrs: PodCertificateRequest[];
  /** Per PCR uid: when its first event was delivered and its last reply handled (performance.now()). */
  timings: Map<string, { start: number; end: number }>;
  /** Per PCR uid: each step's delivery of its events (the last failing one says why it is pending). */
  hops: Map<string, PipelineHop[]>;
  /** When the Kubernetes Events the steps queued had all been sent (performance.now()). */
  eventsFlushedAt: number;
}

export async function issueAll(o: {
  cluster: ClusterApi;
  contexts: Record<StepName, FunctionContext>;
  concurrency?: number;
  maxAttempts?: number;
  backoffMs?: number;
  /** Default: the Triggers of this checkout's knative/. */
  routes?: readonly TriggerRoute[];
  onProgress?: (done: number, total: number) => void;
}): Promise<IssueResult> {
  const before = await o.cluster.listPcrs();
  const pipeline: InProcessPipeline = {
    routes: o.routes ?? loadTriggers(),
    broker: BROKER_NAME,
    functions: await loadFunctions(),
    contexts: o.contexts,
    maxAttempts: o.maxAttempts ?? 4,
    backoffMs: o.backoffMs ?? 50,
  };
  checkRoutes(pipeline);
  const timings = new Map<string, { start: number; end: number }>();
  const hops = new Map<string, PipelineHop[]>();
  let done = 0;
  await mapLimit(before, o.concurrency ?? 8, async (pcr) => {
    const start = performance.now();
    hops.set(pcr.metadata.uid ?? "", await deliver(pipeline, apiServerAddEvent(pcr)));
    timings.set(pcr.metadata.uid ?? "", { start, end: performance.now() });
    o.onProgress?.(++done, before.length);
  });
  await Promise.all([...new Set(Object.values(o.contexts).map((c) => c.events))].map((e) => e?.flush()));
  const eventsFlushedAt = performance.now();
  const after = await o.cluster.listPcrs();
  return { pcrs: after, timings, hops, eventsFlushedAt };
}

/** Why a request is still pending, and whether that is for an operator to fix. */
export interface PendingRequest {
  pcr: PodCertificateRequest;
  why: string;
  /** false: it waits for the pod's owner (a Service not created yet), or is for a signer podcert does not serve. */
  operatorSide: boolean;
}

/**
 * The requests `issueAll` left without a terminal condition, each with the error of its last
 * failed delivery. Only derive-sans' wait for Services is the user's to end (run-step.ts words it
 * "waiting for Services: …"); a request no step acted on is for a signer not configured here.
 */
export function pendingRequests(result: IssueResult, signers: ReadonlySet<string>): PendingRequest[] {
  const out: PendingRequest[] = [];
  for (const pcr of result.pcrs) {
    if (terminalCondition(pcr) !== undefined) continue;
    const failed = (result.hops.get(pcr.metadata.uid ?? "") ?? []).filter((h) => h.status >= 300).at(-1);
    if (failed === undefined) {
      const served = signers.has(pcr.spec.signerName);
      out.push({ pcr, why: served ? "no step acted on it" : `signer ${pcr.spec.signerName} is not configured here`, operatorSide: served });
      continue;
    }
    const why = `${failed.step}: ${failed.error ?? `HTTP ${failed.status}`}${failed.attempts > 1 ? ` (after ${failed.attempts} attempts)` : ""}`;
    out.push({ pcr, why, operatorSide: !(failed.error ?? "").startsWith("waiting for Services: ") });
  }
  return out;
}
