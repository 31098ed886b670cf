// The chaos harness's exit criteria, over real certificates issued by podcert's own CA code: each
// criterion must flag the run that breaks it, and pass the one that does not.
import { beforeAll, describe, expect, it } from "vitest";
import { createCaPool } from "../../../cli/ca-create.js";
import { activeCa, parseCaPool, serializeCaPool, type CaPool } from "../../../shared/ca/pool.js";
import { generateRequestKeyPair } from "../../../local-cluster/kubelet/keys.js";
import { issueLeaf } from "../../../shared/x509/leaf.js";
import { explainDeadLetter, judge, PCR_CLEANER_MS, pcrKeyOfSubject, type ObservedRequest } from "../../../chaos/verdict.js";

const ATE = "atesystem.podcert.ate.dev/identity";
const ID = "spiffe://cluster.local/ns/ate-system/sa/app";
const API_NAMES = ["api.ate-system.svc", "api.ate-system.svc.cluster.local"];
let pool: CaPool;

beforeAll(async () => {
  pool = parseCaPool(serializeCaPool(await createCaPool([ATE], { keyAlgorithm: "ECDSAP256", validityDays: 2, now: new Date() })));
});

/** An Issued request whose certificate carries `sans` for the request key (or `certKey`). */
function issued(sans: { uris: string[]; dnsNames: string[] }, o: { otherKey?: boolean; chains?: number } = {}): ObservedRequest {
  const key = generateRequestKeyPair("ECDSAP256");
  const certKey = o.otherKey ? generateRequestKeyPair("ECDSAP256") : key;
  const now = Date.now();
  const leaf = issueLeaf(activeCa(pool, ATE, new Date()).signer, {
    spkiDer: certKey.spkiDer,
    keyType: "ECDSAP256",
    ...sans,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
  });
  return {
    name: "ate-system/req-1",
    kind: "named-service",
    expected: { type: "Issued", uris: [ID], dnsNames: API_NAMES },
    spki: key.spkiDer,
    createdAt: 1_000,
    terminalAt: 2_000,
    terminal: { type: "Issued", reason: "Issued" },
    certificateChain: leaf.chainPem,
    chainsWritten: Array.from({ length: o.chains ?? 1 }, (_, i) => `${leaf.chainPem}${i}`),
  };
}

describe("the chaos verdict", () => {
  it("passes a request issued once, in time, with exactly its SANs for its own key", () => {
    expect(judge({ requests: [issued({ uris: [ID], dnsNames: [...API_NAMES].reverse() })], deadLetters: [], injectedNetworkFaults: false }).problems).toEqual([]);
  });

  it.each([
    ["a DNS name too many", { uris: [ID], dnsNames: [...API_NAMES, "router.ate-system.svc"] }],
    ["a DNS name missing", { uris: [ID], dnsNames: API_NAMES.slice(0, 1) }],
    ["another workload's SPIFFE ID", { uris: ["spiffe://cluster.local/ns/ate-system/sa/other"], dnsNames: API_NAMES }],
  ])("flags a certificate with %s", (_, sans) => {
    const { problems } = judge({ requests: [issued(sans)], deadLetters: [], injectedNetworkFaults: false });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/SANs .* entitled to/);
  });

  it("flags a certificate for another key than the request's", () => {
    const { problems } = judge({ requests: [issued({ uris: [ID], dnsNames: API_NAMES }, { otherKey: true })], deadLetters: [], injectedNetworkFaults: false });
    expect(problems).toEqual(["ate-system/req-1: the certificate is for another public key than the request's"]);
  });

  it("flags two different certificates written to one request", () => {
    const { problems } = judge({ requests: [issued({ uris: [ID], dnsNames: API_NAMES }, { chains: 2 })], deadLetters: [], injectedNetworkFaults: false });
    expect(problems).toEqual(["ate-system/req-1: 2 different certificates written to its status"]);
  });

  it("flags a denial where a certificate was due, a wrong denial reason, a pending request and a late one", () => {
    const base = issued({ uris: [ID], dnsNames: API_NAMES });
    const requests: ObservedRequest[] = [
      { ...base, name: "a", terminal: { type: "Denied", reason: "PodMismatch", message: "the pod is gone" } },
      { ...base, name: "b", expected: { type: "Denied", reason: "NamespaceNotAllowed" }, terminal: { type: "Denied", reason: "InvalidUnverifiedUserAnnotations" } },
      { ...base, name: "c", terminal: undefined, terminalAt: undefined },
      { ...base, name: "d", terminalAt: base.createdAt + PCR_CLEANER_MS },
    ];
    const { problems } = judge({ requests, deadLetters: [], injectedNetworkFaults: false });
    expect(problems).toHaveLength(4);
    expect(problems[0]).toMatch(/^a \(named-service\): Denied PodMismatch where a certificate was due/);
    expect(problems[1]).toMatch(/^b .*Denied InvalidUnverifiedUserAnnotations, expected Denied NamespaceNotAllowed/);
    expect(problems[2]).toMatch(/^c .*still pending at the end/);
    expect(problems[3]).toMatch(/^d: ended 900 s after creation, after the 15-minute cleaner/);
  });
});

describe("dead letters", () => {
  const letter = (lastStatus: number | "network-error", lastError: string) => ({ eventType: "t", subscriber: "podcert-sign", lastStatus, lastError });

  it("are explained by a retryable answer that says why, grouped without names and numbers", () => {
    expect(explainDeadLetter(letter(503, "Kubernetes API answered 503 for ate-system/req-12"), false)).toBe("503: Kubernetes API answered N for <pcr>");
    expect(explainDeadLetter(letter(429, "waiting for Service ate-system/late-0"), false)).toBe("429: waiting for Service ate-system/late-N");
  });

  it("are not explained by an unclassified 500, a 4xx, or an empty answer", () => {
    expect(explainDeadLetter(letter(500, "internal error"), true)).toBeUndefined();
    expect(explainDeadLetter(letter(403, "attestation expired"), true)).toBeUndefined();
    expect(explainDeadLetter(letter(503, "  "), true)).toBeUndefined();
  });

  it("without an answer are explained by what the function logged for that event", () => {
    const d = { ...letter("network-error", "no answer within 10000 ms"), logged: "transient failure: Kubernetes API get pod failed: Headers Timeout Error" };
    expect(explainDeadLetter(d, false)).toBe("network: no answer within N ms, after the function logged: transient failure: Kubernetes API get pod failed: Headers Timeout Error");
  });

  it("without an answer or a log line are explained only when the run injected network faults", () => {
    expect(explainDeadLetter(letter("network-error", "other side closed"), false)).toBeUndefined();
    expect(explainDeadLetter(letter("network-error", "other side closed"), true)).toBe("network: other side closed");
  });

  it("fail the run when one is not explained", () => {
    const { problems, deadLetterReasons } = judge({ requests: [], deadLetters: [letter(500, "internal error"), letter(503, "busy")], injectedNetworkFaults: false });
    expect(problems).toEqual(["dead letter without an explanation: t to podcert-sign: 500 internal error"]);
    expect([...deadLetterReasons]).toEqual([["503: busy", 1]]);
  });
});

describe("events name their PCR", () => {
  it("by the source's path or podcert's namespace/name", () => {
    expect(pcrKeyOfSubject("/apis/certificates.k8s.io/v1beta1/namespaces/workers/podcertificaterequests/req-3")).toBe("workers/req-3");
    expect(pcrKeyOfSubject("workers/req-3")).toBe("workers/req-3");
    expect(pcrKeyOfSubject("/podcert/resync")).toBeUndefined();
    expect(pcrKeyOfSubject(undefined)).toBeUndefined();
  });
});
