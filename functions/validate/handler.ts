/**
 * validate: checks a PodCertificateRequest against its signer's profile and the live pod, then
 * hands on `request.validated` or `request.denied`. Input events (ApiServerSource, resync) are not
 * authenticated, so the PCR is read back from the API server and only that copy is trusted (the
 * runner does that; see shared/runtime/run-step.ts).
 *
 * The only step that reads the PCR on the way to a certificate: its `validated` attestation
 * carries what the next steps would otherwise read again (README "Performance"): for sign, the
 * stored request's facts, key and resourceVersion (sign writes conditionally on it); for
 * derive-sans, when the pod opted in to Service names, the pod's labels, hostname and subdomain.
 */
import { EVENT_TYPES } from "../../shared/steps.js";
import { attestablePodFacts } from "../../shared/policy/sans.js";
import { attestedRequestSchema } from "../../shared/events/attestation.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";
import type { PodCertificateRequest } from "../../shared/pcr/model.js";
import type { SignerProfile } from "../../shared/profiles/config.js";
import { decideValidation } from "../../shared/policy/validate.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { denied, reply, sourceStep } from "../../shared/runtime/run-step.js";
import { MAX_RESOURCE_VERSION_LENGTH } from "../../shared/limits.js";

export const validate = sourceStep({
  step: "validate",

  async run({ ctx, pcr, profile }) {
    const { spec } = pcr;
    const [pod, cached] = await Promise.all([ctx.cluster.readPod(pcr.metadata.namespace, spec.podName), lookups(ctx, pcr, profile, { fresh: false })]);
    let decision = decideValidation({ pcr, profile, pod, ...cached });
    // Namespace, ServiceAccount and Node may come from a short-lived cache (kube/lookup-cache.ts);
    // a denial is decided on what the API server says now, never on a cached copy.
    if (decision.outcome === "denied") decision = decideValidation({ pcr, profile, pod, ...(await lookups(ctx, pcr, profile, { fresh: true })) });
    if (decision.outcome === "denied") return denied(decision.error, requestKeyBinding(spec));

    const { key, services } = decision;
    const { shape } = attestedRequestSchema;
    // The API server always sets both; a copy without them cannot be written conditionally (and
    // one the attestation's bound refuses would be refused by every next step: fail here, loudly).
    const resourceVersion = shape.resourceVersion.safeParse(pcr.metadata.resourceVersion);
    if (!resourceVersion.success) {
      throw new Error(`PCR ${pcr.metadata.name} was read without a resourceVersion of at most ${MAX_RESOURCE_VERSION_LENGTH} characters`);
    }
    const apiVersion = shape.apiVersion.safeParse(pcr.apiVersion);
    if (!apiVersion.success) {
      throw new Error(`PCR ${pcr.metadata.name} was read as ${JSON.stringify(pcr.apiVersion)}, not a certificates.k8s.io version podcert writes`);
    }
    // Informational only: one that does not fit the bound is left out.
    const creationTimestamp = shape.creationTimestamp.safeParse(pcr.metadata.creationTimestamp).data;
    // decideValidation found the pod (a missing one is a denial). Labels over the limit: none
    // attested, and derive-sans reads the pod itself.
    const podFacts = services.kind === "none" || pod === undefined ? undefined : attestablePodFacts(pod);
    // A stub CSR's subject, extensions and attributes are not issued (only its key is used): say
    // what was left out, so an operator can see what a requester asked for and did not get.
    const ignored = key.ignoredCsrContent;
    return reply(
      EVENT_TYPES.validated,
      key.spkiSha256,
      {
        kind: "validated",
        keyType: key.keyType,
        services,
        podName: spec.podName,
        podUID: spec.podUID,
        serviceAccountName: spec.serviceAccountName,
        ...(spec.maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds: spec.maxExpirationSeconds }),
        request: {
          apiVersion: apiVersion.data,
          resourceVersion: resourceVersion.data,
          ...(creationTimestamp === undefined ? {} : { creationTimestamp }),
          nodeName: spec.nodeName,
          nodeUID: spec.nodeUID,
          serviceAccountUID: spec.serviceAccountUID,
          publicKey: key.spkiDer.toString("base64"),
        },
        ...(podFacts === undefined ? {} : { pod: podFacts }),
      },
      { outcome: "validated", keyType: key.keyType, ...(ignored.length > 0 ? { ignoredCsrContent: ignored } : {}) },
    );
  },
});

/** The PCR's Namespace (only when the scope needs its labels), ServiceAccount and Node. */
async function lookups(ctx: FunctionContext, pcr: PodCertificateRequest, profile: SignerProfile, o: { fresh: boolean }) {
  const [namespace, serviceAccount, node] = await Promise.all([
    profile.namespaces.matchLabels ? ctx.cluster.readNamespace(pcr.metadata.namespace, o) : Promise.resolve(undefined),
    ctx.cluster.readServiceAccount(pcr.metadata.namespace, pcr.spec.serviceAccountName, o),
    ctx.cluster.readNode(pcr.spec.nodeName, o),
  ]);
  return { namespace, serviceAccount, node };
}
