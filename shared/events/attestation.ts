/**
 * Step attestations: each step MACs what it hands on, once per edge it sends on (shared/steps.ts
 * attestationEdges: a receiver that accepts its attestations). The token is a JWS in General JSON
 * serialization (RFC 7515 §7.2.1), one payload and one HS256 signature per receiver, each under
 * the key of that edge alone, which only its two ends hold; it travels as the JSON text. A
 * receiver checks only the signature of its own edge, found by its kid. The payload binds the PCR
 * (namespace, name, uid), the signer, the request key's SHA-256 and the step's decision, and
 * expires after the broker's retry window. Decisions are read from the verified token, never from
 * unsigned event fields. Why MACs and not signatures: README, design notes ("Attestations: one MAC
 * key per edge").
 */
import type { webcrypto } from "node:crypto";
import { GeneralSign, jwtVerify, errors as joseErrors, type JWTPayload } from "jose";
import { RejectedEventError } from "../errors.js";
import { jsonShapeProblem } from "./json-shape.js";
import {
  MAX_CONDITION_MESSAGE_BYTES,
  MAX_CONDITION_REASON_LENGTH,
  MAX_DNS_NAME_LENGTH,
  MAX_DNS_NAMES,
  MAX_LABEL_LENGTH,
  MAX_NAME_LENGTH,
  MAX_SERVICE_NAMES,
  MAX_UID_LENGTH,
  MAX_URI_LENGTH,
} from "../limits.js";
import type { PcrRef } from "../pcr/model.js";
import * as z from "../zod.js";
import { edgeKid, STEPS, type StepName } from "../steps.js";
import { withArticle } from "../words.js";

const TOKEN_TYPE = "podcert-attestation+jwt";
const AUDIENCE = "podcert";

const decisionSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("validated"),
    keyType: z.string().check(z.maxLength(16)),
    podName: z.string().check(z.maxLength(MAX_NAME_LENGTH)),
    podUID: z.string().check(z.maxLength(MAX_UID_LENGTH)),
    serviceAccountName: z.string().check(z.maxLength(MAX_NAME_LENGTH)),
    maxExpirationSeconds: z.optional(z.number().check(z.int())),
    services: z.discriminatedUnion("kind", [
      z.strictObject({ kind: z.literal("none") }),
      z.strictObject({ kind: z.literal("all") }),
      z.strictObject({ kind: z.literal("named"), names: z.array(z.string().check(z.maxLength(MAX_LABEL_LENGTH))).check(z.maxLength(MAX_SERVICE_NAMES)) }),
    ]),
  }),
  z.strictObject({
    kind: z.literal("sans-derived"),
    uris: z.array(z.string().check(z.maxLength(MAX_URI_LENGTH))).check(z.length(1)),
    dnsNames: z.array(z.string().check(z.maxLength(MAX_DNS_NAME_LENGTH))).check(z.maxLength(MAX_DNS_NAMES)),
    lifetimeSeconds: z.number().check(z.int(), z.minimum(3600), z.maximum(7862400)),
  }),
  z.strictObject({
    kind: z.literal("denied"),
    reason: z.string().check(z.maxLength(MAX_CONDITION_REASON_LENGTH)),
    // Bytes bound the status message; a string of that many bytes has at most as many characters.
    message: z.string().check(z.maxLength(MAX_CONDITION_MESSAGE_BYTES)),
    permanent: z.boolean(),
  }),
  z.strictObject({
    kind: z.literal("issued"),
    serialNumber: z.string().check(z.maxLength(64)),
    fingerprintSha256: z.string().check(z.maxLength(64)),
  }),
]);
export type Decision = z.infer<typeof decisionSchema>;
export type DecisionKind = Decision["kind"];
/** The decision of one kind, e.g. `DecisionOf<"validated">`. */
export type DecisionOf<K extends DecisionKind> = Extract<Decision, { kind: K }>;

export interface AttestationClaims<K extends DecisionKind = DecisionKind> {
  step: StepName;
  pcr: PcrRef;
  signerName: string;
  /** base64url SHA-256 of the request's SubjectPublicKeyInfo. */
  spkiSha256: string;
  decision: DecisionOf<K>;
}

const payloadSchema = z.object({
  iss: z.enum(STEPS),
  pcr: z.strictObject({ namespace: z.string(), name: z.string(), uid: z.string() }),
  signer: z.string(),
  spki: z.string(),
  decision: decisionSchema,
});

/**
 * One edge's key: HMAC SHA-256 over 256 random bits, imported once and not extractable. jose runs
 * on WebCrypto, and given a KeyObject it imports it again on every call (about half the cost of a
 * MAC, measured: bench part 2a).
 */
export type EdgeKey = webcrypto.CryptoKey;

/** One step's key material: the MAC key of each edge it is an end of, nothing else. */
export interface StepKeys {
  step: StepName;
  /** The keys of the edges it sends on, by receiver (in registry order: the token's order). */
  sending: ReadonlyMap<StepName, EdgeKey>;
  /** The keys of the edges it receives on, by sender. */
  accepted: ReadonlyMap<StepName, EdgeKey>;
}

const encoder = new TextEncoder();

/**
 * The attestation of `keys.step`'s decision for every step it sends to: one payload, one HS256
 * signature per receiver. Every receiver gets a signature on every token, whatever the event's
 * type, as the token is handed on further (sign reads validate's too): which receivers read it is
 * the routing's business, not the sender's.
 */
export async function attest(keys: StepKeys, claims: Omit<AttestationClaims, "step">, o: { now: Date; ttlSeconds: number }): Promise<string> {
  if (keys.sending.size === 0) throw new Error(`step ${keys.step} has no edge to attest on (shared/steps.ts: no step accepts its attestations)`);
  const iat = Math.floor(o.now.getTime() / 1000);
  // The claims of a JWT, as jwtVerify checks them on the receiving end.
  const payload = {
    pcr: claims.pcr,
    signer: claims.signerName,
    spki: claims.spkiSha256,
    decision: claims.decision,
    iss: keys.step,
    sub: `${claims.pcr.namespace}/${claims.pcr.name}/${claims.pcr.uid}`,
    aud: AUDIENCE,
    iat,
    exp: iat + o.ttlSeconds,
  };
  const jws = new GeneralSign(encoder.encode(JSON.stringify(payload)));
  for (const [to, key] of keys.sending) jws.addSignature(key).setProtectedHeader({ alg: "HS256", typ: TOKEN_TYPE, kid: edgeKid({ from: keys.step, to }) });
  return JSON.stringify(await jws.sign());
}

export interface AttestationExpectation<K extends DecisionKind = DecisionKind> {
  from: StepName;
  kind: K;
  pcr: PcrRef;
  signerName: string;
  /** When known, the token must bind this key hash. */
  spkiSha256?: string;
  /**
   * The configured attestation lifetime: a token claiming a longer one (exp − iat), or issued
   * later than now (beyond the clock tolerance), is refused, so a stolen edge key cannot mint
   * tokens that stay valid for long.
   */
  maxLifetimeSeconds: number;
}

/** Clock skew allowed between steps, in seconds. */
const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * A General JWS as sent: members the sender does not make (an unprotected header, a detached
 * payload) are refused. The signatures are bounded by the edges (a sender has at most one per step).
 */
const generalJwsSchema = z.strictObject({
  payload: z.string().check(z.minLength(1)),
  signatures: z
    .array(z.strictObject({ protected: z.string().check(z.minLength(1), z.maxLength(1024)), signature: z.string().check(z.minLength(1), z.maxLength(1024)) }))
    .check(z.minLength(1), z.maxLength(STEPS.length)),
});
const headerKidSchema = z.object({ kid: z.string() });

/**
 * The compact JWS of the signature of `kid` in a General JWS: the same signing input
 * (protected.payload, RFC 7515 §5.1), so jwtVerify checks it with every claim check it makes.
 * A problem when the token has no signature for that edge, or more than one (a sender makes one).
 */
function compactFor(token: string, kid: string): { compact: string } | { problem: string } {
  // The event's budget (json-shape.ts) counted this string as one value: its own structure is
  // bounded here, before parsing, to what a sender makes (an object, two members, a signature
  // object per receiver).
  if (jsonShapeProblem(Buffer.from(token), { maxValues: 8 * STEPS.length, maxDepth: 3 }) !== undefined) {
    return { problem: "not a valid token (not a General JWS)" };
  }
  let json: unknown;
  try {
    json = JSON.parse(token);
  } catch {
    return { problem: "not a valid token (not JSON)" };
  }
  const jws = generalJwsSchema.safeParse(json);
  if (!jws.success) return { problem: "not a valid token (not a General JWS)" };
  const mine = jws.data.signatures.filter((s) => {
    try {
      const h = headerKidSchema.safeParse(JSON.parse(Buffer.from(s.protected, "base64url").toString("utf8")));
      return h.success && h.data.kid === kid;
    } catch {
      return false;
    }
  });
  if (mine.length !== 1) return { problem: mine.length === 0 ? `no signature for edge ${kid}` : `${mine.length} signatures for edge ${kid}` };
  return { compact: `${mine[0]!.protected}.${jws.data.payload}.${mine[0]!.signature}` };
}

/**
 * Verifies a token from `expect.from` bound to `expect.pcr`. Every failure is a RejectedEventError
 * (401 unsigned/malformed, 403 wrong signer, expired, or bound to something else), so the broker
 * does not retry it and the PCR is never touched because of it. The claims come back typed by the
 * decision kind expected: a caller reads `decision.podName` of a "validated" token directly.
 */
export async function verifyAttestation<K extends DecisionKind>(
  keys: StepKeys,
  token: string | undefined,
  expect: AttestationExpectation<K>,
  now: Date,
): Promise<AttestationClaims<K>> {
  if (token === undefined) throw new RejectedEventError(`missing attestation from step ${expect.from}`, 401);
  const key = keys.accepted.get(expect.from);
  if (key === undefined) {
    throw new RejectedEventError(`step ${keys.step} does not accept attestations from ${expect.from}`, 403);
  }
  const edge = edgeKid({ from: expect.from, to: keys.step });
  const found = compactFor(token, edge);
  if ("problem" in found) throw new RejectedEventError(`attestation from ${expect.from} rejected: ${found.problem}`, 403);
  let payload: JWTPayload;
  let kid: string | undefined;
  try {
    ({ payload, protectedHeader: { kid } } = await jwtVerify(found.compact, key, {
      // The one algorithm of an edge key: an asymmetric alg, or none, never reaches a key.
      algorithms: ["HS256"],
      typ: TOKEN_TYPE,
      issuer: expect.from,
      audience: AUDIENCE,
      currentDate: now,
      requiredClaims: ["exp", "iat", "sub"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      // Also refuses an iat in the future (beyond the tolerance).
      maxTokenAge: expect.maxLifetimeSeconds,
    }));
  } catch (e) {
    throw new RejectedEventError(`attestation from ${expect.from} rejected: ${describeJoseError(e)}`, 403, { cause: e });
  }
  // compactFor picked it by kid; checked again here, where the header was verified.
  if (kid !== edge) throw new RejectedEventError(`attestation from ${expect.from} names key ${String(kid).slice(0, 40)}`, 403);
  // jwtVerify required both as numbers.
  const lifetime = (payload.exp as number) - (payload.iat as number);
  if (lifetime > expect.maxLifetimeSeconds) {
    throw new RejectedEventError(`attestation from ${expect.from} claims a lifetime of ${lifetime} s, more than the ${expect.maxLifetimeSeconds} s configured`, 403);
  }
  const parsed = payloadSchema.safeParse(payload);
  if (!parsed.success) {
    throw new RejectedEventError(`attestation from ${expect.from} has malformed claims (${z.describeIssues(parsed.error).join("; ")})`, 403);
  }
  const p = parsed.data;
  const mismatch: string[] = [];
  if (p.pcr.namespace !== expect.pcr.namespace || p.pcr.name !== expect.pcr.name || p.pcr.uid !== expect.pcr.uid) {
    mismatch.push(`it is for PCR ${p.pcr.namespace}/${p.pcr.name} (uid ${p.pcr.uid})`);
  }
  if (p.signer !== expect.signerName) mismatch.push(`it is for signer ${p.signer}`);
  if (expect.spkiSha256 !== undefined && p.spki !== expect.spkiSha256) mismatch.push("it is bound to another public key");
  const { decision } = p;
  const ofKind = isKind(decision, expect.kind);
  if (!ofKind) mismatch.push(`it attests ${withArticle(decision.kind)} decision, not ${expect.kind}`);
  if (!ofKind || mismatch.length > 0) {
    throw new RejectedEventError(`attestation from ${expect.from} does not match the event: ${mismatch.join("; ")}`, 403);
  }
  return { step: p.iss, pcr: p.pcr, signerName: p.signer, spkiSha256: p.spki, decision };
}

function isKind<K extends DecisionKind>(d: Decision, kind: K): d is DecisionOf<K> {
  return d.kind === kind;
}

function describeJoseError(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return "expired";
  if (e instanceof joseErrors.JWTClaimValidationFailed && e.claim === "iat") return "issued in the future";
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return "signature does not verify (made with another key)";
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `claim ${e.claim} ${e.reason === "check_failed" ? "does not match" : "is missing"}`;
  if (e instanceof joseErrors.JOSEError) return e.code;
  return "not a valid token";
}
