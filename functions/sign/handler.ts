/**
 * sign: the only step that holds CA keys. It accepts a request only with both validate's and
 * derive-sans' attestations, looks at the pod once more, issues the certificate with exactly the
 * attested SANs and lifetime (policy/issuance.ts), and writes the Issued status conditionally on
 * the resourceVersion validate read, so concurrent or duplicate deliveries issue at most one
 * status. It does not read the PCR: validate attested what sign needs of it (README
 * "Performance"); only a conflicting write on a PCR still pending reads it back (steps.ts
 * writeStatus).
 *
 * Why a certificate still goes only to the request's key (the security invariant): the key on the
 * leaf is the one validate read from the stored PCR and verified the proof of, carried in its
 * attestation and checked here against the key hash every attestation binds; the write is
 * conditional on the resourceVersion validate read, so it lands only on that version of that PCR
 * (a changed PCR is read back and compared with the attested request before any other write); and
 * kube-apiserver itself (as the embedded API server, local-cluster/apiserver/store.ts, via
 * pcr/status-rules.ts) refuses an Issued status whose leaf key is not the stored request's.
 */
import type { CaPool } from "../../shared/ca/pool.js";
import { RejectedEventError, TransientError } from "../../shared/errors.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { describePcr } from "../../shared/pcr/model.js";
import { issuedStatus } from "../../shared/pcr/status.js";
import {
  attestedIdentityProblem,
  pcrAsValidated,
  planIssuance,
  podChangedSinceValidation,
  podDnsFactsChanged,
  signingCa,
  storedRequestMismatches,
} from "../../shared/policy/issuance.js";
import { keyProblemDenial } from "../../shared/policy/validate.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { attestedStep, denied, type Outcome } from "../../shared/runtime/run-step.js";
import { issueLeaf } from "../../shared/x509/leaf.js";
import { isRequestKeyProblem, readRequestKey } from "../../shared/x509/request-key.js";

export const sign = attestedStep({
  step: "sign",
  expects: { validated: "validate", "sans-derived": "derive-sans" },
  holds: caPool,

  async run({ ctx, ref, now, profile, attested, spkiSha256, holds: pool }): Promise<Outcome> {
    const validated = attested.validated;
    // The request as validate read it from the API server; never from the event's own fields.
    const request = pcrAsValidated(ref, profile.name, validated);
    // validate verified the proof for this key and attested it; the proof is not checked again.
    const key = readRequestKey(request.spec, profile.allowedKeyTypes, { verify: false });
    // validate accepted this key by the same rules; a profile that now refuses it fails loudly (500) as before.
    if (isRequestKeyProblem(key)) throw keyProblemDenial(key);
    if (key.spkiSha256 !== spkiSha256 || key.keyType !== validated.keyType) {
      throw new RejectedEventError(`validate's attested key for PCR ${describePcr(ref)} is not the key its attestations bind`, 403);
    }
    // The last look at the pod before the certificate is written: it may have been deleted,
    // replaced, moved or relabelled since validate.
    const pod = await ctx.cluster.readPod(ref.namespace, validated.podName);
    const sans = attested["sans-derived"];
    const changed = podChangedSinceValidation(request.spec, pod) ?? (pod === undefined ? undefined : podDnsFactsChanged({ attested: validated.pod, pod, dnsNames: sans.dnsNames }));
    if (changed) return denied(changed, spkiSha256, { withReceived: true });

    const identity = attestedIdentityProblem({ profile, namespace: ref.namespace, spec: request.spec, uris: sans.uris });
    if (identity !== undefined) throw new RejectedEventError(`${identity} (PCR ${describePcr(ref)})`, 403);
    // No CA that can sign, or one too close to its end: a WaitingError, so the request stays
    // pending and the PCR gets a Warning Event naming the CA and what to do (run-step.ts).
    const ca = signingCa(pool, profile.name, now);
    const plan = planIssuance({ now, profile, ca, spec: request.spec, key, sans });
    const signStart = performance.now();
    const leaf = issueLeaf(ca.signer, plan.template);
    const signSeconds = (performance.now() - signStart) / 1000;
    const status = issuedStatus({ chainPem: leaf.chainPem, ...plan.times, message: `issued by ${profile.name}, serial ${leaf.serialHex}`, now });
    return {
      kind: "writeStatus",
      pcr: request,
      // Something else changed the PCR since validate read it (its resourceVersion moved on):
      // write again only if the stored request is still the attested one.
      recheck: (fresh) => {
        const diff = storedRequestMismatches(fresh, request, spkiSha256);
        if (diff.length > 0) throw new RejectedEventError(`attestations do not match PCR ${describePcr(ref)} as stored (${diff.join(", ")})`, 403);
      },
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
