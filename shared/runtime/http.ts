/**
 * Serves one function over HTTP as Knative runs it: POST / takes a CloudEvent (binary or
 * structured), answers 200 with the reply (binary mode) or 204 when there is none. Status codes
 * tell the broker what to do: 4xx (not retried) for events that are invalid or not authenticated,
 * 503/429 for transient failures and 500 for bugs (both retried). SIGTERM drains, then exits.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isPodcertError, RejectedEventError, TransientError } from "../errors.js";
import { eventFromHttp, eventToBinaryHttp, MAX_EVENT_BYTES } from "../events/codec.js";
import type { PodcertEvent } from "../events/types.js";
import type { FunctionContext, FunctionDefinition } from "./function.js";

export interface HandledEvent {
  event?: PodcertEvent;
  status: number;
  reply?: PodcertEvent;
  error?: unknown;
  seconds: number;
}

export interface ServeOptions {
  port: number;
  host?: string;
  /** Called once per POST, for metrics. */
  onHandled?: (h: HandledEvent) => void;
  /** Extra GET routes (e.g. /metrics). */
  routes?: Record<string, () => Promise<{ contentType: string; body: string }>>;
}

/** What an error means to the broker. */
export function statusForError(e: unknown): number {
  if (e instanceof RejectedEventError) return e.status;
  if (e instanceof TransientError) return e.overloaded ? 429 : 503;
  return 500;
}

/** Runs the handler for one event and maps the outcome to an HTTP status, without HTTP. */
export async function dispatch(def: FunctionDefinition, ctx: FunctionContext, event: PodcertEvent): Promise<{ status: number; reply?: PodcertEvent; error?: unknown }> {
  if (!def.consumes.includes(event.type)) {
    return { status: 400, error: new RejectedEventError(`${def.step} does not consume events of type ${event.type.slice(0, 100)}`) };
  }
  try {
    const reply = await def.handle(event, ctx);
    if (reply === undefined) return { status: 204 };
    // The Triggers are wired from `emits`; a reply outside it would go nowhere.
    if (!def.emits.includes(reply.type)) throw new Error(`${def.step} replied with undeclared event type ${reply.type}`);
    return { status: 200, reply };
  } catch (e) {
    return { status: statusForError(e), error: e };
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(size > limit ? undefined : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body?: string, headers: Record<string, string> = {}) {
  res.writeHead(status, body === undefined ? headers : { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}

export interface RunningServer {
  server: Server;
  port: number;
  /** Stops accepting, waits for in-flight requests, then resolves. */
  drain(): Promise<void>;
}

export async function serveFunction(def: FunctionDefinition, ctx: FunctionContext, o: ServeOptions): Promise<RunningServer> {
  let inFlight = 0;
  let draining = false;
  let idle: (() => void) | undefined;

  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method === "GET" && (path === "/healthz" || path === "/readyz")) {
        return send(res, draining ? 503 : 200, draining ? "draining\n" : "ok\n");
      }
      const route = req.method === "GET" && path !== undefined ? o.routes?.[path] : undefined;
      if (route) {
        const r = await route();
        return send(res, 200, r.body, { "content-type": r.contentType });
      }
      if (path !== "/") return send(res, 404, "not found\n");
      if (req.method !== "POST") return send(res, 405, "POST a CloudEvent\n", { allow: "POST" });
      if (draining) return send(res, 503, "shutting down\n", { "retry-after": "1" });

      inFlight++;
      const start = performance.now();
      let handled: HandledEvent = { status: 500, seconds: 0 };
      try {
        const body = await readBody(req, MAX_EVENT_BYTES);
        if (body === undefined) {
          handled = { status: 413, error: new RejectedEventError(`event larger than ${MAX_EVENT_BYTES} bytes`, 413), seconds: 0 };
        } else {
          let event: PodcertEvent | undefined;
          try {
            event = eventFromHttp(req.headers, body, (attribute, reason) => ctx.log.warn("event attribute dropped", { step: def.step, attribute, reason }));
          } catch (e) {
            handled = { status: statusForError(e), error: e, seconds: 0 };
          }
          if (event !== undefined) handled = { event, ...(await dispatch(def, ctx, event)), seconds: 0 };
        }
      } catch (e) {
        handled = { status: 500, error: e, seconds: 0 };
      }
      handled.seconds = (performance.now() - start) / 1000;
      try {
        if (handled.reply) {
          const { headers, body } = eventToBinaryHttp(handled.reply);
          send(res, 200, body, headers);
        } else if (handled.status === 204) {
          send(res, 204);
        } else {
          const e = handled.error;
          const message = isPodcertError(e) ? e.message : "internal error";
          if (handled.status >= 500 && !(e instanceof TransientError)) ctx.log.error("handler failed", { step: def.step, eventId: handled.event?.id, error: e });
          else if (handled.status >= 400) ctx.log.warn(handled.status < 500 ? "event rejected" : "transient failure", { step: def.step, eventId: handled.event?.id, status: handled.status, error: e });
          send(res, handled.status, `${message}\n`, handled.status === 503 || handled.status === 429 ? { "retry-after": "1" } : {});
        }
      } finally {
        o.onHandled?.(handled);
        inFlight--;
        if (inFlight === 0) idle?.();
      }
    })();
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "0.0.0.0", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : o.port;

  return {
    server,
    port,
    async drain() {
      draining = true;
      await new Promise<void>((resolve) => {
        if (inFlight === 0) resolve();
        else idle = resolve;
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}
