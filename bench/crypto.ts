/**
 * Parts 1 and 2a of the benchmark: the cryptographic limit (raw node:crypto sign and verify per
 * second on one core) and what podcert's own code makes of it without I/O: leaf issuance,
 * proof-of-possession / CSR verification and the step attestations.
 *
 * The CAs and request keys are made once per process and shared by both parts, so every ratio
 * compares the same key material measured in the same run.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  constants,
  createPrivateKey,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  webcrypto,
  type KeyObject,
  type SignKeyObjectInput,
  type VerifyKeyObjectInput,
} from "node:crypto";
import { CA_KEY_ALGORITHMS, createCa, type CaKeyAlgorithm } from "../cli/ca-create.js";
import { jwtVerify, SignJWT } from "jose";
import { attest, verifyAttestation, type StepKeys } from "../shared/events/attestation.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import type { KeyedStep } from "../shared/steps.js";
import { KEY_TYPES, type KeyType } from "../shared/pcr/model.js";
import { prepareCaSigner, type CaSigner } from "../shared/x509/ca-signer.js";
import { issueLeaf, type LeafTemplate } from "../shared/x509/leaf.js";
import { pemDecodeAll } from "../shared/x509/pem.js";
import { generateRequestKeyPair, proofOfPossession, stubCsr, type RequestKeyPair } from "../local-cluster/kubelet/keys.js";
import { isRequestKeyProblem, readRequestKey } from "../shared/x509/request-key.js";
import { floorVerdict, opsPerSecond, target, type BenchPart, type TargetCheck } from "./report.js";

/** Rates measured in part 1, handed to part 2a for its ratios. */
export interface CryptoLimits {
  /** Per CA key type: raw signatures per second with the leaf signature algorithm (ECDSA P-256 SHA-256, ...). */
  sign: Record<CaKeyAlgorithm, number>;
  /** Per CA key type: raw verifications per second of that signature. */
  verify: Record<CaKeyAlgorithm, number>;
  /**
   * Per request key type: raw verifications per second of a kubelet proof of possession
   * (ECDSA SHA-256 on every curve, RSA-PSS SHA-256 with the salt length detected, Ed25519).
   */
  proofVerify: Record<KeyType, number>;
}

export interface CryptoBenchOptions {
  /** Measuring time per figure in milliseconds, split into `rounds` slices; default 750. */
  ms?: number;
  /** Rounds per figure; default 10. */
  rounds?: number;
}

// This machine's speed drifts by ±15% from one second to the next (a shared VM), so a figure
// measured a few seconds away from the one it is compared with can be off by as much. Figures
// that are compared are therefore measured in interleaved rounds (A, B, A, B, ...), each round
// with opsPerSecond; a rate is the median of its rounds and a ratio the median of the rounds'
// ratios, so both sides of a ratio see the same conditions.

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Interleaved {
  /** Median rate of each function. */
  rates: number[];
  /** Median over rounds of rate[i] / rate[j]. */
  ratio(i: number, j: number): number;
}

type Op = { sync: () => unknown } | { async: () => Promise<unknown> };

async function interleaved(ops: readonly Op[], o: CryptoBenchOptions): Promise<Interleaved> {
  const rounds = Math.max(1, o.rounds ?? 10);
  const slice = (o.ms ?? 750) / rounds;
  const perRound: number[][] = ops.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]!;
      const opts = { ms: slice, warmupMs: r === 0 ? 100 : 0 };
      perRound[k]!.push("sync" in op ? opsPerSecond(op.sync, opts) : await asyncOpsPerSecond(op.async, opts));
    }
  }
  return {
    rates: perRound.map(median),
    ratio: (i, j) => median(perRound[i]!.map((v, r) => v / perRound[j]![r]!)),
  };
}

const SIGNER = "bench.podcert.ate.dev/identity";
const POD_UID = "22222222-0000-4000-8000-000000000017";

// ---------------------------------------------------------------------------------------------
// Shared key material (made once per process)
// ---------------------------------------------------------------------------------------------

interface BenchCa {
  certificatePem: string;
  privateKeyPem: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  signer: CaSigner;
}

const caCache = new Map<CaKeyAlgorithm, Promise<BenchCa>>();

/** One CA per key type, made with shared/ca/pool.ts createCa and prepared once. */
export function benchCa(alg: CaKeyAlgorithm): Promise<BenchCa> {
  let p = caCache.get(alg);
  if (!p) {
    p = (async () => {
      const ca = await createCa({ signerName: SIGNER, keyAlgorithm: alg, validityDays: 30, now: new Date() });
      const privateKey = createPrivateKey({ key: pemDecodeAll(ca.privateKey)[0]!.der, format: "der", type: "pkcs8" });
      return {
        certificatePem: ca.certificate,
        privateKeyPem: ca.privateKey,
        privateKey,
        publicKey: createPublicKey(privateKey),
        signer: prepareCaSigner(ca.certificate, privateKey),
      };
    })();
    caCache.set(alg, p);
  }
  return p;
}

const requestKeyCache = new Map<KeyType, RequestKeyPair>();

/** One request key pair per key type, as kubelet makes them. */
export function benchRequestKey(t: KeyType): RequestKeyPair {
  let k = requestKeyCache.get(t);
  if (!k) {
    k = generateRequestKeyPair(t);
    requestKeyCache.set(t, k);
  }
  return k;
}

/** The leaf signature algorithm for each CA key type, as node:crypto arguments. */
function caSignatureParams(alg: CaKeyAlgorithm): { name: string; hash: string | null } {
  switch (alg) {
    case "ECDSAP256":
      return { name: "ECDSA SHA-256", hash: "sha256" };
    case "ECDSAP384":
      return { name: "ECDSA SHA-384", hash: "sha384" };
    case "ECDSAP521":
      return { name: "ECDSA SHA-512", hash: "sha512" };
    case "ED25519":
      return { name: "Ed25519", hash: null };
    case "RSA3072":
    case "RSA4096":
      return { name: "RSA PKCS#1 v1.5 SHA-256", hash: "sha256" };
  }
}

function proofSignatureName(t: KeyType): string {
  return t.startsWith("RSA") ? "RSA-PSS SHA-256" : t.startsWith("ECDSA") ? "ECDSA SHA-256" : "Ed25519";
}

/** Raw verify of a proof of possession with exactly the parameters readRequestKey uses. */
function proofVerifyArgs(t: KeyType, publicKey: KeyObject): { hash: string | null; key: VerifyKeyObjectInput | KeyObject } {
  if (t.startsWith("RSA")) {
    return { hash: "sha256", key: { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO } };
  }
  if (t.startsWith("ECDSA")) return { hash: "sha256", key: { key: publicKey, dsaEncoding: "der" } };
  return { hash: null, key: publicKey };
}

// ---------------------------------------------------------------------------------------------
// Part 1: the cryptographic limit
// ---------------------------------------------------------------------------------------------

/**
 * Raw node:crypto sign and verify per second on one core for each CA key type (a 100-byte
 * message, the hash the leaf signature uses), and the raw verify rate of a proof of possession
 * for each request key type. The returned part carries the figures as `limits` for part 2a.
 */
export async function runCryptoLimit(o: CryptoBenchOptions = {}): Promise<BenchPart & { limits: CryptoLimits }> {
  const messageText = randomBytes(50).toString("hex"); // 100 ASCII bytes
  const message = Buffer.from(messageText, "latin1");
  const limits: CryptoLimits = { sign: {}, verify: {}, proofVerify: {} } as CryptoLimits;
  const rows: BenchPart["rows"] = [];
  for (const alg of CA_KEY_ALGORITHMS) {
    const ca = await benchCa(alg);
    const raw = rawSignVerify(alg, ca.privateKey, ca.publicKey, message);
    // The same key type as a request key: the proof of possession's algorithm.
    const t = alg as KeyType;
    const proof = rawProofVerify(t, message);
    const m = await interleaved([{ sync: raw.sign }, { sync: raw.verify }, { sync: proof }], o);
    [limits.sign[alg], limits.verify[alg], limits.proofVerify[t]] = m.rates as [number, number, number];
    rows.push({
      "key type": alg,
      "CA signature": caSignatureParams(alg).name,
      "sign/s": Math.round(limits.sign[alg]),
      "verify/s": Math.round(limits.verify[alg]),
      "proof signature": proofSignatureName(t),
      "proof verify/s": Math.round(limits.proofVerify[t]),
      "issuance limit/s": Math.round(1 / (1 / limits.sign[alg] + 1 / limits.proofVerify[t])),
    });
  }
  return {
    title: "1. the cryptographic limit",
    rows,
    targets: [],
    notes: [
      `node ${process.version} (OpenSSL ${process.versions.openssl}), ${process.arch}; one core, synchronous node:crypto sign/verify of a 100-byte message with one key reused, median of ${o.rounds ?? 10} interleaved rounds of opsPerSecond (${o.ms ?? 750} ms per figure)`,
      "CA signature: what Go's x509.CreateCertificate picks for the CA key (and what podcert's leaves use); proof signature: what kubelet uses for a proof of possession of a key of that type (RSA-PSS verified with the salt length detected, as readRequestKey does)",
      "issuance limit: one CA signature plus one proof verification of the same key type, back to back",
    ],
    limits,
  };
}

/** Raw sign and verify closures for one key pair with a CA type's leaf signature algorithm. */
function rawSignVerify(alg: CaKeyAlgorithm, privateKey: KeyObject, publicKey: KeyObject, message: Buffer): { sign: () => Buffer; verify: () => boolean } {
  const p = caSignatureParams(alg);
  const ecdsa = alg.startsWith("ECDSA");
  const signKey: SignKeyObjectInput | KeyObject = ecdsa ? { key: privateKey, dsaEncoding: "der" } : privateKey;
  const verifyKey: VerifyKeyObjectInput | KeyObject = ecdsa ? { key: publicKey, dsaEncoding: "der" } : publicKey;
  const signature = sign(p.hash, message, signKey);
  if (!verify(p.hash, message, verifyKey, signature)) throw new Error(`raw ${alg} signature does not verify`);
  return { sign: () => sign(p.hash, message, signKey), verify: () => verify(p.hash, message, verifyKey, signature) };
}

/** A raw verify closure of a proof of possession (kubelet's algorithm for the key type) over `message`. */
function rawProofVerify(t: KeyType, message: Buffer): () => boolean {
  const req = benchRequestKey(t);
  const proof = proofOfPossession(req.privateKey, message.toString("latin1"));
  const pv = proofVerifyArgs(t, req.publicKey);
  if (!verify(pv.hash, message, pv.key, proof)) throw new Error(`raw ${t} proof does not verify`);
  return () => verify(pv.hash, message, pv.key, proof);
}

/**
 * The least any verifier of a request's key it has not seen before must do: decode the two
 * fields from the base64 the PCR carries them in (Buffer's lenient decoder, no checks), import
 * the key (as readRequestKey does: the SPKI DER for ECDSA, the PKCS#1 RSAPublicKey inside the
 * SPKI for RSA, a JWK of the point for Ed25519) and verify the proof, nothing else. OpenSSL does
 * per-key work on a key's first use that a reused key has already done (for RSA, the modulus'
 * Montgomery context), so this is below the raw rate however little else is done.
 */
function freshKeyProofVerify(t: KeyType, message: Buffer): () => boolean {
  const req = benchRequestKey(t);
  const keyB64 = req.spkiDer.toString("base64");
  const proofB64 = proofOfPossession(req.privateKey, message.toString("latin1")).toString("base64");
  // Where the key material starts in the SPKI of each key type (fixed for the canonical encodings
  // kubelet writes): RSA's RSAPublicKey after a 24-byte header, Ed25519's point after 12.
  const importKey = t.startsWith("ECDSA")
    ? (spki: Buffer) => createPublicKey({ key: spki, format: "der", type: "spki" })
    : t.startsWith("RSA")
      ? (spki: Buffer) => createPublicKey({ key: spki.subarray(24), format: "der", type: "pkcs1" })
      : (spki: Buffer) => createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: spki.subarray(12).toString("base64url") }, format: "jwk" });
  const once = () => {
    const pv = proofVerifyArgs(t, importKey(Buffer.from(keyB64, "base64")));
    return verify(pv.hash, message, pv.key, Buffer.from(proofB64, "base64"));
  };
  if (!once()) throw new Error(`fresh-key ${t} proof does not verify`);
  return once;
}

// ---------------------------------------------------------------------------------------------
// Part 2a: leaf issuance and proof verification, no I/O
// ---------------------------------------------------------------------------------------------

/** Like opsPerSecond, for operations that return a promise (awaited one after another). */
export async function asyncOpsPerSecond(fn: () => Promise<unknown>, o: { ms?: number; warmupMs?: number } = {}): Promise<number> {
  const until = async (ms: number) => {
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now - start < ms) {
      for (let i = 0; i < 4; i++) await fn();
      n += 4;
      now = performance.now();
    }
    return n / ((now - start) / 1000);
  };
  if ((o.warmupMs ?? 200) > 0) await until(o.warmupMs ?? 200);
  return until(o.ms ?? 1000);
}

function leafTemplate(spkiDer: Buffer, keyType: KeyType, now: Date): LeafTemplate {
  return {
    spkiDer,
    keyType,
    uris: ["spiffe://cluster.local/ns/ate-system/sa/ate-apiserver"],
    dnsNames: ["api.ate-system.svc", "api.ate-system.svc.cluster.local"],
    notBefore: new Date(now.getTime() - 120_000),
    notAfter: new Date(now.getTime() - 120_000 + 86_400_000),
  };
}

/**
 * The naive generator: @peculiar/x509's X509CertificateGenerator.create with the same
 * extensions, names, validity and keys as issueLeaf (extensions built per certificate, as a
 * signer using the library directly would).
 */
async function naiveGenerator(ca: BenchCa): Promise<(t: LeafTemplate) => Promise<x509.X509Certificate>> {
  const subtle = webcrypto.subtle;
  const signingAlgorithm = { name: "ECDSA", hash: "SHA-256" };
  const signingKey = await subtle.importKey("pkcs8", pemDecodeAll(ca.privateKeyPem)[0]!.der, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const issuer = new x509.Name(ca.signer.issuerNameDer);
  const akiHex = ca.signer.subjectKeyId.toString("hex");
  return async (t) => {
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x01;
    const rsa = t.keyType === "RSA3072" || t.keyType === "RSA4096";
    const publicKey = new x509.PublicKey(t.spkiDer);
    return x509.X509CertificateGenerator.create({
      serialNumber: serial.toString("hex"),
      issuer,
      notBefore: t.notBefore,
      notAfter: t.notAfter,
      publicKey,
      signingKey,
      signingAlgorithm,
      extensions: [
        new x509.SubjectAlternativeNameExtension(
          [...t.uris.map((value) => ({ type: "url" as const, value })), ...t.dnsNames.map((value) => ({ type: "dns" as const, value }))],
          true,
        ),
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(rsa ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.AuthorityKeyIdentifierExtension(akiHex, false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey, false, webcrypto),
      ],
    }, webcrypto);
  };
}

/** What every attestation figure below attests: derive-sans' decision for one P-256 request. */
const ROUND_CLAIMS = {
  pcr: { namespace: "ate-system", name: "req-api-ecdsap256", uid: "44444444-0000-4000-8000-000000000007" },
  signerName: SIGNER,
  spkiSha256: "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg",
  decision: {
    kind: "sans-derived" as const,
    uris: ["spiffe://cluster.local/ns/ate-system/sa/ate-apiserver"],
    dnsNames: ["api.ate-system.svc", "api.ate-system.svc.cluster.local"],
    lifetimeSeconds: 86_400,
  },
};

/** One round of the step attestations: derive-sans' attest (a MAC per receiver) and sign's verification. */
function attestationRound(keys: Record<KeyedStep, StepKeys>): () => Promise<void> {
  const { pcr, spkiSha256 } = ROUND_CLAIMS;
  return async () => {
    const now = new Date();
    const token = await attest(keys["derive-sans"], ROUND_CLAIMS, { now, ttlSeconds: 900 });
    await verifyAttestation(keys.sign, token, { from: "derive-sans", kind: "sans-derived", pcr, signerName: SIGNER, spkiSha256, maxLifetimeSeconds: 900 }, now);
  };
}

/**
 * The same pair as the attestations were before the per-edge MACs (0.1.0 development): a compact
 * JWS, jose EdDSA (Ed25519) SignJWT + jwtVerify with the same claims and verify options, without
 * the claims' zod check (a few µs). Kept so one run shows what the change bought.
 */
function formerEd25519Round(): () => Promise<void> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const { pcr, spkiSha256, decision } = ROUND_CLAIMS;
  return async () => {
    const now = new Date();
    const iat = Math.floor(now.getTime() / 1000);
    const token = await new SignJWT({ pcr, signer: SIGNER, spki: spkiSha256, decision })
      .setProtectedHeader({ alg: "EdDSA", typ: "podcert-attestation+jwt", kid: "derive-sans" })
      .setIssuer("derive-sans")
      .setSubject(`${pcr.namespace}/${pcr.name}/${pcr.uid}`)
      .setAudience("podcert")
      .setIssuedAt(iat)
      .setExpirationTime(iat + 900)
      .sign(privateKey);
    await jwtVerify(token, publicKey, {
      algorithms: ["EdDSA"],
      typ: "podcert-attestation+jwt",
      issuer: "derive-sans",
      audience: "podcert",
      currentDate: now,
      requiredClaims: ["exp", "iat", "sub"],
      clockTolerance: 30,
      maxTokenAge: 900,
    });
  };
}

/**
 * A reference, not podcert's code: the same round's three MACs (derive-sans' two, sign's check of
 * its own) alone, over the same signing inputs: what the JWS encoding and the claims' checks add.
 */
async function nodeHmacReference(keys: Record<KeyedStep, StepKeys>): Promise<() => void> {
  // Signing inputs of the real size: those of one real token.
  const key = randomBytes(32);
  const token = JSON.parse(await attest(keys["derive-sans"], ROUND_CLAIMS, { now: new Date(), ttlSeconds: 900 })) as { payload: string; signatures: { protected: string; signature: string }[] };
  const inputs = token.signatures.map((s) => Buffer.from(`${s.protected}.${token.payload}`));
  return () => {
    for (const input of inputs) createHmac("sha256", key).update(input).digest();
    createHmac("sha256", key).update(inputs[0]!).digest();
  };
}

/**
 * (a) issueLeaf per second for each CA key type (P-256 request key, SPIFFE URI + 2 DNS names,
 * 24 h) as a ratio to that CA type's raw sign rate (target ≥ 0.5); (b) with a P-256 CA, issueLeaf
 * against @peculiar/x509's generator for every request key type (target ≥ 10×); (c) readRequestKey
 * on a real pkixPublicKey + proofOfPossession, key import included, as a ratio to the raw proof
 * verify rate (target ≥ 0.7), and the stub-CSR form; and the step attestations' cost.
 */
export async function runLeafAndProof(limits?: CryptoLimits, o: CryptoBenchOptions = {}): Promise<BenchPart> {
  const rows: BenchPart["rows"] = [];
  const targets: TargetCheck[] = [];
  const notes: string[] = [];
  const row = (measure: string, keyType: string, perSecond: number, compare: string, comparedRate: number | string, ratio: number | string, t: string) =>
    rows.push({
      measure,
      "key type": keyType,
      "per second": Math.round(perSecond),
      "µs each": 1e6 / perSecond,
      "compared with": compare,
      "its rate/s": typeof comparedRate === "number" ? Math.round(comparedRate) : comparedRate,
      ratio,
      target: t,
    });
  const drift = (what: string, paired: number, part1: number | undefined) => {
    if (part1 !== undefined && Math.abs(paired / part1 - 1) > 0.2) {
      notes.push(`${what}: ${Math.round(paired)}/s measured next to the figure, ${Math.round(part1)}/s in part 1 (the machine's speed drifted)`);
    }
  };
  const now = new Date();
  const message = Buffer.from(randomBytes(50).toString("hex"), "latin1");
  const p256 = benchRequestKey("ECDSAP256");

  // (a) issueLeaf per CA key type, against a raw signature with the same CA key.
  for (const alg of CA_KEY_ALGORITHMS) {
    const ca = await benchCa(alg);
    const t = leafTemplate(p256.spkiDer, "ECDSAP256", now);
    issueLeaf(ca.signer, t);
    const raw = rawSignVerify(alg, ca.privateKey, ca.publicKey, message);
    const m = await interleaved([{ sync: () => issueLeaf(ca.signer, t) }, { sync: raw.sign }], o);
    const ratio = m.ratio(0, 1);
    row("issueLeaf, P-256 request key", alg + " CA", m.rates[0]!, `raw ${caSignatureParams(alg).name} sign`, m.rates[1]!, ratio, "≥ 0.5");
    targets.push(target(`leaf issuance / raw sign, ${alg} CA`, ratio, "min", 0.5, "ratio"));
    drift(`raw ${alg} sign`, m.rates[1]!, limits?.sign[alg]);
  }

  // (b) issueLeaf against the naive generator, P-256 CA, per request key type.
  const caP256 = await benchCa("ECDSAP256");
  const naive = await naiveGenerator(caP256);
  for (const kt of KEY_TYPES) {
    const req = benchRequestKey(kt);
    const t = leafTemplate(req.spkiDer, kt, now);
    // Both make the same kind of certificate (checked once, not timed).
    const ours = new x509.X509Certificate(issueLeaf(caP256.signer, t).der);
    const theirs = await naive(t);
    if (!Buffer.from(theirs.publicKey.rawData).equals(req.spkiDer) || !Buffer.from(ours.publicKey.rawData).equals(req.spkiDer)) {
      throw new Error("a generator changed the public key");
    }
    const sameExtensions = ours.extensions.map((e) => e.type).join() === theirs.extensions.map((e) => e.type).join();
    if (!sameExtensions) throw new Error(`the naive generator's extensions differ from issueLeaf's for ${kt}`);
    const m = await interleaved([{ sync: () => issueLeaf(caP256.signer, t) }, { async: () => naive(t) }], o);
    const ratio = m.ratio(0, 1);
    row("issueLeaf vs naive generator, P-256 CA", kt + " request", m.rates[0]!, "@peculiar/x509 generator", m.rates[1]!, ratio, "≥ 10");
    targets.push(target(`leaf issuance / naive generator, ${kt} request key`, ratio, "min", 10, "×"));
  }

  // (c) readRequestKey per request key type: the proof form (target) and the stub CSR form, each
  // against a raw verification of the same signature algorithm with an already imported key.
  for (const kt of KEY_TYPES) {
    const req = benchRequestKey(kt);
    const spec = {
      podUID: POD_UID,
      pkixPublicKey: req.spkiDer.toString("base64"),
      proofOfPossession: proofOfPossession(req.privateKey, POD_UID).toString("base64"),
    };
    const csrSpec = { podUID: POD_UID, stubPKCS10Request: stubCsr(req.privateKey, req.spkiDer).toString("base64") };
    const allowed = [kt];
    for (const read of [readRequestKey(spec, allowed), readRequestKey(csrSpec, allowed)]) {
      if (isRequestKeyProblem(read) || read.keyType !== kt) throw new Error(`readRequestKey misread a ${kt} key`);
    }
    const rawProof = rawProofVerify(kt, message);
    const rawCsr = rawSignVerify(kt as CaKeyAlgorithm, req.privateKey, req.publicKey, message).verify;
    const m = await interleaved(
      [
        { sync: () => readRequestKey(spec, allowed) },
        { sync: rawProof },
        { sync: () => readRequestKey(csrSpec, allowed) },
        { sync: rawCsr },
        { sync: freshKeyProofVerify(kt, message) },
      ],
      o,
    );
    const ratio = m.ratio(0, 1);
    const floor = m.ratio(4, 1);
    row("readRequestKey, pkixPublicKey + proofOfPossession", kt, m.rates[0]!, `raw ${proofSignatureName(kt)} verify`, m.rates[1]!, ratio, "≥ 0.7");
    row("floor: decode the two base64 fields, import a key not seen before, verify; nothing else", kt, m.rates[4]!, `raw ${proofSignatureName(kt)} verify`, m.rates[1]!, floor, "(none)");
    // A miss is the code's when the floor is above the target, OpenSSL's when it is not.
    const floorNote = `floor ${floor.toFixed(3)} in the same run (${floorVerdict(floor, 0.7)}); readRequestKey runs at ${m.ratio(0, 4).toFixed(2)} of the floor`;
    targets.push(target(`proof verification incl. key import / raw verify, ${kt}`, ratio, "min", 0.7, "ratio", ratio < 0.7 ? floorNote : undefined));
    row("readRequestKey, stubPKCS10Request", kt, m.rates[2]!, `raw ${caSignatureParams(kt as CaKeyAlgorithm).name} verify`, m.rates[3]!, m.ratio(2, 3), "(none)");
    drift(`raw ${kt} proof verify`, m.rates[1]!, limits?.proofVerify[kt]);
  }

  // The step attestations: derive-sans' attest (two HS256 MACs, General JWS) and sign's verify
  // (with zod checks of the claims), interleaved with the former Ed25519 pair.
  const keys = ephemeralStepKeys();
  const round = attestationRound(keys);
  const former = formerEd25519Round();
  await round();
  await former();
  const am = await interleaved([{ async: round }, { async: former }], o);
  const att = am.rates[0]!;
  row("step attestation: attest + verifyAttestation (HS256 per edge with node:crypto, General JWS)", "HS256", att, "former jose EdDSA compact SignJWT + jwtVerify", am.rates[1]!, am.ratio(0, 1), "(none)");
  const ref = await nodeHmacReference(keys);
  const hm = await interleaved([{ async: round }, { sync: ref }], o);
  row("step attestation: attest + verifyAttestation (HS256 per edge with node:crypto, General JWS)", "HS256", hm.rates[0]!, "reference: its 3 bare MACs (createHmac), no JWS, no checks", hm.rates[1]!, hm.ratio(0, 1), "(none)");

  const us = (measure: string, kt: string) => Number(rows.find((r) => r.measure === measure && r["key type"] === kt)!["µs each"]);
  const leafUs = us("issueLeaf, P-256 request key", "ECDSAP256 CA");
  const proofUs = us("readRequestKey, pkixPublicKey + proofOfPossession", "ECDSAP256");
  const perIssuanceUs = leafUs + proofUs + (3 * 1e6) / att;
  return {
    title: "2a. leaf issuance and proof verification (no I/O)",
    rows,
    targets,
    notes: [
      `single thread; each figure is the median of ${o.rounds ?? 10} rounds of opsPerSecond (${o.ms ?? 750} ms in all), interleaved with the figure it is compared with; a ratio is the median of the rounds' ratios`,
      "raw figures reuse one imported key (part 1's method, measured again next to each figure); readRequestKey imports the request's key every time, as it does per request",
      "issueLeaf template: SPIFFE URI + 2 DNS SANs, 24 h; the CaSigner is prepared once per CA (createCa + prepareCaSigner)",
      "naive generator: @peculiar/x509 X509CertificateGenerator.create with the same issuer, validity, extensions and keys (WebCrypto ECDSA P-256 signing key), extensions built per certificate, awaited one after another",
      "readRequestKey includes the strict base64 and DER checks, the key import, the verification and the SPKI SHA-256",
      `step attestations: each issuance makes 3 (validate, derive-sans, sign; one HS256 MAC per receiver of the sender, 3 + 2 + 1) and verifies 3 (derive-sans 1, sign 2); a P-256 issuance's CPU without I/O is issueLeaf + readRequestKey + 3 attestation rounds ≈ ${perIssuanceUs.toFixed(0)} µs (≈ ${Math.round(1e6 / perIssuanceUs)} per second per core), of which the attestations are ${(((3 * 1e6) / att / perIssuanceUs) * 100).toFixed(0)}%`,
      ...notes,
    ],
  };
}
