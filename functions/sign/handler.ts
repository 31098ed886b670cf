/**
 * sign: the only step that holds CA keys. It accepts a request only with both validate's and
 * derive-sans' attestations bound to the PCR as it is now (uid and key), issues the certificate
 * with exactly the attested SANs and lifetime, and writes the Issued status with the resourceVersion
 * it read, so concurrent or duplicate deliveries issue at most one status.
 */
import { boundDenialMessage, RejectedEventError, TransientError } from "../../shared/errors.js";
import { activeCa } from "../../shared/ca/pool.js";
import { verifyAttestation } from "../../shared/events/attestation.js";
import { EVENT_TYPES, readStepEventData } from "../../shared/events/types.js";
import { describePcr, pcrRef } from "../../shared/pcr/model.js";
import { issuedStatus } from "../../shared/pcr/status.js";
import { pcrStatusUpdateErrors } from "../../shared/pcr/status-rules.js";
import { certificateTimes } from "../../shared/policy/lifetime.js";
import { keyProblemDenial, livePodMismatches } from "../../shared/policy/validate.js";
import type { FunctionDefinition } from "../../shared/runtime/function.js";
import { profileFor } from "../../shared/runtime/profile.js";
import { handOn, logDecision, readPendingPcr, recordPcrEvent, writeStatus } from "../../shared/runtime/steps.js";
import { podIdentityExtensionValue } from "../../shared/x509/der.js";
import type { ExtraExtension } from "../../shared/x509/leaf.js";
import { issueLeaf } from "../../shared/x509/leaf.js";
import { isRequestKeyProblem, readRequestKey } from "../../shared/x509/request-key.js";

export const sign: FunctionDefinition = {
  step: "sign",
  consumes: [EVENT_TYPES.sansDerived],
  emits: [EVENT_TYPES.issued, EVENT_TYPES.denied],

  async handle(event, ctx) {
    const data = readStepEventData(event);
    const profile = profileFor(ctx, data.signerName);
    const pool = ctx.caPool;
    if (pool === undefined) throw new TransientError("sign was started without a CA pool");
    const expect = { pcr: data.pcr, signerName: profile.name, maxLifetimeSeconds: ctx.config.attestationTTLSeconds };
    const now = ctx.now();
    const [validated, derived] = await Promise.all([
      verifyAttestation(ctx.keys, data.attestations.validate, { ...expect, from: "validate", kind: "validated" }, now),
      verifyAttestation(ctx.keys, data.attestations["derive-sans"], { ...expect, from: "derive-sans", kind: "sans-derived" }, now),
    ]);
    if (validated.spkiSha256 !== derived.spkiSha256) {
      throw new RejectedEventError("the validate and derive-sans attestations are bound to different keys", 403);
    }
    if (derived.decision.kind !== "sans-derived" || validated.decision.kind !== "validated") throw new Error("unreachable: verifyAttestation checks the kind");
    const { uris, dnsNames, lifetimeSeconds } = derived.decision;

    // The pod is read beside the PCR (no added wait): it may have been deleted or replaced since
    // validate, and this is the last look before the certificate is written.
    const [read, pod] = await Promise.all([readPendingPcr(ctx, data.pcr), ctx.cluster.readPod(data.pcr.namespace, validated.decision.podName)]);
    if ("skip" in read) {
      logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "skipped", message: read.skip });
      return undefined;
    }
    const { pcr } = read;
    // The key comes from the PCR as stored, never from the event; it must be the attested one.
    // validate verified its proof and attested this key's hash, so the proof is not checked again.
    const key = readRequestKey(pcr.spec, profile.allowedKeyTypes, { verify: false });
    // validate accepted this key by the same rules; a profile that now refuses it fails loudly as before.
    if (isRequestKeyProblem(key)) throw keyProblemDenial(key);
    if (key.spkiSha256 !== validated.spkiSha256 || pcr.spec.signerName !== profile.name) {
      throw new RejectedEventError(`attestations do not match PCR ${describePcr(data.pcr)} as stored`, 403);
    }
    const mismatches = livePodMismatches(pcr.spec, pod);
    if (mismatches.length > 0) {
      const message = `request no longer matches the live pod: ${mismatches.join("; ")}`;
      logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "denied", reason: "PodMismatch", message });
      return handOn(ctx, event, {
        type: EVENT_TYPES.denied,
        pcr: data.pcr,
        signerName: profile.name,
        spkiSha256: key.spkiSha256,
        decision: { kind: "denied", reason: "PodMismatch", message: boundDenialMessage(message), permanent: false },
        previous: data.attestations,
      });
    }

    const ca = activeCa(pool, profile.name, now);
    const times = certificateTimes({ now, lifetimeSeconds, ca, refreshFraction: profile.refreshFraction });
    const extensions: ExtraExtension[] = [];
    if (profile.podIdentityExtension) {
      const s = pcr.spec;
      extensions.push({
        oid: profile.podIdentityExtension.oid,
        critical: false,
        valueDer: podIdentityExtensionValue([s.podName, s.podUID, s.nodeName, s.nodeUID, s.serviceAccountUID]),
      });
    }
    const signStart = performance.now();
    const leaf = issueLeaf(ca.signer, {
      spkiDer: key.spkiDer,
      keyType: key.keyType,
      uris,
      dnsNames,
      notBefore: times.notBefore,
      notAfter: times.notAfter,
      extensions,
    });
    const signSeconds = (performance.now() - signStart) / 1000;
    const status = issuedStatus({
      chainPem: leaf.chainPem,
      ...times,
      message: `issued by ${profile.name}, serial ${leaf.serialHex}`,
      now,
    });
    // What kube-apiserver would refuse is a bug here, not a property of the request: fail loudly
    // (500, retried, then dead-lettered) rather than write Denied or Failed.
    const problems = pcrStatusUpdateErrors(pcr, status, now);
    if (problems.length > 0) throw new Error(`refusing to write a status kube-apiserver would reject: ${problems.join("; ")}`);

    const ref = pcrRef(pcr);
    if (!(await writeStatus(ctx, pcr, status))) {
      logDecision(ctx, event, { pcr: ref, signerName: profile.name, outcome: "skipped", message: "another delivery finished this PCR first" });
      return undefined;
    }
    logDecision(ctx, event, {
      pcr: ref,
      signerName: profile.name,
      outcome: "issued",
      serialNumber: leaf.serialHex,
      fingerprintSha256: leaf.fingerprintSha256,
      notBefore: status.notBefore,
      notAfter: status.notAfter,
      uris,
      dnsNames,
      signSeconds,
    });
    const created = pcr.metadata.creationTimestamp ? Date.parse(pcr.metadata.creationTimestamp) : Number.NaN;
    ctx.metrics?.issued({
      signer: profile.name,
      signSeconds,
      ...(Number.isNaN(created) ? {} : { secondsSinceCreation: (Date.now() - created) / 1000 }),
    });
    recordPcrEvent(ctx, pcr, "Normal", "Issued", `Issued certificate serial ${leaf.serialHex} valid until ${status.notAfter ?? "?"}`);
    return handOn(ctx, event, {
      type: EVENT_TYPES.issued,
      pcr: ref,
      signerName: profile.name,
      spkiSha256: key.spkiSha256,
      decision: { kind: "issued", serialNumber: leaf.serialHex, fingerprintSha256: leaf.fingerprintSha256 },
      previous: data.attestations,
    });
  },
};
