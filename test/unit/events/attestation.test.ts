import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, RejectedEventError } from "../../../shared/errors.js";
import { attest, verifyAttestation, type AttestationClaims, type AttestationExpectation, type Decision, type StepKeys } from "../../../shared/events/attestation.js";
import { ACCEPTED_KEYS_FILE, ephemeralStepKeys, generateStepSecrets, loadStepKeys, SIGNING_KEY_FILE, type StepSecretFiles } from "../../../shared/events/step-keys.js";
import { acceptsFrom, KEYED_STEPS, type KeyedStep, type StepName } from "../../../shared/steps.js";
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

/** A token with the right shape, signed by `key`, with any header/claims the test wants. */
async function customToken(key: KeyObject, o: { iss?: string; kid?: string; typ?: string; aud?: string; payload?: Record<string, unknown> } = {}): Promise<string> {
  const iat = Math.floor(NOW.getTime() / 1000);
  return new SignJWT(o.payload ?? { pcr: PCR, signer: SIGNER, spki: SPKI, decision: VALIDATED })
    .setProtectedHeader({ alg: "EdDSA", typ: o.typ ?? "podcert-attestation+jwt", kid: o.kid ?? "validate" })
    .setIssuer(o.iss ?? "validate")
    .setSubject(`${PCR.namespace}/${PCR.name}/${PCR.uid}`)
    .setAudience(o.aud ?? "podcert")
    .setIssuedAt(iat)
    .setExpirationTime(iat + TTL)
    .sign(key);
}

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const decodePart = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;

describe("step keys", () => {
  it("generateStepSecrets gives every step its own private key and exactly the public keys it accepts", () => {
    expect(Object.keys(secrets).sort()).toEqual([...KEYED_STEPS].sort());
    const privates = new Map<StepName, Record<string, unknown>>();
    for (const step of KEYED_STEPS) {
      const priv = JSON.parse(secrets[step][SIGNING_KEY_FILE]) as Record<string, unknown>;
      expect(priv).toMatchObject({ kty: "OKP", crv: "Ed25519", kid: step });
      expect(typeof priv.d).toBe("string");
      privates.set(step, priv);
    }
    for (const step of KEYED_STEPS) {
      const set = JSON.parse(secrets[step][ACCEPTED_KEYS_FILE]) as { keys: Record<string, unknown>[] };
      expect(set.keys.map((k) => k.kid)).toEqual([...acceptsFrom(step)]);
      for (const k of set.keys) {
        expect(k.d, `${step} must hold no private key`).toBeUndefined();
        // the public key is the one belonging to that step's private key
        expect(k.x).toBe(privates.get(k.kid as StepName)!.x);
      }
      // no other step's private key anywhere in this step's files
      const text = secrets[step][SIGNING_KEY_FILE] + secrets[step][ACCEPTED_KEYS_FILE];
      for (const other of KEYED_STEPS) if (other !== step) expect(text).not.toContain(privates.get(other)!.d as string);
    }
  });

  it("each generation makes fresh keys, distinct per step", () => {
    const again = generateStepSecrets();
    const ds = [...KEYED_STEPS.map((s) => secrets[s]), ...KEYED_STEPS.map((s) => again[s])].map((f) => (JSON.parse(f[SIGNING_KEY_FILE]) as { d: string }).d);
    expect(new Set(ds).size).toBe(ds.length);
  });

  it("loadStepKeys loads the signing key and the accepted public keys", () => {
    for (const step of KEYED_STEPS) {
      const k = keys[step];
      expect(k.step).toBe(step);
      expect(k.signingKey.type).toBe("private");
      expect(k.signingKey.asymmetricKeyType).toBe("ed25519");
      expect([...k.accepted.keys()]).toEqual([...acceptsFrom(step)]);
      for (const [from, pub] of k.accepted) {
        expect(pub.type).toBe("public");
        expect(pub.equals(createPublicKey(keys[from as KeyedStep].signingKey))).toBe(true);
      }
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

  describe("loadStepKeys refuses bad files, never echoing the private key", () => {
    const bad = (): { case: string; step: StepName; files: () => StepSecretFiles; says: RegExp }[] => [
      { case: "a signing key that is not JSON", step: "sign", files: () => ({ ...secrets.sign, [SIGNING_KEY_FILE]: `${secrets.sign[SIGNING_KEY_FILE]}}}` }), says: /not JSON/ },
      { case: "another step's signing key", step: "sign", files: () => ({ ...secrets.sign, [SIGNING_KEY_FILE]: secrets.validate[SIGNING_KEY_FILE] }), says: /holds the key of step validate, not of sign/ },
      {
        case: "a signing key without its private part",
        step: "sign",
        files: () => {
          const { d: _d, ...pub } = JSON.parse(secrets.sign[SIGNING_KEY_FILE]) as Record<string, unknown>;
          return { ...secrets.sign, [SIGNING_KEY_FILE]: JSON.stringify(pub) };
        },
        says: /not an Ed25519 private JWK/,
      },
      {
        case: "a P-256 signing key",
        step: "sign",
        files: () => {
          const jwk = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
          return { ...secrets.sign, [SIGNING_KEY_FILE]: JSON.stringify({ ...jwk, kid: "sign" }) };
        },
        says: /not an Ed25519 private JWK/,
      },
      {
        case: "a signing key whose d does not decode to a key",
        step: "sign",
        files: () => {
          const jwk = JSON.parse(secrets.sign[SIGNING_KEY_FILE]) as Record<string, unknown>;
          return { ...secrets.sign, [SIGNING_KEY_FILE]: JSON.stringify({ ...jwk, d: `${String(jwk.d).slice(0, 20)}` }) };
        },
        says: /usable Ed25519 key|not an Ed25519 private JWK/,
      },
      { case: "accepted keys that are not JSON", step: "sign", files: () => ({ ...secrets.sign, [ACCEPTED_KEYS_FILE]: "{" }), says: /accepted-keys\.jwks of step sign is not JSON/ },
      { case: "accepted keys that are not a JWK Set", step: "sign", files: () => ({ ...secrets.sign, [ACCEPTED_KEYS_FILE]: "[]" }), says: /not a JWK Set/ },
      {
        case: "accepted keys with private members",
        step: "sign",
        files: () => ({ ...secrets.sign, [ACCEPTED_KEYS_FILE]: JSON.stringify({ keys: [JSON.parse(secrets.validate[SIGNING_KEY_FILE])] }) }),
        says: /key 0 .*private members are refused/,
      },
      {
        case: "an accepted key with a kid that is no step",
        step: "sign",
        files: () => {
          const set = JSON.parse(secrets.sign[ACCEPTED_KEYS_FILE]) as { keys: Record<string, unknown>[] };
          set.keys[1] = { ...set.keys[1], kid: "mallory" };
          return { ...secrets.sign, [ACCEPTED_KEYS_FILE]: JSON.stringify(set) };
        },
        says: /key 1 is not an Ed25519 public JWK/,
      },
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
      // no private key value of any step, in the message or anywhere in the error
      const dump = `${e.message} ${e.stack ?? ""} ${JSON.stringify(e)} ${String(e.cause ?? "")}`;
      for (const s of KEYED_STEPS) {
        const d = (JSON.parse(secrets[s][SIGNING_KEY_FILE]) as { d: string }).d;
        expect(dump).not.toContain(d);
        expect(dump).not.toContain(d.slice(0, 20));
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

  it("the token carries the step as kid and issuer, and the expiry from ttlSeconds", async () => {
    const token = await attest(keys["derive-sans"], claims(SANS), { now: NOW, ttlSeconds: 1234 });
    const [h, p] = token.split(".");
    expect(decodePart(h!)).toMatchObject({ alg: "EdDSA", kid: "derive-sans" });
    const payload = decodePart(p!);
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

  it("rejects a token signed by another step's key, even claiming to be validate", async () => {
    // derive-sans's key, but kid and issuer say validate
    const impostor: StepKeys = { step: "validate", signingKey: keys["derive-sans"].signingKey, accepted: new Map() };
    const token = await attest(impostor, claims(), { now: NOW, ttlSeconds: TTL });
    await rejected(verifyAttestation(keys.sign, token, expectFrom("validate", "validated"), NOW), [401, 403], /signature/);
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
    const token = await customToken(keys.validate.signingKey, { iss: "derive-sans" });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [401, 403], /iss/);
  });

  it("rejects a token with the right key and issuer but another step's kid", async () => {
    const token = await customToken(keys.validate.signingKey, { kid: "derive-sans" });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [401, 403]);
  });

  it("rejects a token of another type or audience", async () => {
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(keys.validate.signingKey, { typ: "JWT" }), expectFrom("validate", "validated"), NOW), [401, 403]);
    await rejected(verifyAttestation(keys["derive-sans"], await customToken(keys.validate.signingKey, { aud: "other" }), expectFrom("validate", "validated"), NOW), [401, 403], /aud/);
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
    const token = await attest(keys["derive-sans"], claims(SANS), { now: NOW, ttlSeconds: TTL });
    const [h, p, s] = token.split(".");
    const payload = decodePart(p!);
    change(payload);
    const tampered = `${h}.${b64url(payload)}.${s}`;
    await rejected(verifyAttestation(keys.sign, tampered, expectFrom("derive-sans", "sans-derived", { pcr: payload.pcr as PcrRef }), NOW), [401, 403]);
  });

  it("rejects an unsigned token (alg none)", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const payload = token.split(".")[1]!;
    for (const alg of ["none", "None", "NONE"]) {
      const unsigned = `${b64url({ alg, typ: "podcert-attestation+jwt", kid: "validate" })}.${payload}.`;
      await rejected(verifyAttestation(keys["derive-sans"], unsigned, expectFrom("validate", "validated"), NOW), [401, 403]);
    }
  });

  it("rejects a token signed with a symmetric key under alg HS256", async () => {
    const token = await new SignJWT({ pcr: PCR, signer: SIGNER, spki: SPKI, decision: VALIDATED })
      .setProtectedHeader({ alg: "HS256", typ: "podcert-attestation+jwt", kid: "validate" })
      .setIssuer("validate")
      .setSubject("x")
      .setAudience("podcert")
      .setIssuedAt(NOW.getTime() / 1000)
      .setExpirationTime(NOW.getTime() / 1000 + TTL)
      .sign(new Uint8Array(32));
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [401, 403]);
  });

  it.each(["", "garbage", "a.b.c", "a.b"])("rejects a malformed token %j", async (token) => {
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [400, 401, 403]);
  });

  it.each([
    { case: "an extra field in the decision", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { ...VALIDATED, admin: true } } },
    { case: "an unknown decision kind", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { kind: "approved" } } },
    { case: "no PCR", payload: { signer: SIGNER, spki: SPKI, decision: VALIDATED } },
    { case: "a lifetime below an hour", payload: { pcr: PCR, signer: SIGNER, spki: SPKI, decision: { ...SANS, lifetimeSeconds: 60 } } },
  ])("rejects a correctly signed token with malformed claims ($case)", async ({ payload }) => {
    const token = await customToken(keys.validate.signingKey, { payload });
    await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /malformed claims/);
  });

  it("names every malformed claim", async () => {
    const token = await customToken(keys.validate.signingKey, { payload: { pcr: { ...PCR, uid: 7 }, signer: SIGNER, spki: 8, decision: VALIDATED } });
    const err = await rejected(verifyAttestation(keys["derive-sans"], token, expectFrom("validate", "validated"), NOW), [403], /malformed claims/);
    expect(err.message).toContain("pcr.uid: Invalid input: expected string, received number");
    expect(err.message).toContain("spki: Invalid input: expected string, received number");
  });

  it("never puts key material in the token", async () => {
    const token = await attest(keys.validate, claims(), { now: NOW, ttlSeconds: TTL });
    const d = (JSON.parse(secrets.validate[SIGNING_KEY_FILE]) as { d: string }).d;
    expect(Buffer.from(token.split(".").slice(0, 2).join("."), "utf8").toString()).not.toContain(d);
    expect(decodePart(token.split(".")[0]!)).not.toHaveProperty("jwk");
    // sanity: the private key really is d
    expect(createPrivateKey({ key: JSON.parse(secrets.validate[SIGNING_KEY_FILE]), format: "jwk" }).asymmetricKeyType).toBe("ed25519");
  });
});
