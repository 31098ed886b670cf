/**
 * Fast leaf certificate issuance.
 *
 * The per-CA work is done once: by prepareCaSigner (ca-signer.ts) when the CA is loaded, and here,
 * on a CA's first leaf, the DER of what every leaf of that CA repeats (issuer, signature
 * algorithm, authorityKeyIdentifier). {@link issueLeaf} then only writes a few lengths, copies
 * buffers and makes one signature. The DER is hand-encoded (see der.ts for why).
 */
import { hash, randomFillSync } from "node:crypto";
import type { KeyType } from "../pcr/model.js";
import { OID } from "./algorithms.js";
import { isPreparedCaSigner, type CaSigner } from "./ca-signer.js";
import {
  bitString,
  boolean,
  DerError,
  explicit,
  headerLength,
  ia5Bytes,
  implicit,
  integer,
  oid,
  octetString,
  readSingle,
  readTlv,
  sequence,
  subjectPublicKeyBits,
  TAG,
  time,
  validateExtensionOid,
  writeHeader,
} from "./der.js";
import { pemEncode } from "./pem.js";

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
const VERSION_3 = explicit(0, integer(2)); // [0] EXPLICIT version v3
const SAN_OID = oid(OID.subjectAltName);
const CRITICAL = boolean(true);
// subjectKeyIdentifier: SEQUENCE { OID, OCTET STRING { OCTET STRING (20 bytes) } }, all but the hash.
const SKI_EXT_PREFIX = (() => {
  const full = extension(OID.subjectKeyIdentifier, false, octetString(Buffer.alloc(20)));
  return full.subarray(0, full.length - 20);
})();

/** What every leaf of one CA repeats, encoded on its first leaf. */
interface IssuerParts {
  /** The signature AlgorithmIdentifier and the issuer Name, which follow the serial number. */
  afterSerial: Buffer;
  /** The authorityKeyIdentifier extension: the CA's subjectKeyIdentifier. */
  akiExt: Buffer;
}
// Keyed by the CaSigner, so a CA pool reloaded with new signers drops the old parts with them.
const issuerPartsCache = new WeakMap<CaSigner, IssuerParts>();

function issuerParts(ca: CaSigner): IssuerParts {
  let parts = issuerPartsCache.get(ca);
  if (parts === undefined) {
    parts = {
      afterSerial: Buffer.concat([ca.signatureAlgorithmDer, ca.issuerNameDer]),
      akiExt: extension(OID.authorityKeyIdentifier, false, sequence(implicit(0, ca.subjectKeyId))),
    };
    issuerPartsCache.set(ca, parts);
  }
  return parts;
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

/**
 * The Validity SEQUENCE for one (notBefore, notAfter) pair, remembered for the next leaf: leaves
 * issued in the same second with the same lifetime share it, and encoding two dates costs more than
 * the rest of the TBS together. Callers copy it, never change it.
 */
let lastValidity: { notBefore: number; notAfter: number; der: Buffer } | undefined;

function validityDer(notBefore: Date, notAfter: Date): Buffer {
  const nb = notBefore.getTime();
  const na = notAfter.getTime();
  if (lastValidity?.notBefore !== nb || lastValidity.notAfter !== na) {
    lastValidity = { notBefore: nb, notAfter: na, der: sequence(time(notBefore), time(notAfter)) };
  }
  return lastValidity.der;
}

function truncate(d: Date, what: string): Date {
  const t = d instanceof Date ? d.getTime() : NaN;
  if (!Number.isFinite(t)) throw new Error(`${what} is not a valid Date`);
  return new Date(Math.floor(t / 1000) * 1000);
}

/** Issues one leaf. Throws a plain Error for a template the caller should never have built. */
export function issueLeaf(ca: CaSigner, t: LeafTemplate): IssuedLeaf {
  if (!isPreparedCaSigner(ca)) throw new Error("issueLeaf needs a CaSigner from prepareCaSigner");
  const notBefore = truncate(t.notBefore, "notBefore");
  const notAfter = truncate(t.notAfter, "notAfter");
  if (notAfter.getTime() <= notBefore.getTime()) throw new Error("notAfter must be after notBefore");

  // The SPKI: exactly one DER SEQUENCE; its key bits feed the subjectKeyIdentifier.
  const spki = Buffer.isBuffer(t.spkiDer) ? t.spkiDer : Buffer.from(t.spkiDer);
  let keyBits: Buffer;
  try {
    keyBits = subjectPublicKeyBits(spki, readSingle(spki, TAG.SEQUENCE));
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
  const issuer = issuerParts(ca);
  const keyUsage = t.keyType === "RSA3072" || t.keyType === "RSA4096" ? KEY_USAGE_SIG_ENC : KEY_USAGE_SIG;
  const ski = hash("sha1", keyBits, "buffer");
  const sanOctets = headerLength(namesLength) + namesLength; // GeneralNames SEQUENCE
  const sanContent = SAN_OID.length + CRITICAL.length + headerLength(sanOctets) + sanOctets;
  let extsContent =
    headerLength(sanContent) + sanContent +
    BASIC_CONSTRAINTS_LEAF.length + keyUsage.length + EXT_KEY_USAGE.length + issuer.akiExt.length +
    SKI_EXT_PREFIX.length + ski.length;
  for (const e of extra) extsContent += e.length;
  const extsSequence = headerLength(extsContent) + extsContent;
  const validity = validityDer(notBefore, notAfter);

  const serial = randomSerial();
  const tbsContent =
    VERSION_3.length +
    headerLength(serial.length) + serial.length +
    issuer.afterSerial.length +
    validity.length +
    EMPTY_NAME.length +
    spki.length +
    headerLength(extsSequence) + extsSequence;
  const tbs = Buffer.allocUnsafe(headerLength(tbsContent) + tbsContent);
  let p = writeHeader(tbs, 0, TAG.SEQUENCE, tbsContent);
  p += VERSION_3.copy(tbs, p);
  p = writeHeader(tbs, p, TAG.INTEGER, serial.length); // positive, no leading zero needed (randomSerial)
  p += serial.copy(tbs, p);
  p += issuer.afterSerial.copy(tbs, p);
  p += validity.copy(tbs, p);
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
  p += issuer.akiExt.copy(tbs, p);
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
    fingerprintSha256: hash("sha256", der, "hex"),
    chainPem: pem + ca.intermediatesPem,
  };
}
