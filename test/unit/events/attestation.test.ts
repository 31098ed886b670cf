import { createHmac, createSecretKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { GeneralSign, SignJWT, generalVerify, jwtVerify, type GeneralJWSInput } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, RejectedEventError } from "../../../shared/errors.js";
import { attest, verifyAttestation, type AttestationClaims, type AttestationExpectation, type Decision, type EdgeKey, type StepKeys } from "../../../shared/events/attestation.js";
import { EDGE_KEYS_FILE, ephemeralStepKeys, generateStepSecrets, loadStepKeys, type StepSecretFiles } from "../../../shared/events/step-keys.js";
import { attestationEdges, edgeKid, edgesOf, KEYED_STEPS, type KeyedStep, type StepName } from "../../../shared/steps.js";
import { acceptsFrom, attestsTo } from "../../helpers/edges.js";
import type { PcrRef } from "../../../shared/pcr/model.js";

const NOW = new Date("2026-05-01T10:00:00.000Z");
const TTL = 900;
const PCR: PcrRef = { namespace: "ate-system", name: "req-abcde", uid: "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716" };
const SIGNER = "atesystem.podcert.ate.dev/identity";
const SPKI = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";

const VALIDATED: Decision = {
  kind: "validated",
  keyType: "ECDSAP256",
  podName: "web-0",
  podUID: "0b6f7c1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b",
  serviceAccountName: "web",
  maxExpirationSeconds: 86400,
  services: { kind: "named", names: ["web", "api"] },
  request: {
    apiVersion: "certificates.k8s.io/v1",
    resourceVersion: "4711",
    creationTimestamp: "2026-05-01T09:59:58Z",
    nodeName: "node-1",
    nodeUID: "6f0b5c1e-1c1a-4c59-9a53-0d8f1d7c2a01",
    serviceAccountUID: "0a9a8d3c-5b1e-4f5e-8c11-6e7d20000002",
    publicKey: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
  },
  pod: { labels: { app: "web" }, hostname: "web-0", subdomain: "web" },
};
const SANS: Decision = {
  kind: "sans-derived",
  uris: ["spiffe://cluster.local/ns/ate-system/sa/web"],
  dnsNames: ["api.ate-system.svc", "api.ate-system.svc.cluster.local", "web.ate-system.svc", "web.ate-system.svc.cluster.local"],
  lifetimeSeconds: 86400,
};

let secrets: Record<KeyedStep, StepSecretFiles>;
let keys: Record<KeyedStep, StepKeys>;

beforeAll(() => {
  secrets = generateStepSecrets();
  keys = Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeys(s, secrets[s])])) as Record<KeyedStep, StepKeys>;
});

const claims = (decision: Decision = VALIDATED) => ({ pcr: PCR, signerName: SIGNER, spkiSha256: SPKI, decision });
const expectFrom = (from: StepName, kind: Decision["kind"], o: Partial<AttestationExpectation> = {}): AttestationExpectation => ({
  from,
  kind,
  pcr: PCR,
  signerName: SIGNER,
  spkiSha256: SPKI,
  maxLifetimeSeconds: TTL,
  ...o,
});

async function rejected(p: Promise<unknown>, statuses: readonly number[] = [403], message?: RegExp): Promise<RejectedEventError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, "expected a RejectedEventError").toBeInstanceOf(RejectedEventError);
  const r = err as RejectedEventError;
  expect(statuses).toContain(r.status);
  if (message) expect(r.message).toMatch(message);
  return r;
}

/** The key of edge from→to, as both its ends hold it. */
const edgeKey = (from: KeyedStep, to: KeyedStep): EdgeKey => keys[from].sending.get(to)!;

/**
 * A token with the right shape, MACed with `key` for edge `kid` (default validate->derive-sans),
 * with any header/claims the test wants.
 */
async function customToken(
  key: EdgeKey | KeyObject | Uint8Array,
  o: { iss?: string; kid?: string; typ?: string; aud?: string; alg?: string; payload?: Record<string, unknown> } = {},
): Promise<string> {
  const iat = Math.floor(NOW.getTime() / 1000);
  const claims = {
    ...(o.payload ?? { pcr: PCR, signer: SIGNER, spki: SPKI, decision: VALIDATED }),
    iss: o.iss ?? "validate",
    sub: `${PCR.namespace}/${PCR.name}/${PCR.uid}`,
    aud: o.aud ?? "podcert",
    iat,
    exp: iat + TTL,
  };
  const jws = new GeneralSign(new TextEncoder().encode(JSON.stringify(claims)));
  jws.addSignature(key).setProtectedHeader({ alg: o.alg ?? "HS256", typ: o.typ ?? "podcert-attestation+jwt", kid: o.kid ?? "validate->derive-sans" });
  return JSON.stringify(await jws.sign());
}

const general = (token: string) => JSON.parse(token) as { payload: string; signatures: { protected: string; signature: string }[] };
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const decodePart = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;

const kOf = (files: StepSecretFiles) => (JSON.parse(files[EDGE_KEYS_FILE]) as { keys: { kty: string; k: string; kid: string }[] }).keys;
const allKeyValues = () => KEYED_STEPS.flatMap((s) => kOf(secrets[s]).map((k) => k.k));

describe("step keys", () => {
  it("generateStepSecrets gives every step exactly the keys of the edges it is an end of, each edge its own key", () => {
    expect(Object.keys(secrets).sort()).toEqual([...KEYED_STEPS].sort());
    const byKid = new Map<string, Set<string>>();
    const holders = new Map<string, StepName[]>();
    for (const step of KEYED_STEPS) {
      const set = kOf(secrets[step]);
      expect(set.map((k) => k.kid)).toEqual(edgesOf(step).map(edgeKid));
      for (const k of set) {
        expect(k).toMatchObject({ kty: "oct", alg: "HS256" });
        expect(Buffer.from(k.k, "base64url")).toHaveLength(32);
        byKid.set(k.kid, (byKid.get(k.kid) ?? new Set()).add(k.k));
        holders.set(k.kid, [...(holders.get(k.kid) ?? []), step]);
      }
    }
    for (const e of attestationEdges()) {
      // held by exactly its two ends, the same key at both
      expect(holders.get(edgeKid(e))!.sort()).toEqual([e.from, e.to].sort());
      expect(byKid.get(edgeKid(e))!.size).toBe(1);
    }
    // no two edges share a key
    expect(new Set([...byKid.values()].map((v) => [...v][0])).size).toBe(attestationEdges().length);
    // steps that are no edge's end hold an empty set
    expect(kOf(secrets["publish-trust"])).toEqual([]);
    expect(kOf(secrets.resync)).toEqual([]);
  });

  it("each generation makes fresh keys", () => {
    const again = generateStepSecrets();
    const ks = [...allKeyValues(), ...KEYED_STEPS.flatMap((s) => kOf(again[s]).map((k) => k.k))];
    // each key appears twice per generation (both ends), never across generations
    expect(new Set(ks).size).toBe(ks.length / 2);
  });

  it("loadStepKeys loads the keys it sends with, by receiver, and those it accepts, by sender: 256-bit secrets that never print", () => {
    const mac = (key: EdgeKey) => createHmac("sha256", key).update("probe").digest("hex");
    const files = new Set(allKeyValues());
    for (const step of KEYED_STEPS) {
      const k = keys[step];
      expect(k.step).toBe(step);
      expect([...k.sending.keys()]).toEqual([...attestsTo(step)]);
      expect([...k.accepted.keys()]).toEqual([...acceptsFrom(step)]);
      for (const key of [...k.sending.values(), ...k.accepted.values()]) {
        expect(key).toMatchObject({ type: "secret", symmetricKeySize: 32 });
        // the key loaded is one of the file's, and printing or serializing it shows no part of it
        expect(files.has(key.export().toString("base64url"))).toBe(true);
        for (const shown of [inspect(key, { depth: 5, showHidden: true }), JSON.stringify(key), String(key)]) {
          for (const v of files) expect(shown).not.toContain(v);
        }
      }
      // both ends of an edge hold the same key
      for (const [from, key] of k.accepted) expect(mac(key)).toBe(mac(keys[from as KeyedStep].sending.get(step)!));
    }
  });

  it("ephemeralStepKeys gives working keys for every step", async () => {
    const eph = ephemeralStepKeys();
    expect(Object.keys(eph).sort()).toEqual([...KEYED_STEPS].sort());
    const token = await attest(eph.validate, claims(), { now: NOW, ttlSeconds: TTL });
    await expect(verifyAttestation(eph["derive-sans"], token, expectFrom("validate", "validated"), NOW)).resolves.toMatchObject({ step: "validate" });
    // and they are not the keys of another generation
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW));
  });

  describe("loadStepKeys refuses bad files, never echoing key material", () => {
    const withSet = (step: KeyedStep, change: (set: Record<string, unknown>[]) => unknown): StepSecretFiles => {
      const set = kOf(secrets[step]) as unknown as Record<string, unknown>[];
      return { [EDGE_KEYS_FILE]: JSON.stringify({ keys: change(set) ?? set }) };
    };
    const bad = (): { case: string; step: StepName; files: () => StepSecretFiles; says: RegExp }[] => [
      { case: "a file that is not JSON", step: "sign", files: () => ({ [EDGE_KEYS_FILE]: `${secrets.sign[EDGE_KEYS_FILE]}}}` }), says: /edge-keys\.jwks of step sign is not JSON/ },
      { case: "a file that is not a JWK Set", step: "sign", files: () => ({ [EDGE_KEYS_FILE]: "[]" }), says: /not a JWK Set/ },
      { case: "another step's file", step: "sign", files: () => secrets.validate, says: /key 0 \(kid "validate->derive-sans"\) is not the key of an edge sign is an end of/ },
      { case: "a key of an edge the step is no end of, added", step: "sign", files: () => withSet("sign", (set) => [...set, kOf(secrets.validate)[0]]), says: /key 3 .*validate->derive-sans.* not the key of an edge sign is an end of/ },
      { case: "a key missing", step: "sign", files: () => withSet("sign", (set) => set.slice(1)), says: /lacks the key of edge validate->sign/ },
      { case: "a key twice", step: "sign", files: () => withSet("sign", (set) => [...set, set[0]]), says: /key 3 repeats the key of edge validate->sign/ },
      { case: "a key of 16 bytes", step: "sign", files: () => withSet("sign", (set) => [{ ...set[0], k: randomBytes(16).toString("base64url") }, ...set.slice(1)]), says: /key 0 is not an HS256 JWK of 32 bytes/ },
      { case: "an asymmetric key", step: "sign", files: () => withSet("sign", (set) => [{ ...generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" }), kid: "validate->sign" }, ...set.slice(1)]), says: /key 0 is not an HS256 JWK/ },
      { case: "a key for another algorithm", step: "sign", files: () => withSet("sign", (set) => [{ ...set[0], alg: "HS512" }, ...set.slice(1)]), says: /key 0 is not an HS256 JWK/ },
      { case: "a key with extra members", step: "sign", files: () => withSet("sign", (set) => [{ ...set[0], d: "x" }, ...set.slice(1)]), says: /key 0 is not an HS256 JWK/ },
      { case: "keys for a step that is no edge's end", step: "resync", files: () => withSet("sign", () => undefined), says: /key 0 .* not the key of an edge resync is an end of/ },
    ];

    it.each(bad())("$case", ({ step, files, says }) => {
      const f = files();
      let err: unknown;
      try {
        loadStepKeys(step, f);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.message).toMatch(says);
      // no key value of any edge, in the message or anywhere in the error
      const dump = `${e.message} ${e.stack ?? ""} ${JSON.stringify(e)} ${String(e.cause ?? "")}`;
      for (const k of allKeyValues()) {
        expect(dump).not.toContain(k);
        expect(dump).not.toContain(k.slice(0, 20));
      }
    });
  });
});

describe("attest / verifyAttestation", () => {
  it("round trip: derive-sans reads validate's decision exactly as signed", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const got = await verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW);
    const want: AttestationClaims = { step: "validate", pcr: PCR, signerName: SIGNER, spkiSha256: SPKI, decision: VALIDATED };
    expect(got).toEqual(want);
  });

  it("round trip: sign reads the exact SAN list and lifetime derive-sans signed, and validate's decision too", async () => {
    const fromValidate = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const fromDerive = await attest(keys["derive-sans"], claims(SANS), { now: NOW, ttlSeconds: TTL });
    expect((await verifyAttestation(keys.sign, fromDerive, expectFrom("derive-sans", "sans-derived"), NOW)).decision).toEqual(SANS);
    expect((await verifyAttestation(keys.sign, fromValidate, expectFrom("validate", "validated"), NOW)).decision).toEqual(VALIDATED);
  });

  it("the token is a General JWS with one HS256 signature per receiver, kid naming the edge; the step as issuer, the expiry from ttlSeconds", async () => {
    const token = await attest(keys["derive-sans"], claims(SANS), { now: NOW, ttlSeconds: 1234 });
    const jws = general(token);
    expect(Object.keys(jws).sort()).toEqual(["payload", "signatures"]);
    expect(jws.signatures.map((sig) => decodePart(sig.protected))).toEqual([
      { alg: "HS256", typ: "podcert-attestation+jwt", kid: "derive-sans->sign" },
      { alg: "HS256", typ: "podcert-attestation+jwt", kid: "derive-sans->deny" },
    ]);
    expect(general(await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL })).signatures.map((sig) => decodePart(sig.protected).kid)).toEqual([
      "validate->derive-sans",
      "validate->sign",
      "validate->deny",
    ]);
    const payload = decodePart(jws.payload);
    expect(payload.iss).toBe("derive-sans");
    expect(payload.iat).toBe(NOW.getTime() / 1000);
    expect(payload.exp).toBe(NOW.getTime() / 1000 + 1234);
  });

  it("does not check the key hash when the receiver does not know it", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const o = expectFrom("validate", "validated");
    delete o.spkiSha256;
    await expect(verifyAttestation(keys["derive-sans"], token, o, NOW)).resolves.toMatchObject({ spkiSha256: SPKI });
  });

  it("rejects a missing token with 401", async () => {
    await rejected(verifyAttestation(keys["derive-sans"], undefined, expectFrom("validate", "validated"), NOW), [401], /missing attestation from step validate/);
  });

  it("rejects a token from a step the receiver does not accept (validate accepts nobody)", async () => {
    const token = await attest(keys.sign, claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys.validate, token, expectFrom("sign", "validated"), NOW), [403], /does not accept attestations from sign/);
  });

  it("rejects a token MACed with another edge's key, even claiming to be validate's for sign", async () => {
    // derive-sans holds validate->derive-sans: what it can make with it, labelled validate->sign
    const impostor: StepKeys = { step: "validate", sending: new Map([["sign", edgeKey("validate", "derive-sans")]]), accepted: new Map() };
    const token = await attest(impostor, claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys.sign, token, expectFrom("validate", "validated"), NOW), [403], /attestation from validate rejected: signature does not verify/);
    // and with every key derive-sans holds
    for (const key of [...keys["derive-sans"].sending.values(), ...keys["derive-sans"].accepted.values()]) {
      const t = await customToken(key, { kid: "validate->sign" });
      await rejected(verifyAttestation(keys.sign, t, expectFrom("validate", "validated"), NOW), [403], /signature does not verify/);
    }
  });

  it("a receiver checks only its own edge's signature: another edge's, broken, is ignored; its own, missing or broken, is not", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const jws = general(token);
    const breakSig = (i: number) => JSON.stringify({ ...jws, signatures: jws.signatures.map((sig, j) => (j === i ? { ...sig, signature: `${sig.signature.slice(0, -2)}AA` } : sig)) });
    // derive-sans' is the first; sign's the second
    await expect(verifyAttestation(keys["derive-sans"], breakSig(1), expectFrom("validate", "validated"), NOW)).resolves.toBeDefined();
    await rejected(verifyAttestation(keys["derive-sans"], breakSig(0), expectFrom("validate", "validated"), NOW), [403], /signature does not verify/);
    const without = JSON.stringify({ ...jws, signatures: jws.signatures.slice(1) });
    await rejected(verifyAttestation(keys["derive-sans"], without, expectFrom("validate", "validated"), NOW), [403], /no signature for edge validate->derive-sans/);
    const twice = JSON.stringify({ ...jws, signatures: [jws.signatures[0], ...jws.signatures] });
    await rejected(verifyAttestation(keys["derive-sans"], twice, expectFrom("validate", "validated"), NOW), [403], /2 signatures for edge validate->derive-sans/);
  });

  it("rejects members a sender never makes (an unprotected header) and too many signatures", async () => {
    const jws = general(await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL }));
    const withHeader = JSON.stringify({ ...jws, signatures: jws.signatures.map((sig) => ({ ...sig, header: { kid: "validate->derive-sans" } })) });
    await rejected(verifyAttestation(keys["derive-sans"], withHeader, expectFrom("validate", "validated"), NOW), [403], /not a General JWS/);
    const many = JSON.stringify({ ...jws, signatures: Array.from({ length: 50 }, () => jws.signatures[1]) });
    await rejected(verifyAttestation(keys["derive-sans"], many, expectFrom("validate", "validated"), NOW), [403], /not a General JWS/);
    // structure beyond a General JWS's is refused before it is parsed
    for (const shaped of ["[".repeat(40_000), JSON.stringify({ ...jws, extra: Array.from({ length: 10_000 }, () => ({})) }), JSON.stringify({ ...jws, signatures: [{ ...jws.signatures[0], x: [[[1]]] }] })]) {
      await rejected(verifyAttestation(keys["derive-sans"], shaped, expectFrom("validate", "validated"), NOW), [403], /not a General JWS/);
    }
  });

  it("rejects derive-sans's genuine token offered as validate's", async () => {
    const token = await attest(keys["derive-sans"], claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys.sign, token, expectFrom("validate", "validated"), NOW), [401, 403]);
  });

  it("rejects a token signed by a key of another deployment", async () => {
    const token = await attest(ephemeralStepKeys().validate, claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [401, 403]);
  });

  it("rejects a token with the right key but another issuer", async () => {
    const token = await customToken(edgeKey("validate", "derive-sans"), { iss: "derive-sans" });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [401, 403], /iss/);
  });

  it("rejects a token with the right key and issuer but another edge's kid", async () => {
    const token = await customToken(edgeKey("validate", "derive-sans"), { kid: "validate->sign" });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /no signature for edge validate->derive-sans/);
    // sign finds "its" signature, which does not verify under its key
    await rejected(verifyAttestation(keys.sign, token, expectFrom("validate", "validated"), NOW), [403], /signature does not verify/);
  });

  it("rejects a token of another type or audience", async () => {
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(edgeKey("validate", "derive-sans"), { typ: "JWT" }), expectFrom("validate", "validated"), NOW), [401, 403]);
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(edgeKey("validate", "derive-sans"), { aud: "other" }), expectFrom("validate", "validated"), NOW), [401, 403], /aud/);
  });

  it("accepts a token until it expires (with at most 30 s of clock tolerance) and rejects it after", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const at = (s: number) => new Date(NOW.getTime() + s * 1000);
    await expect(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), at(TTL - 1))).resolves.toBeDefined();
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), at(TTL + 31)), [401, 403], /expired/);
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), at(TTL + 86400)), [401, 403], /expired/);
  });

  it.each([
    { case: "issued a year from now, valid for the configured lifetime", iatOffset: 365 * 86400, ttl: TTL, says: /issued in the future/ },
    { case: "issued 31 s from now (past the clock tolerance)", iatOffset: 31, ttl: TTL, says: /issued in the future/ },
    { case: "issued now, valid for a year", iatOffset: 0, ttl: 365 * 86400, says: /claims a lifetime of 31536000 s, more than the 900 s configured/ },
    { case: "issued now, valid one second longer than configured", iatOffset: 0, ttl: TTL + 1, says: /claims a lifetime of 901 s/ },
  ])("rejects a correctly signed token $case", async ({ iatOffset, ttl, says }) => {
    const token = await attest(keys.validate, claims(), { now: new Date(NOW.getTime() + iatOffset * 1000), ttlSeconds: ttl });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], says);
  });

  it("accepts a token issued within the clock tolerance ahead, and one with exactly the configured lifetime", async () => {
    const ahead = await attest(keys.validate, claims(), { now: new Date(NOW.getTime() + 30_000), ttlSeconds: TTL });
    await expect(verifyAttestation(keys["derive-sans"], ahead, expectFrom("validate", "validated"), NOW)).resolves.toBeDefined();
  });

  it.each<{ case: string; o: Partial<AttestationExpectation>; says: RegExp }>([
    { case: "another namespace", o: { pcr: { ...PCR, namespace: "default" } }, says: /it is for PCR ate-system\/req-abcde/ },
    { case: "another name", o: { pcr: { ...PCR, name: "req-zzzzz" } }, says: /it is for PCR ate-system\/req-abcde/ },
    { case: "another uid (a re-created PCR)", o: { pcr: { ...PCR, uid: "00000000-0000-4000-8000-000000000000" } }, says: /uid 5e4d3c2b/ },
    { case: "another signer", o: { signerName: "workerpool.podcert.ate.dev/identity" }, says: /it is for signer atesystem\.podcert\.ate\.dev\/identity/ },
    { case: "another key hash", o: { spkiSha256: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, says: /bound to another public key/ },
    { case: "another decision kind", o: { kind: "denied" }, says: /attests a validated decision, not denied/ },
  ])("rejects with 403 a token bound to $case", async ({ o, says }) => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated", o), NOW), [403], says);
  });

  it.each([
    { case: "more DNS names", change: (p: Record<string, unknown>) => ((p.decision as { dnsNames: string[] }).dnsNames.push("evil.example.com")) },
    { case: "a longer lifetime", change: (p: Record<string, unknown>) => ((p.decision as { lifetimeSeconds: number }).lifetimeSeconds = 7862400) },
    { case: "another PCR uid", change: (p: Record<string, unknown>) => ((p.pcr as PcrRef).uid = "00000000-0000-4000-8000-000000000000") },
    { case: "a later expiry", change: (p: Record<string, unknown>) => (p.exp = (p.exp as number) + 86400) },
  ])("rejects a tampered payload ($case)", async ({ change }) => {
    const jws = general(await attest(keys["derive-sans"], claims(SANS), { now: NOW, ttlSeconds: TTL }));
    const payload = decodePart(jws.payload);
    change(payload);
    const tampered = JSON.stringify({ ...jws, payload: b64url(payload) });
    await rejected(verifyAttestation(keys.sign, tampered, expectFrom("derive-sans", "sans-derived", { pcr: payload.pcr as PcrRef }), NOW), [401, 403]);
  });

  it("rejects an unsigned token (alg none)", async () => {
    const jws = general(await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL }));
    for (const alg of ["none", "None", "NONE"]) {
      const unsigned = JSON.stringify({ payload: jws.payload, signatures: [{ protected: b64url({ alg, typ: "podcert-attestation+jwt", kid: "validate->derive-sans" }), signature: "" }] });
      await rejected(verifyAttestation(keys["derive-sans"], unsigned, expectFrom("validate", "validated"), NOW), [403]);
      const emptySig = JSON.stringify({ payload: jws.payload, signatures: [{ protected: b64url({ alg, typ: "podcert-attestation+jwt", kid: "validate->derive-sans" }), signature: "AA" }] });
      await rejected(verifyAttestation(keys["derive-sans"], emptySig, expectFrom("validate", "validated"), NOW), [403], /rejected/);
    }
  });

  it("rejects a token MACed with a key of the right length that is not the edge's", async () => {
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(new Uint8Array(32)), expectFrom("validate", "validated"), NOW), [403], /signature does not verify/);
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(createSecretKey(randomBytes(32))), expectFrom("validate", "validated"), NOW), [403], /signature does not verify/);
  });

  it("rejects another HMAC algorithm and an asymmetric signature", async () => {
    // an HS512 MAC made with the edge's own key, and with another
    for (const key of [edgeKey("validate", "derive-sans"), createSecretKey(randomBytes(64))]) {
      await rejected(verifyAttestation(keys["derive-sans"], await customToken(key, { alg: "HS512" }), expectFrom("validate", "validated"), NOW), [403], /algorithm "HS512" is not allowed/);
    }
    const ed = generateKeyPairSync("ed25519").privateKey;
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(ed, { alg: "EdDSA" }), expectFrom("validate", "validated"), NOW), [403], /algorithm "EdDSA" is not allowed/);
  });

  it("rejects a compact JWS (the former format), even one MACed with the edge's key", async () => {
    const token = await new SignJWT({ pcr: PCR, signer: SIGNER, spki: SPKI, decision: VALIDATED })
      .setProtectedHeader({ alg: "HS256", typ: "podcert-attestation+jwt", kid: "validate->derive-sans" })
      .setIssuer("validate")
      .setSubject("x")
      .setAudience("podcert")
      .setIssuedAt(NOW.getTime() / 1000)
      .setExpirationTime(NOW.getTime() / 1000 + TTL)
      .sign(edgeKey("validate", "derive-sans"));
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /not a valid token/);
  });

  it.each(["", "garbage", "a.b.c", "a.b", "{}", "[]", "null", '{"payload":"e30","signatures":[]}'])("rejects a malformed token %j", async (token) => {
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [400, 401, 403]);
  });

  it.each([
    { case: "an extra field in the decision", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { ...VALIDATED, admin: true } } },
    { case: "an unknown decision kind", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { kind: "approved" } } },
    { case: "no PCR", payload: { signer: SIGNER, spki: SPKI, decision: VALIDATED } },
    { case: "a lifetime below an hour", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { ...SANS, lifetimeSeconds: 60 } } },
  ])("rejects a correctly signed token with malformed claims ($case)", async ({ payload }) => {
    const token = await customToken(edgeKey("validate", "derive-sans"), { payload });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /malformed claims/);
  });

  it("names every malformed claim", async () => {
    const token = await customToken(edgeKey("validate", "derive-sans"), { payload: { pcr: { ...PCR, uid: 7 }, signer: SIGNER, spki: 8, decision: VALIDATED } });
    const err = await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /malformed claims/);
    expect(err.message).toContain("pcr.uid: Invalid input: expected string, received number");
    expect(err.message).toContain("spki: Invalid input: expected string, received number");
  });

  it("interoperates with jose both ways: jose verifies every signature podcert makes, podcert accepts what jose makes", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    for (const to of attestsTo("validate")) {
      const key = keys[to as KeyedStep].accepted.get("validate")!;
      const { payload, protectedHeader } = await generalVerify(JSON.parse(token) as GeneralJWSInput, key, { algorithms: ["HS256"] });
      expect(protectedHeader).toEqual({ alg: "HS256", typ: "podcert-attestation+jwt", kid: `validate->${to}` });
      const sig = general(token).signatures.find((x) => decodePart(x.protected).kid === `validate->${to}`)!;
      const verified = await jwtVerify(`${sig.protected}.${general(token).payload}.${sig.signature}`, key, { currentDate: NOW, issuer: "validate", audience: "podcert", typ: "podcert-attestation+jwt" });
      expect(verified.payload).toEqual(JSON.parse(Buffer.from(payload).toString()));
      expect(verified.payload).toMatchObject({ sub: `${PCR.namespace}/${PCR.name}/${PCR.uid}`, iat: NOW.getTime() / 1000, exp: NOW.getTime() / 1000 + TTL });
    }
    const fromJose = await customToken(edgeKey("validate", "derive-sans"));
    const c = await verifyAttestation(keys["derive-sans"], fromJose, expectFrom("validate", "validated"), NOW);
    expect(c.decision).toEqual(VALIDATED);
  });

  it("refuses what the hand-written checks must: header members beyond alg/typ/kid, non-base64url parts, a short MAC, claims missing or of the wrong type", async () => {
    const key = edgeKey("validate", "derive-sans");
    const jws = general(await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL }));
    const mine = jws.signatures[0]!;
    const expectVd = expectFrom("validate", "validated");
    // a `crit` (or any other) member: the signature is nobody's
    const macd = (protectedPart: string, payload = jws.payload) =>
      JSON.stringify({ payload, signatures: [{ protected: protectedPart, signature: createHmac("sha256", key).update(`${protectedPart}.${payload}`).digest("base64url") }] });
    const crit = b64url({ alg: "HS256", typ: "podcert-attestation+jwt", kid: "validate->derive-sans", crit: ["exp"] });
    await rejected(verifyAttestation(keys["derive-sans"], macd(crit), expectVd, NOW), [403], /no signature for edge validate->derive-sans/);
    // padding or base64 (not base64url) characters, which Buffer's decoder would skip
    for (const bad of [`${mine.signature}=`, mine.signature.replace(/[-_]/g, "+") === mine.signature ? `+${mine.signature}` : mine.signature.replace(/[-_]/g, "+")]) {
      const t = JSON.stringify({ ...jws, signatures: [{ ...mine, signature: bad }] });
      await rejected(verifyAttestation(keys["derive-sans"], t, expectVd, NOW), [403], /not a General JWS/);
    }
    // a truncated MAC of the right prefix
    await rejected(verifyAttestation(keys["derive-sans"], JSON.stringify({ ...jws, signatures: [{ ...mine, signature: mine.signature.slice(0, 22) }] }), expectVd, NOW), [403], /signature does not verify/);
    // correctly MACed, but the payload is not the claims a sender makes
    const header = mine.protected;
    const iat = NOW.getTime() / 1000;
    const base = { pcr: PCR, signer: SIGNER, spki: SPKI, decision: VALIDATED, iss: "validate", sub: `${PCR.namespace}/${PCR.name}/${PCR.uid}`, aud: "podcert", iat, exp: iat + TTL };
    for (const payload of [
      Buffer.from("not json").toString("base64url"),
      b64url([base]),
      b64url({ ...base, exp: undefined }),
      b64url({ ...base, iat: String(iat) }),
      b64url({ ...base, exp: iat + 0.5 }),
      b64url({ ...base, nbf: iat }),
    ]) {
      await rejected(verifyAttestation(keys["derive-sans"], macd(header, payload), expectVd, NOW), [403], /malformed claims/);
    }
    await rejected(verifyAttestation(keys["derive-sans"], macd(header, b64url({ ...base, sub: "other/x/y" })), expectVd, NOW), [403], /claim sub does not match/);
    await expect(verifyAttestation(keys["derive-sans"], macd(header, b64url(base)), expectVd, NOW)).resolves.toBeDefined();
  });

  it("never puts key material in the token", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const jws = general(token);
    const text = [token, Buffer.from(jws.payload, "base64url").toString(), ...jws.signatures.map((sig) => Buffer.from(sig.protected, "base64url").toString())].join(" ");
    for (const k of allKeyValues()) {
      expect(text).not.toContain(k);
      expect(text).not.toContain(Buffer.from(k, "base64url").toString("hex"));
    }
    for (const sig of jws.signatures) expect(decodePart(sig.protected)).not.toHaveProperty("jwk");
  });
});
