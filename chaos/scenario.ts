/**
 * The chaos harness's cluster: pods of both signers with real keys and proofs (mixed key types and
 * a mixed fleet: half the kubelets of the control plane's version, half 1.35 ones with PKIX keys), Services they opt in to, Services that appear only after the burst, and
 * requests that must be denied. Each request carries what it must end as, worked out here from
 * how the cluster is built (not by asking podcert), so the verdict has an independent oracle.
 */
import { kubeletRequestBehaviour, kubernetesVersionFromEnv, type KubernetesVersion } from "../local-cluster/kubernetes-versions.js";
import { createPublicKey } from "node:crypto";
import { buildPodCertificateRequest } from "../local-cluster/kubelet/request.js";
import { seededRandom } from "../local-cluster/faults.js";
import type { KeyType, Pod, PodCertificateRequest } from "../shared/pcr/model.js";
import { ATESYSTEM_SIGNER, EXPECTS_SERVICE_ANNOTATION, WORKERPOOL_NAMESPACE_LABEL, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";

export const NODE = { name: "chaos-node", uid: "55555555-0000-4000-8000-00000000c4a0" };
const TRUST_DOMAIN = "cluster.local";
const CLUSTER_DOMAIN = "cluster.local";

export type Expected = { type: "Issued"; uris: string[]; dnsNames: string[] } | { type: "Denied"; reason: string };

export interface ChaosRequest {
  pcr: PodCertificateRequest;
  expected: Expected;
  /** What kind of request this is, for the table. */
  kind: RequestKind;
  /** The request key (SPKI DER): the certificate must be for it. */
  spki: Buffer;
}

export type RequestKind = "named-service" | "any-service" | "late-service" | "no-opt-in" | "worker" | "bad-annotation" | "namespace-denied";

export interface ChaosScenario {
  /** Namespaces, the node, ServiceAccounts, Services present from the start, pods (no PCRs). */
  objects: Record<string, unknown>[];
  /** Services created once the burst is under way; the pods naming them wait for them. */
  lateServices: Record<string, unknown>[];
  requests: ChaosRequest[];
}

/** Shares of each kind of request (they add up to 1). */
const KINDS: readonly (readonly [RequestKind, number])[] = [
  ["named-service", 0.3],
  ["any-service", 0.12],
  ["late-service", 0.06],
  ["no-opt-in", 0.07],
  ["worker", 0.38],
  ["bad-annotation", 0.04],
  ["namespace-denied", 0.03],
];

/** Key types by share: mostly P-256 as kubelet's default; a few RSA (slow to generate). */
const KEYS: readonly (readonly [KeyType, number])[] = [
  ["ECDSAP256", 0.6],
  ["ECDSAP384", 0.12],
  ["ECDSAP521", 0.05],
  ["ED25519", 0.2],
  ["RSA3072", 0.02],
  ["RSA4096", 0.01],
];

function pick<T>(random: () => number, table: readonly (readonly [T, number])[]): T {
  let r = random();
  for (const [value, share] of table) {
    if (r < share) return value;
    r -= share;
  }
  return table[table.length - 1]![0];
}

const uid = (prefix: string, n: number) => `${prefix}-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const serviceNames = (svc: string, ns: string) => [`${svc}.${ns}.svc`, `${svc}.${ns}.svc.${CLUSTER_DOMAIN}`];
const spiffe = (ns: string, sa: string) => `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`;

function service(name: string, ns: string, selector: Record<string, string>): Record<string, unknown> {
  return { apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns }, spec: { selector, ports: [{ port: 443 }] } };
}

/**
 * `pcrs` requests, their composition drawn from `seed`. `lateServices` Services (default one per
 * 25 late requests, at least one) are held back for the harness to create during the burst.
 */
export function buildScenario(o: { pcrs: number; seed: number; kubernetesVersion?: KubernetesVersion }): ChaosScenario {
  const random = seededRandom(o.seed);
  // A mixed fleet: half the kubelets are the control plane's version, half 1.35 (PKIX keys, v1beta1).
  const kubelets = [kubeletRequestBehaviour(o.kubernetesVersion ?? kubernetesVersionFromEnv()), kubeletRequestBehaviour("1.35")] as const;
  const ate = "ate-system";
  const workers = "workers";
  const unlabelled = "batch";
  const lateCount = Math.max(1, Math.round((o.pcrs * 0.06) / 25));
  const objects: Record<string, unknown>[] = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ate } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: workers, labels: { [WORKERPOOL_NAMESPACE_LABEL]: "true" } } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: unlabelled } },
    { apiVersion: "v1", kind: "Node", metadata: { name: NODE.name, uid: NODE.uid } },
    service("api", ate, { app: "api" }),
    service("router", ate, { app: "router" }),
    // Selects nobody: must never put its names anywhere.
    service("unrelated", ate, { app: "unrelated" }),
  ];
  const saUids = new Map<string, string>();
  for (const [i, ns] of [ate, workers, unlabelled].entries()) {
    const saUid = uid("66666666", i);
    saUids.set(ns, saUid);
    objects.push({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "app", namespace: ns, uid: saUid } });
  }
  const lateServices = Array.from({ length: lateCount }, (_, k) => service(`late-${k}`, ate, { app: `late-${k}` }));

  const requests: ChaosRequest[] = [];
  for (let i = 0; i < o.pcrs; i++) {
    const kind = pick(random, KINDS);
    const keyType = pick(random, KEYS);
    const kubelet = kubelets[random() < 0.5 ? 0 : 1];
    let ns = ate;
    let labels: Record<string, string> = {};
    let signerName = ATESYSTEM_SIGNER;
    let annotations: Record<string, string> | undefined;
    let expected: Expected;
    switch (kind) {
      case "named-service":
        labels = { app: "api" };
        annotations = { [EXPECTS_SERVICE_ANNOTATION]: "api" };
        expected = { type: "Issued", uris: [spiffe(ate, "app")], dnsNames: serviceNames("api", ate) };
        break;
      case "any-service":
        labels = { app: "router" };
        annotations = { [EXPECTS_SERVICE_ANNOTATION]: "true" };
        expected = { type: "Issued", uris: [spiffe(ate, "app")], dnsNames: serviceNames("router", ate) };
        break;
      case "late-service": {
        const svc = `late-${i % lateCount}`;
        labels = { app: svc };
        annotations = { [EXPECTS_SERVICE_ANNOTATION]: svc };
        expected = { type: "Issued", uris: [spiffe(ate, "app")], dnsNames: serviceNames(svc, ate) };
        break;
      }
      case "no-opt-in":
        labels = { app: "api" };
        expected = { type: "Issued", uris: [spiffe(ate, "app")], dnsNames: [] };
        break;
      case "worker":
        ns = workers;
        signerName = WORKERPOOL_SIGNER;
        expected = { type: "Issued", uris: [spiffe(workers, "app")], dnsNames: [] };
        break;
      case "bad-annotation":
        labels = { app: "api" };
        // The opt-in takes "true" or Service names; "True" is neither.
        annotations = { [EXPECTS_SERVICE_ANNOTATION]: "True" };
        expected = { type: "Denied", reason: "InvalidUnverifiedUserAnnotations" };
        break;
      case "namespace-denied":
        // A worker signer request from a namespace without the worker-pool label.
        ns = unlabelled;
        signerName = WORKERPOOL_SIGNER;
        expected = { type: "Denied", reason: "NamespaceNotAllowed" };
        break;
    }
    const pod: Pod & { apiVersion: string; kind: string } = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `pod-${i}`, namespace: ns, uid: uid("77777777", i), labels },
      spec: { nodeName: NODE.name, serviceAccountName: "app" },
      status: { phase: "Pending" },
    };
    objects.push(pod as unknown as Record<string, unknown>);
    const { pcr, privateKey } = buildPodCertificateRequest(
      pod,
      { signerName, keyType, publicKeyForm: kubelet.form, ...(annotations ? { userAnnotations: annotations } : {}) },
      { nodeUID: NODE.uid, serviceAccountUID: saUids.get(ns)!, name: `req-${i}`, apiVersion: kubelet.apiVersion },
    );
    delete pcr.metadata.generateName;
    requests.push({ pcr, expected, kind, spki: createPublicKey(privateKey).export({ type: "spki", format: "der" }) });
  }
  return { objects, lateServices, requests };
}
