/**
 * Optional authentication of the sender of each delivery: Knative Eventing's OIDC
 * (`authentication-oidc: enabled`) puts `Authorization: Bearer <JWT>` on what a Broker's filter
 * delivers to a Trigger's subscriber. The token is a Kubernetes ServiceAccount token (the
 * Trigger's OIDC identity), minted by the API server for the subscriber's audience; Knative
 * Serving does not check it, so the function does, here, before it reads the body.
 *
 * Off unless PODCERT_OIDC_AUDIENCE is set. Then PODCERT_OIDC_ISSUER and one key source are
 * required: PODCERT_OIDC_JWKS_URL (the API server's /openid/v1/jwks, fetched and cached by jose,
 * optionally with PODCERT_OIDC_JWKS_CA_FILE and PODCERT_OIDC_JWKS_TOKEN_FILE, the pod's
 * ServiceAccount CA and token) or PODCERT_OIDC_JWKS_FILE (a JWKS on disk). PODCERT_OIDC_ALLOWED_SUBJECTS
 * optionally restricts `sub` (comma-separated, exact or `prefix*`).
 *
 * Outcomes: no or bad token 401 (not retried), a subject not allowed 403, keys that cannot be
 * fetched 503 (transient: the broker retries). Tokens are never logged nor quoted in messages.
 */
import { readFileSync } from "node:fs";
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type FetchImplementation, type JWTVerifyGetKey } from "jose";
import { Agent, type Dispatcher } from "undici";
import { requestUrl } from "../http-request.js";
import { ConfigError, RejectedEventError, TransientError } from "../errors.js";

/** Asymmetric algorithms only: an HMAC key would be a shared secret, and `none` no signature. */
export const OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;
/** Clock skew allowed between the API server that minted the token and this pod. */
export const OIDC_CLOCK_TOLERANCE_SECONDS = 10;
/** Longest wait for the JWKS; a delivery waits on it only when no cached key fits. */
export const OIDC_JWKS_TIMEOUT_MS = 5_000;

export const OIDC_ENV = {
  audience: "PODCERT_OIDC_AUDIENCE",
  issuer: "PODCERT_OIDC_ISSUER",
  jwksUrl: "PODCERT_OIDC_JWKS_URL",
  jwksFile: "PODCERT_OIDC_JWKS_FILE",
  jwksCaFile: "PODCERT_OIDC_JWKS_CA_FILE",
  jwksTokenFile: "PODCERT_OIDC_JWKS_TOKEN_FILE",
  allowedSubjects: "PODCERT_OIDC_ALLOWED_SUBJECTS",
} as const;

export type JwksSource = { kind: "url"; url: string; caFile?: string; tokenFile?: string } | { kind: "file"; path: string };

export interface DeliveryAuthConfig {
  issuer: string;
  audience: string;
  jwks: JwksSource;
  /** Exact subjects and `prefix*` patterns; undefined: any subject the issuer signed for the audience. */
  allowedSubjects?: readonly string[];
}

type Env = Readonly<Record<string, string | undefined>>;
const get = (env: Env, name: string) => {
  const v = env[name]?.trim();
  return v === undefined || v === "" ? undefined : v;
};

/**
 * The configuration in `env`, or undefined when delivery authentication is off. Any PODCERT_OIDC_*
 * variable without the audience, or the audience without an issuer and exactly one key source,
 * is a ConfigError naming the variable: a half-configured check must not run as no check.
 */
export function deliveryAuthConfigFromEnv(env: Env = process.env): DeliveryAuthConfig | undefined {
  const audience = get(env, OIDC_ENV.audience);
  if (audience === undefined) {
    const stray = Object.values(OIDC_ENV).filter((n) => get(env, n) !== undefined);
    if (stray.length > 0) throw new ConfigError(`${stray.join(", ")} set but ${OIDC_ENV.audience} is not: set it to enable delivery authentication, or unset the others`);
    return undefined;
  }
  const issuer = get(env, OIDC_ENV.issuer);
  if (issuer === undefined) throw new ConfigError(`${OIDC_ENV.audience} is set, so ${OIDC_ENV.issuer} is required (the ServiceAccount token issuer, e.g. https://kubernetes.default.svc.cluster.local)`);
  const url = get(env, OIDC_ENV.jwksUrl);
  const file = get(env, OIDC_ENV.jwksFile);
  const caFile = get(env, OIDC_ENV.jwksCaFile);
  const tokenFile = get(env, OIDC_ENV.jwksTokenFile);
  if (url === undefined && file === undefined) throw new ConfigError(`${OIDC_ENV.audience} is set, so ${OIDC_ENV.jwksUrl} or ${OIDC_ENV.jwksFile} is required (where the issuer's keys are)`);
  if (url !== undefined && file !== undefined) throw new ConfigError(`set ${OIDC_ENV.jwksUrl} or ${OIDC_ENV.jwksFile}, not both`);
  let jwks: JwksSource;
  if (url !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(`${OIDC_ENV.jwksUrl} is not a URL: ${JSON.stringify(url.slice(0, 200))}`);
    }
    // Keys fetched in clear text could be swapped on the way; plain http only to this machine (tests).
    const loopback = ["127.0.0.1", "[::1]", "localhost"].includes(parsed.hostname);
    if (parsed.protocol !== "https:" && !(parsed.protocol === "http:" && loopback)) throw new ConfigError(`${OIDC_ENV.jwksUrl} must be an https URL`);
    jwks = { kind: "url", url: parsed.toString(), ...(caFile !== undefined ? { caFile } : {}), ...(tokenFile !== undefined ? { tokenFile } : {}) };
  } else {
    if (caFile !== undefined || tokenFile !== undefined) throw new ConfigError(`${OIDC_ENV.jwksCaFile} and ${OIDC_ENV.jwksTokenFile} apply only to ${OIDC_ENV.jwksUrl}`);
    jwks = { kind: "file", path: file! };
  }
  const config: DeliveryAuthConfig = { issuer, audience, jwks };
  const subjects = get(env, OIDC_ENV.allowedSubjects);
  if (subjects !== undefined) {
    const list = subjects.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const s of list) {
      if (s === "*") throw new ConfigError(`${OIDC_ENV.allowedSubjects}: "*" allows every subject; leave the variable unset instead`);
      if (s.indexOf("*") !== -1 && s.indexOf("*") !== s.length - 1) throw new ConfigError(`${OIDC_ENV.allowedSubjects}: "*" may only end a pattern, in ${JSON.stringify(s.slice(0, 200))}`);
    }
    if (list.length === 0) throw new ConfigError(`${OIDC_ENV.allowedSubjects} names no subject`);
    config.allowedSubjects = list;
  }
  return config;
}

export function subjectAllowed(subject: string, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined) return true;
  return allowed.some((p) => (p.endsWith("*") ? subject.startsWith(p.slice(0, -1)) : subject === p));
}

export type DeliveryAuthResult =
  | { ok: true; subject: string }
  | { ok: false; status: 401 | 403 | 503; error: RejectedEventError | TransientError; /** WWW-Authenticate, for 401 */ challenge?: string };

export interface DeliveryAuth {
  readonly config: DeliveryAuthConfig;
  /** Checks an Authorization header's value; never throws for what a client sent. */
  verify(authorization: string | undefined): Promise<DeliveryAuthResult>;
}

/** The key source could not be read: not the token's fault. */
class JwksUnavailable extends Error {
  override readonly name = "JwksUnavailable";
}

/** Fetches the JWKS with undici (the functions' one HTTP client), with the cluster CA and the pod's token when given. */
function jwksFetch(source: Extract<JwksSource, { kind: "url" }>): FetchImplementation {
  const dispatcher: Dispatcher | undefined = source.caFile === undefined ? undefined : new Agent({ connect: { ca: readFileSync(source.caFile, "utf8") } });
  return async (url, init) => {
    const headers: Record<string, string> = {};
    init.headers.forEach((v, k) => {
      headers[k] = v;
    });
    // Read at each fetch: kubelet rotates the projected token in place.
    if (source.tokenFile !== undefined) headers.authorization = `Bearer ${readFileSync(source.tokenFile, "utf8").trim()}`;
    const res = await requestUrl(url, { method: "GET", headers, signal: init.signal }, dispatcher);
    return new Response(await res.body.arrayBuffer(), { status: res.statusCode });
  };
}

function keyResolver(source: JwksSource): JWTVerifyGetKey {
  if (source.kind === "file") {
    let set: JWTVerifyGetKey;
    try {
      set = createLocalJWKSet(JSON.parse(readFileSync(source.path, "utf8")) as Parameters<typeof createLocalJWKSet>[0]);
    } catch (e) {
      throw new ConfigError(`${OIDC_ENV.jwksFile} (${source.path}) is not a readable JWKS: ${e instanceof Error ? e.message : String(e)}`);
    }
    return set;
  }
  // Fail at start on files that are not there rather than at the first delivery.
  for (const [name, path] of [[OIDC_ENV.jwksCaFile, source.caFile], [OIDC_ENV.jwksTokenFile, source.tokenFile]] as const) {
    if (path === undefined) continue;
    try {
      readFileSync(path);
    } catch (e) {
      throw new ConfigError(`${name} (${path}) cannot be read: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const remote = createRemoteJWKSet(new URL(source.url), { timeoutDuration: OIDC_JWKS_TIMEOUT_MS, [customFetch]: jwksFetch(source) });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (e) {
      // A key set that was fetched but has no key for this token: the token's fault.
      if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys) throw e;
      throw new JwksUnavailable("the issuer's keys could not be fetched", { cause: e });
    }
  };
}

/** Why a token was refused, for the log and the answer: never the token itself. */
function reasonOf(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return "token expired";
  if (e instanceof joseErrors.JWTClaimValidationFailed) return e.reason === "missing" ? `token has no ${e.claim} claim` : `token's ${e.claim} claim does not match`;
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return "token's algorithm is not allowed";
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return "token's signature does not verify";
  if (e instanceof joseErrors.JWKSNoMatchingKey) return "no key of the issuer matches the token";
  if (e instanceof joseErrors.JOSEError) return `token refused (${e.code})`;
  return "token refused";
}

const INVALID_TOKEN = 'Bearer error="invalid_token"';

export function createDeliveryAuth(config: DeliveryAuthConfig): DeliveryAuth {
  const getKey = keyResolver(config.jwks);
  const unauthenticated = (message: string, challenge: string): DeliveryAuthResult => ({
    ok: false,
    status: 401,
    error: new RejectedEventError(`delivery not authenticated: ${message}`, 401),
    challenge,
  });
  return {
    config,
    async verify(authorization) {
      // RFC 6750: without credentials, a challenge with no error code.
      if (authorization === undefined || authorization === "") return unauthenticated("no Authorization header", "Bearer");
      const m = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)$/i.exec(authorization.trim());
      if (m === null) return unauthenticated("the Authorization header is not a Bearer JWT", INVALID_TOKEN);
      let subject: string | undefined;
      try {
        const { payload } = await jwtVerify(m[1]!, getKey, {
          issuer: config.issuer,
          audience: config.audience,
          algorithms: [...OIDC_ALGORITHMS],
          clockTolerance: OIDC_CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ["exp", "sub"],
        });
        subject = payload.sub;
      } catch (e) {
        if (e instanceof JwksUnavailable) {
          const cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : String(e.cause);
          return { ok: false, status: 503, error: new TransientError(`delivery not verified: ${e.message} (${cause.slice(0, 200)})`, { cause: e.cause }) };
        }
        return unauthenticated(reasonOf(e), INVALID_TOKEN);
      }
      if (subject === undefined || !subjectAllowed(subject, config.allowedSubjects)) {
        return { ok: false, status: 403, error: new RejectedEventError(`delivery from ${JSON.stringify((subject ?? "").slice(0, 200))}, which ${OIDC_ENV.allowedSubjects} does not allow`, 403) };
      }
      return { ok: true, subject };
    },
  };
}

/** The start-up log line's fields: where keys come from, never a token. */
export function describeDeliveryAuth(config: DeliveryAuthConfig | undefined): Record<string, unknown> {
  if (config === undefined) return { oidc: "off" };
  return {
    oidc: "on",
    issuer: config.issuer,
    audience: config.audience,
    jwks: config.jwks.kind === "url" ? config.jwks.url : `file ${config.jwks.path}`,
    allowedSubjects: config.allowedSubjects ?? "any",
  };
}
