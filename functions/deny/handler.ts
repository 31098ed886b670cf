/**
 * deny: writes the Denied condition (Failed when the decision says no retry can ever help) for a
 * request refused by a step it accepts attestations from (shared/steps.ts). It holds no CA key;
 * it accepts only their attestations, bound to the PCR as it is now.
 */
import { RejectedEventError } from "../../shared/errors.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";
import type { StepEventData } from "../../shared/events/types.js";
import { describePcr } from "../../shared/pcr/model.js";
import { deniedStatus } from "../../shared/pcr/status.js";
import { attestedStep, type Outcome } from "../../shared/runtime/run-step.js";
import { ATTESTING_STEPS, type AttestingStep } from "../../shared/steps.js";

export const deny = attestedStep({
  step: "deny",
  expects: { denied: deniedBy },
  readsPcr: true,

  run({ now, ref, profile, pcr, attested: { denied }, spkiSha256 }): Outcome {
    if (requestKeyBinding(pcr.spec) !== spkiSha256 || pcr.spec.signerName !== profile.name) {
      throw new RejectedEventError(`attestation does not match PCR ${describePcr(ref)} as stored`, 403);
    }
    const { reason, message, permanent } = denied;
    return {
      kind: "writeStatus",
      pcr,
      status: deniedStatus({ reason, message, permanent, now }),
      log: { outcome: permanent ? "failed" : "denied", reason, message },
      note: { type: "Warning", reason, message },
    };
  },
});

/** A denial comes from exactly one step: the last, in pipeline order, whose attestation the event carries. */
function deniedBy(data: StepEventData): AttestingStep {
  return ATTESTING_STEPS.findLast((step) => data.attestations[step] !== undefined) ?? ATTESTING_STEPS[0]!;
}
