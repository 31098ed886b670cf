import { describe, expect, it } from "vitest";
import type { KubernetesEvent } from "../../../shared/kube/cluster.js";
import { createEventRecorder } from "../../../shared/kube/event-recorder.js";
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
