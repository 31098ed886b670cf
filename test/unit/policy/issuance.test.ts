/** shared/policy/issuance.ts: sign's last look at the pod, and the certificate it plans. */
import { beforeAll, describe, expect, it } from "vitest";
import { createCa } from "../../../cli/ca-create.js";
import { parseCaPool, serializeCaPool, type CaState } from "../../../shared/ca/pool.js";
import { ConfigError, RequestDeniedError, TransientError, WaitingError } from "../../../shared/errors.js";
import type { PcrSpec } from "../../../shared/pcr/model.js";
import { attestedIdentityProblem, pcrAsValidated, planIssuance, podChangedSinceValidation, podDnsFactsChanged, signingCa, storedRequestMismatches } from "../../../shared/policy/issuance.js";
import { attestablePodFacts } from "../../../shared/policy/sans.js";
import { requestKeyBinding } from "../../../shared/events/key-binding.js";
import { MAX_ATTESTED_POD_LABELS } from "../../../shared/limits.js";
import { certificateTimes } from "../../../shared/policy/lifetime.js";
import { podIdentityExtensionValue } from "../../../shared/x509/der.js";
import { NODE_NAME, NODE_UID, POD_NAME, POD_UID, pcrFor, pod, SA_NAME, SA_UID } from "../../helpers/objects.js";

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

describe("signingCa", () => {
  const SIGNER = "example.com/identity";
  const T = new Date("2026-03-10T12:00:00Z");
  let ca: { certificate: string; privateKey: string };
  beforeAll(async () => {
    ca = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date(T.getTime() - 86_400_000) });
  });
  const poolWith = (state: CaState) =>
    parseCaPool(serializeCaPool({ apiVersion: "podcert.ate.dev/v1alpha1", kind: "CAPool", signers: [{ signerName: SIGNER, cas: [{ ...ca, state, since: { [state]: T.toISOString() } }] }] }));

  it("is the signer's active CA", () => {
    expect(signingCa(poolWith("active"), SIGNER, T).state).toBe("active");
  });

  it("waits (a WaitingError, NoUsableCA) while the signer has no active CA, saying what to do", () => {
    let err: unknown;
    try {
      signingCa(poolWith("prepared"), SIGNER, T);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WaitingError);
    expect(err).toBeInstanceOf(TransientError);
    expect(err).toMatchObject({ reason: "NoUsableCA", waitingFor: "a usable CA" });
    expect((err as Error).message).toBe(
      `signer ${SIGNER} has no active CA; activate its prepared CA (podcert ca rotate --signer ${SIGNER} activate); ` +
        `requests for signer ${SIGNER} stay pending until it has an active CA valid now (podcert ca status --ca-pool <file> shows the next step)`,
    );
  });

  it("keeps a pool without the signer a configuration error (not a wait)", () => {
    expect(() => signingCa(poolWith("active"), "example.com/other", T)).toThrow(ConfigError);
  });

  it("names the CA's serial when it cannot cover a certificate (CAExpiring, through planIssuance)", () => {
    const active = signingCa(poolWith("active"), SIGNER, T);
    const late = new Date(active.notAfter.getTime() - 30 * 60_000);
    expect(() => planIssuance({ now: late, profile: { refreshFraction: 0.5 }, ca: active, spec: SPEC, key: { spkiDer: Buffer.alloc(1), keyType: "ED25519" }, sans: { uris: [], dnsNames: [], lifetimeSeconds: 3600 } })).toThrow(
      expect.objectContaining({ reason: "CAExpiring", message: expect.stringContaining(`(serial ${active.serialHex}) expires at ${active.notAfter.toISOString()}, 1800s from now`) }),
    );
  });
});

describe("attestedIdentityProblem", () => {
  const own = `spiffe://cluster.local/ns/ate-system/sa/${SA_NAME}`;
  it.each([
    { case: "the request's own SPIFFE ID", uris: [own], ok: true },
    { case: "another ServiceAccount", uris: ["spiffe://cluster.local/ns/ate-system/sa/admin"], ok: false },
    { case: "another namespace", uris: [`spiffe://cluster.local/ns/other/sa/${SA_NAME}`], ok: false },
    { case: "another trust domain", uris: [`spiffe://evil.example/ns/ate-system/sa/${SA_NAME}`], ok: false },
    { case: "its own plus another", uris: [own, "spiffe://cluster.local/ns/ate-system/sa/admin"], ok: false },
    { case: "none", uris: [], ok: false },
  ])("$case", ({ uris, ok }) => {
    const problem = attestedIdentityProblem({ profile: { trustDomain: "cluster.local" }, namespace: "ate-system", spec: { serviceAccountName: SA_NAME }, uris });
    if (ok) expect(problem).toBeUndefined();
    else expect(problem).toMatch(new RegExp(`are not the request's identity ${own.replaceAll(".", "\\.")}$`));
  });
});

describe("podDnsFactsChanged (sign's look at what the DNS names came from)", () => {
  const NAMES = ["web.ns.svc", "web.ns.svc.cluster.local"];
  const HOST_NAMES = [...NAMES, "web-0.web.ns.svc", "web-0.web.ns.svc.cluster.local"];
  const attested = { labels: { app: "web" }, hostname: "web-0", subdomain: "web" };
  it.each([
    { case: "the pod as attested", live: pod({ hostname: "web-0", subdomain: "web" }), dnsNames: HOST_NAMES, want: undefined },
    { case: "no DNS names derived: labels do not matter", live: pod({ labels: { app: "other" } }), dnsNames: [], want: undefined },
    { case: "a label added", live: pod({ labels: { app: "web", tier: "edge" }, hostname: "web-0", subdomain: "web" }), dnsNames: NAMES, want: /its labels changed \(tier\)/ },
    { case: "a label changed", live: pod({ labels: { app: "api" }, hostname: "web-0", subdomain: "web" }), dnsNames: NAMES, want: /its labels changed \(app\)/ },
    { case: "a label removed", live: pod({ labels: {}, hostname: "web-0", subdomain: "web" }), dnsNames: NAMES, want: /its labels changed \(app\)/ },
    { case: "another hostname, which gave names", live: pod({ hostname: "web-1", subdomain: "web" }), dnsNames: HOST_NAMES, want: /hostname\.subdomain is web-1\.web, the DNS names were derived for web-0\.web/ },
    { case: "another hostname, which gave none", live: pod({ hostname: "web-1", subdomain: "web" }), dnsNames: NAMES, want: undefined },
  ])("$case", ({ live, dnsNames, want }) => {
    const e = podDnsFactsChanged({ attested, pod: live, dnsNames });
    if (want === undefined) expect(e).toBeUndefined();
    else {
      expect(e).toBeInstanceOf(RequestDeniedError);
      expect(e?.reason).toBe("PodMismatch");
      expect(e?.message).toMatch(want);
    }
  });

  it("compares nothing when validate attested no labels (over the limit: derive-sans read the pod itself)", () => {
    expect(podDnsFactsChanged({ attested: undefined, pod: pod({ labels: { other: "x" } }), dnsNames: NAMES })).toBeUndefined();
  });
});

describe("attestablePodFacts", () => {
  it("attests the labels, hostname and subdomain; none when the labels are over the limit", () => {
    expect(attestablePodFacts(pod({ hostname: "web-0", subdomain: "web" }))).toEqual({ labels: { app: "web" }, hostname: "web-0", subdomain: "web" });
    const many = Object.fromEntries(Array.from({ length: MAX_ATTESTED_POD_LABELS }, (_, i) => [`l${i}`, "x"]));
    expect(attestablePodFacts(pod({ labels: many }))).toEqual({ labels: many });
    expect(attestablePodFacts(pod({ labels: { ...many, one: "more" } }))).toBeUndefined();
  });
});

describe("pcrAsValidated and storedRequestMismatches", () => {
  const stored = pcrFor(pod(), { signerName: "example.com/signer" });
  stored.metadata.resourceVersion = "12";
  const validated = {
    kind: "validated" as const,
    keyType: "ECDSAP256",
    podName: stored.spec.podName,
    podUID: stored.spec.podUID,
    serviceAccountName: stored.spec.serviceAccountName,
    ...(stored.spec.maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds: stored.spec.maxExpirationSeconds }),
    services: { kind: "none" as const },
    request: {
      apiVersion: "certificates.k8s.io/v1beta1" as const,
      resourceVersion: "12",
      nodeName: stored.spec.nodeName,
      nodeUID: stored.spec.nodeUID,
      serviceAccountUID: stored.spec.serviceAccountUID,
      publicKey: stored.spec.pkixPublicKey!,
    },
  };
  const ref = { namespace: stored.metadata.namespace, name: stored.metadata.name, uid: stored.metadata.uid! };
  const asValidated = pcrAsValidated(ref, "example.com/signer", validated);

  it("rebuilds the request validate read: its version, resourceVersion, facts and key", () => {
    expect(asValidated.metadata).toMatchObject({ ...ref, resourceVersion: "12" });
    expect(asValidated.apiVersion).toBe("certificates.k8s.io/v1beta1");
    expect(requestKeyBinding(asValidated.spec)).toBe(requestKeyBinding(stored.spec));
    expect(storedRequestMismatches(stored, asValidated, requestKeyBinding(stored.spec))).toEqual([]);
  });

  it("names what differs in a PCR read back after a conflict", () => {
    const other = pcrFor(pod(), { signerName: "example.com/signer" });
    const changed = { ...stored, spec: { ...stored.spec, serviceAccountName: "admin", pkixPublicKey: other.spec.pkixPublicKey } };
    expect(storedRequestMismatches(changed, asValidated, requestKeyBinding(stored.spec))).toEqual(["spec.serviceAccountName", "the request's key"]);
    expect(storedRequestMismatches({ ...stored, metadata: { ...stored.metadata, uid: "other" } }, asValidated, requestKeyBinding(stored.spec))).toEqual(["uid"]);
  });
});
