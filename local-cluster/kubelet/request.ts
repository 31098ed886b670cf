/**
 * What kubelet does for a `podCertificate` projected volume, for local runs, fixtures and tests:
 * read the pod's projections, make a key of the requested type, and build the PCR with a real
 * proof of possession (kubelet 1.35) or a stub CSR (1.36+), in v1beta1 or (1.37+) v1. The private
 * key is returned so the caller can write the credential bundle as kubelet would.
 */
import type { KeyObject } from "node:crypto";
import { generateRequestKeyPair, proofOfPossession, stubCsr } from "./keys.js";
import { certificatesApiVersion, type CertificatesVersion } from "../../shared/kube/api-versions.js";
import { KEY_TYPES, PCR_KIND, type KeyType, type Pod, type PodCertificateRequest } from "../../shared/pcr/model.js";
import type { PublicKeyForm } from "../kubernetes-versions.js";

/** One `podCertificate` projected volume source of a pod. */
export interface PodCertificateProjection {
  signerName: string;
  keyType: KeyType;
  maxExpirationSeconds?: number;
  userAnnotations?: Record<string, string>;
  /** Which public-key form to use (kubernetes-versions.ts: kubelets pick by version). Not a Kubernetes field. */
  publicKeyForm?: PublicKeyForm;
}

export type { PublicKeyForm };

interface VolumeShape {
  projected?: { sources?: { podCertificate?: Record<string, unknown> }[] };
}

/** The pod's podCertificate projections, in the key form its kubelet writes. */
export function podCertificateProjections(pod: Pod & { spec: { volumes?: unknown[] } }, form: PublicKeyForm = "pkix"): PodCertificateProjection[] {
  const out: PodCertificateProjection[] = [];
  for (const volume of (pod.spec.volumes ?? []) as VolumeShape[]) {
    for (const source of volume.projected?.sources ?? []) {
      const pc = source.podCertificate;
      if (!pc || typeof pc.signerName !== "string") continue;
      const keyType = pc.keyType;
      if (typeof keyType !== "string" || !(KEY_TYPES as readonly string[]).includes(keyType)) {
        throw new Error(`pod ${pod.metadata.namespace}/${pod.metadata.name}: podCertificate keyType ${String(keyType)} is not one of ${KEY_TYPES.join(", ")}`);
      }
      const p: PodCertificateProjection = { signerName: pc.signerName, keyType: keyType as KeyType, publicKeyForm: form };
      if (typeof pc.maxExpirationSeconds === "number") p.maxExpirationSeconds = pc.maxExpirationSeconds;
      if (pc.userAnnotations && typeof pc.userAnnotations === "object") p.userAnnotations = pc.userAnnotations as Record<string, string>;
      out.push(p);
    }
  }
  return out;
}

export interface KubeletRequest {
  pcr: PodCertificateRequest;
  privateKey: KeyObject;
}

/** The PCR kubelet would create for this pod and projection (name left to generateName). */
export function buildPodCertificateRequest(
  pod: Pod,
  projection: PodCertificateProjection,
  o: {
    nodeUID: string;
    serviceAccountUID: string;
    name?: string;
    generateName?: string;
    /** Default v1beta1; v1 carries only the stub-CSR form. */
    apiVersion?: CertificatesVersion;
  },
): KubeletRequest {
  const version = o.apiVersion ?? "v1beta1";
  if (version === "v1" && projection.publicKeyForm !== "csr") {
    throw new Error("a certificates.k8s.io/v1 PodCertificateRequest has no pkixPublicKey: use the stub-CSR form");
  }
  const namespace = pod.metadata.namespace;
  if (namespace === undefined || pod.metadata.uid === undefined || pod.spec.nodeName === undefined) {
    throw new Error(`pod ${pod.metadata.name} needs a namespace, a uid and a nodeName to request a certificate`);
  }
  const key = generateRequestKeyPair(projection.keyType);
  const podUID = pod.metadata.uid;
  const spec: PodCertificateRequest["spec"] = {
    signerName: projection.signerName,
    podName: pod.metadata.name,
    podUID,
    serviceAccountName: pod.spec.serviceAccountName ?? "default",
    serviceAccountUID: o.serviceAccountUID,
    nodeName: pod.spec.nodeName,
    nodeUID: o.nodeUID,
    maxExpirationSeconds: projection.maxExpirationSeconds ?? 86400,
  };
  if (projection.publicKeyForm === "csr") {
    spec.stubPKCS10Request = stubCsr(key.privateKey, key.spkiDer).toString("base64");
  } else {
    spec.pkixPublicKey = key.spkiDer.toString("base64");
    spec.proofOfPossession = proofOfPossession(key.privateKey, podUID).toString("base64");
  }
  if (projection.userAnnotations && Object.keys(projection.userAnnotations).length > 0) {
    spec.unverifiedUserAnnotations = { ...projection.userAnnotations };
  }
  // An empty name with generateName asks the API server to name it, as kubelet does.
  const metadata: PodCertificateRequest["metadata"] = { namespace, name: o.name ?? "", generateName: o.generateName ?? "req-" };
  return {
    pcr: {
      apiVersion: certificatesApiVersion(version),
      kind: PCR_KIND,
      metadata,
      spec,
    },
    privateKey: key.privateKey,
  };
}
