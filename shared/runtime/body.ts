/**
 * Reading a request body from a client that may be hostile, for the functions' server
 * (runtime/http.ts) and the local broker's ingress (local/broker.ts): never more than `limit`
 * bytes held, the whole body within `timeoutMs` of the request's headers, and what went wrong
 * told apart — too large, too slow, gone — since each is answered and logged differently, and
 * none of them is a handler failure.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * How long a request's body may take to arrive, once its headers have. podcert's events are a few
 * KiB and travel inside the cluster (activator → queue-proxy → container) or over loopback: even
 * one of MAX_EVENT_BYTES arrives in milliseconds. A client that takes seconds is stalled or
 * hostile, and each stalled upload holds a connection and up to the limit in memory.
 */
export const BODY_TIMEOUT_MS = 5_000;
/** How long a request's headers may take (Node's `headersTimeout`), for the same reason. */
export const HEADERS_TIMEOUT_MS = 5_000;
/**
 * How often Node checks `headersTimeout` and `requestTimeout` (`connectionsCheckingInterval`).
 * Its default, 30 s, would let a stalled client outlive HEADERS_TIMEOUT_MS sixfold.
 */
export const CONNECTIONS_CHECK_INTERVAL_MS = 1_000;

export type BodyResult =
  | { kind: "complete"; body: Buffer }
  /** Declared or sent more than the limit: answer 413; the rest is dropped, not held. */
  | { kind: "too-large"; bytes: number }
  /** Not complete in time: answer 408; the connection is closed once the answer is written. */
  | { kind: "timed-out"; bytes: number }
  /** The client went away before the body was complete: there is nobody to answer. */
  | { kind: "aborted"; bytes: number };

/**
 * Reads `req`'s body. For the outcomes answered before the body is complete (too-large,
 * timed-out) it marks the response `connection: close`, so that Node closes the connection once
 * the answer is written; until then what still comes is read and dropped, and the deadline cuts
 * the connection if the answer cannot be written.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, o: { limit: number; timeoutMs: number }): Promise<BodyResult> {
  return new Promise((resolve) => {
    let received = 0;
    const declared = declaredLength(req);
    // The socket's own chunks, joined once the body is complete. (Copying them into one buffer
    // of the declared size as they come would hold each byte twice until a GC frees the chunks.)
    let chunks: Buffer[] = [];
    let settled = false;
    let discarding = false;

    const settle = (r: BodyResult) => {
      if (settled) return;
      settled = true;
      chunks = [];
      if (r.kind === "too-large" || r.kind === "timed-out") res.setHeader("connection", "close");
      if (r.kind === "timed-out") {
        // Stop reading; once the 408 is written the connection goes (the client may still read it).
        req.pause();
        res.once("finish", () => req.destroy());
      }
      resolve(r);
    };
    const deadline = setTimeout(() => {
      // A discarded body that is still coming after the deadline: stop taking it.
      if (discarding) req.destroy();
      else settle({ kind: "timed-out", bytes: received });
    }, o.timeoutMs);
    deadline.unref();
    const done = () => clearTimeout(deadline);

    const tooLarge = (bytes: number) => {
      discarding = true;
      settle({ kind: "too-large", bytes });
    };
    if (declared !== undefined && declared > o.limit) tooLarge(declared);

    req.on("data", (c: Buffer) => {
      if (discarding || settled) return;
      if (received + c.length > o.limit) {
        tooLarge(received + c.length);
        return;
      }
      chunks.push(c);
      received += c.length;
    });
    req.on("end", () => {
      done();
      if (settled) return;
      settle({ kind: "complete", body: Buffer.concat(chunks, received) });
    });
    // Node emits "error" (ECONNRESET, "aborted") and then "close" when the client goes away
    // mid-body; "close" alone covers a socket destroyed without an error.
    req.on("error", () => {
      done();
      settle({ kind: "aborted", bytes: received });
    });
    req.on("close", () => {
      done();
      settle({ kind: "aborted", bytes: received });
    });
  });
}

function declaredLength(req: IncomingMessage): number | undefined {
  const v = req.headers["content-length"];
  if (v === undefined) return undefined;
  // Node's parser has already refused a malformed or repeated content-length.
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
