/**
 * The attestation edges of the registry (shared/steps.ts) seen from one step, for tests: whose
 * attestations it verifies and whom it attests to. Production reads the edges themselves
 * (shared/events/step-keys.ts loadStepKeys: one pass over edgesOf).
 */
import { attestationEdges, stepEntry, type StepName } from "../../shared/steps.js";

/** The steps whose attestations `step` verifies, in pipeline order. */
export function acceptsFrom(step: StepName): readonly StepName[] {
  return stepEntry(step).acceptsAttestationsFrom as readonly StepName[];
}

/** The steps `step` attests to: the receivers of its edges, in registry order. */
export function attestsTo(step: StepName): readonly StepName[] {
  return attestationEdges()
    .filter((e) => e.from === step)
    .map((e) => e.to);
}
