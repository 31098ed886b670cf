/**
 * The control plane this test run emulates (PODCERT_KUBERNETES_VERSION, set by the test matrix in
 * vitest.config.ts; 1.36 when unset), for tests whose expectations follow it: the version the
 * functions read PCRs in, and what that control plane's own kubelets write.
 */
import { certificatesApiVersion } from "../../shared/kube/api-versions.js";
import { controlPlaneApis, DEFAULT_KUBERNETES_VERSION, kubeletRequestBehaviour, kubernetesVersionFromEnv } from "../../local-cluster/kubernetes-versions.js";

export const KUBERNETES_VERSION = kubernetesVersionFromEnv();
/** The version PodCertificateRequests are read and written in (v1 on 1.37). */
export const PCR_VERSION = controlPlaneApis(KUBERNETES_VERSION).podCertificateRequests[0]!;
/** "/apis/certificates.k8s.io/<PCR_VERSION>" */
export const PCR_API_PATH = `/apis/${certificatesApiVersion(PCR_VERSION)}`;
/** What a kubelet of the control plane's own version writes (1.35: PKIX key in v1beta1; 1.37: stub CSR in v1). */
export const KUBELET = kubeletRequestBehaviour(KUBERNETES_VERSION);

/**
 * A fixture file for this run's control plane (`npm run fixtures` writes one set per version):
 * test/fixtures/<rel> for 1.36, the default, else test/fixtures/kubernetes-<version>/<rel>.
 */
export function fixture(rel: string): string {
  return KUBERNETES_VERSION === DEFAULT_KUBERNETES_VERSION ? `test/fixtures/${rel}` : `test/fixtures/kubernetes-${KUBERNETES_VERSION}/${rel}`;
}

/** The version ClusterTrustBundles are served in (v1 on 1.37). */
export const CTB_VERSION = controlPlaneApis(KUBERNETES_VERSION).clusterTrustBundles[0]!;

/** Whether this control plane accepts stub-CSR requests at all (not 1.35, which has no such field). */
export const STUB_CSR_SERVED = Object.values(controlPlaneApis(KUBERNETES_VERSION).requestForms).some((forms) => forms.includes("csr"));
