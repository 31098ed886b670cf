/**
 * Create-time validation of the embedded API server's objects (names, PodCertificateRequest
 * specs, ClusterTrustBundles), answered as Status causes. Apart from resources.ts because
 * status.ts names resources by their ResourceType: each of the two would otherwise import the other.
 */

import { X509Certificate } from "node:crypto";

import { decodePemBlocks } from "../../shared/pcr/status-rules.js";
import type { KubeObject, ResourceType } from "./resources.js";
import { fieldCause, type StatusCause } from "./status.js";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validateName(t: ResourceType, name: string): StatusCause[] {
  const c = (m: string) => [fieldCause("metadata.name", `Invalid value: ${JSON.stringify(name)}: ${m}`)];
  if (t.kind === "Namespace") {
    return name.length <= 63 && DNS_LABEL.test(name) ? [] : c("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
  }
  if (t.kind === "ClusterTrustBundle") {
    return name.length <= 253 && /^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$/.test(name) ? [] : c("must consist of lower case alphanumeric characters, '-', '.' or ':'");
  }
  return name.length <= 253 && DNS_SUBDOMAIN.test(name) ? [] : c("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
}

/** Kind-specific create validation (after defaults). */
export function validateCreate(t: ResourceType, obj: KubeObject): StatusCause[] {
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
    if (!spec.pkixPublicKey && !spec.stubPKCS10Request) {
      causes.push(fieldCause("spec.pkixPublicKey", "Required value: one of pkixPublicKey or stubPKCS10Request must be set", "FieldValueRequired"));
    }
  }
  if (t.kind === "ClusterTrustBundle") causes.push(...validateTrustBundle(obj));
  return causes;
}

/** SPEC §3: signer-linked names, and a bundle of distinct, parseable CA certificates (<= 1 MiB). */
function validateTrustBundle(obj: KubeObject): StatusCause[] {
  const spec = (obj.spec ?? {}) as { signerName?: unknown; trustBundle?: unknown };
  const causes: StatusCause[] = [];
  if (typeof spec.signerName === "string" && spec.signerName !== "") {
    const prefix = `${spec.signerName.replaceAll("/", ":")}:`;
    if (!obj.metadata.name.startsWith(prefix)) {
      causes.push(fieldCause("metadata.name", `Invalid value: ${JSON.stringify(obj.metadata.name)}: ClusterTrustBundle for signerName ${spec.signerName} must be named with prefix ${prefix}`));
    }
  }
  const bundle = typeof spec.trustBundle === "string" ? spec.trustBundle : "";
  if (Buffer.byteLength(bundle) > 1024 * 1024) {
    return [...causes, fieldCause("spec.trustBundle", "Too long: may not be more than 1048576 bytes", "FieldValueTooLong")];
  }
  const blocks = decodePemBlocks(bundle);
  const seen = new Set<string>();
  blocks.forEach((b, i) => {
    let problem: string | undefined;
    if (b.type !== "CERTIFICATE") problem = `entry ${i} has bad block type: ${b.type}`;
    else {
      try {
        if (!new X509Certificate(b.der).ca) problem = `entry ${i} does not have the CA bit set`;
      } catch {
        problem = `entry ${i} does not parse as X.509`;
      }
    }
    const key = b.der.toString("base64");
    if (!problem && seen.has(key)) problem = `duplicate trust anchor (entry ${i})`;
    seen.add(key);
    if (problem) causes.push(fieldCause("spec.trustBundle", `Invalid value: "<value omitted>": ${problem}`));
  });
  if (blocks.length === 0) {
    causes.push(fieldCause("spec.trustBundle", 'Invalid value: "<value omitted>": at least one trust anchor must be provided'));
  }
  return causes;
}
