/**
 * The fault mixes `npm run chaos` runs, each against a fresh local flow. API faults hit every call
 * podcert's ServiceAccounts make (functions and the ApiServerSource's watch); the kubelets'
 * creates and the harness's own reads are the administrator's and are never faulted.
 */
import { API_REQUEST_FAULTS, type ApiFaultPlan, type DeliveryFaultPlan } from "../local-cluster/faults.js";

export interface FaultMix {
  name: string;
  /** One line for the table's notes. */
  what: string;
  api?: ApiFaultPlan;
  delivery?: DeliveryFaultPlan;
}

const API_ERRORS: ApiFaultPlan = { status500: 0.06, status503: 0.06, status429: 0.06, reset: 0.04 };
const API_SLOW_AND_CONFLICTS: ApiFaultPlan = { slow: 0.02, conflict: 0.15 };
const WATCH: ApiFaultPlan = { watchCloseEarly: 0.02, watchSkip: 0.05 };
const DELIVERY: DeliveryFaultPlan = { drop: 0.05, duplicate: 0.05, concurrentDuplicate: 0.05, reorder: 0.05, delay: 0.05 };
const KILL: DeliveryFaultPlan = { killMidRequest: 0.01 };

export const MIXES: readonly FaultMix[] = [
  { name: "none", what: "no faults (the baseline)" },
  { name: "api-errors", what: "22% of podcert's API calls answered 500, 503, 429 (Retry-After) or reset", api: API_ERRORS },
  { name: "api-slow-conflicts", what: "2% of API calls held 12 s (past the functions' deadline), 15% of writes meet a concurrent writer (409)", api: API_SLOW_AND_CONFLICTS },
  { name: "watch", what: "the source's watch closes early after 2% of events and loses 5% of them", api: WATCH },
  { name: "delivery", what: "5% each of deliveries dropped, duplicated, duplicated concurrently, reordered, delayed 2 s", delivery: DELIVERY },
  { name: "kill", what: "1% of deliveries: the function process is killed mid-request (SIGKILL) and restarted", delivery: KILL },
  {
    name: "combined",
    what: "all at once: 24% API faults, watch losses, delivery faults, kills",
    api: { status500: 0.05, status503: 0.05, status429: 0.05, reset: 0.03, slow: 0.01, conflict: 0.05, watchCloseEarly: 0.01, watchSkip: 0.03 },
    delivery: { drop: 0.03, duplicate: 0.03, concurrentDuplicate: 0.03, reorder: 0.03, delay: 0.03, killMidRequest: 0.005 },
  },
];

/** The share of podcert's API calls a mix faults (watch faults are per event, not counted). */
export function apiFaultShare(plan: ApiFaultPlan | undefined): number {
  if (plan === undefined) return 0;
  return API_REQUEST_FAULTS.reduce((n, kind) => n + (plan[kind] ?? 0), 0);
}

/**
 * Whether a mix can make a delivery fail without an HTTP answer: a killed process, or a function
 * still waiting on a held API call when the broker's attempt timeout ends. (An API reset is not
 * one: the function sees it and answers 503.)
 */
export function injectsNetworkFaults(mix: FaultMix): boolean {
  return (mix.api?.slow ?? 0) > 0 || (mix.delivery?.killMidRequest ?? 0) > 0;
}
