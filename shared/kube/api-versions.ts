/**
 * Which certificates.k8s.io version podcert reads and writes PodCertificateRequests and
 * ClusterTrustBundles in, decided once per process from the API server's discovery documents.
 *
 * Kubernetes 1.35 and 1.36 serve both kinds in v1beta1 only; 1.37 adds v1 and deprecates v1beta1,
 * which 1.40 removes. v1 is preferred wherever it is served, so one build keeps working when
 * v1beta1 goes away. One exception, for version skew: v1 has no pkixPublicKey/proofOfPossession,
 * and a request a kubelet older than 1.36 wrote with them reads through v1 with neither and no
 * stub CSR (the conversion drops them; KEP-4317 "Version Skew"). Such a request is read again
 * through v1beta1 while the API server serves it (see {@link needsLegacyRead}).
 *
 * Discovery rather than the version an event names: resync and the trust publisher have no event
 * naming one, validate's events may come from a source watching either version, and a status
 * write must go to a version that can carry the request's key fields.
 */
import type { PodCertificateRequest } from "../pcr/model.js";

export const CERTIFICATES_GROUP = "certificates.k8s.io";
export const CERTIFICATES_VERSIONS = ["v1", "v1beta1"] as const;
export type CertificatesVersion = (typeof CERTIFICATES_VERSIONS)[number];
/** Every certificates.k8s.io apiVersion podcert speaks, in the order of CERTIFICATES_VERSIONS. */
export const CERTIFICATES_API_VERSIONS = CERTIFICATES_VERSIONS.map(certificatesApiVersion) as unknown as {
  readonly [I in keyof typeof CERTIFICATES_VERSIONS]: `${typeof CERTIFICATES_GROUP}/${(typeof CERTIFICATES_VERSIONS)[I] & string}`;
};

export const PCR_RESOURCE = "podcertificaterequests";
export const CTB_RESOURCE = "clustertrustbundles";

/** The resources the API server lists in each certificates.k8s.io version (undefined: version not served, 404). */
export type ServedResources = Partial<Record<CertificatesVersion, readonly string[]>>;

export interface CertificatesApis {
  /** Where PodCertificateRequests are read, listed and written. */
  pcr: CertificatesVersion;
  /** v1beta1 when `pcr` is v1 and v1beta1 still serves PCRs: where a PKIX-key request reads in full. */
  pcrLegacy?: "v1beta1";
  /** Where ClusterTrustBundles live; undefined when not served (only the trust publisher needs them). */
  ctb?: CertificatesVersion;
}

/** The versions to use, or why PodCertificateRequests cannot be served at all. */
export function chooseCertificatesApis(served: ServedResources): CertificatesApis | { problem: string } {
  const serving = (resource: string) => CERTIFICATES_VERSIONS.filter((v) => served[v]?.includes(resource) === true);
  const pcr = serving(PCR_RESOURCE);
  if (pcr.length === 0) {
    return {
      problem: `the API server serves no ${PCR_RESOURCE} in ${CERTIFICATES_GROUP} v1 or v1beta1: Kubernetes 1.35 and 1.36 need the PodCertificateRequest feature gate and --runtime-config=${CERTIFICATES_GROUP}/v1beta1/${PCR_RESOURCE}=true (README "Kubernetes versions")`,
    };
  }
  const ctb = serving(CTB_RESOURCE)[0];
  return {
    pcr: pcr[0]!,
    ...(pcr[0] === "v1" && pcr.includes("v1beta1") ? { pcrLegacy: "v1beta1" as const } : {}),
    ...(ctb === undefined ? {} : { ctb }),
  };
}

export function isCertificatesProblem(c: CertificatesApis | { problem: string }): c is { problem: string } {
  return "problem" in c;
}

/** "certificates.k8s.io/v1" */
export function certificatesApiVersion(v: CertificatesVersion): string {
  return `${CERTIFICATES_GROUP}/${v}`;
}

/** The version of an object's apiVersion when it is a certificates.k8s.io one podcert speaks. */
export function certificatesVersionOf(apiVersion: string | undefined): CertificatesVersion | undefined {
  const [group, version] = (apiVersion ?? "").split("/");
  return group === CERTIFICATES_GROUP && (CERTIFICATES_VERSIONS as readonly string[]).includes(version ?? "") ? (version as CertificatesVersion) : undefined;
}

/**
 * Whether a PCR read through v1 shows no key at all: a v1beta1 request with a PKIX key, whose
 * key fields v1 cannot show. Read it through `pcrLegacy` instead when there is one.
 */
export function needsLegacyRead(pcr: PodCertificateRequest): boolean {
  return certificatesVersionOf(pcr.apiVersion) === "v1" && !pcr.spec.stubPKCS10Request && !pcr.spec.pkixPublicKey;
}

/** In words, for the log line at start: which version and why. */
export function describeCertificatesApis(c: CertificatesApis): string {
  const pcr = c.pcr === "v1"
    ? `PodCertificateRequests in ${certificatesApiVersion("v1")}${c.pcrLegacy ? ` (requests with a PKIX key, from kubelets older than 1.36, read through ${certificatesApiVersion(c.pcrLegacy)})` : ""}`
    : `PodCertificateRequests in ${certificatesApiVersion("v1beta1")} (v1 not served: Kubernetes 1.35 or 1.36)`;
  const ctb = c.ctb === undefined ? "ClusterTrustBundles not served" : `ClusterTrustBundles in ${certificatesApiVersion(c.ctb)}`;
  return `${pcr}; ${ctb}`;
}
