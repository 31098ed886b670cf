import { describe, expect, it } from "vitest";
import type { KubernetesEvent } from "../../../shared/kube/cluster.js";
import { createEventRecorder, takeEventToken, type EventBudget } from "../../../shared/kube/event-recorder.js";
import { createLogger } from "../../../shared/runtime/log.js";

const event = (i: number): KubernetesEvent => ({
  regarding: { kind: "PodCertificateRequest", apiVersion: "certificates.k8s.io/v1beta1", namespace: "ns", name: `pcr-${i}`, uid: `uid-${i}` },
  type: "Normal",
  reason: "Issued",
  message: `event ${i}`,
  reportingComponent: "podcert-sign",
});

/** An API whose createEvent calls wait until released, recording what was sent and how many at once. */
function gatedApi(o: { failFor?: Set<number> } = {}) {
  const sent: string[] = [];
  const waiting: (() => void)[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    sent,
    get maxInFlight() {
      return maxInFlight;
    },
    releaseAll() {
      for (const r of waiting.splice(0)) r();
    },
    api: {
      createEvent(e: KubernetesEvent) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        return new Promise<void>((resolve, reject) => {
          waiting.push(() => {
            inFlight--;
            const i = Number(e.regarding.name.slice(4));
            if (o.failFor?.has(i)) reject(new Error(`API down for ${e.regarding.name}`));
            else {
              sent.push(e.regarding.name);
              resolve();
            }
          });
        });
      },
    },
  };
}

/** Releases the gate until flush resolves. */
async function drain(g: ReturnType<typeof gatedApi>, flush: Promise<unknown>) {
  let done = false;
  void flush.then(() => (done = true));
  while (!done) {
    g.releaseAll();
    await new Promise((r) => setImmediate(r));
  }
}

function logger() {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }) };
}

describe("event recorder", () => {
  it("does not make the caller wait, sends every Event at most `concurrency` at a time, and flush waits for all", async () => {
    const g = gatedApi();
    const { log } = logger();
    const r = createEventRecorder(g.api, log, { concurrency: 3 });
    for (let i = 0; i < 10; i++) r.record(event(i));
    expect(g.sent).toEqual([]);
    expect(g.maxInFlight).toBe(3);
    await drain(g, r.flush());
    expect(g.sent).toEqual(Array.from({ length: 10 }, (_, i) => `pcr-${i}`));
    expect(g.maxInFlight).toBe(3);
    expect(r.dropped).toBe(0);
  });

  it("resolves flush at once when nothing is pending", async () => {
    const r = createEventRecorder(gatedApi().api, logger().log);
    await expect(r.flush()).resolves.toBe(true);
  });

  it("gives up waiting after flush's timeout, keeping the Events queued", async () => {
    const g = gatedApi();
    const r = createEventRecorder(g.api, logger().log, { concurrency: 1 });
    r.record(event(1));
    r.record(event(2));
    await expect(r.flush(20)).resolves.toBe(false);
    expect(g.sent).toEqual([]);
    let flushed: boolean | undefined;
    const later = r.flush(10_000).then((v) => (flushed = v));
    await drain(g, later);
    expect(flushed).toBe(true);
    expect(g.sent).toEqual(["pcr-1", "pcr-2"]);
  });

  it("drops Events past maxPending, counts them, and warns once rather than per Event", async () => {
    const g = gatedApi();
    const { lines, log } = logger();
    const r = createEventRecorder(g.api, log, { maxPending: 5, concurrency: 2 });
    for (let i = 0; i < 12; i++) r.record(event(i));
    expect(r.dropped).toBe(7);
    const warnings = lines.filter((l) => l.msg === "dropping Kubernetes Events: too many waiting");
    expect(warnings).toHaveLength(1);
    await drain(g, r.flush());
    expect(g.sent).toEqual(["pcr-0", "pcr-1", "pcr-2", "pcr-3", "pcr-4"]);
    // Room again once sent.
    r.record(event(99));
    await drain(g, r.flush());
    expect(g.sent.at(-1)).toBe("pcr-99");
  });

  it("logs a failed Event and goes on with the others", async () => {
    const g = gatedApi({ failFor: new Set([1]) });
    const { lines, log } = logger();
    const r = createEventRecorder(g.api, log, { concurrency: 1 });
    for (let i = 0; i < 3; i++) r.record(event(i));
    await drain(g, r.flush());
    expect(g.sent).toEqual(["pcr-0", "pcr-2"]);
    const warn = lines.find((l) => l.msg === "could not record Kubernetes Event");
    expect(warn).toMatchObject({ level: "warn", pcrName: "pcr-1", reason: "Issued" });
    expect(JSON.stringify(warn)).toContain("API down for pcr-1");
  });
});

describe("the Event budget (sampling under load)", () => {
  const RATE = { ratePerSecond: 10, burst: 100 };
  const warning = (i: number): KubernetesEvent => ({ ...event(i), type: "Warning", reason: "PodMismatch" });

  it("lets Normal Events use only the upper half of the bucket, and Warnings all of it", () => {
    const b: EventBudget = { tokens: 100, lastMs: 0 };
    let normal = 0;
    while (takeEventToken(b, "Normal", 0, RATE)) normal++;
    // 100 tokens; a Normal Event needs at least 51 left: 50 pass, the other 50 are the Warnings' reserve.
    expect(normal).toBe(50);
    let warnings = 0;
    while (takeEventToken(b, "Warning", 0, RATE)) warnings++;
    expect(warnings).toBe(50);
    expect(takeEventToken(b, "Warning", 0, RATE)).toBe(false);
  });

  it("refills at the rate, never beyond the burst", () => {
    const b: EventBudget = { tokens: 0, lastMs: 0 };
    expect(takeEventToken(b, "Warning", 50, RATE)).toBe(false); // half a token after 50 ms
    expect(takeEventToken(b, "Warning", 100, RATE)).toBe(true); // one after 100 ms
    expect(takeEventToken(b, "Warning", 3_600_000, RATE)).toBe(true);
    expect(b.tokens).toBe(99); // capped at 100, one taken
  });

  it("is off with a rate of 0 (or Infinity)", () => {
    const b: EventBudget = { tokens: 0, lastMs: 0 };
    expect(takeEventToken(b, "Normal", 0, { ratePerSecond: 0, burst: 2 })).toBe(true);
    expect(takeEventToken(b, "Normal", 0, { ratePerSecond: Number.POSITIVE_INFINITY, burst: 2 })).toBe(true);
  });

  it("in a burst, sends the Warnings and samples the Normal Events, counting and logging once", async () => {
    const g = gatedApi();
    const { lines, log } = logger();
    const r = createEventRecorder(g.api, log, { ratePerSecond: 10, burst: 20, nowMs: () => 0 });
    for (let i = 0; i < 30; i++) r.record(event(i));
    for (let i = 100; i < 105; i++) r.record(warning(i));
    await drain(g, r.flush());
    // 20 tokens: Normal Events while at least 11 are left (10), then every Warning.
    expect(g.sent.filter((n) => Number(n.slice(4)) < 100)).toHaveLength(10);
    expect(g.sent.filter((n) => Number(n.slice(4)) >= 100)).toEqual(["pcr-100", "pcr-101", "pcr-102", "pcr-103", "pcr-104"]);
    expect(r.sampled).toBe(20);
    expect(r.dropped).toBe(0);
    expect(lines.filter((l) => l.msg === "sampling Kubernetes Events: more than the rate budget allows")).toHaveLength(1);
  });
});
