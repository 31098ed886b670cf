/**
 * The `sign` step's decisions: its last look at the pod before the certificate is written, the CA
 * it signs with, and the certificate it issues (times, extensions, the leaf template). Pure: the
 * caller reads the pod and the current CA pool, and signs the template.
 */
import { activeCa, type CaPool, type LoadedCa } from "../ca/pool.js";
import { RequestDeniedError, TransientError, WaitingError } from "../errors.js";
import type { PcrSpec, Pod } from "../pcr/model.js";
import type { SignerProfile } from "../profiles/config.js";
import { podIdentityExtensionValue } from "../x509/der.js";
import type { ExtraExtension, LeafTemplate } from "../x509/leaf.js";
import type { RequestKey } from "../x509/request-key.js";
import { spiffeId } from "./identity.js";
import { certificateTimes, type CertificateTimes } from "./lifetime.js";
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
