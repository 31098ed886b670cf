/**
 * Serves one function over HTTP as Knative runs it: POST / takes a CloudEvent (binary or
 * structured), answers 200 with the reply (binary mode) or 204 when there is none. Status codes
 * tell the broker what to do: 4xx (not retried) for events that are invalid or not authenticated,
 * 503/429 for transient failures and 500 for bugs (both retried). SIGTERM drains, then exits.
 *
 * The server faces clients it cannot trust to be quick or well-behaved, so: a body is read within
 * BODY_TIMEOUT_MS and never held past MAX_EVENT_BYTES; connections are capped; a drain gives up
 * on what is stuck; and no error while answering a request can escape to the process (a bug is
 * answered 500 and logged, or the connection is cut when the answer had already begun).
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isPodcertError, RejectedEventError, TransientError } from "../errors.js";
import { eventFromHttp, eventToBinaryHttp, MAX_EVENT_BYTES, type OnDroppedAttribute } from "../events/codec.js";
import { jsonShapeProblem } from "../events/json-shape.js";
import type { PodcertEvent } from "../events/types.js";
import { STEP_REGISTRY } from "../steps.js";
import { BODY_TIMEOUT_MS, CONNECTIONS_CHECK_INTERVAL_MS, HEADERS_TIMEOUT_MS, readBody, type BodyResult } from "./body.js";
import { OIDC_JWKS_TIMEOUT_MS, type DeliveryAuth } from "./delivery-auth.js";
import type { FunctionContext, FunctionDefinition } from "./function.js";
import type { Readiness } from "./readiness.js";

export interface HandledEvent {
  event?: PodcertEvent;
  /**
   * The status answered; 408 when the body did not arrive in time, and 499 (nginx's "client
   * closed request"; nothing was answered) when the client went away before it had sent the body.
   */
  status: number;
  reply?: PodcertEvent;
  error?: unknown;
  seconds: number;
}

/**
 * Open connections a function accepts by default. Knative's queue-proxy lets at most the
 * Service's containerConcurrency requests (50, knative/services.yaml) into a pod and keeps at most
 * as many idle connections, reusing one before it dials another, so it holds about 50; the rest is
 * room for the readiness probe, a Prometheus scrape and connections that are closing. Each
 * connection may hold an upload of up to MAX_EVENT_BYTES, so the cap also bounds memory.
 * PODCERT_MAX_CONNECTIONS overrides it: raise it with containerConcurrency.
 */
export const DEFAULT_MAX_CONNECTIONS = 64;

/**
 * How long a drain waits for requests being handled. Knative gives a pod its revision's
 * timeoutSeconds (60 in knative/services.yaml) as termination grace period, and queue-proxy drains
 * first, inside that same period, for at least 30 s; what is left is about 30 s, of which the
 * function's Kubernetes Events get 5 (main.ts). Handlers take milliseconds unless the API server
 * is slow (8 s per call at most, kube/client-node.ts).
 */
export const DRAIN_TIMEOUT_MS = 20_000;

export interface ServeOptions {
  port: number;
  /** Default 0.0.0.0 (every interface, as a container needs); the local run uses 127.0.0.1. */
  host?: string;
  /** Default DEFAULT_MAX_CONNECTIONS; connections beyond it are closed as they arrive. */
  maxConnections?: number;
  /** Default BODY_TIMEOUT_MS. */
  bodyTimeoutMs?: number;
  /** Default DRAIN_TIMEOUT_MS. */
  drainTimeoutMs?: number;
  /** Called once per POST, for metrics. */
  onHandled?: (h: HandledEvent) => void;
  /**
   * When set, every POST must carry a token it accepts (delivery-auth.ts), checked before the body
   * is read; a refusal is answered at once and the connection closed.
   */
  deliveryAuth?: DeliveryAuth;
  /** What GET /healthz and /readyz answer besides draining (readiness.ts); absent: ready. */
  readiness?: Readiness;
  /** Extra GET routes (e.g. /metrics). */
  routes?: Record<string, () => Promise<{ contentType: string; body: string }>>;
}

/** A request whose body never fully arrived: the client's doing, not an event podcert rejected. */
export class UploadError extends Error {
  override readonly name = "UploadError";
  constructor(
    readonly code: "ERR_UPLOAD_TIMEOUT" | "ERR_UPLOAD_ABORTED",
    message: string,
  ) {
    super(message);
  }
}

/** What an error means to the broker. */
export function statusForError(e: unknown): number {
  if (e instanceof RejectedEventError) return e.status;
  if (e instanceof TransientError) return e.overloaded ? 429 : 503;
  return 500;
}

/** Runs the handler for one event and maps the outcome to an HTTP status, without HTTP. */
export async function dispatch(def: FunctionDefinition, ctx: FunctionContext, event: PodcertEvent): Promise<{ status: number; reply?: PodcertEvent; error?: unknown }> {
  // The dead-letter sink takes what the Broker could not deliver, whatever its type.
  if (!isDeadLetterSink(def.step) && !def.consumes.includes(event.type)) {
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

function isDeadLetterSink(step: string): boolean {
  return STEP_REGISTRY.some((s) => s.name === step && s.deadLetterSink);
}

export interface RunningServer {
  server: Server;
  port: number;
  /**
   * Stops taking events (503), waits for requests in flight — uploads end within the body
   * timeout, handlers get the drain timeout — then closes every connection and resolves.
   */
  drain(): Promise<void>;
}

function send(res: ServerResponse, status: number, body?: string, headers: Record<string, string> = {}) {
  res.writeHead(status, body === undefined ? headers : { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(body);
}

/**
 * The last resort for a request whose answer failed: 500 if nothing was written yet (without the
 * headers the failed answer had set), or the connection cut if the answer had begun.
 */
function abandon(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  try {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    send(res, 500, "internal error\n", { connection: "close" });
  } catch {
    res.destroy();
  }
}

/**
 * Why the request's content type is not one podcert reads, or undefined. Every producer of its
 * events (ApiServerSource, the steps, resync, a PingSource with JSON data) sends JSON, in binary
 * mode (application/json) or structured mode (application/cloudevents+json); a PingSource without
 * data sends no body and no content type. Anything else would only be parsed as something it is not.
 */
function mediaTypeProblem(headers: IncomingHttpHeaders, bodyBytes: number): string | undefined {
  const declared = headers["content-type"];
  const mediaType = declared?.split(";")[0]?.trim().toLowerCase();
  if (mediaType === undefined || mediaType === "") return bodyBytes === 0 ? undefined : "a body without a content type (podcert reads application/json)";
  if (mediaType === "application/json" || mediaType === "application/cloudevents+json") return undefined;
  // The codec names batches; other event formats and data types are refused here.
  if (mediaType.startsWith("application/cloudevents-batch")) return undefined;
  return `content type ${JSON.stringify(mediaType.slice(0, 100))} is not supported (podcert reads application/json or application/cloudevents+json)`;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The event a request's body carried, or why there is none and the status to answer: 415 a content
 * type other than JSON (`jsonOnly`), 413 too large or too complex to parse (before anything parses it), 400 not
 * UTF-8 (JSON must be; decoding would otherwise replace what is not, silently), 408 stalled, 499
 * abandoned, or what the codec refused. The functions and the local broker's ingress read events
 * through this one path.
 */
export function eventFromBody(
  read: BodyResult,
  headers: IncomingHttpHeaders,
  o: {
    timeoutMs: number;
    onDropped?: OnDroppedAttribute;
    /** Refuse (415) what is not JSON, as the functions do; a broker (Knative's, the local one) routes any content type. */
    jsonOnly?: boolean;
  },
): { event: PodcertEvent } | { refused: { status: number; error: unknown } } {
  switch (read.kind) {
    case "too-large":
      return { refused: { status: 413, error: new RejectedEventError(`event larger than ${MAX_EVENT_BYTES} bytes`, 413) } };
    case "timed-out":
      return { refused: { status: 408, error: new UploadError("ERR_UPLOAD_TIMEOUT", `the event did not arrive within ${o.timeoutMs} ms (${read.bytes} bytes of it did)`) } };
    case "aborted":
      return { refused: { status: 499, error: new UploadError("ERR_UPLOAD_ABORTED", `the client went away after ${read.bytes} bytes of the event`) } };
    case "complete":
      break;
  }
  const unsupported = o.jsonOnly === true ? mediaTypeProblem(headers, read.body.length) : undefined;
  if (unsupported !== undefined) return { refused: { status: 415, error: new RejectedEventError(unsupported, 415) } };
  // Before any parsing: what parsing costs is bounded by the body's structure, not its size.
  const problem = jsonShapeProblem(read.body);
  if (problem !== undefined) return { refused: { status: 413, error: new RejectedEventError(`event too complex to parse: ${problem}`, 413) } };
  let text: string;
  try {
    text = utf8.decode(read.body);
  } catch {
    return { refused: { status: 400, error: new RejectedEventError("event body is not UTF-8") } };
  }
  try {
    return { event: eventFromHttp(headers, text, o.onDropped) };
  } catch (e) {
    return { refused: { status: statusForError(e), error: e } };
  }
}

export async function serveFunction(def: FunctionDefinition, ctx: FunctionContext, o: ServeOptions): Promise<RunningServer> {
  const bodyTimeoutMs = o.bodyTimeoutMs ?? BODY_TIMEOUT_MS;
  let inFlight = 0;
  let draining = false;
  const idle: (() => void)[] = [];

  type Outcome = Omit<HandledEvent, "seconds">;


  const logOutcome = (h: HandledEvent) => {
    const fields = { step: def.step, eventId: h.event?.id, status: h.status, error: h.error };
    if (h.error instanceof UploadError) ctx.log.warn(h.status === 408 ? "upload timed out" : "upload aborted by the client", fields);
    else if (h.status >= 500 && !(h.error instanceof TransientError)) ctx.log.error("handler failed", fields);
    // A 429 (the API server's back-off, passed on) is retried like a 5xx: not a rejection.
    else if (h.status >= 400) ctx.log.warn(h.status < 500 && !(h.error instanceof TransientError) ? "event rejected" : "transient failure", fields);
  };

  const answer = (res: ServerResponse, h: HandledEvent, extra: Record<string, string> = {}) => {
    if (h.status === 499) {
      res.destroy(); // nobody is listening
    } else if (h.reply) {
      const { headers, body } = eventToBinaryHttp(h.reply);
      send(res, 200, body, headers);
    } else if (h.status === 204) {
      send(res, 204);
    } else {
      const e = h.error;
      const message = isPodcertError(e) || e instanceof UploadError ? e.message : "internal error";
      send(res, h.status, `${message}\n`, { ...(h.status === 503 || h.status === 429 ? { "retry-after": "1" } : {}), ...extra });
    }
  };

  const handleEvent = async (req: IncomingMessage, res: ServerResponse) => {
    const start = performance.now();
    let outcome: Outcome;
    let extraHeaders: Record<string, string> = {};
    // The sender first: an unauthenticated request costs no body read and no parsing.
    const auth = o.deliveryAuth === undefined ? undefined : await o.deliveryAuth.verify(req.headers.authorization);
    if (auth !== undefined && !auth.ok) {
      outcome = { status: auth.status, error: auth.error };
      // The body is left unread, so the connection cannot carry another request.
      extraHeaders = { connection: "close", ...(auth.challenge !== undefined ? { "www-authenticate": auth.challenge } : {}) };
    } else {
      const parsed = eventFromBody(await readBody(req, res, { limit: MAX_EVENT_BYTES, timeoutMs: bodyTimeoutMs }), req.headers, {
        timeoutMs: bodyTimeoutMs,
        jsonOnly: true,
        onDropped: (attribute, reason) => ctx.log.warn("event attribute dropped", { step: def.step, attribute, reason }),
      });
      outcome = "refused" in parsed ? parsed.refused : { event: parsed.event, ...(await dispatch(def, ctx, parsed.event)) };
    }
    let handled: HandledEvent = { ...outcome, seconds: (performance.now() - start) / 1000 };
    logOutcome(handled);
    try {
      answer(res, handled, extraHeaders);
    } catch (e) {
      // E.g. a reply whose attribute cannot be an HTTP header (ERR_INVALID_CHAR): a bug, retried.
      handled = { ...handled, status: 500, error: e };
      delete handled.reply;
      ctx.log.error("answer could not be written", { step: def.step, eventId: handled.event?.id, error: e });
      abandon(res);
    }
    try {
      o.onHandled?.(handled);
    } catch (e) {
      ctx.log.error("onHandled failed", { step: def.step, error: e });
    }
  };

  const handleRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    // Liveness: the process answers. A restart would fix nothing readiness checks.
    if (req.method === "GET" && path === "/livez") return send(res, 200, "ok\n");
    if (req.method === "GET" && (path === "/healthz" || path === "/readyz")) {
      if (draining) return send(res, 503, "draining\n");
      const missing = o.readiness?.problems() ?? [];
      return missing.length === 0 ? send(res, 200, "ok\n") : send(res, 503, `not ready:\n${missing.map((m) => `- ${m}\n`).join("")}`);
    }
    const route = req.method === "GET" && path !== undefined ? o.routes?.[path] : undefined;
    if (route) {
      const r = await route();
      return send(res, 200, r.body, { "content-type": r.contentType });
    }
    if (req.method === "GET" && path !== undefined && def.getPrefix !== undefined && def.get !== undefined && path.startsWith(def.getPrefix)) {
      const r = await def.get(path, ctx);
      return r === undefined ? send(res, 404, "not found\n") : send(res, r.status, r.body, { "content-type": r.contentType });
    }
    if (path !== "/") return send(res, 404, "not found\n");
    if (req.method !== "POST") return send(res, 405, "POST a CloudEvent\n", { allow: "POST" });
    if (draining) return send(res, 503, "shutting down\n", { "retry-after": "1", connection: "close" });
    inFlight++;
    try {
      await handleEvent(req, res);
    } finally {
      inFlight--;
      if (inFlight === 0) for (const resolve of idle.splice(0)) resolve();
    }
  };

  const server = createServer({ connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS }, (req, res) => {
    handleRequest(req, res).catch((e: unknown) => {
      // Nothing on the request path may end the process: whatever was not caught above is a bug.
      ctx.log.error("request failed", { step: def.step, method: req.method, error: e });
      abandon(res);
    });
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  // A backstop: readBody's own deadline (which tells a timeout from an abort) comes first.
  // A delivery's token is checked before its body is read, waiting at most for the JWKS.
  server.requestTimeout = HEADERS_TIMEOUT_MS + (o.deliveryAuth === undefined ? 0 : OIDC_JWKS_TIMEOUT_MS) + bodyTimeoutMs + CONNECTIONS_CHECK_INTERVAL_MS;
  server.maxConnections = o.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.on("drop", logDrops(ctx, def.step, server.maxConnections));
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
      // Keep-alive connections with nothing in flight would otherwise wait for their next request.
      server.closeIdleConnections();
      const drainTimeoutMs = o.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
      const finished = await new Promise<boolean>((resolve) => {
        if (inFlight === 0) return resolve(true);
        const timer = setTimeout(() => resolve(false), drainTimeoutMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!finished) ctx.log.warn("drain gave up; cutting requests still in flight", { step: def.step, requests: inFlight, waitedMs: drainTimeoutMs });
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** Logs connections refused at the cap: the first at once, then a count at most every 10 s. */
function logDrops(ctx: FunctionContext, step: string, max: number): () => void {
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (dropped === 0) return;
    ctx.log.warn("connections refused at the cap", { step, dropped, maxConnections: max });
    dropped = 0;
    timer = setTimeout(flush, 10_000).unref();
  };
  return () => {
    dropped++;
    if (timer === undefined) flush();
  };
}
