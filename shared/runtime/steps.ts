/**
 * The pieces the step runner (run-step.ts) is built from: reading the PCR back, handing on attested
 * decisions, logging them, writing a status, recording a Kubernetes Event.
 */
import { attest, type Decision } from "../events/attestation.js";
import { type PodcertEvent, type StepEventData } from "../events/types.js";
import { EVENT_TYPES } from "../steps.js";
import { ConflictError, TransientError } from "../errors.js";
import { MAX_EVENT_NOTE_BYTES, truncateUtf8 } from "../limits.js";
import { describePcr, pcrRef, terminalCondition, type PcrRef, type PcrStatus, type PodCertificateRequest } from "../pcr/model.js";
import { certificatesApiVersion } from "../kube/api-versions.js";
import { pcrStatusUpdateErrors } from "../pcr/status-rules.js";
import { replyEvent, stepKeys, type FunctionContext } from "./function.js";

/**
 * Reads the PCR an event is about. Returns why there is nothing to do when it is gone, was
 * re-created under the same name (another uid), or already has a terminal condition: events are
 * delivered at least once and our own status writes come back as updates.
 */
export async function readPendingPcr(ctx: FunctionContext, ref: PcrRef): Promise<{ pcr: PodCertificateRequest } | { skip: string }> {
  const pcr = await ctx.cluster.readPcr(ref.namespace, ref.name);
  if (pcr === undefined) return { skip: "PCR no longer exists" };
  if (pcr.metadata.uid !== ref.uid) return { skip: `PCR was re-created (uid ${pcr.metadata.uid ?? "?"})` };
  const terminal = terminalCondition(pcr);
  if (terminal !== undefined) return { skip: `PCR is already ${terminal.type}` };
  return { pcr };
}

/** The reply event for a decision, with this step's attestation added to those it received. */
export async function handOn(
  ctx: FunctionContext,
  input: PodcertEvent,
  o: {
    type: (typeof EVENT_TYPES)[keyof typeof EVENT_TYPES];
    pcr: PcrRef;
    signerName: string;
    spkiSha256: string;
    decision: Decision;
    previous?: StepEventData["attestations"];
  },
): Promise<PodcertEvent> {
  const now = ctx.now();
  const keys = stepKeys(ctx);
  const token = await attest(keys, { pcr: o.pcr, signerName: o.signerName, spkiSha256: o.spkiSha256, decision: o.decision }, { now, ttlSeconds: ctx.config.attestationTTLSeconds });
  const data: StepEventData = {
    pcr: o.pcr,
    signerName: o.signerName,
    attestations: { ...o.previous, [keys.step]: token },
  };
  return replyEvent(input, { step: keys.step, type: o.type, subject: describePcr(o.pcr), data, now });
}

/** The one log line per decision the operator reads. */
export function logDecision(
  ctx: FunctionContext,
  event: PodcertEvent,
  o: { pcr: PcrRef; signerName: string; outcome: string; reason?: string; message?: string; [k: string]: unknown },
): void {
  const { pcr, ...rest } = o;
  ctx.metrics?.decision({ fn: stepKeys(ctx).step, signer: o.signerName, outcome: o.outcome, ...(o.reason === undefined ? {} : { reason: o.reason }) });
  ctx.log.info("decision", {
    step: stepKeys(ctx).step,
    eventId: event.id,
    eventType: event.type,
    pcrNamespace: pcr.namespace,
    pcrName: pcr.name,
    pcrUid: pcr.uid,
    ...rest,
  });
}

/**
 * PUT /status with the resourceVersion given (read by this step, or attested by validate).
 * Returns why nothing was written when there is nothing to do: the PCR is gone, or on a conflict
 * the copy read back was re-created or is terminal (another delivery won). Still pending means
 * something else changed the PCR (a label, an annotation): without `recheck` (the step read the
 * PCR itself), retry later, when it reads it again; with `recheck` (sign, which writes on
 * validate's attested resourceVersion and would conflict again on every redelivery until the
 * attestation expires), check the fresh copy is still the attested request (recheck throws when
 * not), then write once more with its resourceVersion.
 */
export async function writeStatus(
  ctx: FunctionContext,
  pcr: PodCertificateRequest,
  status: PcrStatus,
  o: { recheck?: (fresh: PodCertificateRequest) => void } = {},
): Promise<{ written: true } | { skip: string }> {
  // What kube-apiserver would refuse is a bug here, not a property of the request: fail loudly
  // (500, retried, then dead-lettered) rather than write something else. Checked before every
  // write, the one after a conflict (on the fresh copy) included.
  const problems = pcrStatusUpdateErrors(pcr, status, ctx.now());
  if (problems.length > 0) throw new Error(`refusing to write a status kube-apiserver would reject: ${problems.join("; ")}`);
  try {
    if ((await ctx.cluster.replacePcrStatus(pcr, status)) === undefined) return { skip: "PCR no longer exists" };
    return { written: true };
  } catch (e) {
    if (!(e instanceof ConflictError)) throw e;
    const again = await readPendingPcr(ctx, pcrRef(pcr));
    if ("skip" in again) return { skip: `${again.skip} (read back after a conflicting status write)` };
    if (o.recheck === undefined) throw new TransientError(`PCR ${describePcr(pcrRef(pcr))} changed while being written; retrying`, { cause: e });
    o.recheck(again.pcr);
    // Once: a second conflict is retried (TransientError) or, if another delivery won, a skip.
    return writeStatus(ctx, again.pcr, status);
  }
}

/**
 * A Kubernetes Event on the PCR, so `kubectl describe` shows the outcome. Best effort and in the
 * background (see kube/event-recorder.ts): the answer does not wait for it.
 */
export function recordPcrEvent(ctx: FunctionContext, pcr: PcrRef, type: "Normal" | "Warning", reason: string, message: string): void {
  ctx.events?.record({
    // The client names the version it reads PCRs in (kube/client-node.ts createEvent).
    regarding: { kind: "PodCertificateRequest", apiVersion: certificatesApiVersion("v1beta1"), namespace: pcr.namespace, name: pcr.name, uid: pcr.uid },
    type,
    reason,
    message: truncateUtf8(message, MAX_EVENT_NOTE_BYTES),
    reportingComponent: `podcert-${stepKeys(ctx).step}`,
  });
}
