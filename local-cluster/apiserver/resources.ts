/**
 * The resource types the embedded API server serves, with what differs between them: scope,
 * status subresource, supported field selectors and defaults. Create-time validation, which
 * answers in Status causes, is validation.ts (status.ts names resources by these types).
 */

import type { ObjectMeta } from "../../shared/pcr/model.js";
import { DEFAULT_MAX_EXPIRATION_SECONDS } from "../../shared/pcr/status-rules.js";

/** Any Kubernetes object: apiVersion, kind and metadata are what the server relies on. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & Record<string, unknown>;
  [field: string]: unknown;
}

export interface ResourceType {
  group: string; // "" for core
  version: string;
  apiVersion: string; // "v1" or "group/version"
  kind: string;
  plural: string;
  namespaced: boolean;
  /** Has a /status subresource: the main PUT keeps the stored status, /status keeps the rest. */
  hasStatus: boolean;
  /** Field selector paths beyond metadata.name and metadata.namespace. */
  fields: readonly string[];
}

function rt(apiVersion: string, kind: string, plural: string, namespaced: boolean, hasStatus: boolean,
  fields: readonly string[] = []): ResourceType {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") as [string, string] : ["", apiVersion];
  return { group, version, apiVersion, kind, plural, namespaced, hasStatus, fields };
}

export const RESOURCE_TYPES: readonly ResourceType[] = [
  rt("v1", "Namespace", "namespaces", false, true, ["status.phase"]),
  rt("v1", "Node", "nodes", false, true, ["spec.unschedulable"]),
  rt("v1", "Pod", "pods", true, true,
    ["spec.nodeName", "spec.serviceAccountName", "spec.restartPolicy", "spec.schedulerName", "spec.hostNetwork",
      "status.phase", "status.podIP", "status.nominatedNodeName"]),
  rt("v1", "Service", "services", true, true, ["spec.clusterIP", "spec.type"]),
  rt("v1", "ServiceAccount", "serviceaccounts", true, false),
  rt("v1", "ConfigMap", "configmaps", true, false),
  rt("v1", "Event", "events", true, false,
    ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
      "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
      "reportingComponent", "source", "type"]),
  rt("events.k8s.io/v1", "Event", "events", true, false,
    ["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason", "type",
      "reportingController"]),
  rt("certificates.k8s.io/v1beta1", "PodCertificateRequest", "podcertificaterequests", true, true,
    ["spec.signerName", "spec.podName", "spec.nodeName"]),
  rt("certificates.k8s.io/v1beta1", "ClusterTrustBundle", "clustertrustbundles", false, false, ["spec.signerName"]),
];

/**
 * Further versions of kinds in RESOURCE_TYPES. The store keeps one object per kind whatever
 * version wrote it, in the form of its RESOURCE_TYPES entry (its "internal" version, which holds
 * every field: v1beta1 for pod certificates); versions.ts converts. Whether a version is served
 * depends on the emulated Kubernetes version (versions.ts, isServed).
 */
export const OTHER_VERSIONS: readonly ResourceType[] = [
  rt("certificates.k8s.io/v1", "PodCertificateRequest", "podcertificaterequests", true, true,
    ["spec.signerName", "spec.podName", "spec.nodeName"]),
  rt("certificates.k8s.io/v1", "ClusterTrustBundle", "clustertrustbundles", false, false, ["spec.signerName"]),
];

/** Every version of every kind: RESOURCE_TYPES first (so a kind's first entry is its stored form). */
export const ALL_RESOURCE_TYPES: readonly ResourceType[] = [...RESOURCE_TYPES, ...OTHER_VERSIONS];

/** The type whose form the store keeps objects of `t`'s kind in (RESOURCE_TYPES' entry). */
export function storageType(t: ResourceType): ResourceType {
  return RESOURCE_TYPES.find((s) => s.group === t.group && s.kind === t.kind) ?? t;
}

/**
 * Finds a type by Kind ("Pod"), plural ("pods") or either qualified by group
 * ("events.events.k8s.io", "PodCertificateRequest.certificates.k8s.io"); case-insensitive.
 * Unqualified "Event"/"events" is the core v1 Event.
 */
export function resolveResource(ref: string): ResourceType | undefined {
  const r = ref.toLowerCase();
  return RESOURCE_TYPES.find((t) => {
    const names = [t.kind.toLowerCase(), t.plural];
    return t.group ? names.some((n) => `${n}.${t.group}` === r) : names.includes(r);
  }) ?? RESOURCE_TYPES.find((t) => t.kind.toLowerCase() === r || t.plural === r);
}

/** Any version (ALL_RESOURCE_TYPES), served or not. */
export function resourceFor(apiVersion: string, kind: string): ResourceType | undefined {
  return ALL_RESOURCE_TYPES.find((t) => t.apiVersion === apiVersion && t.kind === kind);
}

/** Any version (ALL_RESOURCE_TYPES), served or not. */
export function resourceForPath(group: string, version: string, plural: string): ResourceType | undefined {
  return ALL_RESOURCE_TYPES.find((t) => t.group === group && t.version === version && t.plural === plural);
}

/** The value of a field selector path on an object (scalars as strings, like the real server). */
export function fieldValue(obj: KubeObject, path: string): string | undefined {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) return path === "spec.hostNetwork" || path === "spec.unschedulable" ? "false" : undefined;
  return typeof cur === "object" ? JSON.stringify(cur) : String(cur);
}

// ---------------------------------------------------------------------------------------------
// Defaults

/** Fills the defaults a real API server would (objects are modified in place). */
export function applyDefaults(t: ResourceType, obj: KubeObject): void {
  const sub = (key: string) => {
    const v = obj[key];
    if (v === null || typeof v !== "object") obj[key] = {};
    return obj[key] as Record<string, unknown>;
  };
  switch (t.kind) {
    case "Service":
      sub("spec").type ??= "ClusterIP";
      break;
    case "PodCertificateRequest":
      sub("spec").maxExpirationSeconds ??= DEFAULT_MAX_EXPIRATION_SECONDS;
      break;
    case "Namespace":
      obj.metadata.labels = { ...obj.metadata.labels, "kubernetes.io/metadata.name": obj.metadata.name };
      sub("status").phase ??= "Active";
      break;
  }
}
