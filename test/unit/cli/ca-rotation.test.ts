// The rules of CA rotation, with a fixed clock: what each step changes, when it refuses, and what
// status says comes next.
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { activeCa, parseCaPool, publishedCas, serializeCaPool, type CaPoolDocument, type CaState } from "../../../shared/ca/pool.js";
import { TransientError } from "../../../shared/errors.js";
import { createCa } from "../../../cli/ca-create.js";
import {
  PUBLICATION_DELAY_SECONDS,
  activateCa,
  poolStatus,
  prepareCa,
  retireCa,
  RotationRefusedError,
  showDuration,
  showTime,
  type NewCa,
  type RotationFacts,
} from "../../../cli/ca-rotation.js";
import { testCa } from "../../helpers/ca.js";

// Not on a whole second: times people see are rounded up, never shown early.
const T = new Date("2026-06-01T12:00:00.750Z");
const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const PUB = PUBLICATION_DELAY_SECONDS * S;
const DAY = 24 * H;
const SIGNER = "example.com/my-signer";
const LIFETIME = 86_400;
const at = (offsetMs: number) => new Date(T.getTime() + offsetMs);
const iso = (offsetMs: number) => at(offsetMs).toISOString();
const facts = (now: Date, more: Partial<RotationFacts> = {}): RotationFacts => ({ now, maxLifetimeSeconds: LIFETIME, propagationSeconds: 600, ...more });

type Ca = NewCa & { state?: CaState; since?: Partial<Record<CaState, string>> };
let old: NewCa, cur: NewCa, next: NewCa, spare: NewCa, short: NewCa, future: NewCa, expired: NewCa;

const serialOf = (ca: NewCa) => new X509Certificate(ca.certificate).serialNumber;
const endOf = (ca: NewCa) => new X509Certificate(ca.certificate).validToDate;
const beginOf = (ca: NewCa) => new X509Certificate(ca.certificate).validFromDate;

function doc(...signers: { name: string; cas: Ca[] }[]): CaPoolDocument {
  return { apiVersion: "podcert.ate.dev/v1alpha1", kind: "CAPool", signers: signers.map((s) => ({ signerName: s.name, cas: s.cas })) };
}
const stated = (ca: NewCa, state: CaState, since: Partial<Record<CaState, string>>): Ca => ({ ...ca, state, since });
/** The usual mid-rotation signer: `cur` active for 30 days, `next` prepared at `preparedAt`. */
const midRotation = (preparedAt = T) =>
  doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(-30 * DAY) }), stated(next, "prepared", { prepared: preparedAt.toISOString() })] });

const casOf = (d: CaPoolDocument, name = SIGNER) => d.signers.find((s) => s.signerName === name)!.cas;
const statesOf = (d: CaPoolDocument, name = SIGNER) => casOf(d, name).map((c) => [serialOf(c), c.state, c.since]);

/** Runs fn and returns the refusal it throws. */
function refusal(fn: () => unknown): RotationRefusedError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RotationRefusedError);
    return e as RotationRefusedError;
  }
  throw new Error("expected a refusal");
}

beforeAll(async () => {
  const make = (daysFromT: number, validityDays: number) => createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays, now: at(daysFromT * DAY) });
  [old, cur, next, spare, short, future, expired] = await Promise.all([
    make(-300, 365), // ends T+65d
    make(-30, 365),
    make(-1 / 24, 365),
    make(0, 365),
    make(0, 1), // ends less than a day after T
    make(2, 365), // not valid before T+2d
    make(-400, 365), // ended T-35d
  ]);
});

describe("prepare", () => {
  it("adds the CA as prepared since now; nothing signs differently, every CA is published", () => {
    const before = doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(-30 * DAY) })] });
    const copy = structuredClone(before);
    const r = prepareCa(before, SIGNER, next, facts(T));
    expect(before).toEqual(copy); // the input is not changed
    expect(statesOf(r.doc)).toEqual([
      [serialOf(cur), "active", { active: iso(-30 * DAY) }],
      [serialOf(next), "prepared", { prepared: T.toISOString() }],
    ]);
    const pool = parseCaPool(serializeCaPool(r.doc));
    expect(activeCa(pool, SIGNER, T).serialHex).toBe(serialOf(cur));
    expect(publishedCas(pool, SIGNER).map((c) => c.serialHex)).toEqual([serialOf(cur), serialOf(next)]);
    expect(r.changed).toBe(`signer ${SIGNER}: prepared CA ${serialOf(next)} (published, not signing, once this pool is applied; the propagation time counts from now)`);
    expect(r.next).toMatchObject({ step: "activate", serialHex: serialOf(next), from: at(16 * MIN), text: `activate CA ${serialOf(next)} from 2026-06-01T12:16:01Z` });
    expect(r.risks).toEqual([]);
  });

  it("gives a signer from before rotation states first: the CA that signs active, the others superseded or retired", () => {
    // cur signs under the old rule (valid, latest notAfter); old may have signed certificates still valid.
    const r = prepareCa(doc({ name: SIGNER, cas: [old, cur, expired] }), SIGNER, next, facts(T));
    expect(statesOf(r.doc)).toEqual([
      [serialOf(old), "superseded", { superseded: T.toISOString() }],
      [serialOf(cur), "active", { active: beginOf(cur).toISOString() }],
      [serialOf(expired), "retired", { retired: T.toISOString() }],
      [serialOf(next), "prepared", { prepared: T.toISOString() }],
    ]);
    expect(r.changed).toMatch(/gave its CAs rotation states \(\w+ superseded, \w+ active, \w+ retired\); prepared CA/);
    const pool = parseCaPool(serializeCaPool(r.doc));
    expect(activeCa(pool, SIGNER, T).serialHex).toBe(serialOf(cur)); // the same CA keeps signing
    expect(publishedCas(pool, SIGNER).map((c) => c.serialHex)).toEqual([serialOf(old), serialOf(cur), serialOf(next)]);
  });

  it("adds a signer the pool does not have yet, with its first CA prepared (nothing signs until it is activated)", () => {
    const r = prepareCa(doc({ name: "example.com/other", cas: [cur] }), SIGNER, next, facts(T));
    expect(statesOf(r.doc)).toEqual([[serialOf(next), "prepared", { prepared: T.toISOString() }]]);
    expect(casOf(r.doc, "example.com/other")).toEqual([cur]); // other signers untouched
    expect(r.changed).toMatch(/added the signer to the pool; prepared CA/);
    expect(() => activeCa(parseCaPool(serializeCaPool(r.doc)), SIGNER, T)).toThrow(TransientError);
    const a = activateCa(r.doc, SIGNER, { ...facts(at(16 * MIN)), force: false });
    expect(statesOf(a.doc)).toEqual([[serialOf(next), "active", { prepared: T.toISOString(), active: iso(16 * MIN) }]]);
  });

  it.each([
    { case: "a second prepared CA", d: () => midRotation(), ca: () => spare, m: /already has a prepared CA \(\w+, prepared at 2026-06-01T12:00:00Z\): activate it, or retire it to abort that rotation, first/ },
    { case: "a CA already in the pool", d: () => doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(0) }), stated(next, "retired", { retired: iso(0) })] }), ca: () => next, m: /is already in the pool for signer .* \(state retired\)/ },
    { case: "a CA that ends before now + max lifetime + 1h", d: () => doc({ name: SIGNER, cas: [cur] }), ca: () => short, m: /ends at 2026-06-02T12:00:00Z, before 2026-06-02T13:00:01Z: it must cover a full certificate \(24h\) for at least 1h after now/ },
  ])("refuses $case", ({ d, ca, m }) => {
    const e = refusal(() => prepareCa(d(), SIGNER, ca(), facts(T)));
    expect(e.message).toMatch(m);
    expect(e.possibleFrom).toBeUndefined(); // structural
    expect(e.code).toBe("ERR_ROTATION_REFUSED");
  });

  it("judges an intermediate by its chain: a root ending early makes it too short", async () => {
    const root = await testCa({ name: "Offline Root", notBefore: at(-DAY), notAfter: at(DAY) });
    const int = await testCa({ name: "Issuing CA", notBefore: at(-DAY), notAfter: at(300 * DAY), issuer: root });
    const ca = { certificate: int.certificate, privateKey: int.privateKey, intermediates: root.certificate };
    expect(refusal(() => prepareCa(doc({ name: SIGNER, cas: [cur] }), SIGNER, ca, facts(T))).message).toMatch(/\(or its chain\) ends at/);
    const longRoot = await testCa({ name: "Long Root", notBefore: at(-DAY), notAfter: at(3000 * DAY) });
    const good = await testCa({ name: "Issuing CA 2", notBefore: at(-DAY), notAfter: at(300 * DAY), issuer: longRoot });
    const r = prepareCa(doc({ name: SIGNER, cas: [cur] }), SIGNER, { certificate: good.certificate, privateKey: good.privateKey, intermediates: longRoot.certificate }, facts(T));
    const pool = parseCaPool(serializeCaPool(r.doc));
    expect(pool.signers.get(SIGNER)!.at(-1)!.rootPem.replace(/\s/g, "")).toBe(longRoot.certificate.replace(/\s/g, "")); // the root is what gets published
  });
});

describe("activate", () => {
  it("makes the prepared CA active and the active one superseded, from now, keeping when each entered its earlier states", () => {
    const now = at(16 * MIN);
    const r = activateCa(midRotation(), SIGNER, { ...facts(now), force: false });
    expect(statesOf(r.doc)).toEqual([
      [serialOf(cur), "superseded", { active: iso(-30 * DAY), superseded: now.toISOString() }],
      [serialOf(next), "active", { prepared: T.toISOString(), active: now.toISOString() }],
    ]);
    const pool = parseCaPool(serializeCaPool(r.doc));
    expect(activeCa(pool, SIGNER, now).serialHex).toBe(serialOf(next));
    expect(publishedCas(pool, SIGNER)).toHaveLength(2);
    expect(r.changed).toBe(`signer ${SIGNER}: CA ${serialOf(next)} is active (signs from the next request once sign reads this pool); CA ${serialOf(cur)} superseded (still published)`);
    // superseded at T+16m, + 24h lifetime + 10m margin
    expect(r.next.text).toBe(`retire CA ${serialOf(cur)} from 2026-06-02T12:26:01Z`);
    expect(r.risks).toEqual([]);
  });

  it.each([
    // Counted from when the CA is in the published bundles at the latest (PUBLICATION_DELAY_SECONDS after prepare).
    { case: "1 ms before the default 10 minutes", now: PUB + 10 * MIN - 1, propagation: 600, ok: false },
    { case: "at exactly 10 minutes", now: PUB + 10 * MIN, propagation: 600, ok: true },
    { case: "after 90 s with --propagation 90s", now: PUB + 90 * S, propagation: 90, ok: true },
    { case: "after 89 s with --propagation 90s", now: PUB + 89 * S, propagation: 90, ok: false },
  ])("waits for the propagation time: $case", ({ now, propagation, ok }) => {
    const run = () => activateCa(midRotation(), SIGNER, { ...facts(at(now), { propagationSeconds: propagation }), force: false });
    if (ok) {
      expect(run().doc).toBeTruthy();
      return;
    }
    const e = refusal(run);
    expect(e.possibleFrom).toEqual(at(PUB + propagation * S));
    expect(e.forcible).toBe(true);
    expect(e.code).toBe("ERR_ROTATION_NOT_YET");
    expect(e.message).toContain(`was prepared at 2026-06-01T12:00:00Z and is in the published bundles by ${showTime(at(PUB))} at the latest; pods may not trust it yet. Activate from ${showTime(at(PUB + propagation * S))}`);
    expect(e.message).toContain(`the propagation time, ${showDuration(propagation)}`);
  });

  it("with --force, activates before the propagation time and says what that risks", () => {
    const r = activateCa(midRotation(), SIGNER, { ...facts(at(MIN)), force: true });
    expect(casOf(r.doc)[1]!.state).toBe("active");
    expect(r.risks).toEqual([`activated CA ${serialOf(next)} before it was published for 10m: pods that have not received it yet will fail handshakes with certificates it signs`]);
  });

  it("with --force but nothing to skip, reports no risk", () => {
    expect(activateCa(midRotation(), SIGNER, { ...facts(at(H)), force: true }).risks).toEqual([]);
  });

  it.each([
    { case: "a signer without a prepared CA", d: () => doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(0) })] }), m: /has no prepared CA: `prepare` one first/ },
    { case: "a signer whose CAs carry no state", d: () => doc({ name: SIGNER, cas: [cur] }), m: /carry no rotation state yet .* a rotation starts with `prepare`/ },
    { case: "a signer not in the pool", d: () => doc({ name: "example.com/other", cas: [cur] }), m: /no CA for signer example\.com\/my-signer \(it has: example\.com\/other\)/ },
    {
      case: "a prepared CA that cannot cover a full certificate",
      d: () => doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(-30 * DAY) }), stated(short, "prepared", { prepared: iso(-DAY) })] }),
      m: /ends at 2026-06-02T12:00:00Z: it cannot cover a full certificate \(24h\); retire it and prepare another/,
    },
  ])("refuses $case, even with --force", ({ d, m }) => {
    const e = refusal(() => activateCa(d(), SIGNER, { ...facts(at(H)), force: true }));
    expect(e.message).toMatch(m);
    expect(e.possibleFrom).toBeUndefined();
  });

  it("waits for a prepared CA that is not valid yet, even with --force (it could not sign)", () => {
    const d = doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(-30 * DAY) }), stated(future, "prepared", { prepared: iso(-DAY) })] });
    const e = refusal(() => activateCa(d, SIGNER, { ...facts(T), force: true }));
    expect(e.possibleFrom).toEqual(beginOf(future));
    expect(e.forcible).toBe(false);
    expect(e.message).toMatch(/is not valid before 2026-06-03T11:59:00Z; activate from then/);
  });
});

describe("retire", () => {
  // cur was superseded at T; certificates it signed can be valid until T + 24h; + 10m margin.
  const afterActivation = (supersededAt = T) =>
    doc({
      name: SIGNER,
      cas: [stated(cur, "superseded", { active: iso(-30 * DAY), superseded: supersededAt.toISOString() }), stated(next, "active", { prepared: iso(-H), active: supersededAt.toISOString() })],
    });
  const safe = at(LIFETIME * S + 10 * MIN);

  it("retires the superseded CA once no certificate it signed can be valid; it is no longer published", () => {
    const r = retireCa(afterActivation(), SIGNER, { ...facts(safe), force: false });
    expect(statesOf(r.doc)[0]).toEqual([serialOf(cur), "retired", { active: iso(-30 * DAY), superseded: T.toISOString(), retired: safe.toISOString() }]);
    const pool = parseCaPool(serializeCaPool(r.doc));
    expect(publishedCas(pool, SIGNER).map((c) => c.serialHex)).toEqual([serialOf(next)]);
    expect(r.changed).toBe(`signer ${SIGNER}: retired superseded CA ${serialOf(cur)} (no longer published)`);
    expect(r.next.text).toMatch(/^rotate before 2027-/);
  });

  it("refuses 1 ms earlier, saying from when, and --force retires it saying what that risks", () => {
    const e = refusal(() => retireCa(afterActivation(), SIGNER, { ...facts(at(LIFETIME * S + 10 * MIN - 1)), force: false }));
    expect(e.possibleFrom).toEqual(safe);
    expect(e.forcible).toBe(true);
    expect(e.message).toBe(
      `certificates CA ${serialOf(cur)} signed can be valid until 2026-06-02T12:10:01Z (superseded at 2026-06-01T12:00:00Z, maximum lifetime 24h, margin 10m); retire from then`,
    );
    const r = retireCa(afterActivation(), SIGNER, { ...facts(at(H)), force: true });
    expect(casOf(r.doc)[0]!.state).toBe("retired");
    expect(r.risks).toEqual([`retired CA ${serialOf(cur)} early: certificates signed by CA ${serialOf(cur)} until 2026-06-02T12:10:01Z will no longer verify once pods receive the new bundle`]);
  });

  it("waits no longer than the superseded CA's own end", () => {
    const d = doc({ name: SIGNER, cas: [stated(short, "superseded", { superseded: T.toISOString() }), stated(next, "active", { active: T.toISOString() })] });
    const e = refusal(() => retireCa(d, SIGNER, { ...facts(T), force: false }));
    expect(e.possibleFrom).toEqual(endOf(short));
    expect(retireCa(d, SIGNER, { ...facts(endOf(short)), force: false }).doc).toBeTruthy();
  });

  it("retires a prepared CA at once (aborting a rotation), named by its serial in any spelling", () => {
    const serial = serialOf(next);
    const spelled = `0x${serial.toLowerCase().match(/../g)!.join(":")}`;
    const r = retireCa(midRotation(), SIGNER, { ...facts(T), force: false, serialHex: spelled });
    expect(statesOf(r.doc)[1]).toEqual([serial, "retired", { prepared: T.toISOString(), retired: T.toISOString() }]);
    expect(r.changed).toMatch(/retired prepared CA/);
    expect(r.risks).toEqual([]);
  });

  it.each([
    { case: "the active CA", serial: () => serialOf(cur), d: () => midRotation(), m: /is the active CA of signer .* never retired: activate another first/ },
    { case: "a retired CA", serial: () => serialOf(old), d: () => doc({ name: SIGNER, cas: [stated(old, "retired", { retired: iso(-DAY) }), stated(cur, "active", { active: iso(0) })] }), m: /already retired \(since 2026-05-31T12:00:00Z\)/ },
    { case: "an unknown serial", serial: () => "ABCDEF", d: () => midRotation(), m: /has no CA with serial ABCDEF \(it has: \w+ active, \w+ prepared\)/ },
    { case: "no superseded CA (and says how to abort)", serial: () => undefined, d: () => midRotation(), m: /has no superseded CA to retire; to abort the rotation, retire the prepared CA with --serial \w+/ },
    {
      case: "two superseded CAs without --serial",
      serial: () => undefined,
      d: () => doc({ name: SIGNER, cas: [stated(old, "superseded", { superseded: iso(-DAY) }), stated(cur, "superseded", { superseded: iso(0) }), stated(next, "active", { active: iso(0) })] }),
      m: /has 2 superseded CAs: name one with --serial \(\w+ \(retire from 2026-06-01T12:10:01Z\), \w+ \(retire from 2026-06-02T12:10:01Z\)\)/,
    },
    { case: "a signer whose CAs carry no state", serial: () => undefined, d: () => doc({ name: SIGNER, cas: [old, cur] }), m: /carry no rotation state yet/ },
  ])("refuses $case, even with --force", ({ serial, d, m }) => {
    const s = serial();
    const e = refusal(() => retireCa(d(), SIGNER, { ...facts(T), force: true, ...(s === undefined ? {} : { serialHex: s }) }));
    expect(e.message).toMatch(m);
    expect(e.possibleFrom).toBeUndefined();
  });
});

describe("a whole rotation", () => {
  it("prepare → (propagation) → activate → (max lifetime) → retire: one CA signs at every moment, and every CA that signed a valid certificate is published", () => {
    let d = doc({ name: SIGNER, cas: [cur] }); // a pool from ca init
    const check = (now: Date, signing: NewCa, published: NewCa[]) => {
      const pool = parseCaPool(serializeCaPool(d));
      expect(activeCa(pool, SIGNER, now).serialHex).toBe(serialOf(signing));
      expect(publishedCas(pool, SIGNER).map((c) => c.serialHex)).toEqual(published.map(serialOf));
    };
    d = prepareCa(d, SIGNER, next, facts(T)).doc;
    check(T, cur, [cur, next]);
    expect(() => activateCa(d, SIGNER, { ...facts(at(15 * MIN)), force: false })).toThrow(/Activate from 2026-06-01T12:16:01Z/);
    d = activateCa(d, SIGNER, { ...facts(at(16 * MIN)), force: false }).doc;
    check(at(16 * MIN), next, [cur, next]);
    expect(() => retireCa(d, SIGNER, { ...facts(at(DAY)), force: false })).toThrow(/can be valid until 2026-06-02T12:26:01Z .*; retire from then/);
    d = retireCa(d, SIGNER, { ...facts(at(DAY + 26 * MIN)), force: false }).doc;
    check(at(DAY + 26 * MIN), next, [next]);
    expect(statesOf(d).map(([, state]) => state)).toEqual(["retired", "active"]);
  });
});

describe("status", () => {
  const status = (d: CaPoolDocument, now: Date) => poolStatus(d, { now, propagationSeconds: 600, maxLifetimeSeconds: () => LIFETIME });
  const texts = (d: CaPoolDocument, now: Date) => status(d, now)[0]!.cas.map((c) => [c.state, c.signs, c.next.text]);

  it("names each CA's serial, fingerprint, state, since and end", () => {
    const [s] = status(midRotation(), T);
    expect(s!.signerName).toBe(SIGNER);
    expect(s!.maxLifetimeSeconds).toBe(LIFETIME);
    const x = new X509Certificate(next.certificate);
    expect(s!.cas[1]).toMatchObject({ serialHex: x.serialNumber, fingerprintSha256: x.fingerprint256.replace(/:/g, "").toLowerCase(), state: "prepared", signs: false, since: T, notAfter: x.validToDate });
  });

  it("before rotation: the signing CA says by when to rotate (its end - max lifetime - propagation), the others nothing", () => {
    const end = endOf(cur).getTime();
    expect(texts(doc({ name: SIGNER, cas: [old, cur] }), T)).toEqual([
      [null, false, "—"],
      [null, true, `rotate before ${showTime(new Date(end - DAY - 10 * MIN - PUB), "down")}`],
    ]);
  });

  it.each([
    { case: "mid-rotation", d: () => midRotation(), now: T, want: [["active", true, "—"], ["prepared", false, "activate from 2026-06-01T12:16:01Z"]] },
    { case: "mid-rotation, after the propagation time", d: () => midRotation(), now: at(H), want: [["active", true, "—"], ["prepared", false, "activate now"]] },
    {
      case: "after activation",
      d: () => activateCa(midRotation(), SIGNER, { ...facts(at(H)), force: false }).doc,
      now: at(H),
      want: [["superseded", false, "retire from 2026-06-02T13:10:01Z"], ["active", true, () => `rotate before ${showTime(new Date(endOf(next).getTime() - DAY - 10 * MIN - PUB), "down")}`]],
    },
    {
      case: "a prepared CA that can no longer cover a certificate",
      d: () => doc({ name: SIGNER, cas: [stated(cur, "active", { active: iso(-30 * DAY) }), stated(short, "prepared", { prepared: iso(-DAY) })] }),
      now: T,
      want: [["active", true, "—"], ["prepared", false, "retire now: it cannot cover a full certificate when it could be activated; prepare another"]],
    },
    { case: "retired", d: () => doc({ name: SIGNER, cas: [stated(old, "retired", { retired: iso(0) }), stated(cur, "active", { active: iso(0) })] }), now: T, want: [["retired", false, "—"], ["active", true, /^rotate before/]] },
  ])("$case", ({ d, now, want }) => {
    const got = texts(d(), now);
    expect(got.map(([s, g]) => [s, g])).toEqual(want.map(([s, g]) => [s, g]));
    got.forEach(([, , text], i) => {
      const w = want[i]![2];
      if (w instanceof RegExp) expect(text).toMatch(w);
      else expect(text).toBe(typeof w === "function" ? w() : w);
    });
  });

  it.each([
    { case: "close to the deadline", now: (end: number) => end - DAY - 5 * MIN, text: /^rotate now: from \S+ it cannot cover a full certificate$/ },
    { case: "past it: certificates are shortened", now: (end: number) => end - 2 * H, text: /^rotate now: certificates are shortened; signing stops at \S+$/ },
    { case: "in its last hour", now: (end: number) => end - 30 * MIN, text: /^rotate now: it can no longer sign$/ },
  ])("an active CA $case says to rotate now", ({ now, text }) => {
    const d = doc({ name: SIGNER, cas: [stated(short, "active", { active: iso(0) })] });
    const [s] = status(d, new Date(now(endOf(short).getTime())));
    expect(s!.cas[0]!.next.text).toMatch(text);
    expect(s!.next.text).toMatch(text);
  });

  it("the signer's next step is its most pressing one", () => {
    const d = doc({
      name: SIGNER,
      cas: [stated(old, "superseded", { superseded: iso(-DAY) }), stated(cur, "active", { active: iso(0) }), stated(next, "prepared", { prepared: iso(0) })],
    });
    expect(status(d, T)[0]!.next.text).toBe(`activate CA ${serialOf(next)} from 2026-06-01T12:16:01Z`);
    const noPrepared = { ...d, signers: [{ signerName: SIGNER, cas: casOf(d).slice(0, 2) }] };
    expect(status(noPrepared, T)[0]!.next.text).toBe(`retire CA ${serialOf(old)} from 2026-06-01T12:10:01Z`);
  });

  it("says so for a signer that is not configured, instead of guessing its lifetime", () => {
    const [s] = poolStatus(doc({ name: SIGNER, cas: [cur] }), { now: T, propagationSeconds: 600, maxLifetimeSeconds: () => undefined });
    expect(s!.maxLifetimeSeconds).toBeUndefined();
    expect(s!.cas[0]!.next.text).toMatch(/not in the signer configuration/);
  });
});
