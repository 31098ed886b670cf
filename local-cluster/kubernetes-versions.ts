/**
 * The Kubernetes control-plane and kubelet versions the local cluster can emulate, and what each
 * serves and writes for pod certificates. One table, read by the embedded API server (which API
 * versions it serves, and the request forms each accepts), the kubelet emulator (which version and
 * key form it writes) and the CLI (`--kubernetes-version`).
 *
 * Sources (docs/kubernetes-versions.md has the findings in full): kubernetes/api
 * `certificates/v1/types.go` and `certificates/v1beta1/types.go` (v0.35.0, v0.36.0, master of
 * 2026-07-24), KEP-4317's "Version Skew" section, kubernetes PRs #136729 (1.36: stub CSR) and
 * #139579 (1.37: v1).
 */

import { ConfigError } from "../shared/errors.js";

export const KUBERNETES_VERSIONS = ["1.35", "1.36", "1.37"] as const;
export type KubernetesVersion = (typeof KUBERNETES_VERSIONS)[number];

/** What `npm start` and the embedded API server emulate unless told otherwise. */
export const DEFAULT_KUBERNETES_VERSION: KubernetesVersion = "1.36";

/** The environment variable that sets the default for a whole run (the test matrix sets it). */
export const KUBERNETES_VERSION_ENV = "PODCERT_KUBERNETES_VERSION";

export type CertificatesApiVersion = "v1" | "v1beta1";

/** The two ways a request names its key. */
export type PublicKeyForm = "pkix" | "csr";

export interface ControlPlaneApis {
  /** The certificates.k8s.io versions serving PodCertificateRequests, preferred first. */
  readonly podCertificateRequests: readonly CertificatesApiVersion[];
  /** The certificates.k8s.io versions serving ClusterTrustBundles, preferred first. */
  readonly clusterTrustBundles: readonly CertificatesApiVersion[];
  /** The request forms a create through each version may use. */
  readonly requestForms: Readonly<Record<CertificatesApiVersion, readonly PublicKeyForm[]>>;
}

/**
 * - 1.35: v1beta1 only; pkixPublicKey + proofOfPossession required, no stubPKCS10Request field.
 * - 1.36: v1beta1 gains stubPKCS10Request; the PKIX fields become optional and deprecated, and a
 *   request carries one form or the other.
 * - 1.37: v1 (stubPKCS10Request required; the PKIX fields do not exist) beside the deprecated
 *   v1beta1 (removed in 1.40). One store: a request made through v1beta1 with a PKIX key reads
 *   through v1 with those fields dropped and no stub CSR.
 */
export function controlPlaneApis(version: KubernetesVersion): ControlPlaneApis {
  switch (version) {
    case "1.35":
      return { podCertificateRequests: ["v1beta1"], clusterTrustBundles: ["v1beta1"], requestForms: { v1beta1: ["pkix"], v1: [] } };
    case "1.36":
      return { podCertificateRequests: ["v1beta1"], clusterTrustBundles: ["v1beta1"], requestForms: { v1beta1: ["pkix", "csr"], v1: [] } };
    case "1.37":
      return { podCertificateRequests: ["v1", "v1beta1"], clusterTrustBundles: ["v1", "v1beta1"], requestForms: { v1: ["csr"], v1beta1: ["pkix", "csr"] } };
  }
}

export interface KubeletRequestBehaviour {
  readonly apiVersion: CertificatesApiVersion;
  readonly form: PublicKeyForm;
}

/**
 * What a kubelet of this version writes (KEP-4317, "Version Skew"): 1.35 a v1beta1 request with a
 * PKIX key and proof of possession, 1.36 v1beta1 with a stub CSR only, 1.37 v1 with a stub CSR.
 */
export function kubeletRequestBehaviour(version: KubernetesVersion): KubeletRequestBehaviour {
  switch (version) {
    case "1.35":
      return { apiVersion: "v1beta1", form: "pkix" };
    case "1.36":
      return { apiVersion: "v1beta1", form: "csr" };
    case "1.37":
      return { apiVersion: "v1", form: "csr" };
  }
}

export function isKubernetesVersion(v: string): v is KubernetesVersion {
  return (KUBERNETES_VERSIONS as readonly string[]).includes(v);
}

/**
 * A version as people write it ("1.37", "v1.37", "v1.37.2", a Node's kubeletVersion), or
 * undefined when it is none of the emulated ones.
 */
export function parseKubernetesVersion(text: string): KubernetesVersion | undefined {
  const m = /^v?(1\.\d+)(\.\d+)?([-+].*)?$/.exec(text.trim());
  return m !== null && isKubernetesVersion(m[1]!) ? m[1] : undefined;
}

/**
 * The run's default: PODCERT_KUBERNETES_VERSION when set (an unknown value is an error, never a
 * silent fallback), else DEFAULT_KUBERNETES_VERSION.
 */
export function kubernetesVersionFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): KubernetesVersion {
  const raw = env[KUBERNETES_VERSION_ENV];
  if (raw === undefined || raw === "") return DEFAULT_KUBERNETES_VERSION;
  const v = parseKubernetesVersion(raw);
  if (v === undefined) throw new ConfigError(`${KUBERNETES_VERSION_ENV}=${JSON.stringify(raw)} is not one of ${KUBERNETES_VERSIONS.join(", ")}`);
  return v;
}
