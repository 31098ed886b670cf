import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pemDecodeAll, pemDecodeLabel, pemEncode } from "../../../shared/x509/pem.js";

describe("pemEncode", () => {
  it("wraps base64 at 64 characters with BEGIN/END lines", () => {
    const der = Buffer.alloc(100, 0xaa);
    const pem = pemEncode("CERTIFICATE", der);
    const lines = pem.trimEnd().split("\n");
    expect(lines[0]).toBe("-----BEGIN CERTIFICATE-----");
    expect(lines.at(-1)).toBe("-----END CERTIFICATE-----");
    expect(lines[1]).toHaveLength(64);
    expect(lines.slice(1, -1).join("")).toBe(der.toString("base64"));
    expect(pem.endsWith("\n")).toBe(true);
    expect(() => pemEncode("", der)).toThrow();
    expect(() => pemEncode("BAD--LABEL", der)).toThrow();
  });

  it("round-trips any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.constantFrom("CERTIFICATE", "PRIVATE KEY"), (b, label) => {
        const [block, ...rest] = pemDecodeAll(pemEncode(label, b));
        expect(rest).toHaveLength(0);
        expect(block!.label).toBe(label);
        expect(Buffer.compare(block!.der, Buffer.from(b))).toBe(0);
      }),
    );
  });
});

describe("pemDecodeAll", () => {
  const a = randomBytes(70);
  const b = randomBytes(33);
  const two = pemEncode("CERTIFICATE", a) + pemEncode("PRIVATE KEY", b);

  it("decodes several blocks in order, tolerating CRLF and text between blocks", () => {
    const text = "subject=CN=x\n" + two.replace(/\n/g, "\r\n") + "trailing words\n";
    const blocks = pemDecodeAll(text);
    expect(blocks.map((x) => x.label)).toEqual(["CERTIFICATE", "PRIVATE KEY"]);
    expect(blocks[0]!.der.equals(a)).toBe(true);
    expect(blocks[1]!.der.equals(b)).toBe(true);
    expect(pemDecodeAll("no pem here")).toEqual([]);
  });

  it("rejects PEM headers inside a block", () => {
    const withHeader = pemEncode("RSA PRIVATE KEY", a).replace(
      "-----\n",
      "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
    );
    expect(() => pemDecodeAll(withHeader)).toThrow(/headers are not supported/);
  });

  it("rejects garbage and non-canonical base64", () => {
    const good = pemEncode("CERTIFICATE", Buffer.from([1, 2, 3, 4]));
    expect(() => pemDecodeAll(good.replace("AQIDBA==", "AQID*A=="))).toThrow(/outside base64/);
    expect(() => pemDecodeAll(good.replace("AQIDBA==", "AQIDBA="))).toThrow(/not valid base64/);
    expect(() => pemDecodeAll(good.replace("AQIDBA==", "AQ==IDBA"))).toThrow(/not valid base64/);
    // 'AQIDBB==' decodes to the same bytes with non-zero padding bits
    expect(() => pemDecodeAll(good.replace("AQIDBA==", "AQIDBB=="))).toThrow(/canonical/);
    expect(() => pemDecodeAll("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")).toThrow(/empty/);
  });

  it("rejects mismatched, missing and stray BEGIN/END lines", () => {
    expect(() => pemDecodeAll(pemEncode("CERTIFICATE", a).replace("END CERTIFICATE", "END PRIVATE KEY"))).toThrow(
      /does not match/,
    );
    expect(() => pemDecodeAll(pemEncode("CERTIFICATE", a).replace(/-----END[^\n]*\n/, ""))).toThrow(/no END/);
    expect(() => pemDecodeAll("-----END CERTIFICATE-----\n")).toThrow(/without BEGIN/);
    const nested = pemEncode("CERTIFICATE", a).replace("-----END", "-----BEGIN X-----\n-----END");
    expect(() => pemDecodeAll(nested)).toThrow(/BEGIN inside/);
  });

  it("never quotes the input in its errors", () => {
    const secret = randomBytes(48).toString("base64");
    const text = `-----BEGIN PRIVATE KEY-----\n${secret}\nOops: ${secret}\n-----END PRIVATE KEY-----\n`;
    let msg = "";
    try {
      pemDecodeAll(text);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/headers/);
    expect(msg).not.toContain(secret.slice(0, 16));
    const bad = `-----BEGIN PRIVATE KEY-----\n${secret}!\n-----END PRIVATE KEY-----\n`;
    expect(() => pemDecodeAll(bad)).toThrow(/PRIVATE KEY block contains characters outside base64/);
    try {
      pemDecodeAll(bad);
    } catch (e) {
      expect((e as Error).message).not.toContain(secret.slice(0, 16));
    }
  });

  it("pemDecodeLabel insists on one label", () => {
    expect(pemDecodeLabel(pemEncode("CERTIFICATE", a), "CERTIFICATE")).toHaveLength(1);
    expect(() => pemDecodeLabel(two, "CERTIFICATE")).toThrow(/PRIVATE KEY block/);
    expect(() => pemDecodeLabel("", "CERTIFICATE")).toThrow(/no CERTIFICATE/);
  });
});
