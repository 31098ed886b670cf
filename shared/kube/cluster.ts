/**
 * Kubernetes access: the few reads and writes podcert makes, behind a small interface so decisions
 * never see the client, and tests can run against the embedded API server through the same client.
 * Failures are mapped here, once: 404 is "absent" (undefined), 409 is a ConflictError, anything
 * else (5xx, 403, 429, network) is a TransientError, so the broker retries and no request is denied
 * because the API server was unwell.
 */
import { TransientError } from "../errors.js";
import type { Namespace, Node, Pod, PodCertificateRequest, PcrStatus, Service, ServiceAccount } from "../pcr/model.js";

export interface KubernetesEvent {
  /** The object the event is about (a PCR). */
  regarding: { kind: string; apiVersion: string; namespace: string; name: string; uid: string };
  type: "Normal" | "Warning";
  reason: string;
  message: string;
  /** The component that reports it, e.g. podcert-sign. */
  reportingComponent: string;
}

/** A core/v1 Event as the API server lists it, as far as `podcert status` reads it. */
export interface CoreV1Event {
  metadata?: { name?: string; namespace?: string };
  involvedObject?: { kind?: string; namespace?: string; name?: string; uid?: string };
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  lastTimestamp?: string;
  eventTime?: string;
  source?: { component?: string };
  reportingComponent?: string;
}

/** For reads a cache may answer (kube/lookup-cache.ts): `fresh` asks the API server itself. */
export interface ReadOptions {
  fresh?: boolean;
}

/**
 * What a status write names: the PCR (uid and resourceVersion are its preconditions) and the
 * version it was read in. No spec: the status subresource keeps the stored one.
 */
export interface PcrStatusTarget {
  apiVersion: string;
  kind: string;
  metadata: { namespace: string; name: string; uid?: string | undefined; resourceVersion?: string | undefined };
}

export interface ClusterApi {
  readPcr(namespace: string, name: string): Promise<PodCertificateRequest | undefined>;
  /**
   * PUT /status with the given resourceVersion; throws ConflictError when it is stale (or the uid
   * is another's). undefined when the PCR does not exist (404).
   */
  replacePcrStatus(pcr: PcrStatusTarget, status: PcrStatus): Promise<PodCertificateRequest | undefined>;
  listPcrs(o?: { signerName?: string; namespace?: string }): Promise<PodCertificateRequest[]>;
  readPod(namespace: string, name: string): Promise<Pod | undefined>;
  readNamespace(name: string, o?: ReadOptions): Promise<Namespace | undefined>;
  readNode(name: string, o?: ReadOptions): Promise<Node | undefined>;
  readServiceAccount(namespace: string, name: string, o?: ReadOptions): Promise<ServiceAccount | undefined>;
  listServices(namespace: string): Promise<Service[]>;
  readService(namespace: string, name: string): Promise<Service | undefined>;
  createEvent(event: KubernetesEvent): Promise<void>;
}

/** A certificates.k8s.io ClusterTrustBundle, as far as podcert reads and writes it. */
export interface ClusterTrustBundle {
  apiVersion: string;
  kind: "ClusterTrustBundle";
  metadata: { name: string; labels?: Record<string, string>; resourceVersion?: string };
  spec: { signerName?: string; trustBundle: string };
}

export interface ConfigMap {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: { name: string; namespace: string; labels?: Record<string, string>; resourceVersion?: string };
  data?: Record<string, string>;
}

/** The writes of the trust publisher (functions/publish-trust), with the same error mapping. */
export interface TrustApi {
  /** ClusterTrustBundles matching a label selector ("key=value"). */
  listTrustBundles(labelSelector: string): Promise<ClusterTrustBundle[]>;
  createTrustBundle(bundle: ClusterTrustBundle): Promise<void>;
  /** PUT with the bundle's resourceVersion; ConflictError when it is stale. */
  replaceTrustBundle(bundle: ClusterTrustBundle): Promise<void>;
  /** Absent already counts as deleted. */
  deleteTrustBundle(name: string): Promise<void>;
  readConfigMap(namespace: string, name: string): Promise<ConfigMap | undefined>;
  /** Creates it without a resourceVersion, else replaces it (ConflictError when stale). */
  writeConfigMap(configMap: ConfigMap): Promise<void>;
}

/** A namespace's Services and the resourceVersion of that list, for a watch to start from. */
export interface ServiceList {
  items: Service[];
  resourceVersion: string;
}

/** One event of a Services watch; a BOOKMARK only moves the resourceVersion on. */
export type ServiceWatchEvent =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; object: Service }
  | { type: "BOOKMARK"; resourceVersion: string };

/**
 * The watch's resourceVersion is older than the API server keeps (410 Gone / Expired): the changes
 * since are lost, so the watcher must list again. Transient for anyone who does not handle it.
 */
export class ResourceExpiredError extends TransientError {
  override readonly name = "ResourceExpiredError";
}

/** What the Services index (kube/services-index.ts) reads: list with its version, watch, get. */
export interface ServicesWatchApi {
  listServicesVersioned(namespace: string): Promise<ServiceList>;
  /**
   * Sends `onEvent` every change after `resourceVersion` (and BOOKMARKs) until the API server ends
   * the stream (resolves; resume from the last version seen) or `signal` aborts (resolves). Rejects
   * with ResourceExpiredError on 410, else the error any other call fails with (a TransientError;
   * a ConflictError on 409, which a watch is not expected to get).
   */
  watchServices(
    namespace: string,
    o: { resourceVersion: string; timeoutSeconds: number; signal: AbortSignal },
    onEvent: (e: ServiceWatchEvent) => void,
  ): Promise<void>;
  readService(namespace: string, name: string): Promise<Service | undefined>;
}

/** One page of a LIST: the items and the token for the next page, if any. */
export interface PcrPage {
  items: PodCertificateRequest[];
  /** metadata.continue; undefined on the last page. */
  continue?: string;
}

/** The one call of the resync sender (functions/resync): a paged LIST of PCRs by signer. */
export interface ResyncApi {
  /**
   * One page of the signer's PCRs in every namespace (fieldSelector spec.signerName, limit,
   * continue). An expired continue token (410) is a TransientError like any other failure: the
   * next tick lists again from the start.
   */
  listPcrPage(o: { signerName: string; limit: number; continue?: string }): Promise<PcrPage>;
}
