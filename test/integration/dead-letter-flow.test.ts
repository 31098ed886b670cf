// The local run's dead letters (local-cluster/broker.ts, flow.ts): an event the broker gives up on
// is recorded (flow.deadLetters, as before) and also delivered over HTTP to the dead-letter
// function's process, with the knativeerror* extensions Knative adds, which logs and counts it.
// A dead-letter sink that fails is not sent its own failure again.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { throwawayCaPool } from "../../cli/ca-create.js";
import { loadClusterFile } from "../../cli/cluster.js";
import { deadLetterEvent, KNATIVE_ERROR_DATA_MAX_BYTES, LocalBroker, type SinkDelivery } from "../../local-cluster/broker.js";
import { startLocalFlow, type LocalFlow } from "../../local-cluster/flow.js";
import { eventToBinaryHttp } from "../../shared/events/codec.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { tempDir } from "../helpers/temp.js";

let flow: LocalFlow;
let logDir: string;

beforeAll(async () => {
  logDir = tempDir("podcert-dead-letter-flow-");
  flow = await startLocalFlow({
    objects: loadClusterFile("examples/cluster.yaml"),
    config: defaultSignerConfig(),
    caPool: await throwawayCaPool(defaultSignerConfig().signers.keys()),
    knativeDir: "knative",
    logDir,
    logLevel: "warn",
  });
}, 60_000);

afterAll(async () => {
  await flow?.stop();
});

/** A denial with no attestations: deny refuses it (400, not retried), so the broker dead-letters it. */
const badDenial = (id: string): PodcertEvent => ({
  specversion: "1.0",
  id,
  type: EVENT_TYPES.denied,
  source: "/attacker",
  subject: "workers/pcr-dead-letter",
  datacontenttype: "application/json",
  data: { not: "a step event" },
  extensions: {},
});

const sinkProcess = () => flow.processes.find((p) => p.name === "dead-letter")!;
const counted = async (): Promise<number> => {
  const text = await (await fetch(`${sinkProcess().url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("podcert_dead_letters_total{") && l.includes(`type="${EVENT_TYPES.denied}"`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
};

describe("dead letters in the local run", () => {
  it("runs the dead-letter function as a process of its own, ready without Kubernetes access", async () => {
    expect(sinkProcess()).toBeDefined();
    expect((await fetch(`${sinkProcess().url}/healthz`)).status).toBe(200);
  });

  it("records a dead-lettered event, delivers it to the dead-letter process with Knative's extensions, which logs and counts it", async () => {
    const before = await counted();
    const res = await fetch(flow.brokerUrl, { method: "POST", ...eventToBinaryHttp(badDenial("dl-flow-1")) });
    expect(res.status).toBe(202);
    await expect.poll(() => flow.deadLetters.find((d) => d.event.id === "dl-flow-1"), { timeout: 20_000 }).toMatchObject({ subscriber: "podcert-deny", lastStatus: 400, attempts: 1 });
    await expect.poll(() => flow.sinkDeliveries.find((d) => d.id === "dl-flow-1"), { timeout: 20_000 }).toMatchObject({ status: 204, attempts: 1 });
    expect(await counted()).toBe(before + 1);
    const line = readFileSync(join(logDir, "dead-letter.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes('"eventId":"dl-flow-1"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(line).toHaveLength(1);
    expect(line[0]).toMatchObject({
      msg: "event dead-lettered",
      type: EVENT_TYPES.denied,
      pcrNamespace: "workers",
      pcrName: "pcr-dead-letter",
      errorCode: 400,
      errorDestination: flow.processes.find((p) => p.name === "deny")!.url,
    });
    // The run's own record is kept as before.
    expect(readFileSync(join(logDir, "dead-letter.jsonl"), "utf8")).toContain('"id":"dl-flow-1"');
  });
});

describe("the broker's delivery to the dead-letter sink", () => {
  it("adds knativeerrordest, knativeerrorcode (when there was an answer) and knativeerrordata (base64, at most 1024 bytes of the answer)", () => {
    const event = { ...badDenial("x"), extensions: { knativeerrorcode: "999", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } };
    const answered = deadLetterEvent({ event, subscriberUrl: "http://127.0.0.1:1", lastStatus: 403, lastError: "é".repeat(1000) });
    expect(answered.extensions).toMatchObject({ knativeerrordest: "http://127.0.0.1:1", knativeerrorcode: "403", traceparent: event.extensions.traceparent });
    expect(Buffer.from(answered.extensions.knativeerrordata!, "base64").length).toBe(KNATIVE_ERROR_DATA_MAX_BYTES);
    const unanswered = deadLetterEvent({ event, subscriberUrl: "http://127.0.0.1:1", lastStatus: "network-error", lastError: "connect ECONNREFUSED" });
    expect(unanswered.extensions.knativeerrorcode).toBeUndefined();
    expect(Buffer.from(unanswered.extensions.knativeerrordata!, "base64").toString()).toBe("connect ECONNREFUSED");
    expect(unanswered.data).toEqual(event.data);
  });

  /**
   * A broker whose one Trigger's subscriber (podcert-deny) and dead-letter sink (podcert-dead-letter)
   * are one local server: the subscriber refuses every event (400, final), the sink answers
   * `sinkStatus` with `sinkBody`.
   */
  async function brokerWithSink(sinkStatus: number, sinkBody = "") {
    const { createServer } = await import("node:http");
    const hits = { sink: 0, subscriber: [] as string[] };
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        if (req.url === "/sink") {
          hits.sink++;
          res.writeHead(sinkStatus).end(sinkBody);
        } else {
          hits.subscriber.push(String(req.headers["ce-id"]));
          res.writeHead(400).end("refused\n");
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const sinkResults: SinkDelivery[] = [];
    const deadLetters: string[] = [];
    const broker = new LocalBroker({
      routes: [{ name: "t", broker: "podcert", subscriber: "podcert-deny", filter: { type: EVENT_TYPES.denied } }],
      delivery: { retry: 2, backoffPolicy: "linear", backoffDelayMs: 1, deadLetterSink: "podcert-dead-letter" },
      brokerName: "podcert",
      subscribers: new Map([
        ["podcert-deny", `http://127.0.0.1:${port}/`],
        ["podcert-dead-letter", `http://127.0.0.1:${port}/sink`],
      ]),
      onDeadLetter: (d) => deadLetters.push(d.event.id),
      onSinkDelivery: (d) => sinkResults.push(d),
    });
    const close = async () => {
      await broker.close();
      await new Promise<void>((r) => server.close(() => r()));
    };
    return { broker, hits, sinkResults, deadLetters, close };
  }

  it("does not loop: a sink that fails gets each dead letter once (plus its retries), never its own failures", async () => {
    const t = await brokerWithSink(400, "the sink refuses\n");
    try {
      t.broker.publish(badDenial("loop-1"));
      await expect.poll(() => t.sinkResults.length, { timeout: 10_000 }).toBe(1);
      // 400 is final: one attempt, no retry, and no second dead letter for the sink's failure.
      await new Promise((r) => setTimeout(r, 200));
      expect(t.sinkResults).toMatchObject([{ status: 400, attempts: 1, error: "the sink refuses" }]);
      expect(t.hits.sink).toBe(1);
      expect(t.deadLetters).toEqual(["loop-1"]);
      expect(t.hits.subscriber).toEqual(["loop-1"]);
    } finally {
      await t.close();
    }
  });

  it("retries a sink that answers 503 as any delivery, then gives up without dead-lettering it", async () => {
    const t = await brokerWithSink(503);
    try {
      t.broker.publish(badDenial("retry-1"));
      await expect.poll(() => t.sinkResults.length, { timeout: 10_000 }).toBe(1);
      expect(t.sinkResults).toMatchObject([{ status: 503, attempts: 3 }]);
      expect(t.hits.sink).toBe(3);
      expect(t.deadLetters).toEqual(["retry-1"]);
    } finally {
      await t.close();
    }
  });
});
