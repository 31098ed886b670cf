/**
 * Reading the public key a PodCertificateRequest names, and checking that the requester holds
 * the private key. Everything here is untrusted input: sizes are checked before decoding, DER is
 * read strictly, and what is wrong is returned as data, a {@link RequestKeyProblem} whose message
 * says what was wrong. Which denial reason each problem is, is policy: shared/policy/validate.ts
 * decides it (with every other rule, in their order), and the message ends up in the PCR's Denied
 * condition.
 *
 * This is on the hot path of every request, so it uses node:crypto only (createPublicKey +
 * verify) and the small DER reader; no @peculiar.
 */
import {
  constants,
  createPublicKey,
  hash,
  verify,
  type JsonWebKey,
  type JsonWebKeyInput,
  type KeyObject,
  type PublicKeyInput,
} from "node:crypto";
import { REQUEST_KEY_LIMITS } from "../limits.js";
import { KEY_TYPES, type KeyType, type PcrSpec } from "../pcr/model.js";
import { CSR_SIGNATURE_ALGORITHMS, describeKey, OID } from "./algorithms.js";
import { withArticle } from "../words.js";
import {
  bitString,
  DerError,
  nullValue,
  oid,
  sequence,
  TAG,
  decodeOid,
  expectTag,
  readChildren,
  readSingle,
  readTlv,
  value,
  whole,
  type Tlv,
} from "./der.js";

export interface RequestKey {
  /** The SubjectPublicKeyInfo exactly as requested (the leaf carries these bytes). */
  spkiDer: Buffer;
  keyType: KeyType;
  publicKey: KeyObject;
  /** base64url (no padding) of SHA-256(spkiDer). */
  spkiSha256: string;
  /**
   * What a stub CSR asked for besides its key, none of which the certificate carries (only the
   * CSR's public key is used): e.g. `subject (CN, O)`, `extension subjectAltName (2 names)`,
   * `extension basicConstraints (CA:true)`. Empty for pkixPublicKey requests and for the empty
   * CSRs kubelet writes. For the caller to log; never a reason to deny.
   */
  ignoredCsrContent: readonly string[];
}

/**
 * What is wrong with a request's key fields. `message` says it in words (it becomes the denial
 * message; the caller bounds it). The kinds say what the fault is in, not which denial reason it
 * is: that is policy/validate.ts's keyProblemDenial.
 */
export type RequestKeyProblem =
  /** A key podcert can read, of a type the caller does not accept (or none of kubelet's six). */
  | { problem: "unsupportedType"; keyType: string; message: string }
  /**
   * A public key that cannot be used: not a strict DER SubjectPublicKeyInfo, not importable, a
   * compressed point or the point at infinity, not canonically encoded, or weak (weakKeyProblem).
   */
  | { problem: "unusableKey"; message: string }
  /** A field that is too long, is not strict base64, or (the CSR) not DER; or both key forms at once. */
  | { problem: "malformed"; field: RequestKeyField; message: string }
  /** No proof, or one that does not show possession of the private key (proof or CSR signature). */
  | { problem: "badProof"; message: string };

export type RequestKeyField = keyof typeof REQUEST_KEY_LIMITS;

export function isRequestKeyProblem(r: RequestKey | RequestKeyProblem): r is RequestKeyProblem {
  return "problem" in r;
}

export { REQUEST_KEY_LIMITS };

const EC_KEY_TYPES: Record<string, KeyType> = {
  prime256v1: "ECDSAP256",
  secp384r1: "ECDSAP384",
  secp521r1: "ECDSAP521",
};

/**
 * The PCR key type of a public key: RSA with a modulus of exactly 3072 or 4096 bits, ECDSA on
 * P-256/P-384/P-521, or Ed25519. Anything else is undefined. This is the type only: a key of a
 * supported type may still be unusable (RSA exponent 1, a small-order Ed25519 point, ...);
 * readRequestKey refuses those separately (weakKeyProblem), on every path.
 */
export function classifyPublicKey(publicKey: KeyObject): KeyType | undefined {
  const d = publicKey.asymmetricKeyDetails ?? {};
  switch (publicKey.asymmetricKeyType) {
    case "rsa": {
      if (d.modulusLength === 3072) return "RSA3072";
      if (d.modulusLength === 4096) return "RSA4096";
      return undefined;
    }
    case "ec":
      return EC_KEY_TYPES[d.namedCurve ?? ""];
    case "ed25519":
      return "ED25519";
    default:
      return undefined;
  }
}

export function spkiSha256(spkiDer: Uint8Array): string {
  return hash("sha256", spkiDer, "base64url");
}

/**
 * Strict standard base64 (what Go's encoding/json writes for []byte), or undefined. Buffer's
 * decoder is lenient (it skips unknown characters, takes the URL-safe alphabet, needs no padding),
 * but its encoder writes only canonical padded standard base64: requiring the text to be exactly
 * what its bytes re-encode to refuses every other alphabet, missing or misplaced padding,
 * whitespace and non-zero padding bits (the API server always re-encodes canonically).
 */
function decodeBase64(s: string): Buffer | undefined {
  const b = Buffer.from(s, "base64");
  if (b.toString("base64") !== s) return undefined;
  return b;
}

/** A base64 field of the spec, bounded before it is decoded; too long or not base64 is malformed. */
function decodeField(field: RequestKeyField, value: string, tooLongNote = ""): Buffer | RequestKeyProblem {
  const limit = REQUEST_KEY_LIMITS[field];
  if (value.length > limit) return malformed(field, `${field} is ${value.length} base64 characters, more than the ${limit} allowed${tooLongNote}`);
  const bytes = decodeBase64(value);
  if (!bytes || bytes.length === 0) return malformed(field, `${field} is not valid base64`);
  return bytes;
}

function malformed(field: RequestKeyField, message: string): RequestKeyProblem {
  return { problem: "malformed", field, message };
}

function unusable(message: string): RequestKeyProblem {
  return { problem: "unusableKey", message };
}

function badProof(message: string): RequestKeyProblem {
  return { problem: "badProof", message };
}

function listAllowed(allowed: readonly KeyType[]): string {
  return allowed.length > 0 ? allowed.join(", ") : "(none configured)";
}

function unsupported(found: string, allowed: readonly KeyType[]): RequestKeyProblem {
  return { problem: "unsupportedType", keyType: found, message: `key type ${found} is not supported by this signer; use one of ${listAllowed(allowed)}` };
}

interface ParsedSpki {
  publicKey: KeyObject;
  keyType: KeyType;
}

/**
 * Parses a DER SubjectPublicKeyInfo strictly (exactly one element, the shape Go accepts,
 * uncompressed EC points, canonical re-encoding), classifies it and refuses weak keys: an
 * unsupportedType or unusableKey problem for anything it cannot accept.
 */
function parseSpki(spkiDer: Buffer, allowed: readonly KeyType[]): ParsedSpki | RequestKeyProblem {
  // The canonical forms of the supported key types are recognised by their bytes alone: each is a
  // well-formed SubjectPublicKeyInfo (with an uncompressed point, or two minimal INTEGERs), so the
  // strict read below could only succeed on them.
  let canonical: CanonicalKey | undefined = canonicalFixedKey(spkiDer) ?? canonicalRsaKey(spkiDer);
  let algOid: string = canonical?.algOid ?? "";
  if (canonical === undefined) {
    try {
      const outer = readSingle(spkiDer, TAG.SEQUENCE);
      const [alg, bits, ...rest] = readChildren(spkiDer, outer);
      if (rest.length > 0) throw new DerError("extra fields");
      const algSeq = expectTag(alg, TAG.SEQUENCE, "algorithm");
      const bitStr = expectTag(bits, TAG.BIT_STRING, "subjectPublicKey");
      const algOidTlv = expectTag(readChildren(spkiDer, algSeq)[0], TAG.OID, "algorithm OID");
      algOid = decodeOid(value(spkiDer, algOidTlv));
      const keyBits = value(spkiDer, bitStr);
      if (keyBits.length < 2 || keyBits[0] !== 0) throw new DerError("subjectPublicKey has unused bits");
      // Go (elliptic.Unmarshal) accepts only uncompressed points; the leaf must stay parseable by Go.
      // This must come before any import: createPublicKey accepts 00 as the point at infinity
      // (for which an ECDSA signature can be made without a private key), and node aborts the
      // whole process when asked for that key's asymmetricKeyDetails.
      if (algOid === OID.ecPublicKey && keyBits[1] !== 0x04) {
        return unusable(
          keyBits[1] === 0x00
            ? "the EC public key is the point at infinity"
            : "the EC public key uses a compressed point; only uncompressed points are supported",
        );
      }
    } catch (e) {
      return unusable(`the public key is not a valid DER SubjectPublicKeyInfo (${errText(e)})`);
    }
  }
  let publicKey: KeyObject | undefined = canonical?.input && importKey(canonical.input);
  if (publicKey === undefined) {
    try {
      // For EC keys this is where points off the curve and coordinates not below the field prime
      // are refused (OpenSSL's decoder; pinned in test/unit/x509/request-key.test.ts).
      publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
    } catch {
      return unusable(`the public key (algorithm ${algOid}) could not be parsed; use one of ${listAllowed(allowed)}`);
    }
  }
  let keyType: KeyType;
  let material: KeyMaterial;
  if (canonical !== undefined) {
    // Fast path: the bytes are already the canonical encoding of a supported key type, so the
    // classification and the re-encoding check below could only agree (see canonicalFixedKey and
    // canonicalRsaKey).
    if (!allowed.includes(canonical.keyType)) return unsupported(canonical.keyType, allowed);
    keyType = canonical.keyType;
    material = canonical.material;
  } else {
    const classified = classifyPublicKey(publicKey);
    if (classified === undefined || !KEY_TYPES.includes(classified) || !allowed.includes(classified)) {
      return unsupported(classified ?? describeKey(publicKey), allowed);
    }
    // Only canonical encodings: the leaf repeats these bytes and kube-apiserver compares them.
    if (!publicKey.export({ type: "spki", format: "der" }).equals(spkiDer)) {
      return unusable(`the ${classified} public key is not in canonical DER SubjectPublicKeyInfo form`);
    }
    keyType = classified;
    material = keyMaterialOf(keyType, publicKey);
  }
  // Both paths end here, and every caller (validate, sign's `verify: false`, the attestation key
  // binding) reads keys through this function: no key skips these rules.
  const problem = weakKeyProblem(keyType, material);
  if (problem !== undefined) return unusable(problem);
  return { publicKey, keyType };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// Recognising canonical SubjectPublicKeyInfos without asking OpenSSL
// ---------------------------------------------------------------------------------------------
//
// Reading a key's details back from OpenSSL (asymmetricKeyDetails) and re-encoding it (export)
// cost more than half of a P-256 proof verification. For the encodings kubelet (Go's
// x509.MarshalPKIXPublicKey) produces, the answer is visible in the bytes: an SPKI that
// createPublicKey accepts and that is byte for byte the canonical form of a supported key type
// classifies as that type and re-encodes to itself. canonicalFixedKey and canonicalRsaKey
// recognise exactly those, from the bytes alone (no DER walk, no OID decoding); anything else
// (other curves, RSA sizes, absent NULL parameters, redundant integer octets, ...) takes the
// general path, which decides as before.
//
// RSA keys recognised so are imported from their RSAPublicKey (PKCS#1 DER, a view into the SPKI)
// and Ed25519 keys from their JWK: both skip OpenSSL 3's generic SPKI decoder chain. (An RSA JWK
// first needs the modulus in base64url: importing and verifying a fresh RSA 3072 key measured about
// 10% slower that way.) The key is the same (n and e, or the 32 raw bytes; no import validates
// more than another). EC keys stay on the DER import: the JWK import runs a full public-key check,
// which costs more than the decoder.

interface CanonicalKey {
  keyType: KeyType;
  /** The SubjectPublicKeyInfo's algorithm OID (for messages). */
  algOid: string;
  /** What to import the key from, when not the SPKI's DER (RSA and Ed25519). */
  input?: PublicKeyInput | JsonWebKeyInput;
  material: KeyMaterial;
}

/** Everything but the point: SEQUENCE { SEQUENCE { id-ecPublicKey, curve }, BIT STRING { 00 04 ... } }. */
function ecForm(keyType: KeyType, curveOid: string, coordinateBytes: number): { keyType: KeyType; prefix: Buffer; length: number } {
  const point = Buffer.alloc(1 + 2 * coordinateBytes);
  point[0] = 0x04;
  const full = sequence(sequence(oid(OID.ecPublicKey), oid(curveOid)), bitString(point));
  return { keyType, prefix: full.subarray(0, full.length - 2 * coordinateBytes), length: full.length };
}

const CANONICAL_EC = [ecForm("ECDSAP256", OID.prime256v1, 32), ecForm("ECDSAP384", OID.secp384r1, 48), ecForm("ECDSAP521", OID.secp521r1, 66)];

const ED25519_FULL = sequence(sequence(oid(OID.ed25519)), bitString(Buffer.alloc(32)));
const ED25519_PREFIX = ED25519_FULL.subarray(0, ED25519_FULL.length - 32);

/**
 * The key type (and for Ed25519 the key as a JWK) when `spkiDer` is exactly the canonical DER of
 * an ECDSA P-256/P-384/P-521 key (uncompressed point) or an Ed25519 key; otherwise undefined.
 */
function canonicalFixedKey(spkiDer: Buffer): CanonicalKey | undefined {
  for (const c of CANONICAL_EC) {
    if (spkiDer.length === c.length && spkiDer.subarray(0, c.prefix.length).equals(c.prefix)) {
      return { keyType: c.keyType, algOid: OID.ecPublicKey, material: { family: "ecdsa" } };
    }
  }
  if (spkiDer.length === ED25519_FULL.length && spkiDer.subarray(0, ED25519_PREFIX.length).equals(ED25519_PREFIX)) {
    const point = spkiDer.subarray(ED25519_PREFIX.length);
    const jwk: JsonWebKey = { kty: "OKP", crv: "Ed25519", x: point.toString("base64url") };
    return { keyType: "ED25519", algOid: OID.ed25519, input: { key: jwk, format: "jwk" }, material: { family: "ed25519", point } };
  }
  return undefined;
}

/** AlgorithmIdentifier { rsaEncryption, NULL }: the only form OpenSSL (and Go) writes. */
const RSA_ALGORITHM = sequence(oid(OID.rsaEncryption), nullValue());

/** The supported RSA sizes: a modulus of exactly 3072 or 4096 bits (as classifyPublicKey). */
const RSA_FORMS: readonly { keyType: KeyType; modulusBytes: number }[] = [
  { keyType: "RSA3072", modulusBytes: 384 },
  { keyType: "RSA4096", modulusBytes: 512 },
];

/**
 * Whether `buf` holds at `at` the identifier `tag` and the two-octet length 82 hi lo of `length`:
 * the DER header of an RSA SPKI, its BIT STRING, its RSAPublicKey and its modulus (DER writes that
 * form exactly for lengths 256 to 65535, so a length outside them is refused).
 */
function hasLongHeader(buf: Buffer, at: number, tag: number, length: number): boolean {
  return length >= 0x100 && length <= 0xffff && buf[at] === tag && buf[at + 1] === 0x82 && buf[at + 2] === length >> 8 && buf[at + 3] === (length & 0xff);
}

/** Content octets of a minimal, positive DER INTEGER, or undefined. */
function positiveMinimalInteger(buf: Uint8Array, t: Tlv): Buffer | undefined {
  if (t.tag !== TAG.INTEGER) return undefined;
  const c = value(buf, t);
  if (c.length === 0 || c[0]! & 0x80) return undefined; // empty or negative
  if (c[0] === 0 && (c.length === 1 || !(c[1]! & 0x80))) return undefined; // zero or redundant 00
  return c;
}

/**
 * The key type and the key's RSAPublicKey when `spkiDer` is exactly the canonical DER of an RSA
 * 3072 or 4096 key; otherwise undefined. Canonical is what Go writes and the strict read accepts:
 *
 *      0  30 82 hi lo         SubjectPublicKeyInfo, to the end
 *      4  30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00   { rsaEncryption, NULL }
 *     19  03 82 hi lo 00      BIT STRING, to the end, no unused bits
 *     24  30 82 hi lo         RSAPublicKey, to the end
 *     28  02 82 hi lo 00 ..   modulus: 00, then 384 or 512 octets, the first with its top bit set
 *      …  02 ..               publicExponent, a minimal positive INTEGER, to the end
 *
 * Every length is checked against the SPKI's, so nothing trails any element. The exponent's
 * value and the modulus' parity are judged later, by weakKeyProblem, as on the general path.
 * Never throws.
 */
function canonicalRsaKey(spkiDer: Buffer): CanonicalKey | undefined {
  const total = spkiDer.length;
  if (
    !hasLongHeader(spkiDer, 0, TAG.SEQUENCE, total - 4) ||
    spkiDer.compare(RSA_ALGORITHM, 0, RSA_ALGORITHM.length, 4, 19) !== 0 ||
    !hasLongHeader(spkiDer, 19, TAG.BIT_STRING, total - 23) ||
    spkiDer[23] !== 0 ||
    !hasLongHeader(spkiDer, 24, TAG.SEQUENCE, total - 28)
  ) {
    return undefined;
  }
  const form = RSA_FORMS.find((f) => hasLongHeader(spkiDer, 28, TAG.INTEGER, f.modulusBytes + 1));
  // Minimal and positive with exactly 3072 or 4096 bits: a 00 octet, then the top bit set.
  if (form === undefined || spkiDer[32] !== 0 || spkiDer[33]! < 0x80) return undefined;
  const modulusEnd = 33 + form.modulusBytes;
  let exponentTlv: Tlv;
  try {
    exponentTlv = readTlv(spkiDer, modulusEnd); // any length form, DER-minimal
  } catch {
    return undefined;
  }
  if (exponentTlv.end !== total) return undefined;
  const e = positiveMinimalInteger(spkiDer, exponentTlv);
  if (e === undefined) return undefined;
  return {
    keyType: form.keyType,
    algOid: OID.rsaEncryption,
    input: { key: spkiDer.subarray(24), format: "der", type: "pkcs1" },
    material: { family: "rsa", modulus: spkiDer.subarray(33, modulusEnd), exponent: e[0] === 0 ? e.subarray(1) : e },
  };
}

// ---------------------------------------------------------------------------------------------
// Keys of a supported type that must still be refused
// ---------------------------------------------------------------------------------------------
//
// The problem is the key's (unusableKey, which policy/validate.ts denies as UnsupportedKeyType),
// not the proof's: the fault is in the key alone, whatever proof comes with it. For a key anyone
// can sign with, a proof that verifies proves nothing (OpenSSL accepts forged ones), so no proof
// could make the request acceptable; the
// decision is made before the proof is looked at (the README's denial order) and so also holds
// where no proof is checked (sign, and the attestation key binding, read with `verify: false`).
// kubelet generates its keys with Go's crypto, which never produces any of these.

/** What the rules look at: the raw Ed25519 point, or RSA's modulus and exponent (big-endian, no leading zeros). */
type KeyMaterial =
  | { family: "ed25519"; point: Buffer }
  | { family: "rsa"; modulus: Buffer; exponent: Buffer }
  // Nothing left to check: OpenSSL's import refuses EC points off the curve and coordinates not
  // below the field prime, the strict read refuses the point at infinity (any first octet but 04)
  // before it, and P-256/384/521 have no other points of small order (cofactor 1). The unit tests
  // pin each of these refusals.
  | { family: "ecdsa" };

/** The material of a key that took the general path (rare: kubelet's encodings take the fast one). */
function keyMaterialOf(keyType: KeyType, publicKey: KeyObject): KeyMaterial {
  const family = keyFamily(keyType);
  if (family === "ecdsa") return { family };
  const jwk = publicKey.export({ format: "jwk" });
  if (family === "ed25519") return { family, point: Buffer.from(jwk.x ?? "", "base64url") };
  return { family, modulus: Buffer.from(jwk.n ?? "", "base64url"), exponent: Buffer.from(jwk.e ?? "", "base64url") };
}

/**
 * The encodings (hex) of the 8 Ed25519 points whose order divides 8 (the identity; (0, -1) of
 * order 2; two of order 4 with y = 0; four of order 8), plus the identity and (0, -1) written with
 * the sign bit set (x = 0 has no sign; RFC 8032 refuses these, OpenSSL decodes them). With such a
 * public key A, [k]A is one of those 8 points whatever the message, so a forger picks R = [S]B
 * plus one of them and retries a few times until R = [S]B - [k]A holds (with the identity key,
 * R = identity and S = 0 always do); OpenSSL and Go's crypto/ed25519 accept such signatures.
 * Together with the y < p check below, this is every encoding of a small-order point: a blocklist
 * costs ~0.3 µs where decompressing and multiplying by the cofactor with BigInt costs ~500 µs,
 * more than the proof's verification (~180 µs).
 */
const ED25519_SMALL_ORDER = new Set([
  "0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
  "0100000000000000000000000000000000000000000000000000000000000080", // identity, sign bit set
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // (0, -1), order 2
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // (0, -1), sign bit set
  "0000000000000000000000000000000000000000000000000000000000000000", // y = 0, order 4
  "0000000000000000000000000000000000000000000000000000000000000080", // y = 0, order 4
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
]);

/**
 * Whether y (the low 255 bits, little-endian) is at least p = 2^255 - 19: ed ff … ff 7f and
 * above. Such an encoding names the same point as y - p: non-canonical, so two different byte
 * strings (and SPKI hashes) would be one key; OpenSSL and Go accept them.
 */
function ed25519YNotBelowP(point: Buffer): boolean {
  if ((point[31]! & 0x7f) !== 0x7f || point[0]! < 0xed) return false;
  for (let i = 1; i < 31; i++) if (point[i] !== 0xff) return false;
  return true;
}

/** Go's crypto/rsa (checkPublicKey) refuses public exponents above 2^31 - 1. */
const RSA_MAX_EXPONENT = 0x7fffffff;

/** An RSA exponent (big-endian octets) as messages show it: its value up to 8 octets, else its size. */
function shownExponent(x: Buffer): string {
  return x.length <= 8 ? String(x.reduce((v, b) => (v << 8n) | BigInt(b), 0n)) : `of ${x.length} bytes`;
}

/** Why a key of a supported type must still be refused, or undefined when it is usable. */
function weakKeyProblem(keyType: KeyType, m: KeyMaterial): string | undefined {
  switch (m.family) {
    case "ecdsa":
      return undefined;
    case "ed25519": {
      if (m.point.length !== 32) return `the ${keyType} public key is ${m.point.length} bytes, not 32`;
      if (ed25519YNotBelowP(m.point)) {
        return `the ${keyType} public key is not canonically encoded: its y coordinate is not below 2^255-19`;
      }
      const hex = m.point.toString("hex");
      if (ED25519_SMALL_ORDER.has(hex)) {
        return `the ${keyType} public key ${hex} is a point of small order: anyone can make signatures that verify with it, without a private key`;
      }
      return undefined;
    }
    case "rsa": {
      // Go's crypto/rsa checkPublicKey, which every Go peer runs before it verifies with the key:
      // odd modulus, 2 <= e <= 2^31-1, e odd (e must be invertible modulo p-1 and q-1).
      const x = m.exponent;
      // A double, not a BigInt (on every request): exact below 2^53, and beyond that still on the
      // right side of 1, 2 and 2^31-1; the parity is the last octet's.
      let e = 0;
      for (const b of x) e = e * 256 + b;
      if (e === 1) {
        return `the ${keyType} public exponent is 1: a signature is then the padded message itself, so anyone can sign without a private key`;
      }
      if (e < 2) return `the ${keyType} public exponent is ${shownExponent(x)}; Go's crypto/rsa refuses exponents below 2`;
      if ((x[x.length - 1]! & 1) === 0) return `the ${keyType} public exponent ${shownExponent(x)} is even, which no RSA key can have (Go's crypto/rsa refuses it)`;
      if (e > RSA_MAX_EXPONENT) return `the ${keyType} public exponent ${shownExponent(x)} is above 2^31-1, which Go's crypto/rsa refuses`;
      if (m.modulus.length === 0 || (m.modulus[m.modulus.length - 1]! & 1) === 0) {
        return `the ${keyType} modulus is even, which no RSA key can have (Go's crypto/rsa refuses it)`;
      }
      return undefined;
    }
  }
}

/** The key from its JWK or PKCS#1 DER, or undefined (then the SPKI import decides, with its error). */
function importKey(input: PublicKeyInput | JsonWebKeyInput): KeyObject | undefined {
  try {
    return createPublicKey(input);
  } catch {
    return undefined;
  }
}

/** Verifies a kubelet proof of possession over the ASCII bytes of the pod UID. */
function verifyProof(key: KeyObject, keyType: KeyType, data: Buffer, sig: Buffer): boolean {
  try {
    switch (keyType) {
      case "ECDSAP256":
      case "ECDSAP384":
      case "ECDSAP521":
        // Go ecdsa.SignASN1 over SHA-256(podUID) for every curve.
        return verify("sha256", data, { key, dsaEncoding: "der" }, sig);
      case "RSA3072":
      case "RSA4096":
        // Go rsa.SignPSS(nil opts): SHA-256, MGF1-SHA-256, maximum salt. Detect the salt length.
        return verify(
          "sha256",
          data,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
          sig,
        );
      case "ED25519":
        return verify(null, data, key, sig);
    }
  } catch {
    return false;
  }
}

interface ParsedCsr {
  criDer: Buffer;
  spkiDer: Buffer;
  sigAlgOid: string;
  sigAlgParams: Tlv | undefined;
  signature: Buffer;
  ignored: string[];
}

/** Structure of a PKCS#10 CertificationRequest, read strictly. Throws DerError. */
function parseCsr(der: Buffer): ParsedCsr {
  const outer = readSingle(der, TAG.SEQUENCE);
  const parts = readChildren(der, outer);
  if (parts.length !== 3) throw new DerError("CertificationRequest must have three fields");
  const cri = expectTag(parts[0], TAG.SEQUENCE, "certificationRequestInfo");
  const alg = expectTag(parts[1], TAG.SEQUENCE, "signatureAlgorithm");
  const sig = expectTag(parts[2], TAG.BIT_STRING, "signature");

  const criParts = readChildren(der, cri);
  if (criParts.length !== 4) throw new DerError("certificationRequestInfo must have four fields");
  const version = expectTag(criParts[0], TAG.INTEGER, "version");
  const v = value(der, version);
  if (v.length !== 1 || v[0] !== 0) throw new DerError("version must be 0 (v1)");
  const subject = expectTag(criParts[1], TAG.SEQUENCE, "subject");
  const rdns = readChildren(der, subject); // well-formed; contents are ignored (the leaf subject is empty)
  const spki = expectTag(criParts[2], TAG.SEQUENCE, "subjectPKInfo");
  const attrs = expectTag(criParts[3], 0xa0, "attributes");
  const attributes = readChildren(der, attrs); // likewise: nothing the CSR requests is issued

  const algParts = readChildren(der, alg);
  if (algParts.length < 1 || algParts.length > 2) throw new DerError("malformed signatureAlgorithm");
  const algOid = decodeOid(value(der, expectTag(algParts[0], TAG.OID, "signature algorithm OID")));

  const sigBits = value(der, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) throw new DerError("signature BIT STRING has unused bits");
  return {
    criDer: Buffer.from(whole(der, cri)),
    spkiDer: Buffer.from(whole(der, spki)),
    sigAlgOid: algOid,
    sigAlgParams: algParts[1],
    signature: Buffer.from(sigBits.subarray(1)),
    ignored: describeIgnoredCsrContent(der, rdns, attributes),
  };
}

// ---------------------------------------------------------------------------------------------
// What a stub CSR asks for besides its key (described for the log, never issued)
// ---------------------------------------------------------------------------------------------

const NAME_ATTRIBUTE_TYPES: Readonly<Record<string, string>> = {
  "2.5.4.3": "CN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "1.2.840.113549.1.9.1": "emailAddress",
};
const OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const CSR_ATTRIBUTE_TYPES: Readonly<Record<string, string>> = { "1.2.840.113549.1.9.7": "challengePassword" };
const EXTENSION_NAMES: Readonly<Record<string, string>> = {
  [OID.subjectKeyIdentifier]: "subjectKeyIdentifier",
  [OID.keyUsage]: "keyUsage",
  [OID.subjectAltName]: "subjectAltName",
  [OID.basicConstraints]: "basicConstraints",
  [OID.authorityKeyIdentifier]: "authorityKeyIdentifier",
  [OID.extKeyUsage]: "extKeyUsage",
};
/** Entries listed at most; the CSR itself is bounded by REQUEST_KEY_LIMITS. */
const MAX_IGNORED_LISTED = 16;

/**
 * The subject and attributes of a CSR, described briefly (attribute and extension names, never
 * their attacker-chosen values). Only describes: a part it cannot read is listed as unreadable,
 * never denied (the strict read above already checked the structure podcert relies on).
 */
function describeIgnoredCsrContent(der: Buffer, rdns: readonly Tlv[], attributes: readonly Tlv[]): string[] {
  const out: string[] = [];
  if (rdns.length > 0) {
    const types = rdns.flatMap((rdn) => orElse(() => readChildren(der, rdn).map((atv) => nameOf(NAME_ATTRIBUTE_TYPES, firstOid(der, atv))), ["unreadable"]));
    out.push(`subject (${types.join(", ")})`);
  }
  for (const attr of attributes) {
    out.push(
      ...orElse(() => {
        const [type, values] = readChildren(der, attr);
        const typeOid = decodeOid(value(der, expectTag(type, TAG.OID, "attribute type")));
        if (typeOid !== OID_EXTENSION_REQUEST) return [`attribute ${nameOf(CSR_ATTRIBUTE_TYPES, typeOid)}`];
        return readChildren(der, expectTag(values, TAG.SET, "attribute values")).flatMap((exts) =>
          readChildren(der, expectTag(exts, TAG.SEQUENCE, "extensions")).map((ext) => describeExtension(der, ext)),
        );
      }, ["an unreadable attribute"]),
    );
  }
  return out.length > MAX_IGNORED_LISTED ? [...out.slice(0, MAX_IGNORED_LISTED), `${out.length - MAX_IGNORED_LISTED} more`] : out;
}

function describeExtension(der: Buffer, ext: Tlv): string {
  return orElse(() => {
    const parts = readChildren(der, ext);
    const extOid = firstOid(der, ext);
    const name = `extension ${nameOf(EXTENSION_NAMES, extOid)}`;
    const inner = value(der, expectTag(parts[parts.length - 1], TAG.OCTET_STRING, "extnValue"));
    // The two whose content matters to a reader: how many names were asked for, and whether a CA.
    if (extOid === OID.subjectAltName) return `${name} (${readChildren(inner, readSingle(inner, TAG.SEQUENCE)).length} names)`;
    if (extOid === OID.basicConstraints) {
      const cA = readChildren(inner, readSingle(inner, TAG.SEQUENCE))[0];
      const isCa = cA?.tag === TAG.BOOLEAN && value(inner, cA)[0] !== 0;
      return `${name} (CA:${isCa})`;
    }
    return name;
  }, "an unreadable extension");
}

function firstOid(der: Buffer, seq: Tlv): string {
  return decodeOid(value(der, expectTag(readChildren(der, seq)[0], TAG.OID, "type")));
}

function nameOf(names: Readonly<Record<string, string>>, dotted: string): string {
  return names[dotted] ?? dotted;
}

/** What `describe` returns, or `fallback` when the part it reads is malformed. */
function orElse<T>(describe: () => T, fallback: T): T {
  try {
    return describe();
  } catch {
    return fallback;
  }
}

function keyFamily(keyType: KeyType): "ecdsa" | "rsa" | "ed25519" {
  return keyType.startsWith("ECDSA") ? "ecdsa" : keyType.startsWith("RSA") ? "rsa" : "ed25519";
}

function present(s: string | null | undefined): s is string {
  return typeof s === "string" && s.length > 0;
}

/**
 * The request's public key, verified, or what is wrong with it. With `stubPKCS10Request` the key
 * comes from the CSR and its self-signature is the proof; otherwise `pkixPublicKey` with
 * `proofOfPossession` over the pod UID. The key is judged before the proof (a malformed or
 * unacceptable key is reported whatever the proof says); the first problem found is returned.
 * Never throws on untrusted input.
 */
export function readRequestKey(
  spec: Pick<PcrSpec, "podUID" | "pkixPublicKey" | "proofOfPossession" | "stubPKCS10Request">,
  allowedKeyTypes: readonly KeyType[],
  /**
   * `verify: false` only reads the key, for a step holding validate's attestation that the proof
   * verified for this exact key (the attestation binds the key's SHA-256, which the caller compares).
   */
  o: { verify?: boolean } = {},
): RequestKey | RequestKeyProblem {
  const check = o.verify ?? true;
  if (present(spec.stubPKCS10Request)) {
    if (present(spec.pkixPublicKey) || present(spec.proofOfPossession)) {
      return malformed("stubPKCS10Request", "stubPKCS10Request must not be combined with pkixPublicKey or proofOfPossession");
    }
    return readFromCsr(spec.stubPKCS10Request, allowedKeyTypes, check);
  }
  if (!present(spec.pkixPublicKey)) {
    // Also what a certificates.k8s.io/v1 read shows of a v1beta1 request with a PKIX key (v1 has no
    // such fields); the client reads those through v1beta1 while it is served (kube/api-versions.ts).
    return badProof("the request carries neither stubPKCS10Request nor pkixPublicKey with proofOfPossession");
  }
  const spkiDer = decodeField("pkixPublicKey", spec.pkixPublicKey, "; no supported key type is that large");
  if (!Buffer.isBuffer(spkiDer)) return spkiDer;
  const parsed = parseSpki(spkiDer, allowedKeyTypes);
  if ("problem" in parsed) return parsed;
  const { publicKey, keyType } = parsed;
  if (!check) return { spkiDer, keyType, publicKey, spkiSha256: spkiSha256(spkiDer), ignoredCsrContent: [] };

  const proof = spec.proofOfPossession;
  if (!present(proof)) return badProof("proofOfPossession is missing");
  const sig = decodeField("proofOfPossession", proof);
  if (!Buffer.isBuffer(sig)) return sig;
  if (typeof spec.podUID !== "string" || spec.podUID.length === 0) {
    return badProof("podUID is empty, so there is nothing the proof could sign");
  }
  if (!verifyProof(publicKey, keyType, Buffer.from(spec.podUID, "utf8"), sig)) {
    return badProof(`proofOfPossession is not a valid ${keyType} signature over the pod UID ${spec.podUID}`);
  }
  return { spkiDer, keyType, publicKey, spkiSha256: spkiSha256(spkiDer), ignoredCsrContent: [] };
}

function readFromCsr(b64: string, allowed: readonly KeyType[], check: boolean): RequestKey | RequestKeyProblem {
  const der = decodeField("stubPKCS10Request", b64);
  if (!Buffer.isBuffer(der)) return der;
  let csr: ParsedCsr;
  try {
    csr = parseCsr(der);
  } catch (e) {
    return malformed("stubPKCS10Request", `stubPKCS10Request is not a valid DER PKCS#10 request (${errText(e)})`);
  }
  const parsed = parseSpki(csr.spkiDer, allowed);
  if ("problem" in parsed) return parsed;
  const { publicKey, keyType } = parsed;
  const read = { spkiDer: csr.spkiDer, keyType, publicKey, spkiSha256: spkiSha256(csr.spkiDer), ignoredCsrContent: csr.ignored };
  if (!check) return read;
  const family = keyFamily(keyType);
  const alg = CSR_SIGNATURE_ALGORITHMS[family][csr.sigAlgOid];
  if (!alg) {
    return badProof(`stubPKCS10Request is signed with algorithm ${csr.sigAlgOid}, which is not valid for ${withArticle(keyType)} key`);
  }
  const p = csr.sigAlgParams;
  const paramsOk =
    p === undefined ||
    (alg.params === "null-or-absent" && p.tag === TAG.NULL && p.end === p.valueStart);
  if (!paramsOk) {
    return badProof(`stubPKCS10Request signature algorithm ${csr.sigAlgOid} has unexpected parameters`);
  }
  let ok = false;
  try {
    ok =
      family === "ecdsa"
        ? verify(alg.hash, csr.criDer, { key: publicKey, dsaEncoding: "der" }, csr.signature)
        : verify(alg.hash, csr.criDer, publicKey, csr.signature);
  } catch {
    ok = false;
  }
  if (!ok) return badProof(`the stubPKCS10Request signature does not verify with its ${keyType} key`);
  return read;
}
