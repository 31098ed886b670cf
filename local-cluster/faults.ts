/**
 * Fault injection for the local stand-ins (the embedded API server, the local broker, the function
 * processes), off by default. `npm run chaos` and the short chaos test turn it on to measure what
 * podcert does when the Kubernetes API and the event delivery misbehave as they do on a cluster.
 *
 * Every rate is a probability in [0, 1] drawn per request (API) or per delivery (broker) from one
 * seeded generator, so a run with the same seed and the same order of requests injects the same
 * faults. Each injected fault is counted by kind, so a run's table says what it survived.
 */

/** Faults the embedded API server injects into requests from podcert's own users. */
export interface ApiFaultPlan {
  /** Answer 500 InternalError without doing anything. */
  status500?: number;
  /** Answer 503 ServiceUnavailable without doing anything. */
  status503?: number;
  /** Answer 429 TooManyRequests with `Retry-After: retryAfterSeconds` (default 1) without doing anything. */
  status429?: number;
  retryAfterSeconds?: number;
  /** Hold the answer for `slowMs` (default 12 s, past the functions' API timeout) and then do nothing. */
  slow?: number;
  slowMs?: number;
  /** Destroy the connection without an answer. */
  reset?: number;
  /**
   * Before a write (PUT, PUT status) to an existing object, a simulated concurrent writer updates
   * the object first (an annotation), so the write's resourceVersion is stale and the store
   * answers 409 Conflict as kube-apiserver would.
   */
  conflict?: number;
  /** Per watch event sent: end the stream right after it (the watcher must reconnect). */
  watchCloseEarly?: number;
  /** Per watch event: do not send it (lost, as when a source's adapter gives up sending). */
  watchSkip?: number;
  /** Which users get faults. Default: every ServiceAccount (`system:serviceaccount:…`), never the admin. */
  appliesTo?: (user: string) => boolean;
}

/** Faults the local broker injects into deliveries to subscribers. */
export interface DeliveryFaultPlan {
  /** The delivery never happens (as if the in-memory broker restarted with it in flight). */
  drop?: number;
  /** The delivery happens twice, one after the other. */
  duplicate?: number;
  /** The delivery happens twice at the same time. */
  concurrentDuplicate?: number;
  /** The delivery is held back until a later one has gone (out of order). */
  reorder?: number;
  /** The delivery waits `delayMs` (default 2 s) before its first attempt. */
  delay?: number;
  delayMs?: number;
  /**
   * The subscriber's process is killed (SIGKILL) while this delivery is in flight; the local run
   * restarts it on the same port, as Knative would, and the broker retries the failed attempt.
   */
  killMidRequest?: number;
}

export type ApiFaultKind = "status500" | "status503" | "status429" | "slow" | "reset" | "conflict" | "watchCloseEarly" | "watchSkip";
export type DeliveryFaultKind = "drop" | "duplicate" | "concurrentDuplicate" | "reorder" | "delay" | "killMidRequest";
export type FaultKind = ApiFaultKind | DeliveryFaultKind;

/** Counts of faults injected, by kind. */
export class FaultCounter {
  private readonly counts = new Map<FaultKind, number>();
  hit(kind: FaultKind): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }
  get(kind: FaultKind): number {
    return this.counts.get(kind) ?? 0;
  }
  total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }
  snapshot(): Partial<Record<FaultKind, number>> {
    return Object.fromEntries(this.counts);
  }
}

/** A small seeded generator (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * At most one fault per draw: the kinds' rates are stacked in the order given, so `{ a: 0.1, b: 0.1 }`
 * injects a 10% of the time and b another 10%. Returns the kind drawn, or undefined (no fault).
 * Throws when the rates add up past 1 or one is outside [0, 1].
 */
export function drawFault<K extends string>(random: () => number, rates: Readonly<Partial<Record<K, number | undefined>>>, kinds: readonly K[]): K | undefined {
  const r = random();
  let edge = 0;
  for (const kind of kinds) {
    const rate = rates[kind] ?? 0;
    edge += rate;
    if (r < edge) return kind;
  }
  return undefined;
}

/** Checks a plan's rates (each in [0, 1], together at most 1); returns the problems found. */
export function faultPlanProblems(plan: Readonly<Record<string, unknown>>, kinds: readonly string[]): string[] {
  const problems: string[] = [];
  let sum = 0;
  for (const kind of kinds) {
    const v = plan[kind];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 1) problems.push(`${kind}: a rate is a number from 0 to 1, not ${String(v)}`);
    else sum += v;
  }
  if (sum > 1 + 1e-9) problems.push(`the rates add up to ${sum.toFixed(3)}; at most 1`);
  return problems;
}

export const API_REQUEST_FAULTS = ["status500", "status503", "status429", "slow", "reset", "conflict"] as const satisfies readonly ApiFaultKind[];
export const WATCH_FAULTS = ["watchCloseEarly", "watchSkip"] as const satisfies readonly ApiFaultKind[];
export const DELIVERY_FAULTS = ["drop", "duplicate", "concurrentDuplicate", "reorder", "delay", "killMidRequest"] as const satisfies readonly DeliveryFaultKind[];
