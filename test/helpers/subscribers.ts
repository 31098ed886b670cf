/**
 * Small HTTP subscribers for the local broker's tests: each records the CloudEvents it receives
 * and answers as its handler says; all of them close after each test.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterEach } from "vitest";
import type { DeliverySpec } from "../../local-cluster/broker.js";
import { eventFromHttp } from "../../shared/events/codec.js";
import type { PodcertEvent } from "../../shared/events/types.js";

export type Handler = (e: PodcertEvent, req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    // A subscriber may hold a request open on purpose; the test is over.
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

export async function subscriber(handler: Handler): Promise<{ url: string; received: PodcertEvent[] }> {
  const received: PodcertEvent[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const e = eventFromHttp(req.headers, Buffer.concat(chunks).toString());
      received.push(e);
      handler(e, req, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const a = server.address();
  return { url: `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`, received };
}

/** Polls `cond` until it holds (or fails the test after `ms`). */
export async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 2));
  }
}

export const ack: Handler = (_e, _req, res) => res.writeHead(204).end();
/** Retries in milliseconds, so a test of the delivery spec does not wait. */
export const fast: DeliverySpec = { retry: 2, backoffPolicy: "exponential", backoffDelayMs: 1 };
