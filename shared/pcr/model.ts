/**
 * The PodCertificateRequest as plain data, in either certificates.k8s.io version podcert speaks
 * (kube/api-versions.ts: v1 has no pkixPublicKey/proofOfPossession, v1beta1 has both key forms),
 * and the small subset of core objects podcert reads. These are the shapes decisions work on;
 * parsing of untrusted input into them lives in `parse.ts`.
 */

export const PCR_KIND = "PodCertificateRequest";

export const KEY_TYPES = [
  "RSA3072",
  "RSA4096",
  "ECDSAP256",
  "ECDSAP384",
  "ECDSAP521",
  "ED25519",
] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export const TERMINAL_CONDITION_TYPES = ["Issued", "Denied", "Failed"] as const;
export type TerminalConditionType = (typeof TERMINAL_CONDITION_TYPES)[number];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generateName?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: unknown[];
}

export interface PcrSpec {
  signerName: string;
  podName: string;
  podUID: string;
  serviceAccountName: string;
  serviceAccountUID: string;
  nodeName: string;
  nodeUID: string;
  maxExpirationSeconds?: number;
  /** v1beta1 only (deprecated in 1.36): with proofOfPossession, or stubPKCS10Request, never both. */
  pkixPublicKey?: string;
  proofOfPossession?: string;
  /** v1beta1 from 1.36 and v1 (required there). A v1 read of a PKIX-key request shows it null. */
  stubPKCS10Request?: string | null;
  unverifiedUserAnnotations?: Record<string, string>;
}

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface PcrStatus {
  conditions?: Condition[];
  certificateChain?: string;
  notBefore?: string;
  beginRefreshAt?: string;
  notAfter?: string;
}

export interface PodCertificateRequest {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { namespace: string };
  spec: PcrSpec;
  status?: PcrStatus;
}

export interface Pod {
  metadata: ObjectMeta;
  spec: {
    nodeName?: string;
    serviceAccountName?: string;
    hostname?: string;
    subdomain?: string;
  };
  status?: { phase?: string };
}

export interface ServicePort {
  name?: string;
  port: number;
}

export interface Service {
  metadata: ObjectMeta;
  spec: {
    type?: string;
    clusterIP?: string;
    selector?: Record<string, string>;
  };
}

export interface Namespace {
  metadata: ObjectMeta;
}

export interface Node {
  metadata: ObjectMeta;
}

export interface ServiceAccount {
  metadata: ObjectMeta;
}

/** What identifies one PCR across steps and retries (the uid makes a re-created name distinct). */
export interface PcrRef {
  namespace: string;
  name: string;
  uid: string;
}

export function pcrRef(pcr: PodCertificateRequest): PcrRef {
  return {
    namespace: pcr.metadata.namespace,
    name: pcr.metadata.name,
    uid: pcr.metadata.uid ?? "",
  };
}

/** The terminal condition (Issued, Denied or Failed) if the PCR has one. */
export function terminalCondition(pcr: PodCertificateRequest): Condition | undefined {
  return pcr.status?.conditions?.find(
    (c) => (TERMINAL_CONDITION_TYPES as readonly string[]).includes(c.type) && c.status === "True",
  );
}

export function describePcr(ref: PcrRef): string {
  return `${ref.namespace}/${ref.name}`;
}
