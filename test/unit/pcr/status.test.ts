/**
 * shared/pcr/status.ts: the statuses the deny and sign steps write, checked against the rules
 * kube-apiserver applies to them (shared/pcr/status-rules.ts).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pcrStatusUpdateErrors } from "../../../shared/pcr/status-rules.js";
import { boundConditionMessage, MAX_CONDITION_MESSAGE_BYTES } from "../../../shared/limits.js";
import { deniedStatus, issuedStatus, rfc3339Seconds } from "../../../shared/pcr/status.js";
import { DENIAL_REASONS } from "../../../shared/policy/reasons.js";
import { pcrFor, pod } from "../../helpers/objects.js";

const NOW = new Date("2026-05-01T10:00:00.987Z");
const WHOLE_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

describe("rfc3339Seconds", () => {
  it.each([
    { case: "drops milliseconds", d: "2026-05-01T10:00:00.987Z", want: "2026-05-01T10:00:00Z" },
    { case: "truncates, never rounds up", d: "2026-05-01T10:00:59.999Z", want: "2026-05-01T10:00:59Z" },
    { case: "a whole second stays", d: "2026-05-01T10:00:00.000Z", want: "2026-05-01T10:00:00Z" },
    { case: "one millisecond", d: "2026-05-01T10:00:00.001Z", want: "2026-05-01T10:00:00Z" },
  ])("$case", ({ d, want }) => {
    expect(rfc3339Seconds(new Date(d))).toBe(want);
  });

  it("always gives whole-second UTC equal to the truncated time (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.parse("1970-01-01T00:00:00Z"), max: Date.parse("9999-12-31T23:59:59.999Z") }), (ms) => {
        const out = rfc3339Seconds(new Date(ms));
        expect(out).toMatch(WHOLE_SECONDS);
        expect(Date.parse(out)).toBe(Math.floor(ms / 1000) * 1000);
      }),
    );
  });
});

describe("deniedStatus", () => {
  it("writes Denied for a request at fault", () => {
    expect(deniedStatus({ reason: "PodMismatch", message: "pod web-0 does not exist", permanent: false, now: NOW })).toEqual({
      conditions: [{ type: "Denied", status: "True", reason: "PodMismatch", message: "pod web-0 does not exist", lastTransitionTime: "2026-05-01T10:00:00Z" }],
    });
  });

  it("writes Failed only when permanent", () => {
    const s = deniedStatus({ reason: "UnsupportedKeyType", message: "m", permanent: true, now: NOW });
    expect(s.conditions?.map((c) => c.type)).toEqual(["Failed"]);
  });

  it("sets nothing but the one condition (Denied/Failed leave every other field empty)", () => {
    for (const permanent of [false, true]) {
      const s = deniedStatus({ reason: "NamespaceNotAllowed", message: "m", permanent, now: NOW });
      expect(Object.keys(s)).toEqual(["conditions"]);
      expect(s.conditions).toHaveLength(1);
    }
  });

  it.each([
    { case: "ASCII, 100 KiB", message: "x".repeat(100 * 1024) },
    { case: "ASCII, one byte over", message: "y".repeat(MAX_CONDITION_MESSAGE_BYTES + 1) },
    { case: "two-byte characters", message: "é".repeat(MAX_CONDITION_MESSAGE_BYTES) },
    { case: "four-byte characters", message: "🔑".repeat(MAX_CONDITION_MESSAGE_BYTES / 2) },
    { case: "four-byte characters, just over", message: "🔑".repeat(MAX_CONDITION_MESSAGE_BYTES / 4 + 1) },
    { case: "1 MiB of quoted input", message: `unknown key ${JSON.stringify("k".repeat(1 << 20))}` },
  ])("cuts a message over 32 KiB to fit, keeping its start ($case)", ({ message }) => {
    const m = deniedStatus({ reason: "InvalidUnverifiedUserAnnotations", message, permanent: false, now: NOW }).conditions![0]!.message;
    expect(Buffer.byteLength(m)).toBeLessThanOrEqual(MAX_CONDITION_MESSAGE_BYTES);
    expect(m.length).toBeGreaterThan(1000); // cut, not emptied
    expect(message.startsWith(m.slice(0, 100))).toBe(true);
    expect(m.endsWith("…")).toBe(true);
    // never half a character: a lone UTF-16 surrogate would reach the API server as U+FFFD
    expect(m).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });

  it("keeps a message of exactly 32 KiB unchanged", () => {
    const message = "z".repeat(MAX_CONDITION_MESSAGE_BYTES);
    expect(deniedStatus({ reason: "PodMismatch", message, permanent: false, now: NOW }).conditions![0]!.message).toBe(message);
  });

  it("cuts messages at the very bound the status rules check: one definition on both sides", () => {
    const pcr = pcrFor(pod(), { signerName: "atesystem.podcert.ate.dev/identity" });
    const withMessage = (message: string) => ({ conditions: [{ type: "Denied" as const, status: "True" as const, reason: "PodMismatch", message, lastTransitionTime: "2026-05-01T10:00:00Z" }] });
    const atLimit = "a".repeat(MAX_CONDITION_MESSAGE_BYTES);
    expect(pcrStatusUpdateErrors(pcr, withMessage(atLimit), NOW)).toEqual([]);
    expect(pcrStatusUpdateErrors(pcr, withMessage(`${atLimit}a`), NOW)).toEqual([`status.conditions[0].message: may not be more than ${MAX_CONDITION_MESSAGE_BYTES} bytes`]);
    expect(boundConditionMessage(atLimit)).toBe(atLimit);
    fc.assert(
      fc.property(fc.string({ unit: "binary", minLength: MAX_CONDITION_MESSAGE_BYTES / 4, maxLength: MAX_CONDITION_MESSAGE_BYTES }), (message) => {
        const m = deniedStatus({ reason: "PodMismatch", message, permanent: false, now: NOW }).conditions![0]!.message;
        expect(m).toBe(boundConditionMessage(message));
        expect(pcrStatusUpdateErrors(pcr, withMessage(m), NOW)).toEqual([]);
      }),
      { numRuns: 50 },
    );
  });

  it("is accepted by the kube-apiserver status rules, even with an oversized message", () => {
    const pcr = pcrFor(pod(), { signerName: "atesystem.podcert.ate.dev/identity" });
    for (const permanent of [false, true]) {
      const status = deniedStatus({ reason: "PodMismatch", message: "m".repeat(100_000), permanent, now: NOW });
      expect(pcrStatusUpdateErrors(pcr, status, NOW)).toEqual([]);
    }
  });
});

describe("issuedStatus", () => {
  it("writes Issued with whole-second times and the chain as given", () => {
    const s = issuedStatus({
      chainPem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      notBefore: new Date("2026-05-01T09:58:00.500Z"),
      notAfter: new Date("2026-05-02T09:58:00.999Z"),
      beginRefreshAt: new Date("2026-05-01T21:58:00.001Z"),
      message: "issued",
      now: NOW,
    });
    expect(s).toEqual({
      conditions: [{ type: "Issued", status: "True", reason: "Issued", message: "issued", lastTransitionTime: "2026-05-01T10:00:00Z" }],
      certificateChain: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      notBefore: "2026-05-01T09:58:00Z",
      notAfter: "2026-05-02T09:58:00Z",
      beginRefreshAt: "2026-05-01T21:58:00Z",
    });
  });
});

describe("condition reasons, as kube-apiserver's status rules (shared/pcr/status-rules.ts) check them", () => {
  const pcr = pcrFor(pod(), { signerName: "atesystem.podcert.ate.dev/identity" });
  const errorsFor = (reason: string, permanent = false) => pcrStatusUpdateErrors(pcr, deniedStatus({ reason, message: "m", permanent, now: NOW }), NOW);
  // Every reason podcert denies with (policy/reasons.ts, the one list).
  it.each([...DENIAL_REASONS])("accepts the denial reason %s, as Denied and as Failed", (reason) => {
    expect(errorsFor(reason, false)).toEqual([]);
    expect(errorsFor(reason, true)).toEqual([]);
  });

  it.each(["A", "a_b:c,d1", "Ends_"])("accepts %s", (reason) => {
    expect(errorsFor(reason)).toEqual([]);
  });

  it.each(["1abc", "Bad Reason", "Trailing,", "Trailing:", "dash-ed"])("refuses %j", (reason) => {
    expect(errorsFor(reason)).toEqual([expect.stringMatching(/^status\.conditions\[0\]\.reason: a condition reason must start with alphabetic character/)]);
  });

  it("refuses an empty reason", () => {
    expect(errorsFor("")).toEqual([expect.stringMatching(/^status\.conditions\[0\]\.reason: Required value/)]);
  });
});
