/**
 * Each request fault of the embedded API server with the status a step answers under it: 429
 * passed on (the broker honours its back-off), everything else 503. Both retried by the broker.
 */
import type { ApiFaultPlan } from "../../local-cluster/faults.js";

export const REQUEST_FAULT_CASES: readonly { kind: string; plan: ApiFaultPlan; status: number }[] = [
  { kind: "status500", plan: { status500: 1 }, status: 503 },
  { kind: "status503", plan: { status503: 1 }, status: 503 },
  { kind: "status429", plan: { status429: 1 }, status: 429 },
  { kind: "reset", plan: { reset: 1 }, status: 503 },
  { kind: "slow", plan: { slow: 1, slowMs: 50 }, status: 503 },
];
