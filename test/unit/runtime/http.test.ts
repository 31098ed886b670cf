import { request as httpRequest } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RejectedEventError, TransientError } from "../../../shared/errors.js";
import { MAX_EVENT_BYTES } from "../../../shared/events/codec.js";
import { ephemeralStepKeys } from "../../../shared/events/step-keys.js";
import type { PodcertEvent } from "../../../shared/events/types.js";
import type { ClusterApi } from "../../../shared/kube/cluster.js";
import { defaultSignerConfig } from "../../../shared/profiles/defaults.js";
import { replyEvent, type FunctionContext, type FunctionDefinition } from "../../../shared/runtime/function.js";
import { eventFromBody, serveFunction, type HandledEvent, type RunningServer } from "../../../shared/runtime/http.js";
import { createLogger } from "../../../shared/runtime/log.js";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SECRET_DETAIL = "db password is hunter2";
const NOW = new Date("2026-05-01T10:00:00Z");

/** A gate a handler waits on, so a test can hold a request in flight. */
function gate() {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (entered = r));
  return { open, opened, entered, reached };
}
let slow = gate();
let slowEntered = 0;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const calls: string[] = [];

/** A small fake function: what it does depends on the event type. */
const fake: FunctionDefinition = {
  step: "validate",
  consumes: ["test.echo", "test.none", "test.transient", "test.overloaded", "test.r401", "test.r403", "test.bug", "test.slow", "test.undeclared"],
  emits: ["test.reply"],
  async handle(event: PodcertEvent, ctx: FunctionContext) {
    calls.push(event.type);
    switch (event.type) {
      case "test.echo":
        return replyEvent(event, { step: "validate", type: "test.reply", subject: "ate-system/req-abcde", data: { got: event.data }, now: ctx.now() });
      case "test.none":
        return undefined;
      case "test.transient":
        throw new TransientError("the active CA expires too soon");
      case "test.overloaded":
        throw new TransientError("too many requests to the API server", { overloaded: true });
      case "test.r401":
        throw new RejectedEventError("missing attestation", 401);
      case "test.r403":
        throw new RejectedEventError("attestation signed by another step", 403);
      case "test.bug":
        throw new Error(SECRET_DETAIL);
      case "test.undeclared":
        return replyEvent(event, { step: "validate", type: "test.not-in-emits", subject: "x", data: {}, now: ctx.now() });
      case "test.slow":
        slowEntered++;
        slow.entered();
        await slow.opened;
        return replyEvent(event, { step: "validate", type: "test.reply", subject: "slow", data: { slow: true }, now: ctx.now() });
      default:
        throw new Error("unreachable");
    }
  },
};

/** The fake never touches the cluster; any access is a test failure. */
const noCluster = new Proxy({} as ClusterApi, {
  get(_t, p) {
    throw new Error(`cluster.${String(p)} must not be used`);
  },
});

const logLines: string[] = [];
const handled: HandledEvent[] = [];

function context(): FunctionContext {
  return {
    config: defaultSignerConfig(),
    cluster: noCluster,
    keys: ephemeralStepKeys().validate,
    now: () => NOW,
    log: createLogger({ level: "debug", write: (l) => logLines.push(l) }),
  };
}

function binaryHeaders(type: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "ce-id": `evt-${Math.random().toString(36).slice(2)}`,
    "ce-source": "/test",
    "ce-type": type,
    "ce-specversion": "1.0",
    "ce-traceparent": TRACEPARENT,
    "content-type": "application/json",
    ...extra,
  };
}

let srv: RunningServer;
let base: string;

beforeAll(async () => {
  srv = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1", onHandled: (h) => handled.push(h) });
  base = `http://127.0.0.1:${srv.port}`;
});

afterAll(async () => {
  await srv.drain();
});

afterEach(() => {
  calls.length = 0;
  logLines.length = 0;
  handled.length = 0;
});

const post = (type: string, data: unknown = { hello: "world" }, extra: Record<string, string> = {}) =>
  fetch(`${base}/`, { method: "POST", headers: binaryHeaders(type, extra), body: JSON.stringify(data) });

describe("serveFunction: POST /", () => {
  it("answers 200 with the reply in binary mode, carrying the input's traceparent", async () => {
    const res = await post("test.echo", { n: 1 });
    expect(res.status, logLines.join("\n")).toBe(200);
    expect(res.headers.get("ce-type")).toBe("test.reply");
    expect(res.headers.get("ce-specversion")).toBe("1.0");
    expect(res.headers.get("ce-source")).toBe("/podcert/validate");
    expect(res.headers.get("ce-subject")).toBe("ate-system/req-abcde");
    expect(res.headers.get("ce-traceparent")).toBe(TRACEPARENT);
    expect(res.headers.get("ce-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ got: { n: 1 } });
    expect(calls).toEqual(["test.echo"]);
  });

  it("accepts a structured-mode event too", async () => {
    const event = { specversion: "1.0", id: "s-1", source: "/test", type: "test.echo", traceparent: TRACEPARENT, datacontenttype: "application/json", data: { s: true } };
    const res = await fetch(`${base}/`, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(event) });
    expect(res.status).toBe(200);
    expect(res.headers.get("ce-traceparent")).toBe(TRACEPARENT);
    expect(await res.json()).toEqual({ got: { s: true } });
  });

  it("a reply without an input traceparent has none", async () => {
    const headers = binaryHeaders("test.echo");
    delete headers["ce-traceparent"];
    const res = await fetch(`${base}/`, { method: "POST", headers, body: "{}" });
    expect(res.status).toBe(200);
    expect(res.headers.get("ce-traceparent")).toBeNull();
  });

  it("answers 204 with no body when there is no reply", async () => {
    const res = await post("test.none");
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(res.headers.get("ce-type")).toBeNull();
  });

  it("answers 400 for an event type the function does not consume, without calling it", async () => {
    const res = await post("dev.ate.podcert.sans.derived");
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("does not consume events of type dev.ate.podcert.sans.derived");
    expect(calls).toEqual([]);
  });

  it.each([
    { case: "no ce-type header", headers: () => { const h = binaryHeaders("test.echo"); delete h["ce-type"]; return h; }, body: "{}" },
    { case: "no ce-source header", headers: () => { const h = binaryHeaders("test.echo"); delete h["ce-source"]; return h; }, body: "{}" },
    { case: "no CloudEvent headers at all", headers: () => ({ "content-type": "application/json" }), body: "{}" },
    { case: "structured mode with a body that is not JSON", headers: () => ({ "content-type": "application/cloudevents+json" }), body: "{nope" },
    { case: "binary mode with JSON data that does not parse", headers: () => binaryHeaders("test.echo"), body: "{nope" },
  ])("answers 400 for a malformed CloudEvent ($case)", async ({ headers, body }) => {
    const res = await fetch(`${base}/`, { method: "POST", headers: headers(), body });
    expect(res.status).toBe(400);
    expect(calls).toEqual([]);
  });

  it("answers 415 for a batch", async () => {
    const one = { specversion: "1.0", id: "b-1", source: "/test", type: "test.echo", data: {} };
    const res = await fetch(`${base}/`, { method: "POST", headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify([one, { ...one, id: "b-2" }]) });
    expect(res.status).toBe(415);
    expect(calls).toEqual([]);
  });

  it(`answers 413 for a body over ${MAX_EVENT_BYTES} bytes`, async () => {
    const res = await post("test.echo", { pad: "x".repeat(MAX_EVENT_BYTES) });
    expect(res.status).toBe(413);
    expect(calls).toEqual([]);
    // and the server still serves afterwards
    expect((await post("test.none")).status).toBe(204);
  });

  it("answers 503 with retry-after for a TransientError", async () => {
    const res = await post("test.transient");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await res.text()).toContain("the active CA expires too soon");
  });

  it("answers 429 with retry-after when overloaded", async () => {
    const res = await post("test.overloaded");
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  it.each([
    { type: "test.r401", status: 401 },
    { type: "test.r403", status: 403 },
  ])("answers $status for a RejectedEventError with that status", async ({ type, status }) => {
    const res = await post(type);
    expect(res.status).toBe(status);
    expect(res.headers.get("retry-after")).toBeNull();
    expect(res.headers.get("ce-type")).toBeNull();
  });

  it("answers 500 for a plain Error without leaking its message, and logs it", async () => {
    const res = await post("test.bug");
    expect(res.status).toBe(500);
    const body = await res.text();
    expect(body).not.toContain("hunter2");
    expect(body).toBe("internal error\n");
    const logged = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.level === "error");
    expect(logged, logLines.join("\n")).toBeDefined();
  });

  it("answers 500 (a bug) for a reply of a type the function does not declare, and sends no event", async () => {
    const res = await post("test.undeclared");
    expect(res.status).toBe(500);
    expect(res.headers.get("ce-type")).toBeNull();
  });

  it("reports each POST to onHandled with its status and event", async () => {
    await post("test.none");
    await post("test.transient");
    expect(handled.map((h) => h.status)).toEqual([204, 503]);
    expect(handled[0]!.event?.type).toBe("test.none");
    expect(handled[1]!.error).toBeInstanceOf(TransientError);
  });

  it("reports the time the handler took, in seconds", async () => {
    // The handler is held open for a span the test measures itself, inside the server's window;
    // the whole request, as the client sees it, contains that window. Both bounds are exact
    // (no timing guesses): they fail if the time is not measured, or not in seconds.
    slow = gate();
    const t0 = performance.now();
    const answer = post("test.slow");
    await slow.reached;
    const heldFrom = performance.now();
    await new Promise((r) => setTimeout(r, 100));
    const heldFor = performance.now() - heldFrom;
    slow.open();
    expect((await answer).status).toBe(200);
    const outside = performance.now() - t0;
    await until(() => handled.length === 1);
    const seconds = handled[0]!.seconds;
    expect(seconds * 1000).toBeGreaterThanOrEqual(heldFor);
    expect(seconds * 1000).toBeLessThanOrEqual(outside);
  });
});

describe("serveFunction: other routes", () => {
  it("GET /healthz answers 200", async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
  });

  it("GET /healthz and /readyz answer 503 listing what readiness misses; /livez still 200", async () => {
    let missing = ["no Kubernetes credentials", "no CA for signer s"];
    const s = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1", readiness: { problems: () => missing } });
    try {
      for (const path of ["/healthz", "/readyz"]) {
        const res = await fetch(`http://127.0.0.1:${s.port}${path}`);
        expect({ status: res.status, text: await res.text() }).toEqual({ status: 503, text: "not ready:\n- no Kubernetes credentials\n- no CA for signer s\n" });
      }
      expect((await fetch(`http://127.0.0.1:${s.port}/livez`)).status).toBe(200);
      missing = [];
      expect((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status).toBe(200);
    } finally {
      await s.drain();
    }
  });

  it.each([
    { method: "GET", path: "/nope" },
    { method: "POST", path: "/events" },
    { method: "GET", path: "/healthz/extra" },
  ])("$method $path answers 404", async ({ method, path }) => {
    const res = await fetch(`${base}${path}`, { method, ...(method === "POST" ? { body: "{}" } : {}) });
    expect(res.status).toBe(404);
  });

  it.each(["GET", "PUT", "DELETE"])("%s / answers 405 and allows POST", async (method) => {
    const res = await fetch(`${base}/`, { method });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });

  it("serves extra GET routes", async () => {
    const s = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1", routes: { "/metrics": async () => ({ contentType: "text/plain; version=0.0.4", body: "podcert_up 1\n" }) } });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4");
      expect(await res.text()).toBe("podcert_up 1\n");
    } finally {
      await s.drain();
    }
  });
});

/** A request on a fresh connection, so a closed listener shows as an error, not a reused socket. */
function rawRequest(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("serveFunction: drain", () => {
  it("lets an in-flight request finish, stops being healthy, refuses new events, then closes", async () => {
    slow = gate();
    const s = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1" });
    const inFlight = rawRequest(s.port, "POST", "/", binaryHeaders("test.slow"), "{}");
    await slow.reached;

    let drained = false;
    const draining = s.drain().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBe(false); // waits for the request in flight

    // while draining: not healthy, and no new events (503 is retried by the broker), or refused outright
    const health = await rawRequest(s.port, "GET", "/healthz").catch((e: NodeJS.ErrnoException) => ({ status: 0, body: e.code ?? "" }));
    expect([503, 0]).toContain(health.status);
    const fresh = await rawRequest(s.port, "POST", "/", binaryHeaders("test.echo"), "{}").catch((e: NodeJS.ErrnoException) => ({ status: 0, body: e.code ?? "" }));
    expect([503, 0]).toContain(fresh.status);
    expect(calls).not.toContain("test.echo");

    slow.open();
    const done = await inFlight;
    expect(done.status).toBe(200);
    expect(JSON.parse(done.body)).toEqual({ slow: true });

    await draining;
    expect(drained).toBe(true);
    await expect(rawRequest(s.port, "GET", "/healthz")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("drains at once when nothing is in flight", async () => {
    const s = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1" });
    expect((await rawRequest(s.port, "GET", "/healthz")).status).toBe(200);
    await s.drain();
    await expect(rawRequest(s.port, "GET", "/healthz")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("waits for several in-flight requests, not just the first", async () => {
    slow = gate();
    slowEntered = 0;
    const s = await serveFunction(fake, context(), { port: 0, host: "127.0.0.1" });
    const a = rawRequest(s.port, "POST", "/", binaryHeaders("test.slow"), "{}");
    const b = rawRequest(s.port, "POST", "/", binaryHeaders("test.slow"), "{}");
    await until(() => slowEntered === 2);
    let drained = false;
    const draining = s.drain().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBe(false);
    slow.open();
    expect((await a).status).toBe(200);
    expect((await b).status).toBe(200);
    await draining;
    expect(drained).toBe(true);
  });
});

describe("eventFromBody: what the functions read", () => {
  const ce = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t" };
  const read = (headers: Record<string, string>, body: Buffer | string, jsonOnly = true) =>
    eventFromBody({ kind: "complete", body: Buffer.from(body) }, headers, { timeoutMs: 1000, jsonOnly });
  const status = (r: ReturnType<typeof read>) => ("refused" in r ? r.refused.status : 200);

  it.each([
    ["application/json", 200],
    ["application/json; charset=utf-8", 200],
    ["Application/JSON", 200],
    ["text/plain", 415],
    ["application/xml", 415],
    ["application/cloudevents+xml", 415],
  ])("binary mode as %s: %i", (contentType, expected) => {
    expect(status(read({ ...ce, "content-type": contentType }, "{}"))).toBe(expected);
  });

  it("415 for a body without a content type; an empty one is an event without data", () => {
    expect(status(read(ce, "{}"))).toBe(415);
    const empty = read(ce, "");
    expect("event" in empty && empty.event.data).toBeUndefined();
  });

  it("a broker reads any content type (jsonOnly off)", () => {
    expect(status(read({ ...ce, "content-type": "text/plain" }, "hello", false))).toBe(200);
  });

  it("400 for bytes that are not UTF-8, even inside a JSON string", () => {
    const r = read({ ...ce, "content-type": "application/json" }, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]));
    expect(status(r)).toBe(400);
    expect("refused" in r && (r.refused.error as Error).message).toMatch(/not UTF-8/);
  });
});
