/**
 * The embedded API server's fault injection (the plan and its vocabulary are local-cluster/faults.ts):
 * who a plan applies to, one seeded draw per request or per watch event, and the count of what was
 * injected. Off until a plan is set. server.ts carries the faults out.
 *
 * Who gets faults: the request's authenticated user name, "" when the server runs without
 * `authorization` (nobody is authenticated then). The default `appliesTo` takes every
 * ServiceAccount (`system:serviceaccount:…`, podcert's functions and the ApiServerSource) and, without
 * authorization, every request, since nothing tells podcert's requests from others there. The
 * cluster administrator (ADMIN_USER: tests, the local run's seeding, `kubectl`) never gets one,
 * whatever `appliesTo` says, so a harness can always look at the cluster as it is.
 */
import { ConfigError } from "../../shared/errors.js";
import {
  API_REQUEST_FAULTS,
  drawFault,
  FaultCounter,
  faultPlanProblems,
  seededRandom,
  WATCH_FAULTS,
  type ApiFaultKind,
  type ApiFaultPlan,
} from "../faults.js";

export type RequestFault = (typeof API_REQUEST_FAULTS)[number];
export type WatchFault = (typeof WATCH_FAULTS)[number];

/** The seed when none is given: runs are reproducible by default. */
export const DEFAULT_FAULT_SEED = 1;
export const DEFAULT_SLOW_MS = 12_000;
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

const SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:";

/** The default `appliesTo`: every ServiceAccount, and every request when nobody authenticates (""). */
export function defaultAppliesTo(user: string): boolean {
  return user === "" || user.startsWith(SERVICE_ACCOUNT_PREFIX);
}

/** What is wrong with a plan, one line each (rates: faultPlanProblems, per draw; durations; appliesTo). */
export function apiFaultPlanProblems(plan: ApiFaultPlan): string[] {
  // Request faults and watch faults are drawn separately (per request, per event): each set adds up to at most 1.
  const problems = [...faultPlanProblems({ ...plan }, API_REQUEST_FAULTS), ...faultPlanProblems({ ...plan }, WATCH_FAULTS)];
  const whole = (field: "slowMs" | "retryAfterSeconds") => {
    const v: unknown = plan[field];
    if (v !== undefined && (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)) problems.push(`${field}: a whole number from 0, not ${String(v)}`);
  };
  whole("slowMs");
  whole("retryAfterSeconds");
  if (plan.appliesTo !== undefined && typeof plan.appliesTo !== "function") problems.push("appliesTo: a function of the user name");
  return problems;
}

export class ApiFaultInjector {
  readonly counter = new FaultCounter();
  private plan: ApiFaultPlan | undefined;
  private random: () => number;

  constructor(
    private readonly adminUser: string,
    o: { plan?: ApiFaultPlan; seed?: number } = {},
  ) {
    this.random = seededRandom(o.seed ?? DEFAULT_FAULT_SEED);
    this.set(o.plan);
  }

  /** A new plan (undefined: off); throws ConfigError naming every problem. A seed restarts the generator. */
  set(plan: ApiFaultPlan | undefined, seed?: number): void {
    if (plan !== undefined) {
      const problems = apiFaultPlanProblems(plan);
      if (problems.length > 0) throw new ConfigError(`API fault plan: ${problems.join("; ")}`);
    }
    this.plan = plan === undefined ? undefined : { ...plan };
    if (seed !== undefined) this.random = seededRandom(seed);
  }

  get slowMs(): number {
    return this.plan?.slowMs ?? DEFAULT_SLOW_MS;
  }

  get retryAfterSeconds(): number {
    return this.plan?.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
  }

  /** Whether requests from `user` ("" without authentication) are subject to the plan. */
  appliesTo(user: string): boolean {
    const plan = this.plan;
    if (plan === undefined || user === this.adminUser) return false;
    return (plan.appliesTo ?? defaultAppliesTo)(user);
  }

  /** A request fault for this request, or none; nothing is drawn (the sequence does not move) for users the plan spares. */
  drawRequest(user: string): RequestFault | undefined {
    if (!this.appliesTo(user)) return undefined;
    return drawFault(this.random, this.plan!, API_REQUEST_FAULTS);
  }

  /** A watch fault for one event sent to `user`, or none. */
  drawWatch(user: string): WatchFault | undefined {
    if (!this.appliesTo(user)) return undefined;
    return drawFault(this.random, this.plan!, WATCH_FAULTS);
  }

  hit(kind: ApiFaultKind): void {
    this.counter.hit(kind);
  }
}
