/**
 * derive-sans: turns a validated request into the exact SAN list and lifetime `sign` will use:
 * the SPIFFE ID always, and the DNS names of the Services selecting the pod when it opted in.
 * Services that are expected but missing are transient (503, retried), never a certificate
 * without the names. The decision is policy/sans.ts's decideSans.
 *
 * The pod is the one validate attested (labels, hostname, subdomain): only the Services are read.
 * When its labels were too many to attest, the pod is read here too (one call more). sign looks at
 * the live pod once more, and compares its labels with the attested ones, before it writes.
 */
import { EVENT_TYPES } from "../../shared/steps.js";
import type { ServiceSelection } from "../../shared/policy/annotations.js";
import { decideSans, podFromAttested, type LivePodServices } from "../../shared/policy/sans.js";
import type { DecisionOf } from "../../shared/events/attestation.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { attestedStep, denied, reply, wait } from "../../shared/runtime/run-step.js";

export const deriveSans = attestedStep({
  step: "derive-sans",
  expects: { validated: "validate" },

  async run({ ctx, ref, profile, attested: { validated }, spkiSha256 }) {
    const { services } = validated;
    const live = services.kind === "none" ? undefined : await readPodAndServices(ctx, ref.namespace, validated, services);
    const d = decideSans({ profile, clusterDomain: ctx.config.clusterDomain, namespace: ref.namespace, validated, live });
    switch (d.outcome) {
      case "waiting":
        return wait("Services", d.message);
      case "denied":
        return denied(d.error, spkiSha256);
      case "derived": {
        const { uris, dnsNames, lifetimeSeconds } = d;
        const log = { outcome: "derived", uris, dnsNames, lifetimeSeconds };
        return reply(EVENT_TYPES.sansDerived, spkiSha256, { kind: "sans-derived", uris, dnsNames, lifetimeSeconds }, log, { withReceived: true });
      }
    }
  },
});

/**
 * The Services the pod asked for, and the pod: as validate attested it, else (labels over the
 * limit) read. Named Services are read one by one: the cost follows the names asked for, not the
 * number of Services in the namespace. "true" needs all that select the pod: with the Services
 * index (kube/services-index.ts), the candidates it finds for the pod's labels, each read again;
 * without, every Service in the namespace.
 */
async function readPodAndServices(
  ctx: FunctionContext,
  namespace: string,
  validated: DecisionOf<"validated">,
  selection: Exclude<ServiceSelection, { kind: "none" }>,
): Promise<LivePodServices> {
  const podRead = validated.pod === undefined ? ctx.cluster.readPod(namespace, validated.podName) : Promise.resolve(podFromAttested(validated, validated.pod));
  const index = ctx.servicesIndex;
  const servicesRead =
    selection.kind === "named"
      ? Promise.all(selection.names.map((name) => ctx.cluster.readService(namespace, name))).then((s) => s.filter((x) => x !== undefined))
      : index === undefined
        ? ctx.cluster.listServices(namespace)
        // A pod that is gone is PodMismatch whatever the Services: nothing to look for.
        : podRead.then((pod) => (pod === undefined ? [] : index.selecting(namespace, pod.metadata.labels ?? {})));
  const [pod, services] = await Promise.all([podRead, servicesRead]);
  return { pod, services };
}
