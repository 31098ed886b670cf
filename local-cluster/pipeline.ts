/**
 * Runs the functions in one process: an event goes to every function that consumes its type, and
 * each reply is routed the same way, until nothing replies. Transient failures are retried a
 * bounded number of times with backoff, as the broker would; 4xx outcomes end that branch.
 */
import type { PodcertEvent, StepName } from "../shared/events/types.js";
import type { FunctionContext, FunctionDefinition } from "../shared/runtime/function.js";
import { dispatch } from "../shared/runtime/http.js";

export interface PipelineHop {
  step: StepName;
  eventType: string;
  status: number;
  attempts: number;
  error?: string;
}

export interface InProcessPipeline {
  functions: readonly FunctionDefinition[];
  contexts: Readonly<Record<StepName, FunctionContext>>;
  /** Attempts per delivery for transient failures (5xx, 429). */
  maxAttempts: number;
  backoffMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function deliver(p: InProcessPipeline, event: PodcertEvent, hops: PipelineHop[] = []): Promise<PipelineHop[]> {
  const consumers = p.functions.filter((f) => f.consumes.includes(event.type));
  for (const fn of consumers) {
    let attempt = 0;
    let result: Awaited<ReturnType<typeof dispatch>>;
    for (;;) {
      attempt++;
      result = await dispatch(fn, p.contexts[fn.step], event);
      const retryable = result.status >= 500 || result.status === 429;
      if (!retryable || attempt >= p.maxAttempts) break;
      await sleep(p.backoffMs * 2 ** (attempt - 1));
    }
    const hop: PipelineHop = { step: fn.step, eventType: event.type, status: result.status, attempts: attempt };
    if (result.error !== undefined) hop.error = result.error instanceof Error ? result.error.message : String(result.error);
    hops.push(hop);
    if (result.reply) await deliver(p, result.reply, hops);
  }
  return hops;
}

/** Runs `tasks` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}
