import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TransientError } from "../../../shared/errors.js";
import {
  BACKDATE_SECONDS,
  certificateTimes,
  grantedLifetimeSeconds,
  MIN_LIFETIME_SECONDS,
  REFRESH_MARGIN_SECONDS,
} from "../../../shared/policy/lifetime.js";

const HOUR = 3600;
const DAY = 86400;
const s = (d: Date) => d.getTime() / 1000;
const NOW = new Date("2026-03-10T12:34:56.789Z");
const NB = Date.parse("2026-03-10T12:32:56Z") / 1000; // NOW truncated, minus 2 minutes
const FAR = new Date("2036-01-01T00:00:00Z");
const SIGNER = "example.com/identity";
/** The active CA, as far as the times are concerned: its signer (for the message) and its end. */
const ca = (notAfter: Date) => ({ signerName: SIGNER, notAfter });

describe("grantedLifetimeSeconds", () => {
  it.each([
    { case: "profile and request agree", profile: DAY, request: DAY, want: DAY },
    { case: "request asks for less", profile: DAY, request: 2 * HOUR, want: 2 * HOUR },
    { case: "profile allows less", profile: 4 * HOUR, request: DAY, want: 4 * HOUR },
    { case: "request asks for more than the profile", profile: DAY, request: 7862400, want: DAY },
    { case: "request unset: 86400 is the API default", profile: 7862400, request: undefined, want: DAY },
    { case: "request unset, profile shorter", profile: 2 * HOUR, request: undefined, want: 2 * HOUR },
    { case: "exactly one hour", profile: HOUR, request: HOUR, want: HOUR },
    { case: "request below an hour is raised to one hour", profile: DAY, request: 1800, want: HOUR },
    { case: "profile below an hour is raised to one hour", profile: 60, request: DAY, want: HOUR },
  ])("$case", ({ profile, request, want }) => {
    expect(grantedLifetimeSeconds(profile, request)).toBe(want);
  });

  it("is min(profile, request ?? 86400), never below an hour, for any inputs", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), fc.option(fc.integer({ min: 1, max: 10_000_000 }), { nil: undefined }), (p, r) => {
        const g = grantedLifetimeSeconds(p, r);
        expect(g).toBeGreaterThanOrEqual(MIN_LIFETIME_SECONDS);
        expect(g).toBe(Math.max(HOUR, Math.min(p, r ?? DAY)));
      }),
    );
  });
});

describe("certificateTimes", () => {
  it("backdates notBefore by 2 minutes from now truncated to the second, and adds the lifetime", () => {
    const t = certificateTimes({ now: NOW, lifetimeSeconds: DAY, ca: ca(FAR), refreshFraction: 0.5 });
    expect(t.notBefore.toISOString()).toBe("2026-03-10T12:32:56.000Z");
    expect(t.notAfter.toISOString()).toBe("2026-03-11T12:32:56.000Z");
    expect(t.beginRefreshAt.toISOString()).toBe("2026-03-11T00:32:56.000Z");
    expect(BACKDATE_SECONDS).toBe(120);
  });

  it("gives whole seconds even when now and the CA end carry milliseconds", () => {
    const t = certificateTimes({ now: NOW, lifetimeSeconds: DAY, ca: ca(new Date(NB * 1000 + 5 * HOUR * 1000 + 999)), refreshFraction: 0.37 });
    for (const d of [t.notBefore, t.notAfter, t.beginRefreshAt]) expect(d.getTime() % 1000).toBe(0);
    expect(s(t.notAfter)).toBe(NB + 5 * HOUR); // the CA's end, truncated, never after it
  });

  it("caps notAfter at the CA's notAfter", () => {
    const caEnd = new Date((NB + 10 * HOUR) * 1000);
    const t = certificateTimes({ now: NOW, lifetimeSeconds: DAY, ca: ca(caEnd), refreshFraction: 0.5 });
    expect(t.notAfter).toEqual(caEnd);
    expect(s(t.notBefore)).toBe(NB);
    expect(s(t.beginRefreshAt)).toBe(NB + 5 * HOUR); // half of the lifetime actually granted
  });

  it("issues when the CA has exactly an hour left from now (the certificate, backdated, gets a little more)", () => {
    const t = certificateTimes({ now: NOW, lifetimeSeconds: DAY, ca: ca(new Date(NOW.getTime() + HOUR * 1000)), refreshFraction: 0.5 });
    expect(s(t.notAfter)).toBe(Math.floor(NOW.getTime() / 1000) + HOUR);
    expect(s(t.notAfter) - s(t.notBefore)).toBe(HOUR + BACKDATE_SECONDS);
  });

  it.each([
    { case: "one millisecond short of an hour from now", caEndMs: NOW.getTime() + HOUR * 1000 - 1 },
    { case: "an hour from notBefore (not from now)", caEndMs: (NB + HOUR) * 1000 },
    { case: "one second short of an hour from notBefore", caEndMs: (NB + HOUR - 1) * 1000 },
    { case: "ending now", caEndMs: Math.floor(NOW.getTime() / 1000) * 1000 },
    { case: "already expired", caEndMs: (NB - DAY) * 1000 },
  ])("refuses transiently, saying why, when the CA has less than an hour left ($case)", ({ caEndMs }) => {
    let err: unknown;
    try {
      certificateTimes({ now: NOW, lifetimeSeconds: DAY, ca: ca(new Date(caEndMs)), refreshFraction: 0.5 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).overloaded).toBe(false);
    const left = Math.floor((caEndMs - NOW.getTime()) / 1000);
    expect((err as Error).message).toBe(
      `the CA signer ${SIGNER} signs with expires at ${new Date(caEndMs).toISOString()}, ${left}s from now, less than the ${MIN_LIFETIME_SECONDS}s a certificate needs; ` +
        `requests stay pending until a new CA signs. Prepare and activate a new CA: podcert ca rotate --ca-pool <file> --signer ${SIGNER} prepare, then activate (podcert ca status says when)`,
    );
    // The step runner records it as a Warning Event on the PCR (run-step.ts).
    expect(err).toMatchObject({ name: "WaitingError", reason: "CAExpiring" });
  });

  it.each([
    { case: "half of a day", lifetime: DAY, fraction: 0.5, want: NB + 43200 },
    { case: "a fraction rounds down to whole seconds", lifetime: 3601, fraction: 0.5, want: NB + 1800 },
    { case: "odd fraction", lifetime: 10_000, fraction: 0.333, want: NB + 3330 },
    { case: "too early: raised to notBefore + 10 min", lifetime: HOUR, fraction: 0.01, want: NB + REFRESH_MARGIN_SECONDS },
    { case: "too late: lowered to notAfter - 10 min", lifetime: HOUR, fraction: 0.99, want: NB + HOUR - REFRESH_MARGIN_SECONDS },
    { case: "90% of a day fits", lifetime: DAY, fraction: 0.9, want: NB + 77760 },
  ])("beginRefreshAt: $case", ({ lifetime, fraction, want }) => {
    const t = certificateTimes({ now: NOW, lifetimeSeconds: lifetime, ca: ca(FAR), refreshFraction: fraction });
    expect(s(t.beginRefreshAt)).toBe(want);
  });

  /**
   * The kube-apiserver rules (SPEC.md §1) for an Issued status, for the times: whole seconds,
   * notBefore within ±5 minutes of the server clock, a lifetime of at least an hour and at most
   * maxExpirationSeconds, beginRefreshAt within [notBefore + 10 min, notAfter − 10 min]. Plus
   * podcert's own: never past the CA, and notBefore exactly now − 2 min.
   */
  it("property: the three times satisfy kube-apiserver's rules, or a TransientError says the CA ends within the hour", () => {
    const MIN_NOW = Date.parse("2000-01-01T00:00:00Z");
    const MAX_NOW = Date.parse("2090-01-01T00:00:00Z");
    let issued = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: MIN_NOW, max: MAX_NOW }),
        fc.integer({ min: HOUR, max: 7862400 }),
        fc.double({ min: 0.001, max: 0.999, noNaN: true }),
        // CA end relative to now, in ms: from a day before to well past any lifetime
        fc.oneof(fc.integer({ min: -DAY * 1000, max: 3 * HOUR * 1000 }), fc.integer({ min: -DAY * 1000, max: 2 * 7862400 * 1000 })),
        (nowMs, lifetime, fraction, caOffsetMs) => {
          const now = new Date(nowMs);
          const caNotAfter = new Date(nowMs + caOffsetMs);
          const nb = Math.floor(nowMs / 1000) - 120;
          let t;
          try {
            t = certificateTimes({ now, lifetimeSeconds: lifetime, ca: ca(caNotAfter), refreshFraction: fraction });
          } catch (e) {
            expect(e).toBeInstanceOf(TransientError);
            // refused exactly when the CA has less than an hour left from now
            expect(caNotAfter.getTime() - nowMs).toBeLessThan(HOUR * 1000);
            refused++;
            return;
          }
          expect(caNotAfter.getTime() - nowMs).toBeGreaterThanOrEqual(HOUR * 1000);
          issued++;
          const [b, a, r] = [t.notBefore.getTime(), t.notAfter.getTime(), t.beginRefreshAt.getTime()];
          for (const x of [b, a, r]) expect(x % 1000).toBe(0);
          expect(b / 1000).toBe(nb);
          expect(Math.abs(b - nowMs)).toBeLessThanOrEqual(5 * 60 * 1000);
          const life = (a - b) / 1000;
          expect(life).toBeGreaterThanOrEqual(HOUR);
          expect(life).toBeLessThanOrEqual(lifetime);
          expect(a).toBeLessThanOrEqual(caNotAfter.getTime());
          // the full lifetime unless the CA ends first
          expect(life).toBe(Math.min(lifetime, Math.floor(caNotAfter.getTime() / 1000) - nb));
          expect(r).toBeGreaterThanOrEqual(b + 600_000);
          expect(r).toBeLessThanOrEqual(a - 600_000);
        },
      ),
      { numRuns: 2000 },
    );
    expect(issued).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(20);
  });
});
