/**
 * Pod updates as kube-apiserver validates them (pkg/apis/core/validation/validation.go:
 * ValidatePodUpdate, ValidateContainerUpdates, validateOnlyAddedTolerations,
 * validateOnlyDeletedSchedulingGates, ValidatePodSpecificAnnotationUpdates). A pod's spec is
 * immutable except:
 * - containers[*].image and initContainers[*].image (not emptied, no surrounding whitespace);
 *   adding or removing a container is refused on its own, before anything else;
 * - activeDeadlineSeconds: set (0 to MaxInt32) or lowered, never raised or unset;
 * - tolerations: additions only (an existing one may change its tolerationSeconds alone);
 * - schedulingGates: removals only;
 * - terminationGracePeriodSeconds: to 1 when it was negative;
 * - while the old pod is gated (has schedulingGates), its nodeSelector and node affinity: kube-apiserver
 *   allows additions only there; here any change passes (a corner podcert never reaches).
 * Everything else, spec.nodeName included (set through the pods/binding subresource, which this
 * server does not serve, or at create), is compared after taking the allowed fields from the old
 * spec; a difference is one `spec: Forbidden: pod updates may not change fields other than …`
 * cause, followed by a diff. kube-apiserver's diff is go-cmp's, whose output is deliberately
 * unstable; this one lists the changed paths with their old (-) and new (+) JSON values instead.
 * Comparison is Semantic.DeepEqual's, approximately: absent, null, "", [] and {} are equal (false
 * and 0 are not, unlike a Go non-pointer field: a client sending `hostNetwork: false` over an
 * absent one is refused here and not by kube-apiserver).
 * The status subresource (store.replaceStatus) does not come here; metadata follows the rules all
 * kinds share, plus the mirror-pod and AppArmor annotations, which may not be added, changed or
 * removed. Create-time pod validation (ValidatePodSpec) is not mirrored.
 */

import { isRecord } from "./json.js";
import { fieldCause, type StatusCause } from "./status.js";
import type { ObjectLike } from "./validation-messages.js";

/** updatablePodSpecFields, joined with "," as the message does. */
export const UPDATABLE_POD_SPEC_FIELDS = [
  "`spec.containers[*].image`",
  "`spec.initContainers[*].image`",
  "`spec.activeDeadlineSeconds`",
  "`spec.tolerations` (only additions to existing tolerations)",
  "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
].join(",");

export const POD_UPDATE_FORBIDDEN = `pod updates may not change fields other than ${UPDATABLE_POD_SPEC_FIELDS}`;

const MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror";
const APPARMOR_BETA_PREFIX = "container.apparmor.security.beta.kubernetes.io/";
const MAX_INT32 = 2147483647;

type Rec = Record<string, unknown>;
type Equal = (a: unknown, b: unknown) => boolean;

/**
 * ValidatePodUpdate. `equal` is Semantic.DeepEqual's stand-in (store.ts deepEqual, with empty
 * values equal).
 */
export function validatePodUpdate(next: ObjectLike, old: ObjectLike, equal: Equal): StatusCause[] {
  const causes = annotationUpdateCauses(record(next.metadata.annotations), record(old.metadata.annotations));
  const spec = record(next.spec);
  const oldSpec = record(old.spec);

  for (const f of ["containers", "initContainers"] as const) {
    const [errs, stop] = containerUpdateCauses(list(spec[f]), list(oldSpec[f]), `spec.${f}`);
    causes.push(...errs);
    if (stop) return causes;
  }

  const deadline = spec.activeDeadlineSeconds;
  const oldDeadline = oldSpec.activeDeadlineSeconds;
  if (isSet(deadline)) {
    const n = Number(deadline);
    if (!(n >= 0 && n <= MAX_INT32)) {
      causes.push(fieldCause("spec.activeDeadlineSeconds", `Invalid value: ${goValue(deadline)}: must be between 0 and ${MAX_INT32}, inclusive`));
      return causes;
    }
    if (isSet(oldDeadline) && Number(oldDeadline) < n) {
      causes.push(fieldCause("spec.activeDeadlineSeconds", `Invalid value: ${goValue(deadline)}: must be less than or equal to previous value`));
      return causes;
    }
  } else if (isSet(oldDeadline)) {
    // Go's field.Invalid prints a nil pointer as the string "null".
    causes.push(fieldCause("spec.activeDeadlineSeconds", 'Invalid value: "null": must not update from a positive integer to nil value'));
  }

  const withoutSeconds = (t: unknown) => {
    const { tolerationSeconds: _s, ...rest } = record(t);
    return rest;
  };
  const tolerations = list(spec.tolerations).map(withoutSeconds);
  if (!list(oldSpec.tolerations).map(withoutSeconds).every((o) => tolerations.some((t) => equal(o, t)))) {
    causes.push(fieldCause("spec.tolerations", "Forbidden: existing toleration can not be modified except its tolerationSeconds", "FieldValueForbidden"));
  }

  const oldGates = new Set(list(oldSpec.schedulingGates).map((g) => String(record(g).name ?? "")));
  // Go reports these in map order (random); here in index order, the last index of a repeated name.
  const added = new Map<string, number>();
  list(spec.schedulingGates).forEach((g, i) => {
    const name = String(record(g).name ?? "");
    if (!oldGates.has(name)) added.set(name, i);
  });
  for (const [name, i] of [...added].sort((a, b) => a[1] - b[1])) {
    causes.push(fieldCause(`spec.schedulingGates[${i}].name`, `Forbidden: only deletion is allowed, but found new scheduling gate '${name}'`, "FieldValueForbidden"));
  }

  if (equal(spec, oldSpec)) return causes;

  // The updatable fields, taken from the old spec: what differs then is what may not change.
  const munged: Rec = { ...spec };
  for (const f of ["containers", "initContainers"] as const) {
    const olds = list(oldSpec[f]);
    if (spec[f] !== undefined) munged[f] = list(spec[f]).map((c, i) => ({ ...record(c), image: record(olds[i]).image }));
  }
  for (const f of ["activeDeadlineSeconds", "schedulingGates", "tolerations"]) setOrDelete(munged, f, oldSpec[f]);
  const grace = oldSpec.terminationGracePeriodSeconds;
  if (typeof grace === "number" && grace < 0 && munged.terminationGracePeriodSeconds === 1) munged.terminationGracePeriodSeconds = grace;
  if (list(oldSpec.schedulingGates).length > 0) {
    setOrDelete(munged, "nodeSelector", oldSpec.nodeSelector);
    const affinity = { ...record(munged.affinity) };
    setOrDelete(affinity, "nodeAffinity", record(oldSpec.affinity).nodeAffinity);
    setOrDelete(munged, "affinity", Object.keys(affinity).length > 0 ? affinity : undefined);
  }

  if (!equal(munged, oldSpec)) {
    const diff = diffLines(oldSpec, munged, "", equal);
    causes.push(fieldCause("spec", `Forbidden: ${POD_UPDATE_FORBIDDEN}\n  core.PodSpec{\n${diff.join("\n")}\n  }`, "FieldValueForbidden"));
  }
  return causes;
}

/** ValidateContainerUpdates: [causes, stop]. */
function containerUpdateCauses(next: unknown[], old: unknown[], path: string): [StatusCause[], boolean] {
  if (next.length !== old.length) {
    return [[fieldCause(path, "Forbidden: pod updates may not add or remove containers", "FieldValueForbidden")], true];
  }
  const causes: StatusCause[] = [];
  next.forEach((c, i) => {
    const image = record(c).image;
    const s = typeof image === "string" ? image : "";
    if (s.length === 0) causes.push(fieldCause(`${path}[${i}].image`, "Required value", "FieldValueRequired"));
    if (s.trim().length !== s.length) {
      causes.push(fieldCause(`${path}[${i}].image`, `Invalid value: ${JSON.stringify(s)}: must not have leading or trailing whitespace`));
    }
  });
  return [causes, false];
}

/** ValidatePodSpecificAnnotationUpdates' own rules (the mirror-pod and AppArmor annotations). */
function annotationUpdateCauses(next: Rec, old: Rec): StatusCause[] {
  const causes: StatusCause[] = [];
  const at = (k: string) => `metadata.annotations[${k}]`;
  for (const [k, v] of Object.entries(old)) {
    if (Object.hasOwn(next, k) && next[k] === v) continue;
    if (k.startsWith(APPARMOR_BETA_PREFIX)) causes.push(fieldCause(at(k), "Forbidden: may not remove or update AppArmor annotations", "FieldValueForbidden"));
    if (k === MIRROR_POD_ANNOTATION) causes.push(fieldCause(at(k), "Forbidden: may not remove or update mirror pod annotation", "FieldValueForbidden"));
  }
  for (const k of Object.keys(next)) {
    if (Object.hasOwn(old, k)) continue;
    if (k.startsWith(APPARMOR_BETA_PREFIX)) causes.push(fieldCause(at(k), "Forbidden: may not add AppArmor annotations", "FieldValueForbidden"));
    if (k === MIRROR_POD_ANNOTATION) causes.push(fieldCause(at(k), "Forbidden: may not add mirror pod annotation", "FieldValueForbidden"));
  }
  return causes;
}

/** The changed leaves (objects by key, same-length lists by index), as `- path: old` / `+ path: new`. */
function diffLines(old: unknown, next: unknown, path: string, equal: Equal): string[] {
  if (equal(old, next)) return [];
  if (isRecord(old) && isRecord(next)) {
    const keys = [...new Set([...Object.keys(old), ...Object.keys(next)])];
    return keys.flatMap((k) => diffLines(old[k], next[k], path === "" ? k : `${path}.${k}`, equal));
  }
  if (Array.isArray(old) && Array.isArray(next) && old.length === next.length) {
    return old.flatMap((o, i) => diffLines(o, next[i], `${path}[${i}]`, equal));
  }
  const show = (v: unknown) => (v === undefined ? "null" : short(JSON.stringify(v)));
  return [`- \t${path}: ${show(old)},`, `+ \t${path}: ${show(next)},`];
}

function short(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** How field.Invalid prints an int64 (plain) or anything else a client sent (Go-quoted). */
function goValue(v: unknown): string {
  return typeof v === "number" ? String(v) : JSON.stringify(v);
}

function setOrDelete(o: Rec, k: string, v: unknown): void {
  if (v === undefined) delete o[k];
  else o[k] = v;
}

function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function record(v: unknown): Rec {
  return isRecord(v) ? v : {};
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
