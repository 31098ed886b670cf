/**
 * Plays kubelet against a (embedded) API server: for every pod with podCertificate projections,
 * make a key, create the PCR through the API, and keep the private key for the credential bundle.
 *
 * Each node's kubelet writes what its version writes (kubernetes-versions.ts): the version is the
 * Node's `status.nodeInfo.kubeletVersion`, or the control plane's (GET /version) when the Node
 * does not say. A kubelet newer than the control plane is refused, as Kubernetes' skew policy does.
 */
import type { KeyObject } from "node:crypto";
import { ApiException, CoreV1Api, KubernetesObjectApi, VersionApi, type KubeConfig, type KubernetesObject, type V1Node } from "@kubernetes/client-node";
import { ConfigError } from "../../shared/errors.js";
import { buildPodCertificateRequest, podCertificateProjections } from "./request.js";
import type { Pod, PodCertificateRequest } from "../../shared/pcr/model.js";
import { withArticle } from "../../shared/words.js";
import { kubeletRequestBehaviour, KUBERNETES_VERSIONS, parseKubernetesVersion, type KubeletRequestBehaviour, type KubernetesVersion } from "../kubernetes-versions.js";

export interface EmulatedRequest {
  pcr: PodCertificateRequest;
  pod: { namespace: string; name: string };
  credentialBundlePath: string;
  privateKey: KeyObject;
  /** What the example says this request must end as ("Issued", "Denied:<reason>"), if it says. */
  expected?: string;
  /** When the emulated kubelet created it (ms, performance.now()). */
  createdAt: number;
}

/** The pod's `podcert.ate.dev/expect` annotation: a JSON map from signer name to outcome. */
function expectations(pod: Pod): Record<string, string> {
  const raw = pod.metadata.annotations?.["podcert.ate.dev/expect"];
  if (raw === undefined) return {};
  try {
    return JSON.parse(raw) as Record<string, string>;
  } catch {
    throw new ConfigError(`pod ${pod.metadata.namespace}/${pod.metadata.name}: podcert.ate.dev/expect is not a JSON object`);
  }
}

export interface RequestOptions {
  /**
   * The PCRs' generateName (default "req-"). A second round for the same pods (the local run's
   * CA rotation, as kubelet refreshing a certificate) uses another, so the two rounds are told
   * apart by name.
   */
  generateName?: string;
}

export async function requestPodCertificates(kc: KubeConfig, onProgress?: (msg: string) => void, o: RequestOptions = {}): Promise<EmulatedRequest[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const controlPlane = await controlPlaneVersion(kc);
  const pods = JSON.parse(JSON.stringify((await core.listPodForAllNamespaces()).items)) as (Pod & { spec: { volumes?: unknown[] } })[];
  const out: EmulatedRequest[] = [];
  for (const pod of pods) {
    const projections = podCertificateProjections(pod);
    if (projections.length === 0) continue;
    const namespace = pod.metadata.namespace ?? "default";
    const what = `pod ${namespace}/${pod.metadata.name}`;
    const [node, sa] = await Promise.all([
      asked(`${what} runs on node ${JSON.stringify(pod.spec.nodeName ?? "")}`, () => core.readNode({ name: pod.spec.nodeName ?? "" })),
      asked(`${what} runs as ServiceAccount ${namespace}/${pod.spec.serviceAccountName ?? "default"}`, () => core.readNamespacedServiceAccount({ namespace, name: pod.spec.serviceAccountName ?? "default" })),
    ]);
    const expect = expectations(pod);
    const kubelet = kubeletOf(node, controlPlane);
    for (const [i, projection] of podCertificateProjections(pod, kubelet.form).entries()) {
      onProgress?.(`kubelet ${kubelet.version}: ${namespace}/${pod.metadata.name} asks ${projection.signerName} for ${withArticle(projection.keyType)} certificate (${kubelet.apiVersion}, ${projection.publicKeyForm === "csr" ? "stub CSR" : "PKIX key + proof"})`);
      const { pcr, privateKey } = buildPodCertificateRequest(pod, projection, {
        nodeUID: node.metadata?.uid ?? "",
        serviceAccountUID: sa.metadata?.uid ?? "",
        apiVersion: kubelet.apiVersion,
        ...(o.generateName === undefined ? {} : { generateName: o.generateName }),
      });
      const createdAt = performance.now();
      const created = await asked(`${what}: creating its PodCertificateRequest`, () => objects.create(pcr as unknown as KubernetesObject));
      const volumes = (pod.spec.volumes ?? []) as { projected?: { sources?: { podCertificate?: { credentialBundlePath?: string } }[] } }[];
      const paths = volumes.flatMap((v) => v.projected?.sources ?? []).filter((s) => s.podCertificate).map((s) => s.podCertificate?.credentialBundlePath);
      const request: EmulatedRequest = {
        pcr: JSON.parse(JSON.stringify(created)) as PodCertificateRequest,
        pod: { namespace, name: pod.metadata.name },
        credentialBundlePath: paths[i] ?? `credential-${i}.pem`,
        privateKey,
        createdAt,
      };
      const expected = expect[projection.signerName];
      if (expected !== undefined) request.expected = expected;
      out.push(request);
    }
  }
  return out;
}

/** The control plane's minor version, from GET /version; one podcert cannot emulate is an error. */
async function controlPlaneVersion(kc: KubeConfig): Promise<KubernetesVersion> {
  const info = await asked("asking the API server's version", () => kc.makeApiClient(VersionApi).getCode());
  const version = parseKubernetesVersion(info.gitVersion) ?? parseKubernetesVersion(`${info.major}.${info.minor.replace(/\D+$/, "")}`);
  if (version === undefined) throw new ConfigError(`the API server is Kubernetes ${info.gitVersion}; the kubelet emulator knows ${KUBERNETES_VERSIONS.join(", ")}`);
  return version;
}

/** What the node's kubelet writes: its version from the Node, else the control plane's. */
function kubeletOf(node: V1Node, controlPlane: KubernetesVersion): KubeletRequestBehaviour & { version: KubernetesVersion } {
  const declared = node.status?.nodeInfo?.kubeletVersion;
  const name = node.metadata?.name ?? "";
  const version = declared === undefined || declared === "" ? controlPlane : parseKubernetesVersion(declared);
  if (version === undefined) {
    throw new ConfigError(`node ${name}: kubeletVersion ${JSON.stringify(declared)} is not one the emulator knows (${KUBERNETES_VERSIONS.join(", ")})`);
  }
  if (KUBERNETES_VERSIONS.indexOf(version) > KUBERNETES_VERSIONS.indexOf(controlPlane)) {
    throw new ConfigError(`node ${name}: a ${version} kubelet cannot run against a ${controlPlane} control plane (kubelets may be older than kube-apiserver, never newer)`);
  }
  return { ...kubeletRequestBehaviour(version), version };
}

/**
 * A call kubelet makes, with the API server's refusal in words about the cluster file: the
 * client library's own message is a dump ("HTTP-Code: 404 Message: Unknown API Status Code!").
 */
async function asked<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    const status = statusOf(e.body);
    if (e.code === 404) throw new ConfigError(`${what}, which the cluster file does not have (${status ?? "404 Not Found"})`, { cause: e });
    throw new ConfigError(`${what}: the API server answered HTTP ${e.code}${status === undefined ? "" : `: ${status}`}`, { cause: e });
  }
}

/** The message of a Kubernetes Status body, as ApiException carries it (text or parsed). */
function statusOf(body: unknown): string | undefined {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return body.slice(0, 200) || undefined;
    }
  }
  const message = (value as { message?: unknown } | null)?.message;
  return typeof message === "string" ? message : undefined;
}
