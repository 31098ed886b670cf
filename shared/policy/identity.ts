/** The SPIFFE ID a certificate carries (SPEC.md §5: the Kubernetes workload form). */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  // Namespace and service account names are DNS labels/subdomains, valid SPIFFE path segments as-is.
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
