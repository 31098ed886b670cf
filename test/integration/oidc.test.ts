// Knative Eventing's OIDC delivery tokens (issue 11), checked by the real bundles over HTTP: with
// PODCERT_OIDC_* set, a delivery is processed only with a valid token from the configured issuer,
// for the function's own audience, from an allowed subject; every refusal happens before the body
// is read and costs the API server nothing. Off by default.
import { createServer, request, type Server } from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalBroker, type DeadLetter, type Delivery } from "../../local-cluster/broker.js";
import { BROKER_NAME, parseTriggers } from "../../local-cluster/router.js";
import { eventToBinaryHttp } from "../../shared/events/codec.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { createPcr, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { createTestIssuer, hs256Token, triggerSubject, unsignedToken, type TestIssuer } from "../helpers/oidc.js";
import { tempDir } from "../helpers/temp.js";

const WORKER = "workerpool.podcert.ate.dev/identity";
/** What the overlay (knative/oidc/) gives each Trigger's subscriber and its Service: `<group>/<kind>/<namespace>/<name>`. */
const audienceOf = (service: string) => `serving.knative.dev/service/podcert/${service}`;
const AUDIENCE = audienceOf("podcert-validate");
const SUBJECT = triggerSubject("podcert-validate-pcr-add");

let env: BundleEnv;
let issuer: TestIssuer;
let dir: string;
let on: ServedBundle;
let off: ServedBundle;
let jwksServer: Server;
let jwksRequests: (string | undefined)[] = [];
let counter = 0;
const tokensSent: string[] = [];

const oidcEnv = (extra: Record<string, string>) => ({ PODCERT_OIDC_AUDIENCE: AUDIENCE, PODCERT_OIDC_ISSUER: issuer.issuer, ...extra });

beforeAll(async () => {
  env = await startBundleEnv();
  issuer = await createTestIssuer();
  dir = tempDir("podcert-oidc-");
  const jwksFile = issuer.writeJwks(dir);
  // The JWKS over HTTP, as the API server serves /openid/v1/jwks: only with the reader's token.
  jwksServer = createServer((req, res) => {
    jwksRequests.push(req.headers.authorization);
    if (req.headers.authorization !== "Bearer reader-token") return void res.writeHead(401).end();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(issuer.jwks));
  });
  await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
  [on, off] = await Promise.all([
    env.serve("validate", oidcEnv({ PODCERT_OIDC_JWKS_FILE: jwksFile, PODCERT_OIDC_ALLOWED_SUBJECTS: "system:serviceaccount:podcert:podcert-validate-*" })),
    env.serve("validate"),
  ]);
});

afterAll(async () => {
  await new Promise((r) => jwksServer?.close(r));
  await env?.stop();
});

interface Answer {
  status: number;
  text: string;
  headers: Headers;
}

async function post(url: string, event: PodcertEvent, authorization?: string): Promise<Answer> {
  const { headers, body } = eventToBinaryHttp(event);
  if (authorization !== undefined) tokensSent.push(authorization);
  const res = await fetch(url, { method: "POST", headers: { ...headers, ...(authorization !== undefined ? { authorization } : {}) }, body });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

const newPcrEvent = () => createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: `req-oidc-${++counter}` }).event;
/** What the functions asked of the API server since `before` (the readiness check, GET /api at start, aside). */
const apiCallsSince = (before: number) => env.api.servedRequests().slice(before).filter((r) => r.url !== "/api");

describe("with OIDC on", () => {
  it("processes a delivery with a valid token as before (the PCR is read, validated)", async () => {
    const before = env.api.servedRequests().length;
    const a = await post(on.url, newPcrEvent(), `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT })}`);
    expect(a.status, a.text).toBe(200);
    expect(a.headers.get("ce-type")).toBe(EVENT_TYPES.validated);
    // The count below is meaningful: a processed delivery does reach the API server.
    expect(apiCallsSince(before).length).toBeGreaterThan(0);
  });

  it("accepts an audience list that holds its own, and the scheme in any case", async () => {
    const a = await post(on.url, newPcrEvent(), `bearer ${await issuer.mint({ aud: [audienceOf("podcert-sign"), AUDIENCE], sub: SUBJECT })}`);
    expect(a.status, a.text).toBe(200);
  });

  const refusals: { case: string; authorization: () => Promise<string | undefined>; challenge: string }[] = [
    { case: "no Authorization header", authorization: async () => undefined, challenge: "Bearer" },
    { case: "a Basic credential", authorization: async () => "Basic dXNlcjpwYXNz", challenge: 'Bearer error="invalid_token"' },
    { case: "a malformed token", authorization: async () => "Bearer not-a-jwt", challenge: 'Bearer error="invalid_token"' },
    { case: "another issuer", authorization: async () => `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT, iss: "https://evil.example" })}`, challenge: 'Bearer error="invalid_token"' },
    { case: "another function's audience", authorization: async () => `Bearer ${await issuer.mint({ aud: audienceOf("podcert-sign"), sub: SUBJECT })}`, challenge: 'Bearer error="invalid_token"' },
    { case: "the Broker's audience", authorization: async () => `Bearer ${await issuer.mint({ aud: "eventing.knative.dev/broker/podcert/podcert", sub: SUBJECT })}`, challenge: 'Bearer error="invalid_token"' },
    { case: "an expired token", authorization: async () => `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT, expiresIn: -120 })}`, challenge: 'Bearer error="invalid_token"' },
    { case: "a token not yet valid", authorization: async () => `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT, notBefore: 3600, expiresIn: 7200 })}`, challenge: 'Bearer error="invalid_token"' },
    { case: "a token without a subject", authorization: async () => `Bearer ${await issuer.mint({ aud: AUDIENCE })}`, challenge: 'Bearer error="invalid_token"' },
    {
      case: "alg none",
      authorization: async () => `Bearer ${unsignedToken({ iss: issuer.issuer, aud: AUDIENCE, sub: SUBJECT, exp: Math.floor(Date.now() / 1000) + 600 })}`,
      challenge: 'Bearer error="invalid_token"',
    },
    {
      case: "HS256 with the issuer's kid",
      authorization: async () =>
        `Bearer ${await hs256Token({ iss: issuer.issuer, aud: AUDIENCE, sub: SUBJECT, exp: Math.floor(Date.now() / 1000) + 600 }, new TextEncoder().encode("any secret at all, long enough"), issuer.kid)}`,
      challenge: 'Bearer error="invalid_token"',
    },
    {
      case: "another key with the same kid",
      authorization: async () => `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT, key: (await generateKeyPair("ES256")).privateKey })}`,
      challenge: 'Bearer error="invalid_token"',
    },
  ];

  it.each(refusals)("refuses $case with 401 and a Bearer challenge, asking nothing of the API server", async (c) => {
    const before = env.api.servedRequests().length;
    const a = await post(on.url, newPcrEvent(), await c.authorization());
    expect(a.status, a.text).toBe(401);
    expect(a.headers.get("www-authenticate")).toBe(c.challenge);
    expect(a.headers.get("ce-type")).toBeNull();
    expect(apiCallsSince(before)).toEqual([]);
  });

  it("refuses a valid token whose subject is not allowed with 403, asking nothing of the API server", async () => {
    const before = env.api.servedRequests().length;
    const a = await post(on.url, newPcrEvent(), `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: "system:serviceaccount:podcert:podcert-sign" })}`);
    expect(a.status, a.text).toBe(403);
    expect(a.text).toContain("PODCERT_OIDC_ALLOWED_SUBJECTS");
    expect(apiCallsSince(before)).toEqual([]);
  });

  it("refuses before reading the body: a delivery declaring a body over the limit is 401, not 413", async () => {
    // Headers and a first chunk only: the answer must come without the rest of the body.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(on.url, { method: "POST", headers: { "content-type": "application/json", "ce-specversion": "1.0", "content-length": String(4 * 1024 * 1024) } });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      req.write("x".repeat(1024));
    });
    expect(status).toBe(401);
  });

  it("logs that it is on, with issuer and audience, and never a token", () => {
    const start = on.stderr().split("\n").find((l) => l.includes('"msg":"delivery authentication"'));
    expect(start).toBeDefined();
    expect(JSON.parse(start!)).toMatchObject({ oidc: "on", issuer: issuer.issuer, audience: AUDIENCE });
    for (const t of tokensSent) {
      const token = t.replace(/^\S+ /, "");
      if (token.length > 20) expect(on.stderr()).not.toContain(token);
    }
  });
});

describe("JWKS from a URL", () => {
  it("fetches the keys with the reader's token and processes a valid delivery", async () => {
    const tokenFile = join(dir, "reader-token");
    writeFileSync(tokenFile, "reader-token\n");
    const fn = await env.serve("validate", oidcEnv({ PODCERT_OIDC_JWKS_URL: `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/openid/v1/jwks`, PODCERT_OIDC_JWKS_TOKEN_FILE: tokenFile }));
    jwksRequests = [];
    const a = await post(fn.url, newPcrEvent(), `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT })}`);
    expect(a.status, a.text).toBe(200);
    expect(jwksRequests).toEqual(["Bearer reader-token"]);
    fn.child.kill("SIGKILL");
  });

  it("answers 503 (retried by the broker), never 500, when the JWKS cannot be fetched", async () => {
    const fn = await env.serve("validate", oidcEnv({ PODCERT_OIDC_JWKS_URL: "http://127.0.0.1:9/openid/v1/jwks" }));
    const before = env.api.servedRequests().length;
    const a = await post(fn.url, newPcrEvent(), `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: SUBJECT })}`);
    expect(a.status, a.text).toBe(503);
    expect(a.headers.get("retry-after")).toBe("1");
    expect(apiCallsSince(before)).toEqual([]);
    fn.child.kill("SIGKILL");
  });
});

describe("resync (PingSource ticks through the Broker)", () => {
  it("takes a tick only with its own audience's token, and posts to the Broker with the SinkBinding's token", async () => {
    newPcrEvent(); // at least one pending PCR to re-announce
    const seen: (string | undefined)[] = [];
    const sink = createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume().on("end", () => res.writeHead(req.headers.authorization === "Bearer sink-token" ? 202 : 401).end());
    });
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
    const tokenFile = join(dir, "sink-token");
    writeFileSync(tokenFile, "sink-token\n");
    const audience = audienceOf("podcert-resync");
    const fn = await env.serve("resync", {
      PODCERT_OIDC_AUDIENCE: audience,
      PODCERT_OIDC_ISSUER: issuer.issuer,
      PODCERT_OIDC_JWKS_FILE: join(dir, "jwks.json"),
      K_SINK: `http://127.0.0.1:${(sink.address() as { port: number }).port}/`,
      PODCERT_SINK_TOKEN_FILE: tokenFile,
      PODCERT_RESYNC_GRACE_SECONDS: "0",
    });
    try {
      const tick: PodcertEvent = { specversion: "1.0", id: `ping-${++counter}`, type: EVENT_TYPES.ping, source: "/apis/v1/namespaces/podcert/pingsources/podcert-resync", datacontenttype: "application/json", data: {}, extensions: {} };
      expect((await post(fn.url, tick)).status).toBe(401);
      expect((await post(fn.url, tick, `Bearer ${await issuer.mint({ aud: AUDIENCE, sub: triggerSubject("podcert-resync-ping") })}`)).status).toBe(401);
      expect(seen).toEqual([]);
      const a = await post(fn.url, tick, `Bearer ${await issuer.mint({ aud: audience, sub: triggerSubject("podcert-resync-ping") })}`);
      expect(a.status, a.text).toBe(204);
      expect(seen.length).toBeGreaterThan(0);
      expect(new Set(seen)).toEqual(new Set(["Bearer sink-token"]));
    } finally {
      fn.child.kill("SIGKILL");
      await new Promise((r) => sink.close(r));
    }
  });
});

describe("the local Broker with a token per delivery", () => {
  const validateRoutes = () => parseTriggers(readFileSync("knative/triggers.yaml", "utf8")).filter((r) => r.subscriber === "podcert-validate");
  const deliverOnce = async (authorization: (subscriber: string) => Promise<string>) => {
    const deliveries: Delivery[] = [];
    const deadLetters: DeadLetter[] = [];
    const broker = new LocalBroker({
      routes: validateRoutes(),
      delivery: { retry: 1, backoffPolicy: "linear", backoffDelayMs: 1 },
      brokerName: BROKER_NAME,
      subscribers: new Map([["podcert-validate", on.url]]),
      onDelivery: (d) => deliveries.push(d),
      onDeadLetter: (d) => deadLetters.push(d),
      authorization,
    });
    broker.publish(newPcrEvent());
    await broker.idle();
    return { deliveries, deadLetters };
  };

  it("delivers with the token minted for the subscriber's audience", async () => {
    const asked: string[] = [];
    const r = await deliverOnce(async (subscriber) => {
      asked.push(subscriber);
      return issuer.mint({ aud: audienceOf(subscriber), sub: SUBJECT });
    });
    expect(asked).toEqual(["podcert-validate"]);
    expect(r.deadLetters).toEqual([]);
    expect(r.deliveries.map((d) => d.status)).toEqual([200]);
  });

  it("sends the token it is given: one for another audience is refused (401, not retried)", async () => {
    const r = await deliverOnce(async () => issuer.mint({ aud: audienceOf("podcert-sign"), sub: SUBJECT }));
    expect(r.deliveries.map((d) => [d.status, d.attempts])).toEqual([[401, 1]]);
    expect(r.deadLetters.map((d) => d.lastStatus)).toEqual([401]);
  });
});

describe("with OIDC off (the default)", () => {
  it("processes a delivery without a token, and says so at start", async () => {
    const a = await post(off.url, newPcrEvent());
    expect(a.status, a.text).toBe(200);
    const start = off.stderr().split("\n").find((l) => l.includes('"msg":"delivery authentication"'));
    expect(JSON.parse(start!)).toMatchObject({ oidc: "off" });
  });
});

describe("start-up", () => {
  it.each<{ case: string; env: Record<string, string>; names: string }>([
    { case: "audience without issuer", env: { PODCERT_OIDC_AUDIENCE: AUDIENCE, PODCERT_OIDC_JWKS_FILE: "/nonexistent" }, names: "PODCERT_OIDC_ISSUER" },
    { case: "audience without a key source", env: { PODCERT_OIDC_AUDIENCE: AUDIENCE, PODCERT_OIDC_ISSUER: "https://kubernetes.default.svc.cluster.local" }, names: "PODCERT_OIDC_JWKS_URL" },
    { case: "issuer without audience", env: { PODCERT_OIDC_ISSUER: "https://kubernetes.default.svc.cluster.local" }, names: "PODCERT_OIDC_AUDIENCE" },
  ])("refuses $case with exit code 78, naming the missing variable", async (c) => {
    const err = await env.serve("validate", c.env).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/exited 78/);
    expect(err?.message).toContain(c.names);
  });
});
