/**
 * sign: the only step that holds CA keys. It accepts a request only with both validate's and
 * derive-sans' attestations bound to the PCR as it is now (uid and key), looks at the pod once
 * more, issues the certificate with exactly the attested SANs and lifetime (policy/issuance.ts),
 * and writes the Issued status with the resourceVersion it read, so concurrent or duplicate
 * deliveries issue at most one status.
 */
import type { CaPool } from "../../shared/ca/pool.js";
import { RejectedEventError, TransientError } from "../../shared/errors.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { describePcr } from "../../shared/pcr/model.js";
import { issuedStatus } from "../../shared/pcr/status.js";
import { attestedIdentityProblem, planIssuance, podChangedSinceValidation, signingCa } from "../../shared/policy/issuance.js";
import { keyProblemDenial } from "../../shared/policy/validate.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { attestedStep, denied, type Outcome } from "../../shared/runtime/run-step.js";
import { issueLeaf } from "../../shared/x509/leaf.js";
import { isRequestKeyProblem, readRequestKey } from "../../shared/x509/request-key.js";

export const sign = attestedStep({
  step: "sign",
  expects: { validated: "validate", "sans-derived": "derive-sans" },
  holds: caPool,
  readsPcr: true,
  // The pod is read beside the PCR (no added wait): it may have been deleted or replaced since
  // validate, and this is the last look before the certificate is written.
  beside: ({ ctx, ref, attested }) => ctx.cluster.readPod(ref.namespace, attested.validated.podName),

  run({ ref, now, profile, pcr, beside: pod, attested, spkiSha256, holds: pool }): Outcome {
    // The key comes from the PCR as stored, never from the event; it must be the attested one.
    // validate verified its proof and attested this key's hash, so the proof is not checked again.
    const key = readRequestKey(pcr.spec, profile.allowedKeyTypes, { verify: false });
    // validate accepted this key by the same rules; a profile that now refuses it fails loudly (500) as before.
    if (isRequestKeyProblem(key)) throw keyProblemDenial(key);
    if (key.spkiSha256 !== spkiSha256 || pcr.spec.signerName !== profile.name) {
      throw new RejectedEventError(`attestations do not match PCR ${describePcr(ref)} as stored`, 403);
    }
    const changed = podChangedSinceValidation(pcr.spec, pod);
    if (changed) return denied(changed, spkiSha256, { withReceived: true });

    const sans = attested["sans-derived"];
    const identity = attestedIdentityProblem({ profile, namespace: ref.namespace, spec: pcr.spec, uris: sans.uris });
    if (identity !== undefined) throw new RejectedEventError(`${identity} (PCR ${describePcr(ref)})`, 403);
    // No CA that can sign, or one too close to its end: a WaitingError, so the request stays
    // pending and the PCR gets a Warning Event naming the CA and what to do (run-step.ts).
    const ca = signingCa(pool, profile.name, now);
    const plan = planIssuance({ now, profile, ca, spec: pcr.spec, key, sans });
    const signStart = performance.now();
    const leaf = issueLeaf(ca.signer, plan.template);
    const signSeconds = (performance.now() - signStart) / 1000;
    const status = issuedStatus({ chainPem: leaf.chainPem, ...plan.times, message: `issued by ${profile.name}, serial ${leaf.serialHex}`, now });
    return {
      kind: "writeStatus",
      pcr,
      status,
      log: {
        outcome: "issued",
        serialNumber: leaf.serialHex,
        fingerprintSha256: leaf.fingerprintSha256,
        notBefore: status.notBefore,
        notAfter: status.notAfter,
        uris: sans.uris,
        dnsNames: sans.dnsNames,
        signSeconds,
      },
      note: { type: "Normal", reason: "Issued", message: `Issued certificate serial ${leaf.serialHex} valid until ${status.notAfter ?? "?"}` },
      signSeconds,
      then: {
        type: EVENT_TYPES.issued,
        spkiSha256,
        decision: { kind: "issued", serialNumber: leaf.serialHex, fingerprintSha256: leaf.fingerprintSha256 },
        withReceived: true,
      },
    };
  },
});

/**
 * What sign holds: the CA pool in use for this request (checked before any attestation; the
 * source follows the pool file, so a request after a Secret update signs with the new pool).
 */
function caPool(ctx: FunctionContext): CaPool {
  if (ctx.caPool === undefined) throw new TransientError("sign was started without a CA pool");
  return ctx.caPool.current();
}
