/**
 * derive-sans: turns a validated request into the exact SAN list and lifetime `sign` will use:
 * the SPIFFE ID always, and the DNS names of the Services selecting the pod when it opted in.
 * Services that are expected but missing are transient (503, retried), never a certificate
 * without the names.
 */
import { RequestDeniedError, TransientError } from "../../shared/errors.js";
import { verifyAttestation } from "../../shared/events/attestation.js";
import { EVENT_TYPES, readStepEventData } from "../../shared/events/types.js";
import { spiffeId } from "../../shared/policy/identity.js";
import { grantedLifetimeSeconds } from "../../shared/policy/lifetime.js";
import { deriveDnsNames } from "../../shared/policy/sans.js";
import type { FunctionDefinition } from "../../shared/runtime/function.js";
import { profileFor } from "../../shared/runtime/profile.js";
import { handOn, logDecision } from "../../shared/runtime/steps.js";

export const deriveSans: FunctionDefinition = {
  step: "derive-sans",
  consumes: [EVENT_TYPES.validated],
  emits: [EVENT_TYPES.sansDerived, EVENT_TYPES.denied],

  async handle(event, ctx) {
    const data = readStepEventData(event);
    const profile = profileFor(ctx, data.signerName);
    const validated = await verifyAttestation(
      ctx.keys,
      data.attestations.validate,
      { from: "validate", kind: "validated", pcr: data.pcr, signerName: profile.name, maxLifetimeSeconds: ctx.config.attestationTTLSeconds },
      ctx.now(),
    );
    if (validated.decision.kind !== "validated") throw new Error("unreachable: verifyAttestation checks the kind");
    const v = validated.decision;
    const { namespace } = data.pcr;

    const deny = (error: RequestDeniedError) => {
      logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "denied", reason: error.reason, message: error.message });
      return handOn(ctx, event, {
        type: EVENT_TYPES.denied,
        pcr: data.pcr,
        signerName: profile.name,
        spkiSha256: validated.spkiSha256,
        decision: { kind: "denied", reason: error.reason, message: error.message, permanent: false },
      });
    };

    let dnsNames: string[] = [];
    // validate denied a named list too long for maxNames (policy/annotations.ts) before any read.
    const maxNames = profile.dnsNames?.maxNames ?? 0;
    if (v.services.kind !== "none") {
      // Named Services are read one by one: the cost follows the names asked for, not the
      // number of Services in the namespace. "true" needs them all to find the selecting ones.
      const servicesRead =
        v.services.kind === "named"
          ? Promise.all(v.services.names.map((name) => ctx.cluster.readService(namespace, name))).then((s) => s.filter((x) => x !== undefined))
          : ctx.cluster.listServices(namespace);
      const [pod, services] = await Promise.all([ctx.cluster.readPod(namespace, v.podName), servicesRead]);
      if (pod === undefined || pod.metadata.uid !== v.podUID) {
        return deny(new RequestDeniedError("PodMismatch", `pod ${v.podName} ${pod === undefined ? "was deleted" : "was replaced"} after the request was validated`));
      }
      const sans = deriveDnsNames({
        namespace,
        clusterDomain: ctx.config.clusterDomain,
        maxNames,
        pod,
        services,
        selection: v.services,
      });
      if (sans.outcome === "waiting") {
        logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "waiting", message: sans.message });
        throw new TransientError(`waiting for Services: ${sans.message}`);
      }
      if (sans.outcome === "denied") return deny(sans.error);
      dnsNames = sans.dnsNames;
    }

    const uris = [spiffeId(profile.trustDomain, namespace, v.serviceAccountName)];
    const lifetimeSeconds = grantedLifetimeSeconds(profile.maxLifetimeSeconds, v.maxExpirationSeconds);
    logDecision(ctx, event, { pcr: data.pcr, signerName: profile.name, outcome: "derived", uris, dnsNames, lifetimeSeconds });
    return handOn(ctx, event, {
      type: EVENT_TYPES.sansDerived,
      pcr: data.pcr,
      signerName: profile.name,
      spkiSha256: validated.spkiSha256,
      decision: { kind: "sans-derived", uris, dnsNames, lifetimeSeconds },
      previous: data.attestations,
    });
  },
};
