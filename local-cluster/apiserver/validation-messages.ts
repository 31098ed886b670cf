/**
 * apimachinery's validation messages (pkg/util/validation/validation.go and field.TooLong), for
 * the kinds whose validation the embedded API server mirrors message for message.
 */

import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from "../../shared/kube/names.js";
import { fieldCause, type StatusCause } from "./status.js";

/**
 * The parts of an object the kinds' rules read (resources.ts's KubeObject fits): declared here so
 * that the rule modules need not import resources.ts, and so make no import cycle with whichever
 * module dispatches to them.
 */
export interface ObjectLike {
  metadata: { name?: string } & Record<string, unknown>;
  [field: string]: unknown;
}

const DNS1123_LABEL_MAX = 63;
const DNS1123_SUBDOMAIN_MAX = 253;
const DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT = `${DNS1123_LABEL_FMT}(\\.${DNS1123_LABEL_FMT})*`;

/** IsDNS1123Subdomain. */
export function dns1123SubdomainErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_SUBDOMAIN_MAX) errs.push(maxLenError(DNS1123_SUBDOMAIN_MAX));
  if (!DNS1123_SUBDOMAIN.test(value)) {
    errs.push(regexError("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN_FMT, "example.com"));
  }
  return errs;
}

/** IsDNS1123Label. */
export function dns1123LabelErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_LABEL_MAX) errs.push(maxLenError(DNS1123_LABEL_MAX));
  if (!DNS1123_LABEL.test(value)) {
    errs.push(regexError("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", DNS1123_LABEL_FMT, "my-name", "123-abc"));
  }
  return errs;
}

export function maxLenError(n: number): string {
  return `must be no more than ${n} characters`;
}

/** RegexError, including its odd spacing between examples ("'a',  or 'b', "). */
export function regexError(msg: string, fmt: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${fmt}')`;
  return `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(" or ")}regex used for validation is '${fmt}')`;
}

/** field.TooLong with the value omitted. */
export function tooLong(path: string, max: number): StatusCause {
  return fieldCause(path, `Too long: may not be more than ${max} bytes`, "FieldValueTooLong");
}
