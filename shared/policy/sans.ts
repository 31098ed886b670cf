/**
 * The `derive-sans` step's decision (decideSans): the SPIFFE ID, the lifetime, and which DNS names
 * the Services selecting a pod justify. A name goes on a certificate only when a Service that
 * exists now, is eligible and selects the pod justifies it; when the pod opted in but the Services
 * are not there yet, the answer is "wait", never a certificate without the names and never a
 * denial.
 */
import { RequestDeniedError } from "../errors.js";
import { isNamespaceName, isServiceName } from "../kube/names.js";
import { attestedPodSchema } from "../events/attestation.js";
import { MAX_DNS_NAMES_BYTES } from "../limits.js";
import type { Pod, Service } from "../pcr/model.js";
import type { SignerProfile } from "../profiles/config.js";
import type { ServiceSelection } from "./annotations.js";
import { spiffeId } from "./identity.js";
import { grantedLifetimeSeconds } from "./lifetime.js";

const ELIGIBLE_TYPES = new Set(["ClusterIP", "NodePort", "LoadBalancer"]);

export type SanDecision =
  | { outcome: "derived"; dnsNames: string[] }
  | { outcome: "denied"; error: RequestDeniedError }
  | { outcome: "waiting"; message: string };

export interface SanFacts {
  namespace: string;
  clusterDomain: string;
  maxNames: number;
  pod: Pod;
  /** The Services in the pod's namespace (only those named, when the pod named them). */
  services: readonly Service[];
  selection: ServiceSelection;
}

/** Why a Service cannot justify names for this pod, or undefined when it can. */
export function serviceIneligibility(service: Service, podLabels: Readonly<Record<string, string>>): string | undefined {
  // kube-apiserver allows only DNS-1035 labels; anything else ("", "*", "Web") would make a bad or wildcard SAN.
  if (!isServiceName(service.metadata.name)) return "has a name that is not a DNS-1035 label";
  const type = service.spec.type ?? "ClusterIP";
  if (!ELIGIBLE_TYPES.has(type)) return `is of type ${type}`;
  const selector = Object.entries(service.spec.selector ?? {});
  if (selector.length === 0) return "has no selector";
  const unmatched = selector.filter(([k, v]) => podLabels[k] !== v);
  if (unmatched.length > 0) return `does not select the pod (selector ${unmatched.map(([k, v]) => `${k}=${v}`).join(",")} does not match its labels)`;
  return undefined;
}

/** The names one eligible Service gives the pod. */
export function serviceDnsNames(service: Service, pod: Pod, namespace: string, clusterDomain: string): string[] {
  const svc = service.metadata.name;
  const names = [`${svc}.${namespace}.svc`, `${svc}.${namespace}.svc.${clusterDomain}`];
  const headless = service.spec.clusterIP === "None";
  const { hostname, subdomain } = pod.spec;
  if (headless && subdomain === svc && hostname !== undefined && isNamespaceName(hostname)) {
    names.push(`${hostname}.${svc}.${namespace}.svc`, `${hostname}.${svc}.${namespace}.svc.${clusterDomain}`);
  }
  return names;
}

export function deriveDnsNames(facts: SanFacts): SanDecision {
  const { selection, pod, namespace } = facts;
  if (selection.kind === "none") return { outcome: "derived", dnsNames: [] };
  const labels = pod.metadata.labels ?? {};
  // Only the pod's namespace's Services name it, whatever a caller hands in.
  const services = facts.services.filter((s) => (s.metadata.namespace ?? namespace) === namespace);
  let chosen: Service[];

  if (selection.kind === "all") {
    chosen = services.filter((s) => serviceIneligibility(s, labels) === undefined);
    if (chosen.length === 0) {
      return { outcome: "waiting", message: `pod ${pod.metadata.name} asked for the names of the Services that select it, and no eligible Service in ${namespace} selects it yet` };
    }
  } else {
    const byName = new Map(services.map((s) => [s.metadata.name, s]));
    const problems: string[] = [];
    chosen = [];
    for (const name of selection.names) {
      const service = byName.get(name);
      const why = service === undefined ? "does not exist" : serviceIneligibility(service, labels);
      if (why !== undefined || service === undefined) problems.push(`Service ${namespace}/${name} ${why ?? "does not exist"}`);
      else chosen.push(service);
    }
    if (problems.length > 0) return { outcome: "waiting", message: problems.join("; ") };
  }

  chosen.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const dnsNames = [...new Set(chosen.flatMap((s) => serviceDnsNames(s, pod, namespace, facts.clusterDomain)))];
  if (dnsNames.length > facts.maxNames) {
    return {
      outcome: "denied",
      error: new RequestDeniedError(
        "TooManyDNSNames",
        `the Services selecting the pod give ${dnsNames.length} DNS names; this signer puts at most ${facts.maxNames} in a certificate (name fewer Services in the annotation)`,
      ),
    };
  }
  // The names must leave the chain room under kube-apiserver's limit (limits.ts).
  const bytes = dnsNames.reduce((n, name) => n + name.length, 0);
  if (bytes > MAX_DNS_NAMES_BYTES) {
    return {
      outcome: "denied",
      error: new RequestDeniedError(
        "TooManyDNSNames",
        `the Services selecting the pod give ${dnsNames.length} DNS names of ${bytes} bytes together; a certificate holds at most ${MAX_DNS_NAMES_BYTES} bytes of names (name fewer Services in the annotation)`,
      ),
    };
  }
  return { outcome: "derived", dnsNames };
}

/** What of the pod the DNS names depend on: validate attests it, derive-sans derives from it, sign compares. */
export interface PodSanFacts {
  labels: Record<string, string>;
  hostname?: string | undefined;
  subdomain?: string | undefined;
}

/**
 * The pod's facts for validate to attest, or undefined when they do not fit the attestation's
 * bounds (attestedPodSchema: more than MAX_ATTESTED_POD_LABELS labels, or a key, value, hostname
 * or subdomain longer than Kubernetes allows): then derive-sans reads the pod itself, one API call
 * more.
 */
export function attestablePodFacts(pod: Pod): PodSanFacts | undefined {
  const { hostname, subdomain } = pod.spec;
  const facts = attestedPodSchema.safeParse({
    labels: pod.metadata.labels ?? {},
    ...(hostname === undefined ? {} : { hostname }),
    ...(subdomain === undefined ? {} : { subdomain }),
  });
  return facts.success ? facts.data : undefined;
}

/** The pod as validate saw it, rebuilt from its attested facts (what deriveDnsNames reads of it). */
export function podFromAttested(v: Pick<ValidatedRequest, "podName" | "podUID">, facts: PodSanFacts): Pod {
  return {
    metadata: { name: v.podName, uid: v.podUID, labels: facts.labels },
    spec: { ...(facts.hostname === undefined ? {} : { hostname: facts.hostname }), ...(facts.subdomain === undefined ? {} : { subdomain: facts.subdomain }) },
  };
}

/** What validate attested about the request (its `validated` decision), as decideSans reads it. */
export interface ValidatedRequest {
  podName: string;
  podUID: string;
  serviceAccountName: string;
  maxExpirationSeconds?: number | undefined;
  services: ServiceSelection;
}

/** The pod and the Services (those named, or every one in the namespace) as the API server has them now. */
export interface LivePodServices {
  pod: Pod | undefined;
  services: readonly Service[];
}

export interface SansFacts {
  profile: Pick<SignerProfile, "trustDomain" | "maxLifetimeSeconds" | "dnsNames">;
  clusterDomain: string;
  namespace: string;
  validated: ValidatedRequest;
  /**
   * Needed only when the pod asked for Service names (`validated.services` is not "none"), and
   * then required: without names to derive there is nothing to read (validate looked at the pod,
   * and sign looks again before it writes). The pod is the one validate attested
   * ({@link podFromAttested}) or, when its labels did not fit the attestation, read again.
   */
  live: LivePodServices | undefined;
}

export type SansDecision =
  | { outcome: "derived"; uris: string[]; dnsNames: string[]; lifetimeSeconds: number }
  | { outcome: "denied"; error: RequestDeniedError }
  | { outcome: "waiting"; message: string };

/**
 * What derive-sans hands sign: exactly one URI SAN (the SPIFFE ID), the DNS names (when the pod
 * asked for them: PodMismatch if the pod went away or was replaced since validate, else
 * deriveDnsNames' answer) and the lifetime granted.
 */
export function decideSans(f: SansFacts): SansDecision {
  const v = f.validated;
  let dnsNames: string[] = [];
  if (v.services.kind !== "none") {
    const { live } = f;
    if (live === undefined) throw new TypeError("decideSans: the pod asked for Service names, so the live pod and Services must be read");
    if (live.pod === undefined || live.pod.metadata.uid !== v.podUID) {
      const what = live.pod === undefined ? "was deleted" : "was replaced";
      return { outcome: "denied", error: new RequestDeniedError("PodMismatch", `pod ${v.podName} ${what} after the request was validated`) };
    }
    const names = deriveDnsNames({
      namespace: f.namespace,
      clusterDomain: f.clusterDomain,
      // Without a dnsNames configuration the profile gives no names at all (validate refuses the
      // opt-in annotation then; profiles/config.ts defaults maxNames where it is configured).
      maxNames: f.profile.dnsNames?.maxNames ?? 0,
      pod: live.pod,
      services: live.services,
      selection: v.services,
    });
    if (names.outcome !== "derived") return names;
    dnsNames = names.dnsNames;
  }
  return {
    outcome: "derived",
    uris: [spiffeId(f.profile.trustDomain, f.namespace, v.serviceAccountName)],
    dnsNames,
    lifetimeSeconds: grantedLifetimeSeconds(f.profile.maxLifetimeSeconds, v.maxExpirationSeconds),
  };
}
