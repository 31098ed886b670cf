/**
 * deny: writes the Denied condition (Failed when the decision says no retry can ever help) for a
 * request validate, derive-sans or sign refused. It holds no CA key; it accepts only their
 * attestations, bound to the PCR as it is now.
 */
import { RejectedEventError } from "../../shared/errors.js";
import { verifyAttestation } from "../../shared/events/attestation.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";
import { EVENT_TYPES, readStepEventData } from "../../shared/events/types.js";
import { describePcr, pcrRef } from "../../shared/pcr/model.js";
import { deniedStatus } from "../../shared/pcr/status.js";
import type { FunctionDefinition } from "../../shared/runtime/function.js";
import { profileFor } from "../../shared/runtime/profile.js";
import { logDecision, readPendingPcr, recordPcrEvent, writeStatus } from "../../shared/runtime/steps.js";

export const deny: FunctionDefinition = {
  step: "deny",
  consumes: [EVENT_TYPES.denied],
  emits: [],

  async handle(event, ctx) {
    const data = readStepEventData(event);
    const profile = profileFor(ctx, data.signerName);
    // A denial comes from exactly one step: the last one whose attestation the event carries.
    const from = data.attestations.sign !== undefined ? "sign" : data.attestations["derive-sans"] !== undefined ? "derive-sans" : "validate";
    const claims = await verifyAttestation(
      ctx.keys,
      data.attestations[from],
      { from, kind: "denied", pcr: data.pcr, signerName: profile.name, maxLifetimeSeconds: ctx.config.attestationTTLSeconds },
      ctx.now(),
    );
    if (claims.decision.kind !== "denied") throw new Error("unreachable: verifyAttestation checks the kind");
    const { reason, message, permanent } = claims.decision;

    const read = await readPendingPcr(ctx, data.pcr);
    if ("skip" in read) {
      logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "skipped", message: read.skip });
      return undefined;
    }
    const { pcr } = read;
    if (requestKeyBinding(pcr.spec) !== claims.spkiSha256 || pcr.spec.signerName !== profile.name) {
      throw new RejectedEventError(`attestation does not match PCR ${describePcr(data.pcr)} as stored`, 403);
    }
    const now = ctx.now();
    const status = deniedStatus({ reason, message, permanent, now });
    if (!(await writeStatus(ctx, pcr, status))) {
      logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "skipped", message: "another delivery finished this PCR first" });
      return undefined;
    }
    const outcome = permanent ? "failed" : "denied";
    logDecision(ctx, event, { pcr: pcrRef(pcr), signerName: profile.name, outcome, reason, message });
    recordPcrEvent(ctx, pcr, "Warning", reason, message);
    return undefined;
  },
};
