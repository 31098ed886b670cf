/**
 * The step runner: what every step does around its algorithm, written once.
 *
 * A step's algorithm reads the facts it needs, calls the pure decisions of shared/policy/ and
 * returns an {@link Outcome}. The runner does the rest, the same way for every step:
 *
 * 1. reads the event: an ApiServerSource (or resync) event names a PCR and proves nothing
 *    ({@link sourceStep}); a step event carries attestations ({@link attestedStep}), each verified
 *    against the decision kind the step expects from the step that made it, all bound to one key;
 * 2. resolves the signer profile (an unknown signer is a bad event, or not ours for a source event);
 * 3. reads the PCR back when the step needs it (validate, deny; sign works from validate's
 *    attestation of it), and skips one that is gone, was re-created or is already terminal
 *    (deliveries are at least once; our own status writes come back as updates);
 * 4. runs the algorithm and carries out its outcome:
 *    - `handOn`: the attested reply event (validate's and derive-sans' decisions, any denial);
 *    - `writeStatus`: the status checked against kube-apiserver's rules and written with the
 *      resourceVersion read or attested (a conflict that another delivery won is a skip; any
 *      other a retry, or for an attested resourceVersion one re-read and write: steps.ts
 *      writeStatus), then the decision log, the Kubernetes Event and an optional reply;
 *    - `wait`: nothing written, 503, so the broker redelivers (derive-sans waiting for Services);
 *      a wait an operator must end (sign without a CA that can cover a certificate: a
 *      WaitingError from shared/policy/, turned into a `wait` here) is also recorded as a
 *      Warning Event on the PCR, once per delivery;
 *    - `skip`: nothing to do, 204.
 *
 * So retry versus final is decided here: a denial is handed on (deny writes it, final), waiting
 * and conflicts are retried, and errors keep their meaning (shared/errors.ts): an event that does
 * not authenticate (an attestation that does not verify, or does not match the PCR as stored) is
 * a RejectedEventError (4xx, not retried), Kubernetes API failures are TransientErrors (retried),
 * anything else is a bug (500). Every outcome that decides something is logged as one `decision`
 * line and counted.
 */
import { RejectedEventError, TransientError, WaitingError, type RequestDeniedError } from "../errors.js";
import { verifyAttestation, type AttestationClaims, type Decision, type DecisionKind, type DecisionOf } from "../events/attestation.js";
import { readPcrTrigger } from "../events/pcr-event.js";
import { readStepEventData, type PodcertEvent, type StepEventData } from "../events/types.js";
import { EVENT_TYPES, registered, type StepName } from "../steps.js";
import type { PcrRef, PcrStatus, PodCertificateRequest } from "../pcr/model.js";
import type { SignerProfile } from "../profiles/config.js";
import { stepKeys, type FunctionContext, type FunctionDefinition } from "./function.js";
import { profileFor } from "./profile.js";
import { handOn, logDecision, readPendingPcr, recordPcrEvent, writeStatus } from "./steps.js";

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

/** The fields of the decision log line besides the PCR and the signer (outcome first). */
export interface DecisionLog {
  outcome: string;
  reason?: string;
  message?: string;
  [field: string]: unknown;
}

/** A reply event carrying this step's attested decision. */
export interface HandOn {
  kind: "handOn";
  type: (typeof EVENT_TYPES)[keyof typeof EVENT_TYPES];
  /** The request key's hash the attestation binds. */
  spkiSha256: string;
  decision: Decision;
  log: DecisionLog;
  /** Pass on the attestations received as well, for a next step that requires them. */
  withReceived?: boolean;
}

/** A terminal status for the PCR as read (deny) or as validate attested it (sign). */
export interface WriteStatus {
  kind: "writeStatus";
  /**
   * The PCR as read, or as validate read it (sign: policy/issuance.ts pcrAsValidated): its
   * resourceVersion makes the write conditional, and the status is checked against it.
   */
  pcr: PodCertificateRequest;
  /**
   * Set when `pcr` is not this step's own read (sign): checks the copy read back after a
   * conflict on a PCR still pending is the same request (throws a RejectedEventError when not),
   * so the status is written once more with its resourceVersion rather than retried until the
   * attestation expires.
   */
  recheck?: (fresh: PodCertificateRequest) => void;
  status: PcrStatus;
  /** Logged once the status is written (not when another delivery wrote first). */
  log: DecisionLog;
  /** The Kubernetes Event recorded on the PCR once written (`kubectl describe`). */
  note: { type: "Normal" | "Warning"; reason: string; message: string };
  /** For an Issued status: the time spent signing, recorded with the time to issue. */
  signSeconds?: number;
  /** A reply once the status is written. */
  then?: Omit<HandOn, "kind" | "log">;
}

/** Not yet: something in the cluster the request needs is missing. Retried; nothing is written. */
export interface Wait {
  kind: "wait";
  /** What is waited for ("Services"). */
  for: string;
  message: string;
  /**
   * Set when an operator must act (WaitingError's reason): the message is also recorded as a
   * Warning Event with this reason on the PCR, so `kubectl describe` says why it is pending.
   */
  reason?: WaitingError["reason"];
}

/** Nothing to do for this event (the PCR is gone, re-created or finished). */
export interface Skip {
  kind: "skip";
  why: string;
}

export type Outcome = HandOn | WriteStatus | Wait | Skip;

export function reply(
  type: HandOn["type"],
  spkiSha256: string,
  decision: Decision,
  log: DecisionLog,
  o: { withReceived?: boolean } = {},
): HandOn {
  return { kind: "handOn", type, spkiSha256, decision, log, ...o };
}

/** A denial decided by policy, handed on to deny (which writes it). */
export function denied(error: RequestDeniedError, spkiSha256: string, o: { withReceived?: boolean } = {}): HandOn {
  const { reason, message, permanent } = error;
  return reply(EVENT_TYPES.denied, spkiSha256, { kind: "denied", reason, message, permanent }, { outcome: "denied", reason, message }, o);
}

export function wait(what: string, message: string, o: { reason?: WaitingError["reason"] } = {}): Wait {
  return { kind: "wait", for: what, message, ...(o.reason === undefined ? {} : { reason: o.reason }) };
}

/**
 * Runs a step's algorithm. A WaitingError from the policy it calls is the `wait` outcome with its
 * reason, carried out like any other (decision line, Event); every other error keeps its meaning.
 */
async function algorithm(run: () => Promise<Outcome> | Outcome): Promise<Outcome> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof WaitingError) return wait(e.waitingFor, e.message, { reason: e.reason });
    throw e;
  }
}

export function skip(why: string): Skip {
  return { kind: "skip", why };
}

// ---------------------------------------------------------------------------------------------
// Step definitions
// ---------------------------------------------------------------------------------------------

/** A step names itself; what it consumes and emits is its entry in the registry (shared/steps.ts). */
interface StepShape {
  step: StepName;
}


/** What every step's algorithm is given. */
export interface StepInput {
  ctx: FunctionContext;
  profile: SignerProfile;
  /** The PCR the event is about. */
  ref: PcrRef;
  /** When the event is handled (attestations were verified at this time). */
  now: Date;
}

/**
 * A step whose input is an ApiServerSource (or resync) event. Nothing in it is trusted: it only
 * names a PCR, which is read back from the API server; that copy is the algorithm's input. Events
 * for a signer this deployment does not serve, or whose copy is already terminal, and PCRs whose
 * stored signer differs from the event's, are ignored without a decision.
 */
export function sourceStep(def: StepShape & { run(input: StepInput & { pcr: PodCertificateRequest }): Promise<Outcome> | Outcome }): FunctionDefinition {
  return {
    ...registered(def.step),
    async handle(event, ctx) {
      const trigger = readPcrTrigger(event);
      const profile = ctx.config.signers.get(trigger.signerName);
      if (profile === undefined || trigger.terminal) return undefined;
      const at: Where = { ref: trigger.ref, profile, received: undefined };
      const read = await readPendingPcr(ctx, trigger.ref);
      if ("skip" in read) return carryOut(ctx, event, at, skip(read.skip));
      // The API server's copy decides; an event that named another signer changes nothing.
      if (read.pcr.spec.signerName !== profile.name) return undefined;
      return carryOut(ctx, event, at, await algorithm(() => def.run({ ctx, profile, ref: trigger.ref, now: ctx.now(), pcr: read.pcr })));
    },
  };
}

/** The steps whose attestations a step event can carry. */
type AttestingStep = keyof StepEventData["attestations"];

/**
 * For each decision kind a step requires, the step whose attestation must carry it; a function
 * when that depends on the event (deny takes the denial of whichever step made it).
 */
export type Expects = { readonly [K in DecisionKind]?: AttestingStep | ((data: StepEventData) => AttestingStep) };

/** The verified decisions, each typed by its kind: `attested.validated.podName`. */
export type Attested<E extends Expects> = { readonly [K in keyof E & DecisionKind]: DecisionOf<K> };

export interface AttestedInput<E extends Expects, H> extends StepInput {
  attested: Attested<E>;
  /** The request key's hash, bound by every attestation received (they must agree). */
  spkiSha256: string;
  /** What the step holds (sign: the CA pool), from its `holds`. */
  holds: H;
}

interface AttestedShape<E extends Expects, H> extends StepShape {
  expects: E;
  /**
   * What the step needs from its context to work at all, checked before the event's attestations
   * (sign: the CA pool; without it, a TransientError).
   */
  holds?: (ctx: FunctionContext) => H;
}

/** A step that works from the attestations alone, without reading the PCR back (derive-sans, sign). */
export function attestedStep<E extends Expects, H = undefined>(
  def: AttestedShape<E, H> & { readsPcr?: false; run(input: AttestedInput<E, H>): Promise<Outcome> | Outcome },
): FunctionDefinition;
/** A step that reads the PCR back before its algorithm (deny). */
export function attestedStep<E extends Expects, H = undefined>(
  def: AttestedShape<E, H> & {
    readsPcr: true;
    run(input: AttestedInput<E, H> & { pcr: PodCertificateRequest }): Promise<Outcome> | Outcome;
  },
): FunctionDefinition;
export function attestedStep<E extends Expects, H>(
  def: AttestedShape<E, H> & {
    readsPcr?: boolean;
    run(input: AttestedInput<E, H> & { pcr?: PodCertificateRequest }): Promise<Outcome> | Outcome;
  },
): FunctionDefinition {
  const expected = Object.entries(def.expects) as [DecisionKind, NonNullable<Expects[DecisionKind]>][];
  if (expected.length === 0) throw new Error(`step ${def.step} must expect at least one attestation`);
  return {
    ...registered(def.step),
    async handle(event, ctx) {
      const data = readStepEventData(event);
      const profile = profileFor(ctx, data.signerName);
      const holds = def.holds === undefined ? (undefined as H) : def.holds(ctx);
      const now = ctx.now();
      const { attested, spkiSha256 } = await verifyExpected(ctx, data, profile, expected, now);
      const input: AttestedInput<E, H> = { ctx, profile, ref: data.pcr, now, attested: attested as Attested<E>, spkiSha256, holds };
      const at: Where = { ref: data.pcr, profile, received: data.attestations };
      if (def.readsPcr !== true) return carryOut(ctx, event, at, await algorithm(() => def.run(input)));
      const read = await readPendingPcr(ctx, data.pcr);
      if ("skip" in read) return carryOut(ctx, event, at, skip(read.skip));
      return carryOut(ctx, event, at, await algorithm(() => def.run({ ...input, pcr: read.pcr })));
    },
  };
}

/**
 * Verifies every expected attestation (in parallel) against the event's PCR and signer, and that
 * they bind the same key. Each verifyAttestation checked its decision's kind, so the record is
 * keyed by kind with the matching type.
 */
async function verifyExpected(
  ctx: FunctionContext,
  data: StepEventData,
  profile: SignerProfile,
  expected: readonly [DecisionKind, NonNullable<Expects[DecisionKind]>][],
  now: Date,
): Promise<{ attested: Partial<Record<DecisionKind, Decision>>; spkiSha256: string }> {
  const verify = ([kind, by]: (typeof expected)[number]): Promise<AttestationClaims> => {
    const from = typeof by === "function" ? by(data) : by;
    const expect = { from, kind, pcr: data.pcr, signerName: profile.name, maxLifetimeSeconds: ctx.config.attestationTTLSeconds };
    return verifyAttestation(stepKeys(ctx), data.attestations[from], expect, now);
  };
  const claims = expected.length === 1 ? [await verify(expected[0]!)] : await Promise.all(expected.map(verify));
  const first = claims[0]!;
  const attested: Partial<Record<DecisionKind, Decision>> = {};
  for (const c of claims) {
    if (c.spkiSha256 !== first.spkiSha256) {
      throw new RejectedEventError(`the ${first.step} and ${c.step} attestations are bound to different keys`, 403);
    }
    attested[c.decision.kind] = c.decision;
  }
  return { attested, spkiSha256: first.spkiSha256 };
}

// ---------------------------------------------------------------------------------------------
// Carrying out an outcome
// ---------------------------------------------------------------------------------------------

interface Where {
  ref: PcrRef;
  profile: SignerProfile;
  /** The attestations the event carried (none for a source event). */
  received: StepEventData["attestations"] | undefined;
}

async function carryOut(ctx: FunctionContext, event: PodcertEvent, at: Where, o: Outcome): Promise<PodcertEvent | undefined> {
  const log = (fields: DecisionLog) => logDecision(ctx, event, { pcr: at.ref, signerName: at.profile.name, ...fields });
  const send = (h: Omit<HandOn, "kind" | "log">) =>
    handOn(ctx, event, {
      type: h.type,
      pcr: at.ref,
      signerName: at.profile.name,
      spkiSha256: h.spkiSha256,
      decision: h.decision,
      ...(h.withReceived === true && at.received !== undefined ? { previous: at.received } : {}),
    });
  switch (o.kind) {
    case "skip":
      log({ outcome: "skipped", message: o.why });
      return undefined;
    case "wait":
      log({ outcome: "waiting", ...(o.reason === undefined ? {} : { reason: o.reason }), message: o.message });
      // One Event per delivery: the broker's retries are bounded (knative/broker.yaml), and each
      // tells `kubectl describe` the wait goes on. A wait for the user's own objects (Services)
      // records none: derive-sans holds no Event permission, and the pod's owner made the wait.
      if (o.reason !== undefined) recordPcrEvent(ctx, at.ref, "Warning", o.reason, o.message);
      throw new TransientError(`waiting for ${o.for}: ${o.message}`);
    case "handOn":
      log(o.log);
      return send(o);
    case "writeStatus": {
      // writeStatus refuses, before every write, a status kube-apiserver would reject (a bug: 500).
      const written = await writeStatus(ctx, o.pcr, o.status, o.recheck === undefined ? {} : { recheck: o.recheck });
      if ("skip" in written) {
        log({ outcome: "skipped", message: written.skip });
        return undefined;
      }
      log(o.log);
      if (o.signSeconds !== undefined) {
        const created = o.pcr.metadata.creationTimestamp ? Date.parse(o.pcr.metadata.creationTimestamp) : Number.NaN;
        ctx.metrics?.issued({
          signer: at.profile.name,
          signSeconds: o.signSeconds,
          ...(Number.isNaN(created) ? {} : { secondsSinceCreation: (Date.now() - created) / 1000 }),
        });
      }
      recordPcrEvent(ctx, at.ref, o.note.type, o.note.reason, o.note.message);
      return o.then === undefined ? undefined : send(o.then);
    }
  }
}
