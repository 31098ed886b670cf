/**
 * Fast leaf certificate issuance.
 *
 * {@link prepareCaSigner} does all the per-CA work once (parsing the CA certificate, checking the
 * key, pre-encoding the issuer name, signature AlgorithmIdentifier and the constant extensions);
 * {@link issueLeaf} then only concatenates a few buffers and makes one signature. The DER is
 * hand-encoded (see der.ts for why).
 */
import { createHash, randomFillSync, sign, X509Certificate, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { ConfigError } from "../errors.js";
import type { KeyType } from "../pcr/model.js";
import { describeKey, goSignatureAlgorithm, OID, type SignatureAlgorithm } from "./algorithms.js";
import {
  bitString,
  boolean,
  DerError,
  decodeOid,
  expectTag,
  explicit,
  ia5Bytes,
  implicit,
  oid,
  octetString,
  readChildren,
  readSingle,
  readTlv,
  sequence,
  TAG,
  time,
  validateExtensionOid,
  value,
  whole,
  type Tlv,
} from "./der.js";
import { pemDecodeAll, pemEncode } from "./pem.js";

export interface ExtraExtension {
  oid: string;
  critical: boolean;
  /** The DER of the extension's value (what goes inside extnValue's OCTET STRING). */
  valueDer: Uint8Array;
}

export interface LeafTemplate {
  /** The request's SubjectPublicKeyInfo; copied into the leaf byte for byte. */
  spkiDer: Buffer;
  keyType: KeyType;
  uris: readonly string[];
  dnsNames: readonly string[];
  /** Truncated to whole seconds. */
  notBefore: Date;
  /** Truncated to whole seconds. */
  notAfter: Date;
  extensions?: readonly ExtraExtension[];
}

/**
 * One CA, ready to sign. The private key is held in a private field: it is not an own property,
 * so it never shows up in JSON.stringify, util.inspect or object spreads.
 */
export interface CaSigner {
  /** The CA key, e.g. "ECDSAP256", "RSA3072", "ED25519" (RSA CAs may have other sizes). */
  readonly keyAlgorithm: string;
  /** Name of the leaf signature algorithm, e.g. "ecdsa-with-SHA256". */
  readonly signatureAlgorithm: string;
  /** The CA certificate's subject Name, DER, byte for byte: the leaves' issuer. */
  readonly issuerNameDer: Buffer;
  /** The CA certificate's subject as text (for messages). */
  readonly subject: string;
  /** The CA's subjectKeyIdentifier (computed as SHA-1 of the key when the CA has none). */
  readonly subjectKeyId: Buffer;
  /** The leaves' signature AlgorithmIdentifier, DER. */
  readonly signatureAlgorithmDer: Buffer;
  readonly certDer: Buffer;
  readonly certPem: string;
  /**
   * What follows the leaf in an issued chain: the CA certificate itself when it is not
   * self-signed, then the intermediates, never a self-signed root. "" when the CA is a root.
   */
  readonly intermediatesPem: string;
  /** The top of this CA's chain (self-signed root, or the last certificate given). */
  readonly rootPem: string;
  readonly rootDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  /** The CA private key (a getter on the prototype; not enumerable). */
  readonly privateKey: KeyObject;
  /** Signs `tbs` with the CA key and the leaf signature algorithm. */
  sign(tbs: Uint8Array): Buffer;
}

export interface IssuedLeaf {
  der: Buffer;
  pem: string;
  /** Lowercase hex of the serial number's content octets (32 characters). */
  serialHex: string;
  /** Lowercase hex SHA-256 of the DER. */
  fingerprintSha256: string;
  /** PEM: the leaf, then the intermediates; never the root. */
  chainPem: string;
}

// ---------------------------------------------------------------------------------------------
// Parsing the CA certificate
// ---------------------------------------------------------------------------------------------

interface CertFacts {
  subjectDer: Buffer;
  spkiKeyBits: Buffer;
  ski: Buffer | undefined;
  basicConstraintsCa: boolean | undefined;
  /** keyUsage bits as a number (bit 0 = digitalSignature = 0x80 of the first byte) */
  keyUsage: { keyCertSign: boolean } | undefined;
}

/** Reads what we need from a certificate's DER. Throws DerError. */
function readCertFacts(der: Uint8Array): CertFacts {
  const cert = readSingle(der, TAG.SEQUENCE);
  const [tbs] = readChildren(der, cert);
  const parts = readChildren(der, expectTag(tbs, TAG.SEQUENCE, "tbsCertificate"));
  let i = 0;
  if (parts[0]?.tag === 0xa0) i++;
  // serial, signature, issuer, validity, subject, spki
  const subject = expectTag(parts[i + 4], TAG.SEQUENCE, "subject");
  const spki = expectTag(parts[i + 5], TAG.SEQUENCE, "subjectPublicKeyInfo");
  const facts: CertFacts = {
    subjectDer: Buffer.from(whole(der, subject)),
    spkiKeyBits: keyBitsOfSpki(der, spki),
    ski: undefined,
    basicConstraintsCa: undefined,
    keyUsage: undefined,
  };
  const extsWrap = parts.slice(i + 6).find((p) => p.tag === 0xa3);
  if (!extsWrap) return facts;
  const [extsSeq] = readChildren(der, extsWrap);
  for (const ext of readChildren(der, expectTag(extsSeq, TAG.SEQUENCE, "extensions"))) {
    const f = readChildren(der, expectTag(ext, TAG.SEQUENCE, "extension"));
    const id = decodeOid(value(der, expectTag(f[0], TAG.OID, "extnID")));
    const octets = expectTag(f[f.length - 1], TAG.OCTET_STRING, "extnValue");
    const inner = value(der, octets);
    if (id === OID.subjectKeyIdentifier) {
      facts.ski = Buffer.from(value(inner, readSingle(inner, TAG.OCTET_STRING)));
    } else if (id === OID.basicConstraints) {
      const bc = readChildren(inner, readSingle(inner, TAG.SEQUENCE));
      const first = bc[0];
      facts.basicConstraintsCa = first?.tag === TAG.BOOLEAN && inner[first.valueStart] !== 0;
    } else if (id === OID.keyUsage) {
      const bits = value(inner, readSingle(inner, TAG.BIT_STRING));
      facts.keyUsage = { keyCertSign: bits.length > 1 && (bits[1]! & 0x04) !== 0 };
    }
  }
  return facts;
}

function keyBitsOfSpki(buf: Uint8Array, spki: Tlv): Buffer {
  const [alg, bits] = readChildren(buf, spki);
  expectTag(alg, TAG.SEQUENCE, "SubjectPublicKeyInfo algorithm");
  const b = value(buf, expectTag(bits, TAG.BIT_STRING, "subjectPublicKey"));
  if (b.length < 1 || b[0] !== 0) throw new DerError("subjectPublicKey has unused bits");
  return b.subarray(1);
}

function subjectText(x: X509Certificate): string {
  return (x.subject ?? "").replace(/\n/g, ", ") || "(empty subject)";
}

function isSelfSigned(x: X509Certificate): boolean {
  try {
    return x.checkIssued(x) && x.verify(x.publicKey);
  } catch {
    return false;
  }
}

function toDer(cert: Uint8Array | string): Buffer {
  if (typeof cert !== "string") return Buffer.from(cert);
  let blocks;
  try {
    blocks = pemDecodeAll(cert);
  } catch (e) {
    throw new ConfigError(`CA certificate PEM is malformed: ${(e as Error).message}`);
  }
  if (blocks.length !== 1 || blocks[0]!.label !== "CERTIFICATE") {
    throw new ConfigError(
      `CA certificate must be exactly one CERTIFICATE PEM block (found ${blocks.length} block(s)${
        blocks.length ? `: ${blocks.map((b) => b.label).join(", ")}` : ""
      })`,
    );
  }
  return blocks[0]!.der;
}

function parseX509(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch {
    throw new ConfigError(`${what} is not a parsable X.509 certificate`);
  }
}

function validity(x: X509Certificate): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: x.validFromDate ?? new Date(x.validFrom),
    notAfter: x.validToDate ?? new Date(x.validTo),
  };
}

class PreparedCaSigner implements CaSigner {
  readonly #privateKey: KeyObject;
  readonly #alg: SignatureAlgorithm;

  readonly keyAlgorithm: string;
  readonly signatureAlgorithm: string;
  readonly issuerNameDer: Buffer;
  readonly subject: string;
  readonly subjectKeyId: Buffer;
  readonly signatureAlgorithmDer: Buffer;
  readonly certDer: Buffer;
  readonly certPem: string;
  readonly intermediatesPem: string;
  readonly rootPem: string;
  readonly rootDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  /** @internal pre-encoded constant parts of every leaf */
  readonly prefix: { versionSerialTag: Buffer; afterSerial: Buffer; akiExt: Buffer };

  constructor(init: {
    privateKey: KeyObject;
    alg: SignatureAlgorithm;
    keyAlgorithm: string;
    issuerNameDer: Buffer;
    subject: string;
    subjectKeyId: Buffer;
    certDer: Buffer;
    intermediatesPem: string;
    rootDer: Buffer;
    notBefore: Date;
    notAfter: Date;
    publicKey: KeyObject;
  }) {
    this.#privateKey = init.privateKey;
    this.#alg = init.alg;
    this.keyAlgorithm = init.keyAlgorithm;
    this.signatureAlgorithm = init.alg.name;
    this.issuerNameDer = init.issuerNameDer;
    this.subject = init.subject;
    this.subjectKeyId = init.subjectKeyId;
    this.signatureAlgorithmDer = init.alg.algorithmIdentifier;
    this.certDer = init.certDer;
    this.certPem = pemEncode("CERTIFICATE", init.certDer);
    this.intermediatesPem = init.intermediatesPem;
    this.rootDer = init.rootDer;
    this.rootPem = pemEncode("CERTIFICATE", init.rootDer);
    this.notBefore = init.notBefore;
    this.notAfter = init.notAfter;
    this.publicKey = init.publicKey;
    this.prefix = {
      versionSerialTag: explicit(0, Buffer.from([0x02, 0x01, 0x02])), // [0] EXPLICIT INTEGER 2 (v3)
      // signature AlgorithmIdentifier and issuer follow the serial directly
      afterSerial: Buffer.concat([init.alg.algorithmIdentifier, init.issuerNameDer]),
      akiExt: extension(OID.authorityKeyIdentifier, false, sequence(implicit(0, init.subjectKeyId))),
    };
  }

  get privateKey(): KeyObject {
    return this.#privateKey;
  }

  sign(tbs: Uint8Array): Buffer {
    const a = this.#alg;
    if (a.kind === "ecdsa") return sign(a.hash, tbs, { key: this.#privateKey, dsaEncoding: "der" });
    return sign(a.hash, tbs, this.#privateKey);
  }

  toJSON(): object {
    return {
      subject: this.subject,
      keyAlgorithm: this.keyAlgorithm,
      signatureAlgorithm: this.signatureAlgorithm,
      subjectKeyId: this.subjectKeyId.toString("hex"),
      notBefore: this.notBefore.toISOString(),
      notAfter: this.notAfter.toISOString(),
    };
  }

  [inspect.custom](): string {
    return `CaSigner ${JSON.stringify(this.toJSON())}`;
  }

  toString(): string {
    return `CaSigner(${this.subject.replace(/\n/g, ", ")}, ${this.keyAlgorithm})`;
  }
}

/**
 * Prepares a CA for leaf issuance. `intermediatesPem` are the certificates above `cert`, in
 * order (each issued by the next); it may end with the self-signed root, which then is the trust
 * anchor and stays out of issued chains. Throws ConfigError when the certificate does not parse,
 * is not a CA, does not match the key, or the chain does not link up. Messages never contain key
 * material or PEM text.
 */
export function prepareCaSigner(
  cert: Buffer | Uint8Array | string,
  privateKey: KeyObject,
  intermediatesPem?: string,
): CaSigner {
  const certDer = toDer(cert);
  const x = parseX509(certDer, "CA certificate");
  let facts: CertFacts;
  try {
    facts = readCertFacts(certDer);
  } catch (e) {
    throw new ConfigError(`CA certificate could not be read: ${(e as Error).message}`);
  }
  if (privateKey?.type !== "private") throw new ConfigError("CA private key is not a private key");
  if (!x.ca || facts.basicConstraintsCa !== true) {
    throw new ConfigError(`certificate ${subjectText(x)} is not a CA certificate (basicConstraints cA is not true)`);
  }
  if (facts.keyUsage && !facts.keyUsage.keyCertSign) {
    throw new ConfigError(`CA certificate ${subjectText(x)} lacks the keyCertSign key usage`);
  }
  let matches = false;
  try {
    matches = x.checkPrivateKey(privateKey);
  } catch {
    matches = false;
  }
  if (!matches) throw new ConfigError(`the private key does not match CA certificate ${subjectText(x)}`);
  const alg = goSignatureAlgorithm(privateKey);
  if (!alg) throw new ConfigError(`CA key type ${describeKey(privateKey)} is not supported for signing`);
  if (privateKey.asymmetricKeyType === "rsa" && (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new ConfigError(`CA key ${describeKey(privateKey)} is too small (RSA needs at least 2048 bits)`);
  }

  // The chain above the CA certificate.
  let above: Buffer[] = [];
  if (intermediatesPem !== undefined && intermediatesPem.trim() !== "") {
    let blocks;
    try {
      blocks = pemDecodeAll(intermediatesPem);
    } catch (e) {
      throw new ConfigError(`CA intermediates PEM is malformed: ${(e as Error).message}`);
    }
    for (const b of blocks) {
      if (b.label !== "CERTIFICATE") throw new ConfigError(`CA intermediates contain a ${b.label} block; only CERTIFICATE is allowed`);
    }
    above = blocks.map((b) => b.der);
  }
  const chain = [x, ...above.map((d, i) => parseX509(d, `CA intermediate ${i + 1}`))];
  for (let i = 0; i < chain.length; i++) {
    const c = chain[i]!;
    const isLast = i === chain.length - 1;
    if (i > 0 && !c.ca) throw new ConfigError(`CA intermediate ${i} (${subjectText(c)}) is not a CA certificate`);
    const self = isSelfSigned(c);
    if (self && !isLast) {
      throw new ConfigError(
        i === 0
          ? "the CA certificate is self-signed, so it cannot have intermediates"
          : `CA intermediate ${i} is self-signed but is not the last certificate`,
      );
    }
    if (!isLast) {
      const issuer = chain[i + 1]!;
      let ok = false;
      try {
        ok = c.checkIssued(issuer) && c.verify(issuer.publicKey);
      } catch {
        ok = false;
      }
      if (!ok) throw new ConfigError(`CA chain broken: certificate ${i} is not issued by certificate ${i + 1}`);
    }
  }
  const top = chain[chain.length - 1]!;
  // Without intermediates the CA certificate is the anchor and the chain is the leaf alone;
  // otherwise the leaf is followed by the CA certificate and the intermediates, minus a
  // self-signed root at the end.
  const tail =
    chain.length === 1 ? [] : isSelfSigned(top) ? chain.slice(0, -1) : chain;
  const intermediates = tail.map((c) => pemEncode("CERTIFICATE", c.raw)).join("");

  const ski = facts.ski ?? createHash("sha1").update(facts.spkiKeyBits).digest();
  const { notBefore, notAfter } = validity(x);
  return new PreparedCaSigner({
    privateKey,
    alg,
    keyAlgorithm: describeKey(privateKey),
    issuerNameDer: facts.subjectDer,
    subject: x.subject ?? "",
    subjectKeyId: ski,
    certDer,
    intermediatesPem: intermediates,
    rootDer: Buffer.from(top.raw),
    notBefore,
    notAfter,
    publicKey: x.publicKey,
  });
}

// ---------------------------------------------------------------------------------------------
// Issuing
// ---------------------------------------------------------------------------------------------

function extension(id: string, critical: boolean, valueDer: Uint8Array): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(valueDer))
    : sequence(oid(id), octetString(valueDer));
}

const BASIC_CONSTRAINTS_LEAF = extension(OID.basicConstraints, true, sequence()); // cA FALSE (DEFAULT)
// keyUsage: digitalSignature (bit 0) -> 03 02 07 80; + keyEncipherment (bit 2) -> 03 02 05 a0
const KEY_USAGE_SIG = extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7));
const KEY_USAGE_SIG_ENC = extension(OID.keyUsage, true, bitString(Buffer.from([0xa0]), 5));
const EXT_KEY_USAGE = extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth), oid(OID.clientAuth)));
const EMPTY_NAME = sequence();
const SAN_OID = oid(OID.subjectAltName);
const CRITICAL = boolean(true);
// subjectKeyIdentifier: SEQUENCE { OID, OCTET STRING { OCTET STRING (20 bytes) } }, all but the hash.
const SKI_EXT_PREFIX = (() => {
  const full = extension(OID.subjectKeyIdentifier, false, octetString(Buffer.alloc(20)));
  return full.subarray(0, full.length - 20);
})();

/** Octets of a DER tag + length for `n` content octets (as der.ts's tlv writes them). */
function headerLength(n: number): number {
  return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : n < 0x1000000 ? 5 : 6;
}

/** Writes a single-octet tag and the minimal DER length of `n` at `pos`; returns the next position. */
function writeHeader(buf: Buffer, pos: number, tag: number, n: number): number {
  buf[pos++] = tag;
  if (n < 0x80) {
    buf[pos++] = n;
  } else {
    const octets = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
    buf[pos++] = 0x80 | octets;
    for (let i = octets - 1; i >= 0; i--) buf[pos++] = (n >>> (8 * i)) & 0xff;
  }
  return pos;
}
const BUILT_IN_EXTENSIONS = new Set<string>([
  OID.subjectAltName,
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.authorityKeyIdentifier,
  OID.subjectKeyIdentifier,
]);

// Random serials come from a pooled buffer: one randomFillSync per 256 certificates.
const SERIAL_LEN = 16;
const serialPool = Buffer.alloc(SERIAL_LEN * 256);
let serialPos = serialPool.length;

function randomSerial(): Buffer {
  if (serialPos + SERIAL_LEN > serialPool.length) {
    randomFillSync(serialPool);
    serialPos = 0;
  }
  const s = Buffer.from(serialPool.subarray(serialPos, serialPos + SERIAL_LEN));
  serialPos += SERIAL_LEN;
  s[0] = s[0]! & 0x7f; // positive, 16 content bytes, no leading 0x00 needed
  if (s[0] === 0) s[0] = 0x01; // keep it minimal (and non-zero)
  return s;
}

function truncate(d: Date, what: string): Date {
  const t = d instanceof Date ? d.getTime() : NaN;
  if (!Number.isFinite(t)) throw new Error(`${what} is not a valid Date`);
  return new Date(Math.floor(t / 1000) * 1000);
}

/** Issues one leaf. Throws a plain Error for a template the caller should never have built. */
export function issueLeaf(ca: CaSigner, t: LeafTemplate): IssuedLeaf {
  if (!(ca instanceof PreparedCaSigner)) throw new Error("issueLeaf needs a CaSigner from prepareCaSigner");
  const notBefore = truncate(t.notBefore, "notBefore");
  const notAfter = truncate(t.notAfter, "notAfter");
  if (notAfter.getTime() <= notBefore.getTime()) throw new Error("notAfter must be after notBefore");

  // The SPKI: exactly one DER SEQUENCE; its key bits feed the subjectKeyIdentifier.
  const spki = Buffer.isBuffer(t.spkiDer) ? t.spkiDer : Buffer.from(t.spkiDer);
  let keyBits: Buffer;
  try {
    keyBits = keyBitsOfSpki(spki, readSingle(spki, TAG.SEQUENCE));
  } catch (e) {
    throw new Error(`the leaf public key is not a DER SubjectPublicKeyInfo: ${(e as Error).message}`);
  }

  if (t.uris.length + t.dnsNames.length === 0) {
    throw new Error("a leaf with an empty subject needs at least one URI or DNS subjectAltName");
  }
  // The tbsCertificate is written into one buffer, and the certificate into one more, from lengths
  // computed first, rather than concatenated from a Buffer per DER element: the same bytes, with
  // far fewer allocations (and less garbage to collect in a burst).
  const names: { tag: number; bytes: Buffer }[] = [];
  let namesLength = 0;
  for (const u of t.uris) {
    if (typeof u !== "string" || u.length === 0) throw new Error("empty URI subjectAltName");
    const bytes = ia5Bytes(u);
    names.push({ tag: 0x86, bytes }); // [6] uniformResourceIdentifier IA5String
    namesLength += headerLength(bytes.length) + bytes.length;
  }
  for (const d of t.dnsNames) {
    if (typeof d !== "string" || d.length === 0) throw new Error("empty DNS subjectAltName");
    const bytes = ia5Bytes(d);
    names.push({ tag: 0x82, bytes }); // [2] dNSName IA5String
    namesLength += headerLength(bytes.length) + bytes.length;
  }

  const extra: Buffer[] = [];
  if (t.extensions && t.extensions.length > 0) {
    const seen = new Set<string>();
    for (const e of t.extensions) {
      const problem = validateExtensionOid(e.oid);
      if (problem) throw new Error(`extra extension: ${problem}`);
      if (BUILT_IN_EXTENSIONS.has(e.oid) || seen.has(e.oid)) {
        throw new Error(`extra extension ${e.oid} duplicates an extension already in the certificate`);
      }
      seen.add(e.oid);
      const v = e.valueDer;
      try {
        if (readTlv(v, 0).end !== v.length) throw new DerError("trailing bytes");
      } catch (err) {
        throw new Error(`extra extension ${e.oid}: value is not one DER element (${(err as Error).message})`);
      }
      extra.push(extension(e.oid, e.critical === true, v));
    }
  }

  // Extensions, in this order: subjectAltName (critical), basicConstraints, keyUsage,
  // extKeyUsage, authorityKeyIdentifier, subjectKeyIdentifier, then the extra ones.
  const keyUsage = t.keyType === "RSA3072" || t.keyType === "RSA4096" ? KEY_USAGE_SIG_ENC : KEY_USAGE_SIG;
  const ski = createHash("sha1").update(keyBits).digest();
  const sanOctets = headerLength(namesLength) + namesLength; // GeneralNames SEQUENCE
  const sanContent = SAN_OID.length + CRITICAL.length + headerLength(sanOctets) + sanOctets;
  let extsContent =
    headerLength(sanContent) + sanContent +
    BASIC_CONSTRAINTS_LEAF.length + keyUsage.length + EXT_KEY_USAGE.length + ca.prefix.akiExt.length +
    SKI_EXT_PREFIX.length + ski.length;
  for (const e of extra) extsContent += e.length;
  const extsSequence = headerLength(extsContent) + extsContent;
  const notBeforeDer = time(notBefore);
  const notAfterDer = time(notAfter);
  const validityContent = notBeforeDer.length + notAfterDer.length;

  const serial = randomSerial();
  const tbsContent =
    ca.prefix.versionSerialTag.length +
    2 + serial.length +
    ca.prefix.afterSerial.length +
    headerLength(validityContent) + validityContent +
    EMPTY_NAME.length +
    spki.length +
    headerLength(extsSequence) + extsSequence;
  const tbs = Buffer.allocUnsafe(headerLength(tbsContent) + tbsContent);
  let p = writeHeader(tbs, 0, TAG.SEQUENCE, tbsContent);
  p += ca.prefix.versionSerialTag.copy(tbs, p);
  p = writeHeader(tbs, p, TAG.INTEGER, serial.length); // positive, no leading zero needed (randomSerial)
  p += serial.copy(tbs, p);
  p += ca.prefix.afterSerial.copy(tbs, p);
  p = writeHeader(tbs, p, TAG.SEQUENCE, validityContent);
  p += notBeforeDer.copy(tbs, p);
  p += notAfterDer.copy(tbs, p);
  p += EMPTY_NAME.copy(tbs, p);
  p += spki.copy(tbs, p);
  p = writeHeader(tbs, p, 0xa3, extsSequence); // [3] EXPLICIT Extensions
  p = writeHeader(tbs, p, TAG.SEQUENCE, extsContent);
  p = writeHeader(tbs, p, TAG.SEQUENCE, sanContent);
  p += SAN_OID.copy(tbs, p);
  p += CRITICAL.copy(tbs, p);
  p = writeHeader(tbs, p, TAG.OCTET_STRING, sanOctets);
  p = writeHeader(tbs, p, TAG.SEQUENCE, namesLength);
  for (const n of names) {
    p = writeHeader(tbs, p, n.tag, n.bytes.length);
    p += n.bytes.copy(tbs, p);
  }
  p += BASIC_CONSTRAINTS_LEAF.copy(tbs, p);
  p += keyUsage.copy(tbs, p);
  p += EXT_KEY_USAGE.copy(tbs, p);
  p += ca.prefix.akiExt.copy(tbs, p);
  p += SKI_EXT_PREFIX.copy(tbs, p);
  p += ski.copy(tbs, p);
  for (const e of extra) p += e.copy(tbs, p);
  if (p !== tbs.length) throw new Error(`internal error: tbsCertificate is ${p} bytes, expected ${tbs.length}`);

  const signature = ca.sign(tbs);
  const sigAlg = ca.signatureAlgorithmDer;
  const bitsContent = 1 + signature.length;
  const certContent = tbs.length + sigAlg.length + headerLength(bitsContent) + bitsContent;
  const der = Buffer.allocUnsafe(headerLength(certContent) + certContent);
  let q = writeHeader(der, 0, TAG.SEQUENCE, certContent);
  q += tbs.copy(der, q);
  q += sigAlg.copy(der, q);
  q = writeHeader(der, q, TAG.BIT_STRING, bitsContent);
  der[q++] = 0; // no unused bits
  q += signature.copy(der, q);
  if (q !== der.length) throw new Error(`internal error: certificate is ${q} bytes, expected ${der.length}`);
  const pem = pemEncode("CERTIFICATE", der);
  return {
    der,
    pem,
    serialHex: serial.toString("hex"),
    fingerprintSha256: createHash("sha256").update(der).digest("hex"),
    chainPem: pem + ca.intermediatesPem,
  };
}
