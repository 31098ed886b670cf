// The local broker routes by the project's own Trigger manifests, with Knative's delivery rules.
import type { ServerResponse } from "node:http";
import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { eventToBinaryHttp } from "../../../shared/events/codec.js";
import type { PodcertEvent } from "../../../shared/events/types.js";
import { EVENT_TYPES, serviceName, STEPS } from "../../../shared/steps.js";
import {
  LocalBroker,
  parseBrokerDelivery,
  parseContainerConcurrency,
  parseIsoDurationMs,
  type DeadLetter,
} from "../../../local-cluster/broker.js";
import { parseTriggers } from "../../../local-cluster/router.js";
import { ack, fast, subscriber, until, type Handler } from "../../helpers/subscribers.js";

const TRIGGERS = readFileSync("knative/triggers.yaml", "utf8");
const routes = parseTriggers(TRIGGERS);

function event(type: string, extensions: Record<string, string> = {}): PodcertEvent {
  return { specversion: "1.0", id: `e-${Math.random()}`, type, source: "/test", data: { n: 1 }, datacontenttype: "application/json", extensions };
}


describe("the Broker's delivery spec", () => {
  it("reads the Broker's delivery spec", () => {
    const d = parseBrokerDelivery(readFileSync("knative/broker.yaml", "utf8"), "podcert");
    expect(d.retry).toBeGreaterThan(0);
    expect(d.backoffPolicy).toBe("exponential");
    expect(d.backoffDelayMs).toBeGreaterThan(0);
    expect(d.timeoutMs).toBeGreaterThan(0);
    expect(d.deadLetterSink).toBeTruthy();
    const untimed = "kind: Broker\nmetadata: {name: b}\nspec: {delivery: {retry: 1}}\n";
    expect(parseBrokerDelivery(untimed, "b").timeoutMs).toBeUndefined();
    expect(() => parseBrokerDelivery("kind: Broker\nmetadata: {name: b}\nspec: {delivery: {timeout: 10s}}\n", "b")).toThrow(/ISO 8601/);
  });

  it.each([
    { text: "PT0.5S", ms: 500 },
    { text: "PT2S", ms: 2000 },
    { text: "PT1M30S", ms: 90_000 },
    { text: "P1DT1H", ms: 90_000_000 },
  ])("parses $text as $ms ms", ({ text, ms }) => expect(parseIsoDurationMs(text)).toBe(ms));

  it.each(["", "P", "PT", "5s", "PT-1S"])("refuses the duration %j", (text) => expect(() => parseIsoDurationMs(text)).toThrow(/ISO 8601/));

  it("refuses a Trigger whose subscriber is not running", () => {
    expect(() => new LocalBroker({ routes, delivery: fast, brokerName: "podcert", subscribers: new Map() })).toThrow(/podcert-validate/);
  });
});

/**
 * Records the delays the broker sleeps: the setTimeout calls made from local-cluster/broker.ts
 * itself (its retry backoff), not those of undici or of the test. The timers still run for real.
 */
function brokerSleeps(): { delays: number[]; restore: () => void } {
  const real = globalThis.setTimeout;
  const delays: number[] = [];
  const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((...args: Parameters<typeof setTimeout>) => {
    const caller = new Error().stack?.split("\n").slice(1).find((line) => !line.includes("@vitest/spy") && !line.includes("broker.test."));
    if (caller?.includes("/local-cluster/broker.")) delays.push(args[1] ?? 0);
    return real(...args);
  }) as typeof setTimeout);
  return { delays, restore: () => spy.mockRestore() };
}

describe("delivery", () => {
  async function brokerWith(handlers: Partial<Record<string, Handler>>, delivery = fast, concurrency?: ReadonlyMap<string, number>, maxBackoffMs?: number) {
    const subs = new Map<string, string>();
    const received = new Map<string, PodcertEvent[]>();
    for (const fn of STEPS) {
      const s = await subscriber(handlers[fn] ?? ack);
      subs.set(serviceName(fn), s.url);
      received.set(fn, s.received);
    }
    const dead: DeadLetter[] = [];
    const broker = new LocalBroker({ routes, delivery, brokerName: "podcert", subscribers: subs, onDeadLetter: (d) => dead.push(d), ...(concurrency ? { concurrency } : {}), ...(maxBackoffMs === undefined ? {} : { maxBackoffMs }) });
    return { broker, received, dead };
  }

  it("keeps at most containerConcurrency requests in flight per Service, holding the rest back", async () => {
    // Each request is held until the test answers it, so "in flight" does not depend on timing.
    const held: ServerResponse[] = [];
    let most = 0;
    let done = false;
    const hold: Handler = (_e, _req, res) => {
      if (done) return void res.writeHead(204).end();
      held.push(res);
      most = Math.max(most, held.length);
    };
    const limits = parseContainerConcurrency(readFileSync("knative/services.yaml", "utf8"));
    expect(limits.get("podcert-sign")).toBe(50);
    const limit = 3;
    const { broker, received, dead } = await brokerWith({ sign: hold }, fast, new Map([["podcert-sign", limit]]));
    const sent = Array.from({ length: 20 }, () => event(EVENT_TYPES.sansDerived));
    try {
      for (const e of sent) broker.publish(e);
      for (let answered = 0; answered < sent.length; answered++) {
        // The broker fills every slot (or as many as are left to send) and, given time, no more.
        const full = Math.min(limit, sent.length - answered);
        await until(() => held.length >= full);
        await new Promise((r) => setTimeout(r, 10));
        expect(held.length).toBe(full);
        held.shift()!.writeHead(204).end();
      }
      await broker.idle();
    } finally {
      // On failure, answer everything so the servers can close.
      done = true;
      for (const res of held.splice(0)) res.writeHead(204).end();
    }
    expect(most).toBe(limit);
    expect(received.get("sign")!.map((e) => e.id).sort()).toEqual(sent.map((e) => e.id).sort());
    expect(dead).toEqual([]);
  });

  it("reads containerConcurrency per Service and refuses a malformed one", () => {
    const doc = (name: string, cc: unknown) => `apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: ${name}}\nspec: {template: {spec: {containerConcurrency: ${JSON.stringify(cc)}}}}\n`;
    expect([...parseContainerConcurrency([doc("a", 7), doc("b", 0)].join("---\n"))]).toEqual([["a", 7]]);
    expect(() => parseContainerConcurrency(doc("c", 1.5))).toThrow(/Service c: containerConcurrency/);
  });

  it("feeds a reply back into the broker, so steps chain", async () => {
    const reply = (type: string): Handler => (e, _req, res) => {
      const { headers, body } = eventToBinaryHttp({ ...event(type), extensions: e.extensions });
      res.writeHead(200, headers).end(body);
    };
    const { broker, received, dead } = await brokerWith({ validate: reply(EVENT_TYPES.validated), "derive-sans": reply(EVENT_TYPES.sansDerived) });
    broker.publish(event(EVENT_TYPES.apiServerAdd, { kind: "PodCertificateRequest", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }));
    await broker.idle();
    expect(received.get("validate")).toHaveLength(1);
    expect(received.get("derive-sans")).toHaveLength(1);
    expect(received.get("sign")).toHaveLength(1);
    expect(received.get("sign")![0]!.extensions.traceparent).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    expect(received.get("deny")).toHaveLength(0);
    expect(dead).toEqual([]);
  });

  it("retries 503 retry+1 times in all, then dead-letters", async () => {
    const { broker, received, dead } = await brokerWith({ sign: (_e, _r, res) => res.writeHead(503).end("busy") });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(received.get("sign")).toHaveLength(fast.retry + 1);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ subscriber: "podcert-sign", attempts: 3, lastStatus: 503, lastError: "busy" });
  });

  it("recovers when a retry succeeds", async () => {
    let calls = 0;
    const { broker, received, dead } = await brokerWith({ sign: (_e, _r, res) => res.writeHead(++calls < 2 ? 429 : 204).end() });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(received.get("sign")).toHaveLength(2);
    expect(dead).toEqual([]);
  });

  it("does not retry a 400 or 401: straight to the dead letter", async () => {
    const { broker, received, dead } = await brokerWith({ sign: (_e, _r, res) => res.writeHead(401).end("unsigned") });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(received.get("sign")).toHaveLength(1);
    expect(dead[0]).toMatchObject({ attempts: 1, lastStatus: 401 });
  });

  it("treats a 200 whose body is not a CloudEvent as a failed delivery", async () => {
    const { broker, dead } = await brokerWith({ sign: (_e, _r, res) => res.writeHead(200, { "content-type": "text/plain" }).end("hello") });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(dead[0]?.lastError).toMatch(/not a CloudEvent/);
  });

  it.each([
    { policy: "exponential", retry: 4, cap: "5 s by default", maxBackoffMs: undefined, want: [40, 80, 160, 320] },
    { policy: "exponential", retry: 5, cap: "maxBackoffMs 200", maxBackoffMs: 200, want: [40, 80, 160, 200, 200] },
    { policy: "linear", retry: 4, cap: "5 s by default", maxBackoffMs: undefined, want: [40, 80, 120, 160] },
  ] as const)("backs off $policy between attempts, capped at $cap: $want ms", async ({ policy, retry, maxBackoffMs, want }) => {
    const times: number[] = [];
    const failing: Handler = (_e, _r, res) => (times.push(performance.now()), res.writeHead(500).end());
    const { broker, received } = await brokerWith({ sign: failing }, { retry, backoffPolicy: policy, backoffDelayMs: 40 }, undefined, maxBackoffMs);
    const sleeps = brokerSleeps();
    try {
      broker.publish(event(EVENT_TYPES.sansDerived));
      await broker.idle();
    } finally {
      sleeps.restore();
    }
    expect(received.get("sign")).toHaveLength(retry + 1);
    // The delays the broker asked for, exactly, one between each two attempts...
    expect(sleeps.delays).toEqual(want);
    // ...and waited: each gap between attempts at least that delay (less 1 ms of timer rounding).
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps).toHaveLength(want.length);
    gaps.forEach((gap, i) => expect(gap, `gap ${i}`).toBeGreaterThanOrEqual(want[i]! - 1));
  });

  it("ends an attempt at the spec's timeout and retries it", async () => {
    let calls = 0;
    const slowOnce: Handler = (_e, _r, res) => void setTimeout(() => res.writeHead(204).end(), ++calls === 1 ? 1_000 : 0);
    const { broker, received, dead } = await brokerWith({ sign: slowOnce }, { ...fast, timeoutMs: 100 });
    const t0 = performance.now();
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(received.get("sign")).toHaveLength(2);
    expect(dead).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(900); // the first attempt was not waited out
  });

  it("dead-letters when every attempt times out", async () => {
    const hang: Handler = (_e, _r, res) => void setTimeout(() => res.writeHead(204).end(), 1_000);
    const { broker, received, dead } = await brokerWith({ sign: hang }, { ...fast, timeoutMs: 50 });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await broker.idle();
    expect(received.get("sign")).toHaveLength(fast.retry + 1);
    expect(dead).toEqual([expect.objectContaining({ attempts: fast.retry + 1, lastStatus: "network-error", lastError: "no answer within 50 ms" })]);
  });

  it("abandons the retries still waiting when closed: nothing more is sent, nothing dead-lettered, nothing keeps running", async () => {
    const failing: Handler = (_e, _r, res) => res.writeHead(503).end();
    const { broker, received, dead } = await brokerWith({ sign: failing }, { retry: 9, backoffPolicy: "linear", backoffDelayMs: 60_000 });
    broker.publish(event(EVENT_TYPES.sansDerived));
    await until(() => received.get("sign")!.length === 1);
    const closed = performance.now();
    await broker.close();
    await broker.idle();
    expect(performance.now() - closed).toBeLessThan(1_000);
    expect(received.get("sign")).toHaveLength(1);
    expect(dead).toEqual([]);
    expect(broker.pending).toBe(0);
  });

  it("accepts events on its HTTP ingress", async () => {
    const { broker, received } = await brokerWith({});
    const url = await broker.listen(0);
    const { headers, body } = eventToBinaryHttp(event(EVENT_TYPES.resync));
    expect((await fetch(url, { method: "POST", headers, body })).status).toBe(202);
    expect((await fetch(url, { method: "POST", body: "nope" })).status).toBe(400);
    await broker.idle();
    expect(received.get("validate")).toHaveLength(1);
    await broker.close();
  });
});
