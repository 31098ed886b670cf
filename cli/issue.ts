/**
 * `podcert issue`: every PCR in a cluster through validate → derive-sans → sign/deny in one
 * process, routed as the Broker routes them (the Triggers of knative/). Returns the PCRs afterwards, with their status.
 */
import type { StepName } from "../shared/steps.js";
import type { ClusterApi } from "../shared/kube/cluster.js";
import type { PodCertificateRequest } from "../shared/pcr/model.js";
import type { FunctionContext } from "../shared/runtime/function.js";
import { apiServerAddEvent } from "../shared/events/pcr-event.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { checkRoutes, deliver, mapLimit, type InProcessPipeline } from "../local-cluster/pipeline.js";
import { BROKER_NAME, loadTriggers, type TriggerRoute } from "../local-cluster/router.js";

export interface IssueResult {
  pcrs: PodCertificateRequest[];
  /** Per PCR uid: when its first event was delivered and its last reply handled (performance.now()). */
  timings: Map<string, { start: number; end: number }>;
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
  let done = 0;
  await mapLimit(before, o.concurrency ?? 8, async (pcr) => {
    const start = performance.now();
    await deliver(pipeline, apiServerAddEvent(pcr));
    timings.set(pcr.metadata.uid ?? "", { start, end: performance.now() });
    o.onProgress?.(++done, before.length);
  });
  await Promise.all([...new Set(Object.values(o.contexts).map((c) => c.events))].map((e) => e?.flush()));
  const eventsFlushedAt = performance.now();
  const after = await o.cluster.listPcrs();
  return { pcrs: after, timings, eventsFlushedAt };
}
