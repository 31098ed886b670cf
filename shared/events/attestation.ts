/**
 * Step attestations: each step signs what it hands on (a compact JWS, EdDSA/Ed25519) with its own
 * key; a receiving step holds only the public keys of the steps it accepts events from. The token
 * binds the PCR (namespace, name, uid), the signer, the request key's SHA-256 and the step's
 * decision, and expires after the broker's retry window. Decisions are read from the verified
 * token, never from unsigned event fields.
 */
import type { KeyObject } from "node:crypto";
import { SignJWT, jwtVerify, errors as joseErrors, type JWTPayload } from "jose";
import { RejectedEventError } from "../errors.js";
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
import type { PcrRef } from "../pcr/model.js";
import * as z from "../zod.js";
import { STEPS, type StepName } from "../steps.js";
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
    /**
     * The stored PCR as validate read it, for sign, which does not read it again: it writes the
     * status conditionally on this resourceVersion, through this apiVersion, and issues to this
     * key (the request's SubjectPublicKeyInfo, base64 DER as in pkixPublicKey: public; its
     * SHA-256 is the key hash every attestation binds).
     */
    request: z.strictObject({
      apiVersion: z.enum(["certificates.k8s.io/v1", "certificates.k8s.io/v1beta1"]),
      resourceVersion: z.string().check(z.minLength(1), z.maxLength(MAX_RESOURCE_VERSION_LENGTH)),
      creationTimestamp: z.optional(z.string().check(z.maxLength(MAX_TIMESTAMP_LENGTH))),
      nodeName: z.string().check(z.maxLength(MAX_NAME_LENGTH)),
      nodeUID: z.string().check(z.maxLength(MAX_UID_LENGTH)),
      serviceAccountUID: z.string().check(z.maxLength(MAX_UID_LENGTH)),
      publicKey: z.string().check(z.maxLength(REQUEST_KEY_LIMITS.pkixPublicKey)),
    }),
    /**
     * What derive-sans needs of the pod to derive DNS names (so it reads only the Services), and
     * what sign compares the live pod with: only when the pod opted in to Service names and its
     * labels fit MAX_ATTESTED_POD_LABELS (else absent, and derive-sans reads the pod).
     */
    pod: z.optional(
      z.strictObject({
        labels: z
          .record(z.string().check(z.maxLength(MAX_LABEL_KEY_LENGTH)), z.string().check(z.maxLength(MAX_LABEL_LENGTH)))
          .check(z.refine((l) => Object.keys(l).length <= MAX_ATTESTED_POD_LABELS, `at most ${MAX_ATTESTED_POD_LABELS} labels`)),
        hostname: z.optional(z.string().check(z.maxLength(MAX_LABEL_LENGTH))),
        subdomain: z.optional(z.string().check(z.maxLength(MAX_LABEL_LENGTH))),
      }),
    ),
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

/** One step's key material: its own signing key and the public keys of the steps it trusts. */
export interface StepKeys {
  step: StepName;
  signingKey: KeyObject;
  accepted: ReadonlyMap<StepName, KeyObject>;
}

export async function attest(keys: StepKeys, claims: Omit<AttestationClaims, "step">, o: { now: Date; ttlSeconds: number }): Promise<string> {
  const iat = Math.floor(o.now.getTime() / 1000);
  return new SignJWT({ pcr: claims.pcr, signer: claims.signerName, spki: claims.spkiSha256, decision: claims.decision })
    .setProtectedHeader({ alg: "EdDSA", typ: TOKEN_TYPE, kid: keys.step })
    .setIssuer(keys.step)
    .setSubject(`${claims.pcr.namespace}/${claims.pcr.name}/${claims.pcr.uid}`)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + o.ttlSeconds)
    .sign(keys.signingKey);
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
   * later than now (beyond the clock tolerance), is refused, so a stolen signing key cannot mint
   * tokens that stay valid for long.
   */
  maxLifetimeSeconds: number;
}

/** Clock skew allowed between steps, in seconds. */
const CLOCK_TOLERANCE_SECONDS = 30;

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
  let payload: JWTPayload;
  let kid: string | undefined;
  try {
    ({ payload, protectedHeader: { kid } } = await jwtVerify(token, key, {
      algorithms: ["EdDSA"],
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
  if (kid !== expect.from) throw new RejectedEventError(`attestation from ${expect.from} names key ${String(kid).slice(0, 40)}`, 403);
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
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return "signature does not verify (signed by another key)";
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `claim ${e.claim} ${e.reason === "check_failed" ? "does not match" : "is missing"}`;
  if (e instanceof joseErrors.JOSEError) return e.code;
  return "not a valid token";
}
