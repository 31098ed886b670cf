// shared/runtime/readiness.ts: what /healthz reports, and when it is logged.
import { describe, expect, it } from "vitest";
import { createReadiness } from "../../../shared/runtime/readiness.js";
import type { Logger } from "../../../shared/runtime/log.js";

function recordingLog(): { log: Logger; lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const rec = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, ...(fields ? { fields } : {}) });
  return { log: { debug: rec("debug"), info: rec("info"), warn: rec("warn"), error: rec("error") } as Logger, lines };
}

/** An API check the test answers, one attempt at a time. */
function scriptedApi() {
  const waiting: ((r: string | undefined) => void)[] = [];
  let attempts = 0;
  return {
    check: () => {
      attempts++;
      return new Promise<string | undefined>((resolve) => waiting.push(resolve));
    },
    answer: async (r: string | undefined) => {
      while (waiting.length === 0) await new Promise((res) => setImmediate(res));
      waiting.shift()!(r);
      await new Promise((res) => setImmediate(res));
    },
    attempts: () => attempts,
  };
}

describe("createReadiness", () => {
  it("without credentials: names them with the API server's answer, and is ready if it serves anonymous clients", async () => {
    const { log, lines } = recordingLog();
    const api = scriptedApi();
    const r = createReadiness({ log, kubernetes: { credentials: "no Kubernetes credentials: x", checkApi: api.check } });
    expect(r.problems()).toEqual(["no Kubernetes credentials: x"]);
    await api.answer("connection refused");
    expect(r.problems()).toEqual(["no Kubernetes credentials: x; connection refused"]);
    expect(lines).toEqual([{ level: "warn", msg: "not ready", fields: { missing: ["no Kubernetes credentials: x; connection refused"] } }]);
    await api.answer(undefined); // kubectl proxy
    expect(r.problems()).toEqual([]);
  });

  it("not ready until the API server is reached, then ready for good (one blip later changes nothing)", async () => {
    const { log, lines } = recordingLog();
    const api = scriptedApi();
    const r = createReadiness({ log, kubernetes: { credentials: undefined, checkApi: api.check } });
    expect(r.problems()).toEqual(["the Kubernetes API server has not been reached yet"]);
    expect(lines).toEqual([]); // the first check is still running: nothing to report yet
    await api.answer("connection refused");
    expect(r.problems()).toEqual(["connection refused"]);
    await api.answer(undefined);
    expect(r.problems()).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual(["not ready", "ready"]);
    expect(api.attempts()).toBe(2); // no check after the first success
  });

  it("adds the step's own checks at each probe, logging each change", async () => {
    const { log, lines } = recordingLog();
    const api = scriptedApi();
    let own: string[] = ["no usable CA for signer s"];
    const r = createReadiness({ log, kubernetes: { credentials: undefined, checkApi: api.check }, checks: () => own });
    await api.answer(undefined);
    expect(r.problems()).toEqual(["no usable CA for signer s"]);
    own = [];
    expect(r.problems()).toEqual([]);
    expect(r.problems()).toEqual([]);
    expect(lines.map((l) => [l.msg, l.fields?.missing])).toEqual([
      ["not ready", ["no usable CA for signer s"]],
      ["ready", undefined],
    ]);
  });

  it("is ready at once for a function without Kubernetes access (the dead-letter sink): no API check, no kubeconfig", () => {
    const { log, lines } = recordingLog();
    const r = createReadiness({ log });
    expect(r.problems()).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual(["ready"]);
    // Its own checks still count.
    expect(createReadiness({ log, checks: () => ["x"] }).problems()).toEqual(["x"]);
  });
});
