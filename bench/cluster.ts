/** Synthetic clusters for the benchmarks: many pods with real PCRs (real keys and proofs). */
import { buildPodCertificateRequest } from "../local-cluster/kubelet/request.js";
import type { KeyType, Pod, PodCertificateRequest } from "../shared/pcr/model.js";
import { ATESYSTEM_SIGNER, EXPECTS_SERVICE_ANNOTATION, WORKERPOOL_NAMESPACE_LABEL, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";

export const NODE = { name: "bench-node", uid: "55555555-0000-4000-8000-000000000001" };

const uid = (prefix: string, n: number) => `${prefix}-0000-4000-8000-${n.toString().padStart(12, "0")}`;

export interface SyntheticCluster {
  objects: Record<string, unknown>[];
  pcrs: PodCertificateRequest[];
}

/**
 * `pods` pods, each with one PCR. ate-system pods opt in to the Service `api` (DNS names);
 * workerpool pods get SPIFFE identities. `services` extra Services sit in each namespace, none
 * selecting the pods but `api`, so SAN derivation has to look past them.
 */
export function syntheticCluster(o: { pods: number; keyType: KeyType; signer: "atesystem" | "workerpool"; services?: number; withPcrs?: boolean }): SyntheticCluster {
  const ns = o.signer === "atesystem" ? "ate-system" : "workers";
  const signerName = o.signer === "atesystem" ? ATESYSTEM_SIGNER : WORKERPOOL_SIGNER;
  const saUid = uid("66666666", 1);
  const objects: Record<string, unknown>[] = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, ...(o.signer === "workerpool" ? { labels: { [WORKERPOOL_NAMESPACE_LABEL]: "true" } } : {}) } },
    { apiVersion: "v1", kind: "Node", metadata: { name: NODE.name, uid: NODE.uid } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "app", namespace: ns, uid: saUid } },
    { apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: ns }, spec: { selector: { app: "bench" }, ports: [{ port: 443 }] } },
  ];
  for (let i = 0; i < (o.services ?? 0); i++) {
    objects.push({ apiVersion: "v1", kind: "Service", metadata: { name: `other-${i}`, namespace: ns }, spec: { selector: { app: `other-${i}` }, ports: [{ port: 80 }] } });
  }
  const pcrs: PodCertificateRequest[] = [];
  for (let i = 0; i < o.pods; i++) {
    const pod: Pod & { apiVersion: string; kind: string } = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `pod-${i}`, namespace: ns, uid: uid("77777777", i), labels: { app: "bench" } },
      spec: { nodeName: NODE.name, serviceAccountName: "app" },
      status: { phase: "Pending" },
    };
    objects.push(pod as unknown as Record<string, unknown>);
    if (o.withPcrs === false) continue;
    const { pcr } = buildPodCertificateRequest(
      pod,
      { signerName, keyType: o.keyType, ...(o.signer === "atesystem" ? { userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "api" } } : {}) },
      { nodeUID: NODE.uid, serviceAccountUID: saUid, name: `req-${i}` },
    );
    delete pcr.metadata.generateName;
    pcr.metadata.uid = uid("88888888", i);
    pcrs.push(pcr);
    objects.push(pcr as unknown as Record<string, unknown>);
  }
  return { objects, pcrs };
}
