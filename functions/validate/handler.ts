/**
 * validate: checks a PodCertificateRequest against its signer's profile and the live pod, then
 * hands on `request.validated` or `request.denied`. Input events (ApiServerSource, resync) are not
 * authenticated, so the PCR is read back from the API server and only that copy is trusted.
 */
import { EVENT_TYPES } from "../../shared/events/types.js";
import { readPcrTrigger } from "../../shared/events/pcr-event.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";
import { pcrRef } from "../../shared/pcr/model.js";
import { decideValidation } from "../../shared/policy/validate.js";
import type { FunctionDefinition } from "../../shared/runtime/function.js";
import { handOn, logDecision, readPendingPcr } from "../../shared/runtime/steps.js";

export const validate: FunctionDefinition = {
  step: "validate",
  consumes: [EVENT_TYPES.apiServerAdd, EVENT_TYPES.apiServerUpdate, EVENT_TYPES.resync],
  emits: [EVENT_TYPES.validated, EVENT_TYPES.denied],

  async handle(event, ctx) {
    const trigger = readPcrTrigger(event);
    const profile = ctx.config.signers.get(trigger.signerName);
    if (profile === undefined || trigger.terminal) return undefined;

    const read = await readPendingPcr(ctx, trigger.ref);
    if ("skip" in read) {
      logDecision(ctx, event, { pcr: trigger.ref, signerName: trigger.signerName, outcome: "skipped", message: read.skip });
      return undefined;
    }
    const { pcr } = read;
    // The API server's copy decides; an event that named another signer changes nothing.
    if (pcr.spec.signerName !== profile.name) return undefined;

    const { spec } = pcr;
    // Namespace, ServiceAccount and Node may come from a short-lived cache (kube/lookup-cache.ts);
    // a denial is decided on what the API server says now, never on a cached copy.
    const lookups = (o: { fresh: boolean }) =>
      Promise.all([
        profile.namespaces.matchLabels ? ctx.cluster.readNamespace(pcr.metadata.namespace, o) : Promise.resolve(undefined),
        ctx.cluster.readServiceAccount(pcr.metadata.namespace, spec.serviceAccountName, o),
        ctx.cluster.readNode(spec.nodeName, o),
      ]);
    const [pod, [namespace, serviceAccount, node]] = await Promise.all([ctx.cluster.readPod(pcr.metadata.namespace, spec.podName), lookups({ fresh: false })]);
    let decision = decideValidation({ pcr, profile, namespace, pod, serviceAccount, node });
    if (decision.outcome === "denied") {
      const [n, sa, nd] = await lookups({ fresh: true });
      decision = decideValidation({ pcr, profile, namespace: n, pod, serviceAccount: sa, node: nd });
    }
    const ref = pcrRef(pcr);

    if (decision.outcome === "denied") {
      const { reason, message } = decision.error;
      logDecision(ctx, event, { pcr: ref, signerName: profile.name, outcome: "denied", reason, message });
      return handOn(ctx, event, {
        type: EVENT_TYPES.denied,
        pcr: ref,
        signerName: profile.name,
        spkiSha256: requestKeyBinding(spec),
        decision: { kind: "denied", reason, message, permanent: decision.error.permanent },
      });
    }

    // A stub CSR's subject, extensions and attributes are not issued (only its key is used): say
    // what was left out, so an operator can see what a requester asked for and did not get.
    const ignored = decision.key.ignoredCsrContent;
    logDecision(ctx, event, {
      pcr: ref,
      signerName: profile.name,
      outcome: "validated",
      keyType: decision.key.keyType,
      ...(ignored.length > 0 ? { ignoredCsrContent: ignored } : {}),
    });
    return handOn(ctx, event, {
      type: EVENT_TYPES.validated,
      pcr: ref,
      signerName: profile.name,
      spkiSha256: decision.key.spkiSha256,
      decision: {
        kind: "validated",
        keyType: decision.key.keyType,
        services: decision.services,
        podName: spec.podName,
        podUID: spec.podUID,
        serviceAccountName: spec.serviceAccountName,
        ...(spec.maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds: spec.maxExpirationSeconds }),
      },
    });
  },
};
