/**
 * Step key material: one random 256-bit MAC key per attestation edge (shared/steps.ts
 * attestationEdges), held by exactly the edge's two ends. Each step's Secret is one file, a JWK
 * Set of `kty: oct` keys whose kid names the edge (`<sender>-><receiver>`): the edges it sends on
 * and those it receives on, never another edge's. A step that is no edge's end (publish-trust,
 * resync) has an empty set; the dead-letter sink has no Secret.
 */
import { createSecretKey, randomBytes } from "node:crypto";
import { ConfigError } from "../errors.js";
import * as z from "../zod.js";
import type { EdgeKey, StepKeys } from "./attestation.js";
import { edgeKid, edgesOf, KEYED_STEPS, type KeyedStep, type StepName } from "../steps.js";

export const EDGE_KEYS_FILE = "edge-keys.jwks";

/** HS256 keys as long as the hash (RFC 7518 §3.2 asks for at least that much). */
const KEY_BYTES = 32;

const edgeJwkSchema = z.strictObject({
  kty: z.literal("oct"),
  // base64url of KEY_BYTES bytes, no padding.
  k: z.string().check(z.length(Math.ceil((KEY_BYTES * 4) / 3)), z.regex(/^[A-Za-z0-9_-]+$/)),
  kid: z.string().check(z.maxLength(64)),
  alg: z.optional(z.literal("HS256")),
  use: z.optional(z.literal("sig")),
});

/** The one file of one step's Secret, as text. */
export interface StepSecretFiles {
  [EDGE_KEYS_FILE]: string;
}

/** Fresh edge keys, as the files each step's Secret holds (every step but the dead-letter sink). */
export function generateStepSecrets(): Record<KeyedStep, StepSecretFiles> {
  const keyOf = new Map<string, string>();
  const jwk = (kid: string) => {
    let k = keyOf.get(kid);
    if (k === undefined) keyOf.set(kid, (k = randomBytes(KEY_BYTES).toString("base64url")));
    return { kty: "oct", k, kid, alg: "HS256", use: "sig" };
  };
  const out = {} as Record<KeyedStep, StepSecretFiles>;
  for (const step of KEYED_STEPS) {
    out[step] = { [EDGE_KEYS_FILE]: `${JSON.stringify({ keys: edgesOf(step).map((e) => jwk(edgeKid(e))) }, null, 2)}\n` };
  }
  return out;
}

/**
 * Builds StepKeys from the Secret's file: exactly the keys of the edges `step` is an end of, each
 * once. Errors name the key by its kid or position, never echo key material.
 */
export function loadStepKeys(step: StepName, files: StepSecretFiles): StepKeys {
  const file = `${EDGE_KEYS_FILE} of step ${step}`;
  let set: unknown;
  try {
    set = JSON.parse(files[EDGE_KEYS_FILE]);
  } catch {
    throw new ConfigError(`${file} is not JSON`);
  }
  const keys = z.strictObject({ keys: z.array(z.unknown()).check(z.maxLength(16)) }).safeParse(set);
  if (!keys.success) throw new ConfigError(`${file} is not a JWK Set`);
  const wanted = new Map(edgesOf(step).map((e) => [edgeKid(e), e] as const));
  const sending = new Map<StepName, EdgeKey>();
  const accepted = new Map<StepName, EdgeKey>();
  const seen = new Set<string>();
  for (const [i, raw] of keys.data.keys.entries()) {
    const parsed = edgeJwkSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(`${file}: key ${i} is not an HS256 JWK of ${KEY_BYTES} bytes (kty oct, k, kid, nothing else)`);
    const { kid, k } = parsed.data;
    const edge = wanted.get(kid);
    // kid is bounded by the schema; it names an edge, it is no secret.
    if (edge === undefined) throw new ConfigError(`${file}: key ${i} (kid ${JSON.stringify(kid)}) is not the key of an edge ${step} is an end of`);
    if (seen.has(kid)) throw new ConfigError(`${file}: key ${i} repeats the key of edge ${kid}`);
    seen.add(kid);
    const bytes = Buffer.from(k, "base64url");
    if (bytes.length !== KEY_BYTES) throw new ConfigError(`${file}: key ${i} (edge ${kid}) is not ${KEY_BYTES} bytes`);
    // A KeyObject holds its own copy: the decoded bytes are wiped, and logging the key shows only its size.
    const key = createSecretKey(bytes);
    bytes.fill(0);
    if (edge.from === step) sending.set(edge.to, key);
    else accepted.set(edge.from, key);
  }
  const missing = [...wanted.keys()].filter((kid) => !seen.has(kid));
  if (missing.length > 0) throw new ConfigError(`${file} lacks the key of edge ${missing.join(", ")}`);
  // In registry order, whatever the file's: attest signs for the receivers in this order.
  const ordered = (m: Map<StepName, EdgeKey>, ends: readonly StepName[]) => new Map(ends.filter((s) => m.has(s)).map((s) => [s, m.get(s)!] as const));
  const edges = [...wanted.values()];
  return { step, sending: ordered(sending, edges.map((e) => e.to)), accepted: ordered(accepted, edges.map((e) => e.from)) };
}

/** In-memory keys for every step (for `podcert issue` without --keys, and tests). */
export function ephemeralStepKeys(): Record<KeyedStep, StepKeys> {
  const secrets = generateStepSecrets();
  return Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeys(s, secrets[s])])) as Record<KeyedStep, StepKeys>;
}
