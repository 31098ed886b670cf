/**
 * The `sign` step's decisions: its last look at the pod before the certificate is written, and
 * the certificate it issues (times, extensions, the leaf template). Pure: the caller reads the pod
 * and picks the CA, and signs the template.
 */
import { RequestDeniedError } from "../errors.js";
import type { PcrSpec, Pod } from "../pcr/model.js";
import type { SignerProfile } from "../profiles/config.js";
import { podIdentityExtensionValue } from "../x509/der.js";
import type { ExtraExtension, LeafTemplate } from "../x509/leaf.js";
import type { RequestKey } from "../x509/request-key.js";
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

export interface IssuancePlan {
  /** What issueLeaf signs: the request's exact key, the attested SANs, the times, the extensions. */
  template: LeafTemplate;
  /** The status times: the template's notBefore and notAfter, and beginRefreshAt. */
  times: CertificateTimes;
}

/**
 * The certificate for a request: the SANs and lifetime derive-sans attested, times from
 * certificateTimes (TransientError when the CA ends within the hour), and the pod-identity
 * extension (pod name and UID, node name and UID, service-account UID, from the PCR as stored)
 * when the profile configures it.
 */
export function planIssuance(o: {
  now: Date;
  profile: Pick<SignerProfile, "refreshFraction" | "podIdentityExtension">;
  ca: { signerName: string; notAfter: Date };
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
