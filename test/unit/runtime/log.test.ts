import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { TransientError } from "../../../shared/errors.js";
import { MAX_LOG_LINE_BYTES, MAX_LOG_LIST_ITEMS, MAX_LOG_STRING_LENGTH } from "../../../shared/limits.js";
import { createLogger, redactKeys, silentLogger, type LogLevel } from "../../../shared/runtime/log.js";

function capture(level?: LogLevel, fields?: Record<string, unknown>) {
  const lines: string[] = [];
  const log = createLogger({ ...(level ? { level } : {}), ...(fields ? { fields } : {}), write: (l) => lines.push(l) });
  const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, records };
}

const pkcs8 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const sec1 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "sec1", format: "pem" }).toString();
const rsa1 = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs1", format: "pem" }).toString();
const keyBody = (pem: string) => pem.split("\n")[1]!; // the first base64 line

describe("createLogger", () => {
  it("writes one JSON object per line with time, level, message and fields", () => {
    const { log, lines, records } = capture("debug");
    log.info("issued", { serial: "0a1b", signer: "x/y" });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain("\n");
    const [r] = records();
    expect(r).toMatchObject({ level: "info", msg: "issued", serial: "0a1b", signer: "x/y" });
    expect(new Date(r!.time as string).toISOString()).toBe(r!.time);
  });

  it("keeps a multi-line message on one line", () => {
    const { log, lines, records } = capture();
    log.warn("line one\nline two");
    expect(lines).toHaveLength(1);
    expect(records()[0]!.msg).toBe("line one\nline two");
  });

  it.each<{ level: LogLevel; want: string[] }>([
    { level: "debug", want: ["debug", "info", "warn", "error"] },
    { level: "info", want: ["info", "warn", "error"] },
    { level: "warn", want: ["warn", "error"] },
    { level: "error", want: ["error"] },
  ])("at level $level writes only $want", ({ level, want }) => {
    const { log, records } = capture(level);
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(records().map((r) => r.level)).toEqual(want);
  });

  it("defaults to info", () => {
    const { log, records } = capture();
    log.debug("hidden");
    log.info("shown");
    expect(records().map((r) => r.msg)).toEqual(["shown"]);
  });

  it("child loggers add their fields to every record, without changing the parent", () => {
    const { log, records } = capture("info", { function: "sign" });
    const child = log.child({ pcr: "ate-system/req-abcde" });
    const grandchild = child.child({ attempt: 2 });
    grandchild.info("a");
    child.info("b", { extra: true });
    log.info("c");
    const [a, b, c] = records();
    expect(a).toMatchObject({ function: "sign", pcr: "ate-system/req-abcde", attempt: 2, msg: "a" });
    expect(b).toMatchObject({ function: "sign", pcr: "ate-system/req-abcde", extra: true, msg: "b" });
    expect(b).not.toHaveProperty("attempt");
    expect(c).toMatchObject({ function: "sign", msg: "c" });
    expect(c).not.toHaveProperty("pcr");
  });

  it("a child keeps its parent's level", () => {
    const { log, records } = capture("warn");
    log.child({ x: 1 }).info("hidden");
    log.child({ x: 1 }).error("shown");
    expect(records().map((r) => r.msg)).toEqual(["shown"]);
  });

  it("record fields override child fields of the same name", () => {
    const { log, records } = capture();
    log.child({ step: "a" }).info("m", { step: "b" });
    expect(records()[0]!.step).toBe("b");
  });

  it("serializes errors as name, message and code, without the stack", () => {
    const { log, lines, records } = capture();
    log.error("failed", { error: new TransientError("API server unavailable") });
    expect(records()[0]!.error).toEqual({ name: "TransientError", message: "API server unavailable", code: "ERR_TRANSIENT" });
    expect(lines[0]).not.toContain("    at ");
  });

  it("redacts a PEM private key that slips into a field or an error message", () => {
    const { log, lines } = capture();
    log.info("oops", { caKey: pkcs8 });
    log.error("failed", { error: new Error(`cannot parse ${sec1}`) });
    log.warn(`message with ${rsa1}`);
    for (const [line, pem] of [[lines[0]!, pkcs8], [lines[1]!, sec1], [lines[2]!, rsa1]] as const) {
      expect(line).toContain("[REDACTED PRIVATE KEY]");
      expect(line).not.toContain(keyBody(pem));
      expect(() => JSON.parse(line)).not.toThrow();
    }
  });

  it("cuts long strings and lists, so untrusted values cannot make a line grow without bound", () => {
    const { log, records } = capture();
    log.info("decision", { message: "x".repeat(MAX_LOG_STRING_LENGTH + 10), dnsNames: Array.from({ length: MAX_LOG_LIST_ITEMS + 5 }, (_, i) => `n${i}`), error: new Error("y".repeat(MAX_LOG_STRING_LENGTH + 1)) });
    const r = records()[0]!;
    expect(r.message).toBe(`${"x".repeat(MAX_LOG_STRING_LENGTH)}…(10 more characters)`);
    expect(r.dnsNames).toEqual([...Array.from({ length: MAX_LOG_LIST_ITEMS }, (_, i) => `n${i}`), "…(5 more)"]);
    expect((r.error as { message: string }).message).toBe(`${"y".repeat(MAX_LOG_STRING_LENGTH)}…(1 more characters)`);
  });

  it("keeps only time, level and message of a line that is still too long, saying so", () => {
    const { log, lines, records } = capture();
    // Many short fields: none is cut, together they pass the line limit (an 81 KB line was seen).
    const fields = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`f${i}`, "z".repeat(MAX_LOG_STRING_LENGTH)]));
    log.warn("event rejected", fields);
    expect(Buffer.byteLength(lines[0]!)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES);
    const r = records()[0]!;
    expect(Object.keys(r).sort()).toEqual(["level", "msg", "time", "truncated"]);
    expect(r.truncated).toMatch(/^fields dropped: the line had \d+ bytes, more than 16384$/);
  });

  it("silentLogger writes nothing and its children are silent too", () => {
    expect(() => {
      silentLogger.error("x");
      silentLogger.child({ a: 1 }).info("y");
    }).not.toThrow();
    expect(silentLogger.child({})).toBe(silentLogger);
  });
});

describe("redactKeys", () => {
  it.each([
    { case: "PKCS#8", pem: pkcs8 },
    { case: "SEC1 EC", pem: sec1 },
    { case: "PKCS#1 RSA", pem: rsa1 },
    { case: "encrypted PKCS#8", pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n" },
  ])("removes a $case block, keeping the text around it", ({ pem }) => {
    const out = redactKeys(`before ${pem} after`);
    expect(out).toBe(`before [REDACTED PRIVATE KEY]\n after`);
    expect(out).not.toContain(keyBody(pem));
  });

  it("removes a block inside a JSON string (escaped newlines)", () => {
    const out = redactKeys(JSON.stringify({ k: pkcs8 }));
    expect(out).not.toContain(keyBody(pkcs8));
    expect(JSON.parse(out)).toEqual({ k: "[REDACTED PRIVATE KEY]\n" });
  });

  it("removes a truncated block with no END line", () => {
    const cut = pkcs8.slice(0, 80);
    const out = redactKeys(`x ${cut}`);
    expect(out).toBe("x [REDACTED PRIVATE KEY]");
  });

  it("removes every block, not just the first", () => {
    const out = redactKeys(`${pkcs8}middle${sec1}`);
    expect(out.match(/\[REDACTED PRIVATE KEY\]/g)).toHaveLength(2);
    expect(out).toContain("middle");
  });

  it("leaves certificates and public keys alone", () => {
    const pub = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString();
    const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    expect(redactKeys(pub + cert)).toBe(pub + cert);
  });
});
