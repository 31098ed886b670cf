/**
 * Kubernetes Events recorded in the background, as client-go's recorder does: an Event is what
 * `kubectl describe` shows, the PCR's status is what kubelet waits for, so a step answers as soon
 * as the status is written and its Event follows. Bounded (a slow or failing API server costs
 * dropped Events, never memory or answers), and flushed before a process exits.
 *
 * Rate-limited, as client-go's EventCorrelator limits each object's Events: every PCR gets at
 * most a few Events, so per-object limits do not help in a burst, where kube-apiserver, not CPU,
 * is the limit (a kubelet upgrade wave asks for thousands of certificates at once, and each would
 * cost one Event write beside its status write). A token bucket per process (default 10 Events a
 * second, bursts of 100) samples them instead; half of the bucket is kept for Warnings, so under
 * load the `Normal Issued` Events (the status already says Issued) go first and denials and CA
 * problems still reach `kubectl describe`. Sampled-out Events are counted (`sampled`) and logged
 * once per thousand.
 */
import type { ClusterApi, KubernetesEvent } from "./cluster.js";

/**
 * Where the recorder reports Events it could not send or had to drop: the one method of
 * shared/runtime's Logger it uses, declared here because shared/kube sits below the runtime.
 */
export interface WarningLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface EventRecorder {
  /** Queues the Event; never throws, never waits. */
  record(event: KubernetesEvent): void;
  /**
   * Resolves true once every queued Event was sent (or failed), or false when `timeoutMs` passes
   * first (the Events stay queued).
   */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Events given up because the queue was full. */
  readonly dropped: number;
  /** Events left out by the rate budget (sampled under load). */
  readonly sampled: number;
}

export interface EventRecorderOptions {
  /** Events waiting or in flight before new ones are dropped; default 1000. */
  maxPending?: number;
  /** Events sent at once; default 4. */
  concurrency?: number;
  /** The budget's refill, Events per second; default 10. 0 or Infinity: no budget. */
  ratePerSecond?: number;
  /** The budget's size (a burst); default 100. Normal Events may use only the upper half. */
  burst?: number;
  /** The clock the budget refills by (ms); default performance.now. */
  nowMs?: () => number;
}

/** What the budget lets through now: Warnings while any token is left, Normal Events only above the reserve. */
export interface EventBudget {
  tokens: number;
  lastMs: number;
}

/**
 * Refills `budget` for the time since it was last used and takes a token for an Event of `type`
 * when its share allows; pure apart from updating `budget`.
 */
export function takeEventToken(budget: EventBudget, type: KubernetesEvent["type"], nowMs: number, o: { ratePerSecond: number; burst: number }): boolean {
  if (!(o.ratePerSecond > 0) || o.ratePerSecond === Number.POSITIVE_INFINITY) return true;
  budget.tokens = Math.min(o.burst, budget.tokens + ((nowMs - budget.lastMs) / 1000) * o.ratePerSecond);
  budget.lastMs = nowMs;
  const floor = type === "Warning" ? 1 : o.burst / 2 + 1;
  if (budget.tokens < floor) return false;
  budget.tokens -= 1;
  return true;
}

export function createEventRecorder(cluster: Pick<ClusterApi, "createEvent">, log: WarningLog, o: EventRecorderOptions = {}): EventRecorder {
  const maxPending = o.maxPending ?? 1000;
  const concurrency = o.concurrency ?? 4;
  const rate = { ratePerSecond: o.ratePerSecond ?? 10, burst: o.burst ?? 100 };
  const nowMs = o.nowMs ?? (() => performance.now());
  const budget: EventBudget = { tokens: rate.burst, lastMs: nowMs() };
  let sampled = 0;
  const queue: KubernetesEvent[] = [];
  let inFlight = 0;
  let dropped = 0;
  let idle: (() => void)[] = [];

  const pump = () => {
    while (inFlight < concurrency && queue.length > 0) {
      const event = queue.shift()!;
      inFlight++;
      cluster
        .createEvent(event)
        .catch((e: unknown) => {
          // The status is what kubelet reads; a lost Event only costs `kubectl describe` a line.
          log.warn("could not record Kubernetes Event", { error: e, reason: event.reason, pcrName: event.regarding.name });
        })
        .finally(() => {
          inFlight--;
          pump();
        });
    }
    if (inFlight === 0 && queue.length === 0) {
      const waiting = idle;
      idle = [];
      for (const resolve of waiting) resolve();
    }
  };

  return {
    record(event) {
      if (!takeEventToken(budget, event.type, nowMs(), rate)) {
        if (sampled % 1000 === 0) log.warn("sampling Kubernetes Events: more than the rate budget allows", { ...rate, sampledSoFar: sampled + 1, type: event.type });
        sampled++;
        return;
      }
      if (queue.length + inFlight >= maxPending) {
        // One line for the first drop, then one per thousand: a flood must not become a log flood.
        if (dropped % 1000 === 0) log.warn("dropping Kubernetes Events: too many waiting", { maxPending, droppedSoFar: dropped + 1 });
        dropped++;
        return;
      }
      queue.push(event);
      pump();
    },
    flush(timeoutMs) {
      if (inFlight === 0 && queue.length === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = timeoutMs === undefined ? undefined : setTimeout(() => resolve(false), timeoutMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    get dropped() {
      return dropped;
    },
    get sampled() {
      return sampled;
    },
  };
}
