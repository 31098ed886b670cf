// The function server (shared/runtime/http.ts) against failures and clients that misbehave:
// answers it cannot write, routes and hooks that throw, uploads that stall, go away or are too
// large or too complex, too many connections, and a drain with something stuck. In process, with
// a fake function, so that each failure can be made on purpose (issue 8, findings 1 and 7).
import { afterEach, describe, expect, it } from "vitest";
import { ephemeralStepKeys } from "../../../shared/events/step-keys.js";
import { MAX_EVENT_BYTES } from "../../../shared/events/codec.js";
import { MAX_JSON_VALUES } from "../../../shared/events/json-shape.js";
import type { PodcertEvent } from "../../../shared/events/types.js";
import type { ClusterApi } from "../../../shared/kube/cluster.js";
import { defaultSignerConfig } from "../../../shared/profiles/defaults.js";
import { replyEvent, type FunctionContext, type FunctionDefinition } from "../../../shared/runtime/function.js";
import { serveFunction, type HandledEvent, type RunningServer, type ServeOptions } from "../../../shared/runtime/http.js";
import { createLogger } from "../../../shared/runtime/log.js";
import { chunk, openRaw, postHead } from "../../helpers/raw-http.js";

const NOW = new Date("2026-05-01T10:00:00Z");
/** How long expect.poll waits for something the server does (a bound, not a measurement). */
const WAIT = { timeout: 10_000, interval: 20 };

/** A gate a handler waits on. */
let release: () => void = () => {};
let entered: () => void = () => {};

const fake: FunctionDefinition = {
  step: "validate",
  consumes: ["test.ok", "test.bad-reply-crlf", "test.bad-reply-unicode", "test.stuck"],
  emits: ["test.reply"],
  async handle(event: PodcertEvent, ctx: FunctionContext) {
    const reply = (extensions: Record<string, string> = {}) => {
      const r = replyEvent(event, { step: "validate", type: "test.reply", subject: "s", data: { ok: true }, now: ctx.now() });
      r.extensions = { ...r.extensions, ...extensions };
      return r;
    };
    switch (event.type) {
      case "test.ok":
        return reply();
      // Replies no HTTP header can carry: writing them throws ERR_INVALID_CHAR.
      case "test.bad-reply-crlf":
        return reply({ tracestate: "a=b\r\nx-injected: 1" });
      case "test.bad-reply-unicode":
        return reply({ tracestate: "a=\u2713" });
      case "test.stuck":
        entered();
        await new Promise<void>((r) => (release = r));
        return reply();
      default:
        throw new Error("unreachable");
    }
  },
};

const noCluster = new Proxy({} as ClusterApi, {
  get(_t, p) {
    throw new Error(`cluster.${String(p)} must not be used`);
  },
});

let logLines: string[] = [];
let handled: HandledEvent[] = [];
const servers: RunningServer[] = [];

async function serve(o: Partial<ServeOptions> = {}): Promise<{ srv: RunningServer; url: string }> {
  const ctx: FunctionContext = {
    config: defaultSignerConfig(),
    cluster: noCluster,
    keys: ephemeralStepKeys().validate,
    now: () => NOW,
    log: createLogger({ level: "debug", write: (l) => logLines.push(l) }),
  };
  const srv = await serveFunction(fake, ctx, { port: 0, host: "127.0.0.1", onHandled: (h) => handled.push(h), ...o });
  servers.push(srv);
  return { srv, url: `http://127.0.0.1:${srv.port}` };
}

afterEach(async () => {
  release();
  for (const s of servers.splice(0)) await s.drain();
  logLines = [];
  handled = [];
});

const logged = () => logLines.map((l) => JSON.parse(l) as { level: string; msg: string; status?: number; error?: { name?: string; code?: string } });

function post(url: string, type: string, body = "{}") {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/test", "ce-type": type }, body });
}

describe("no error while answering a request escapes the server", () => {
  it.each([
    { case: "CR/LF", type: "test.bad-reply-crlf" },
    { case: "a character above U+00FF", type: "test.bad-reply-unicode" },
  ])("a reply with $case in an attribute is answered 500, logged, counted; the server keeps serving", async ({ type }) => {
    const { url } = await serve();
    const res = await post(url, type);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe("internal error\n");
    // nothing of the failed answer leaks into the 500
    expect(res.headers.get("ce-type")).toBeNull();
    expect(res.headers.get("x-injected")).toBeNull();
    expect(logged().some((l) => l.level === "error" && l.msg === "answer could not be written" && l.error?.code === "ERR_INVALID_CHAR")).toBe(true);
    expect(handled.map((h) => h.status)).toEqual([500]);
    // and the same server answers the next event
    const next = await post(url, "test.ok");
    expect(next.status).toBe(200);
    expect(next.headers.get("ce-type")).toBe("test.reply");
  });

  it("a GET route that throws is answered 500 and logged", async () => {
    const { url } = await serve({
      routes: {
        "/metrics": async () => {
          throw new Error("registry broken");
        },
      },
    });
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain("registry broken");
    expect(logged().some((l) => l.level === "error" && l.msg === "request failed")).toBe(true);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it("an onHandled hook that throws does not cost the answer", async () => {
    const { url } = await serve({
      onHandled: () => {
        throw new Error("metrics broken");
      },
    });
    const res = await post(url, "test.ok");
    expect(res.status).toBe(200);
    expect(logged().some((l) => l.level === "error" && l.msg === "onHandled failed")).toBe(true);
    expect((await post(url, "test.ok")).status).toBe(200);
  });
});

describe("uploads", () => {
  it("a body that stalls is answered 408 once the body timeout passes, logged as such, and the connection closed", async () => {
    const { url } = await serve({ bodyTimeoutMs: 300 });
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", contentLength: 1000, type: "test.ok" }) + '{"partial":');
    const res = await c.response();
    expect(res.status).toBe(408);
    expect(res.headers.connection).toBe("close");
    await c.closed;
    expect(handled.map((h) => h.status)).toEqual([408]);
    const lines = logged();
    expect(lines.some((l) => l.level === "warn" && l.msg === "upload timed out")).toBe(true);
    expect(lines.some((l) => l.msg === "handler failed")).toBe(false);
  });

  it("a client that goes away mid-body is logged as an aborted upload, not a handler failure, and counted 499", async () => {
    const { url } = await serve({ bodyTimeoutMs: 60_000 });
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", contentLength: 1000, type: "test.ok" }) + '{"partial":');
    c.close();
    await expect.poll(() => handled.length, WAIT).toBe(1);
    expect(handled[0]!.status).toBe(499);
    const lines = logged();
    expect(lines.some((l) => l.level === "warn" && l.msg === "upload aborted by the client")).toBe(true);
    expect(lines.some((l) => l.level === "error")).toBe(false);
  });

  it("a declared length over the limit is answered 413 before the body is sent", async () => {
    const { url } = await serve({ bodyTimeoutMs: 60_000 });
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", contentLength: 64 * MAX_EVENT_BYTES, type: "test.ok" }));
    const res = await c.response();
    expect(res.status).toBe(413);
    expect(res.headers.connection).toBe("close");
    c.close();
  });

  it("a chunked body that grows past the limit is answered 413 while it is still coming", async () => {
    const { url } = await serve({ bodyTimeoutMs: 60_000 });
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", chunked: true, type: "test.ok" }));
    await c.write(chunk(Buffer.alloc(MAX_EVENT_BYTES + 1, 0x20)));
    const res = await c.response();
    expect(res.status).toBe(413);
    c.close();
  });

  it("a body within the size limit but with more JSON values than the budget is answered 413 without being parsed", async () => {
    const { url } = await serve();
    const body = `[${"0,".repeat(MAX_JSON_VALUES)}0]`;
    expect(Buffer.byteLength(body)).toBeLessThan(MAX_EVENT_BYTES);
    const res = await post(url, "test.ok", body);
    expect(res.status).toBe(413);
    expect(await res.text()).toMatch(/too complex to parse: JSON with more than \d+ values/);
    const deep = await post(url, "test.ok", `${"[".repeat(1000)}${"]".repeat(1000)}`);
    expect(deep.status).toBe(413);
    expect(await deep.text()).toMatch(/nested deeper than/);
  });
});

describe("connections", () => {
  it("refuses connections beyond the cap, logs it, and takes new ones once others close", async () => {
    const { url } = await serve({ maxConnections: 3 });
    const held = await Promise.all([1, 2, 3].map(() => openRaw(url)));
    // each of the three is served (so the server has accepted it), and stays open
    for (const c of held) {
      await c.write("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
      expect((await c.response()).status).toBe(200);
    }
    const fourth = await openRaw(url);
    await fourth.write("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").catch(() => {});
    expect((await fourth.response()).status).toBe(0);
    expect(logged().some((l) => l.level === "warn" && l.msg === "connections refused at the cap")).toBe(true);
    held[0]!.close();
    await expect
      .poll(async () => {
        const c = await openRaw(url);
        await c.write("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").catch(() => {});
        return (await c.response()).status;
      }, WAIT)
      .toBe(200);
    for (const c of held) c.close();
  });
});

describe("drain", () => {
  it("does not wait for an upload that stalls", async () => {
    const { srv, url } = await serve({ bodyTimeoutMs: 500 });
    const c = await openRaw(url);
    // in flight: the server has the request's head, and waits for its body
    const seen = new Promise((r) => srv.server.once("request", r));
    await c.write(postHead({ host: "x", contentLength: 1000, type: "test.ok" }) + "{");
    await seen;
    await srv.drain();
    await c.closed;
    servers.splice(servers.indexOf(srv), 1);
  });

  it("gives up on a handler stuck past the drain timeout, logs it and closes", async () => {
    const { srv, url } = await serve({ drainTimeoutMs: 200 });
    const reached = new Promise<void>((r) => (entered = r));
    const stuck = post(url, "test.stuck").then(
      (r) => r.status,
      () => "cut" as const,
    );
    await reached;
    await srv.drain();
    servers.splice(servers.indexOf(srv), 1);
    expect(await stuck).toBe("cut");
    expect(logged().some((l) => l.level === "warn" && l.msg === "drain gave up; cutting requests still in flight")).toBe(true);
  });
});
