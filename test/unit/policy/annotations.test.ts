import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_USER_ANNOTATION_VALUE_BYTES as MAX_ANNOTATION_VALUE_BYTES, MAX_USER_ANNOTATIONS as MAX_ANNOTATIONS, MAX_DNS_NAMES } from "../../../shared/limits.js";
import { checkUserAnnotations, parseExpectsService as parseWithMax } from "../../../shared/policy/annotations.js";
import type { SignerProfile } from "../../../shared/profiles/config.js";
import { shortServiceNames } from "../../helpers/objects.js";
import {
  ATESYSTEM_SIGNER,
  defaultSignerConfig,
  EXPECTS_SERVICE_ANNOTATION,
  WORKERPOOL_SIGNER,
} from "../../../shared/profiles/defaults.js";

const ate = defaultSignerConfig().signers.get(ATESYSTEM_SIGNER)!;
const workerpool = defaultSignerConfig().signers.get(WORKERPOOL_SIGNER)!;
const OPT_IN = EXPECTS_SERVICE_ANNOTATION;
const parseExpectsService = (value: string) => parseWithMax(value, MAX_DNS_NAMES);
/** ate with the largest maxNames a profile may set. */
const wide: SignerProfile = { ...ate, dnsNames: { ...ate.dnsNames!, maxNames: 1000 } };


/** A serving-only profile: the opt-in is mandatory. */
const required: Pick<SignerProfile, "name" | "dnsNames"> = {
  name: "servicedns.example.com/serving",
  dnsNames: { optInAnnotation: "servicedns.example.com/expects-service", required: true, maxNames: 100 },
};

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

describe("parseExpectsService: accepted values", () => {
  it.each([
    { case: "exactly true", value: "true", services: { kind: "all" } },
    { case: "one name", value: "web", services: { kind: "named", names: ["web"] } },
    { case: "a list", value: "web,metrics", services: { kind: "named", names: ["web", "metrics"] } },
    { case: "spaces around commas", value: "web , metrics ,  grpc", services: { kind: "named", names: ["web", "metrics", "grpc"] } },
    { case: "leading and trailing spaces", value: "  web  ", services: { kind: "named", names: ["web"] } },
    { case: "digits and dashes inside", value: "a1-b2,x", services: { kind: "named", names: ["a1-b2", "x"] } },
    { case: "exactly 63 characters", value: `a${"b".repeat(62)}`, services: { kind: "named", names: [`a${"b".repeat(62)}`] } },
    { case: "order kept as written", value: "zeta,alpha", services: { kind: "named", names: ["zeta", "alpha"] } },
  ])("$case", ({ value, services }) => {
    expect(parseExpectsService(value)).toEqual({ ok: true, services });
  });
});

describe("parseExpectsService: refused values", () => {
  it.each([
    { case: "empty", value: "", hint: /item 1 is empty/ },
    { case: "only spaces", value: "   ", hint: /item 1 is empty/ },
    { case: "false", value: "false", hint: /"false"|must be "true"/ },
    { case: "True (capitalised)", value: "True", hint: /"True" is not a Service name/ },
    { case: "TRUE", value: "TRUE", hint: /"TRUE"/ },
    { case: "a name with a dot", value: "web.ate-system", hint: /"web.ate-system" is not a Service name/ },
    { case: "a name with capitals", value: "Web", hint: /"Web" is not a Service name/ },
    { case: "a leading digit", value: "1web", hint: /"1web" is not a Service name/ },
    { case: "a leading dash", value: "-web", hint: /"-web"/ },
    { case: "a trailing dash", value: "web-", hint: /"web-"/ },
    { case: "an underscore", value: "my_svc", hint: /"my_svc"/ },
    { case: "64 characters", value: `a${"b".repeat(63)}`, hint: /is not a Service name.*at most 63 characters/ },
    { case: "a duplicate", value: "web,metrics,web", hint: /web is listed twice/ },
    { case: "a duplicate hidden by spaces", value: "web, web", hint: /web is listed twice/ },
    { case: "an empty middle item", value: "a,,b", hint: /item 2 is empty/ },
    { case: "a trailing comma", value: "a,", hint: /item 2 is empty/ },
    { case: "a leading comma", value: ",a", hint: /item 1 is empty/ },
    { case: "semicolons as separators", value: "a;b", hint: /"a;b"/ },
  ])("$case", ({ value, hint }) => {
    const r = parseExpectsService(value);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(/^must be "true" or a comma-separated list of Service names/);
    expect(r.message).toMatch(hint);
  });

  it("lists every problem, not just the first", () => {
    const r = parseExpectsService("Web,,web,web");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain('"Web" is not a Service name');
    expect(r.message).toContain("item 2 is empty");
    expect(r.message).toContain("web is listed twice");
  });

  it("quotes at most 80 characters of a huge item", () => {
    const r = parseExpectsService("X".repeat(5000));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message.length).toBeLessThan(400);
  });
});

describe("parseExpectsService: properties", () => {
  // "true" and "false" are keywords of the annotation, whatever a fix decides about them inside lists.
  const label = fc.stringMatching(/^[a-z]([-a-z0-9]{0,20}[a-z0-9])?$/).filter((l) => l !== "true" && l !== "false");

  it("accepts any list of distinct DNS-1035 labels, whatever the spaces around commas", () => {
    fc.assert(
      fc.property(fc.uniqueArray(label, { minLength: 1, maxLength: 8 }), fc.array(fc.constantFrom("", " ", "  ", "\t"), { minLength: 16, maxLength: 16 }), (names, pads) => {
        const value = names.map((n, i) => `${pads[i * 2]}${n}${pads[i * 2 + 1]}`).join(",");
        expect(parseExpectsService(value)).toEqual({ ok: true, services: { kind: "named", names } });
      }),
    );
  });

  it("never accepts a name that is not a DNS-1035 label, and every accepted name is one", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (value) => {
        const r = parseExpectsService(value);
        if (!r.ok) return;
        if (r.services.kind === "all") {
          expect(value).toBe("true");
          return;
        }
        expect(r.services.kind).toBe("named");
        if (r.services.kind !== "named") return;
        expect(r.services.names.length).toBeGreaterThan(0);
        expect(new Set(r.services.names).size).toBe(r.services.names.length);
        for (const n of r.services.names) {
          expect(n).toMatch(DNS1035);
          expect(n.length).toBeLessThanOrEqual(63);
        }
      }),
    );
  });
});

describe("checkUserAnnotations", () => {
  it("accepts no annotations at all (undefined or empty) as no DNS names", () => {
    expect(checkUserAnnotations(undefined, ate)).toEqual({ ok: true, services: { kind: "none" } });
    expect(checkUserAnnotations({}, ate)).toEqual({ ok: true, services: { kind: "none" } });
    expect(checkUserAnnotations({}, workerpool)).toEqual({ ok: true, services: { kind: "none" } });
  });

  it.each([
    { case: "true", value: "true", services: { kind: "all" } },
    { case: "a list with spaces", value: "web , metrics", services: { kind: "named", names: ["web", "metrics"] } },
  ])("returns what the opt-in asks for: $case", ({ value, services }) => {
    expect(checkUserAnnotations({ [OPT_IN]: value }, ate)).toEqual({ ok: true, services });
  });

  it.each([
    { case: "empty", value: "" },
    { case: "false", value: "false" },
    { case: "True", value: "True" },
    { case: "a dotted name", value: "web.ate-system.svc" },
    { case: "a duplicate", value: "web,web" },
    { case: "a trailing comma", value: "web," },
  ])("denies a bad opt-in value ($case), naming the annotation", ({ value }) => {
    const r = checkUserAnnotations({ [OPT_IN]: value }, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message.startsWith(`${OPT_IN}: `)).toBe(true);
  });

  it("denies an unknown key and names it and the accepted key", () => {
    const r = checkUserAnnotations({ "example.com/other": "x" }, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain('"example.com/other"');
    expect(r.message).toContain(ATESYSTEM_SIGNER);
    expect(r.message).toContain(OPT_IN);
  });

  it("denies an unknown key even next to a valid opt-in, and lists all unknown keys sorted", () => {
    const r = checkUserAnnotations({ [OPT_IN]: "true", "z.example.com/b": "1", "a.example.com/a": "2" }, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(/"a\.example\.com\/a", "z\.example\.com\/b"/);
    expect(r.message).not.toContain(`"${OPT_IN}"`);
  });

  it("names at most five unknown keys and counts the rest", () => {
    const keys = Array.from({ length: 32 }, (_, i) => `k${String(i).padStart(2, "0")}.example.com/x`);
    const r = checkUserAnnotations(Object.fromEntries(keys.map((k) => [k, "v"])), ate);
    expect(r).toMatchObject({ ok: false, reason: "InvalidUnverifiedUserAnnotations" });
    expect(r.ok ? "" : r.message).toBe(
      `unknown unverifiedUserAnnotations key(s) ${keys.slice(0, 5).map((k) => JSON.stringify(k)).join(", ")}, and 27 more keys for signer ${ate.name} (accepted: ${OPT_IN})`,
    );
  });

  it("denies the ate-system opt-in on a signer that has no DNS names (workerpool), saying none are accepted", () => {
    const r = checkUserAnnotations({ [OPT_IN]: "true" }, workerpool);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain(`"${OPT_IN}"`);
    expect(r.message).toContain(WORKERPOOL_SIGNER);
    expect(r.message).toContain("accepted: none");
  });

  it("treats keys case-sensitively (a capitalised copy of the opt-in key is unknown)", () => {
    const r = checkUserAnnotations({ [OPT_IN.toUpperCase()]: "true" }, ate);
    expect(r.ok).toBe(false);
  });

  it("truncates a huge unknown key in the message", () => {
    const key = `example.com/${"k".repeat(10_000)}`;
    const r = checkUserAnnotations({ [key]: "x" }, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message.length).toBeLessThan(1000);
  });

  it(`denies more than ${MAX_ANNOTATIONS} annotations; exactly ${MAX_ANNOTATIONS} pass the count check`, () => {
    const many = Object.fromEntries(Array.from({ length: MAX_ANNOTATIONS + 1 }, (_, i) => [`example.com/k${i}`, "v"]));
    const r = checkUserAnnotations(many, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain(`${MAX_ANNOTATIONS + 1} unverifiedUserAnnotations`);
    expect(r.message).toContain(`at most ${MAX_ANNOTATIONS}`);
    // With exactly the maximum the count is fine, and the unknown-key rule speaks instead.
    const atMax = Object.fromEntries(Array.from({ length: MAX_ANNOTATIONS }, (_, i) => [`example.com/k${i}`, "v"]));
    const r2 = checkUserAnnotations(atMax, ate);
    expect(r2.ok).toBe(false);
    if (r2.ok) return;
    expect(r2.message).toMatch(/unknown unverifiedUserAnnotations key/);
  });

  it("denies an oversized opt-in value before parsing it, and accepts one at the limit", () => {
    // A list of distinct valid names (60 characters each) just under the byte limit.
    const names: string[] = [];
    let len = 0;
    for (let i = 0; len + 61 < MAX_ANNOTATION_VALUE_BYTES; i++) {
      const n = `s${i.toString().padStart(59, "0")}`;
      names.push(n);
      len += n.length + 1;
    }
    const ok = names.join(",");
    expect(Buffer.byteLength(ok)).toBeLessThanOrEqual(MAX_ANNOTATION_VALUE_BYTES);
    const r1 = checkUserAnnotations({ [OPT_IN]: ok }, wide);
    expect(r1).toEqual({ ok: true, services: { kind: "named", names } });

    const big = `${ok},${"x".repeat(MAX_ANNOTATION_VALUE_BYTES)}`;
    const r2 = checkUserAnnotations({ [OPT_IN]: big }, wide);
    expect(r2).toEqual({ ok: false, reason: "InvalidUnverifiedUserAnnotations", message: `${OPT_IN}: value longer than ${MAX_ANNOTATION_VALUE_BYTES} bytes` });
  });

  it.each([
    { case: "the profile's maxNames / 2", profile: ate, count: 50, ok: true },
    { case: "one more than maxNames / 2", profile: ate, count: 51, ok: false },
    { case: "1,100 short names (largest maxNames)", profile: wide, count: 1100, ok: false },
    { case: "500 short names (largest maxNames)", profile: wide, count: 500, ok: true },
  ])("counts the named Services against maxNames: $case", ({ profile, count, ok }) => {
    const names = shortServiceNames(count);
    const value = names.join(",");
    expect(Buffer.byteLength(value)).toBeLessThanOrEqual(MAX_ANNOTATION_VALUE_BYTES);
    const r = checkUserAnnotations({ [OPT_IN]: value }, profile);
    if (ok) expect(r).toEqual({ ok: true, services: { kind: "named", names } });
    else {
      expect(r).toMatchObject({ ok: false, reason: "TooManyDNSNames" });
      expect(r.ok ? "" : r.message).toBe(`${OPT_IN}: names ${count} Services, at least ${count * 2} DNS names; this signer puts at most ${profile.dnsNames!.maxNames} in a certificate`);
    }
  });

  it("bounds the message for a value of nothing but commas, listing five problems and counting the rest", () => {
    const r = checkUserAnnotations({ [OPT_IN]: ",".repeat(MAX_ANNOTATION_VALUE_BYTES - 1) }, ate);
    expect(r).toMatchObject({ ok: false, reason: "InvalidUnverifiedUserAnnotations" });
    const message = r.ok ? "" : r.message;
    expect(message).toBe(
      `${OPT_IN}: must be "true" or a comma-separated list of Service names: item 1 is empty; item 2 is empty; item 3 is empty; item 4 is empty; item 5 is empty; and ${MAX_ANNOTATION_VALUE_BYTES - 5} more problems`,
    );
  });

  it("counts the value size in UTF-8 bytes, not characters", () => {
    const value = "é".repeat(MAX_ANNOTATION_VALUE_BYTES / 2 + 1); // > limit in bytes, < limit in chars
    const r = checkUserAnnotations({ [OPT_IN]: value }, ate);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(/value longer than/);
  });

  describe("a profile that requires the opt-in", () => {
    const key = required.dnsNames!.optInAnnotation;

    it.each([
      { case: "no annotations", annotations: undefined },
      { case: "an empty map", annotations: {} },
    ])("denies a request without it ($case), naming the annotation", ({ annotations }) => {
      const r = checkUserAnnotations(annotations, required);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.message).toContain(key);
      expect(r.message).toContain(required.name);
    });

    it("accepts it with true or a list", () => {
      expect(checkUserAnnotations({ [key]: "true" }, required)).toEqual({ ok: true, services: { kind: "all" } });
      expect(checkUserAnnotations({ [key]: "a,b" }, required)).toEqual({ ok: true, services: { kind: "named", names: ["a", "b"] } });
    });

    it("still reports a bad value as a bad value, not as missing", () => {
      const r = checkUserAnnotations({ [key]: "True" }, required);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.message.startsWith(`${key}: must be "true"`)).toBe(true);
    });
  });
});
