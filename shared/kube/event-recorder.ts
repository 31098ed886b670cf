/**
 * Kubernetes Events recorded in the background, as client-go's recorder does: an Event is what
 * `kubectl describe` shows, the PCR's status is what kubelet waits for, so a step answers as soon
 * as the status is written and its Event follows. Bounded (a slow or failing API server costs
 * dropped Events, never memory or answers), and flushed before a process exits.
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
}

export interface EventRecorderOptions {
  /** Events waiting or in flight before new ones are dropped; default 1000. */
  maxPending?: number;
  /** Events sent at once; default 4. */
  concurrency?: number;
}

export function createEventRecorder(cluster: Pick<ClusterApi, "createEvent">, log: WarningLog, o: EventRecorderOptions = {}): EventRecorder {
  const maxPending = o.maxPending ?? 1000;
  const concurrency = o.concurrency ?? 4;
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
  };
}
