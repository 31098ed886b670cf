// The local broker's HTTP ingress against bodies it must not buffer (issue 8, finding 8): answered
// 413 as soon as a body declares or reaches more than MAX_EVENT_BYTES, while the rest is still
// coming (so it was never held), and 408 when a body stalls.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MAX_EVENT_BYTES } from "../../../shared/events/codec.js";
import { LocalBroker } from "../../../local-cluster/broker.js";
import { chunk, openRaw, postHead } from "../../helpers/raw-http.js";

let broker: LocalBroker;
let url: string;

beforeEach(async () => {
  broker = new LocalBroker({ routes: [], delivery: { retry: 0, backoffPolicy: "exponential", backoffDelayMs: 0 }, brokerName: "podcert", subscribers: new Map() });
  url = await broker.listen(0);
});

afterEach(async () => {
  await broker.close();
});

describe("the local broker's ingress", () => {
  it("answers 413 to a body declared larger than the limit, before it is sent", async () => {
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", contentLength: 64 * 1024 * 1024 }));
    const res = await c.response();
    expect(res.status).toBe(413);
    expect(res.body).toContain(`event larger than ${MAX_EVENT_BYTES} bytes`);
    c.close();
  });

  it("answers 413 to a chunked body once it passes the limit, while the rest is still to come", async () => {
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", chunked: true }));
    await c.write(chunk(Buffer.alloc(MAX_EVENT_BYTES + 1, 0x20)));
    expect((await c.response()).status).toBe(413);
    c.close();
  });

  it("answers a 64 MB POST 413 (not 400)", async () => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "x".repeat(64 * 1024 * 1024) });
    expect(res.status).toBe(413);
  });

  it("answers 408 to a body that stalls, and closes the connection", async () => {
    const c = await openRaw(url);
    await c.write(postHead({ host: "x", contentLength: 1000 }) + "{");
    expect((await c.response()).status).toBe(408);
    await c.closed;
  });
});
