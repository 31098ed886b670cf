/**
 * CA preparation: {@link prepareCaSigner} does the per-CA work once, at load time (parsing and
 * checking the CA certificate, its key and the chain above it, reading the issuer name and key
 * identifier, choosing the signature algorithm), so that leaf issuance (leaf.ts), on the hot
 * path, only reads what it holds and signs.
 */
import { createHash, sign, X509Certificate, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { ConfigError } from "../errors.js";
import { describeKey, goSignatureAlgorithm, OID, type SignatureAlgorithm } from "./algorithms.js";
import {
  decodeOid,
  expectTag,
  readChildren,
  readSingle,
  subjectPublicKeyBits,
  TAG,
  value,
  whole,
} from "./der.js";
import { pemDecodeAll, pemEncode } from "./pem.js";
import { withArticle } from "../words.js";

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
    spkiKeyBits: subjectPublicKeyBits(der, spki),
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

// ---------------------------------------------------------------------------------------------
// The prepared CA
// ---------------------------------------------------------------------------------------------

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
/** A CA certificate with the chain above it, checked, without its key. */
export interface CaChain {
  certDer: Buffer;
  subject: string;
  /** The CA certificate's subject Name, DER. */
  subjectDer: Buffer;
  /** Its subjectKeyIdentifier (SHA-1 of the key when the certificate has none). */
  subjectKeyId: Buffer;
  publicKey: KeyObject;
  /** What follows a leaf in an issued chain: the CA certificate unless it is a root, then the intermediates, never a self-signed root. */
  intermediatesPem: string;
  /** The top of the chain: the trust anchor pods are given. */
  rootDer: Buffer;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Reads and checks a CA certificate and the certificates above it (PEM, in order, maybe ending
 * with the self-signed root): each a CA, each issued by the next. What the trust publisher reads
 * (it never holds a key) and what {@link prepareCaSigner} builds on.
 */
export function readCaChain(cert: Buffer | Uint8Array | string, intermediatesPem?: string): CaChain {
  const certDer = toDer(cert);
  const x = parseX509(certDer, "CA certificate");
  let facts: CertFacts;
  try {
    facts = readCertFacts(certDer);
  } catch (e) {
    throw new ConfigError(`CA certificate could not be read: ${(e as Error).message}`);
  }
  if (!x.ca || facts.basicConstraintsCa !== true) {
    throw new ConfigError(`certificate ${subjectText(x)} is not a CA certificate (basicConstraints cA is not true)`);
  }
  if (facts.keyUsage && !facts.keyUsage.keyCertSign) {
    throw new ConfigError(`CA certificate ${subjectText(x)} lacks the keyCertSign key usage`);
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
      if (b.label !== "CERTIFICATE") throw new ConfigError(`CA intermediates contain ${withArticle(b.label)} block; only CERTIFICATE is allowed`);
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
  const { notBefore, notAfter } = validity(x);
  return {
    certDer,
    subject: x.subject ?? "",
    subjectDer: facts.subjectDer,
    subjectKeyId: facts.ski ?? createHash("sha1").update(facts.spkiKeyBits).digest(),
    publicKey: x.publicKey,
    intermediatesPem: tail.map((c) => pemEncode("CERTIFICATE", c.raw)).join(""),
    rootDer: Buffer.from(top.raw),
    notBefore,
    notAfter,
  };
}

export function prepareCaSigner(
  cert: Buffer | Uint8Array | string,
  privateKey: KeyObject,
  intermediatesPem?: string,
): CaSigner {
  const chain = readCaChain(cert, intermediatesPem);
  const x = new X509Certificate(chain.certDer);
  if (privateKey?.type !== "private") throw new ConfigError("CA private key is not a private key");
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
  return new PreparedCaSigner({
    privateKey,
    alg,
    keyAlgorithm: describeKey(privateKey),
    issuerNameDer: chain.subjectDer,
    subject: chain.subject,
    subjectKeyId: chain.subjectKeyId,
    certDer: chain.certDer,
    intermediatesPem: chain.intermediatesPem,
    rootDer: chain.rootDer,
    notBefore: chain.notBefore,
    notAfter: chain.notAfter,
    publicKey: chain.publicKey,
  });
}

/**
 * Whether `ca` was made by {@link prepareCaSigner}: leaf issuance trusts what a CaSigner says
 * (issuer name, key identifier, algorithm) and so takes only the ones made here, which are checked.
 */
export function isPreparedCaSigner(ca: CaSigner): boolean {
  return ca instanceof PreparedCaSigner;
}
