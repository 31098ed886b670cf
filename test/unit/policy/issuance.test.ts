/** shared/policy/issuance.ts: sign's last look at the pod, and the certificate it plans. */
import { describe, expect, it } from "vitest";
import { RequestDeniedError, TransientError } from "../../../shared/errors.js";
import type { PcrSpec } from "../../../shared/pcr/model.js";
import { planIssuance, podChangedSinceValidation } from "../../../shared/policy/issuance.js";
import { certificateTimes } from "../../../shared/policy/lifetime.js";
import { podIdentityExtensionValue } from "../../../shared/x509/der.js";
import { NODE_NAME, NODE_UID, POD_NAME, POD_UID, pod, SA_NAME, SA_UID } from "../../helpers/objects.js";

const SPEC = {
  podName: POD_NAME,
  podUID: POD_UID,
  nodeName: NODE_NAME,
  nodeUID: NODE_UID,
  serviceAccountName: SA_NAME,
  serviceAccountUID: SA_UID,
} satisfies Partial<PcrSpec>;

describe("podChangedSinceValidation", () => {
  it.each([
    { case: "the pod as validated", pod: pod(), want: undefined },
    { case: "a pending pod", pod: pod({ phase: "Pending" }), want: undefined },
    { case: "deleted", pod: undefined, want: `request no longer matches the live pod: pod ${POD_NAME} does not exist` },
    { case: "replaced (another UID)", pod: pod({ uid: "u2" }), want: `request no longer matches the live pod: pod UID is u2, request says ${POD_UID}` },
    { case: "moved to another node", pod: pod({ nodeName: "node-b" }), want: `request no longer matches the live pod: pod is on node "node-b", request says ${NODE_NAME}` },
    { case: "terminating", pod: pod({ deletionTimestamp: "2026-01-01T00:00:00Z" }), want: "request no longer matches the live pod: pod is terminating" },
    { case: "finished", pod: pod({ phase: "Succeeded" }), want: "request no longer matches the live pod: pod has finished (phase Succeeded)" },
    {
      case: "several at once, all listed",
      pod: pod({ uid: "u2", phase: "Failed" }),
      want: `request no longer matches the live pod: pod UID is u2, request says ${POD_UID}; pod has finished (phase Failed)`,
    },
  ])("$case", ({ pod: live, want }) => {
    const e = podChangedSinceValidation(SPEC, live);
    if (want === undefined) {
      expect(e).toBeUndefined();
      return;
    }
    expect(e).toBeInstanceOf(RequestDeniedError);
    expect({ reason: e?.reason, message: e?.message, permanent: e?.permanent }).toEqual({ reason: "PodMismatch", message: want, permanent: false });
  });
});

describe("planIssuance", () => {
  const NOW = new Date("2026-03-10T12:34:56.789Z");
  const CA = { signerName: "example.com/identity", notAfter: new Date("2036-01-01T00:00:00Z") };
  const KEY = { spkiDer: Buffer.from("the request's SubjectPublicKeyInfo"), keyType: "ED25519" as const };
  const SANS = { uris: ["spiffe://cluster.local/ns/ate-system/sa/web"], dnsNames: ["api.ate-system.svc"], lifetimeSeconds: 7200 };
  const OID = "1.3.6.1.4.1.32473.1.1";

  it.each([
    { case: "no pod-identity extension", extension: undefined, refreshFraction: 0.5 },
    { case: "the pod-identity extension", extension: { oid: OID }, refreshFraction: 0.5 },
    { case: "another refresh fraction", extension: undefined, refreshFraction: 0.8 },
  ])("$case: the attested SANs, the request's key, certificateTimes' times", ({ extension, refreshFraction }) => {
    const profile = { refreshFraction, ...(extension === undefined ? {} : { podIdentityExtension: extension }) };
    const plan = planIssuance({ now: NOW, profile, ca: CA, spec: SPEC, key: KEY, sans: SANS });
    const times = certificateTimes({ now: NOW, lifetimeSeconds: SANS.lifetimeSeconds, ca: CA, refreshFraction });
    expect(plan.times).toEqual(times);
    expect(plan.template).toEqual({
      spkiDer: KEY.spkiDer,
      keyType: "ED25519",
      uris: SANS.uris,
      dnsNames: SANS.dnsNames,
      notBefore: times.notBefore,
      notAfter: times.notAfter,
      extensions:
        extension === undefined
          ? []
          : [{ oid: OID, critical: false, valueDer: podIdentityExtensionValue([POD_NAME, POD_UID, NODE_NAME, NODE_UID, SA_UID]) }],
    });
  });

  it("waits (TransientError) rather than plan a certificate past a CA that ends within the hour", () => {
    const ending = { ...CA, notAfter: new Date(NOW.getTime() + 3599_000) };
    expect(() => planIssuance({ now: NOW, profile: { refreshFraction: 0.5 }, ca: ending, spec: SPEC, key: KEY, sans: SANS })).toThrow(TransientError);
  });
});
