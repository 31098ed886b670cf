/**
 * What a podcert function is: a step name, the event types it consumes, and a handler from one
 * event to at most one reply. The HTTP server, `podcert invoke` and `podcert issue` all run the
 * same definitions.
 */
import { randomUUID } from "node:crypto";
import type { CaTrust } from "../ca/pool.js";
import type { CaPoolSource } from "../ca/pool-source.js";
import type { StepKeys } from "../events/attestation.js";
import type { PodcertEvent } from "../events/types.js";
import type { StepName } from "../steps.js";
import type { ClusterApi, ResyncApi, TrustApi } from "../kube/cluster.js";
import type { EventRecorder } from "../kube/event-recorder.js";
import type { ServicesIndex } from "../kube/services-index.js";
import type { SignerConfig } from "../profiles/config.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";

export interface FunctionContext {
  config: SignerConfig;
  cluster: ClusterApi;
  /** Its step keys; absent only for the dead-letter sink, which attests and verifies nothing (shared/steps.ts). */
  keys?: StepKeys;
  /**
   * Only `sign` is given one. Read per request (`current()`): the function's follows the pool file
   * as kubelet updates it (ca/pool-source.ts); the CLI's is fixed.
   */
  caPool?: CaPoolSource;
  now: () => Date;
  log: Logger;
  /** Records Kubernetes Events on PCRs (kubectl describe) in the background; absent: none. */
  events?: EventRecorder;
  /** Absent in one-shot CLI runs. */
  metrics?: Metrics;
  /**
   * Only derive-sans is given one, and only in a process that lives on (the function server): it
   * finds the Services selecting a pod without listing them all (kube/services-index.ts). Absent:
   * list them.
   */
  servicesIndex?: ServicesIndex;
  /** Only the trust publisher is given one (its registry entry says publishesTrust). */
  trust?: TrustContext;
  /** Only the resync sender is given one (its registry entry says postsToBroker). */
  resync?: ResyncContext;
}

/** What the resync sender works with: the paged PCR list, where to post, and its bounds. */
export interface ResyncContext {
  api: ResyncApi;
  /** Where its events go: K_SINK (the Broker's ingress, from a SinkBinding on a cluster). */
  sink: string;
  /** PCRs younger than this are left to their live events. */
  graceSeconds: number;
  /** At most this many events per run. */
  maxEvents: number;
  /** Items per LIST page. */
  pageSize: number;
  /** POSTs in flight at once. */
  concurrency: number;
  /** Longest wait for the sink's answer to one POST. */
  postTimeoutMs: number;
  /**
   * A file holding the Bearer token for the sink, read at each POST (it is refreshed in place):
   * with Eventing's OIDC on, the SinkBinding mounts one at /oidc/token and the Broker refuses
   * events without it.
   */
  sinkTokenFile?: string;
}

/** What the trust publisher works with: the CA certificates (never a key) and where it writes. */
export interface TrustContext {
  /** The CA trust document as it is now (read at each run: Kubernetes updates the mounted file in place). */
  read(): CaTrust;
  api: TrustApi;
  /** Where the SPIFFE bundles ConfigMap lives (the function's own namespace). */
  namespace: string;
  configMapName: string;
  refreshHintSeconds: number;
}

/** A GET answer for routes a function serves besides its events. */
export interface GetAnswer {
  status: number;
  contentType: string;
  body: string;
}

export interface FunctionDefinition {
  step: StepName;
  consumes: readonly string[];
  /** Every event type its replies can have (the Triggers must route each to a consumer, or end it). */
  emits: readonly string[];
  handle(event: PodcertEvent, ctx: FunctionContext): Promise<PodcertEvent | undefined>;
  /** Work done once the function listens (the trust publisher publishes at start). Errors are logged. */
  onStart?(ctx: FunctionContext): Promise<void>;
  /** GET paths it serves under `getPrefix` (e.g. /bundles/); undefined answers 404. */
  getPrefix?: string;
  get?(path: string, ctx: FunctionContext): Promise<GetAnswer | undefined>;
}

/** The step keys of a step that has them; a step without (the dead-letter sink) asking for them is a bug. */
export function stepKeys(ctx: FunctionContext): StepKeys {
  if (ctx.keys === undefined) throw new Error("this function has no step keys (shared/steps.ts: the dead-letter sink has none)");
  return ctx.keys;
}

/** A reply to `input`: carries its traceparent so one trace spans the pipeline. */
export function replyEvent(
  input: PodcertEvent,
  o: { step: StepName; type: string; subject: string; data: unknown; now: Date },
): PodcertEvent {
  const extensions: Record<string, string> = {};
  const traceparent = input.extensions.traceparent;
  if (traceparent !== undefined) extensions.traceparent = traceparent;
  const tracestate = input.extensions.tracestate;
  if (tracestate !== undefined) extensions.tracestate = tracestate;
  return {
    specversion: "1.0",
    id: randomUUID(),
    type: o.type,
    source: `/podcert/${o.step}`,
    subject: o.subject,
    time: o.now.toISOString(),
    datacontenttype: "application/json",
    data: o.data,
    extensions,
  };
}
