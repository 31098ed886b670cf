/**
 * `spec.unverifiedUserAnnotations` is copied verbatim from the pod spec by kubelet: anyone who can
 * create a pod controls it. Only keys a profile knows are allowed, each value is bounded, and the
 * whole map is checked before anything reads it.
 */
import type { SignerProfile } from "../profiles/config.js";

export const MAX_ANNOTATIONS = 32;
export const MAX_ANNOTATION_VALUE_BYTES = 4096;

/** A DNS-1035 label: what a Service name is. */
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/** What the pod asked for with the expects-service annotation. */
export type ServiceSelection = { kind: "none" } | { kind: "all" } | { kind: "named"; names: string[] };

export type AnnotationCheck = { ok: true; services: ServiceSelection } | { ok: false; message: string };

/**
 * Parses an expects-service value: exactly `true`, or a comma-separated list of Service names
 * (spaces around commas ignored). Anything else, `false` and `True` included, is an error, so a
 * typo never silently yields a certificate without the names the pod expects.
 */
export function parseExpectsService(value: string): { ok: true; services: ServiceSelection } | { ok: false; message: string } {
  if (value === "true") return { ok: true, services: { kind: "all" } };
  // "false" is a valid Service name, but a pod writing it means "no", not "a Service called false".
  if (value.trim() === "false") return { ok: false, message: 'must be "true" or a comma-separated list of Service names; "false" is not accepted (remove the annotation instead)' };
  const items = value.split(",").map((s) => s.trim());
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [i, item] of items.entries()) {
    if (item === "") {
      problems.push(`item ${i + 1} is empty`);
    } else if (item.length > 63 || !DNS1035_LABEL.test(item)) {
      problems.push(`${JSON.stringify(item.slice(0, 80))} is not a Service name (a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most 63 characters)`);
    } else if (seen.has(item)) {
      problems.push(`${item} is listed twice`);
    }
    seen.add(item);
  }
  if (problems.length > 0) {
    return { ok: false, message: `must be "true" or a comma-separated list of Service names: ${problems.join("; ")}` };
  }
  return { ok: true, services: { kind: "named", names: items } };
}

/** Checks the whole annotation map against the profile and returns what the pod asked for. */
export function checkUserAnnotations(
  annotations: Readonly<Record<string, string>> | undefined,
  profile: Pick<SignerProfile, "name" | "dnsNames">,
): AnnotationCheck {
  const entries = Object.entries(annotations ?? {});
  if (entries.length > MAX_ANNOTATIONS) {
    return { ok: false, message: `${entries.length} unverifiedUserAnnotations; at most ${MAX_ANNOTATIONS} are accepted` };
  }
  const known = profile.dnsNames?.optInAnnotation;
  const unknown = entries.map(([k]) => k).filter((k) => k !== known).sort();
  if (unknown.length > 0) {
    const allowed = known === undefined ? "none" : known;
    return {
      ok: false,
      message: `unknown unverifiedUserAnnotations key(s) ${unknown.map((k) => JSON.stringify(k.slice(0, 320))).join(", ")} for signer ${profile.name} (accepted: ${allowed})`,
    };
  }
  let services: ServiceSelection = { kind: "none" };
  if (known !== undefined && annotations !== undefined && Object.hasOwn(annotations, known)) {
    const value = annotations[known] ?? "";
    if (Buffer.byteLength(value) > MAX_ANNOTATION_VALUE_BYTES) {
      return { ok: false, message: `${known}: value longer than ${MAX_ANNOTATION_VALUE_BYTES} bytes` };
    }
    const parsed = parseExpectsService(value);
    if (!parsed.ok) return { ok: false, message: `${known}: ${parsed.message}` };
    services = parsed.services;
  }
  if (services.kind === "none" && profile.dnsNames?.required) {
    return {
      ok: false,
      message: `signer ${profile.name} issues serving certificates only: set the ${profile.dnsNames.optInAnnotation} annotation to "true" or to the Service names`,
    };
  }
  return { ok: true, services };
}
