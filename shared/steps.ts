/**
 * The step registry: every podcert function, the CloudEvent types it consumes and emits, whose
 * attestations it accepts and whether it holds the CA pool. It is the only list of steps: the
 * runtime, esbuild.config.mjs (one bundle each), bin/serve.mjs, the CLI and the local run (one
 * process each, loaded from local-cluster/functions.ts) and the manifest tests all read it.
 *
 * Adding a step = its folder (functions/<name>/handler.ts, exporting the definition under
 * `handlerExport`), its entry here, its manifests in knative/ (Service, ServiceAccount and RBAC,
 * Triggers for what it consumes; for ticks, its own PingSource podcert-<name>; when it posts to
 * the Broker itself, a SinkBinding); test/knative/ says what is missing.
 *
 * Node.js loads this file as it is (esbuild.config.mjs, bin/serve.mjs: Node 22.18+ strips types),
 * so it imports nothing and uses only TypeScript syntax that can be erased.
 */

/** The CloudEvent types podcert consumes and produces. */
export const EVENT_TYPES = {
  apiServerAdd: "dev.knative.apiserver.resource.add",
  apiServerUpdate: "dev.knative.apiserver.resource.update",
  resync: "dev.ate.podcert.request.resync",
  validated: "dev.ate.podcert.request.validated",
  sansDerived: "dev.ate.podcert.sans.derived",
  denied: "dev.ate.podcert.request.denied",
  issued: "dev.ate.podcert.request.issued",
  /** A Knative PingSource's tick (knative/publish-trust.yaml). */
  ping: "dev.knative.sources.ping",
} as const;
export type EventType = (typeof EVENT_TYPES)[keyof typeof EVENT_TYPES];

export interface StepEntry {
  /** Also its folder (functions/<name>/), its Knative Service and ServiceAccount (podcert-<name>) and its key folder. */
  readonly name: string;
  /** The export of functions/<name>/handler.ts that is its definition. */
  readonly handlerExport: string;
  readonly consumes: readonly EventType[];
  /** Every type its replies can have: the Triggers route each to its consumers, or nowhere (terminal). */
  readonly emits: readonly EventType[];
  /** Whose attestations it verifies (the public keys its Secret holds), in pipeline order. */
  readonly acceptsAttestationsFrom: readonly string[];
  /** Whether it is given the CA pool (its private keys). */
  readonly holdsCaPool: boolean;
  /** Whether it publishes the trust bundles: given the CA certificates (never the keys) and the trust API. */
  readonly publishesTrust: boolean;
  /**
   * Whether it posts events to the Broker itself (not through its reply): it is given K_SINK, set
   * on a cluster by a SinkBinding whose sink is the Broker, and in the local run by the local run.
   */
  readonly postsToBroker: boolean;
  /**
   * Whether it is the Broker's dead-letter sink (knative/broker.yaml deadLetterSink): no Trigger
   * routes to it (`consumes` stays empty), it takes an event of any type, replies with none, and
   * holds no step keys (it attests and verifies nothing).
   */
  readonly deadLetterSink: boolean;
  /**
   * Whether it talks to the Kubernetes API. Without it the function is given no kubeconfig (its
   * ServiceAccount token is not mounted) and its readiness does not wait for an API server.
   */
  readonly usesKubernetes: boolean;
  /**
   * Whether it keeps a Services index (kube/services-index.ts: list and watch Services, in the
   * namespaces whose pods ask for every Service selecting them). Its ClusterRole must allow
   * `watch` on services (knative/rbac.yaml).
   */
  readonly indexesServices: boolean;
}

/** In pipeline order (the local run gives them ports in this order). */
export const STEP_REGISTRY = [
  {
    name: "validate",
    handlerExport: "validate",
    consumes: [EVENT_TYPES.apiServerAdd, EVENT_TYPES.apiServerUpdate, EVENT_TYPES.resync],
    emits: [EVENT_TYPES.validated, EVENT_TYPES.denied],
    acceptsAttestationsFrom: [],
    holdsCaPool: false,
    publishesTrust: false,
    postsToBroker: false,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: false,
  },
  {
    name: "derive-sans",
    handlerExport: "deriveSans",
    consumes: [EVENT_TYPES.validated],
    emits: [EVENT_TYPES.sansDerived, EVENT_TYPES.denied],
    acceptsAttestationsFrom: ["validate"],
    holdsCaPool: false,
    publishesTrust: false,
    postsToBroker: false,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: true,
  },
  {
    name: "sign",
    handlerExport: "sign",
    consumes: [EVENT_TYPES.sansDerived],
    // A denial when the pod went away after derive-sans (the last check before the write).
    emits: [EVENT_TYPES.issued, EVENT_TYPES.denied],
    // validate's too, so a compromised derive-sans alone cannot get a certificate for a request
    // validate never accepted.
    acceptsAttestationsFrom: ["validate", "derive-sans"],
    holdsCaPool: true,
    publishesTrust: false,
    postsToBroker: false,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: false,
  },
  {
    name: "deny",
    handlerExport: "deny",
    consumes: [EVENT_TYPES.denied],
    emits: [],
    acceptsAttestationsFrom: ["validate", "derive-sans", "sign"],
    holdsCaPool: false,
    publishesTrust: false,
    postsToBroker: false,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: false,
  },
  {
    name: "publish-trust",
    handlerExport: "publishTrust",
    // Not part of a request's path: a PingSource ticks it, and it publishes once at start.
    consumes: [EVENT_TYPES.ping],
    emits: [],
    acceptsAttestationsFrom: [],
    holdsCaPool: false,
    publishesTrust: true,
    postsToBroker: false,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: false,
  },
  {
    name: "resync",
    handlerExport: "resync",
    // Off the request path: its own PingSource ticks it. It re-announces pending PCRs whose live
    // events were lost by POSTing request.resync events to the Broker (K_SINK), several per tick,
    // so nothing goes through its reply.
    consumes: [EVENT_TYPES.ping],
    emits: [],
    acceptsAttestationsFrom: [],
    holdsCaPool: false,
    publishesTrust: false,
    postsToBroker: true,
    deadLetterSink: false,
    usesKubernetes: true,
    indexesServices: false,
  },
  {
    name: "dead-letter",
    handlerExport: "deadLetter",
    // The Broker's dead-letter sink (knative/broker.yaml), not routed by any Trigger: the Broker
    // sends it what it could not deliver, of any type. It logs and counts each event, nothing else.
    consumes: [],
    emits: [],
    acceptsAttestationsFrom: [],
    holdsCaPool: false,
    publishesTrust: false,
    postsToBroker: false,
    deadLetterSink: true,
    usesKubernetes: false,
    indexesServices: false,
  },
] as const satisfies readonly StepEntry[];

export type StepName = (typeof STEP_REGISTRY)[number]["name"];
export const STEPS: readonly StepName[] = STEP_REGISTRY.map((s) => s.name);

/** The steps that hand on events, hence attest: the keys of a step event's attestations. */
export type AttestingStep = Extract<(typeof STEP_REGISTRY)[number], { emits: readonly [EventType, ...EventType[]] }>["name"];
export const ATTESTING_STEPS = STEP_REGISTRY.filter((s) => s.emits.length > 0).map((s) => s.name) as readonly AttestingStep[];

/** The steps with step keys (a Secret podcert-step-<name>): every one but the dead-letter sink. */
export type KeyedStep = Extract<(typeof STEP_REGISTRY)[number], { deadLetterSink: false }>["name"];
export const KEYED_STEPS = STEP_REGISTRY.filter((s) => !s.deadLetterSink).map((s) => s.name) as readonly KeyedStep[];
export function isKeyedStep(name: string): name is KeyedStep {
  return (KEYED_STEPS as readonly string[]).includes(name);
}

/** Whether `type` is one of podcert's own event types (the others are label value "other" in metrics). */
export function isPodcertEventType(type: string): type is EventType {
  return (Object.values(EVENT_TYPES) as string[]).includes(type);
}

export function stepEntry(name: StepName): StepEntry {
  const entry = STEP_REGISTRY.find((s) => s.name === name);
  if (entry === undefined) throw new Error(`no step named ${String(name)} in the registry`);
  return entry;
}

/** A step's name with what the registry says it consumes and emits: every definition starts from it. */
export function registered<N extends StepName>(step: N): { step: N; consumes: readonly EventType[]; emits: readonly EventType[] } {
  const { consumes, emits } = stepEntry(step);
  return { step, consumes, emits };
}

export function isStepName(name: string): name is StepName {
  return STEP_REGISTRY.some((s) => s.name === name);
}

/** Its Knative Service, ServiceAccount and process name. */
export const serviceName = (step: string): string => `podcert-${step}`;

/**
 * One attestation edge: `to` accepts attestations from `from`. The routing graph is fixed, so the
 * edges are too; each has its own MAC key, held by exactly its two ends (shared/events/step-keys.ts).
 */
export interface AttestationEdge {
  readonly from: StepName;
  readonly to: StepName;
}

/** Every edge of the registry, receivers in registry order, each receiver's senders in its order. */
export function attestationEdges(): readonly AttestationEdge[] {
  return STEP_REGISTRY.flatMap((r) => (r.acceptsAttestationsFrom as readonly StepName[]).map((from) => ({ from, to: r.name as StepName })));
}

/** The edge's key id (a JWK kid and a JWS header kid): ASCII, as header values are best kept. */
export function edgeKid(e: AttestationEdge): string {
  return `${e.from}->${e.to}`;
}

/** The edges `step` is an end of, as sender or receiver: the keys its Secret holds. */
export function edgesOf(step: StepName): readonly AttestationEdge[] {
  return attestationEdges().filter((e) => e.from === step || e.to === step);
}
