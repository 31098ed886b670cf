/**
 * What kubelet does for a `podCertificate` projected volume, for local runs, fixtures and tests:
 * read the pod's projections, make a key of the requested type, and build the PCR with a real
 * proof of possession (or, in the 1.36+ form, a stub CSR). The private key is returned so the
 * caller can write the credential bundle as kubelet would.
 */
import type { KeyObject } from "node:crypto";
import { generateRequestKeyPair, proofOfPossession, stubCsr } from "./keys.js";
import { KEY_TYPES, PCR_API_VERSION, PCR_KIND, type KeyType, type Pod, type PodCertificateRequest } from "../../shared/pcr/model.js";

/** One `podCertificate` projected volume source of a pod. */
export interface PodCertificateProjection {
  signerName: string;
  keyType: KeyType;
  maxExpirationSeconds?: number;
  userAnnotations?: Record<string, string>;
  /** Which public-key form to use; real kubelets pick by version. Not a Kubernetes field. */
  publicKeyForm?: PublicKeyForm;
}

export type PublicKeyForm = "pkix" | "csr";

interface VolumeShape {
  projected?: { sources?: { podCertificate?: Record<string, unknown> }[] };
}

/**
 * The pod's podCertificate projections. An example cluster may add the annotation
 * `podcert.ate.dev/public-key-form: csr` to a pod to use the stub-CSR form.
 */
export function podCertificateProjections(pod: Pod & { spec: { volumes?: unknown[] } }): PodCertificateProjection[] {
  const form = pod.metadata.annotations?.["podcert.ate.dev/public-key-form"] === "csr" ? "csr" : "pkix";
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
  o: { nodeUID: string; serviceAccountUID: string; name?: string; generateName?: string },
): KubeletRequest {
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
      apiVersion: PCR_API_VERSION,
      kind: PCR_KIND,
      metadata,
      spec,
    },
    privateKey: key.privateKey,
  };
}
