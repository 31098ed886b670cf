/**
 * `spec.unverifiedUserAnnotations` is copied verbatim from the pod spec by kubelet: anyone who can
 * create a pod controls it. Only keys a profile knows are allowed, each value is bounded, and the
 * whole map is checked before anything reads it.
 */
import type { RequestDeniedError } from "../errors.js";
import { isServiceName } from "../kube/names.js";
import { MAX_LABEL_LENGTH, MAX_USER_ANNOTATION_VALUE_BYTES, MAX_USER_ANNOTATIONS } from "../limits.js";
import type { SignerProfile } from "../profiles/config.js";

/** Items (problems, keys) quoted in one denial message at most; the rest are counted. */
const MAX_LISTED = 5;

/** What the pod asked for with the expects-service annotation. */
export type ServiceSelection = { kind: "none" } | { kind: "all" } | { kind: "named"; names: string[] };

export type AnnotationCheck =
  | { ok: true; services: ServiceSelection }
  | { ok: false; reason: Extract<RequestDeniedError["reason"], "InvalidUnverifiedUserAnnotations" | "TooManyDNSNames">; message: string };

/** "a; b; c; and 12 more problems": a bounded list, whatever the input. */
function listBounded(items: readonly string[], noun: string, separator: string): string {
  const shown = items.slice(0, MAX_LISTED).join(separator);
  const more = items.length - MAX_LISTED;
  return more > 0 ? `${shown}${separator}and ${more} more ${noun}${more === 1 ? "" : "s"}` : shown;
}

/**
 * Parses an expects-service value: exactly `true`, or a comma-separated list of Service names
 * (spaces around commas ignored). Anything else, `false` and `True` included, is an error, so a
 * typo never silently yields a certificate without the names the pod expects. A valid list of more
 * than `maxNames / 2` Services is TooManyDNSNames: each Service gives at least two DNS names.
 */
export function parseExpectsService(
  value: string,
  maxNames: number,
): { ok: true; services: ServiceSelection } | { ok: false; tooMany?: true; message: string } {
  if (value === "true") return { ok: true, services: { kind: "all" } };
  // "false" is a valid Service name, but a pod writing it means "no", not "a Service called false".
  if (value.trim() === "false") return { ok: false, message: 'must be "true" or a comma-separated list of Service names; "false" is not accepted (remove the annotation instead)' };
  const items = value.split(",").map((s) => s.trim());
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [i, item] of items.entries()) {
    if (item === "") {
      problems.push(`item ${i + 1} is empty`);
    } else if (!isServiceName(item)) {
      problems.push(`${JSON.stringify(item.slice(0, 80))} is not a Service name (a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most ${MAX_LABEL_LENGTH} characters)`);
    } else if (seen.has(item)) {
      problems.push(`${item} is listed twice`);
    }
    seen.add(item);
  }
  if (problems.length > 0) {
    return { ok: false, message: `must be "true" or a comma-separated list of Service names: ${listBounded(problems, "problem", "; ")}` };
  }
  if (items.length * 2 > maxNames) {
    return { ok: false, tooMany: true, message: `names ${items.length} Services, at least ${items.length * 2} DNS names; this signer puts at most ${maxNames} in a certificate` };
  }
  return { ok: true, services: { kind: "named", names: items } };
}

const INVALID = "InvalidUnverifiedUserAnnotations";

/** Checks the whole annotation map against the profile and returns what the pod asked for. */
export function checkUserAnnotations(
  annotations: Readonly<Record<string, string>> | undefined,
  profile: Pick<SignerProfile, "name" | "dnsNames">,
): AnnotationCheck {
  const entries = Object.entries(annotations ?? {});
  if (entries.length > MAX_USER_ANNOTATIONS) {
    return { ok: false, reason: INVALID, message: `${entries.length} unverifiedUserAnnotations; at most ${MAX_USER_ANNOTATIONS} are accepted` };
  }
  const known = profile.dnsNames?.optInAnnotation;
  const unknown = entries.map(([k]) => k).filter((k) => k !== known).sort();
  if (unknown.length > 0) {
    const allowed = known === undefined ? "none" : known;
    return {
      ok: false,
      reason: INVALID,
      message: `unknown unverifiedUserAnnotations key(s) ${listBounded(unknown.map((k) => JSON.stringify(k.slice(0, 320))), "key", ", ")} for signer ${profile.name} (accepted: ${allowed})`,
    };
  }
  let services: ServiceSelection = { kind: "none" };
  if (known !== undefined && annotations !== undefined && Object.hasOwn(annotations, known)) {
    const value = annotations[known] ?? "";
    // Size first: nothing longer is split or parsed.
    if (Buffer.byteLength(value) > MAX_USER_ANNOTATION_VALUE_BYTES) {
      return { ok: false, reason: INVALID, message: `${known}: value longer than ${MAX_USER_ANNOTATION_VALUE_BYTES} bytes` };
    }
    const parsed = parseExpectsService(value, profile.dnsNames?.maxNames ?? 0);
    if (!parsed.ok) return { ok: false, reason: parsed.tooMany ? "TooManyDNSNames" : INVALID, message: `${known}: ${parsed.message}` };
    services = parsed.services;
  }
  if (services.kind === "none" && profile.dnsNames?.required) {
    return {
      ok: false,
      reason: INVALID,
      message: `signer ${profile.name} issues serving certificates only: set the ${profile.dnsNames.optInAnnotation} annotation to "true" or to the Service names`,
    };
  }
  return { ok: true, services };
}
