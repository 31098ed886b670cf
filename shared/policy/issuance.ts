/**
 * The `sign` step's decisions: its last look at the pod before the certificate is written, the CA
 * it signs with, and the certificate it issues (times, extensions, the leaf template). Pure: the
 * caller reads the pod and the current CA pool, and signs the template.
 */
import { activeCa, type CaPool, type LoadedCa } from "../ca/pool.js";
import { RequestDeniedError, TransientError, WaitingError } from "../errors.js";
import type { DecisionOf } from "../events/attestation.js";
import { requestKeyBinding } from "../events/key-binding.js";
import { PCR_KIND, type PcrRef, type PcrSpec, type Pod, type PodCertificateRequest } from "../pcr/model.js";
import type { SignerProfile } from "../profiles/config.js";
import { podIdentityExtensionValue } from "../x509/der.js";
import type { ExtraExtension, LeafTemplate } from "../x509/leaf.js";
import type { RequestKey } from "../x509/request-key.js";
import { spiffeId } from "./identity.js";
import { certificateTimes, type CertificateTimes } from "./lifetime.js";
import type { PodSanFacts } from "./sans.js";
import { livePodMismatches } from "./validate.js";

/**
 * PodMismatch when the live pod no longer matches the request (deleted, replaced, moved,
 * terminating or finished since validate), else undefined. sign hands it on to deny.
 */
export function podChangedSinceValidation(spec: Pick<PcrSpec, "podName" | "podUID" | "nodeName" | "serviceAccountName">, pod: Pod | undefined): RequestDeniedError | undefined {
  const mismatches = livePodMismatches(spec, pod);
  if (mismatches.length === 0) return undefined;
  return new RequestDeniedError("PodMismatch", `request no longer matches the live pod: ${mismatches.join("; ")}`);
}

/**
 * The PCR as validate read it, rebuilt from its `validated` attestation: sign no longer reads the
 * PCR, it checks the status against this copy (kube-apiserver's rules: the leaf's key, the
 * lifetime cap) and writes it conditionally on this resourceVersion, through this apiVersion. The
 * key is given as pkixPublicKey whatever form the request used (both carry the same
 * SubjectPublicKeyInfo); the status write sends no spec, so this copy never reaches the API server.
 */
export function pcrAsValidated(ref: PcrRef, signerName: string, v: DecisionOf<"validated">): PodCertificateRequest {
  const r = v.request;
  return {
    apiVersion: r.apiVersion,
    kind: PCR_KIND,
    metadata: {
      namespace: ref.namespace,
      name: ref.name,
      uid: ref.uid,
      resourceVersion: r.resourceVersion,
      ...(r.creationTimestamp === undefined ? {} : { creationTimestamp: r.creationTimestamp }),
    },
    spec: {
      signerName,
      podName: v.podName,
      podUID: v.podUID,
      serviceAccountName: v.serviceAccountName,
      serviceAccountUID: r.serviceAccountUID,
      nodeName: r.nodeName,
      nodeUID: r.nodeUID,
      ...(v.maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds: v.maxExpirationSeconds }),
      pkixPublicKey: r.publicKey,
    },
  };
}

/**
 * How a PCR read back (after a conflicting status write) differs from the request validate
 * attested (`attested`, from {@link pcrAsValidated}, bound to key hash `spkiSha256`): the fields
 * that differ, empty when it is the same request. Spec is immutable, so a difference means the
 * PCR was replaced under the same uid or the attestation is forged.
 */
export function storedRequestMismatches(stored: PodCertificateRequest, attested: PodCertificateRequest, spkiSha256: string): string[] {
  const diff: string[] = [];
  if (stored.metadata.uid !== attested.metadata.uid) diff.push("uid");
  const fields = ["signerName", "podName", "podUID", "serviceAccountName", "serviceAccountUID", "nodeName", "nodeUID", "maxExpirationSeconds"] as const;
  for (const f of fields) if (stored.spec[f] !== attested.spec[f]) diff.push(`spec.${f}`);
  if (requestKeyBinding(stored.spec) !== spkiSha256) diff.push("the request's key");
  return diff;
}

/**
 * PodMismatch when the DNS names derive-sans derived from the pod validate attested no longer fit
 * the live pod: its labels changed (the Services that selected it may not any more), or, when
 * they gave names, its hostname or subdomain. Undefined when no names were derived, or when
 * validate attested no pod facts (its labels were over the limit: derive-sans read the pod itself).
 */
export function podDnsFactsChanged(o: { attested: PodSanFacts | undefined; pod: Pod; dnsNames: readonly string[] }): RequestDeniedError | undefined {
  const { attested, pod } = o;
  if (attested === undefined || o.dnsNames.length === 0) return undefined;
  const live = pod.metadata.labels ?? {};
  const keys = [...new Set([...Object.keys(attested.labels), ...Object.keys(live)])].sort();
  const changed = keys.filter((k) => (Object.hasOwn(attested.labels, k) ? attested.labels[k] : undefined) !== (Object.hasOwn(live, k) ? live[k] : undefined));
  const problems: string[] = [];
  if (changed.length > 0) {
    const shown = changed.slice(0, 10).join(", ") + (changed.length > 10 ? ` and ${changed.length - 10} more` : "");
    problems.push(`its labels changed (${shown}), so the Services that select it may not be those its DNS names came from`);
  }
  const { hostname, subdomain } = attested;
  const hostnameUsed = hostname !== undefined && subdomain !== undefined && o.dnsNames.some((n) => n.startsWith(`${hostname}.${subdomain}.`));
  if (hostnameUsed && (pod.spec.hostname !== hostname || pod.spec.subdomain !== subdomain)) {
    problems.push(`its hostname.subdomain is ${pod.spec.hostname ?? ""}.${pod.spec.subdomain ?? ""}, the DNS names were derived for ${hostname}.${subdomain}`);
  }
  if (problems.length === 0) return undefined;
  return new RequestDeniedError("PodMismatch", `pod ${pod.metadata.name} changed after its DNS names were derived: ${problems.join("; ")}`);
}

/**
 * Whether the SANs derive-sans attested name the identity the stored request carries: exactly one
 * URI, the SPIFFE ID of the PCR's namespace and ServiceAccount under the signer's trust domain.
 * sign recomputes it from the PCR it read back, so a compromised derive-sans cannot give a
 * requester another workload's identity (DNS names still come from derive-sans: they need the
 * Services it reads). A problem is a forged or corrupted hand-off, never the requester's doing.
 */
export function attestedIdentityProblem(o: { profile: Pick<SignerProfile, "trustDomain">; namespace: string; spec: Pick<PcrSpec, "serviceAccountName">; uris: readonly string[] }): string | undefined {
  const want = spiffeId(o.profile.trustDomain, o.namespace, o.spec.serviceAccountName);
  if (o.uris.length === 1 && o.uris[0] === want) return undefined;
  return `attested URIs [${o.uris.map((u) => JSON.stringify(u.slice(0, 300))).join(", ")}] are not the request's identity ${want}`;
}

/**
 * The CA to sign with: ca/pool.ts's activeCa. Its TransientErrors (the signer has no active CA, or
 * none valid now) are an operator's to fix, so they become a WaitingError: the request stays
 * pending and the PCR gets a Warning Event (NoUsableCA) saying so. Whether the CA still covers a
 * certificate is certificateTimes' (CAExpiring).
 */
export function signingCa(pool: CaPool, signerName: string, now: Date): LoadedCa {
  try {
    return activeCa(pool, signerName, now);
  } catch (e) {
    if (!(e instanceof TransientError)) throw e;
    throw new WaitingError(
      "a usable CA",
      "NoUsableCA",
      `${e.message}; requests for signer ${signerName} stay pending until it has an active CA valid now (podcert ca status --ca-pool <file> shows the next step)`,
      { cause: e },
    );
  }
}

export interface IssuancePlan {
  /** What issueLeaf signs: the request's exact key, the attested SANs, the times, the extensions. */
  template: LeafTemplate;
  /** The status times: the template's notBefore and notAfter, and beginRefreshAt. */
  times: CertificateTimes;
}

/**
 * The certificate for a request: the SANs and lifetime derive-sans attested, times from
 * certificateTimes (a WaitingError when the CA ends within the hour), and the pod-identity
 * extension (pod name and UID, node name and UID, service-account UID, from the PCR as stored)
 * when the profile configures it.
 */
export function planIssuance(o: {
  now: Date;
  profile: Pick<SignerProfile, "refreshFraction" | "podIdentityExtension">;
  ca: { signerName: string; notAfter: Date; serialHex?: string };
  spec: Pick<PcrSpec, "podName" | "podUID" | "nodeName" | "nodeUID" | "serviceAccountUID">;
  key: Pick<RequestKey, "spkiDer" | "keyType">;
  sans: { uris: readonly string[]; dnsNames: readonly string[]; lifetimeSeconds: number };
}): IssuancePlan {
  const times = certificateTimes({ now: o.now, lifetimeSeconds: o.sans.lifetimeSeconds, ca: o.ca, refreshFraction: o.profile.refreshFraction });
  const extensions: ExtraExtension[] = [];
  if (o.profile.podIdentityExtension) {
    const s = o.spec;
    extensions.push({
      oid: o.profile.podIdentityExtension.oid,
      critical: false,
      valueDer: podIdentityExtensionValue([s.podName, s.podUID, s.nodeName, s.nodeUID, s.serviceAccountUID]),
    });
  }
  return {
    template: {
      spkiDer: o.key.spkiDer,
      keyType: o.key.keyType,
      uris: o.sans.uris,
      dnsNames: o.sans.dnsNames,
      notBefore: times.notBefore,
      notAfter: times.notAfter,
      extensions,
    },
    times,
  };
}
