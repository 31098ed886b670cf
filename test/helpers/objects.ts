/**
 * Small builders for the Kubernetes objects podcert's decisions read (Pods, Services, Nodes,
 * ServiceAccounts, Namespaces) and for real PodCertificateRequests made the way kubelet makes them
 * (real keys, real proofs). Every builder takes overrides so a test states only what it is about.
 */
import { buildPodCertificateRequest, type KubeletRequest, type PodCertificateProjection } from "../../local-cluster/kubelet/request.js";
import type { KeyType, Namespace, Node, Pod, PodCertificateRequest, Service, ServiceAccount } from "../../shared/pcr/model.js";

export const NS = "ate-system";
export const POD_NAME = "web-0";
export const POD_UID = "0b6f7c1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b";
export const NODE_NAME = "node-a";
export const NODE_UID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";
export const SA_NAME = "web";
export const SA_UID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

export interface PodOptions {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  nodeName?: string;
  serviceAccountName?: string;
  hostname?: string;
  subdomain?: string;
  phase?: string;
  deletionTimestamp?: string;
}

export function pod(o: PodOptions = {}): Pod {
  const p: Pod = {
    metadata: {
      name: o.name ?? POD_NAME,
      namespace: o.namespace ?? NS,
      uid: o.uid ?? POD_UID,
      labels: o.labels ?? { app: "web" },
    },
    spec: { nodeName: o.nodeName ?? NODE_NAME, serviceAccountName: o.serviceAccountName ?? SA_NAME },
    status: { phase: o.phase ?? "Running" },
  };
  if (o.hostname !== undefined) p.spec.hostname = o.hostname;
  if (o.subdomain !== undefined) p.spec.subdomain = o.subdomain;
  if (o.deletionTimestamp !== undefined) p.metadata.deletionTimestamp = o.deletionTimestamp;
  return p;
}

export interface ServiceOptions {
  namespace?: string;
  /** Omitted from the spec when null (the API server would default it to ClusterIP). */
  type?: string | null;
  /** Omitted from the spec when null. */
  selector?: Record<string, string> | null;
  headless?: boolean;
}

export function service(name: string, o: ServiceOptions = {}): Service {
  const s: Service = { metadata: { name, namespace: o.namespace ?? NS, uid: `svc-${name}` }, spec: {} };
  if (o.type !== null) s.spec.type = o.type ?? "ClusterIP";
  if (o.selector !== null) s.spec.selector = o.selector ?? { app: "web" };
  if (o.headless) s.spec.clusterIP = "None";
  else if (o.type !== "ExternalName") s.spec.clusterIP = "10.96.0.10";
  return s;
}

export function namespace(name: string, labels?: Record<string, string>): Namespace {
  const n: Namespace = { metadata: { name, uid: `ns-${name}` } };
  if (labels !== undefined) n.metadata.labels = labels;
  return n;
}

export function node(o: { name?: string; uid?: string } = {}): Node {
  return { metadata: { name: o.name ?? NODE_NAME, uid: o.uid ?? NODE_UID } };
}

export function serviceAccount(o: { name?: string; namespace?: string; uid?: string } = {}): ServiceAccount {
  return { metadata: { name: o.name ?? SA_NAME, namespace: o.namespace ?? NS, uid: o.uid ?? SA_UID } };
}

export interface PcrOptions {
  signerName: string;
  keyType?: KeyType;
  form?: "pkix" | "csr";
  userAnnotations?: Record<string, string>;
  maxExpirationSeconds?: number;
  name?: string;
  uid?: string;
  nodeUID?: string;
  serviceAccountUID?: string;
}

/** A PCR made exactly as kubelet makes it for `p` (real key, real proof or stub CSR). */
export function pcrFor(p: Pod, o: PcrOptions): PodCertificateRequest {
  return kubeletRequest(p, o).pcr;
}

/** {@link pcrFor}, also returning the request's private key. */
export function kubeletRequest(p: Pod, o: PcrOptions): KubeletRequest {
  const projection: PodCertificateProjection = {
    signerName: o.signerName,
    keyType: o.keyType ?? "ECDSAP256",
    publicKeyForm: o.form ?? "pkix",
  };
  if (o.userAnnotations !== undefined) projection.userAnnotations = o.userAnnotations;
  if (o.maxExpirationSeconds !== undefined) projection.maxExpirationSeconds = o.maxExpirationSeconds;
  const req = buildPodCertificateRequest(p, projection, {
    nodeUID: o.nodeUID ?? NODE_UID,
    serviceAccountUID: o.serviceAccountUID ?? SA_UID,
    name: o.name ?? "req-abcde",
  });
  req.pcr.metadata.uid = o.uid ?? "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716";
  return req;
}

/** A core (v1) object as the API server stores it: the builders above leave out apiVersion and kind. */
export function v1<T extends object>(kind: string, o: T): T & { apiVersion: "v1"; kind: string } {
  return { apiVersion: "v1", kind, ...o };
}

/** The `n` shortest distinct Service names (DNS-1035 labels): a..z, then a0..zz, ... */
export function shortServiceNames(n: number): string[] {
  const first = "abcdefghijklmnopqrstuvwxyz";
  const rest = "abcdefghijklmnopqrstuvwxyz0123456789";
  const out: string[] = [...first];
  for (let i = 0; out.length < n; i++) {
    const head = out[i]!;
    for (const c of rest) if (out.length < n) out.push(head + c);
  }
  return out.slice(0, n);
}
