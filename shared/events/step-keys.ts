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
  const edges = edgesOf(step);
  const wanted = new Set(edges.map(edgeKid));
  const byKid = new Map<string, EdgeKey>();
  for (const [i, raw] of keys.data.keys.entries()) {
    const parsed = edgeJwkSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(`${file}: key ${i} is not an HS256 JWK of ${KEY_BYTES} bytes (kty oct, k, kid, nothing else)`);
    const { kid, k } = parsed.data;
    // kid is bounded by the schema; it names an edge, it is no secret.
    if (!wanted.has(kid)) throw new ConfigError(`${file}: key ${i} (kid ${JSON.stringify(kid)}) is not the key of an edge ${step} is an end of`);
    if (byKid.has(kid)) throw new ConfigError(`${file}: key ${i} repeats the key of edge ${kid}`);
    const bytes = Buffer.from(k, "base64url");
    if (bytes.length !== KEY_BYTES) throw new ConfigError(`${file}: key ${i} (edge ${kid}) is not ${KEY_BYTES} bytes`);
    // A KeyObject holds its own copy: the decoded bytes are wiped, and logging the key shows only its size.
    byKid.set(kid, createSecretKey(bytes));
    bytes.fill(0);
  }
  // One pass over the edges, in registry order whatever the file's: attest signs for the
  // receivers in this order.
  const sending = new Map<StepName, EdgeKey>();
  const accepted = new Map<StepName, EdgeKey>();
  const missing: string[] = [];
  for (const edge of edges) {
    const key = byKid.get(edgeKid(edge));
    if (key === undefined) missing.push(edgeKid(edge));
    else if (edge.from === step) sending.set(edge.to, key);
    else accepted.set(edge.from, key);
  }
  if (missing.length > 0) throw new ConfigError(`${file} lacks the key of edge ${missing.join(", ")}`);
  return { step, sending, accepted };
}

/** In-memory keys for every step (for `podcert issue` without --keys, and tests). */
export function ephemeralStepKeys(): Record<KeyedStep, StepKeys> {
  const secrets = generateStepSecrets();
  return Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeys(s, secrets[s])])) as Record<KeyedStep, StepKeys>;
}
