/**
 * Loading and checking the manifests in knative/ without a cluster. Each check returns a list of
 * problems (empty when the manifests are right), so the tests can also run it on deliberately
 * broken copies and see it fail.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { bindingRules, parseRbacPolicy } from "../../local-cluster/apiserver/rbac.js";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Pod } from "kubernetes-models/v1/Pod";
import { ClusterRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole";
import { ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { Service as KnativeService } from "@kubernetes-models/knative/serving.knative.dev/v1/Service";
import { Broker } from "@kubernetes-models/knative/eventing.knative.dev/v1/Broker";
import { Trigger } from "@kubernetes-models/knative/eventing.knative.dev/v1/Trigger";
import { ApiServerSource } from "@kubernetes-models/knative/sources.knative.dev/v1/ApiServerSource";
import { PingSource } from "@kubernetes-models/knative/sources.knative.dev/v1/PingSource";
import { SinkBinding } from "@kubernetes-models/knative/sources.knative.dev/v1/SinkBinding";
import { parseIsoDurationMs } from "../../local-cluster/broker.js";
import { BROKER_NAME, routeEvent, triggerFilter, type TriggerRoute } from "../../local-cluster/router.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { EVENT_TYPES, isKeyedStep, isStepName, serviceName, STEP_REGISTRY, stepEntry } from "../../shared/steps.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const KNATIVE_DIR = join(ROOT, "knative");
export const NAMESPACE = "podcert";
export const BROKER = BROKER_NAME;

/** A parsed Kubernetes object; fields are read defensively, the schema check comes separately. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export interface Doc {
  file: string;
  index: number;
  obj: Obj;
}

export const where = (d: Doc) => `${d.file}#${d.index} ${d.obj.kind ?? "?"} ${d.obj.metadata?.name ?? "?"}`;

/** Every document of every YAML file in a folder (kustomization.yaml included), plus parse problems. */
export function loadDir(dir = KNATIVE_DIR): { docs: Doc[]; files: string[]; problems: string[] } {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  const docs: Doc[] = [];
  const problems: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(dir, file), "utf8");
    const parsed = parseYaml(text, file);
    problems.push(...parsed.problems);
    parsed.objects.forEach((obj, index) => docs.push({ file, index, obj }));
  }
  return { docs, files, problems };
}

/**
 * Parses a multi-document YAML text. kubectl reads YAML 1.1 (where `0444` is octal and `yes` a
 * boolean); the `yaml` package, like the local broker, reads 1.2. A document that means something
 * different under the two is a problem: the cluster and the local run would disagree.
 */
export function parseYaml(text: string, name: string): { objects: Obj[]; problems: string[] } {
  const problems: string[] = [];
  const objects: Obj[] = [];
  const v12 = parseAllDocuments(text);
  const v11 = parseAllDocuments(text, { version: "1.1" });
  if (!Array.isArray(v12) || !Array.isArray(v11)) return { objects, problems: [`${name}: not a YAML stream`] };
  v12.forEach((doc, i) => {
    for (const e of [...doc.errors, ...doc.warnings]) problems.push(`${name}#${i}: ${e.message}`);
    const obj = doc.toJSON() as unknown;
    if (obj === null || obj === undefined) return; // an empty document (e.g. a trailing ---)
    if (typeof obj !== "object" || Array.isArray(obj)) {
      problems.push(`${name}#${i}: not a mapping`);
      return;
    }
    if (JSON.stringify(obj) !== JSON.stringify(v11[i]?.toJSON())) {
      problems.push(`${name}#${i}: reads differently as YAML 1.1 (kubectl) and 1.2 (quote octal-looking numbers and yes/no/on/off)`);
    }
    objects.push(obj as Obj);
  });
  return { objects, problems };
}

/**
 * The schema model of each kind podcert's manifests (and README examples) may use. Kinds without
 * a model fail the check. kubernetes-models has no ClusterTrustBundle or PodCertificateRequest
 * (it is generated from an OpenAPI document without beta APIs that are off by default); knative/
 * ships neither, and the README test checks the ClusterTrustBundle by hand.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ModelClass = new (data?: any) => { validate(): void };
const MODELS: Readonly<Record<string, ModelClass>> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Pod": Pod,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "serving.knative.dev/v1/Service": KnativeService,
  "eventing.knative.dev/v1/Broker": Broker,
  "eventing.knative.dev/v1/Trigger": Trigger,
  "sources.knative.dev/v1/ApiServerSource": ApiServerSource,
  "sources.knative.dev/v1/PingSource": PingSource,
  "sources.knative.dev/v1/SinkBinding": SinkBinding,
};

const STATUS_REQUIRED_BY_MODEL_ONLY = new Set(["sources.knative.dev/v1/SinkBinding"]);

/** Kustomize's own file has no published schema model; it is checked by hand in the tests. */
export const isKustomization = (o: Obj) => o.apiVersion === "kustomize.config.k8s.io/v1beta1" && o.kind === "Kustomization";

const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterTrustBundle"]);

/** Validates an object against the JSON schema of its kind (kubernetes-models, @kubernetes-models/knative). */
export function schemaProblems(obj: Obj, name: string): string[] {
  const model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (model === undefined) return [`${name}: no schema model for ${obj.apiVersion} ${obj.kind}`];
  // The generated SinkBinding schema requires `status` (its Go field lacks omitempty); the API
  // server fills it in and never asks a client for it.
  const input = STATUS_REQUIRED_BY_MODEL_ONLY.has(`${obj.apiVersion}/${obj.kind}`) && obj.status === undefined ? { ...obj, status: {} } : obj;
  try {
    new model(input).validate();
    return [];
  } catch (e) {
    return [`${name}: ${(e as Error).message}`];
  }
}

/** Schema, namespace placement and uniqueness of every document. */
export function documentProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const d of docs) {
    if (isKustomization(d.obj)) continue;
    problems.push(...schemaProblems(d.obj, where(d)));
    const name = d.obj.metadata?.name;
    if (typeof name !== "string" || name === "") problems.push(`${where(d)}: no metadata.name`);
    const ns = d.obj.metadata?.namespace;
    if (CLUSTER_SCOPED.has(d.obj.kind)) {
      if (ns !== undefined) problems.push(`${where(d)}: cluster-scoped, must not set a namespace`);
    } else if (ns !== NAMESPACE) {
      problems.push(`${where(d)}: namespace must be ${NAMESPACE}, is ${String(ns)}`);
    }
    const key = `${d.obj.apiVersion}/${d.obj.kind}/${String(ns)}/${String(name)}`;
    if (seen.has(key)) problems.push(`${where(d)}: defined twice`);
    seen.add(key);
    if (d.obj.kind === "Secret" || d.obj.kind === "ClusterTrustBundle") {
      problems.push(`${where(d)}: CA material and keys are created by the user, never shipped in knative/`);
    }
  }
  return problems;
}

export const ofKind = (docs: readonly Doc[], apiVersion: string, kind: string): Doc[] =>
  docs.filter((d) => d.obj.apiVersion === apiVersion && d.obj.kind === kind);
export const knativeServices = (docs: readonly Doc[]) => ofKind(docs, "serving.knative.dev/v1", "Service");
export const triggers = (docs: readonly Doc[]) => ofKind(docs, "eventing.knative.dev/v1", "Trigger");

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

export interface FunctionIo {
  consumes: readonly string[];
  emits: readonly string[];
}

/** The event types the ApiServerSource produces: their Triggers must also filter on `kind`. */
export const API_SERVER_TYPES: readonly string[] = [EVENT_TYPES.apiServerAdd, EVENT_TYPES.apiServerUpdate];
export const PCR_KIND = "PodCertificateRequest";
export const TERMINAL_TYPES = ["dev.ate.podcert.request.issued"];

/**
 * The CloudEvent source Knative Eventing gives a PingSource's events (PingSourceSource in
 * knative/eventing pkg/apis/sources/v1/ping_lifecycle.go).
 */
export const pingSourceSource = (namespace: string, name: string): string => `/apis/v1/namespaces/${namespace}/pingsources/${name}`;
/**
 * Each function consuming the ping type has its own PingSource, named as its Service
 * (podcert-<fn>), and its Trigger filters on that PingSource's source: one function's ticks never
 * wake another.
 */
export const pingSourceNameOf = (fn: string): string => serviceName(fn);
export const pingSourceOf = (fn: string): string => pingSourceSource(NAMESPACE, pingSourceNameOf(fn));
/** The PingSource that ticks the trust publisher (knative/publish-trust.yaml), and its events' source. */
export const PING_SOURCE_NAME = pingSourceNameOf("publish-trust");
export const PING_SOURCE = pingSourceOf("publish-trust");

/**
 * Event types whose Triggers must match more than the type, because other producers send the same
 * type: Knative's generic ApiServerSource types (for every kind it watches) and ping type (from
 * every PingSource). The Triggers for these filter on exactly these attributes besides `type`.
 */
export const EXTRA_FILTERS: Readonly<Record<string, EventAttributes>> = {
  [EVENT_TYPES.apiServerAdd]: { kind: PCR_KIND },
  [EVENT_TYPES.apiServerUpdate]: { kind: PCR_KIND },
  [EVENT_TYPES.ping]: { source: PING_SOURCE },
};

/** EXTRA_FILTERS for a Trigger to `fn`: a ping Trigger filters on fn's own PingSource. */
export function extraFiltersFor(type: string, fn: string | undefined): EventAttributes {
  if (type === EVENT_TYPES.ping && fn !== undefined) return { source: pingSourceOf(fn) };
  return EXTRA_FILTERS[type] ?? {};
}

export { serviceName };

/** What each registered step consumes and emits (shared/steps.ts), by name. */
export const REGISTERED: Readonly<Record<string, FunctionIo>> = Object.fromEntries(STEP_REGISTRY.map((s) => [s.name, s]));

/** A CloudEvent's attributes and extensions, as a Trigger filter sees them. */
export type EventAttributes = Readonly<Record<string, string>>;

/**
 * The Knative Services an event reaches, routed by the code the local broker and the in-process
 * pipeline route with (local-cluster/router.ts); only the reading of the documents is lenient here,
 * so broken copies can be checked too.
 */
export function route(docs: readonly Doc[], event: EventAttributes): string[] {
  const routes: TriggerRoute[] = triggers(docs).map((t) => ({
    name: String(t.obj.metadata?.name),
    broker: String(t.obj.spec?.broker),
    filter: triggerFilter(t.obj.spec?.filter?.attributes),
    subscriber: String(t.obj.spec?.subscriber?.ref?.name),
  }));
  const { type = "", source = "", id = "x", subject, ...extensions } = event;
  const cloudEvent: PodcertEvent = { specversion: "1.0", id, type, source, data: undefined, extensions, ...(subject === undefined ? {} : { subject }) };
  return routeEvent(routes, BROKER, cloudEvent).map((r) => r.subscriber).sort();
}

/**
 * An event of a type, as its producer would send it: the ApiServerSource adds the kind extension,
 * the PingSource names itself as the source.
 */
export const eventOf = (type: string, kind = PCR_KIND, pingFor = "publish-trust"): EventAttributes => {
  if (API_SERVER_TYPES.includes(type)) return { type, kind, source: "https://kubernetes.default", apiversion: "certificates.k8s.io/v1" };
  if (type === EVENT_TYPES.ping) return { type, source: pingSourceOf(pingFor) };
  return { type, source: "/podcert/test" };
};
/** The event of a type that `fn` consumes, as its producer sends it (for pings: fn's own PingSource). */
export const eventFor = (type: string, fn: string): EventAttributes => eventOf(type, PCR_KIND, fn);

export function routingProblems(docs: readonly Doc[], functions: Readonly<Record<string, FunctionIo>>): string[] {
  const problems: string[] = [];
  const services = new Set(knativeServices(docs).map((d) => d.obj.metadata?.name as string));
  const brokers = ofKind(docs, "eventing.knative.dev/v1", "Broker").map((d) => d.obj.metadata?.name);
  if (!brokers.includes(BROKER)) problems.push(`no Broker named ${BROKER}`);
  const fnOfService = new Map(Object.keys(functions).map((fn) => [serviceName(fn), fn]));
  const seenRoutes = new Set<string>();

  for (const t of triggers(docs)) {
    const name = where(t);
    const spec: Obj = t.obj.spec ?? {};
    if (spec.broker !== BROKER) problems.push(`${name}: broker must be ${BROKER}, is ${String(spec.broker)}`);
    if (spec.filters !== undefined) problems.push(`${name}: only exact spec.filter.attributes are used, not spec.filters`);
    const ref: Obj = spec.subscriber?.ref ?? {};
    if (ref.apiVersion !== "serving.knative.dev/v1" || ref.kind !== "Service") {
      problems.push(`${name}: the subscriber must be a Knative Service (serving.knative.dev/v1 Service)`);
    }
    if (spec.subscriber?.uri !== undefined) problems.push(`${name}: subscriber by URI; name the Service by ref`);
    if (!services.has(ref.name)) problems.push(`${name}: subscriber ${String(ref.name)} is not a Knative Service in knative/`);
    const filter: Obj = spec.filter?.attributes ?? {};
    const type = filter.type;
    if (typeof type !== "string") {
      problems.push(`${name}: no exact type filter`);
      continue;
    }
    const fn = fnOfService.get(ref.name);
    const extra = extraFiltersFor(type, fn);
    const expectedKeys = ["type", ...Object.keys(extra)].sort();
    if (JSON.stringify(Object.keys(filter).sort()) !== JSON.stringify(expectedKeys)) {
      problems.push(`${name}: filter attributes must be exactly ${expectedKeys.join(", ")}, are ${Object.keys(filter).join(", ")}`);
    }
    for (const [k, v] of Object.entries(extra)) if (filter[k] !== v) problems.push(`${name}: must filter on ${k} ${v}`);
    if (fn === undefined) {
      if (services.has(ref.name)) problems.push(`${name}: routes ${type} to ${String(ref.name)}, which is not one of the functions`);
      continue;
    }
    if (!functions[fn]!.consumes.includes(type)) problems.push(`${name}: routes ${type} to ${fn}, which does not consume it`);
    if (functions[fn]!.emits.includes(type)) problems.push(`${name}: routes ${type} back into ${fn}, which emits it (a loop)`);
    const key = `${fn} ${type}`;
    if (seenRoutes.has(key)) problems.push(`${name}: a second Trigger for ${key}`);
    seenRoutes.add(key);
  }

  // Every type a function consumes reaches it through exactly one Trigger.
  for (const [fn, io] of Object.entries(functions)) {
    for (const type of io.consumes) {
      const n = route(docs, eventFor(type, fn)).filter((s) => s === serviceName(fn)).length;
      if (n !== 1) problems.push(`${type} reaches ${fn} ${n} times, expected once`);
    }
  }
  // Every type a function emits reaches exactly the functions that consume it; terminal ones none.
  const emitted = new Set(Object.values(functions).flatMap((io) => io.emits));
  for (const type of emitted) {
    const expected = Object.entries(functions)
      .filter(([, io]) => io.consumes.includes(type))
      .map(([fn]) => serviceName(fn))
      .sort();
    const actual = route(docs, eventOf(type));
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      problems.push(`${type} reaches [${actual.join(", ")}], expected [${expected.join(", ")}]`);
    }
    if (TERMINAL_TYPES.includes(type)) {
      if (actual.length > 0) problems.push(`${type} is terminal but reaches ${actual.join(", ")}`);
    } else if (expected.length === 0) {
      problems.push(`${type} is emitted but no function consumes it`);
    }
  }
  // A function's own ticks wake it alone.
  for (const fn of Object.keys(functions).filter((f) => functions[f]!.consumes.includes(EVENT_TYPES.ping))) {
    const woken = route(docs, eventFor(EVENT_TYPES.ping, fn));
    if (JSON.stringify(woken) !== JSON.stringify([serviceName(fn)])) problems.push(`${fn}'s ticks (source ${pingSourceOf(fn)}) reach [${woken.join(", ")}], expected [${serviceName(fn)}]`);
  }
  // ApiServerSource events about other kinds, and other PingSources' ticks, reach nobody.
  for (const [type, extra] of Object.entries(EXTRA_FILTERS)) {
    for (const k of Object.keys(extra)) {
      const another = k === "kind" ? "Pod" : k === "source" ? pingSourceSource(NAMESPACE, "another") : `not-${extra[k]!}`;
      const other = route(docs, { ...eventOf(type), [k]: another });
      if (other.length > 0) problems.push(`${type} with another ${k} reaches ${other.join(", ")}`);
    }
  }
  // The function graph (producer -> consumer through the Broker) has no cycle.
  const next = new Map<string, string[]>();
  for (const [fn, io] of Object.entries(functions)) {
    next.set(fn, [...new Set(io.emits.flatMap((type) => route(docs, eventOf(type))))].map((s) => fnOfService.get(s) ?? s));
  }
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (fn: string, path: string[]): void => {
    if (done.has(fn)) return;
    if (visiting.has(fn)) {
      problems.push(`event loop: ${[...path, fn].join(" -> ")}`);
      return;
    }
    visiting.add(fn);
    for (const n of next.get(fn) ?? []) visit(n, [...path, fn]);
    visiting.delete(fn);
    done.add(fn);
  };
  for (const fn of Object.keys(functions)) visit(fn, []);
  return problems;
}

/**
 * The seconds between a cron schedule's ticks, for the one form the manifests use: every N
 * minutes (`*\/N * * * *`, or `* * * * *`), N dividing 60 so that the ticks are evenly spaced
 * across the hour. Anything else throws: this check would not know its period.
 */
export function tickSeconds(schedule: unknown): number {
  const m = typeof schedule === "string" ? /^(\*|\*\/(\d+)) \* \* \* \*$/.exec(schedule.trim()) : null;
  const every = m === null ? NaN : m[2] === undefined ? 1 : Number(m[2]);
  if (!(every >= 1 && every <= 60 && 60 % every === 0)) throw new Error(`schedule ${JSON.stringify(schedule)} is not "*/N * * * *" with N dividing 60`);
  return every * 60;
}

/**
 * The PingSource that ticks the functions consuming the ping type: there is exactly the one the
 * Triggers expect, its ticks go into the Broker (and so get its retries and dead-letter sink) and
 * reach a function, its schedule is regular, and the SPIFFE refresh hint the trust publisher
 * hands out equals the tick period (consumers re-fetch as often as the bundles can change).
 */
export function pingSourceProblems(docs: readonly Doc[], functions: Readonly<Record<string, FunctionIo>>): string[] {
  const problems: string[] = [];
  const pings = ofKind(docs, "sources.knative.dev/v1", "PingSource");
  const consumers = Object.entries(functions)
    .filter(([, io]) => io.consumes.includes(EVENT_TYPES.ping))
    .map(([fn]) => fn);
  const ownerOf = new Map<Doc, string>();
  for (const fn of consumers) {
    const own = pings.filter((d) => d.obj.metadata?.namespace === NAMESPACE && d.obj.metadata?.name === pingSourceNameOf(fn));
    if (own.length !== 1) problems.push(`${fn} consumes ${EVENT_TYPES.ping}: expected one PingSource ${NAMESPACE}/${pingSourceNameOf(fn)}, found ${own.length}`);
    for (const d of own) ownerOf.set(d, fn);
  }
  for (const d of pings) {
    const p = (m: string) => problems.push(`${where(d)}: ${m}`);
    const spec: Obj = d.obj.spec ?? {};
    const sink = JSON.stringify(spec.sink);
    const broker = JSON.stringify({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: BROKER } });
    if (sink !== broker) p(`sink must be ${broker} (the Broker, by ref), is ${String(sink)}`);
    const source = pingSourceSource(String(d.obj.metadata?.namespace), String(d.obj.metadata?.name));
    if (route(docs, { type: EVENT_TYPES.ping, source }).length === 0) p(`its ticks (source ${source}) reach no function`);
    let period: number;
    try {
      period = tickSeconds(spec.schedule);
    } catch (e) {
      p((e as Error).message);
      continue;
    }
    const fn = ownerOf.get(d);
    if (fn !== undefined && isStepName(fn) && stepEntry(fn).publishesTrust) {
      const svc = knativeServices(docs).find((s) => s.obj.metadata?.name === serviceName(fn));
      const hint = (svc?.obj.spec?.template?.spec?.containers?.[0]?.env ?? []).find((e: Obj) => e.name === "PODCERT_SPIFFE_REFRESH_HINT_SECONDS")?.value;
      if (svc !== undefined && hint !== String(period)) p(`ticks every ${period} s, but ${serviceName(fn)} hands out a SPIFFE refresh hint of ${String(hint)} s`);
    }
  }
  return problems;
}

/**
 * The SinkBindings: each step that posts to the Broker itself (registry: postsToBroker) is the
 * subject of exactly one, by its Knative Service, whose sink is the Broker by ref (so Eventing
 * injects K_SINK = the Broker's ingress URL); no other workload is given a sink.
 */
export function sinkBindingProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  const bindings = ofKind(docs, "sources.knative.dev/v1", "SinkBinding");
  const broker = JSON.stringify({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: BROKER } });
  const posters = STEP_REGISTRY.filter((s) => s.postsToBroker).map((s) => s.name as string);
  const bound = new Map<string, number>();
  for (const d of bindings) {
    const p = (m: string) => problems.push(`${where(d)}: ${m}`);
    const spec: Obj = d.obj.spec ?? {};
    if (JSON.stringify(spec.sink) !== broker) p(`sink must be ${broker} (the Broker, by ref), is ${String(JSON.stringify(spec.sink))}`);
    const subject: Obj = spec.subject ?? {};
    if (subject.apiVersion !== "serving.knative.dev/v1" || subject.kind !== "Service" || typeof subject.name !== "string" || subject.selector !== undefined) {
      p("subject must be one Knative Service by name (serving.knative.dev/v1 Service)");
      continue;
    }
    const fn = posters.find((f) => serviceName(f) === subject.name);
    if (fn === undefined) {
      p(`binds ${String(subject.name)}, which does not post to the Broker (shared/steps.ts postsToBroker)`);
      continue;
    }
    bound.set(fn, (bound.get(fn) ?? 0) + 1);
  }
  for (const fn of posters) if ((bound.get(fn) ?? 0) !== 1) problems.push(`${fn} posts to the Broker: expected one SinkBinding with subject ${serviceName(fn)}, found ${bound.get(fn) ?? 0}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

/** One permission: "<scope> <apiGroup> <resource> <verb> <resourceName or *>". */
export type Grant = string;

/**
 * The effective permissions of every ServiceAccount named in a binding, computed from the
 * Roles/ClusterRoles and bindings in the documents, each rule expanded to single grants. The
 * documents are read and the roles resolved by the embedded API server's own RBAC code
 * (local-cluster/apiserver/rbac.ts), so this list and what the local run enforces cannot disagree.
 * Anything that cannot be computed from the documents alone (a binding to a role defined
 * elsewhere, an aggregated ClusterRole, users or groups as subjects), anything kube-apiserver
 * would refuse, and any wildcard is a problem.
 */
export function effectiveGrants(docs: readonly Doc[]): { grants: Map<string, Set<Grant>>; problems: string[] } {
  const { policy, problems } = parseRbacPolicy(docs.map((d) => d.obj));
  const grants = new Map<string, Set<Grant>>();
  for (const b of [...policy.clusterRoleBindings, ...policy.roleBindings]) {
    const what = `${b.kind} ${b.namespace ? `${b.namespace}/` : ""}${b.name}`;
    const key = b.roleRef.kind === "ClusterRole" ? `ClusterRole//${b.roleRef.name}` : `Role/${b.namespace}/${b.roleRef.name}`;
    const resolved = bindingRules(policy, b);
    if ("error" in resolved) {
      problems.push(`${what}: binds ${b.roleRef.kind} ${b.roleRef.name}, which knative/ does not define (its rules cannot be checked)`);
      continue;
    }
    const scope = b.namespace === undefined ? "cluster" : `namespace:${b.namespace}`;
    for (const s of b.subjects) {
      if (s.kind !== "ServiceAccount") {
        problems.push(`${what}: subject ${s.kind} ${s.name}: only ServiceAccounts are bound`);
        continue;
      }
      const subject = `${s.namespace ?? b.namespace}/${s.name}`;
      const set = grants.get(subject) ?? new Set<Grant>();
      grants.set(subject, set);
      for (const r of resolved.rules) {
        if (r.nonResourceURLs.length > 0) problems.push(`${what}: grants nonResourceURLs`);
        const names = r.resourceNames.length > 0 ? r.resourceNames : ["*"];
        for (const [field, values] of Object.entries({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs, resourceNames: r.resourceNames })) {
          if (values.includes("*")) problems.push(`${key}: wildcard in ${field}`);
        }
        for (const g of r.apiGroups) {
          for (const res of r.resources) {
            for (const v of r.verbs) for (const n of names) set.add(`${scope} ${g === "" ? "core" : g} ${res} ${v} ${n}`);
          }
        }
      }
    }
  }
  return { grants, problems };
}

/**
 * Grants written compactly: [apiGroup, resource, verbs, resourceNames?], cluster-wide or, given a
 * namespace, in that namespace only (a RoleBinding's).
 */
type Rule = readonly [group: string, resource: string, verbs: readonly string[], resourceNames?: readonly string[]];
export function grantsOf(rules: readonly Rule[], namespace?: string): Set<Grant> {
  const scope = namespace === undefined ? "cluster" : `namespace:${namespace}`;
  const out = new Set<Grant>();
  for (const [group, resource, verbs, names] of rules) {
    for (const v of verbs) for (const n of names ?? ["*"]) out.add(`${scope} ${group === "" ? "core" : group} ${resource} ${v} ${n}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Knative Services
// ---------------------------------------------------------------------------------------------

export const CONTRACT = {
  keysDir: "/var/run/podcert/keys",
  config: "/etc/podcert/config.yaml",
  caPool: "/var/run/podcert/ca/ca-pool.yaml",
  configMap: "podcert-config",
  configKey: "config.yaml",
  caSecret: "podcert-ca-pool",
  caKey: "ca-pool.yaml",
  stepSecret: (fn: string) => `podcert-step-${fn}`,
  /** The trust publisher's: the CA certificates without keys, and where it writes the SPIFFE bundles. */
  caTrust: "/var/run/podcert/trust/ca-trust.yaml",
  caTrustSecret: "podcert-ca-trust",
  caTrustKey: "ca-trust.yaml",
  spiffeConfigMap: "podcert-spiffe-bundles",
  /** The runtime's bounds on PODCERT_SPIFFE_REFRESH_HINT_SECONDS (shared/runtime/main.ts). */
  refreshHintSeconds: { min: 10, max: 86_400 },
} as const;

/** The environment only the trust publisher is given. */
const TRUST_ENV = ["PODCERT_CA_TRUST", "POD_NAMESPACE", "PODCERT_SPIFFE_BUNDLES_CONFIGMAP", "PODCERT_SPIFFE_REFRESH_HINT_SECONDS"];
/** The environment only a step posting to the Broker (the resync sender) is given (K_SINK comes from its SinkBinding). */
const RESYNC_ENV = ["PODCERT_RESYNC_GRACE_SECONDS", "PODCERT_RESYNC_MAX_EVENTS", "PODCERT_RESYNC_PAGE_SIZE", "PODCERT_RESYNC_CONCURRENCY"];

/**
 * The steps on the way to an Issued status: the one that emits request.issued, and every step
 * whose events reach one of those (through the consumers the registry names). A pod waits on each
 * of them, so each keeps a warm pod (knative/services.yaml); the others (deny: its pod does not
 * start anyway; publish-trust: woken by a PingSource) scale to zero.
 */
export function issuancePath(functions: Readonly<Record<string, FunctionIo>>): Set<string> {
  const onPath = new Set(Object.keys(functions).filter((fn) => functions[fn]!.emits.includes(EVENT_TYPES.issued)));
  for (let grew = true; grew; ) {
    grew = false;
    for (const [fn, io] of Object.entries(functions)) {
      if (onPath.has(fn)) continue;
      if (io.emits.some((t) => [...onPath].some((next) => functions[next]!.consumes.includes(t)))) {
        onPath.add(fn);
        grew = true;
      }
    }
  }
  return onPath;
}

const dirname = (p: string) => p.slice(0, p.lastIndexOf("/"));
const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** Every Secret a pod template can read: secret volumes, projected secrets, env and envFrom. */
export function secretsOf(template: Obj): Set<string> {
  const out = new Set<string>();
  for (const v of template.spec?.volumes ?? []) {
    if (v.secret) out.add(v.secret.secretName);
    for (const s of v.projected?.sources ?? []) if (s.secret) out.add(s.secret.name);
  }
  for (const c of [...(template.spec?.containers ?? []), ...(template.spec?.initContainers ?? [])]) {
    for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) out.add(e.valueFrom.secretKeyRef.name);
    for (const e of c.envFrom ?? []) if (e.secretRef) out.add(e.secretRef.name);
  }
  return out;
}

/** The volume mounted at a path, and the file a key of it becomes there. */
function mountedFile(template: Obj, container: Obj, filePath: string): { volume: Obj | undefined; problems: string[] } {
  const mount = (container.volumeMounts ?? []).find((m: Obj) => m.mountPath === dirname(filePath));
  if (mount === undefined) return { volume: undefined, problems: [`nothing is mounted at ${dirname(filePath)}`] };
  const volume = (template.spec?.volumes ?? []).find((v: Obj) => v.name === mount.name);
  return { volume, problems: volume === undefined ? [`mount ${mount.name} has no volume`] : [] };
}

/** Whether a Secret/ConfigMap volume puts `key` at file `file` (all keys when `items` is unset). */
function projectsKey(source: Obj | undefined, key: string, file: string): boolean {
  if (source === undefined) return false;
  if (source.items === undefined) return key === file;
  return source.items.some((i: Obj) => i.key === key && i.path === file);
}

/** One function's Knative Service against the runtime contract. */
export function functionServiceProblems(docs: readonly Doc[], fn: string, stepKeyFiles: readonly string[]): string[] {
  const problems: string[] = [];
  const svcs = knativeServices(docs).filter((d) => d.obj.metadata?.name === serviceName(fn));
  if (svcs.length !== 1) return [`${fn}: ${svcs.length} Knative Services named ${serviceName(fn)}, expected 1`];
  const svc = svcs[0]!.obj;
  const p = (m: string) => problems.push(`${serviceName(fn)}: ${m}`);
  if (svc.metadata?.labels?.["networking.knative.dev/visibility"] !== "cluster-local") p("not labelled networking.knative.dev/visibility: cluster-local");
  const template: Obj = svc.spec?.template ?? {};
  const spec: Obj = template.spec ?? {};
  if (spec.serviceAccountName !== serviceName(fn)) p(`runs as ServiceAccount ${String(spec.serviceAccountName)}, expected ${serviceName(fn)}`);
  if (!ofKind(docs, "v1", "ServiceAccount").some((d) => d.obj.metadata?.name === spec.serviceAccountName)) p("its ServiceAccount is not defined");
  if (!(Number.isInteger(spec.containerConcurrency) && spec.containerConcurrency > 0)) p("containerConcurrency must be a positive integer (the handlers are concurrent)");
  const containers: Obj[] = spec.containers ?? [];
  if (containers.length !== 1) {
    p(`${containers.length} containers, expected 1`);
    return problems;
  }
  const c = containers[0]!;
  if (!new RegExp(`(^|/)podcert-${fn}(:|@|$)`).test(String(c.image))) p(`image ${String(c.image)} is not podcert-${fn}`);

  // Environment: exactly the contract's paths; the CA pool and the CA trust only for the steps the
  // registry gives them.
  const holdsCaPool = isStepName(fn) && stepEntry(fn).holdsCaPool;
  const publishesTrust = isStepName(fn) && stepEntry(fn).publishesTrust;
  if (holdsCaPool && publishesTrust) p("holds the CA pool and publishes trust: the publisher must never hold a CA key (shared/steps.ts)");
  // The dead-letter sink (registry: deadLetterSink) has no step keys and no use for the signer
  // configuration; a step without Kubernetes access (usesKubernetes false) gets no token.
  const keyed = isStepName(fn) && isKeyedStep(fn);
  const deadLetterSink = isStepName(fn) && stepEntry(fn).deadLetterSink;
  const usesKubernetes = isStepName(fn) && stepEntry(fn).usesKubernetes;
  if (!usesKubernetes && spec.automountServiceAccountToken !== false) p("does not use Kubernetes (shared/steps.ts): automountServiceAccountToken must be false");
  if (usesKubernetes && spec.automountServiceAccountToken === false) p("uses Kubernetes (shared/steps.ts), yet its ServiceAccount token is not mounted");
  const env = new Map<string, Obj>((c.env ?? []).map((e: Obj) => [e.name, e]));
  const expectEnv: Record<string, string> = {
    ...(keyed ? { PODCERT_KEYS_DIR: CONTRACT.keysDir } : {}),
    ...(deadLetterSink ? {} : { PODCERT_CONFIG: CONTRACT.config }),
  };
  if (!keyed && env.has("PODCERT_KEYS_DIR")) p("has no step keys (shared/steps.ts), yet is given PODCERT_KEYS_DIR");
  if (deadLetterSink && env.has("PODCERT_CONFIG")) p("the dead-letter sink reads no signer configuration, yet is given PODCERT_CONFIG");
  if (holdsCaPool) expectEnv.PODCERT_CA_POOL = CONTRACT.caPool;
  if (publishesTrust) {
    expectEnv.PODCERT_CA_TRUST = CONTRACT.caTrust;
    // Its own namespace, where rbac.yaml's Role lets it write the ConfigMap.
    expectEnv.POD_NAMESPACE = String(svc.metadata?.namespace);
    expectEnv.PODCERT_SPIFFE_BUNDLES_CONFIGMAP = CONTRACT.spiffeConfigMap;
  }
  for (const [k, v] of Object.entries(expectEnv)) if (env.get(k)?.value !== v) p(`env ${k} must be ${v}, is ${String(env.get(k)?.value)}`);
  if (!holdsCaPool && env.has("PODCERT_CA_POOL")) p("only a step that holds the CA pool (shared/steps.ts) is given PODCERT_CA_POOL");
  if (publishesTrust) {
    const hint = env.get("PODCERT_SPIFFE_REFRESH_HINT_SECONDS")?.value;
    const { min, max } = CONTRACT.refreshHintSeconds;
    if (!(typeof hint === "string" && /^\d+$/.test(hint) && Number(hint) >= min && Number(hint) <= max)) {
      p(`env PODCERT_SPIFFE_REFRESH_HINT_SECONDS must be whole seconds from ${min} to ${max}, is ${String(hint)}`);
    }
  } else {
    for (const k of TRUST_ENV) if (env.has(k)) p(`only the trust publisher (shared/steps.ts) is given ${k}`);
  }
  const postsToBroker = isStepName(fn) && stepEntry(fn).postsToBroker;
  // Written by hand, it would point at one Broker implementation's URL and hide a missing SinkBinding.
  if (env.has("K_SINK")) p("K_SINK is the SinkBinding's to inject (sinkBindingProblems)");
  if (!postsToBroker) for (const k of RESYNC_ENV) if (env.has(k)) p(`only a step that posts to the Broker (shared/steps.ts) is given ${k}`);
  for (const e of c.env ?? []) {
    // Knative's webhook refuses these unless the cluster enables kubernetes.podspec-fieldref.
    if (e.valueFrom?.fieldRef !== undefined || e.valueFrom?.resourceFieldRef !== undefined) p(`env ${String(e.name)}: Knative refuses the downward API in env by default (kubernetes.podspec-fieldref); write the value`);
  }
  if (env.has("PORT")) p("PORT is Knative's to set");
  if (c.envFrom !== undefined) p("envFrom: name each variable");

  // Mounts: each env path is backed by the right Secret/ConfigMap key, read-only.
  if (keyed) {
    const keys = mountedFile(template, c, `${CONTRACT.keysDir}/x`);
    keys.problems.forEach(p);
    if (keys.volume && keys.volume.secret?.secretName !== CONTRACT.stepSecret(fn)) p(`${CONTRACT.keysDir} must be Secret ${CONTRACT.stepSecret(fn)}`);
    for (const f of stepKeyFiles) if (keys.volume && !projectsKey(keys.volume.secret, f, f)) p(`${CONTRACT.keysDir}/${f} is not projected from its Secret`);
  }
  if (!deadLetterSink) {
    const config = mountedFile(template, c, CONTRACT.config);
    config.problems.forEach(p);
    if (config.volume && config.volume.configMap?.name !== CONTRACT.configMap) p(`${dirname(CONTRACT.config)} must be ConfigMap ${CONTRACT.configMap}`);
    if (config.volume && !projectsKey(config.volume.configMap, CONTRACT.configKey, basename(CONTRACT.config))) p(`${CONTRACT.config} is not key ${CONTRACT.configKey}`);
  } else if ((spec.volumes ?? []).length > 0) {
    p("the dead-letter sink mounts nothing");
  }
  if (holdsCaPool) {
    const ca = mountedFile(template, c, CONTRACT.caPool);
    ca.problems.forEach(p);
    if (ca.volume && ca.volume.secret?.secretName !== CONTRACT.caSecret) p(`${dirname(CONTRACT.caPool)} must be Secret ${CONTRACT.caSecret}`);
    if (ca.volume && !projectsKey(ca.volume.secret, CONTRACT.caKey, basename(CONTRACT.caPool))) p(`${CONTRACT.caPool} is not key ${CONTRACT.caKey}`);
  }
  if (publishesTrust) {
    const trust = mountedFile(template, c, CONTRACT.caTrust);
    trust.problems.forEach(p);
    if (trust.volume && trust.volume.secret?.secretName !== CONTRACT.caTrustSecret) p(`${dirname(CONTRACT.caTrust)} must be Secret ${CONTRACT.caTrustSecret}`);
    if (trust.volume && !projectsKey(trust.volume.secret, CONTRACT.caTrustKey, basename(CONTRACT.caTrust))) p(`${CONTRACT.caTrust} is not key ${CONTRACT.caTrustKey}`);
  }
  // Exactly these: in particular the trust publisher never reads the CA pool, only sign does.
  const expectedSecrets = [...(keyed ? [CONTRACT.stepSecret(fn)] : []), ...(holdsCaPool ? [CONTRACT.caSecret] : []), ...(publishesTrust ? [CONTRACT.caTrustSecret] : [])].sort();
  const secrets = [...secretsOf(template)].sort();
  if (JSON.stringify(secrets) !== JSON.stringify(expectedSecrets)) p(`reads Secrets [${secrets.join(", ")}], expected exactly [${expectedSecrets.join(", ")}]`);
  for (const m of c.volumeMounts ?? []) if (m.readOnly !== true) p(`mount ${m.name} is not read-only`);
  // kubelet never updates a subPath mount, and the functions re-read the CA Secrets when they change.
  for (const m of c.volumeMounts ?? []) if (m.subPath !== undefined || m.subPathExpr !== undefined) p(`mount ${m.name} uses subPath, which kubelet never updates`);
  for (const v of spec.volumes ?? []) {
    const mode = v.secret?.defaultMode;
    if (mode !== undefined && (mode & 0o022) !== 0) p(`Secret volume ${v.name} is writable by group/others (mode ${mode.toString(8)})`);
  }

  // Readiness, resources, scale.
  const port = c.ports?.[0]?.containerPort;
  // /healthz says whether the function can do its job; /livez only that the process answers
  // (a restart fixes nothing readiness checks), shared/runtime/readiness.ts.
  if (c.readinessProbe?.httpGet?.path !== "/healthz") p("readinessProbe must be httpGet /healthz");
  if (c.livenessProbe?.httpGet?.path !== "/livez") p("livenessProbe must be httpGet /livez");
  for (const [kind, probe] of [["readiness", c.readinessProbe], ["liveness", c.livenessProbe]] as const) {
    const probePort: unknown = probe?.httpGet?.port;
    if (probePort !== undefined && probePort !== port && probePort !== c.ports?.[0]?.name) p(`the ${kind} probe's port must be the container port (Knative requires it)`);
  }
  for (const kind of ["requests", "limits"]) for (const r of ["cpu", "memory"]) if (c.resources?.[kind]?.[r] === undefined) p(`resources.${kind}.${r} missing`);
  const ann: Obj = template.metadata?.annotations ?? {};
  const int = (k: string) => (typeof ann[k] === "string" && /^-?\d+$/.test(ann[k]) ? Number(ann[k]) : undefined);
  const min = int("autoscaling.knative.dev/min-scale");
  const max = int("autoscaling.knative.dev/max-scale");
  // The documented choice (knative/services.yaml, README): the issuance path stays warm.
  const expectedMin = issuancePath(REGISTERED).has(fn) ? 1 : 0;
  if (min !== expectedMin) p(`min-scale must be ${expectedMin} (see the note in services.yaml), is ${String(min)}`);
  if (max === undefined || max < Math.max(1, min ?? 0)) p("max-scale must be set and at least max(1, min-scale)");
  return problems;
}

/** The restrictive container security settings, on every Knative Service (functions and sink). */
export function securityProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  for (const d of knativeServices(docs)) {
    const spec: Obj = d.obj.spec?.template?.spec ?? {};
    const p = (m: string) => problems.push(`${where(d)}: ${m}`);
    // Knative rejects a pod-level securityContext unless kubernetes.podspec-securitycontext is on.
    if (spec.securityContext !== undefined) p("pod-level securityContext (Knative refuses it by default): set it on the container");
    for (const c of spec.containers ?? []) {
      const sc: Obj = c.securityContext ?? {};
      if (sc.runAsNonRoot !== true) p(`${c.name}: runAsNonRoot must be true`);
      if (!(Number.isInteger(sc.runAsUser) && sc.runAsUser > 0)) p(`${c.name}: runAsUser must be a non-root UID`);
      if (sc.readOnlyRootFilesystem !== true) p(`${c.name}: readOnlyRootFilesystem must be true`);
      if (sc.allowPrivilegeEscalation !== false) p(`${c.name}: allowPrivilegeEscalation must be false`);
      if (sc.privileged === true) p(`${c.name}: privileged`);
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) p(`${c.name}: capabilities.drop must include ALL`);
      if ((sc.capabilities?.add ?? []).length > 0) p(`${c.name}: adds capabilities`);
      if (sc.seccompProfile?.type !== "RuntimeDefault") p(`${c.name}: seccompProfile must be RuntimeDefault`);
    }
  }
  return problems;
}

/** Whether a label selector (matchLabels only) selects a set of labels. */
export function selects(selector: Obj, labels: Obj): boolean {
  if (selector.matchExpressions !== undefined) throw new Error("matchExpressions: not handled by this check");
  return Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
}

/** Namespaces allowed in by the NetworkPolicy (knative-serving's activator path and knative-eventing). */
export const ALLOWED_INGRESS_NAMESPACES = ["knative-eventing", "knative-serving"];

export function networkPolicyProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  const policies = ofKind(docs, "networking.k8s.io/v1", "NetworkPolicy");
  for (const d of knativeServices(docs)) {
    const labels = d.obj.spec?.template?.metadata?.labels ?? {};
    const covering = policies.filter((np) => (np.obj.spec?.policyTypes ?? []).includes("Ingress") && selects(np.obj.spec?.podSelector ?? {}, labels));
    if (covering.length === 0) problems.push(`${where(d)}: no ingress NetworkPolicy selects its pods`);
    // The policy admits the activator, not the gateway: the activator must always be in the path.
    if (d.obj.spec?.template?.metadata?.annotations?.["autoscaling.knative.dev/target-burst-capacity"] !== "-1") {
      problems.push(`${where(d)}: target-burst-capacity must be "-1" (activator always in the path, which the NetworkPolicy relies on)`);
    }
  }
  for (const np of policies) {
    const allowed = new Set<string>();
    for (const rule of np.obj.spec?.ingress ?? []) {
      if (rule.from === undefined || rule.from.length === 0) problems.push(`${where(np)}: an ingress rule without "from" admits everyone`);
      for (const peer of rule.from ?? []) {
        const ns = peer.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"];
        const onlyNs = peer.namespaceSelector !== undefined && Object.keys(peer.namespaceSelector).length === 1 && Object.keys(peer.namespaceSelector.matchLabels ?? {}).length === 1;
        if (peer.ipBlock !== undefined || typeof ns !== "string" || !onlyNs) {
          problems.push(`${where(np)}: peer ${JSON.stringify(peer)} is not one named Knative namespace`);
          continue;
        }
        allowed.add(ns);
      }
    }
    if (JSON.stringify([...allowed].sort()) !== JSON.stringify(ALLOWED_INGRESS_NAMESPACES)) {
      problems.push(`${where(np)}: admits [${[...allowed].sort().join(", ")}], expected [${ALLOWED_INGRESS_NAMESPACES.join(", ")}]`);
    }
  }
  return problems;
}

/** A deep copy to break in the negative tests. */
export const clone = (docs: readonly Doc[]): Doc[] => structuredClone(docs) as Doc[];
/** The first document of a kind and name in a copy. */
export function find(docs: readonly Doc[], kind: string, name: string): Obj {
  const d = docs.find((x) => x.obj.kind === kind && x.obj.metadata?.name === name);
  if (d === undefined) throw new Error(`no ${kind} ${name}`);
  return d.obj;
}

// ---------------------------------------------------------------------------------------------
// Autoscaling
// ---------------------------------------------------------------------------------------------

/** The settings of Knative Serving's config-autoscaler that bear on a concurrency aim, with their defaults. */
export interface AutoscalerConfig {
  /** container-concurrency-target-percentage */
  targetPercentage: number;
  /** container-concurrency-target-default: the aim's base when containerConcurrency is 0 */
  targetDefault: number;
}
export const KNATIVE_AUTOSCALER_DEFAULTS: AutoscalerConfig = { targetPercentage: 70, targetDefault: 100 };

const AUTOSCALING = "autoscaling.knative.dev";

/**
 * The in-flight requests per pod Knative's autoscaler aims at for a Service's revision, computed as
 * Serving does for the concurrency metric (ResolveMetricTarget in knative/serving
 * pkg/reconciler/autoscaling/resources/target.go): the base is containerConcurrency (the cluster's
 * default when 0), or the `target` annotation when set, but never above containerConcurrency; the
 * aim is the base times the utilization (the annotation, else the cluster's percentage).
 */
export function autoscalingAim(svc: Obj, cluster: AutoscalerConfig = KNATIVE_AUTOSCALER_DEFAULTS): number {
  const template: Obj = svc.spec?.template ?? {};
  const ann: Obj = template.metadata?.annotations ?? {};
  const num = (k: string): number | undefined => {
    const v = ann[`${AUTOSCALING}/${k}`];
    if (v === undefined) return undefined;
    const n = typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
    if (!Number.isFinite(n)) throw new Error(`${AUTOSCALING}/${k} ${JSON.stringify(v)} is not a number`);
    return n;
  };
  const metric = ann[`${AUTOSCALING}/metric`] ?? "concurrency";
  const klass = ann[`${AUTOSCALING}/class`] ?? "kpa.autoscaling.knative.dev";
  if (metric !== "concurrency" || klass !== "kpa.autoscaling.knative.dev") throw new Error(`autoscaling on ${String(metric)} (${String(klass)}): only KPA concurrency is computed here`);
  const cc: number = template.spec?.containerConcurrency ?? 0;
  const target = num("target");
  let base = cc === 0 ? cluster.targetDefault : cc;
  if (target !== undefined) base = cc === 0 ? target : Math.min(target, cc);
  const utilization = (num("target-utilization-percentage") ?? cluster.targetPercentage) / 100;
  return Math.max(0.01, base * utilization);
}

/**
 * The function Services' autoscaling aims against the one the manifests state (services.yaml's
 * note), and against a cluster whose config-autoscaler differs from Knative's defaults: the aim
 * must follow from the manifests alone.
 */
export function autoscalingProblems(docs: readonly Doc[], fns: readonly string[], statedAim: number | undefined): string[] {
  const problems: string[] = [];
  if (statedAim === undefined) return ["the aim per pod is not stated"];
  const otherCluster: AutoscalerConfig = { targetPercentage: 50, targetDefault: 20 };
  for (const fn of fns) {
    const d = knativeServices(docs).find((s) => s.obj.metadata?.name === serviceName(fn));
    if (d === undefined) continue; // functionServiceProblems reports it
    const p = (m: string) => problems.push(`${where(d)}: ${m}`);
    try {
      const aim = autoscalingAim(d.obj);
      const differs = (a: number, b: number) => Math.abs(a - b) > 1e-9; // products of decimal fractions
      if (differs(aim, statedAim)) p(`the autoscaler aims at ${aim} in-flight requests per pod, the manifests say ${statedAim}`);
      if (differs(autoscalingAim(d.obj, otherCluster), aim)) p(`the aim depends on the cluster's config-autoscaler: set ${AUTOSCALING}/target-utilization-percentage`);
    } catch (e) {
      p((e as Error).message);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Delivery timeouts
// ---------------------------------------------------------------------------------------------

/**
 * The delivery spec a Trigger's deliveries follow: its own if it sets one, else its Broker's.
 * Knative's channel-based Broker uses the Trigger's spec whole, not merged with the Broker's
 * (knative/eventing pkg/reconciler/broker/trigger/trigger.go).
 */
export function effectiveDelivery(docs: readonly Doc[], trigger: Obj): Obj | undefined {
  const broker = ofKind(docs, "eventing.knative.dev/v1", "Broker").find((b) => b.obj.metadata?.name === trigger.spec?.broker);
  return trigger.spec?.delivery ?? broker?.obj.spec?.delivery;
}

/** A Knative Service's timeoutSeconds, in ms (undefined when unset: then it is the cluster's default). */
export function serviceTimeoutMs(docs: readonly Doc[], name: string): number | undefined {
  const t = knativeServices(docs).find((s) => s.obj.metadata?.name === name)?.obj.spec?.template?.spec?.timeoutSeconds;
  return Number.isInteger(t) && t > 0 ? t * 1000 : undefined;
}

/**
 * Every Trigger's deliveries carry a per-attempt `timeout` (ISO 8601) below its subscriber
 * Service's timeoutSeconds, so the Broker, not Serving, ends a hung attempt and retries it; and no
 * Trigger sets a delivery spec of its own, which would drop the Broker's retries and dead-letter
 * sink.
 */
export function deliveryTimeoutProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  for (const t of triggers(docs)) {
    const p = (m: string) => problems.push(`${where(t)}: ${m}`);
    if (t.obj.spec?.delivery !== undefined) p("sets its own delivery spec, which replaces the Broker's whole (retries, dead-letter sink): set delivery on the Broker");
    const timeout = effectiveDelivery(docs, t.obj)?.timeout;
    if (timeout === undefined) {
      p("its deliveries have no timeout");
      continue;
    }
    let ms: number;
    try {
      ms = parseIsoDurationMs(String(timeout));
    } catch (e) {
      p((e as Error).message);
      continue;
    }
    if (!(ms > 0)) p(`timeout ${String(timeout)} must be more than zero`);
    const subscriber = String(t.obj.spec?.subscriber?.ref?.name);
    const limit = serviceTimeoutMs(docs, subscriber);
    if (limit === undefined) p(`subscriber ${subscriber} sets no timeoutSeconds (the cluster's default would apply)`);
    else if (ms >= limit) p(`timeout ${String(timeout)} is not below ${subscriber}'s timeoutSeconds (${limit / 1000})`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Pod Security
// ---------------------------------------------------------------------------------------------

/** The container security settings Knative gives the containers it adds (queue-proxy, receive adapter). */
const KNATIVE_ADDED_SECURITY: Obj = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/**
 * What Knative Serving adds to every revision's pod (knative/serving
 * pkg/reconciler/revision/resources/queue.go and deploy.go): the queue-proxy sidecar, whose
 * settings meet "restricted" since Serving 1.12 (seccomp RuntimeDefault), and volumes of the
 * emptyDir, projected, secret and downwardAPI kinds.
 */
export const KNATIVE_REVISION_ADDS: { containers: Obj[]; volumes: Obj[] } = {
  containers: [{ name: "queue-proxy", securityContext: KNATIVE_ADDED_SECURITY }],
  volumes: [
    { name: "knative-var-log", emptyDir: {} },
    { name: "knative-token-volume", projected: { sources: [] } },
    { name: "server-certs", secret: { secretName: "serving-certs" } },
    { name: "pod-info", downwardAPI: { items: [] } },
  ],
};

/**
 * The pod of an ApiServerSource's receive adapter Deployment, which Knative Eventing creates in
 * the source's namespace (knative/eventing pkg/reconciler/apiserversource/resources/
 * receive_adapter.go; its container settings meet "restricted" since Eventing 1.10).
 */
export const receiveAdapterPod = (source: Obj): Obj => ({
  serviceAccountName: source.spec?.serviceAccountName,
  enableServiceLinks: false,
  containers: [{ name: "receive-adapter", securityContext: KNATIVE_ADDED_SECURITY }],
});

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"]);

/**
 * Every pod the manifests lead to, as it will run: Knative Services with what Serving adds, the
 * ApiServerSource's adapter, plain workloads. A PingSource leads to none here: Eventing's one
 * pingsource-mt-adapter, in knative-eventing, sends the ticks of every PingSource in the cluster.
 */
export function podsOf(docs: readonly Doc[]): { name: string; spec: Obj }[] {
  const pods: { name: string; spec: Obj }[] = [];
  for (const d of docs) {
    const o = d.obj;
    if (o.apiVersion === "serving.knative.dev/v1" && o.kind === "Service") {
      const spec: Obj = o.spec?.template?.spec ?? {};
      pods.push({
        name: where(d),
        spec: { ...spec, containers: [...(spec.containers ?? []), ...KNATIVE_REVISION_ADDS.containers], volumes: [...(spec.volumes ?? []), ...KNATIVE_REVISION_ADDS.volumes] },
      });
    } else if (o.apiVersion === "sources.knative.dev/v1" && o.kind === "ApiServerSource") {
      pods.push({ name: `${where(d)} receive adapter`, spec: receiveAdapterPod(o) });
    } else if (o.kind === "Pod") {
      pods.push({ name: where(d), spec: o.spec ?? {} });
    } else if (WORKLOADS.has(o.kind)) {
      pods.push({ name: where(d), spec: o.spec?.template?.spec ?? {} });
    } else if (o.kind === "CronJob") {
      pods.push({ name: where(d), spec: o.spec?.jobTemplate?.spec?.template?.spec ?? {} });
    }
  }
  return pods;
}

const RESTRICTED_VOLUME_KINDS = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
const SELINUX_TYPES = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
// The sysctls every version of the profile allows (later ones allow a few more): stricter, never looser.
const SAFE_SYSCTLS = new Set(["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"]);

/**
 * A pod spec against Kubernetes' "restricted" Pod Security Standard (kubernetes/kubernetes
 * staging/src/k8s.io/pod-security-admission/policy), baseline controls included, for Linux pods.
 * A container inherits runAsNonRoot, runAsUser, seccompProfile and seLinuxOptions from the pod's
 * securityContext where it sets none.
 */
export function restrictedProblems(spec: Obj, name: string): string[] {
  const problems: string[] = [];
  const p = (m: string) => problems.push(`${name}: ${m}`);
  const psc: Obj = spec.securityContext ?? {};
  for (const k of ["hostNetwork", "hostPID", "hostIPC"]) if (spec[k] === true) p(`${k}`);
  for (const v of spec.volumes ?? []) {
    const kinds = Object.keys(v).filter((k) => k !== "name");
    if (!kinds.every((k) => RESTRICTED_VOLUME_KINDS.includes(k))) p(`volume ${v.name} is of kind ${kinds.join(", ")}, which "restricted" refuses`);
  }
  for (const s of psc.sysctls ?? []) if (!SAFE_SYSCTLS.has(s.name)) p(`sysctl ${s.name} is not in the safe set`);
  const badSeLinux = (o: Obj | undefined) => o !== undefined && (!SELINUX_TYPES.includes(o.type ?? "") || o.user !== undefined || o.role !== undefined);
  if (badSeLinux(psc.seLinuxOptions)) p("pod seLinuxOptions beyond the allowed types");
  if (psc.appArmorProfile?.type === "Unconfined") p("pod AppArmor profile Unconfined");
  if (psc.runAsUser === 0) p("pod runAsUser 0");
  const podSeccomp = psc.seccompProfile?.type;
  if (podSeccomp !== undefined && podSeccomp !== "RuntimeDefault" && podSeccomp !== "Localhost") p(`pod seccompProfile ${String(podSeccomp)}`);
  if (psc.windowsOptions?.hostProcess === true) p("pod hostProcess");

  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])]) {
    const sc: Obj = c.securityContext ?? {};
    const cp = (m: string) => p(`container ${String(c.name)}: ${m}`);
    if (sc.privileged === true) cp("privileged");
    if (sc.allowPrivilegeEscalation !== false) cp("allowPrivilegeEscalation must be false");
    if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) cp("runAsNonRoot must be true (on the container or the pod)");
    if ((sc.runAsUser ?? psc.runAsUser) === 0) cp("runAsUser 0");
    const seccomp = sc.seccompProfile?.type ?? podSeccomp;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") cp(`seccompProfile must be RuntimeDefault or Localhost, is ${String(seccomp)}`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) cp("capabilities.drop must include ALL");
    for (const cap of sc.capabilities?.add ?? []) if (cap !== "NET_BIND_SERVICE") cp(`adds capability ${String(cap)}`);
    for (const port of c.ports ?? []) if (port.hostPort !== undefined && port.hostPort !== 0) cp(`hostPort ${String(port.hostPort)}`);
    if (badSeLinux(sc.seLinuxOptions)) cp("seLinuxOptions beyond the allowed types");
    if (sc.procMount !== undefined && sc.procMount !== "Default") cp(`procMount ${String(sc.procMount)}`);
    if (sc.appArmorProfile?.type === "Unconfined") cp("AppArmor profile Unconfined");
    if (sc.windowsOptions?.hostProcess === true) cp("hostProcess");
  }
  return problems;
}

const PSA = "pod-security.kubernetes.io";

/** The namespace enforces "restricted" at a pinned version, and every pod the manifests lead to meets it. */
export function podSecurityProblems(docs: readonly Doc[]): string[] {
  const problems: string[] = [];
  const ns = ofKind(docs, "v1", "Namespace").find((d) => d.obj.metadata?.name === NAMESPACE);
  if (ns === undefined) return [`no Namespace ${NAMESPACE}`];
  const labels: Obj = ns.obj.metadata?.labels ?? {};
  for (const mode of ["enforce", "warn", "audit"]) {
    if (labels[`${PSA}/${mode}`] !== "restricted") problems.push(`${where(ns)}: ${PSA}/${mode} must be restricted, is ${String(labels[`${PSA}/${mode}`])}`);
  }
  if (!/^v1\.\d+$/.test(String(labels[`${PSA}/enforce-version`]))) {
    problems.push(`${where(ns)}: ${PSA}/enforce-version must pin a version (v1.N), is ${String(labels[`${PSA}/enforce-version`])}`);
  }
  for (const pod of podsOf(docs)) problems.push(...restrictedProblems(pod.spec, pod.name));
  return problems;
}
