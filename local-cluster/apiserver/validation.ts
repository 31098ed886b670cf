/**
 * Create-time validation of the embedded API server's objects (names, PodCertificateRequest
 * specs, ClusterTrustBundles, ConfigMaps), answered as Status causes. Apart from resources.ts because
 * status.ts names resources by their ResourceType: each of the two would otherwise import the other.
 */

import type { PublicKeyForm } from "../kubernetes-versions.js";
import { validateConfigMap } from "./config-maps.js";
import type { KubeObject, ResourceType } from "./resources.js";
import { fieldCause, type StatusCause } from "./status.js";
import { validateClusterTrustBundle } from "./trust-bundles.js";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validateName(t: ResourceType, name: string): StatusCause[] {
  const c = (m: string) => [fieldCause("metadata.name", `Invalid value: ${JSON.stringify(name)}: ${m}`)];
  if (t.kind === "Namespace") {
    return name.length <= 63 && DNS_LABEL.test(name) ? [] : c("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
  }
  // Its name rule depends on spec.signerName: validateCreate checks it, with the rest of the object.
  if (t.kind === "ClusterTrustBundle") return [];
  return name.length <= 253 && DNS_SUBDOMAIN.test(name) ? [] : c("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
}

/**
 * Kind-specific create validation (after defaults, on the internal form). `forms`: the request
 * forms the version written through accepts (versions.ts requestForms; default both, as 1.36's
 * v1beta1).
 */
export function validateCreate(t: ResourceType, obj: KubeObject, forms: readonly PublicKeyForm[] = ["pkix", "csr"]): StatusCause[] {
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const causes: StatusCause[] = [];
  if (t.kind === "PodCertificateRequest") {
    for (const f of ["signerName", "podName", "podUID", "serviceAccountName", "serviceAccountUID", "nodeName", "nodeUID"]) {
      if (typeof spec[f] !== "string" || spec[f] === "") {
        causes.push(fieldCause(`spec.${f}`, "Required value", "FieldValueRequired"));
      }
    }
    const max = spec.maxExpirationSeconds;
    const kubeSigner = typeof spec.signerName === "string" && spec.signerName.startsWith("kubernetes.io/");
    const upper = kubeSigner ? 86400 : 7862400;
    if (typeof max !== "number" || !Number.isInteger(max) || max < 3600 || max > upper) {
      causes.push(fieldCause("spec.maxExpirationSeconds", `Invalid value: ${JSON.stringify(max)}: must be in the range [3600, ${upper}]`));
    }
    causes.push(...keyFormCauses(spec, forms));
  }
  if (t.kind === "ClusterTrustBundle") causes.push(...validateClusterTrustBundle(obj));
  if (t.kind === "ConfigMap") causes.push(...validateConfigMap(obj));
  return causes;
}

/**
 * Which key fields a create must carry, by the forms its version accepts:
 * - pkix only (1.35's v1beta1): pkixPublicKey and proofOfPossession are +required there
 *   (kubernetes/api v0.35.0 certificates/v1beta1/types.go);
 * - csr only (v1): stubPKCS10Request is +required (certificates/v1/types.go);
 * - both (1.36+'s v1beta1): one form, not both ("If StubPKCS10Request is set, this field must be
 *   empty" on each PKIX field). The exact kube-apiserver wording is not known (its 1.36+
 *   validation.go was not found); these causes follow its usual forms.
 * The fields a version lacks were dropped before (versions.ts toInternal), so they count as absent.
 */
export function keyFormCauses(spec: Readonly<Record<string, unknown>>, forms: readonly PublicKeyForm[]): StatusCause[] {
  const required = (f: string) => fieldCause(`spec.${f}`, "Required value", "FieldValueRequired");
  const pkix = forms.includes("pkix");
  const csr = forms.includes("csr");
  if (pkix && !csr) return ["pkixPublicKey", "proofOfPossession"].filter((f) => !spec[f]).map(required);
  if (csr && !pkix) return spec.stubPKCS10Request ? [] : [required("stubPKCS10Request")];
  if (spec.stubPKCS10Request) {
    return ["pkixPublicKey", "proofOfPossession"].filter((f) => spec[f])
      .map((f) => fieldCause(`spec.${f}`, "Forbidden: must be empty when stubPKCS10Request is set", "FieldValueForbidden"));
  }
  if (!spec.pkixPublicKey) {
    return [fieldCause("spec.pkixPublicKey", "Required value: one of pkixPublicKey or stubPKCS10Request must be set", "FieldValueRequired")];
  }
  return [];
}
