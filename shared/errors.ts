/**
 * Errors are typed by what the caller must do with them, not by where they came from:
 *
 * - {@link RequestDeniedError}: the PCR itself is unacceptable; write condition `Denied` (or
 *   `Failed` when `permanent`), never retry. Made only by shared/policy/, where every rule is, and
 *   passed on as a value (a step hands it to deny; see runtime/run-step.ts).
 * - {@link TransientError}: something outside the request (the API server, a Service that does not
 *   exist yet, an expiring CA) may change; write nothing and let the broker retry (HTTP 5xx/429).
 *   A {@link WaitingError} is one an operator must fix (no usable CA): the step runner turns it
 *   into a `wait` outcome, logged and recorded as a Warning Event on the PCR with its reason.
 * - {@link RejectedEventError}: the event is malformed or not authenticated; answer 4xx, which the
 *   broker does not retry. The PCR is not touched.
 * - {@link ConfigError}: the operator's configuration or key material is unusable; fail at start.
 *
 * Each carries a stable `code`; `name` is set explicitly so minified bundles keep it.
 */

import { boundConditionMessage } from "./limits.js";
import { DENIAL_REASONS } from "./policy/reasons.js";

/** A reason from policy/reasons.ts's DENIAL_REASONS, the one list. */
export type DenialReason = (typeof DENIAL_REASONS)[number];

export type PodcertErrorCode =
  | "ERR_REQUEST_DENIED"
  | "ERR_TRANSIENT"
  | "ERR_EVENT_REJECTED"
  | "ERR_CONFIG"
  | "ERR_CONFLICT";

export abstract class PodcertError extends Error {
  abstract readonly code: PodcertErrorCode;
}

/**
 * The request is invalid: the PCR gets a terminal condition with this reason. The message is
 * bounded here, where it is made, to what a status condition holds, and control characters (which
 * only untrusted input quoted into it could carry) are replaced: every step that hands the
 * denial on, and the status itself, then accept it as it is.
 */
export class RequestDeniedError extends PodcertError {
  readonly code = "ERR_REQUEST_DENIED" as const;
  override readonly name = "RequestDeniedError";
  constructor(
    readonly reason: DenialReason,
    message: string,
    /** true only when no retry could ever succeed and the request is not at fault: `Failed`. */
    readonly permanent = false,
  ) {
    super(boundDenialMessage(message));
  }
}

/** A denial message as a status condition can hold it (see RequestDeniedError). */
export function boundDenialMessage(message: string): string {
  return boundConditionMessage(message.replace(/[\u0000-\u001f\u007f-\u009f]/gu, "\uFFFD"));
}

/** Retry later; never write Denied or Failed because of this. */
export class TransientError extends PodcertError {
  readonly code = "ERR_TRANSIENT" as const;
  override readonly name: string = "TransientError";
  constructor(
    message: string,
    options?: { cause?: unknown; /** answer 429 instead of 503 */ overloaded?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.overloaded = options?.overloaded ?? false;
  }
  readonly overloaded: boolean;
}

/**
 * Transient, and only an operator can end it (the signer has no CA that can cover a certificate):
 * the request stays pending and is retried like any TransientError, and the step runner
 * (runtime/run-step.ts) also records `reason` and the message, which says what to do, as a
 * Warning Event on the PCR. Made by shared/policy/ (issuance.ts's signingCa, lifetime.ts).
 */
export class WaitingError extends TransientError {
  override readonly name = "WaitingError";
  constructor(
    /** What the request waits for, for the log ("a usable CA"). */
    readonly waitingFor: string,
    /** The Kubernetes Event's reason: CamelCase, from a fixed set (it is also a metric label). */
    readonly reason: "NoUsableCA" | "CAExpiring",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The event is malformed (400) or its attestation does not verify (401/403). Not retried. */
export class RejectedEventError extends PodcertError {
  readonly code = "ERR_EVENT_REJECTED" as const;
  override readonly name = "RejectedEventError";
  constructor(
    message: string,
    readonly status: 400 | 401 | 403 | 413 | 415 = 400,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** Bad configuration or key material: the process cannot serve. */
export class ConfigError extends PodcertError {
  readonly code = "ERR_CONFIG" as const;
  override readonly name = "ConfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** A write lost a race (HTTP 409 on a stale resourceVersion): re-read and decide again. */
export class ConflictError extends PodcertError {
  readonly code = "ERR_CONFLICT" as const;
  override readonly name = "ConflictError";
}

export function isPodcertError(e: unknown): e is PodcertError {
  return e instanceof PodcertError;
}
