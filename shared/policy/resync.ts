/**
 * Which pending PCRs a resync run re-announces, in what order and how many. A PCR whose live
 * events were all lost (the ApiServerSource emits nothing for objects that exist when it starts or
 * re-lists; the Broker is not durable) would otherwise wait for its next update or its deletion.
 * Pure: the handler (functions/resync) lists, this decides, the handler posts.
 */
import { terminalCondition, type PodCertificateRequest } from "../pcr/model.js";

/** What a run keeps of each listed PCR (not the PCR: thousands of them may be pending). */
export interface ResyncCandidate {
  namespace: string;
  name: string;
  uid: string;
  signerName: string;
  /** Milliseconds since the epoch; undefined when the PCR has none that parses. */
  createdMs: number | undefined;
  terminal: boolean;
}

export interface ResyncOptions {
  now: Date;
  /** Younger PCRs are left to their live events (which are likely still on their way). */
  graceSeconds: number;
  /** At most this many events per run, so thousands of pending requests cause no storm. */
  maxEvents: number;
}

export interface ResyncSelection {
  /** Oldest first: kube-controller-manager deletes every PCR 15 minutes after its creation. */
  selected: ResyncCandidate[];
  /** Pending and past the grace period, selected or not. */
  pending: number;
  /** Pending past the grace period but beyond maxEvents: left to the next run. */
  deferred: number;
}

export const DEFAULT_RESYNC_GRACE_SECONDS = 30;
export const DEFAULT_RESYNC_MAX_EVENTS = 100;

/** A candidate from a listed PCR; undefined when it lacks what an event must name (never seen from a real API server). */
export function resyncCandidate(pcr: PodCertificateRequest): ResyncCandidate | undefined {
  const { namespace, name, uid, creationTimestamp } = pcr.metadata;
  if (namespace === undefined || uid === undefined || name === "") return undefined;
  const created = creationTimestamp === undefined ? NaN : Date.parse(creationTimestamp);
  return {
    namespace,
    name,
    uid,
    signerName: pcr.spec.signerName,
    createdMs: Number.isFinite(created) ? created : undefined,
    terminal: terminalCondition(pcr) !== undefined,
  };
}

export function selectForResync(candidates: readonly ResyncCandidate[], o: ResyncOptions): ResyncSelection {
  const cutoff = o.now.getTime() - o.graceSeconds * 1000;
  const seen = new Set<string>();
  const pending = candidates.filter((c) => {
    if (c.terminal || seen.has(c.uid)) return false;
    seen.add(c.uid);
    // No readable creation time: its age is unknown, so it is not left to live events (validate
    // re-reads it anyway), and it sorts first, as the oldest.
    return c.createdMs === undefined || c.createdMs <= cutoff;
  });
  pending.sort((a, b) => (a.createdMs ?? -Infinity) - (b.createdMs ?? -Infinity) || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const max = Math.max(0, Math.floor(o.maxEvents));
  return { selected: pending.slice(0, max), pending: pending.length, deferred: Math.max(0, pending.length - max) };
}

/**
 * The age buckets of podcert_pending_requests, upper bounds in seconds. kube-controller-manager
 * deletes a PCR 15 minutes after its creation, so 15m+ only holds what it has not yet removed.
 */
export const PENDING_AGE_BUCKETS: readonly { age: string; belowSeconds: number }[] = [
  { age: "0-1m", belowSeconds: 60 },
  { age: "1-5m", belowSeconds: 300 },
  { age: "5-15m", belowSeconds: 900 },
  { age: "15m+", belowSeconds: Infinity },
];

/**
 * Pending PCRs (no terminal condition, each uid once, the grace period ignored) by signer and age
 * bucket: every configured signer gets every bucket, zeros too, so series do not come and go. A
 * PCR without a readable creation time counts as the oldest, as selectForResync orders it.
 */
export function pendingByAge(candidates: readonly ResyncCandidate[], signers: Iterable<string>, now: Date): { signer: string; age: string; count: number }[] {
  const counts = new Map<string, number[]>();
  for (const s of signers) counts.set(s, PENDING_AGE_BUCKETS.map(() => 0));
  const seen = new Set<string>();
  for (const c of candidates) {
    const row = counts.get(c.signerName);
    if (row === undefined || c.terminal || seen.has(c.uid)) continue;
    seen.add(c.uid);
    const ageSeconds = c.createdMs === undefined ? Infinity : (now.getTime() - c.createdMs) / 1000;
    const i = PENDING_AGE_BUCKETS.findIndex((b) => ageSeconds < b.belowSeconds);
    row[i === -1 ? PENDING_AGE_BUCKETS.length - 1 : i]!++;
  }
  return [...counts].flatMap(([signer, row]) => PENDING_AGE_BUCKETS.map((b, i) => ({ signer, age: b.age, count: row[i]! })));
}
