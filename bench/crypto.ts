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
  createPublicKey,
  randomBytes,
  sign,
  verify,
  webcrypto,
  type KeyObject,
  type SignKeyObjectInput,
  type VerifyKeyObjectInput,
} from "node:crypto";
import { CA_KEY_ALGORITHMS, createCa, type CaKeyAlgorithm } from "../shared/ca/pool.js";
import { attest, verifyAttestation, type StepKeys } from "../shared/events/attestation.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import type { StepName } from "../shared/events/types.js";
import { KEY_TYPES, type KeyType } from "../shared/pcr/model.js";
import { issueLeaf, prepareCaSigner, type CaSigner, type LeafTemplate } from "../shared/x509/leaf.js";
import { pemDecodeAll } from "../shared/x509/pem.js";
import { generateRequestKeyPair, proofOfPossession, stubCsr, type RequestKeyPair } from "../shared/x509/request-generator.js";
import { readRequestKey } from "../shared/x509/request-key.js";
import { opsPerSecond, target, type BenchPart, type TargetCheck } from "./report.js";

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
  /** Measuring time per figure in milliseconds (after a 200 ms warm-up); default 1000. */
  ms?: number;
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
  const ms = o.ms ?? 1000;
  const messageText = randomBytes(50).toString("hex"); // 100 ASCII bytes
  const message = Buffer.from(messageText, "latin1");
  const limits: CryptoLimits = { sign: {}, verify: {}, proofVerify: {} } as CryptoLimits;
  const rows: BenchPart["rows"] = [];
  for (const alg of CA_KEY_ALGORITHMS) {
    const ca = await benchCa(alg);
    const p = caSignatureParams(alg);
    const signKey: SignKeyObjectInput | KeyObject = alg.startsWith("ECDSA") ? { key: ca.privateKey, dsaEncoding: "der" } : ca.privateKey;
    const verifyKey: VerifyKeyObjectInput | KeyObject = alg.startsWith("ECDSA") ? { key: ca.publicKey, dsaEncoding: "der" } : ca.publicKey;
    const signature = sign(p.hash, message, signKey);
    if (!verify(p.hash, message, verifyKey, signature)) throw new Error(`raw ${alg} signature does not verify`);
    limits.sign[alg] = opsPerSecond(() => sign(p.hash, message, signKey), { ms });
    limits.verify[alg] = opsPerSecond(() => verify(p.hash, message, verifyKey, signature), { ms });

    // The same key type as a request key: the proof of possession's algorithm.
    const t = alg as KeyType;
    const req = benchRequestKey(t);
    const proof = proofOfPossession(req.privateKey, messageText);
    const pv = proofVerifyArgs(t, req.publicKey);
    if (!verify(pv.hash, message, pv.key, proof)) throw new Error(`raw ${t} proof does not verify`);
    limits.proofVerify[t] = opsPerSecond(() => verify(pv.hash, message, pv.key, proof), { ms });

    rows.push({
      "key type": alg,
      "CA signature": p.name,
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
      `node ${process.version}, ${process.arch}; one core, synchronous node:crypto sign/verify of a 100-byte message, ${ms} ms per figure after a 200 ms warm-up`,
      "CA signature: what Go's x509.CreateCertificate picks for the CA key (and what podcert's leaves use); proof signature: what kubelet uses for a proof of possession of a key of that type (RSA-PSS verified with the salt length detected, as readRequestKey does)",
      "issuance limit: one CA signature plus one proof verification of the same key type, back to back",
    ],
    limits,
  };
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
  await until(o.warmupMs ?? 200);
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

/** The step attestations of one issuance, paired: one attest (validate) and its verification (derive-sans). */
function attestationRound(keys: Record<StepName, StepKeys>): () => Promise<void> {
  const pcr = { namespace: "ate-system", name: "req-api-ecdsap256", uid: "44444444-0000-4000-8000-000000000007" };
  const claims = {
    pcr,
    signerName: SIGNER,
    spkiSha256: "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg",
    decision: {
      kind: "sans-derived" as const,
      uris: ["spiffe://cluster.local/ns/ate-system/sa/ate-apiserver"],
      dnsNames: ["api.ate-system.svc", "api.ate-system.svc.cluster.local"],
      lifetimeSeconds: 86_400,
    },
  };
  return async () => {
    const now = new Date();
    const token = await attest(keys["derive-sans"], claims, { now, ttlSeconds: 900 });
    await verifyAttestation(keys.sign, token, { from: "derive-sans", kind: "sans-derived", pcr, signerName: SIGNER, spkiSha256: claims.spkiSha256 }, now);
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
  const ms = o.ms ?? 1000;
  const lim = limits ?? (await runCryptoLimit(o)).limits;
  const rows: BenchPart["rows"] = [];
  const targets: TargetCheck[] = [];
  const row = (measure: string, keyType: string, perSecond: number, compare: string, ratio: number | string, t: string) =>
    rows.push({ measure, "key type": keyType, "per second": Math.round(perSecond), "µs each": perSecond > 0 ? 1e6 / perSecond : Number.NaN, "compared with": compare, ratio, target: t });
  const now = new Date();
  const p256 = benchRequestKey("ECDSAP256");

  // (a) issueLeaf per CA key type.
  for (const alg of CA_KEY_ALGORITHMS) {
    const ca = await benchCa(alg);
    const t = leafTemplate(p256.spkiDer, "ECDSAP256", now);
    issueLeaf(ca.signer, t);
    const rate = opsPerSecond(() => issueLeaf(ca.signer, t), { ms });
    const ratio = rate / lim.sign[alg];
    row("issueLeaf (CA key type)", alg, rate, `raw ${alg} sign (${Math.round(lim.sign[alg])}/s)`, ratio, "≥ 0.5");
    targets.push(target(`leaf issuance, ${alg} CA / raw sign`, ratio, "min", 0.5, "ratio"));
  }

  // (b) issueLeaf against the naive generator, P-256 CA, per request key type.
  const caP256 = await benchCa("ECDSAP256");
  const naive = await naiveGenerator(caP256);
  for (const kt of KEY_TYPES) {
    const req = benchRequestKey(kt);
    const t = leafTemplate(req.spkiDer, kt, now);
    const fast = opsPerSecond(() => issueLeaf(caP256.signer, t), { ms });
    // The naive generator must make the same kind of certificate (sanity check, not timed).
    const sample = await naive(t);
    if (!Buffer.from(sample.publicKey.rawData).equals(req.spkiDer)) throw new Error("naive generator changed the public key");
    const slow = await asyncOpsPerSecond(() => naive(t), { ms });
    const ratio = fast / slow;
    row("issueLeaf vs naive generator (request key type, P-256 CA)", kt, fast, `@peculiar/x509 generator (${Math.round(slow)}/s)`, ratio, "≥ 10");
    targets.push(target(`leaf issuance vs naive generator, ${kt} request key`, ratio, "min", 10, "×"));
  }

  // (c) readRequestKey per request key type: the proof form (target) and the stub CSR form.
  const csrRates: Record<string, number> = {};
  for (const kt of KEY_TYPES) {
    const req = benchRequestKey(kt);
    const spec = {
      podUID: POD_UID,
      pkixPublicKey: req.spkiDer.toString("base64"),
      proofOfPossession: proofOfPossession(req.privateKey, POD_UID).toString("base64"),
    };
    const allowed = [kt];
    if (readRequestKey(spec, allowed).keyType !== kt) throw new Error(`readRequestKey misread a ${kt} key`);
    const rate = opsPerSecond(() => readRequestKey(spec, allowed), { ms });
    const ratio = rate / lim.proofVerify[kt];
    row("readRequestKey (pkixPublicKey + proofOfPossession)", kt, rate, `raw ${proofSignatureName(kt)} verify (${Math.round(lim.proofVerify[kt])}/s)`, ratio, "≥ 0.7");
    targets.push(target(`proof verification incl. key import, ${kt} / raw verify`, ratio, "min", 0.7, "ratio"));

    const csrSpec = { podUID: POD_UID, stubPKCS10Request: stubCsr(req.privateKey, req.spkiDer).toString("base64") };
    if (readRequestKey(csrSpec, allowed).keyType !== kt) throw new Error(`readRequestKey misread a ${kt} CSR`);
    csrRates[kt] = opsPerSecond(() => readRequestKey(csrSpec, allowed), { ms });
  }
  for (const kt of KEY_TYPES) {
    const caAlg = kt as CaKeyAlgorithm;
    const p = caSignatureParams(caAlg);
    row("readRequestKey (stubPKCS10Request)", kt, csrRates[kt]!, `raw ${p.name} verify (${Math.round(lim.verify[caAlg])}/s)`, csrRates[kt]! / lim.verify[caAlg], "(none)");
  }

  // The step attestations: one jose EdDSA sign + verify (with zod checks of the claims).
  const keys = ephemeralStepKeys();
  const round = attestationRound(keys);
  await round();
  const att = await asyncOpsPerSecond(round, { ms });
  row("step attestation: attest + verifyAttestation (jose EdDSA)", "ED25519", att, "", "", "(none)");

  const p256Leaf = rows.find((r) => r["key type"] === "ECDSAP256" && r.measure === "issueLeaf (CA key type)")!;
  const p256Proof = rows.find((r) => r["key type"] === "ECDSAP256" && String(r.measure).startsWith("readRequestKey (pkix"))!;
  const perIssuanceUs = Number(p256Leaf["µs each"]) + Number(p256Proof["µs each"]) + (3 * 1e6) / att;
  return {
    title: "2a. leaf issuance and proof verification (no I/O)",
    rows,
    targets,
    notes: [
      `single thread, ${ms} ms per figure after a 200 ms warm-up; ratios use part 1's raw rates from the same run`,
      "issueLeaf template: request key as given (P-256 for the CA rows), SPIFFE URI + 2 DNS SANs, 24 h; the CaSigner is prepared once per CA (createCa + prepareCaSigner)",
      "naive generator: @peculiar/x509 X509CertificateGenerator.create with the same issuer, validity, extensions and keys (WebCrypto ECDSA P-256 signing key), extensions built per certificate, awaited one after another",
      "readRequestKey includes the strict base64 and DER checks, createPublicKey from DER, the canonical re-encoding check, the verification and the SPKI SHA-256",
      `a P-256 issuance's CPU without I/O: issueLeaf + readRequestKey + 3 attestation rounds (validate→derive-sans, derive-sans→sign, validate→sign) ≈ ${perIssuanceUs.toFixed(0)} µs, ≈ ${Math.round(1e6 / perIssuanceUs)} per second per core`,
    ],
  };
}
