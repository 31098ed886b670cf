import { createHash, sign, type KeyObject } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { RequestDeniedError, type DenialReason } from "../../../shared/errors.js";
import { KEY_TYPES, type KeyType, type Namespace, type PodCertificateRequest } from "../../../shared/pcr/model.js";
import { decideValidation, describeScope, keyProblemDenial, namespaceInScope, podMismatches, type ValidationDecision, type ValidationFacts } from "../../../shared/policy/validate.js";
import type { NamespaceScope, SignerProfile } from "../../../shared/profiles/config.js";
import {
  ATESYSTEM_SIGNER,
  defaultSignerConfig,
  EXPECTS_SERVICE_ANNOTATION,
  WORKERPOOL_NAMESPACE_LABEL,
  WORKERPOOL_SIGNER,
} from "../../../shared/profiles/defaults.js";
import { bitString, integer, nullValue, oid, sequence, tlv } from "../../../shared/x509/der.js";
import { stubCsr } from "../../../local-cluster/kubelet/keys.js";
import type { RequestKeyProblem } from "../../../shared/x509/request-key.js";
import { kubeletRequest, namespace, node, NS, pcrFor, pod, serviceAccount, type PodOptions } from "../../helpers/objects.js";

const ate = defaultSignerConfig().signers.get(ATESYSTEM_SIGNER)!;
const workerpool = defaultSignerConfig().signers.get(WORKERPOOL_SIGNER)!;

function factsFor(pcr: PodCertificateRequest, o: Partial<ValidationFacts> = {}): ValidationFacts {
  return {
    pcr,
    profile: ate,
    namespace: namespace(pcr.metadata.namespace),
    pod: pod({ namespace: pcr.metadata.namespace }),
    serviceAccount: serviceAccount({ namespace: pcr.metadata.namespace }),
    node: node(),
    ...o,
  };
}

function deniedWith(d: ValidationDecision, reason: DenialReason): RequestDeniedError {
  expect(d.outcome, d.outcome === "denied" ? d.error.message : "validated").toBe("denied");
  if (d.outcome !== "denied") throw new Error("unreachable");
  expect(d.error).toBeInstanceOf(RequestDeniedError);
  expect(d.error.reason).toBe(reason);
  expect(d.error.permanent).toBe(false);
  return d.error;
}

const b64sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("base64url");

/** One PCR per key type and public-key form, made by the kubelet emulation with real keys. */
const requests = {} as Record<`${KeyType}/${"pkix" | "csr"}`, PodCertificateRequest>;
let base: PodCertificateRequest; // ECDSAP256, pkix
let baseKey: KeyObject;
let otherProof: string; // a valid P-256 proof over the pod UID, but by another key

beforeAll(() => {
  for (const t of KEY_TYPES) {
    // One key per type (RSA key generation is slow); the CSR form is made from it as kubelet.ts does.
    const r = kubeletRequest(pod(), { signerName: ATESYSTEM_SIGNER, keyType: t });
    requests[`${t}/pkix`] = r.pcr;
    const csr: PodCertificateRequest = structuredClone(r.pcr);
    delete csr.spec.pkixPublicKey;
    delete csr.spec.proofOfPossession;
    csr.spec.stubPKCS10Request = stubCsr(r.privateKey, Buffer.from(r.pcr.spec.pkixPublicKey!, "base64")).toString("base64");
    requests[`${t}/csr`] = csr;
  }
  // The kubelet emulation's own CSR form, once, so the shortcut above cannot hide a difference.
  requests["ECDSAP384/csr"] = pcrFor(pod(), { signerName: ATESYSTEM_SIGNER, keyType: "ECDSAP384", form: "csr" });
  const r = kubeletRequest(pod(), { signerName: ATESYSTEM_SIGNER });
  base = r.pcr;
  baseKey = r.privateKey;
  otherProof = pcrFor(pod(), { signerName: ATESYSTEM_SIGNER }).spec.proofOfPossession!;
}, 180_000);

describe("decideValidation: valid requests", () => {
  it.each(KEY_TYPES.flatMap((keyType) => (["pkix", "csr"] as const).map((form) => ({ case: `${keyType} with ${form === "pkix" ? "pkixPublicKey + proofOfPossession" : "a stub CSR"}`, keyType, form }))))(
    "validates $case",
    ({ keyType, form }) => {
      const pcr = requests[`${keyType}/${form}`];
      const d = decideValidation(factsFor(pcr));
      expect(d.outcome, d.outcome === "denied" ? d.error.message : "").toBe("validated");
      if (d.outcome !== "validated") return;
      expect(d.key.keyType).toBe(keyType);
      expect(d.services).toEqual({ kind: "none" });
      expect(d.key.spkiSha256).toBe(b64sha256(d.key.spkiDer));
      if (form === "pkix") {
        expect(pcr.spec.stubPKCS10Request).toBeUndefined();
        expect(d.key.spkiDer.toString("base64")).toBe(pcr.spec.pkixPublicKey);
      } else {
        expect(pcr.spec.pkixPublicKey).toBeUndefined();
        expect(pcr.spec.proofOfPossession).toBeUndefined();
        // the key inside the CSR
        expect(Buffer.from(pcr.spec.stubPKCS10Request!, "base64").includes(d.key.spkiDer)).toBe(true);
      }
    },
  );

  it("returns what the opt-in annotation asks for", () => {
    const all = pcrFor(pod(), { signerName: ATESYSTEM_SIGNER, userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "true" } });
    const named = pcrFor(pod(), { signerName: ATESYSTEM_SIGNER, userAnnotations: { [EXPECTS_SERVICE_ANNOTATION]: "web, api" } });
    const d1 = decideValidation(factsFor(all));
    const d2 = decideValidation(factsFor(named));
    expect(d1.outcome === "validated" && d1.services).toEqual({ kind: "all" });
    expect(d2.outcome === "validated" && d2.services).toEqual({ kind: "named", names: ["web", "api"] });
  });

  it("validates a workerpool request in a labelled namespace", () => {
    const p = pod({ namespace: "pool-1" });
    const pcr = pcrFor(p, { signerName: WORKERPOOL_SIGNER });
    const d = decideValidation(
      factsFor(pcr, { profile: workerpool, namespace: namespace("pool-1", { [WORKERPOOL_NAMESPACE_LABEL]: "true" }), pod: p }),
    );
    expect(d.outcome).toBe("validated");
  });
});

describe("decideValidation: the order of the deny rules", () => {
  type Fault = "namespace" | "annotations" | "keyType" | "proof" | "pod" | "tooManyServices";
  const ORDER: { fault: Fault; reason: DenialReason }[] = [
    { fault: "namespace", reason: "NamespaceNotAllowed" },
    { fault: "annotations", reason: "InvalidUnverifiedUserAnnotations" },
    { fault: "keyType", reason: "UnsupportedKeyType" },
    { fault: "proof", reason: "InvalidProofOfPossession" },
    { fault: "pod", reason: "PodMismatch" },
    // A well-formed list naming more Services than maxNames allows: decided last.
    { fault: "tooManyServices", reason: "TooManyDNSNames" },
  ];

  /** The base request (P-256, pkix), broken in exactly the given ways. */
  function broken(faults: ReadonlySet<Fault>): ValidationFacts {
    const pcr: PodCertificateRequest = structuredClone(base);
    if (faults.has("namespace")) pcr.metadata.namespace = "default";
    const annotations: Record<string, string> = {};
    if (faults.has("annotations")) annotations["example.com/unknown"] = "1";
    if (faults.has("tooManyServices")) annotations[EXPECTS_SERVICE_ANNOTATION] = Array.from({ length: ate.dnsNames!.maxNames / 2 + 1 }, (_, i) => `s${i}`).join(",");
    if (Object.keys(annotations).length > 0) pcr.spec.unverifiedUserAnnotations = annotations;
    if (faults.has("proof")) pcr.spec.proofOfPossession = otherProof;
    const profile: SignerProfile = { ...ate, allowedKeyTypes: faults.has("keyType") ? ["ED25519", "RSA3072"] : KEY_TYPES };
    return factsFor(pcr, { profile, pod: faults.has("pod") ? undefined : pod({ namespace: pcr.metadata.namespace }) });
  }

  const subsets: { case: string; faults: Fault[] }[] = [];
  for (let mask = 1; mask < 1 << ORDER.length; mask++) {
    const faults = ORDER.filter((_, i) => mask & (1 << i)).map((o) => o.fault);
    subsets.push({ case: faults.join(" + "), faults });
  }

  it.each(subsets)("wrong in $case: the first rule in order wins", ({ faults }) => {
    const first = ORDER.find((o) => faults.includes(o.fault))!;
    deniedWith(decideValidation(broken(new Set(faults))), first.reason);
  });

  it("with every fault fixed, the same request validates", () => {
    expect(decideValidation(broken(new Set())).outcome).toBe("validated");
  });

  it("a namespace a signer for any namespace excludes is refused in words that fit that scope", () => {
    const pcr: PodCertificateRequest = structuredClone(base);
    pcr.metadata.namespace = "kube-system";
    const profile: SignerProfile = { ...ate, namespaces: { any: true, exclude: ["kube-system", "kube-public"] } };
    const message = deniedWith(decideValidation(factsFor(pcr, { profile, pod: pod({ namespace: "kube-system" }) })), "NamespaceNotAllowed").message;
    expect(message).toBe("signer atesystem.podcert.ate.dev/identity issues to any namespace except kube-system, kube-public; namespace kube-system is excluded");
  });

  it("each reason's message says what was wrong", () => {
    expect(deniedWith(decideValidation(broken(new Set(["namespace"]))), "NamespaceNotAllowed").message).toMatch(/signer atesystem\.podcert\.ate\.dev\/identity issues only to namespaces ate-system; namespace default/);
    expect(deniedWith(decideValidation(broken(new Set(["annotations"]))), "InvalidUnverifiedUserAnnotations").message).toContain('"example.com/unknown"');
    const kt = deniedWith(decideValidation(broken(new Set(["keyType"]))), "UnsupportedKeyType").message;
    expect(kt).toContain("ECDSAP256");
    expect(kt).toMatch(/ED25519|RSA3072/); // names a supported type
    expect(deniedWith(decideValidation(broken(new Set(["proof"]))), "InvalidProofOfPossession").message).toMatch(/proofOfPossession/);
    expect(deniedWith(decideValidation(broken(new Set(["pod"]))), "PodMismatch").message).toMatch(/pod web-0 does not exist/);
  });
});

describe("decideValidation: namespace scopes", () => {
  const scoped = (namespaces: NamespaceScope): SignerProfile => ({ ...ate, namespaces });

  function decide(profile: SignerProfile, ns: string, nsObject: Namespace | undefined): ValidationDecision {
    const p = pod({ namespace: ns });
    const pcr: PodCertificateRequest = structuredClone(base);
    pcr.metadata.namespace = ns;
    return decideValidation(factsFor(pcr, { profile, namespace: nsObject, pod: p }));
  }

  it.each<{ case: string; scope: NamespaceScope; ns: string; labels: Record<string, string> | undefined; ok: boolean }>([
    { case: "names: listed", scope: { names: ["ate-system", "other"], exclude: [] }, ns: "other", labels: undefined, ok: true },
    { case: "names: not listed", scope: { names: ["ate-system"], exclude: [] }, ns: "default", labels: undefined, ok: false },
    { case: "names: listed but excluded", scope: { names: ["ate-system"], exclude: ["ate-system"] }, ns: "ate-system", labels: undefined, ok: false },
    { case: "matchLabels: all match", scope: { matchLabels: { a: "1", b: "2" }, exclude: [] }, ns: "x", labels: { a: "1", b: "2", c: "3" }, ok: true },
    { case: "matchLabels: one differs", scope: { matchLabels: { a: "1", b: "2" }, exclude: [] }, ns: "x", labels: { a: "1", b: "3" }, ok: false },
    { case: "matchLabels: one missing", scope: { matchLabels: { a: "1", b: "2" }, exclude: [] }, ns: "x", labels: { a: "1" }, ok: false },
    { case: "matchLabels: namespace without labels", scope: { matchLabels: { a: "1" }, exclude: [] }, ns: "x", labels: {}, ok: false },
    { case: "matchLabels: matching but excluded", scope: { matchLabels: { a: "1" }, exclude: ["x"] }, ns: "x", labels: { a: "1" }, ok: false },
    { case: "any", scope: { any: true as const, exclude: [] }, ns: "whatever", labels: undefined, ok: true },
    { case: "any, excluded", scope: { any: true as const, exclude: ["kube-system"] }, ns: "kube-system", labels: undefined, ok: false },
  ])("$case", ({ scope, ns, labels, ok }) => {
    const d = decide(scoped(scope), ns, namespace(ns, labels));
    if (ok) expect(d.outcome, d.outcome === "denied" ? d.error.message : "").toBe("validated");
    else deniedWith(d, "NamespaceNotAllowed");
    expect(namespaceInScope(scope, ns, labels ?? {})).toBe(ok);
  });

  it("matchLabels denies when the namespace object cannot be found", () => {
    deniedWith(decide(workerpool, "pool-1", undefined), "NamespaceNotAllowed");
    expect(namespaceInScope(workerpool.namespaces, "pool-1", undefined)).toBe(false);
  });

  it("names scopes do not need the namespace object", () => {
    expect(decide(ate, NS, undefined).outcome).toBe("validated");
  });

  it("the built-in workerpool signer never issues in ate-system, even if it is labelled", () => {
    const e = deniedWith(decide(workerpool, "ate-system", namespace("ate-system", { [WORKERPOOL_NAMESPACE_LABEL]: "true" })), "NamespaceNotAllowed");
    expect(e.message).toContain(`namespaces labelled ${WORKERPOOL_NAMESPACE_LABEL}="true"`);
    expect(e.message).toContain("except ate-system");
  });

  it.each<{ case: string; labels: Record<string, string> }>([
    { case: 'label "false"', labels: { [WORKERPOOL_NAMESPACE_LABEL]: "false" } },
    { case: "label missing", labels: {} },
    { case: 'label "True"', labels: { [WORKERPOOL_NAMESPACE_LABEL]: "True" } },
  ])("the built-in workerpool signer denies a namespace with the $case", ({ labels }) => {
    deniedWith(decide(workerpool, "pool-1", namespace("pool-1", labels)), "NamespaceNotAllowed");
  });

  it("describeScope names each part of a scope", () => {
    expect(describeScope({ names: ["a", "b"], exclude: [] })).toBe("namespaces a, b");
    expect(describeScope({ any: true, exclude: ["kube-system"] })).toBe("any namespace except kube-system");
  });
});

describe("decideValidation: PodMismatch causes", () => {
  type Case = { case: string; pod?: PodOptions | null; sa?: { uid?: string } | null; node?: { uid?: string } | null; why: RegExp };
  const cases: Case[] = [
    { case: "the pod does not exist", pod: null, why: /pod web-0 does not exist/ },
    { case: "the pod UID differs (pod re-created)", pod: { uid: "ffffffff-0000-4000-8000-000000000000" }, why: /pod UID is ffffffff-0000-4000-8000-000000000000, request says 0b6f7c1e/ },
    { case: "the pod is on another node", pod: { nodeName: "node-b" }, why: /pod is on node "node-b", request says node-a/ },
    { case: "the pod runs as another service account", pod: { serviceAccountName: "admin" }, why: /pod runs as service account admin, request says web/ },
    { case: "the service account UID differs", sa: { uid: "2b2b2b2b-0000-4000-8000-000000000000" }, why: /service account UID is 2b2b2b2b-0000-4000-8000-000000000000/ },
    { case: "the service account does not exist", sa: null, why: /service account web does not exist/ },
    { case: "the node UID differs", node: { uid: "3c3c3c3c-0000-4000-8000-000000000000" }, why: /node UID is 3c3c3c3c-0000-4000-8000-000000000000/ },
    { case: "the node does not exist", node: null, why: /node node-a does not exist/ },
    { case: "the pod is terminating", pod: { deletionTimestamp: "2026-01-01T00:00:00Z" }, why: /pod is terminating/ },
    { case: "the pod has Succeeded", pod: { phase: "Succeeded" }, why: /pod has finished \(phase Succeeded\)/ },
    { case: "the pod has Failed", pod: { phase: "Failed" }, why: /pod has finished \(phase Failed\)/ },
  ];

  it.each(cases)("denies when $case", (c) => {
    const facts = factsFor(base, {
      pod: c.pod === null ? undefined : pod(c.pod ?? {}),
      serviceAccount: c.sa === null ? undefined : serviceAccount(c.sa ?? {}),
      node: c.node === null ? undefined : node(c.node ?? {}),
    });
    const e = deniedWith(decideValidation(facts), "PodMismatch");
    expect(e.message).toMatch(/^request does not match the live pod: /);
    expect(e.message).toMatch(c.why);
  });

  it("a pod without nodeName (not scheduled) does not match", () => {
    const p = pod();
    delete p.spec.nodeName;
    expect(deniedWith(decideValidation(factsFor(base, { pod: p })), "PodMismatch").message).toMatch(/pod is on node ""/);
  });

  it("a pod without serviceAccountName runs as default", () => {
    const p = pod();
    delete p.spec.serviceAccountName;
    expect(deniedWith(decideValidation(factsFor(base, { pod: p })), "PodMismatch").message).toMatch(/service account default/);
  });

  it.each(["Pending", "Running"])("accepts a %s pod", (phase) => {
    expect(decideValidation(factsFor(base, { pod: pod({ phase }) })).outcome).toBe("validated");
  });

  it("accepts a pod without status (just created)", () => {
    const p = pod();
    delete p.status;
    expect(decideValidation(factsFor(base, { pod: p })).outcome).toBe("validated");
  });

  it("lists every difference at once", () => {
    const problems = podMismatches({
      pcr: base,
      pod: pod({ uid: "other", nodeName: "node-b", phase: "Failed", deletionTimestamp: "2026-01-01T00:00:00Z" }),
      serviceAccount: undefined,
      node: undefined,
    });
    expect(problems).toHaveLength(6);
  });
});

describe("decideValidation: key problems", () => {
  it("denies a stub CSR signed with an algorithm of another key family as InvalidProofOfPossession (not a crash)", () => {
    const r = kubeletRequest(pod(), { signerName: ATESYSTEM_SIGNER, keyType: "ED25519" });
    const spki = Buffer.from(r.pcr.spec.pkixPublicKey!, "base64");
    const cri = sequence(integer(0), sequence(), spki, tlv(0xa0, Buffer.alloc(0)));
    // An Ed25519 signature labelled sha256WithRSAEncryption (with the NULL parameters RSA uses).
    const csr = sequence(cri, sequence(oid("1.2.840.113549.1.1.11"), nullValue()), bitString(sign(null, cri, r.privateKey)));
    const pcr: PodCertificateRequest = structuredClone(r.pcr);
    delete pcr.spec.pkixPublicKey;
    delete pcr.spec.proofOfPossession;
    pcr.spec.stubPKCS10Request = csr.toString("base64");
    let d: ValidationDecision | undefined;
    expect(() => (d = decideValidation(factsFor(pcr)))).not.toThrow();
    deniedWith(d!, "InvalidProofOfPossession");
  });

  it("denies a proof made over another pod UID with the request's own key", () => {
    const pcr: PodCertificateRequest = structuredClone(base);
    pcr.spec.proofOfPossession = sign("sha256", Buffer.from("another-uid"), { key: baseKey, dsaEncoding: "der" }).toString("base64");
    deniedWith(decideValidation(factsFor(pcr)), "InvalidProofOfPossession");
  });

  it("denies a request with neither public-key form", () => {
    const pcr: PodCertificateRequest = structuredClone(base);
    delete pcr.spec.pkixPublicKey;
    delete pcr.spec.proofOfPossession;
    deniedWith(decideValidation(factsFor(pcr)), "InvalidProofOfPossession");
  });

  it("denies a key type outside the profile's list for a stub CSR too", () => {
    const e = deniedWith(decideValidation(factsFor(requests["RSA4096/csr"], { profile: { ...ate, allowedKeyTypes: ["ECDSAP256"] } })), "UnsupportedKeyType");
    expect(e.message).toContain("ECDSAP256");
  });
});

describe("keyProblemDenial: what is wrong with a key, as a denial reason", () => {
  it.each<{ case: string; problem: RequestKeyProblem; reason: DenialReason }>([
    { case: "a type the signer does not take", problem: { problem: "unsupportedType", keyType: "RSA2048", message: "m" }, reason: "UnsupportedKeyType" },
    { case: "an unusable key (weak, not canonical, not DER)", problem: { problem: "unusableKey", message: "m" }, reason: "UnsupportedKeyType" },
    { case: "a pkixPublicKey too long or not base64", problem: { problem: "malformed", field: "pkixPublicKey", message: "m" }, reason: "UnsupportedKeyType" },
    { case: "a proofOfPossession too long or not base64", problem: { problem: "malformed", field: "proofOfPossession", message: "m" }, reason: "InvalidProofOfPossession" },
    { case: "a stub CSR too long, not base64 or not DER (the CSR is the proof)", problem: { problem: "malformed", field: "stubPKCS10Request", message: "m" }, reason: "InvalidProofOfPossession" },
    { case: "a missing or failing proof", problem: { problem: "badProof", message: "m" }, reason: "InvalidProofOfPossession" },
  ])("$case: $reason", ({ problem, reason }) => {
    const e = keyProblemDenial(problem);
    expect(e).toBeInstanceOf(RequestDeniedError);
    expect({ reason: e.reason, message: e.message, permanent: e.permanent }).toEqual({ reason, message: "m", permanent: false });
  });

  it("bounds the message as every denial is bounded (control characters replaced, 32 KiB)", () => {
    const e = keyProblemDenial({ problem: "badProof", message: `proof over pod UID a\u0000b${"x".repeat(40_000)}` });
    expect(e.message).toContain("a\uFFFDb");
    expect(Buffer.byteLength(e.message)).toBeLessThanOrEqual(32 * 1024);
  });
});
