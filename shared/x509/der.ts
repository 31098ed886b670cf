/**
 * A small DER encoder (and a strict reader for the few structures podcert has to look into).
 *
 * Leaf issuance is hand-encoded on purpose: @peculiar/asn1-schema's schema-driven encoder
 * (what @peculiar/x509's certificate generator uses) made about 225 certificates per second on
 * one core here, while node:crypto signs about 19,000 ECDSA P-256 digests per second. A signer
 * that has to absorb a kubelet restart burst needs thousands of leaves per second, so the
 * certificate bytes are concatenated directly from the primitives below. @peculiar/x509 is
 * still used where speed does not matter (creating CAs) and in tests, as an independent parser.
 *
 * Everything here produces DER (definite, minimal lengths; canonical encodings).
 */

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** The largest content length written: four length octets, far beyond any certificate. */
const MAX_LENGTH = 0xffff_ffff;

/** How many length octets DER uses for `n` content octets (short form below 128, else minimal long). */
function lengthOctets(n: number): number {
  if (!(Number.isInteger(n) && n >= 0 && n <= MAX_LENGTH)) throw new RangeError(`invalid DER length ${n}`);
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5;
}

/** Octets of a single-octet tag and the DER length of `n` content octets. */
export function headerLength(n: number): number {
  return 1 + lengthOctets(n);
}

/**
 * Writes a single-octet tag and the DER length of `n` content octets into `buf` at `pos`, and
 * returns the position after them (where the content goes). With {@link headerLength} this lets a
 * hot path (leaf issuance) write a whole structure into one buffer sized in advance, instead of a
 * Buffer per element; {@link tlv} writes its headers the same way.
 */
export function writeHeader(buf: Uint8Array, pos: number, tag: number, n: number): number {
  const octets = lengthOctets(n);
  buf[pos++] = tag;
  if (octets === 1) {
    buf[pos++] = n;
    return pos;
  }
  buf[pos++] = 0x80 | (octets - 1);
  for (let i = octets - 2; i >= 0; i--) buf[pos++] = (n >>> (8 * i)) & 0xff;
  return pos;
}

/** The DER length octets for a content of `n` bytes (short form below 128, else minimal long). */
export function encodeLength(n: number): Buffer {
  const header = Buffer.allocUnsafe(headerLength(n));
  writeHeader(header, 0, 0, n);
  return header.subarray(1);
}

/** One TLV with a single-byte identifier octet (tag numbers 0..30, any class). */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(headerLength(content.length) + content.length);
  out.set(content, writeHeader(out, 0, tag, content.length));
  return out;
}

export function sequence(...children: readonly Uint8Array[]): Buffer {
  return tlv(TAG.SEQUENCE, Buffer.concat(children));
}

/** SET OF: DER requires the encodings sorted as octet strings. */
export function set(...children: readonly Uint8Array[]): Buffer {
  const sorted = [...children].sort((a, b) => Buffer.compare(a, b));
  return tlv(TAG.SET, Buffer.concat(sorted));
}

/**
 * A non-negative INTEGER from its big-endian magnitude: redundant leading zero bytes are
 * dropped and one zero byte is added when the top bit is set (so the value stays positive).
 * An empty or all-zero input encodes 0.
 */
export function integerFromBytes(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let body = Buffer.from(magnitude.subarray(i));
  if (body.length === 0) body = Buffer.from([0]);
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(TAG.INTEGER, body);
}

/** An INTEGER from a JS number or bigint (two's complement, minimal). */
export function integer(value: number | bigint): Buffer {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new RangeError(`integer ${value} is not a safe integer`);
  }
  let v = BigInt(value);
  const bytes: number[] = [];
  if (v >= 0n) {
    do {
      bytes.unshift(Number(v & 0xffn));
      v >>= 8n;
    } while (v > 0n);
    if (bytes[0]! & 0x80) bytes.unshift(0);
  } else {
    do {
      bytes.unshift(Number(v & 0xffn));
      v >>= 8n;
    } while (v < -1n);
    if (!(bytes[0]! & 0x80)) bytes.unshift(0xff);
  }
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

const OID_SYNTAX = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$/;
const MAX_ARC = 2 ** 31 - 1;

/**
 * Why `oid` cannot be used as a certificate extension OID, or undefined when it can.
 *
 * Besides the syntax (dotted decimal, no leading zeros, at least two arcs, first arc 0..2,
 * second arc below 40 under 0 and 1), every arc (and the first subidentifier, 40*X+Y) must be
 * below 2^31: Go's encoding/asn1 and cryptobyte refuse larger ones, so kube-apiserver cannot
 * parse such a certificate and would reject the PodCertificateRequest status carrying it.
 * That rules out, for example, a full UUID under 2.25.
 */
export function validateExtensionOid(oid: string): string | undefined {
  if (typeof oid !== "string" || oid.length === 0) return "OID is empty";
  if (oid.length > 200) return "OID is longer than 200 characters";
  if (!OID_SYNTAX.test(oid)) {
    return `OID ${JSON.stringify(oid)} is not a dotted-decimal object identifier with at least two arcs (no leading zeros)`;
  }
  const arcs = oid.split(".");
  const first = Number(arcs[0]);
  if (first > 2) return `OID ${oid}: the first arc must be 0, 1 or 2`;
  for (const a of arcs) {
    // Compare as strings first: Number() loses precision past 2^53.
    if (a.length > 10 || Number(a) > MAX_ARC) {
      return `OID ${oid}: arc ${a} is 2^31 or more, which Go's crypto/x509 (and so kube-apiserver) refuses`;
    }
  }
  const second = Number(arcs[1]);
  if (first < 2 && second >= 40) return `OID ${oid}: the second arc must be below 40 under arc ${first}`;
  if (first * 40 + second > MAX_ARC) {
    return `OID ${oid}: the first two arcs combine to 2^31 or more, which Go's crypto/x509 refuses`;
  }
  return undefined;
}

function base128(out: number[], v: bigint): void {
  const tmp: number[] = [Number(v & 0x7fn)];
  v >>= 7n;
  while (v > 0n) {
    tmp.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  for (let i = tmp.length - 1; i >= 0; i--) out.push(tmp[i]!);
}

const oidCache = new Map<string, Buffer>();

/**
 * An OBJECT IDENTIFIER from its dotted form. Accepts any syntactically valid OID (arcs of any
 * size); use {@link validateExtensionOid} for what Go will accept. Results are cached.
 */
export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  if (!OID_SYNTAX.test(dotted)) throw new Error(`invalid OID ${JSON.stringify(dotted)}`);
  const arcs = dotted.split(".").map((a) => BigInt(a));
  const [a0, a1] = [arcs[0]!, arcs[1]!];
  if (a0 > 2n || (a0 < 2n && a1 >= 40n)) throw new Error(`invalid OID ${dotted}`);
  const body: number[] = [];
  base128(body, a0 * 40n + a1);
  for (const a of arcs.slice(2)) base128(body, a);
  const enc = tlv(TAG.OID, Buffer.from(body));
  if (oidCache.size < 1024) oidCache.set(dotted, enc);
  return enc;
}

export function utf8String(s: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(s, "utf8"));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function printableString(s: string): Buffer {
  if (!PRINTABLE.test(s)) throw new Error("string contains characters outside PrintableString");
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(s, "latin1"));
}

const IA5 = /^[\x00-\x7f]*$/;

/** IA5String bytes (ASCII); throws on anything else. */
export function ia5Bytes(s: string): Buffer {
  if (!IA5.test(s)) throw new Error("string contains non-ASCII characters (IA5String)");
  return Buffer.from(s, "latin1");
}

export function ia5String(s: string): Buffer {
  return tlv(TAG.IA5_STRING, ia5Bytes(s));
}

export function octetString(content: Uint8Array): Buffer {
  return tlv(TAG.OCTET_STRING, content);
}

/** BIT STRING with `unusedBits` (0..7) unused bits in the last content byte. */
export function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7) {
    throw new RangeError(`invalid unused bit count ${unusedBits}`);
  }
  if (content.length === 0 && unusedBits !== 0) throw new RangeError("empty BIT STRING with unused bits");
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), content]));
}

export function boolean(value: boolean): Buffer {
  return Buffer.from([TAG.BOOLEAN, 1, value ? 0xff : 0x00]);
}

export function nullValue(): Buffer {
  return Buffer.from([TAG.NULL, 0]);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function checkDate(d: Date): number {
  const t = d.getTime();
  if (!Number.isFinite(t)) throw new RangeError("invalid Date");
  return Math.floor(t / 1000) * 1000;
}

/** UTCTime YYMMDDHHMMSSZ (whole seconds, UTC); only for years 1950..2049. */
export function utcTime(d: Date): Buffer {
  const x = new Date(checkDate(d));
  const y = x.getUTCFullYear();
  if (y < 1950 || y > 2049) throw new RangeError(`UTCTime cannot carry year ${y}`);
  return tlv(TAG.UTC_TIME, Buffer.from(pad(y % 100, 2) + monthToSecondZ(x), "latin1"));
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (whole seconds, UTC, no fraction); years 0..9999. */
export function generalizedTime(d: Date): Buffer {
  const x = new Date(checkDate(d));
  const y = x.getUTCFullYear();
  if (y < 0 || y > 9999) throw new RangeError(`GeneralizedTime cannot carry year ${y}`);
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(pad(y, 4) + monthToSecondZ(x), "latin1"));
}

/** MMDDHHMMSSZ, the part UTCTime and GeneralizedTime share after the year. */
function monthToSecondZ(x: Date): string {
  return pad(x.getUTCMonth() + 1, 2) + pad(x.getUTCDate(), 2) + pad(x.getUTCHours(), 2) + pad(x.getUTCMinutes(), 2) + pad(x.getUTCSeconds(), 2) + "Z";
}

/** RFC 5280 Time: UTCTime for 1950 through 2049, GeneralizedTime otherwise. */
export function time(d: Date): Buffer {
  const y = new Date(checkDate(d)).getUTCFullYear();
  return y >= 1950 && y <= 2049 ? utcTime(d) : generalizedTime(d);
}

/** [n] EXPLICIT: a constructed context-specific tag wrapping one complete encoding. */
export function explicit(tagNumber: number, inner: Uint8Array): Buffer {
  checkTagNumber(tagNumber);
  return tlv(0xa0 | tagNumber, inner);
}

/**
 * [n] IMPLICIT: replaces the tag of `content`'s type. Pass the content octets (not a TLV);
 * `constructed` must be true when the underlying type is constructed (SEQUENCE, SET).
 */
export function implicit(tagNumber: number, content: Uint8Array, constructed = false): Buffer {
  checkTagNumber(tagNumber);
  return tlv((constructed ? 0xa0 : 0x80) | tagNumber, content);
}

function checkTagNumber(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`unsupported tag number ${n}`);
}

/**
 * The value of podcert's pod identity extension: SEQUENCE of five UTF8String (in the caller's
 * order, e.g. namespace, pod name, pod UID, service account, node).
 */
export function podIdentityExtensionValue(
  fields: readonly [string, string, string, string, string],
): Buffer {
  if (fields.length !== 5) throw new Error("pod identity extension needs exactly five fields");
  return sequence(...fields.map((f) => utf8String(f)));
}

// ---------------------------------------------------------------------------------------------
// Strict reading (untrusted input: CSRs, SPKIs; and CA certificates at load time)
// ---------------------------------------------------------------------------------------------

export class DerError extends Error {
  override readonly name = "DerError";
}

/** One decoded TLV: `tag` is the identifier octet; the value is buf[valueStart, end). */
export interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/**
 * Reads one TLV at `offset`, which must end at or before `limit`. DER only: single-byte
 * identifiers, definite minimal lengths (at most 4 length octets).
 */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated DER element");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte DER tags are not supported");
  const first = buf[offset + 1]!;
  let len: number;
  let p = offset + 2;
  if (first < 0x80) {
    len = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError("indefinite length is not DER");
    if (n > 4) throw new DerError("DER length too large");
    if (p + n > limit) throw new DerError("truncated DER length");
    if (buf[p] === 0) throw new DerError("non-minimal DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (len < 0x80) throw new DerError("non-minimal DER length");
    p += n;
  }
  if (p + len > limit) throw new DerError("DER element extends past its container");
  return { tag, start: offset, valueStart: p, end: p + len };
}

/** Reads the whole of `buf` as exactly one TLV (no trailing bytes). */
export function readSingle(buf: Uint8Array, expectedTag?: number): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError("trailing bytes after DER element");
  if (expectedTag !== undefined && t.tag !== expectedTag) {
    throw new DerError(`expected DER tag 0x${hex2(expectedTag)}, found 0x${hex2(t.tag)}`);
  }
  return t;
}

/** The TLVs directly inside a constructed element. */
export function readChildren(buf: Uint8Array, parent: Tlv): Tlv[] {
  if (!(parent.tag & 0x20)) throw new DerError("element is not constructed");
  const out: Tlv[] = [];
  for (let p = parent.valueStart; p < parent.end; ) {
    const c = readTlv(buf, p, parent.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t) throw new DerError(`${what} is missing`);
  if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${hex2(tag)}, found 0x${hex2(t.tag)}`);
  return t;
}

export function value(buf: Uint8Array, t: Tlv): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + t.valueStart, t.end - t.valueStart);
}

export function whole(buf: Uint8Array, t: Tlv): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + t.start, t.end - t.start);
}

/**
 * The subjectPublicKey bits of a SubjectPublicKeyInfo (`spki`, a TLV in `buf`), without the
 * unused-bits octet: what a subjectKeyIdentifier is the SHA-1 of (RFC 5280 4.2.1.2, method 1).
 */
export function subjectPublicKeyBits(buf: Uint8Array, spki: Tlv): Buffer {
  const [alg, bits] = readChildren(buf, spki);
  expectTag(alg, TAG.SEQUENCE, "SubjectPublicKeyInfo algorithm");
  const b = value(buf, expectTag(bits, TAG.BIT_STRING, "subjectPublicKey"));
  if (b.length < 1 || b[0] !== 0) throw new DerError("subjectPublicKey has unused bits");
  return b.subarray(1);
}

/** Decodes OBJECT IDENTIFIER content octets to dotted form (strict: minimal base-128). */
export function decodeOid(content: Uint8Array): string {
  if (content.length === 0) throw new DerError("empty OID");
  const arcs: bigint[] = [];
  let v = 0n;
  let started = false;
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!;
    if (!started && b === 0x80) throw new DerError("non-minimal OID subidentifier");
    started = true;
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0n;
      started = false;
    } else if (i === content.length - 1) {
      throw new DerError("truncated OID");
    }
  }
  const f = arcs[0]!;
  const head = f < 40n ? [0n, f] : f < 80n ? [1n, f - 40n] : [2n, f - 80n];
  return [...head, ...arcs.slice(1)].join(".");
}

/** Decodes INTEGER content octets (strict minimal two's complement) to a bigint. */
export function decodeInteger(content: Uint8Array): bigint {
  if (content.length === 0) throw new DerError("empty INTEGER");
  if (
    content.length > 1 &&
    ((content[0] === 0 && !(content[1]! & 0x80)) || (content[0] === 0xff && content[1]! & 0x80))
  ) {
    throw new DerError("non-minimal INTEGER");
  }
  let v = 0n;
  for (const b of content) v = (v << 8n) | BigInt(b);
  if (content[0]! & 0x80) v -= 1n << BigInt(content.length * 8);
  return v;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
