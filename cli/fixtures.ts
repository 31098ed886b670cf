/**
 * `podcert fixtures --out <dir>`: regenerates the test fixtures with fresh keys and real proofs:
 * cluster files (YAML, like `kubectl get -o yaml`) holding pods, Services and PCRs that cover every
 * key type, both public-key forms, both signers and each deny reason, and the ApiServerSource
 * events that start the pipeline for them. Events for later steps carry attestations, so tests
 * make those at run time by running the previous step.
 *
 * One set per emulated control plane (`--kubernetes-version`), as its kubelets and its
 * ApiServerSource would write them: 1.35 has only PKIX-key requests in v1beta1 (no case that needs
 * a stub CSR); 1.36 both forms in v1beta1 (1.35 and 1.36 kubelets); 1.37 stub-CSR requests in v1
 * (1.37 kubelets) beside PKIX-key ones in v1beta1 (1.35 kubelets), and events as a source
 * watching v1 sends them.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { eventToJson } from "../shared/events/codec.js";
import { buildPodCertificateRequest, type PodCertificateProjection, type PublicKeyForm } from "../local-cluster/kubelet/request.js";
import { KEY_TYPES, type KeyType, type Pod, type PodCertificateRequest } from "../shared/pcr/model.js";
import { ATESYSTEM_SIGNER, EXPECTS_SERVICE_ANNOTATION, WORKERPOOL_NAMESPACE_LABEL, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";
import { apiServerAddEvent } from "../shared/events/pcr-event.js";
import { proofOfPossession } from "../local-cluster/kubelet/keys.js";
import { EXIT, optional, parse, required } from "./args.js";
import { kubernetesVersionOption } from "./cluster.js";
import type { KubernetesVersion } from "../local-cluster/kubernetes-versions.js";

type KubeObject = Record<string, unknown> & { kind: string; metadata: Record<string, unknown> };

const NODE = { name: "node-1", uid: "11111111-0000-4000-8000-000000000001" };

function uid(n: number): string {
  return `22222222-0000-4000-8000-${n.toString().padStart(12, "0")}`;
}

function base(): { objects: KubeObject[]; sa: Map<string, string> } {
  const objects: KubeObject[] = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "ate-system" } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "workers", labels: { [WORKERPOOL_NAMESPACE_LABEL]: "true" } } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "tenant" } },
    { apiVersion: "v1", kind: "Node", metadata: { name: NODE.name, uid: NODE.uid } },
    { apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: "ate-system" }, spec: { selector: { app: "api" }, ports: [{ port: 443 }] } },
    { apiVersion: "v1", kind: "Service", metadata: { name: "api-internal", namespace: "ate-system" }, spec: { type: "NodePort", selector: { app: "api" }, ports: [{ port: 8443 }] } },
    { apiVersion: "v1", kind: "Service", metadata: { name: "valkey", namespace: "ate-system" }, spec: { clusterIP: "None", selector: { app: "valkey" }, ports: [{ port: 6379 }] } },
    { apiVersion: "v1", kind: "Service", metadata: { name: "external", namespace: "ate-system" }, spec: { type: "ExternalName", externalName: "example.com" } },
  ];
  const sa = new Map<string, string>();
  let n = 1;
  for (const [ns, name] of [["ate-system", "control"], ["workers", "worker"], ["tenant", "default"]] as const) {
    const id = `33333333-0000-4000-8000-${(n++).toString().padStart(12, "0")}`;
    sa.set(`${ns}/${name}`, id);
    objects.push({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: ns, uid: id } });
  }
  return { objects, sa };
}

interface Case {
  name: string;
  namespace: string;
  signerName: string;
  keyType: KeyType;
  form: PublicKeyForm;
  labels?: Record<string, string>;
  hostname?: string;
  subdomain?: string;
  userAnnotations?: Record<string, string>;
  /** Change the request after kubelet built it (to make it wrong on purpose). */
  tamper?: (pcr: PodCertificateRequest) => void;
}

function podFor(c: Case, n: number, serviceAccount: string): Pod & { apiVersion: string; kind: string } {
  const pod: Pod & { apiVersion: string; kind: string } = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: c.name, namespace: c.namespace, uid: uid(n), labels: c.labels ?? { app: c.name } },
    spec: { nodeName: NODE.name, serviceAccountName: serviceAccount },
    status: { phase: "Pending" },
  };
  if (c.hostname) pod.spec.hostname = c.hostname;
  if (c.subdomain) pod.spec.subdomain = c.subdomain;
  return pod;
}

/**
 * The cases a control plane of this version can hold, in the form its kubelets write: 1.35 knows
 * no stub CSR, so its kubelets write PKIX keys, and a case about a broken CSR cannot exist there.
 */
export function casesFor(cases: readonly Case[], version: KubernetesVersion): Case[] {
  if (version !== "1.35") return [...cases];
  return cases.filter((c) => !(c.form === "csr" && c.tamper)).map((c) => ({ ...c, form: "pkix" as const }));
}

/** What an ApiServerSource watching the preferred version sends: on 1.37, v1, which shows no PKIX key. */
function asWatched(pcr: PodCertificateRequest, version: KubernetesVersion): PodCertificateRequest {
  if (version !== "1.37" || pcr.apiVersion === "certificates.k8s.io/v1") return pcr;
  const { pkixPublicKey: _key, proofOfPossession: _proof, ...spec } = pcr.spec;
  return { ...pcr, apiVersion: "certificates.k8s.io/v1", spec: { ...spec, stubPKCS10Request: null } };
}

function buildCluster(cases: readonly Case[], version: KubernetesVersion): { objects: KubeObject[]; pcrs: PodCertificateRequest[] } {
  const { objects, sa } = base();
  const pcrs: PodCertificateRequest[] = [];
  casesFor(cases, version).forEach((c, i) => {
    const saName = c.namespace === "ate-system" ? "control" : c.namespace === "workers" ? "worker" : "default";
    const pod = podFor(c, i + 1, saName);
    objects.push(pod as unknown as KubeObject);
    const projection: PodCertificateProjection = { signerName: c.signerName, keyType: c.keyType, publicKeyForm: c.form };
    if (c.userAnnotations) projection.userAnnotations = c.userAnnotations;
    const { pcr } = buildPodCertificateRequest(pod, projection, {
      nodeUID: NODE.uid,
      serviceAccountUID: sa.get(`${c.namespace}/${saName}`) ?? "",
      name: `req-${c.name}`,
      // 1.37 kubelets write v1 (stub CSR only); a PKIX key is a 1.35 kubelet's, in v1beta1.
      apiVersion: version === "1.37" && c.form === "csr" ? "v1" : "v1beta1",
    });
    delete pcr.metadata.generateName;
    pcr.metadata.uid = `44444444-0000-4000-8000-${(i + 1).toString().padStart(12, "0")}`;
    c.tamper?.(pcr);
    pcrs.push(pcr);
    objects.push(pcr as unknown as KubeObject);
  });
  return { objects, pcrs };
}

/** Every key type for both signers, alternating public-key forms, with and without DNS names. */
export function issuedCases(): Case[] {
  const cases: Case[] = [];
  KEY_TYPES.forEach((keyType, i) => {
    const t = keyType.toLowerCase();
    cases.push({
      name: `api-${t}`,
      namespace: "ate-system",
      signerName: ATESYSTEM_SIGNER,
      keyType,
      form: i % 2 === 0 ? "pkix" : "csr",
      labels: { app: "api" },
      userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: i % 3 === 0 ? "true" : "api, api-internal" },
    });
    cases.push({ name: `router-${t}`, namespace: "ate-system", signerName: ATESYSTEM_SIGNER, keyType, form: i % 2 === 0 ? "csr" : "pkix" });
    cases.push({ name: `worker-${t}`, namespace: "workers", signerName: WORKERPOOL_SIGNER, keyType, form: i % 2 === 0 ? "pkix" : "csr" });
  });
  cases.push({
    name: "valkey-0",
    namespace: "ate-system",
    signerName: ATESYSTEM_SIGNER,
    keyType: "ECDSAP256",
    form: "pkix",
    labels: { app: "valkey" },
    hostname: "valkey-0",
    subdomain: "valkey",
    userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "valkey" },
  });
  return cases;
}

/** One request per deny reason, and one that must stay pending (its Service does not exist). */
export function deniedCases(): Case[] {
  return [
    { name: "worker-asks-atesystem", namespace: "workers", signerName: ATESYSTEM_SIGNER, keyType: "ECDSAP256", form: "pkix" },
    { name: "ate-asks-workerpool", namespace: "ate-system", signerName: WORKERPOOL_SIGNER, keyType: "ECDSAP256", form: "pkix" },
    { name: "tenant-asks-workerpool", namespace: "tenant", signerName: WORKERPOOL_SIGNER, keyType: "ED25519", form: "pkix" },
    { name: "bad-annotation", namespace: "ate-system", signerName: ATESYSTEM_SIGNER, keyType: "ECDSAP256", form: "pkix", userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "True" } },
    { name: "unknown-annotation", namespace: "ate-system", signerName: ATESYSTEM_SIGNER, keyType: "ECDSAP256", form: "pkix", userAnnotations: { "example.com/other": "x" } },
    {
      name: "rsa2048",
      namespace: "ate-system",
      signerName: ATESYSTEM_SIGNER,
      keyType: "ECDSAP256",
      form: "pkix",
      tamper: (pcr) => {
        // kubelet never makes RSA-2048 keys; a hand-made PCR could.
        const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
        pcr.spec.pkixPublicKey = publicKey.export({ type: "spki", format: "der" }).toString("base64");
        pcr.spec.proofOfPossession = proofOfPossession(privateKey, pcr.spec.podUID).toString("base64");
      },
    },
    {
      name: "wrong-proof",
      namespace: "ate-system",
      signerName: ATESYSTEM_SIGNER,
      keyType: "ECDSAP384",
      form: "pkix",
      tamper: (pcr) => {
        const other = generateKeyPairSync("ec", { namedCurve: "P-384" });
        pcr.spec.proofOfPossession = proofOfPossession(other.privateKey, pcr.spec.podUID).toString("base64");
      },
    },
    {
      name: "tampered-csr",
      namespace: "workers",
      signerName: WORKERPOOL_SIGNER,
      keyType: "ED25519",
      form: "csr",
      tamper: (pcr) => {
        const der = Buffer.from(pcr.spec.stubPKCS10Request ?? "", "base64");
        der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0xff;
        pcr.spec.stubPKCS10Request = der.toString("base64");
      },
    },
    {
      name: "wrong-node-uid",
      namespace: "workers",
      signerName: WORKERPOOL_SIGNER,
      keyType: "ECDSAP256",
      form: "pkix",
      tamper: (pcr) => {
        pcr.spec.nodeUID = "99999999-0000-4000-8000-000000000000";
      },
    },
    {
      name: "missing-service",
      namespace: "ate-system",
      signerName: ATESYSTEM_SIGNER,
      keyType: "ECDSAP256",
      form: "pkix",
      labels: { app: "api" },
      userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "api, not-there-yet" },
    },
  ];
}

/** What each denied case must end as: condition reason, or "Pending" for the transient one. */
export const EXPECTED_DENIALS: Record<string, string> = {
  "worker-asks-atesystem": "NamespaceNotAllowed",
  "ate-asks-workerpool": "NamespaceNotAllowed",
  "tenant-asks-workerpool": "NamespaceNotAllowed",
  "bad-annotation": "InvalidUnverifiedUserAnnotations",
  "unknown-annotation": "InvalidUnverifiedUserAnnotations",
  rsa2048: "UnsupportedKeyType",
  "wrong-proof": "InvalidProofOfPossession",
  "tampered-csr": "InvalidProofOfPossession",
  "wrong-node-uid": "PodMismatch",
  "missing-service": "Pending",
};

export interface FixtureSet {
  clusters: Record<string, KubeObject[]>;
  events: Record<string, Record<string, unknown>>;
}

export function buildFixtures(version: KubernetesVersion): FixtureSet {
  const issued = buildCluster(issuedCases(), version);
  const denied = buildCluster(deniedCases(), version);
  const events: Record<string, Record<string, unknown>> = {};
  for (const [cluster, set] of [["issued", issued], ["denied", denied]] as const) {
    for (const pcr of set.pcrs) {
      const event = apiServerAddEvent(asWatched(pcr, version));
      event.id = `fixture-${pcr.metadata.name}`;
      event.time = "2026-01-01T00:00:00Z";
      events[`${cluster}/${pcr.metadata.name.replace(/^req-/, "")}`] = eventToJson(event);
    }
  }
  return { clusters: { issued: issued.objects, denied: denied.objects }, events };
}

export async function runFixtures(args: string[]): Promise<number> {
  const { values } = parse(args, { out: { type: "string" }, "kubernetes-version": { type: "string" } });
  const out = required(values, "out");
  const version = kubernetesVersionOption(optional(values, "kubernetes-version"));
  const fixtures = buildFixtures(version);
  mkdirSync(join(out, "clusters"), { recursive: true });
  for (const [name, objects] of Object.entries(fixtures.clusters)) {
    const text = objects.map((o) => stringify(o)).join("---\n");
    writeFileSync(join(out, "clusters", `${name}.yaml`), `# Generated by \`npm run fixtures\` for a Kubernetes ${version} control plane; real keys and proofs, regenerate rather than edit.\n${text}`);
  }
  for (const [name, event] of Object.entries(fixtures.events)) {
    const [dir, file] = name.split("/") as [string, string];
    mkdirSync(join(out, "events", dir), { recursive: true });
    writeFileSync(join(out, "events", dir, `${file}.json`), `${JSON.stringify(event, null, 2)}\n`);
  }
  process.stderr.write(`wrote ${Object.keys(fixtures.clusters).length} cluster files and ${Object.keys(fixtures.events).length} events for Kubernetes ${version} under ${out}\n`);
  return EXIT.ok;
}
