/**
 * A stand-in for the cluster's ServiceAccount token issuer, as Knative Eventing's OIDC uses it: an
 * ES256 key pair, its public JWKS written to a file (PODCERT_OIDC_JWKS_FILE) and a token minter.
 * The private key stays in memory; only the public JWKS is written.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";

export const TEST_ISSUER = "https://kubernetes.default.svc.cluster.local";

export interface MintOptions {
  aud: string | string[];
  sub?: string;
  iss?: string;
  /** Seconds from now (negative: already expired). Default 3600. */
  expiresIn?: number;
  /** Seconds from now when the token becomes valid. Default: now. */
  notBefore?: number;
  /** Sign with this key instead of the issuer's (its kid stays the issuer's). */
  key?: CryptoKey;
}

export interface TestIssuer {
  issuer: string;
  kid: string;
  jwks: { keys: JWK[] };
  /** The public JWKS as a file in `dir`. */
  writeJwks(dir: string): string;
  mint(o: MintOptions): Promise<string>;
}

export async function createTestIssuer(issuer = TEST_ISSUER, kid = "test-key-1"): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
  const jwks = { keys: [jwk] };
  return {
    issuer,
    kid,
    jwks,
    writeJwks(dir) {
      const path = join(dir, "jwks.json");
      writeFileSync(path, JSON.stringify(jwks));
      return path;
    },
    async mint(o) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT({ "kubernetes.io": { namespace: "podcert" } })
        .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
        .setIssuer(o.iss ?? issuer)
        .setAudience(o.aud)
        .setIssuedAt(now)
        .setNotBefore(now + (o.notBefore ?? 0))
        .setExpirationTime(now + (o.expiresIn ?? 3600));
      if (o.sub !== undefined) jwt.setSubject(o.sub);
      return jwt.sign(o.key ?? privateKey);
    },
  };
}

/** The subject of a Trigger's OIDC ServiceAccount as Knative Eventing names it (`<trigger>-oidc-<group>-<kind>`). */
export const triggerSubject = (trigger: string, namespace = "podcert") => `system:serviceaccount:${namespace}:${trigger}-oidc-eventing.knative.dev-trigger`;

/** Unsigned (alg none) and HS256 tokens with the right claims: what an attacker without the key can make. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`;
}

export async function hs256Token(claims: Record<string, unknown>, secret: Uint8Array, kid?: string): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256", ...(kid !== undefined ? { kid } : {}) }).sign(secret);
}
