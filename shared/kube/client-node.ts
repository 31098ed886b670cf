/** ClusterApi over @kubernetes/client-node: a kubeconfig (KUBECONFIG or in-cluster) or a given one. */
import { createHash } from "node:crypto";
import {
  ApiException,
  CertificatesV1beta1Api,
  CoreV1Api,
  KubeConfig,
  type V1beta1PodCertificateRequest,
} from "@kubernetes/client-node";
import { ConflictError, TransientError } from "../errors.js";
import type { Namespace, Node, Pod, PodCertificateRequest, PcrStatus, Service, ServiceAccount } from "../pcr/model.js";
import type { ClusterApi, KubernetesEvent } from "./cluster.js";

/** Observes every API call (for metrics); never sees bodies. */
export type ApiCallObserver = (call: { operation: string; seconds: number; outcome: "ok" | "absent" | "conflict" | "error" }) => void;

/** Loads the kubeconfig the way kubectl does: $KUBECONFIG, ~/.kube/config, or in-cluster. */
export function loadKubeConfig(o: { kubeconfigText?: string } = {}): KubeConfig {
  const kc = new KubeConfig();
  if (o.kubeconfigText !== undefined) kc.loadFromString(o.kubeconfigText);
  else kc.loadFromDefault();
  reuseConnections(kc);
  return kc;
}

type Dispatcher = unknown;
interface DispatcherFactory {
  createDispatcher(cluster: unknown, agentOptions: unknown): Dispatcher | undefined;
  createDispatcherOptions(cluster: unknown, agentOptions: unknown): unknown;
}

/**
 * client-node 2.0.1 builds a new undici Agent for every request whenever TLS options are set
 * (always in a cluster: the service-account CA), so every API call opened a new connection and,
 * against a real API server, paid a TLS handshake. Reuse one dispatcher per distinct set of
 * options instead: the options (CA, client certificate) are compared on every request, so a
 * rotated file still takes effect on the next call. Tokens travel in headers and are unaffected.
 */
function reuseConnections(kc: KubeConfig): void {
  const factory = kc as unknown as DispatcherFactory;
  const original = factory.createDispatcher.bind(kc);
  const cache = new Map<string, Dispatcher | undefined>();
  factory.createDispatcher = (cluster, agentOptions) => {
    const key = createHash("sha256").update(JSON.stringify(factory.createDispatcherOptions(cluster, agentOptions))).digest("base64");
    if (!cache.has(key)) {
      if (cache.size > 8) cache.clear();
      cache.set(key, original(cluster, agentOptions));
    }
    return cache.get(key);
  };
}

/**
 * client-node models carry Date objects and its serializer calls toISOString on them; podcert's
 * plain objects carry RFC 3339 strings. JSON round-trips turn models into plain data.
 */
function plain<T>(model: unknown): T {
  return JSON.parse(JSON.stringify(model)) as T;
}

const date = (s: string | undefined): Date | undefined => (s === undefined ? undefined : new Date(s));

export class KubeClusterApi implements ClusterApi {
  private readonly core: CoreV1Api;
  private readonly certs: CertificatesV1beta1Api;

  constructor(
    kc: KubeConfig,
    private readonly observe: ApiCallObserver = () => {},
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.certs = kc.makeApiClient(CertificatesV1beta1Api);
  }

  private async call<T>(operation: string, fn: () => Promise<T>, absentOk: true): Promise<T | undefined>;
  private async call<T>(operation: string, fn: () => Promise<T>, absentOk?: false): Promise<T>;
  private async call<T>(operation: string, fn: () => Promise<T>, absentOk = false): Promise<T | undefined> {
    const start = performance.now();
    const done = (outcome: "ok" | "absent" | "conflict" | "error") =>
      this.observe({ operation, seconds: (performance.now() - start) / 1000, outcome });
    try {
      const result = await fn();
      done("ok");
      return result;
    } catch (e) {
      if (e instanceof ApiException) {
        if (e.code === 404 && absentOk) {
          done("absent");
          return undefined;
        }
        if (e.code === 409) {
          done("conflict");
          throw new ConflictError(`${operation}: conflict (${statusMessage(e.body)})`);
        }
        done("error");
        throw new TransientError(`Kubernetes API ${operation} failed with HTTP ${e.code}: ${statusMessage(e.body)}`, {
          cause: e,
          overloaded: e.code === 429,
        });
      }
      done("error");
      throw new TransientError(`Kubernetes API ${operation} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  async readPcr(namespace: string, name: string) {
    const r = await this.call("get podcertificaterequest", () => this.certs.readNamespacedPodCertificateRequest({ namespace, name }), true);
    return r && plain<PodCertificateRequest>(r);
  }

  async replacePcrStatus(pcr: PodCertificateRequest, status: PcrStatus) {
    const body: V1beta1PodCertificateRequest = {
      apiVersion: pcr.apiVersion,
      kind: pcr.kind,
      metadata: {
        name: pcr.metadata.name,
        namespace: pcr.metadata.namespace,
        ...(pcr.metadata.uid === undefined ? {} : { uid: pcr.metadata.uid }),
        ...(pcr.metadata.resourceVersion === undefined ? {} : { resourceVersion: pcr.metadata.resourceVersion }),
      },
      spec: pcr.spec as V1beta1PodCertificateRequest["spec"],
      status: {
        ...(status.conditions === undefined
          ? {}
          : { conditions: status.conditions.map((c) => ({ ...c, lastTransitionTime: new Date(c.lastTransitionTime) })) }),
        ...(status.certificateChain === undefined ? {} : { certificateChain: status.certificateChain }),
        ...(status.notBefore === undefined ? {} : { notBefore: date(status.notBefore)! }),
        ...(status.beginRefreshAt === undefined ? {} : { beginRefreshAt: date(status.beginRefreshAt)! }),
        ...(status.notAfter === undefined ? {} : { notAfter: date(status.notAfter)! }),
      },
    };
    const r = await this.call("update podcertificaterequests/status", () =>
      this.certs.replaceNamespacedPodCertificateRequestStatus({ namespace: pcr.metadata.namespace, name: pcr.metadata.name, body }),
    );
    return plain<PodCertificateRequest>(r);
  }

  async listPcrs(o: { signerName?: string; namespace?: string } = {}) {
    const fieldSelector = o.signerName === undefined ? undefined : `spec.signerName=${o.signerName}`;
    const list = await this.call("list podcertificaterequests", () =>
      o.namespace === undefined
        ? this.certs.listPodCertificateRequestForAllNamespaces(fieldSelector === undefined ? {} : { fieldSelector })
        : this.certs.listNamespacedPodCertificateRequest({ namespace: o.namespace, ...(fieldSelector === undefined ? {} : { fieldSelector }) }),
    );
    return plain<{ items: PodCertificateRequest[] }>(list).items.map((p) => ({
      ...p,
      apiVersion: p.apiVersion ?? "certificates.k8s.io/v1beta1",
      kind: p.kind ?? "PodCertificateRequest",
    }));
  }

  async readPod(namespace: string, name: string) {
    const r = await this.call("get pod", () => this.core.readNamespacedPod({ namespace, name }), true);
    return r && plain<Pod>(r);
  }

  async readNamespace(name: string) {
    const r = await this.call("get namespace", () => this.core.readNamespace({ name }), true);
    return r && plain<Namespace>(r);
  }

  async readNode(name: string) {
    const r = await this.call("get node", () => this.core.readNode({ name }), true);
    return r && plain<Node>(r);
  }

  async readServiceAccount(namespace: string, name: string) {
    const r = await this.call("get serviceaccount", () => this.core.readNamespacedServiceAccount({ namespace, name }), true);
    return r && plain<ServiceAccount>(r);
  }

  async readService(namespace: string, name: string) {
    const r = await this.call("get service", () => this.core.readNamespacedService({ namespace, name }), true);
    return r && plain<Service>(r);
  }

  async listServices(namespace: string) {
    const r = await this.call("list services", () => this.core.listNamespacedService({ namespace }));
    return plain<{ items: Service[] }>(r).items;
  }

  async createEvent(event: KubernetesEvent) {
    const now = new Date();
    await this.call("create event", () =>
      this.core.createNamespacedEvent({
        namespace: event.regarding.namespace,
        body: {
          metadata: { generateName: `${event.regarding.name}.`, namespace: event.regarding.namespace },
          involvedObject: event.regarding,
          type: event.type,
          reason: event.reason,
          message: event.message,
          source: { component: event.reportingComponent },
          reportingComponent: event.reportingComponent,
          reportingInstance: event.reportingComponent,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      }),
    );
  }
}

function statusMessage(body: unknown): string {
  if (typeof body === "string") {
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === "string") return parsed.message.slice(0, 500);
    } catch {
      return body.slice(0, 200);
    }
  }
  if (body && typeof body === "object" && typeof (body as { message?: unknown }).message === "string") {
    return (body as { message: string }).message.slice(0, 500);
  }
  return "no details";
}
