/**
 * Cluster files: the objects the embedded API server starts with. Either a Kubernetes `List`
 * (`kubectl get ... -o yaml|json`), typed lists such as `PodList` (items without apiVersion/kind
 * get them from the list), or multi-document YAML (JSON is YAML), which may mix both.
 */

import { parseAllDocuments } from "yaml";

import { ConfigError } from "../../shared/errors.js";
import * as z from "../../shared/zod.js";
import { kubernetesVersionFromEnv, type KubernetesVersion } from "../kubernetes-versions.js";
import { ALL_RESOURCE_TYPES, resourceFor, type KubeObject } from "./resources.js";
import { isServed } from "./versions.js";

export const MAX_CLUSTER_FILE_BYTES = 64 * 1024 * 1024;

const objectSchema = z.looseObject({
  apiVersion: z.string().check(z.minLength(1)),
  kind: z.string().check(z.minLength(1)),
  metadata: z.looseObject({ name: z.string().check(z.minLength(1)) }),
});

/** Document and item numbers in errors count from 0. */
export function parseClusterFile(text: string): KubeObject[] {
  const size = Buffer.byteLength(text);
  if (size > MAX_CLUSTER_FILE_BYTES) {
    throw new ConfigError(`cluster file is ${size} bytes; the limit is ${MAX_CLUSTER_FILE_BYTES}`);
  }
  const out: KubeObject[] = [];
  documents(text).forEach((value, i) => {
    if (value === null || value === undefined) return; // empty document (e.g. a trailing "---")
    const where = `cluster file document ${i}`;
    const rec = value as { kind?: unknown; apiVersion?: unknown; items?: unknown };
    if (typeof rec === "object" && typeof rec.kind === "string" && rec.kind.endsWith("List") && "items" in rec) {
      if (!Array.isArray(rec.items)) throw new ConfigError(`${where}: items: must be a list`);
      const itemKind = rec.kind === "List" ? undefined : rec.kind.slice(0, -"List".length);
      rec.items.forEach((item: unknown, j) => {
        if (itemKind && item !== null && typeof item === "object") {
          const it = item as Record<string, unknown>;
          it.kind ??= itemKind;
          if (typeof rec.apiVersion === "string") it.apiVersion ??= rec.apiVersion;
        }
        out.push(check(item, `${where}, items[${j}]`));
      });
    } else {
      out.push(check(value, where));
    }
  });
  return out;
}

/**
 * The file's documents as plain values. A file that is one JSON text (`kubectl get -o json`) is
 * read with JSON.parse: the YAML parser, which keeps positions and comments for every node, took
 * about 0.6 s per MiB of such a file, a tenth of `podcert issue`'s time on thousands of requests.
 * The one difference: a key repeated in a JSON object keeps its last value, as kube-apiserver's
 * decoder does under its default field validation (Warn), where YAML refuses it. Anything else is
 * YAML, as before.
 */
function documents(text: string): unknown[] {
  const start = text.trimStart()[0];
  if (start === "{" || start === "[") {
    try {
      return [JSON.parse(text)];
    } catch {
      // Not one JSON text (several, or YAML flow style): the YAML parser reads it and says what is wrong.
    }
  }
  return parseAllDocuments(text, { prettyErrors: true }).map((doc, i) => {
    if (!("errors" in doc) || doc.errors.length > 0) {
      const first = "errors" in doc ? doc.errors[0]?.message : "not a YAML document";
      throw new ConfigError(`cluster file document ${i}: invalid YAML: ${first}`);
    }
    try {
      return doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new ConfigError(`cluster file document ${i}: ${(e as Error).message}`);
    }
  });
}

function check(value: unknown, where: string): KubeObject {
  const r = objectSchema.safeParse(value);
  if (r.success) return r.data as KubeObject;
  throw new ConfigError(`${where}: ${z.describeIssues(r.error).join("; ")}`);
}

const METADATA_FIELDS = new Set(["name", "namespace", "uid", "labels", "annotations", "generateName", "resourceVersion", "creationTimestamp",
  "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences", "managedFields", "generation", "selfLink"]);
const EVENT_FIELDS = ["reason", "message", "type", "eventTime", "series", "action", "related", "reportingInstance"];
/** Top-level fields beyond apiVersion, kind and metadata, by Kind (Event: by apiVersion too). */
const KIND_FIELDS: Record<string, readonly string[]> = {
  ServiceAccount: ["secrets", "imagePullSecrets", "automountServiceAccountToken"],
  ConfigMap: ["data", "binaryData", "immutable"],
  "v1 Event": [...EVENT_FIELDS, "involvedObject", "source", "firstTimestamp", "lastTimestamp", "count", "reportingComponent"],
  "events.k8s.io/v1 Event": [...EVENT_FIELDS, "regarding", "note", "reportingController", "deprecatedSource", "deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount"],
};

/**
 * What the embedded API server would silently ignore in parsed objects: kinds it does not serve,
 * versions the emulated Kubernetes version does not serve (a certificates.k8s.io/v1
 * PodCertificateRequest before 1.37; skipped like unknown kinds), and top-level or metadata
 * fields the kind does not have (a typo such as `annotation:` or `kind: Pd` otherwise shows only
 * as a request that never comes). `kubernetesVersion`: as startApiServer's default.
 */
export function clusterFileProblems(objects: readonly KubeObject[], kubernetesVersion: KubernetesVersion = kubernetesVersionFromEnv()): string[] {
  const problems: string[] = [];
  let unserved = false;
  for (const o of objects) {
    const what = `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;
    const t = resourceFor(o.apiVersion, o.kind);
    if (!t) {
      problems.push(`${what}: ${o.apiVersion} ${o.kind} is not a kind the embedded API server serves; ignored`);
      unserved = true;
      continue;
    }
    if (!isServed(kubernetesVersion, t)) {
      problems.push(`${what}: ${o.apiVersion} ${o.kind} is not served by Kubernetes ${kubernetesVersion}; ignored`);
      unserved = true;
      continue;
    }
    const known = new Set(["apiVersion", "kind", "metadata", ...(KIND_FIELDS[`${o.apiVersion} ${o.kind}`] ?? KIND_FIELDS[o.kind] ?? ["spec", "status"])]);
    for (const field of Object.keys(o)) if (!known.has(field)) problems.push(`${what}: unknown field ${field}`);
    for (const field of Object.keys(o.metadata)) if (!METADATA_FIELDS.has(field)) problems.push(`${what}: unknown field metadata.${field}`);
  }
  if (unserved) {
    const served = ALL_RESOURCE_TYPES.filter((t) => isServed(kubernetesVersion, t));
    problems.push(`the kinds it serves: ${served.map((t) => `${t.apiVersion} ${t.kind}`).join(", ")} (emulating Kubernetes ${kubernetesVersion})`);
  }
  return problems;
}
