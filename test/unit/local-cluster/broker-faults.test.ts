// The local broker's delivery faults (issue 11): off by default, each kind observable by a
// subscriber, drawn from a seeded generator, and a bad plan refused.
import type { ServerResponse } from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import type { PodcertEvent } from "../../../shared/events/types.js";
import { ConfigError } from "../../../shared/errors.js";
import { EVENT_TYPES, serviceName, STEPS } from "../../../shared/steps.js";
import { LocalBroker, type BrokerFaults, type DeadLetter, type Delivery, type DeliverySpec, type LostDelivery } from "../../../local-cluster/broker.js";
import { FaultCounter, seededRandom, type DeliveryFaultPlan } from "../../../local-cluster/faults.js";
import { killFunctionProcess, startFunctionProcess, stopFunctionProcess } from "../../../local-cluster/processes.js";
import { parseTriggers } from "../../../local-cluster/router.js";
import { tempDir } from "../../helpers/temp.js";
import { ack, fast, subscriber, until, type Handler } from "../../helpers/subscribers.js";

const routes = parseTriggers(readFileSync("knative/triggers.yaml", "utf8"));
const SIGN = serviceName("sign");

let n = 0;
/** sans.derived goes to one subscriber only (sign): one event, one delivery. */
function event(type: string = EVENT_TYPES.sansDerived): PodcertEvent {
  n++;
  return { specversion: "1.0", id: `e-${n}`, type, source: "/test", subject: `ns/pcr-${n}`, data: { n }, datacontenttype: "application/json", extensions: {} };
}


interface Setup {
  handlers?: Partial<Record<string, Handler>>;
  faults?: BrokerFaults;
  delivery?: DeliverySpec;
  subscribers?: Map<string, string>;
  onKill?: (subscriber: string) => boolean;
}

async function brokerWith(o: Setup = {}) {
  const subs = o.subscribers ?? new Map<string, string>();
  const received = new Map<string, PodcertEvent[]>();
  for (const fn of STEPS) {
    if (subs.has(serviceName(fn))) continue;
    const s = await subscriber(o.handlers?.[fn] ?? ack);
    subs.set(serviceName(fn), s.url);
    received.set(fn, s.received);
  }
  const dead: DeadLetter[] = [];
  const lost: LostDelivery[] = [];
  const deliveries: Delivery[] = [];
  const broker = new LocalBroker({
    routes,
    delivery: o.delivery ?? fast,
    brokerName: "podcert",
    subscribers: subs,
    onDeadLetter: (d) => dead.push(d),
    onLost: (d) => lost.push(d),
    onDelivery: (d) => deliveries.push(d),
    ...(o.faults ? { faults: o.faults } : {}),
    ...(o.onKill ? { onKill: o.onKill } : {}),
  });
  return { broker, received, dead, lost, deliveries };
}

const faultsOf = (plan: DeliveryFaultPlan, seed = 7): BrokerFaults => ({ plan, random: seededRandom(seed), counter: new FaultCounter() });

/** The delays the broker sleeps (setTimeout calls made from local-cluster/broker.ts); the timers still run. */
function brokerSleeps(): { delays: number[]; restore: () => void } {
  const real = globalThis.setTimeout;
  const delays: number[] = [];
  const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((...args: Parameters<typeof setTimeout>) => {
    const caller = new Error().stack?.split("\n").slice(1).find((line) => !line.includes("@vitest/spy") && !line.includes("broker-faults.test."));
    if (caller?.includes("/local-cluster/broker.")) delays.push(args[1] ?? 0);
    return real(...args);
  }) as typeof setTimeout);
  return { delays, restore: () => spy.mockRestore() };
}

describe("delivery faults", () => {
  it("are off by default: every event delivered once, nothing counted, and the record names the event", async () => {
    const { broker, received, deliveries, lost } = await brokerWith();
    const sent = Array.from({ length: 20 }, () => event());
    for (const e of sent) broker.publish(e);
    await broker.idle();
    expect(received.get("sign")!.map((e) => e.id).sort()).toEqual(sent.map((e) => e.id).sort());
    expect(broker.faultCounter.total()).toBe(0);
    expect(broker.faultPlan).toBeUndefined();
    expect(lost).toEqual([]);
    const first = deliveries.find((d) => d.id === sent[0]!.id);
    expect(first).toEqual({ trigger: expect.any(String), subscriber: SIGN, eventType: EVENT_TYPES.sansDerived, id: sent[0]!.id, subject: sent[0]!.subject, status: 204, attempts: 1 });
  });

  it("drop: the subscriber never sees the delivery, the lost callback does, and nothing is dead-lettered", async () => {
    const faults = faultsOf({ drop: 1 });
    const { broker, received, lost, dead, deliveries } = await brokerWith({ faults });
    const e = event();
    broker.publish(e);
    expect(broker.pending).toBe(0);
    await broker.idle();
    expect(lost).toEqual([{ event: e, trigger: expect.any(String), subscriber: SIGN, fault: "drop" }]);
    expect(faults.counter.snapshot()).toEqual({ drop: 1 });
    // Faults off again: the same subscriber gets the next one (it was reachable all along).
    broker.setFaults(undefined);
    const next = event();
    broker.publish(next);
    await broker.idle();
    expect(received.get("sign")!.map((x) => x.id)).toEqual([next.id]);
    expect(deliveries.map((d) => d.id)).toEqual([next.id]);
    expect(dead).toEqual([]);
  });

  it("duplicate: the subscriber gets the event twice, one delivery after the other, each a full delivery", async () => {
    let open = 0;
    let most = 0;
    let calls = 0;
    // The first attempt of the first copy fails: the copy is retried before the second one starts.
    const handler: Handler = (_e, _req, res) => {
      open++;
      most = Math.max(most, open);
      res.on("finish", () => open--);
      res.writeHead(++calls === 1 ? 503 : 204).end();
    };
    const faults = faultsOf({ duplicate: 1 });
    const { broker, received, deliveries, dead } = await brokerWith({ faults, handlers: { sign: handler } });
    const e = event();
    broker.publish(e);
    await broker.idle();
    expect(received.get("sign")!.map((x) => x.id)).toEqual([e.id, e.id, e.id]);
    expect(deliveries).toMatchObject([
      { id: e.id, status: 204, attempts: 2, fault: "duplicate" },
      { id: e.id, status: 204, attempts: 1, fault: "duplicate" },
    ]);
    expect(most).toBe(1);
    expect(faults.counter.snapshot()).toEqual({ duplicate: 1 });
    expect(dead).toEqual([]);
  });

  it("concurrentDuplicate: the two copies are in flight at the same time", async () => {
    // The subscriber answers the first copy only once the second has arrived: were the copies sent
    // one after the other, the second would never come and the wait below would time out.
    const held: ServerResponse[] = [];
    const handler: Handler = (_e, _req, res) => {
      held.push(res);
      if (held.length === 2) for (const r of held) r.writeHead(204).end();
    };
    const faults = faultsOf({ concurrentDuplicate: 1 });
    const { broker, received, deliveries, dead } = await brokerWith({ faults, handlers: { sign: handler } });
    const e = event();
    broker.publish(e);
    await until(() => received.get("sign")!.length === 2);
    await broker.idle();
    expect(received.get("sign")!.map((x) => x.id)).toEqual([e.id, e.id]);
    expect(deliveries).toMatchObject([
      { id: e.id, status: 204, attempts: 1, fault: "concurrentDuplicate" },
      { id: e.id, status: 204, attempts: 1, fault: "concurrentDuplicate" },
    ]);
    expect(dead).toEqual([]);
  });

  it("reorder: a held delivery reaches its subscriber after a later one, and counts as in flight meanwhile", async () => {
    const order: string[] = [];
    const record: Handler = (e, _req, res) => (order.push(e.id), res.writeHead(204).end());
    const faults = faultsOf({ reorder: 1 });
    const { broker, dead } = await brokerWith({ faults, handlers: { sign: record, validate: record } });
    const held = event();
    broker.publish(held);
    expect(broker.pending).toBe(1);
    broker.setFaults(undefined);
    const later = event(EVENT_TYPES.resync); // to another subscriber (validate)
    broker.publish(later);
    await broker.idle();
    expect(order).toEqual([later.id, held.id]);
    expect(faults.counter.snapshot()).toEqual({ reorder: 1 });
    expect(dead).toEqual([]);
  });

  it("reorder: with no later delivery, a held one still goes (after a short cap) and idle() waits for it", async () => {
    const { broker, received } = await brokerWith({ faults: faultsOf({ reorder: 1 }) });
    const e = event();
    broker.publish(e);
    await broker.idle();
    expect(received.get("sign")!.map((x) => x.id)).toEqual([e.id]);
  });

  it("delay: waits delayMs before the first attempt, counts as in flight meanwhile, idle() waits for it", async () => {
    const faults = faultsOf({ delay: 1, delayMs: 300 });
    const { broker, received, deliveries } = await brokerWith({ faults });
    const sleeps = brokerSleeps();
    const e = event();
    try {
      broker.publish(e);
      expect(broker.pending).toBe(1);
      expect(received.get("sign")).toEqual([]);
      await broker.idle();
    } finally {
      sleeps.restore();
    }
    expect(sleeps.delays).toEqual([300]);
    expect(received.get("sign")!.map((x) => x.id)).toEqual([e.id]);
    expect(deliveries).toMatchObject([{ id: e.id, status: 204, attempts: 1, fault: "delay" }]);
    // Without delayMs, the plan's default.
    const sleeps2 = brokerSleeps();
    const { broker: b2 } = await brokerWith({ faults: faultsOf({ delay: 1 }) });
    try {
      b2.publish(event());
      await b2.close();
      await b2.idle();
    } finally {
      sleeps2.restore();
    }
    expect(sleeps2.delays).toEqual([2_000]);
  });

  it("close() abandons held and delayed deliveries: nothing is sent, nothing dead-lettered, idle() resolves", async () => {
    const faults = faultsOf({ reorder: 0.5, delay: 0.5, delayMs: 60_000 });
    const { broker, received, dead, deliveries } = await brokerWith({ faults });
    for (let i = 0; i < 10; i++) broker.publish(event());
    // Both kinds were drawn, and every delivery is waiting (none was sent).
    expect(faults.counter.get("reorder")).toBeGreaterThan(0);
    expect(faults.counter.get("delay")).toBeGreaterThan(0);
    expect(broker.pending).toBe(10);
    await broker.close();
    await broker.idle();
    expect(broker.pending).toBe(0);
    expect(received.get("sign")).toEqual([]);
    expect(deliveries).toEqual([]);
    expect(dead).toEqual([]);
  });

  it("draws the same faults for the same seed and order of events, other ones for another seed", async () => {
    const plan: DeliveryFaultPlan = { drop: 0.2, duplicate: 0.2, concurrentDuplicate: 0.1, reorder: 0.1, delay: 0.1, delayMs: 1 };
    const run = async (seed: number) => {
      const faults = faultsOf(plan, seed);
      const { broker, received, lost } = await brokerWith({ faults });
      for (let i = 0; i < 40; i++) broker.publish({ ...event(), id: `same-${i}` });
      await broker.idle();
      const perId = new Map<string, number>();
      for (const e of received.get("sign")!) perId.set(e.id, (perId.get(e.id) ?? 0) + 1);
      return { counts: faults.counter.snapshot(), lost: lost.map((l) => l.event.id), perId: Object.fromEntries([...perId].sort()) };
    };
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(Object.keys(a.counts).sort()).toEqual(["concurrentDuplicate", "delay", "drop", "duplicate", "reorder"]);
  });

  it("refuses a bad plan (ConfigError) and keeps the one in force", async () => {
    const { broker } = await brokerWith();
    broker.setFaults({ duplicate: 0.5 });
    const bad: [DeliveryFaultPlan, RegExp][] = [
      [{ drop: 1.5 }, /drop: a rate is a number from 0 to 1/],
      [{ delay: -0.1 }, /delay: a rate/],
      [{ drop: 0.6, duplicate: 0.6 }, /add up to 1\.200/],
      [{ delay: 0.1, delayMs: -5 }, /delayMs/],
      [{ drop: Number.NaN }, /drop: a rate/],
      [{ killMidRequest: 0.1 }, /no onKill hook/],
    ];
    for (const [plan, message] of bad) {
      expect(() => broker.setFaults(plan)).toThrow(ConfigError);
      expect(() => broker.setFaults(plan)).toThrow(message);
      expect(broker.faultPlan).toEqual({ duplicate: 0.5 });
    }
    expect(() => new LocalBroker({ routes, delivery: fast, brokerName: "podcert", subscribers: new Map(STEPS.map((fn) => [serviceName(fn), "http://127.0.0.1:1"])), faults: faultsOf({ drop: 2 }) })).toThrow(ConfigError);
    broker.setFaults(undefined);
    expect(broker.faultPlan).toBeUndefined();
  });
});

describe("killMidRequest", () => {
  it("kills the subscriber's process once the request is out; it is restarted on its port and the retried delivery succeeds", async () => {
    // A stand-in function: its first process never answers an event (so only the kill can end
    // that attempt); the one started after it answers 204. /healthz answers for readiness.
    const dir = tempDir("podcert-kill-");
    const bundle = join(dir, "fn.mjs");
    writeFileSync(
      bundle,
      `import { createServer } from "node:http";
import { existsSync, writeFileSync, appendFileSync } from "node:fs";
const marker = process.env.MARKER;
const first = !existsSync(marker);
if (first) writeFileSync(marker, "");
createServer((req, res) => {
  if (req.url === "/healthz") return void res.end("ok");
  appendFileSync(process.env.SEEN, (first ? "first " : "later ") + req.headers["ce-id"] + "\\n");
  req.resume();
  req.on("end", () => {
    if (!first) res.writeHead(204).end();
  });
}).listen(Number(process.env.PORT), process.env.HOST);
`,
    );
    const seen = join(dir, "seen.txt");
    writeFileSync(seen, "");
    const fn = await startFunctionProcess({ name: "sign", bundle, port: 0, env: { MARKER: join(dir, "started"), SEEN: seen } });
    const kills: string[] = [];
    try {
      const firstChild = fn.child;
      const faults = faultsOf({ killMidRequest: 1 });
      const { broker, deliveries, dead } = await brokerWith({
        faults,
        subscribers: new Map([[SIGN, fn.url]]),
        // Exponential from 50 ms: nine retries wait well over the restart (a node start).
        delivery: { retry: 9, backoffPolicy: "exponential", backoffDelayMs: 50, timeoutMs: 20_000 },
        onKill: (subscriber) => {
          kills.push(subscriber);
          return killFunctionProcess(fn);
        },
      });
      const e = event();
      broker.publish(e);
      await broker.idle();
      expect(kills).toEqual([SIGN]);
      expect(faults.counter.snapshot()).toEqual({ killMidRequest: 1 });
      expect(fn.exits).toMatchObject([{ name: "sign", signal: "SIGKILL", pid: firstChild.pid, restarts: 1 }]);
      expect(fn.child).not.toBe(firstChild);
      // The restarted process answered (the first may or may not have read the request before it
      // died: the kill follows the send at once).
      const lines = readFileSync(seen, "utf8").trim().split("\n");
      expect(lines.every((l) => l === `first ${e.id}` || l === `later ${e.id}`)).toBe(true);
      expect(lines.at(-1)).toBe(`later ${e.id}`);
      expect(deliveries).toHaveLength(1);
      expect(deliveries[0]).toMatchObject({ id: e.id, status: 204, fault: "killMidRequest" });
      expect(deliveries[0]!.attempts).toBeGreaterThanOrEqual(2);
      expect(dead).toEqual([]);
      expect((await fetch(`${fn.url}/healthz`)).status).toBe(200);
      // The harness marks it ready when its own /healthz poll answers, which may come a moment
      // after ours (the retried delivery can reach the process before that poll does).
      await expect.poll(() => fn.readyAt !== undefined, { timeout: 20_000 }).toBe(true);
      // A process that became ready a moment ago is spared; one serving for long enough is not.
      const replacement = fn.child;
      expect(killFunctionProcess(fn, 3_600_000)).toBe(false);
      expect(replacement.signalCode).toBeNull();
      expect(killFunctionProcess(fn, 0)).toBe(true);
      expect(fn.killedPid).toBe(replacement.pid);
      // Its replacement, still starting, is not ready: no fault kills it (Knative routes nothing to it).
      await expect.poll(() => fn.child !== replacement, { timeout: 10_000 }).toBe(true);
      expect(fn.readyAt).toBeUndefined();
      expect(killFunctionProcess(fn, 0)).toBe(false);
      await expect.poll(() => fn.readyAt !== undefined, { timeout: 20_000 }).toBe(true);
    } finally {
      await stopFunctionProcess(fn);
    }
  });
});
