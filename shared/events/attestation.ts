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
 *
 * Made and checked with node:crypto, not jose: jose runs on WebCrypto, whose every call cost about
 * 55 µs here whatever it computed (bench part 2a), more than the rest of a MAC'd JWS; createHmac
 * takes about 5 µs. The format stays standard (the tests check it against jose both ways), and the
 * checks jose's jwtVerify made are made here, each named below: one algorithm, the header's exact
 * members, a constant-time MAC comparison before the payload is parsed, then typ, iss, aud, sub,
 * iat and exp with the same clock tolerance.
 */
import { createHmac, timingSafeEqual, type KeyObject } from "node:crypto";
import { RejectedEventError } from "../errors.js";
import { jsonShapeProblem } from "./json-shape.js";
import {
  MAX_ATTESTED_POD_LABELS,
  MAX_CONDITION_MESSAGE_BYTES,
  MAX_CONDITION_REASON_LENGTH,
  MAX_DNS_NAME_LENGTH,
  MAX_DNS_NAMES,
  MAX_LABEL_KEY_LENGTH,
  MAX_LABEL_LENGTH,
  MAX_NAME_LENGTH,
  MAX_RESOURCE_VERSION_LENGTH,
  MAX_SERVICE_NAMES,
  MAX_TIMESTAMP_LENGTH,
  MAX_UID_LENGTH,
  MAX_URI_LENGTH,
  REQUEST_KEY_LIMITS,
} from "../limits.js";
import { CERTIFICATES_API_VERSIONS } from "../kube/api-versions.js";
import type { PcrRef } from "../pcr/model.js";
import * as z from "../zod.js";
import { edgeKid, STEPS, type StepName } from "../steps.js";
import { withArticle } from "../words.js";

const TOKEN_TYPE = "podcert-attestation+jwt";
const AUDIENCE = "podcert";

/**
 * The stored PCR as validate read it (a `validated` decision's `request`), for sign, which does
 * not read it again: it writes the status conditionally on this resourceVersion, through this
 * apiVersion, and issues to this key (the request's SubjectPublicKeyInfo, base64 DER as in
 * pkixPublicKey: public; its SHA-256 is the key hash every attestation binds). validate checks
 * what it reads against these members before it attests (functions/validate/handler.ts).
 */
export const attestedRequestSchema = z.strictObject({
  apiVersion: z.enum(CERTIFICATES_API_VERSIONS),
  resourceVersion: z.string().check(z.minLength(1), z.maxLength(MAX_RESOURCE_VERSION_LENGTH)),
  creationTimestamp: z.optional(z.string().check(z.maxLength(MAX_TIMESTAMP_LENGTH))),
  nodeName: z.string().check(z.maxLength(MAX_NAME_LENGTH)),
  nodeUID: z.string().check(z.maxLength(MAX_UID_LENGTH)),
  serviceAccountUID: z.string().check(z.maxLength(MAX_UID_LENGTH)),
  publicKey: z.string().check(z.maxLength(REQUEST_KEY_LIMITS.pkixPublicKey)),
});

/**
 * What of the pod the DNS names depend on (a `validated` decision's `pod`): at most
 * MAX_ATTESTED_POD_LABELS labels, and keys, values, hostname and subdomain no longer than
 * Kubernetes allows. A pod whose facts do not fit is not attested (policy/sans.ts
 * attestablePodFacts).
 */
export const attestedPodSchema = z.strictObject({
  labels: z
    .record(z.string().check(z.maxLength(MAX_LABEL_KEY_LENGTH)), z.string().check(z.maxLength(MAX_LABEL_LENGTH)))
    .check(z.refine((l) => Object.keys(l).length <= MAX_ATTESTED_POD_LABELS, `at most ${MAX_ATTESTED_POD_LABELS} labels`)),
  hostname: z.optional(z.string().check(z.maxLength(MAX_LABEL_LENGTH))),
  subdomain: z.optional(z.string().check(z.maxLength(MAX_LABEL_LENGTH))),
});

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
    /** The stored PCR as validate read it, for sign: {@link attestedRequestSchema}. */
    request: attestedRequestSchema,
    /**
     * What derive-sans needs of the pod, and sign compares the live pod with: only when the pod
     * opted in to Service names and its facts fit {@link attestedPodSchema} (else absent, and
     * derive-sans reads the pod).
     */
    pod: z.optional(attestedPodSchema),
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

/**
 * The claims a sender makes, and nothing else: podcert's (pcr, signer, spki, decision) and the
 * registered ones jwtVerify used to check (iss, sub, aud, iat, exp).
 */
const payloadSchema = z.strictObject({
  iss: z.enum(STEPS),
  sub: z.string().check(z.maxLength(3 * MAX_NAME_LENGTH)),
  aud: z.string().check(z.maxLength(64)),
  iat: z.number().check(z.int()),
  exp: z.number().check(z.int()),
  pcr: z.strictObject({ namespace: z.string(), name: z.string(), uid: z.string() }),
  signer: z.string(),
  spki: z.string(),
  decision: decisionSchema,
});

/**
 * One edge's key: HMAC SHA-256 over 256 random bits (a secret KeyObject: util.inspect and JSON
 * show its size, never its bytes).
 */
export type EdgeKey = KeyObject;

/** One step's key material: the MAC key of each edge it is an end of, nothing else. */
export interface StepKeys {
  step: StepName;
  /** The keys of the edges it sends on, by receiver (in registry order: the token's order). */
  sending: ReadonlyMap<StepName, EdgeKey>;
  /** The keys of the edges it receives on, by sender. */
  accepted: ReadonlyMap<StepName, EdgeKey>;
}

const ALGORITHM = "HS256";
/** An HS256 MAC: 32 bytes, 43 base64url characters without padding. */
const MAC_BYTES = 32;

function mac(key: EdgeKey, signingInput: string): Buffer {
  return createHmac("sha256", key).update(signingInput, "ascii").digest();
}

const b64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/**
 * The protected header a sender makes for an edge, encoded: the same bytes every time, so they are
 * made once per edge, and a receiver recognises its own edge's header by comparing the string.
 */
const headerCache = new Map<string, string>();
function protectedHeaderOf(kid: string): string {
  let h = headerCache.get(kid);
  if (h === undefined) headerCache.set(kid, (h = b64urlJson({ alg: ALGORITHM, typ: TOKEN_TYPE, kid })));
  return h;
}

/**
 * The attestation of `keys.step`'s decision for every step it sends to: one payload, one HS256
 * signature per receiver. Every receiver gets a signature on every token, whatever the event's
 * type, as the token is handed on further (sign reads validate's too): which receivers read it is
 * the routing's business, not the sender's.
 */
export async function attest(keys: StepKeys, claims: Omit<AttestationClaims, "step">, o: { now: Date; ttlSeconds: number }): Promise<string> {
  if (keys.sending.size === 0) throw new Error(`step ${keys.step} has no edge to attest on (shared/steps.ts: no step accepts its attestations)`);
  const iat = Math.floor(o.now.getTime() / 1000);
  const payload = b64urlJson({
    pcr: claims.pcr,
    signer: claims.signerName,
    spki: claims.spkiSha256,
    decision: claims.decision,
    iss: keys.step,
    sub: subjectOf(claims.pcr),
    aud: AUDIENCE,
    iat,
    exp: iat + o.ttlSeconds,
  });
  const signatures = [...keys.sending].map(([to, key]) => {
    const protectedHeader = protectedHeaderOf(edgeKid({ from: keys.step, to }));
    return { protected: protectedHeader, signature: mac(key, `${protectedHeader}.${payload}`).toString("base64url") };
  });
  return JSON.stringify({ payload, signatures });
}

const subjectOf = (pcr: PcrRef) => `${pcr.namespace}/${pcr.name}/${pcr.uid}`;

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

/** base64url without padding, the only encoding RFC 7515 allows in a JWS (Buffer's decoder skips anything else). */
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * A General JWS as sent: members the sender does not make (an unprotected header, a detached
 * payload) are refused. The signatures are bounded by the edges (a sender has at most one per step).
 */
const generalJwsSchema = z.strictObject({
  payload: z.string().check(z.minLength(1), z.regex(BASE64URL)),
  signatures: z
    .array(
      z.strictObject({
        protected: z.string().check(z.minLength(1), z.maxLength(1024), z.regex(BASE64URL)),
        signature: z.string().check(z.minLength(1), z.maxLength(1024), z.regex(BASE64URL)),
      }),
    )
    .check(z.minLength(1), z.maxLength(STEPS.length)),
});
/** A protected header as a sender makes it: exactly these members (so no `crit`, `b64`, `jwk`, …). */
const headerSchema = z.strictObject({ alg: z.string(), typ: z.string(), kid: z.string() });
type Header = z.infer<typeof headerSchema>;

function parseBase64urlJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The signature of edge `kid` in a General JWS: its header, its signing input (protected.payload,
 * RFC 7515 §5.1) and its MAC. A problem when the token has no signature for that edge, or more
 * than one (a sender makes one).
 */
function signatureFor(token: string, kid: string): { header: Header; signingInput: string; signature: string; payload: string } | { problem: string } {
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
  const mine: { header: Header; protected: string; signature: string }[] = [];
  const ours = protectedHeaderOf(kid);
  for (const s of jws.data.signatures) {
    // The header exactly as a sender makes it for this edge (the usual case) needs no parsing:
    // those bytes decode to alg HS256, this typ and this kid, and nothing else.
    if (s.protected === ours) {
      mine.push({ header: { alg: ALGORITHM, typ: TOKEN_TYPE, kid }, protected: s.protected, signature: s.signature });
      continue;
    }
    const header = headerSchema.safeParse(parseBase64urlJson(s.protected));
    // A header that is not exactly {alg, typ, kid} names no edge: it is nobody's signature.
    if (header.success && header.data.kid === kid) mine.push({ header: header.data, protected: s.protected, signature: s.signature });
  }
  if (mine.length !== 1) return { problem: mine.length === 0 ? `no signature for edge ${kid}` : `${mine.length} signatures for edge ${kid}` };
  const [m] = mine as [(typeof mine)[number]];
  return { header: m.header, signingInput: `${m.protected}.${jws.data.payload}`, signature: m.signature, payload: jws.data.payload };
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
  const rejected = (why: string) => new RejectedEventError(`attestation from ${expect.from} rejected: ${why}`, 403);
  const edge = edgeKid({ from: expect.from, to: keys.step });
  const found = signatureFor(token, edge);
  if ("problem" in found) throw rejected(found.problem);
  // The one algorithm of an edge key: "none", another HMAC or an asymmetric alg never reaches a key.
  if (found.header.alg !== ALGORITHM) throw rejected(`algorithm ${JSON.stringify(found.header.alg.slice(0, 20))} is not allowed (only ${ALGORITHM})`);
  const given = Buffer.from(found.signature, "base64url");
  // Compared in constant time, and before anything of the payload is parsed.
  if (given.length !== MAC_BYTES || !timingSafeEqual(given, mac(key, found.signingInput))) throw rejected("signature does not verify (made with another key)");
  if (found.header.typ !== TOKEN_TYPE) throw rejected("header typ does not match");

  const parsed = payloadSchema.safeParse(parseBase64urlJson(found.payload));
  if (!parsed.success) {
    throw new RejectedEventError(`attestation from ${expect.from} has malformed claims (${z.describeIssues(parsed.error).join("; ")})`, 403);
  }
  const p = parsed.data;
  if (p.iss !== expect.from) throw rejected("claim iss does not match");
  if (p.aud !== AUDIENCE) throw rejected("claim aud does not match");
  if (p.sub !== subjectOf(p.pcr)) throw rejected("claim sub does not match");
  // Whole seconds, as the claims are (RFC 7519 NumericDate; what jwtVerify did).
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (p.exp <= nowSeconds - CLOCK_TOLERANCE_SECONDS) throw rejected("expired");
  if (p.iat > nowSeconds + CLOCK_TOLERANCE_SECONDS) throw rejected("issued in the future");
  if (nowSeconds - p.iat - CLOCK_TOLERANCE_SECONDS > expect.maxLifetimeSeconds) throw rejected("expired (issued longer ago than the configured lifetime)");
  const lifetime = p.exp - p.iat;
  if (lifetime > expect.maxLifetimeSeconds) {
    throw new RejectedEventError(`attestation from ${expect.from} claims a lifetime of ${lifetime} s, more than the ${expect.maxLifetimeSeconds} s configured`, 403);
  }

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
