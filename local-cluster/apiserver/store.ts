/**
 * The embedded API server's in-memory object store. It behaves like kube-apiserver's storage
 * layer: a global resourceVersion counter, uid/creationTimestamp assignment, defaults, optimistic
 * concurrency (409 on a stale resourceVersion), the /status subresource split, the
 * PodCertificateRequest status rules (422), and a watch history that lets watchers resume from a
 * resourceVersion. Every failure is an {@link ApiError} carrying the Status the HTTP layer sends.
 *
 * Objects held by the store are frozen; everything returned to callers is a fresh mutable copy,
 * except the objects handed to watch/subscribe listeners, which are the frozen originals.
 *
 * Decisions:
 * - A namespaced object needs its Namespace to exist (404 otherwise), except with
 *   `{ seed: true }`, which creates missing namespaces (cluster files need not list them).
 * - Creating keeps a given uid; it ignores a given resourceVersion. Only seeding keeps a given
 *   creationTimestamp, deletionTimestamp and (for PodCertificateRequests) status.
 * - Deletion is immediate (no graceful deletion or finalizers); deleting a Namespace deletes the
 *   objects in it. Services without a clusterIP get one from 10.96.0.0/12.
 * - Proofs of possession and CSRs are not verified on create (so the signer's own checks can be
 *   tested); required spec fields and the maxExpirationSeconds range are.
 * - A Pod's spec is immutable on update except for images, activeDeadlineSeconds, added
 *   tolerations, removed schedulingGates (pods.ts, as ValidatePodUpdate); spec.nodeName too (no
 *   pods/binding subresource is served: a pod is created bound, or recreated). Status and metadata
 *   (labels, annotations) updates are not affected.
 * - An update that changes nothing does not bump the resourceVersion or emit an event.
 * - Versions (versions.ts): the store serves the versions its Kubernetes version serves. Writes
 *   may use any of them and are converted to the internal form (fields the version lacks dropped
 *   silently here; the HTTP layer warns or refuses); create validation follows the version
 *   written through. Everything the store returns, and every event, is in the internal form (for
 *   pod certificates v1beta1 with every field); the HTTP layer renders the request's version.
 * - A main-resource update through v1 of a request created with a PKIX key fails as a spec change
 *   (422, spec.pkixPublicKey immutable): v1 cannot carry those fields, so the converted object
 *   lacks them, as kube-apiserver's v1→internal conversion leaves them empty before its
 *   spec-immutability check. The status subresource keeps the stored spec, so status writes work.
 */

import { randomUUID } from "node:crypto";

import type { PcrStatus, PodCertificateRequest } from "../../shared/pcr/model.js";
import { DEFAULT_KUBERNETES_VERSION, type KubernetesVersion } from "../kubernetes-versions.js";
import { normalizeTime, pcrStatusUpdateFieldErrors } from "../../shared/pcr/status-rules.js";
import { configMapDecodeError, validateConfigMapUpdate } from "./config-maps.js";
import { validatePodUpdate } from "./pods.js";
import {
  applyDefaults,
  fieldValue,
  resolveResource,
  resourceFor,
  storageType,
  type KubeObject,
  type ResourceType,
} from "./resources.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  expired,
  fieldCause,
  forbidden,
  invalid,
  notFound,
  type StatusCause,
} from "./status.js";
import { validateCreate, validateName } from "./validation.js";
import { isServed, requestForms, toInternal } from "./versions.js";
import {
  attestForbiddenReason,
  clusterTrustBundleDecodeError,
  signerToAttest,
  validateClusterTrustBundleUpdate,
} from "./trust-bundles.js";
import { isRecord } from "./json.js";

export type { KubeObject, ResourceType } from "./resources.js";

/** Kind ("Pod"), plural ("pods"), "plural.group" ("events.events.k8s.io"), or a resolved type. */
export type ResourceRef = string | ResourceType;

export interface ListOptions {
  /** Only this namespace (namespaced types); all namespaces when absent. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** At most this many items (kube-apiserver's `limit`); a `continue` token is returned when more remain. */
  limit?: number;
  /** The token a previous limited list returned: the items after its last one. */
  continue?: string;
}

export interface WatchOptions extends ListOptions {
  /** Replay changes after this version; absent, "" or "0": ADDED for every existing object first. */
  resourceVersion?: string;
  /** ADDED for every existing object first (then changes) even when resourceVersion is given. */
  sendInitialEvents?: boolean;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject;
}

/** What {@link ObjectStore.subscribe} listeners get: every change of every type, unfiltered. */
export interface StoreEvent extends WatchEvent {
  resource: ResourceType;
  previous?: KubeObject;
}

/**
 * Admission checks that depend on who writes (the server passes them when it enforces RBAC;
 * absent, nothing is checked, as with kube-apiserver's AlwaysAllow).
 */
export interface AdmissionOptions {
  /**
   * The ClusterTrustBundleAttest plugin: creating or updating a ClusterTrustBundle that names a
   * signer needs `attest` on it (trust-bundles.ts says when an update is exempt); refused: 403
   * after validation, as admission runs after the strategy's validation.
   */
  attester?: { user: string; mayAttest(signerName: string): boolean };
}

export interface CreateOptions extends AdmissionOptions {
  /**
   * Loading a cluster file rather than serving a client: create missing namespaces, and keep a
   * given creationTimestamp, deletionTimestamp and PodCertificateRequest status.
   */
  seed?: boolean;
}

export interface StatusUpdateOptions {
  /**
   * kube-apiserver's `sign` check on PodCertificateRequest status writes: a write that passes the
   * status rules and changes the status must come from someone allowed to `sign` for the PCR's
   * signer, or it is refused (422, a Forbidden cause on spec.signerName). Absent: not checked
   * (the store on its own, or a server that does not enforce RBAC).
   */
  signer?: { user: string; maySign(signerName: string): boolean };
}

export interface Preconditions {
  uid?: string;
  resourceVersion?: string;
}

export interface ObjectStoreOptions {
  now?: () => Date;
  /** Changes kept for watches resuming from a resourceVersion (older: 410 Expired). */
  historyLimit?: number;
  /** The control plane emulated: which versions writes may use, and their rules. Default DEFAULT_KUBERNETES_VERSION. */
  kubernetesVersion?: KubernetesVersion;
}

interface HistoryEntry extends StoreEvent {
  rv: number;
}

export class ObjectStore {
  private readonly objects = new Map<ResourceType, Map<string, KubeObject>>();
  private readonly history: HistoryEntry[] = [];
  private readonly listeners = new Set<(e: HistoryEntry) => void>();
  private readonly undelivered: HistoryEntry[] = [];
  private dispatching = false;
  private rv = 0;
  private compactedRv = 0;
  private readonly now: () => Date;
  private readonly historyLimit: number;
  readonly kubernetesVersion: KubernetesVersion;

  constructor(o: ObjectStoreOptions = {}) {
    this.now = o.now ?? (() => new Date());
    this.historyLimit = o.historyLimit ?? 10_000;
    this.kubernetesVersion = o.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION;
  }

  /** The current (latest) resourceVersion, as lists report it. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  create(input: unknown, o: CreateOptions = {}): KubeObject {
    const written = toObject(input);
    const v = this.typeOf(written);
    const t = storageType(v);
    this.checkDecodes(v, written);
    const obj = toInternal(this.kubernetesVersion, v, written);
    const meta = obj.metadata;
    const ns = this.checkNamespaceField(t, obj);
    if (!meta.name && meta.generateName) {
      do meta.name = meta.generateName + randomSuffix();
      while (this.bucket(t).has(key(t, ns, meta.name)));
    }
    if (!meta.name) {
      throw invalid(t, "", [fieldCause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")]);
    }
    const nameErrors = validateName(t, meta.name);
    if (nameErrors.length > 0) throw invalid(t, meta.name, nameErrors);
    if (ns !== undefined && !this.bucket(resolve("Namespace")).has(ns)) {
      if (!o.seed) throw notFound(resolve("Namespace"), ns);
      this.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    }
    if (this.bucket(t).has(key(t, ns, meta.name))) throw alreadyExists(t, meta.name);

    delete meta.resourceVersion;
    if (!o.seed) {
      delete meta.deletionTimestamp;
      delete meta.creationTimestamp;
      if (t.kind === "PodCertificateRequest") delete obj.status;
    }
    applyDefaults(t, obj);
    const causes = validateCreate(t, obj, requestForms(this.kubernetesVersion, v));
    if (causes.length > 0) throw invalid(t, meta.name, causes);
    admit(t, obj, undefined, o);
    if (t.kind === "Service") this.allocateClusterIP(obj);

    meta.uid ||= randomUUID();
    meta.creationTimestamp = meta.creationTimestamp ? normalizeTime(meta.creationTimestamp) : this.timestamp();
    if (meta.deletionTimestamp) meta.deletionTimestamp = normalizeTime(meta.deletionTimestamp);
    return clone(this.commit(t, "ADDED", obj));
  }

  get(resource: ResourceRef, namespace: string | undefined, name: string): KubeObject | undefined {
    const t = resolve(resource);
    const obj = this.bucket(t).get(key(t, namespace, name));
    return obj && clone(obj);
  }

  /** Sorted by namespace and name, like etcd. */
  list(resource: ResourceRef, o: ListOptions = {}): { items: KubeObject[]; resourceVersion: string; continue?: string; remainingItemCount?: number } {
    const t = resolve(resource);
    let items = this.select(t, matcher(t, o));
    // Paging resumes after the last key served, in the store's key order. Unlike kube-apiserver,
    // later pages are not a snapshot of the first one's resourceVersion: objects created or
    // deleted meanwhile show up or vanish (callers must tolerate either anyway).
    if (o.continue !== undefined) {
      const after = continueKey(o.continue);
      items = items.filter((obj) => key(t, obj.metadata.namespace, obj.metadata.name) > after);
    }
    if (o.limit !== undefined && o.limit > 0 && items.length > o.limit) {
      const page = items.slice(0, o.limit);
      const last = page[page.length - 1]!;
      return {
        items: page.map(clone),
        resourceVersion: this.resourceVersion,
        continue: Buffer.from(JSON.stringify({ k: key(t, last.metadata.namespace, last.metadata.name) })).toString("base64url"),
        remainingItemCount: items.length - o.limit,
      };
    }
    return { items: items.map(clone), resourceVersion: this.resourceVersion };
  }

  /**
   * Replaces an object (identified by its apiVersion, kind, namespace and name). Its
   * metadata.uid / metadata.resourceVersion, when set, are preconditions (409 when stale). For
   * types with a status subresource the stored status is kept; PodCertificateRequest spec is
   * immutable (422), and so is a Pod's but for the few fields ValidatePodUpdate lets change
   * (pods.ts: 422 `spec: Forbidden: pod updates may not change fields other than …`). A
   * ClusterTrustBundle update must carry a resourceVersion (422 otherwise): its strategy does not
   * allow unconditional updates (AllowUnconditionalUpdate, in
   * pkg/registry/certificates/clustertrustbundle/strategy.go).
   */
  replace(input: unknown, o: AdmissionOptions = {}): KubeObject {
    const written = toObject(input);
    const v = this.typeOf(written);
    const t = storageType(v);
    this.checkDecodes(v, written);
    const obj = toInternal(this.kubernetesVersion, v, written);
    const old = this.existing(t, obj);
    if (t.kind === "ClusterTrustBundle" && !obj.metadata.resourceVersion) {
      // The registry's own error (store.go): its "kind" is the plural, hence the fake type.
      throw invalid({ ...t, kind: t.plural }, old.metadata.name, [
        fieldCause("metadata.resourceVersion", "Invalid value: 0: must be specified for an update"),
      ]);
    }
    const next: KubeObject = { ...obj, metadata: { ...obj.metadata, ...systemMeta(old) } };
    if (t.hasStatus) {
      if (old.status === undefined) delete next.status;
      else next.status = clone(old.status);
    }
    applyDefaults(t, next);
    const causes: StatusCause[] = validateUpdate(t, next, old);
    if (t.kind === "PodCertificateRequest") causes.push(...immutable(old.spec, next.spec, "spec"));
    else if (t.kind === "ClusterTrustBundle") causes.push(...immutable(spec(old).signerName, spec(next).signerName, "spec.signerName"));
    if (t.kind === "Service" && spec(next).clusterIP === undefined && spec(old).clusterIP !== undefined) {
      spec(next).clusterIP = spec(old).clusterIP;
      spec(next).clusterIPs = spec(old).clusterIPs;
    }
    if (causes.length > 0) throw invalid(t, old.metadata.name, causes);
    admit(t, next, old, o);
    return clone(this.update(t, old, next));
  }

  /**
   * Replaces only the status (everything else in `input` is ignored except the uid and
   * resourceVersion preconditions). For PodCertificateRequests the kube-apiserver status rules
   * apply (422 with one cause per violated rule) and times are stored as whole-second RFC 3339.
   */
  replaceStatus(input: unknown, o: StatusUpdateOptions = {}): KubeObject {
    const obj = toObject(input);
    const v = this.typeOf(obj);
    const t = storageType(v);
    if (!t.hasStatus) throw badRequest(`${t.plural} have no status subresource`);
    const old = this.existing(t, obj);
    const next: KubeObject = { ...clone(old) };
    if (obj.status === undefined) delete next.status;
    else next.status = obj.status;
    if (t.kind === "PodCertificateRequest") {
      const shapeError = pcrStatusShapeError(obj.status ?? {});
      if (shapeError) throw badRequest(`PodCertificateRequest in version ${JSON.stringify(v.version)} cannot be handled: ${shapeError}`);
      const status = (obj.status ?? {}) as PcrStatus;
      const errors = pcrStatusUpdateFieldErrors(old as unknown as PodCertificateRequest, status, this.now());
      if (errors.length > 0) {
        throw invalid(t, old.metadata.name, errors.map((e) => fieldCause(e.field, e.detail, e.type)));
      }
      next.status = normalizePcrStatus(status);
      // After the status rules, as StatusStrategy.ValidateUpdate: any change (Semantic.DeepEqual,
      // where empty equals absent) needs `sign` on the signer named by the stored object.
      const signerName = String((old.spec as { signerName?: unknown } | undefined)?.signerName ?? "");
      if (o.signer && !deepEqual(old.status, next.status, true) && !o.signer.maySign(signerName)) {
        throw invalid(t, old.metadata.name, [
          fieldCause("spec.signerName", `Forbidden: User ${JSON.stringify(o.signer.user)} is not permitted to "sign" for signer ${JSON.stringify(signerName)}`, "FieldValueForbidden"),
        ]);
      }
    }
    return clone(this.update(t, old, next));
  }

  delete(resource: ResourceRef, namespace: string | undefined, name: string, pre: Preconditions = {}): KubeObject {
    const t = resolve(resource);
    const old = this.existing(t, { metadata: { name, namespace, ...pre } });
    if (t.kind === "Namespace") {
      for (const [other, objs] of this.objects) {
        if (!other.namespaced) continue;
        for (const obj of [...objs.values()]) {
          if (obj.metadata.namespace === name) this.remove(other, obj);
        }
      }
    }
    return clone(this.remove(t, old));
  }

  /**
   * Calls `listener` for each change of one resource type that matches the options, in order,
   * never re-entrantly. Throws ApiError 410 when `resourceVersion` is older than the history kept
   * and 400 for a bad selector or resourceVersion. Returns a function that stops the watch.
   */
  watch(resource: ResourceRef, listener: (e: WatchEvent) => void, o: WatchOptions = {}): () => void {
    const t = resolve(resource);
    const matches = matcher(t, o);
    const rvText = o.resourceVersion ?? "";
    const fromRv = rvText === "" ? 0 : Number(rvText);
    if (!/^\d*$/.test(rvText) || !Number.isSafeInteger(fromRv)) {
      throw badRequest(`invalid resourceVersion ${JSON.stringify(rvText)}`);
    }
    const replay: WatchEvent[] = [];
    if (rvText === "" || rvText === "0" || o.sendInitialEvents) {
      for (const object of this.select(t, matches)) replay.push({ type: "ADDED", object });
    } else {
      if (fromRv < this.compactedRv) {
        throw expired(`too old resource version: ${fromRv} (${this.compactedRv + 1})`);
      }
      for (const h of this.history) {
        const e = h.rv > fromRv && h.resource === t ? filterEvent(h, matches) : undefined;
        if (e) replay.push(e);
      }
    }

    const queue: WatchEvent[] = [];
    let busy = false;
    let stopped = false;
    const deliver = (e: WatchEvent) => {
      queue.push(e);
      if (busy) return;
      busy = true;
      try {
        for (let next = queue.shift(); next && !stopped; next = queue.shift()) {
          try {
            listener(next);
          } catch {
            // a listener's failure must not break the writer that triggered it
          }
        }
      } finally {
        busy = false;
      }
    };
    const replayedUpTo = this.rv; // changes up to here are in `replay` (or in the listed state)
    const onChange = (h: HistoryEntry) => {
      const e = h.resource === t && h.rv > replayedUpTo ? filterEvent(h, matches) : undefined;
      if (e) deliver(e);
    };
    this.listeners.add(onChange);
    for (const e of replay) deliver(e);
    return () => {
      stopped = true;
      this.listeners.delete(onChange);
    };
  }

  /** Every change of every type, unfiltered and without replay. Returns an unsubscribe function. */
  subscribe(listener: (e: StoreEvent) => void): () => void {
    const fn = (h: HistoryEntry) => {
      try {
        listener({ type: h.type, object: h.object, resource: h.resource, ...(h.previous ? { previous: h.previous } : {}) });
      } catch {
        // ignored, as in watch()
      }
    };
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves with the object once `predicate` holds for it (checked now and on every change). */
  waitFor(
    resource: ResourceRef,
    namespace: string | undefined,
    name: string,
    predicate: (obj: KubeObject) => boolean,
    timeoutMs = 10_000,
  ): Promise<KubeObject> {
    const t = resolve(resource);
    return new Promise((resolvePromise, reject) => {
      let done = false;
      let stop: (() => void) | undefined;
      const timer = setTimeout(() => {
        done = true;
        stop?.();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${t.plural} ${namespace ? `${namespace}/` : ""}${name}`));
      }, timeoutMs);
      stop = this.watch(t, (e) => {
        if (done || e.type === "DELETED" || !predicate(e.object)) return;
        done = true;
        clearTimeout(timer);
        stop?.();
        resolvePromise(clone(e.object));
      }, { ...(t.namespaced && namespace ? { namespace } : {}), fieldSelector: `metadata.name=${name}` });
      if (done) stop();
    });
  }

  // -------------------------------------------------------------------------------------------

  private bucket(t: ResourceType): Map<string, KubeObject> {
    let b = this.objects.get(t);
    if (!b) this.objects.set(t, (b = new Map()));
    return b;
  }

  /** The stored (frozen) objects of a type that match, sorted by namespace and name. */
  private select(t: ResourceType, matches: (obj: KubeObject) => boolean): KubeObject[] {
    return [...this.bucket(t).entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, obj]) => obj)
      .filter(matches);
  }

  /** The (served) version `obj` is written in; storageType() gives the type the store keeps it as. */
  private typeOf(obj: KubeObject): ResourceType {
    const t = resourceFor(obj.apiVersion, obj.kind);
    if (!t || !isServed(this.kubernetesVersion, t)) throw badRequest(`no kind ${JSON.stringify(obj.kind)} is registered for version ${JSON.stringify(obj.apiVersion)}`);
    return t;
  }

  /** A body the kind's Go type could not hold is a 400, before anything else is checked. */
  private checkDecodes(t: ResourceType, obj: KubeObject): void {
    const why = decodeError(t, obj);
    if (why !== undefined) throw badRequest(why);
  }

  private checkNamespaceField(t: ResourceType, obj: KubeObject): string | undefined {
    if (!t.namespaced) {
      delete obj.metadata.namespace;
      return undefined;
    }
    const ns = obj.metadata.namespace;
    if (!ns) {
      throw invalid(t, obj.metadata.name ?? "", [fieldCause("metadata.namespace", "Required value", "FieldValueRequired")]);
    }
    return ns;
  }

  /** The stored object `obj` names, after checking its uid / resourceVersion preconditions. */
  private existing(t: ResourceType, obj: { metadata: Preconditions & { name?: string; namespace?: string | undefined } }): KubeObject {
    const name = obj.metadata.name ?? "";
    const old = this.bucket(t).get(key(t, obj.metadata.namespace, name));
    if (!old) throw notFound(t, name);
    const { uid, resourceVersion } = obj.metadata;
    if (uid && uid !== old.metadata.uid) {
      throw conflict(t, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (resourceVersion && resourceVersion !== old.metadata.resourceVersion) throw conflict(t, name);
    return old;
  }

  private update(t: ResourceType, old: KubeObject, next: KubeObject): KubeObject {
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    if (deepEqual(old, next)) return old; // a no-op write keeps the resourceVersion
    return this.commit(t, "MODIFIED", next, old);
  }

  private remove(t: ResourceType, obj: KubeObject): KubeObject {
    this.bucket(t).delete(key(t, obj.metadata.namespace, obj.metadata.name));
    const gone = clone(obj);
    gone.metadata.resourceVersion = String(++this.rv);
    return this.emit(t, "DELETED", deepFreeze(gone), obj);
  }

  private commit(t: ResourceType, type: WatchEventType, obj: KubeObject, previous?: KubeObject): KubeObject {
    obj.metadata.resourceVersion = String(++this.rv);
    const frozen = deepFreeze(obj);
    this.bucket(t).set(key(t, obj.metadata.namespace, obj.metadata.name), frozen);
    return this.emit(t, type, frozen, previous);
  }

  private emit(t: ResourceType, type: WatchEventType, object: KubeObject, previous?: KubeObject): KubeObject {
    const entry: HistoryEntry = { rv: this.rv, resource: t, type, object, ...(previous ? { previous } : {}) };
    this.history.push(entry);
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
    // Changes made by listeners are queued, so every listener sees every change in order.
    this.undelivered.push(entry);
    if (!this.dispatching) {
      this.dispatching = true;
      try {
        for (let e = this.undelivered.shift(); e; e = this.undelivered.shift()) {
          for (const l of [...this.listeners]) l(e);
        }
      } finally {
        this.dispatching = false;
      }
    }
    return object;
  }

  private timestamp(): string {
    return normalizeTime(this.now().toISOString());
  }

  private allocateClusterIP(svc: KubeObject): void {
    const s = spec(svc);
    if (s.type === "ExternalName" || (typeof s.clusterIP === "string" && s.clusterIP !== "")) return;
    const used = new Set([...this.bucket(resolve("Service")).values()].map((o) => spec(o).clusterIP));
    for (let i = 10; i < 1 << 20; i++) {
      const ip = `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      if (!used.has(ip)) {
        s.clusterIP = ip;
        s.clusterIPs = [ip];
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** The stored type a reference names (any version of a kind names the kind). */
function resolve(ref: ResourceRef): ResourceType {
  if (typeof ref !== "string") return storageType(ref);
  const t = resolveResource(ref);
  if (!t) throw badRequest(`the server doesn't have a resource type ${JSON.stringify(ref)}`);
  return t;
}

/**
 * Kind-specific update validation (after defaults), besides the immutable fields checked in
 * replace(). ConfigMaps compare data as reflect.DeepEqual does (JSON equality); Pods their spec as
 * Semantic.DeepEqual does (empty equals absent), pods.ts.
 */
function validateUpdate(t: ResourceType, next: KubeObject, old: KubeObject): StatusCause[] {
  if (t.kind === "ClusterTrustBundle") return validateClusterTrustBundleUpdate(next, old);
  if (t.kind === "ConfigMap") return validateConfigMapUpdate(next, old, (a, b) => deepEqual(a, b));
  if (t.kind === "Pod") return validatePodUpdate(next, old, (a, b) => deepEqual(a, b, true));
  return [];
}

/**
 * What decoding a request body into the kind's Go type would refuse (kube-apiserver answers 400
 * before validating), for the kinds whose fields the server reads; undefined when it decodes.
 */
function decodeError(t: ResourceType, obj: KubeObject): string | undefined {
  const why = t.kind === "ClusterTrustBundle" ? clusterTrustBundleDecodeError(obj)
    : t.kind === "ConfigMap" ? configMapDecodeError(obj) : undefined;
  return why === undefined ? undefined : `${t.kind} in version ${JSON.stringify(t.version)} cannot be handled as a ${t.kind}: ${why}`;
}

/** The validating admission checks of {@link AdmissionOptions}, on a write that passed validation. */
function admit(t: ResourceType, next: KubeObject, old: KubeObject | undefined, o: AdmissionOptions): void {
  if (t.kind !== "ClusterTrustBundle" || o.attester === undefined) return;
  const signerName = signerToAttest(next, old, (a, b) => deepEqual(a, b, true));
  if (signerName === undefined || o.attester.mayAttest(signerName)) return;
  throw forbidden({ group: t.group, resource: t.plural, name: next.metadata.name, message: attestForbiddenReason(signerName), reason: "" });
}

/** The key a continue token resumes after; a token this store did not make is a 400, as kube-apiserver's. */
function continueKey(token: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { k?: unknown };
    if (typeof parsed.k === "string") return parsed.k;
  } catch {
    // fall through
  }
  throw badRequest("continue key is not valid");
}

function key(t: ResourceType, namespace: string | undefined, name: string): string {
  return t.namespaced ? `${namespace ?? ""}/${name}` : name;
}

function matcher(t: ResourceType, o: ListOptions): (obj: KubeObject) => boolean {
  const labels = parseLabelSelector(o.labelSelector);
  const fields = parseFieldSelector(o.fieldSelector, ["metadata.name", "metadata.namespace", ...t.fields]);
  return (obj) =>
    (!t.namespaced || !o.namespace || obj.metadata.namespace === o.namespace) &&
    labels((k) => obj.metadata.labels?.[k]) &&
    fields((p) => fieldValue(obj, p));
}

/** How a change looks through a filtered watch: leaving the selection is a DELETED, entering an ADDED. */
function filterEvent(h: StoreEvent, matches: (o: KubeObject) => boolean): WatchEvent | undefined {
  const now = matches(h.object);
  if (h.type !== "MODIFIED") return now ? { type: h.type, object: h.object } : undefined;
  const before = h.previous !== undefined && matches(h.previous);
  if (now) return { type: before ? "MODIFIED" : "ADDED", object: h.object };
  return before ? { type: "DELETED", object: h.object } : undefined;
}

/** A JSON copy of a caller's object (Dates become strings), checked for apiVersion/kind/metadata. */
function toObject(input: unknown): KubeObject {
  const obj = input === undefined ? undefined : (JSON.parse(JSON.stringify(input)) as unknown);
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw badRequest("the object must be a JSON object");
  const o = obj as Record<string, unknown>;
  if (typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
    throw badRequest("Object 'Kind' or 'apiVersion' is missing");
  }
  if (o.metadata === null || typeof o.metadata !== "object" || Array.isArray(o.metadata)) o.metadata = {};
  return o as KubeObject;
}

/** Metadata the server owns: kept from the stored object on every update. */
function systemMeta(old: KubeObject): Partial<KubeObject["metadata"]> {
  const m = old.metadata;
  const out: Partial<KubeObject["metadata"]> = {
    name: m.name,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
    creationTimestamp: m.creationTimestamp,
  };
  if (m.namespace !== undefined) out.namespace = m.namespace;
  if (m.generateName !== undefined) out.generateName = m.generateName;
  if (m.deletionTimestamp !== undefined) out.deletionTimestamp = m.deletionTimestamp;
  return out;
}

/** Go's ValidateImmutableField: Semantic.DeepEqual, where absent, "", [] and {} are all empty. */
function immutable(old: unknown, next: unknown, path: string): StatusCause[] {
  if (deepEqual(old, next, true)) return [];
  if (isRecord(old) && isRecord(next)) {
    const keys = new Set([...Object.keys(old), ...Object.keys(next)]);
    return [...keys].filter((k) => !deepEqual(old[k], next[k], true))
      .map((k) => fieldCause(`${path}.${k}`, "Invalid value: field is immutable"));
  }
  return [fieldCause(path, "Invalid value: field is immutable")];
}

/** What JSON decoding into the Go type would refuse (kube-apiserver answers 400 for these). */
function pcrStatusShapeError(status: unknown): string | undefined {
  if (!isRecord(status)) return "status: expected an object";
  for (const f of ["certificateChain", "notBefore", "notAfter", "beginRefreshAt"]) {
    if (status[f] !== undefined && status[f] !== null && typeof status[f] !== "string") return `status.${f}: expected a string`;
  }
  const conditions = status.conditions;
  if (conditions === undefined || conditions === null) return undefined;
  if (!Array.isArray(conditions)) return "status.conditions: expected a list";
  for (const [i, c] of conditions.entries()) {
    if (!isRecord(c)) return `status.conditions[${i}]: expected an object`;
    for (const f of ["type", "status", "reason", "message", "lastTransitionTime"]) {
      if (c[f] !== undefined && c[f] !== null && typeof c[f] !== "string") return `status.conditions[${i}].${f}: expected a string`;
    }
    if (c.observedGeneration !== undefined && !Number.isInteger(c.observedGeneration)) {
      return `status.conditions[${i}].observedGeneration: expected an integer`;
    }
  }
  return undefined;
}

function normalizePcrStatus(status: PcrStatus): PcrStatus {
  const out: PcrStatus = { ...status };
  for (const f of ["notBefore", "notAfter", "beginRefreshAt"] as const) {
    if (out[f]) out[f] = normalizeTime(out[f]);
  }
  if (out.conditions) {
    out.conditions = out.conditions.map((c) => ({ ...c, lastTransitionTime: normalizeTime(c.lastTransitionTime) }));
  }
  return out;
}

/** obj.spec, or a detached {} when it has none (stored objects are frozen: never assign here). */
function spec(obj: KubeObject): Record<string, unknown> {
  return isRecord(obj.spec) ? obj.spec : {};
}

/** JSON equality ignoring key order and undefined keys; with `emptyEqual`, "", [], {} == absent. */
export function deepEqual(a: unknown, b: unknown, emptyEqual = false): boolean {
  if (a === b) return true;
  if (emptyEqual && isEmpty(a) && isEmpty(b)) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i], emptyEqual));
  if (isRecord(a) && isRecord(b)) {
    const keep = (o: Record<string, unknown>) => Object.keys(o).filter((k) => (emptyEqual ? !isEmpty(o[k]) : o[k] !== undefined));
    const ka = keep(a);
    const kb = keep(b);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k], emptyEqual));
  }
  return false;
}

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || v === "" || (Array.isArray(v) && v.length === 0) ||
    (isRecord(v) && Object.keys(v).length === 0);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

const SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
function randomSuffix(): string {
  let s = "";
  for (let i = 0; i < 5; i++) s += SUFFIX_ALPHABET[Math.floor(Math.random() * SUFFIX_ALPHABET.length)];
  return s;
}

export { ApiError };
