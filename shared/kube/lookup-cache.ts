/**
 * A short-lived cache for the objects validate looks up by name and that many requests share:
 * Nodes, ServiceAccounts and Namespaces. When a node's kubelet restarts or a worker pool scales
 * up, hundreds of PCRs name the same few; without it every one costs three GETs.
 *
 * What it may cost, and why that is bounded: only objects that exist are kept, for at most
 * `ttlMs` (default 5 s, PODCERT_LOOKUP_CACHE_SECONDS), so a certificate can be issued on a
 * Node, ServiceAccount or Namespace label that changed no longer than that ago. It never causes a
 * denial: validate re-reads with `fresh` before denying on anything it looked up (see
 * functions/validate), and absent objects are never cached. Concurrent reads of one object
 * share one request. PCRs, Pods and Services are never cached: they are read live every time.
 */
import type { Namespace, Node, ServiceAccount } from "../pcr/model.js";
import type { ClusterApi, ReadOptions } from "./cluster.js";

/** The functions' default (PODCERT_LOOKUP_CACHE_SECONDS) and `podcert issue`'s. */
export const DEFAULT_LOOKUP_CACHE_SECONDS = 5;

export interface LookupCacheOptions {
  /** How long an object that exists is reused; 0 turns the cache off. */
  ttlMs: number;
  /** Objects kept at most (oldest dropped first); default 10,000. */
  maxEntries?: number;
  /** Clock, for tests; default performance.now. */
  nowMs?: () => number;
}

interface Entry<T> {
  value: Promise<T | undefined>;
  /** When it stops being reused; Infinity while the read is in flight. */
  expires: number;
}

export function withLookupCache(cluster: ClusterApi, o: LookupCacheOptions): ClusterApi {
  if (o.ttlMs <= 0) return cluster;
  const maxEntries = o.maxEntries ?? 10_000;
  const nowMs = o.nowMs ?? (() => performance.now());
  const entries = new Map<string, Entry<unknown>>();

  function cached<T>(key: string, read: () => Promise<T | undefined>, options: ReadOptions | undefined): Promise<T | undefined> {
    const hit = entries.get(key) as Entry<T> | undefined;
    if (hit !== undefined && options?.fresh !== true && hit.expires > nowMs()) return hit.value;
    const entry: Entry<T> = { value: read(), expires: Number.POSITIVE_INFINITY };
    entries.delete(key);
    entries.set(key, entry);
    if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    entry.value.then(
      (v) => {
        // Absent objects are not kept: a Node or ServiceAccount created a moment later must count.
        if (v === undefined) {
          if (entries.get(key) === entry) entries.delete(key);
        } else entry.expires = nowMs() + o.ttlMs;
      },
      () => {
        if (entries.get(key) === entry) entries.delete(key);
      },
    );
    return entry.value;
  }

  return {
    readPcr: (namespace, name) => cluster.readPcr(namespace, name),
    replacePcrStatus: (pcr, status) => cluster.replacePcrStatus(pcr, status),
    listPcrs: (q) => cluster.listPcrs(q),
    readPod: (namespace, name) => cluster.readPod(namespace, name),
    readService: (namespace, name) => cluster.readService(namespace, name),
    listServices: (namespace) => cluster.listServices(namespace),
    createEvent: (event) => cluster.createEvent(event),
    readNode: (name, options) => cached<Node>(`node/${name}`, () => cluster.readNode(name), options),
    readNamespace: (name, options) => cached<Namespace>(`namespace/${name}`, () => cluster.readNamespace(name), options),
    readServiceAccount: (namespace, name, options) =>
      cached<ServiceAccount>(`serviceaccount/${namespace}/${name}`, () => cluster.readServiceAccount(namespace, name), options),
  };
}
