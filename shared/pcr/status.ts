/** Building the status podcert writes: Issued, or Denied/Failed (SPEC.md §1 rules). */
import { boundConditionMessage } from "../limits.js";
import type { Condition, PcrStatus } from "./model.js";

/** RFC 3339 with whole seconds, the form kube-apiserver writes back. */
export function rfc3339Seconds(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function condition(type: Condition["type"], reason: string, message: string, now: Date): Condition {
  // Messages can quote untrusted input; keep them inside the API server's limit.
  return { type, status: "True", reason, message: boundConditionMessage(message), lastTransitionTime: rfc3339Seconds(now) };
}

export function issuedStatus(o: {
  chainPem: string;
  notBefore: Date;
  notAfter: Date;
  beginRefreshAt: Date;
  message: string;
  now: Date;
}): PcrStatus {
  return {
    conditions: [condition("Issued", "Issued", o.message, o.now)],
    certificateChain: o.chainPem,
    notBefore: rfc3339Seconds(o.notBefore),
    beginRefreshAt: rfc3339Seconds(o.beginRefreshAt),
    notAfter: rfc3339Seconds(o.notAfter),
  };
}

/** Denied, or Failed when `permanent` (an error no retry can fix that is not the request's fault). */
export function deniedStatus(o: { reason: string; message: string; permanent: boolean; now: Date }): PcrStatus {
  return { conditions: [condition(o.permanent ? "Failed" : "Denied", o.reason, o.message, o.now)] };
}
