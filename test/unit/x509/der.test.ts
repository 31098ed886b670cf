// asn1js is the BER/DER parser underneath @peculiar/asn1-schema (installed with @peculiar/x509);
// it serves as an independent decoder for the hand-written encoder.
import * as asn1js from "asn1js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bitString,
  boolean,
  decodeInteger,
  decodeOid,
  encodeLength,
  explicit,
  headerLength,
  generalizedTime,
  ia5String,
  implicit,
  integer,
  integerFromBytes,
  nullValue,
  octetString,
  oid,
  podIdentityExtensionValue,
  printableString,
  readChildren,
  readSingle,
  readTlv,
  sequence,
  set,
  time,
  utcTime,
  utf8String,
  validateExtensionOid,
  value,
  writeHeader,
} from "../../../shared/x509/der.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function ber(b: Uint8Array) {
  const ab = new Uint8Array(b).buffer;
  const r = asn1js.fromBER(ab);
  expect(r.offset).toBe(b.length);
  return r.result;
}

describe("DER primitives (known encodings)", () => {
  it("encodes lengths minimally", () => {
    expect(hex(encodeLength(0))).toBe("00");
    expect(hex(encodeLength(127))).toBe("7f");
    expect(hex(encodeLength(128))).toBe("8180");
    expect(hex(encodeLength(255))).toBe("81ff");
    expect(hex(encodeLength(256))).toBe("820100");
    expect(hex(encodeLength(65535))).toBe("82ffff");
    expect(hex(encodeLength(65536))).toBe("83010000");
    expect(() => encodeLength(-1)).toThrow();
  });

  it("sizes TLV headers for every length form", () => {
    for (const [n, head] of [
      [0, "0400"],
      [127, "047f"],
      [128, "048180"],
      [300, "0482012c"],
      [70000, "0483011170"],
    ] as const) {
      const enc = octetString(Buffer.alloc(n, 1));
      expect(hex(enc.subarray(0, head.length / 2))).toBe(head);
      expect(enc.length).toBe(head.length / 2 + n);
      // The hot path's in-place writer (leaf issuance) makes the same header.
      expect(headerLength(n)).toBe(head.length / 2);
      const buf = Buffer.alloc(2 + head.length / 2, 0xee);
      expect(writeHeader(buf, 1, 0x04, n)).toBe(1 + head.length / 2);
      expect(hex(buf)).toBe(`ee${head}ee`);
    }
  });

  it("writes the longest lengths in four octets and refuses what is not a length", () => {
    for (const [n, head] of [
      [0xffffff, "0483ffffff"],
      [0x1000000, "048401000000"],
      [0xffffffff, "0484ffffffff"],
    ] as const) {
      expect(headerLength(n)).toBe(head.length / 2);
      const buf = Buffer.alloc(head.length / 2);
      writeHeader(buf, 0, 0x04, n);
      expect(hex(buf)).toBe(head);
      expect(hex(encodeLength(n))).toBe(head.slice(2));
    }
    for (const n of [-1, 1.5, NaN, 2 ** 32]) {
      expect(() => headerLength(n)).toThrow(RangeError);
      expect(() => writeHeader(Buffer.alloc(8), 0, 0x04, n)).toThrow(RangeError);
    }
  });

  it("encodes positive integers from bytes with leading-zero handling", () => {
    expect(hex(integerFromBytes(Buffer.from([])))).toBe("020100");
    expect(hex(integerFromBytes(Buffer.from([0, 0])))).toBe("020100");
    expect(hex(integerFromBytes(Buffer.from([0, 0, 1])))).toBe("020101");
    expect(hex(integerFromBytes(Buffer.from([0x7f])))).toBe("02017f");
    expect(hex(integerFromBytes(Buffer.from([0x80])))).toBe("02020080");
    expect(hex(integerFromBytes(Buffer.from([0x00, 0x80])))).toBe("02020080");
    expect(hex(integerFromBytes(Buffer.from([0x00, 0x00, 0xff, 0x01])))).toBe("020300ff01");
  });

  it("encodes signed integers minimally", () => {
    expect(hex(integer(0))).toBe("020100");
    expect(hex(integer(127))).toBe("02017f");
    expect(hex(integer(128))).toBe("02020080");
    expect(hex(integer(256))).toBe("02020100");
    expect(hex(integer(-1))).toBe("0201ff");
    expect(hex(integer(-128))).toBe("020180");
    expect(hex(integer(-129))).toBe("0202ff7f");
    expect(hex(integer(2n ** 64n))).toBe("0209010000000000000000");
    expect(() => integer(2 ** 60)).toThrow();
  });

  it("encodes OIDs", () => {
    expect(hex(oid("1.2.840.113549.1.1.11"))).toBe("06092a864886f70d01010b");
    expect(hex(oid("2.5.29.17"))).toBe("0603551d11");
    expect(hex(oid("2.999.3"))).toBe("0603883703"); // X.690 example
    expect(hex(oid("1.3.101.112"))).toBe("06032b6570");
    expect(() => oid("1.40")).toThrow();
    expect(() => oid("3.1")).toThrow();
    expect(() => oid("1")).toThrow();
    expect(() => oid("1.2.03")).toThrow();
  });

  it("encodes strings, booleans, null, bit strings", () => {
    expect(hex(utf8String("é"))).toBe("0c02c3a9");
    expect(hex(printableString("Ab 1"))).toBe("130441622031");
    expect(() => printableString("a@b")).toThrow();
    expect(hex(ia5String("a.b"))).toBe("1603612e62");
    expect(() => ia5String("é")).toThrow();
    expect(hex(boolean(true))).toBe("0101ff");
    expect(hex(boolean(false))).toBe("010100");
    expect(hex(nullValue())).toBe("0500");
    expect(hex(bitString(Buffer.from([0x80]), 7))).toBe("03020780");
    expect(hex(bitString(Buffer.from([0xde, 0xad])))).toBe("030300dead");
    expect(() => bitString(Buffer.from([1]), 8)).toThrow();
  });

  it("encodes SEQUENCE and sorts SET OF", () => {
    expect(hex(sequence())).toBe("3000");
    expect(hex(sequence(integer(1), boolean(true)))).toBe("30060201010101ff");
    expect(hex(set(integer(2), integer(1)))).toBe("3106020101020102");
  });

  it("encodes explicit and implicit context tags", () => {
    expect(hex(explicit(0, integer(2)))).toBe("a003020102");
    expect(hex(explicit(3, sequence()))).toBe("a3023000");
    expect(hex(implicit(6, Buffer.from("a")))).toBe("860161");
    expect(hex(implicit(0, Buffer.from([1, 2]), true))).toBe("a0020102");
    expect(() => explicit(31, sequence())).toThrow();
  });

  it("uses UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280), whole seconds, Z", () => {
    const s = (b: Buffer) => b.subarray(2).toString("latin1");
    const last = new Date("2049-12-31T23:59:59.999Z");
    expect(time(last)[0]).toBe(0x17);
    expect(s(time(last))).toBe("491231235959Z");
    const first2050 = new Date("2050-01-01T00:00:00.000Z");
    expect(time(first2050)[0]).toBe(0x18);
    expect(s(time(first2050))).toBe("20500101000000Z");
    expect(s(time(new Date("1950-01-01T00:00:00Z")))).toBe("500101000000Z");
    expect(time(new Date("1949-12-31T23:59:59Z"))[0]).toBe(0x18);
    expect(s(time(new Date("2026-03-04T05:06:07.890Z")))).toBe("260304050607Z");
    expect(s(generalizedTime(new Date("2026-03-04T05:06:07.890Z")))).toBe("20260304050607Z");
    expect(() => utcTime(first2050)).toThrow();
    expect(() => time(new Date(NaN))).toThrow();
  });

  it("builds the pod identity extension value as SEQUENCE of five UTF8String", () => {
    const fields = ["pod-a", "uid-ü", "node-1", "nuid", "sauid"] as const;
    const der = podIdentityExtensionValue(fields);
    const seq = ber(der) as asn1js.Sequence;
    expect(seq).toBeInstanceOf(asn1js.Sequence);
    const items = seq.valueBlock.value;
    expect(items).toHaveLength(5);
    items.forEach((it, i) => {
      expect(it).toBeInstanceOf(asn1js.Utf8String);
      expect((it as asn1js.Utf8String).getValue()).toBe(fields[i]);
    });
  });
});

describe("validateExtensionOid", () => {
  it("accepts well-formed OIDs Go can parse", () => {
    for (const o of ["1.3.6.1.4.1.32473.1.1", "2.5.29.17", "2.999", "0.39", "1.2.2147483647", "2.2147483567"]) {
      expect(validateExtensionOid(o), o).toBeUndefined();
    }
  });

  it("rejects a full UUID-derived 2.25 OID (arc >= 2^31)", () => {
    const uuid = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
    const asInt = BigInt("0x" + uuid.replace(/-/g, "")).toString();
    const msg = validateExtensionOid(`2.25.${asInt}`);
    expect(msg).toMatch(/2\^31/);
  });

  it("rejects arcs of 2^31 and a combined first subidentifier of 2^31", () => {
    expect(validateExtensionOid("1.2.2147483648")).toMatch(/2\^31/);
    expect(validateExtensionOid("1.2.99999999999999999999")).toMatch(/2\^31/);
    expect(validateExtensionOid("2.2147483568")).toMatch(/2\^31/);
  });

  it("rejects malformed OIDs", () => {
    for (const o of ["", "1", "1.", ".1", "1..2", "01.2", "1.02", "3.1", "1.40", "0.40", "a.b", "1.2.-3", " 1.2", "1.2 "]) {
      expect(validateExtensionOid(o), JSON.stringify(o)).toBeTypeOf("string");
    }
  });
});

describe("strict DER reader", () => {
  it("reads nested structures", () => {
    const der = sequence(integer(5), sequence(oid("2.5.29.17")));
    const top = readSingle(der, 0x30);
    const [a, b] = readChildren(der, top);
    expect(decodeInteger(value(der, a!))).toBe(5n);
    const [o] = readChildren(der, b!);
    expect(decodeOid(value(der, o!))).toBe("2.5.29.17");
  });

  it("rejects non-DER and malformed input", () => {
    expect(() => readTlv(Buffer.from("3080020100 0000".replace(/ /g, ""), "hex"), 0)).toThrow(/indefinite/);
    expect(() => readTlv(Buffer.from("30810302 0100".replace(/ /g, ""), "hex"), 0)).toThrow(/non-minimal/);
    expect(() => readTlv(Buffer.from("3082000302 0100".replace(/ /g, ""), "hex"), 0)).toThrow(/non-minimal/);
    expect(() => readTlv(Buffer.from("300502", "hex"), 0)).toThrow(/past/);
    expect(() => readTlv(Buffer.from("30", "hex"), 0)).toThrow(/truncated/);
    expect(() => readTlv(Buffer.from("1f0100", "hex"), 0)).toThrow(/multi-byte/);
    expect(() => readSingle(Buffer.from("300000", "hex"))).toThrow(/trailing/);
    expect(() => readSingle(Buffer.from("3000", "hex"), 0x31)).toThrow(/expected/);
    expect(() => decodeInteger(Buffer.from("0001", "hex"))).toThrow(/non-minimal/);
    expect(() => decodeInteger(Buffer.from("ff80", "hex"))).toThrow(/non-minimal/);
    expect(() => decodeOid(Buffer.from("2a80", "hex"))).toThrow();
    expect(() => decodeOid(Buffer.from("2a8001", "hex"))).toThrow(/non-minimal/);
  });
});

describe("DER round trips (property tests against asn1js)", () => {
  it("integerFromBytes decodes to the unsigned value of the bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const expected = bytes.length === 0 ? 0n : BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0"));
        const der = integerFromBytes(bytes);
        const parsed = ber(der) as asn1js.Integer;
        expect(parsed).toBeInstanceOf(asn1js.Integer);
        expect(parsed.toBigInt()).toBe(expected);
        // minimal: our strict reader agrees and rejects nothing
        expect(decodeInteger(value(der, readSingle(der, 0x02)))).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it("integer(bigint) decodes to the same signed value", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }), (n) => {
        const der = integer(n);
        expect((ber(der) as asn1js.Integer).toBigInt()).toBe(n);
        expect(decodeInteger(value(der, readSingle(der, 0x02)))).toBe(n);
      }),
      { numRuns: 500 },
    );
  });

  it("lengths round-trip for contents up to 70000 bytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 255 }), (n, fill) => {
        const der = octetString(Buffer.alloc(n, fill));
        const parsed = ber(der) as asn1js.OctetString;
        expect(parsed).toBeInstanceOf(asn1js.OctetString);
        expect(parsed.valueBlock.valueHexView.length).toBe(n);
        const t = readSingle(der, 0x04);
        expect(t.end - t.valueStart).toBe(n);
      }),
      { numRuns: 200 },
    );
  });

  it("OIDs round-trip", () => {
    const arb = fc
      .tuple(
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 0, max: 39 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.array(fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.maxSafeNat()), {
          maxLength: 12,
        }),
      )
      .map(([a, b, big, rest]) => [a, a === 2 ? big : b, ...rest].join("."));
    fc.assert(
      fc.property(arb, (dotted) => {
        const der = oid(dotted);
        const parsed = ber(der) as asn1js.ObjectIdentifier;
        expect(parsed).toBeInstanceOf(asn1js.ObjectIdentifier);
        expect(parsed.getValue()).toBe(dotted);
        expect(decodeOid(value(der, readSingle(der, 0x06)))).toBe(dotted);
      }),
      { numRuns: 500 },
    );
  });
});
