/**
 * The functions in one process (`podcert issue`, the benchmark): an event goes where the Triggers
 * of knative/ route it (local-cluster/router.ts, as the local broker routes), and each reply is
 * routed the same way, until nothing replies. Answers the broker would retry are retried a bounded
 * number of times with exponential backoff; any other answer ends that branch.
 */
import { ConfigError } from "../shared/errors.js";
import type { PodcertEvent } from "../shared/events/types.js";
import type { FunctionContext } from "../shared/runtime/function.js";
import { dispatch } from "../shared/runtime/http.js";
import type { StepName } from "../shared/steps.js";
import type { Functions } from "./functions.js";
import { retryable, routeEvent, stepOfService, type TriggerRoute } from "./router.js";

export interface PipelineHop {
  step: StepName;
  eventType: string;
  status: number;
  attempts: number;
  error?: string;
}

export interface InProcessPipeline {
  routes: readonly TriggerRoute[];
  broker: string;
  functions: Functions;
  contexts: Readonly<Record<StepName, FunctionContext>>;
  /** Attempts per delivery of an answer the broker would retry. */
  maxAttempts: number;
  backoffMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Checks that every Trigger of the pipeline's broker names a registered step's Service. */
export function checkRoutes(p: Pick<InProcessPipeline, "routes" | "broker">): void {
  for (const r of p.routes) {
    if (r.broker === p.broker && stepOfService(r.subscriber) === undefined) {
      throw new ConfigError(`Trigger ${r.name} names Service ${r.subscriber}, which runs no registered step (shared/steps.ts)`);
    }
  }
}

export async function deliver(p: InProcessPipeline, event: PodcertEvent, hops: PipelineHop[] = []): Promise<PipelineHop[]> {
  for (const route of routeEvent(p.routes, p.broker, event)) {
    const step = stepOfService(route.subscriber);
    if (step === undefined) throw new ConfigError(`Trigger ${route.name} names Service ${route.subscriber}, which runs no registered step`);
    let attempt = 0;
    let result: Awaited<ReturnType<typeof dispatch>>;
    for (;;) {
      attempt++;
      result = await dispatch(p.functions[step], p.contexts[step], event);
      if (!retryable(result.status) || attempt >= p.maxAttempts) break;
      await sleep(p.backoffMs * 2 ** (attempt - 1));
    }
    const hop: PipelineHop = { step, eventType: event.type, status: result.status, attempts: attempt };
    if (result.error !== undefined) hop.error = result.error instanceof Error ? result.error.message : String(result.error);
    hops.push(hop);
    if (result.reply) await deliver(p, result.reply, hops);
  }
  return hops;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
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
