/**
 * ClusterTrustBundles as kube-apiserver stores them:
 *
 * - validation (pkg/apis/certificates/validation/validation.go: ValidateClusterTrustBundle,
 *   ValidateClusterTrustBundleUpdate, validateTrustBundle; the name and signer name rules are
 *   ValidateClusterTrustBundleName and ValidateSignerName in pkg/apis/core/validation/names.go);
 * - the ClusterTrustBundleAttest admission plugin
 *   (plugin/pkg/admission/certificates/ctbattest/admission.go): creating or updating a bundle
 *   that names a signer needs `attest` on that signer, unless an update changes nothing but
 *   ownerReferences and finalizers.
 *
 * Messages are worded as kube-apiserver's, so tests of podcert's publisher read the same
 * refusals they would get from a cluster.
 */

import { X509Certificate } from "node:crypto";

import { decodeGoPemBlocks, type GoPemBlock } from "./go-pem.js";
import { fieldCause, type StatusCause } from "./status.js";
import { dns1123LabelErrors, dns1123SubdomainErrors, tooLong, type ObjectLike } from "./validation-messages.js";

/** certificates.MaxTrustBundleSize (pkg/apis/certificates/types.go), in bytes. */
export const MAX_TRUST_BUNDLE_SIZE = 1024 * 1024;

const DNS1123_LABEL_MAX = 63;
const DNS1123_SUBDOMAIN_MAX = 253;
const OMITTED = '"<value omitted>"';

interface CtbSpec {
  signerName: string;
  trustBundle: string;
}

function ctbSpec(obj: ObjectLike): CtbSpec {
  const spec = (obj.spec ?? {}) as { signerName?: unknown; trustBundle?: unknown };
  return {
    signerName: typeof spec.signerName === "string" ? spec.signerName : "",
    trustBundle: typeof spec.trustBundle === "string" ? spec.trustBundle : "",
  };
}

/**
 * What decoding the body into the Go type would refuse (a 400 before any validation): spec must
 * be an object and its fields strings.
 */
export function clusterTrustBundleDecodeError(obj: ObjectLike): string | undefined {
  const spec = obj.spec;
  if (spec === undefined || spec === null) return undefined;
  if (typeof spec !== "object" || Array.isArray(spec)) return "spec: expected an object";
  for (const f of ["signerName", "trustBundle"]) {
    const v = (spec as Record<string, unknown>)[f];
    if (v !== undefined && v !== null && typeof v !== "string") return `spec.${f}: expected a string`;
  }
  return undefined;
}

/** ValidateClusterTrustBundle: metadata.name, spec.signerName, then spec.trustBundle. */
export function validateClusterTrustBundle(obj: ObjectLike, o: { suppressBundleParsing?: boolean } = {}): StatusCause[] {
  const { signerName, trustBundle } = ctbSpec(obj);
  const name = obj.metadata.name ?? "";
  const causes = clusterTrustBundleNameErrors(signerName, name)
    .map((m) => fieldCause("metadata.name", `Invalid value: ${JSON.stringify(name)}: ${m}`));
  if (signerName !== "") causes.push(...signerNameErrors("spec.signerName", signerName));
  if (!o.suppressBundleParsing) causes.push(...trustBundleErrors("spec.trustBundle", trustBundle));
  return causes;
}

/**
 * ValidateClusterTrustBundleUpdate: the bundle is not parsed again when it did not change (so a
 * label edit keeps working on a bundle an older server accepted). The signerName immutability
 * check comes after these (store.ts, as for every immutable field).
 */
export function validateClusterTrustBundleUpdate(next: ObjectLike, old: ObjectLike): StatusCause[] {
  return validateClusterTrustBundle(next, { suppressBundleParsing: ctbSpec(next).trustBundle === ctbSpec(old).trustBundle });
}

/** ValidateClusterTrustBundleName: messages for `name` (none when valid). */
export function clusterTrustBundleNameErrors(signerName: string, name: string): string[] {
  if (signerName === "") {
    if (name.includes(":")) return ['ClusterTrustBundle without signer name must not have ":" in its name'];
    return dns1123SubdomainErrors(name);
  }
  const prefix = `${signerName.replaceAll("/", ":")}:`;
  if (!name.startsWith(prefix)) return [`ClusterTrustBundle for signerName ${signerName} must be named with prefix ${prefix}`];
  return dns1123SubdomainErrors(name.slice(prefix.length));
}

/** ValidateSignerName (called only for a non-empty name): `<domain>/<path>`, both DNS-shaped. */
export function signerNameErrors(path: string, signerName: string): StatusCause[] {
  const segments = signerName.split("/");
  if (segments.length !== 2) {
    return [fieldCause(path, `Invalid value: ${JSON.stringify(signerName)}: must be a fully qualified domain and path of the form 'example.com/signer-name'`)];
  }
  const [domain, signerPath] = segments as [string, string];
  const causes: StatusCause[] = [];
  if (domain.length > DNS1123_SUBDOMAIN_MAX) causes.push(tooLong(path, DNS1123_SUBDOMAIN_MAX));
  const domainLabels = domain.split(".");
  for (const label of domainLabels) {
    const errs = dns1123LabelErrors(label);
    if (errs.length === 0) continue;
    // Like Go, stop at the first bad label: later ones would repeat the same messages.
    for (const e of errs) causes.push(fieldCause(path, `Invalid value: ${JSON.stringify(domain)}: validating label ${JSON.stringify(label)}: ${e}`));
    break;
  }
  if (domainLabels.length < 2) {
    causes.push(fieldCause(path, `Invalid value: ${JSON.stringify(domain)}: should be a domain with at least two segments separated by dots`));
  }
  for (const label of signerPath.split(".")) {
    const errs = dns1123SubdomainErrors(label);
    if (errs.length === 0) continue;
    for (const e of errs) causes.push(fieldCause(path, `Invalid value: ${JSON.stringify(signerPath)}: validating label ${JSON.stringify(label)}: ${e}`));
    break;
  }
  const maxSignerName = DNS1123_SUBDOMAIN_MAX + (DNS1123_SUBDOMAIN_MAX + DNS1123_LABEL_MAX + 1) + 1;
  if (signerName.length > maxSignerName) causes.push(tooLong(path, maxSignerName));
  return causes;
}

/**
 * validateTrustBundle: at most 1 MiB; every PEM block a CERTIFICATE without headers that parses
 * and is a CA; then, only if every block passed, at least one and no duplicates.
 */
export function trustBundleErrors(path: string, bundle: string): StatusCause[] {
  // Go's len() of a string counts bytes.
  if (Buffer.byteLength(bundle) > MAX_TRUST_BUNDLE_SIZE) return [tooLong(path, MAX_TRUST_BUNDLE_SIZE)];
  const causes: StatusCause[] = [];
  const invalid = (m: string) => causes.push(fieldCause(path, `Invalid value: ${OMITTED}: ${m}`));
  const indicesOf = new Map<string, number[]>();
  for (const [i, b] of decodeGoPemBlocks(bundle).entries()) {
    const problem = blockProblem(b);
    if (problem !== undefined) {
      invalid(`entry ${i} ${problem}`);
      continue;
    }
    const key = b.bytes.toString("base64");
    indicesOf.set(key, [...(indicesOf.get(key) ?? []), i]);
  }
  if (causes.length > 0) return causes;
  if (indicesOf.size === 0) invalid("at least one trust anchor must be provided");
  // Go ranges over a map here (random order); first occurrence order keeps messages stable.
  for (const indices of indicesOf.values()) {
    if (indices.length > 1) invalid(`duplicate trust anchor (indices [${indices.join(" ")}])`);
  }
  return causes;
}

/** Why one block is not a trust anchor, in validateTrustBundle's order. */
function blockProblem(b: GoPemBlock): string | undefined {
  if (b.type !== "CERTIFICATE") return `has bad block type: ${b.type}`;
  if (Object.keys(b.headers).length > 0) return "has PEM block headers";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(b.bytes);
  } catch {
    return "does not parse as X.509";
  }
  // Node's `ca` is Go's IsCA, which x509 sets only from a valid basicConstraints extension, so
  // Go's next message ("has invalid basic constraints") cannot arise.
  return cert.ca ? undefined : "does not have the CA bit set";
}

// ---------------------------------------------------------------------------------------------
// The ClusterTrustBundleAttest admission plugin

/**
 * The signer whose `attest` permission this write needs, or undefined when none is needed: the
 * bundle names no signer, or (on update) nothing changed but ownerReferences and finalizers
 * (rbac.IsOnlyMutatingGCFields, "to support storage migration and GC workflows"; any other
 * change, labels included, needs `attest`). The plugin checks the new object: validation has
 * already refused a changed signerName by then.
 */
export function signerToAttest(next: ObjectLike, old: ObjectLike | undefined, equal: (a: unknown, b: unknown) => boolean): string | undefined {
  const { signerName } = ctbSpec(next);
  if (signerName === "") return undefined;
  if (old !== undefined) {
    const metadata: Record<string, unknown> = { ...next.metadata };
    for (const f of ["ownerReferences", "finalizers"]) metadata[f] = old.metadata[f];
    if (equal({ ...next, metadata }, old)) return undefined;
  }
  return signerName;
}

/** The reason in the plugin's 403 (admission.NewForbidden prefixes resource and name). */
export function attestForbiddenReason(signerName: string): string {
  return `user not permitted to attest for signerName ${JSON.stringify(signerName)}`;
}
