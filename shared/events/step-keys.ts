/**
 * Step key material. Each step's Secret holds its own Ed25519 private key (a JWK whose `kid` is the
 * step's name) and a JWK Set of the public keys of the steps it accepts events from; no step ever
 * holds another step's private key.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { ConfigError } from "../errors.js";
import * as z from "../zod.js";
import type { StepKeys } from "./attestation.js";
import { acceptsFrom, KEYED_STEPS, type KeyedStep, type StepName } from "../steps.js";

export const SIGNING_KEY_FILE = "step-key.jwk";
export const ACCEPTED_KEYS_FILE = "accepted-keys.jwks";

const publicJwkSchema = z.strictObject({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().check(z.maxLength(64)),
  kid: z.enum(KEYED_STEPS),
  alg: z.optional(z.literal("EdDSA")),
  use: z.optional(z.literal("sig")),
});
const privateJwkSchema = z.extend(publicJwkSchema, { d: z.string().check(z.maxLength(64)) });

/** The two files of one step's Secret, as text. */
export interface StepSecretFiles {
  [SIGNING_KEY_FILE]: string;
  [ACCEPTED_KEYS_FILE]: string;
}

/** Fresh keys for every step that has them (not the dead-letter sink), as the files each step's Secret holds. */
export function generateStepSecrets(): Record<KeyedStep, StepSecretFiles> {
  const pairs = new Map(KEYED_STEPS.map((step) => [step, generateKeyPairSync("ed25519")] as const));
  const publicJwk = (step: KeyedStep) => ({ ...pairs.get(step)!.publicKey.export({ format: "jwk" }), kid: step, alg: "EdDSA", use: "sig" });
  const out = {} as Record<KeyedStep, StepSecretFiles>;
  for (const step of KEYED_STEPS) {
    const priv = { ...pairs.get(step)!.privateKey.export({ format: "jwk" }), kid: step, alg: "EdDSA", use: "sig" };
    out[step] = {
      [SIGNING_KEY_FILE]: `${JSON.stringify(priv)}\n`,
      [ACCEPTED_KEYS_FILE]: `${JSON.stringify({ keys: (acceptsFrom(step) as readonly KeyedStep[]).map(publicJwk) }, null, 2)}\n`,
    };
  }
  return out;
}

/** Builds StepKeys from the Secret's two files; errors never echo key material. */
export function loadStepKeys(step: StepName, files: StepSecretFiles): StepKeys {
  let signingKey: KeyObject;
  let json: unknown;
  try {
    json = JSON.parse(files[SIGNING_KEY_FILE]);
  } catch {
    throw new ConfigError(`${SIGNING_KEY_FILE} of step ${step} is not JSON`);
  }
  const priv = privateJwkSchema.safeParse(json);
  if (!priv.success) throw new ConfigError(`${SIGNING_KEY_FILE} of step ${step} is not an Ed25519 private JWK with a step name as kid`);
  if (priv.data.kid !== step) throw new ConfigError(`${SIGNING_KEY_FILE} holds the key of step ${priv.data.kid}, not of ${step}`);
  try {
    signingKey = createPrivateKey({ key: priv.data, format: "jwk" });
  } catch {
    throw new ConfigError(`${SIGNING_KEY_FILE} of step ${step} does not hold a usable Ed25519 key`);
  }

  let set: unknown;
  try {
    set = JSON.parse(files[ACCEPTED_KEYS_FILE]);
  } catch {
    throw new ConfigError(`${ACCEPTED_KEYS_FILE} of step ${step} is not JSON`);
  }
  const keys = z.object({ keys: z.array(z.unknown()).check(z.maxLength(16)) }).safeParse(set);
  if (!keys.success) throw new ConfigError(`${ACCEPTED_KEYS_FILE} of step ${step} is not a JWK Set`);
  const accepted = new Map<StepName, KeyObject>();
  for (const [i, raw] of keys.data.keys.entries()) {
    const parsed = publicJwkSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ConfigError(`${ACCEPTED_KEYS_FILE} of step ${step}: key ${i} is not an Ed25519 public JWK with a step name as kid (private members are refused)`);
    }
    accepted.set(parsed.data.kid, createPublicKey({ key: parsed.data, format: "jwk" }));
  }
  return { step, signingKey, accepted };
}

/** In-memory keys for every step (for `podcert issue` without --keys, and tests). */
export function ephemeralStepKeys(): Record<KeyedStep, StepKeys> {
  const secrets = generateStepSecrets();
  return Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeys(s, secrets[s])])) as Record<KeyedStep, StepKeys>;
}
