/**
 * The checks kube-apiserver runs on a PodCertificateRequest status update (SPEC.md §1), as a pure
 * function. The embedded API server rejects a `/status` write with 422 when this returns anything,
 * so a status it accepts is one a real cluster would accept too.
 *
 * Certificates are parsed twice: by node:crypto (does it parse at all, and its public key) and by a
 * small DER walker that applies the extra strictness of Go's crypto/x509, which the real API
 * server uses (object identifier arcs below 2^31, non-negative serial, no duplicate extensions,
 * matching signature algorithms, well-formed SANs).
 */

import { X509Certificate, createPublicKey, type KeyObject } from "node:crypto";

import { MAX_CERTIFICATE_CHAIN_BYTES, MAX_CONDITION_MESSAGE_BYTES, MAX_CONDITION_REASON_LENGTH } from "../limits.js";
import type { Condition, PcrStatus, PodCertificateRequest } from "./model.js";

export type FieldErrorType =
  | "FieldValueInvalid"
  | "FieldValueRequired"
  | "FieldValueNotSupported"
  | "FieldValueTooLong";

/** One violated rule: `field` is the JSON path ("status.notBefore"), `detail` what is wrong. */
export interface StatusFieldError {
  type: FieldErrorType;
  field: string;
  detail: string;
}

export const DEFAULT_MAX_EXPIRATION_SECONDS = 86400;
const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const TERMINAL = ["Issued", "Denied", "Failed"];

const SECOND = 1_000_000_000n; // times are compared as bigint nanoseconds since the epoch
const MINUTE = 60n * SECOND;

/** Every violated rule as "field: detail"; empty when the update is acceptable. */
export function pcrStatusUpdateErrors(
  old: PodCertificateRequest,
  next: PcrStatus,
  now: Date,
): string[] {
  return pcrStatusUpdateFieldErrors(old, next, now).map((e) => `${e.field}: ${e.detail}`);
}

/** As {@link pcrStatusUpdateErrors}, structured (the API server turns these into Status causes). */
export function pcrStatusUpdateFieldErrors(
  old: PodCertificateRequest,
  next: PcrStatus,
  now: Date,
): StatusFieldError[] {
  const errs: StatusFieldError[] = [];
  const err = (type: FieldErrorType, field: string, detail: string) =>
    errs.push({ type, field, detail });

  // 1. Conditions. Later rules are driven by the conditions, so stop here if any is wrong.
  const conditions = next.conditions ?? [];
  let known = 0;
  conditions.forEach((c: Partial<Condition>, i) => {
    const p = `status.conditions[${i}]`;
    if (!TERMINAL.includes(c.type ?? "")) {
      err("FieldValueNotSupported", `${p}.type`,
        `Unsupported value: ${JSON.stringify(c.type ?? "")}: supported values: "Issued", "Denied", "Failed"`);
    } else if (++known > 1) {
      err("FieldValueInvalid", `${p}.type`,
        'there may be at most one condition with type "Issued", "Denied", or "Failed"');
    }
    if (c.status !== "True") {
      err("FieldValueNotSupported", `${p}.status`,
        `Unsupported value: ${JSON.stringify(c.status ?? "")}: supported values: "True"`);
    }
    const reason = c.reason ?? "";
    if (reason === "") err("FieldValueRequired", `${p}.reason`, "Required value");
    else if (reason.length > MAX_CONDITION_REASON_LENGTH) {
      err("FieldValueTooLong", `${p}.reason`, `must have at most ${MAX_CONDITION_REASON_LENGTH} characters`);
    } else if (!CONDITION_REASON.test(reason)) {
      err("FieldValueInvalid", `${p}.reason`,
        "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'");
    }
    if (Buffer.byteLength(c.message ?? "") > MAX_CONDITION_MESSAGE_BYTES) {
      err("FieldValueTooLong", `${p}.message`, `may not be more than ${MAX_CONDITION_MESSAGE_BYTES} bytes`);
    }
    if (!c.lastTransitionTime) err("FieldValueRequired", `${p}.lastTransitionTime`, "Required value: must be set");
    else if (parseTime(c.lastTransitionTime) === undefined) {
      err("FieldValueInvalid", `${p}.lastTransitionTime`, "must be an RFC 3339 time");
    }
    if (c.observedGeneration !== undefined && !(c.observedGeneration >= 0)) {
      err("FieldValueInvalid", `${p}.observedGeneration`, "must be greater than or equal to zero");
    }
  });
  if (errs.length > 0) return errs;

  // 2. Once terminal, the whole status is immutable (an identical write is a no-op and allowed).
  if (terminalType(old.status) !== undefined) {
    if (!sameStatus(old.status, next)) {
      err("FieldValueInvalid", "status", "immutable after PodCertificateRequest is issued, denied, or failed");
    }
    return errs;
  }

  const newType = terminalType(next);
  // 3. Without a terminal condition nothing may change ("in progress" writes are refused).
  if (newType === undefined) {
    if (!sameStatus(old.status, next)) {
      err("FieldValueInvalid", "status",
        'status is immutable unless transitioning to "Issued", "Denied", or "Failed"');
    }
    return errs;
  }

  // 4. Denied / Failed: only the condition.
  if (newType !== "Issued") {
    for (const f of ["certificateChain", "notBefore", "notAfter", "beginRefreshAt"] as const) {
      if (next[f]) {
        err("FieldValueInvalid", `status.${f}`,
          "non-condition status fields must be empty when denying or failing the PodCertificateRequest");
      }
    }
    return errs;
  }

  // 5. Issued.
  const chain = next.certificateChain ?? "";
  if (Buffer.byteLength(chain) > MAX_CERTIFICATE_CHAIN_BYTES) {
    err("FieldValueTooLong", "status.certificateChain", `may not be more than ${MAX_CERTIFICATE_CHAIN_BYTES} bytes`);
    return errs;
  }
  const blocks = decodePemBlocks(chain);
  const leafBlock = blocks[0];
  let leaf: ParsedCert | undefined;
  if (leafBlock === undefined) {
    err("FieldValueInvalid", "status.certificateChain", "issued certificate chain must contain at least one certificate");
  } else if (leafBlock.type !== "CERTIFICATE") {
    err("FieldValueInvalid", "status.certificateChain",
      "issued certificate chain must consist entirely of CERTIFICATE PEM blocks");
  } else {
    const parsed = parseCertificate(leafBlock.der);
    if (typeof parsed === "string") {
      err("FieldValueInvalid", "status.certificateChain", `leaf certificate does not parse as valid X.509: ${parsed}`);
    } else {
      leaf = parsed;
    }
  }
  blocks.slice(1).forEach((b, i) => {
    if (b.type !== "CERTIFICATE") {
      err("FieldValueInvalid", "status.certificateChain",
        `issued certificate chain must consist entirely of CERTIFICATE PEM blocks (block ${i + 1} is ${JSON.stringify(b.type)})`);
      return;
    }
    const parsed = parseIntermediate(b.der);
    if (typeof parsed === "string") {
      err("FieldValueInvalid", "status.certificateChain",
        `intermediate certificate ${i + 1} does not parse as valid X.509: ${parsed}`);
    }
  });

  if (leaf) {
    for (const name of leaf.dnsNames) {
      if (name === "") err("FieldValueInvalid", "status.certificateChain", "leaf certificate should not contain empty DNSName");
      if (name.includes("..")) {
        err("FieldValueInvalid", "status.certificateChain", `leaf certificate's DNSName should not contain '..' (${JSON.stringify(name)})`);
      }
      if (name.startsWith(".") || name.endsWith(".")) {
        err("FieldValueInvalid", "status.certificateChain",
          `leaf certificate's DNSName should not start or end with '.' (${JSON.stringify(name)})`);
      }
    }
    const wanted = requestedPublicKey(old, leaf);
    if (typeof wanted === "string") err("FieldValueInvalid", wanted, "must be a valid PKIX-serialized public key");
    else if (!wanted.equals(leaf.publicKey)) {
      err("FieldValueInvalid", "status.certificateChain", "leaf certificate was not issued to the requested public key");
    }
  }

  const times = {} as Record<"notBefore" | "notAfter" | "beginRefreshAt", bigint | undefined>;
  for (const f of ["notBefore", "notAfter", "beginRefreshAt"] as const) {
    const raw = next[f];
    if (!raw) {
      err("FieldValueRequired", `status.${f}`,
        f === "beginRefreshAt"
          ? "Required value: must be present and in the range [notBefore+10min, notAfter-10min]"
          : "Required value: must be present and consistent with the issued certificate");
    } else if ((times[f] = parseTime(raw)) === undefined) {
      err("FieldValueInvalid", `status.${f}`, `must be an RFC 3339 time, not ${JSON.stringify(raw)}`);
    }
  }
  const { notBefore, notAfter, beginRefreshAt } = times;
  if (leaf && notBefore !== undefined && notBefore !== leaf.notBefore) {
    err("FieldValueInvalid", "status.notBefore",
      `must be set to the NotBefore time encoded in the leaf certificate (${formatTime(leaf.notBefore)}, whole seconds)`);
  }
  if (notBefore !== undefined) {
    const nowNs = BigInt(now.getTime()) * 1_000_000n;
    if (!(notBefore > nowNs - 5n * MINUTE && notBefore < nowNs + 5n * MINUTE)) {
      err("FieldValueInvalid", "status.notBefore", "must be set to within 5 minutes of kube-apiserver's current time");
    }
  }
  if (leaf && notAfter !== undefined && notAfter !== leaf.notAfter) {
    err("FieldValueInvalid", "status.notAfter",
      `must be set to the NotAfter time encoded in the leaf certificate (${formatTime(leaf.notAfter)}, whole seconds)`);
  }
  if (leaf) {
    const lifetime = leaf.notAfter - leaf.notBefore;
    const max = BigInt(old.spec.maxExpirationSeconds ?? DEFAULT_MAX_EXPIRATION_SECONDS);
    if (lifetime < 60n * MINUTE) {
      err("FieldValueInvalid", "status.certificateChain", `leaf certificate lifetime must be >= 1 hour (is ${lifetime / SECOND}s)`);
    } else if (lifetime > max * SECOND) {
      err("FieldValueInvalid", "status.certificateChain",
        `leaf certificate lifetime must be <= spec.maxExpirationSeconds (${max}) (is ${lifetime / SECOND}s)`);
    }
  }
  if (beginRefreshAt !== undefined && notBefore !== undefined && beginRefreshAt < notBefore + 10n * MINUTE) {
    err("FieldValueInvalid", "status.beginRefreshAt", "must be at least 10 minutes after status.notBefore");
  }
  if (beginRefreshAt !== undefined && notAfter !== undefined && beginRefreshAt > notAfter - 10n * MINUTE) {
    err("FieldValueInvalid", "status.beginRefreshAt", "must be at least 10 minutes before status.notAfter");
  }
  return errs;
}

function terminalType(status: PcrStatus | undefined): string | undefined {
  return status?.conditions?.find((c) => TERMINAL.includes(c.type) && c.status === "True")?.type;
}

/** Go's apiequality.Semantic.DeepEqual on the status: empty == absent, times compared as instants. */
export function sameStatus(a: PcrStatus | undefined, b: PcrStatus | undefined): boolean {
  const ca = a?.conditions ?? [];
  const cb = b?.conditions ?? [];
  const sameTime = (x: string | undefined, y: string | undefined) => {
    if (!x || !y) return !x && !y;
    const tx = parseTime(x);
    const ty = parseTime(y);
    return tx !== undefined && ty !== undefined ? tx === ty : x === y;
  };
  return (
    ca.length === cb.length &&
    ca.every((x, i) => {
      const y = cb[i]!;
      return (
        x.type === y.type &&
        x.status === y.status &&
        (x.reason ?? "") === (y.reason ?? "") &&
        (x.message ?? "") === (y.message ?? "") &&
        (x.observedGeneration ?? 0) === (y.observedGeneration ?? 0) &&
        sameTime(x.lastTransitionTime, y.lastTransitionTime)
      );
    }) &&
    (a?.certificateChain ?? "") === (b?.certificateChain ?? "") &&
    sameTime(a?.notBefore, b?.notBefore) &&
    sameTime(a?.notAfter, b?.notAfter) &&
    sameTime(a?.beginRefreshAt, b?.beginRefreshAt)
  );
}

// ---------------------------------------------------------------------------------------------
// Times

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/** An RFC 3339 time as nanoseconds since the epoch (exact: ".5" is not whole seconds), or undefined. */
export function parseTime(s: string): bigint | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac, sign, oh, om] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec));
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > 31 || Number(h) > 23 ||
      Number(mi) > 59 || Number(sec) > 59 || new Date(ms).getUTCDate() !== Number(d)) {
    return undefined;
  }
  const offsetMin = sign ? (Number(oh) * 60 + Number(om)) * (sign === "-" ? -1 : 1) : 0;
  const nanos = frac ? BigInt((frac + "00000000").slice(0, 9)) : 0n;
  return (BigInt(ms) / 1000n - BigInt(offsetMin) * 60n) * SECOND + nanos;
}

/** Go's metav1.Time JSON form: UTC, whole seconds (fractions are truncated), "Z". */
export function formatTime(ns: bigint): string {
  const secs = ns >= 0n ? ns / SECOND : -((-ns + SECOND - 1n) / SECOND);
  return new Date(Number(secs) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Normalizes an RFC 3339 string as the API server stores it; unparseable input is returned as is. */
export function normalizeTime(s: string): string {
  const t = parseTime(s);
  return t === undefined ? s : formatTime(t);
}

// ---------------------------------------------------------------------------------------------
// PEM

export interface PemBlock {
  type: string;
  der: Buffer;
}

/** PEM blocks in order, skipping text around them (as Go's pem.Decode does); headers are dropped. */
export function decodePemBlocks(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  const re = /-----BEGIN ([^\r\n-]*)-----\r?\n([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let body = m[2]!;
    const headerEnd = body.search(/\r?\n\r?\n/);
    if (body.split(/\r?\n/, 1)[0]!.includes(":") && headerEnd >= 0) body = body.slice(headerEnd);
    const b64 = body.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) continue;
    out.push({ type: m[1]!, der: Buffer.from(b64, "base64") });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// DER: just enough to read certificates and CSRs the way Go's crypto/x509 would accept them.
// Deliberately not shared/x509/der.ts: sign checks its own leaves with these rules, so a bug in
// the code that wrote them must not also be in the code that reads them back.

interface Tlv {
  tag: number; // the identifier octet (class | constructed | number), low-tag-number form only
  start: number; // of the identifier octet
  contentStart: number;
  end: number; // one past the last content octet
}

function readTlv(buf: Buffer, pos: number, limit = buf.length): Tlv {
  if (pos + 2 > limit) throw new Error("truncated DER");
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new Error("high tag numbers are not supported");
  let len = buf[pos + 1]!;
  let contentStart = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || contentStart + n > limit) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[contentStart + i]!;
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > limit) throw new Error("truncated DER");
  return { tag, start: pos, contentStart, end };
}

function childrenOf(buf: Buffer, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = t.contentStart; pos < t.end; ) {
    const c = readTlv(buf, pos, t.end);
    out.push(c);
    pos = c.end;
  }
  return out;
}

/** Dotted OID from its content octets; `big` is set when an arc is >= 2^31 (Go refuses those). */
function decodeOid(content: Buffer): { oid: string; big: boolean } {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const b of content) {
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs.shift() ?? 0n;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  const all = [...head, ...arcs];
  return { oid: all.join("."), big: all.some((a) => a >= 2n ** 31n) };
}

/** Every OBJECT IDENTIFIER in the constructed parts of the structure (not inside OCTET STRINGs). */
function bigArcOids(buf: Buffer, t: Tlv, out: string[] = []): string[] {
  if (t.tag === 0x06) {
    const { oid, big } = decodeOid(buf.subarray(t.contentStart, t.end));
    if (big) out.push(oid);
  } else if (t.tag & 0x20) {
    for (const c of childrenOf(buf, t)) bigArcOids(buf, c, out);
  }
  return out;
}

function decodeDerTime(tlv: Tlv, buf: Buffer): bigint {
  const s = buf.subarray(tlv.contentStart, tlv.end).toString("latin1");
  const m = tlv.tag === 0x17 ? /^(\d{2})(\d{10})Z$/.exec(s) : /^(\d{4})(\d{10})Z$/.exec(s);
  if (!m || (tlv.tag !== 0x17 && tlv.tag !== 0x18)) throw new Error("malformed validity time");
  const year = tlv.tag === 0x17 ? (Number(m[1]) < 50 ? 2000 : 1900) + Number(m[1]) : Number(m[1]);
  const r = m[2]!;
  const t = parseTime(`${String(year).padStart(4, "0")}-${r.slice(0, 2)}-${r.slice(2, 4)}T${r.slice(4, 6)}:${r.slice(6, 8)}:${r.slice(8, 10)}Z`);
  if (t === undefined) throw new Error("malformed validity time");
  return t;
}

export interface ParsedCert {
  notBefore: bigint;
  notAfter: bigint;
  dnsNames: string[];
  publicKey: KeyObject;
  /** The SubjectPublicKeyInfo's bytes, which `publicKey` was read from. */
  spkiDer: Buffer;
}

const OID_SAN = "2.5.29.17";
const OID_EKU = "2.5.29.37";

/** The certificate, or why Go's x509.ParseCertificate (or OpenSSL) would refuse it. */
export function parseCertificate(der: Buffer): ParsedCert | string {
  try {
    const outer = readTlv(der, 0);
    if (outer.end !== der.length) return "trailing data after certificate";
    const [tbs, sigAlg] = childrenOf(der, outer);
    if (!tbs || !sigAlg) return "malformed certificate";
    const f = childrenOf(der, tbs);
    let i = 0;
    let version = 0;
    if (f[0]?.tag === 0xa0) {
      const v = childrenOf(der, f[i++]!)[0]!;
      version = der.readIntBE(v.contentStart, Math.min(v.end - v.contentStart, 6));
      if (version < 0 || version > 2) return "invalid version";
    }
    const serial = f[i++]!;
    if (serial.end > serial.contentStart && der[serial.contentStart]! & 0x80) return "negative serial number";
    const innerAlg = f[i++]!;
    if (!der.subarray(innerAlg.start, innerAlg.end).equals(der.subarray(sigAlg.start, sigAlg.end))) {
      return "inner and outer signature algorithm identifiers don't match";
    }
    i++; // issuer
    const [nb, na] = childrenOf(der, f[i++]!);
    i++; // subject
    const spki = f[i++]!;
    const big = bigArcOids(der, outer);
    const dnsNames: string[] = [];
    const seen = new Set<string>();
    const exts = f.slice(i).find((t) => t.tag === 0xa3);
    for (const ext of exts ? childrenOf(der, childrenOf(der, exts)[0]!) : []) {
      const parts = childrenOf(der, ext);
      const { oid } = decodeOid(der.subarray(parts[0]!.contentStart, parts[0]!.end));
      if (seen.has(oid)) return `certificate contains duplicate extensions (${oid})`;
      seen.add(oid);
      const value = parts[parts.length - 1]!;
      if (oid === OID_EKU) bigArcOids(der, readTlv(der, value.contentStart, value.end), big);
      if (oid === OID_SAN) {
        const names = readTlv(der, value.contentStart, value.end);
        for (const n of childrenOf(der, names)) {
          const raw = der.subarray(n.contentStart, n.end);
          const kind = n.tag & 0x1f;
          if ((kind === 1 || kind === 2 || kind === 6) && !/^[\x00-\x7f]*$/.test(raw.toString("latin1"))) {
            return "SAN is malformed (not an IA5String)";
          }
          if (kind === 7 && raw.length !== 4 && raw.length !== 16) return `cannot parse IP address of length ${raw.length}`;
          if (kind === 2) dnsNames.push(raw.toString("latin1"));
        }
      }
    }
    if (big.length > 0) {
      return `object identifier ${big[0]} has an arc >= 2^31, which Go's crypto/x509 refuses`;
    }
    try {
      new X509Certificate(der);
    } catch (e) {
      return `does not parse (${(e as Error).message})`;
    }
    const spkiDer = der.subarray(spki.start, spki.end);
    const publicKey = createPublicKey({ key: spkiDer, format: "der", type: "spki" });
    return { notBefore: decodeDerTime(nb!, der), notAfter: decodeDerTime(na!, der), dnsNames, publicKey, spkiDer };
  } catch (e) {
    return `malformed certificate (${(e as Error).message})`;
  }
}

/**
 * The certificates after the leaf are a signer's CA certificates, the same on every write (sign
 * checks each status before it writes it, and the embedded API server again): their parse (two
 * OpenSSL decodes and the DER walk, about 0.1 ms) is remembered by their bytes. The outcome is a
 * function of the bytes alone, refusals included. Bounded, oldest dropped first: a chain of new
 * certificates on every write costs what it did without the cache.
 */
const INTERMEDIATES_KEPT = 16;
const intermediates = new Map<string, ParsedCert | string>();

function parseIntermediate(der: Buffer): ParsedCert | string {
  const key = der.toString("base64");
  let parsed = intermediates.get(key);
  if (parsed === undefined) {
    parsed = parseCertificate(der);
    if (intermediates.size >= INTERMEDIATES_KEPT) intermediates.delete(intermediates.keys().next().value!);
    intermediates.set(key, parsed);
  }
  return parsed;
}

/**
 * The public key the request asks for, or the field naming why it cannot be read. When its bytes
 * are the leaf's SubjectPublicKeyInfo (as they are for every certificate a signer issues to the
 * request), the leaf's key is that key: the same bytes import to the same key, so they are not
 * imported twice.
 */
function requestedPublicKey(pcr: PodCertificateRequest, leaf: ParsedCert): KeyObject | string {
  const { pkixPublicKey, stubPKCS10Request } = pcr.spec;
  const imported = (spki: Buffer) => (spki.equals(leaf.spkiDer) ? leaf.publicKey : createPublicKey({ key: spki, format: "der", type: "spki" }));
  if (stubPKCS10Request) {
    try {
      const der = Buffer.from(stubPKCS10Request, "base64");
      const info = childrenOf(der, readTlv(der, 0))[0]!;
      const spki = childrenOf(der, info)[2]!;
      return imported(der.subarray(spki.start, spki.end));
    } catch {
      return "spec.stubPKCS10Request";
    }
  }
  try {
    return imported(Buffer.from(pkixPublicKey ?? "", "base64"));
  } catch {
    return "spec.pkixPublicKey";
  }
}
