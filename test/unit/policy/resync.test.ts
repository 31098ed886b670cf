import { describe, expect, it } from "vitest";
import { pendingByAge, resyncCandidate, selectForResync, type ResyncCandidate } from "../../../shared/policy/resync.js";
import type { PodCertificateRequest } from "../../../shared/pcr/model.js";

const NOW = new Date("2026-01-01T12:00:00Z");
const at = (secondsAgo: number) => NOW.getTime() - secondsAgo * 1000;
const c = (name: string, secondsAgo: number | undefined, o: Partial<ResyncCandidate> = {}): ResyncCandidate => ({
  namespace: "ns",
  name,
  uid: `uid-${name}`,
  signerName: "s/identity",
  createdMs: secondsAgo === undefined ? undefined : at(secondsAgo),
  terminal: false,
  ...o,
});
const names = (cs: readonly ResyncCandidate[]) => cs.map((x) => x.name);

describe("selectForResync", () => {
  const cases: { what: string; in: ResyncCandidate[]; grace?: number; max?: number; selected: string[]; pending: number; deferred: number }[] = [
    { what: "nothing listed", in: [], selected: [], pending: 0, deferred: 0 },
    { what: "fresh ones are left to live events", in: [c("fresh", 5), c("old", 60)], selected: ["old"], pending: 1, deferred: 0 },
    { what: "exactly at the grace period counts as old", in: [c("edge", 30)], selected: ["edge"], pending: 1, deferred: 0 },
    { what: "a creation time in the future (clock skew) is fresh", in: [c("future", -120)], selected: [], pending: 0, deferred: 0 },
    { what: "terminal ones are never selected", in: [c("issued", 600, { terminal: true }), c("pending", 600)], selected: ["pending"], pending: 1, deferred: 0 },
    { what: "oldest first", in: [c("b", 100), c("a", 800), c("c", 31)], selected: ["a", "b", "c"], pending: 3, deferred: 0 },
    { what: "at most maxEvents, the oldest kept", in: [c("b", 100), c("a", 800), c("c", 31)], max: 2, selected: ["a", "b"], pending: 3, deferred: 1 },
    { what: "maxEvents 0 selects none", in: [c("a", 100)], max: 0, selected: [], pending: 1, deferred: 1 },
    { what: "no readable creation time: treated as the oldest", in: [c("dated", 900), c("undated", undefined)], selected: ["undated", "dated"], pending: 2, deferred: 0 },
    { what: "same time: by namespace then name", in: [c("y", 60), c("x", 60), c("a", 60, { namespace: "zz" })], selected: ["x", "y", "a"], pending: 3, deferred: 0 },
    { what: "a uid listed twice is posted once", in: [c("a", 60), c("a", 60)], selected: ["a"], pending: 1, deferred: 0 },
    { what: "a longer grace period leaves more to live events", in: [c("a", 60), c("b", 200)], grace: 120, selected: ["b"], pending: 1, deferred: 0 },
  ];
  for (const t of cases) {
    it(t.what, () => {
      const r = selectForResync(t.in, { now: NOW, graceSeconds: t.grace ?? 30, maxEvents: t.max ?? 100 });
      expect({ selected: names(r.selected), pending: r.pending, deferred: r.deferred }).toEqual({ selected: t.selected, pending: t.pending, deferred: t.deferred });
    });
  }
});

describe("resyncCandidate", () => {
  const pcr = (o: { status?: PodCertificateRequest["status"]; creationTimestamp?: string; uid?: string }): PodCertificateRequest =>
    ({
      apiVersion: "certificates.k8s.io/v1beta1",
      kind: "PodCertificateRequest",
      metadata: { namespace: "ns", name: "p", ...(o.uid === undefined ? {} : { uid: o.uid }), ...(o.creationTimestamp === undefined ? {} : { creationTimestamp: o.creationTimestamp }) },
      spec: { signerName: "s/identity" },
      ...(o.status === undefined ? {} : { status: o.status }),
    }) as PodCertificateRequest;

  it("keeps the reference, the signer, the creation time and whether it is terminal", () => {
    expect(resyncCandidate(pcr({ uid: "u", creationTimestamp: "2026-01-01T11:00:00Z" }))).toEqual({
      namespace: "ns", name: "p", uid: "u", signerName: "s/identity", createdMs: Date.parse("2026-01-01T11:00:00Z"), terminal: false,
    });
    expect(resyncCandidate(pcr({ uid: "u", status: { conditions: [{ type: "Denied", status: "True", reason: "x", message: "", lastTransitionTime: "" }] } }))?.terminal).toBe(true);
    expect(resyncCandidate(pcr({ uid: "u", status: { conditions: [{ type: "Issued", status: "False", reason: "x", message: "", lastTransitionTime: "" }] } }))?.terminal).toBe(false);
    expect(resyncCandidate(pcr({ uid: "u", creationTimestamp: "yesterday" }))?.createdMs).toBeUndefined();
  });

  it("drops a PCR without a uid (an event could not name it)", () => {
    expect(resyncCandidate(pcr({}))).toBeUndefined();
  });
});

describe("pendingByAge (podcert_pending_requests)", () => {
  const table = (rows: { signer: string; age: string; count: number }[]) => Object.fromEntries(rows.map((r) => [`${r.signer} ${r.age}`, r.count]));

  it("counts each pending PCR once in its age bucket, every bucket of every configured signer shown", () => {
    const listed = [
      c("new", 10),
      c("future", -120), // clock skew: as young as can be
      c("edge-1m", 60),
      c("mid", 299),
      c("stuck", 300),
      c("stuck", 300), // listed twice
      c("old", 899),
      c("gone", 900),
      c("undated", undefined),
      c("issued", 400, { terminal: true }),
      c("other-signer", 400, { signerName: "other/identity" }),
    ];
    expect(table(pendingByAge(listed, ["s/identity", "quiet/identity"], NOW))).toEqual({
      "s/identity 0-1m": 2,
      "s/identity 1-5m": 2,
      "s/identity 5-15m": 2,
      "s/identity 15m+": 2,
      "quiet/identity 0-1m": 0,
      "quiet/identity 1-5m": 0,
      "quiet/identity 5-15m": 0,
      "quiet/identity 15m+": 0,
    });
  });
});
