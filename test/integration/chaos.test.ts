// The short version of `npm run chaos`: a small burst through the whole local flow (function
// processes, local broker, emulated ApiServerSource, embedded API server) with every kind of fault
// at once, judged by the same criteria as the full run.
import { describe, expect, it } from "vitest";
import { MIXES } from "../../chaos/mixes.js";
import { runMix } from "../../chaos/run-mix.js";
import { buildScenario } from "../../chaos/scenario.js";
import { tempDir } from "../helpers/temp.js";

describe("the local flow under every fault at once", () => {
  it("ends every request as expected, once, with exactly its SANs, and explains every dead letter", async () => {
    const combined = MIXES.find((m) => m.name === "combined")!;
    // Higher rates than the full run's, so a small burst meets every kind of fault.
    const mix = {
      ...combined,
      api: { status500: 0.06, status503: 0.06, status429: 0.06, reset: 0.04, slow: 0.01, slowMs: 3_000, conflict: 0.08, watchCloseEarly: 0.05, watchSkip: 0.1 },
      delivery: { drop: 0.06, duplicate: 0.06, concurrentDuplicate: 0.06, reorder: 0.06, delay: 0.06, delayMs: 500, killMidRequest: 0.03 },
    };
    const scenario = buildScenario({ pcrs: 40, seed: 7 });
    const r = await runMix({
      mix,
      scenario,
      seed: 7,
      logDir: process.env.CHAOS_TEST_LOGS ?? tempDir("podcert-chaos-"),
      timing: { resyncIntervalMs: 1_500, resyncGraceSeconds: 3, lateServiceDelayMs: 3_000, deadlineMs: 150_000 },
    });
    expect(r.judgement.problems).toEqual([]);
    // The run met faults of both sides, and what it expected is what happened.
    const injected = Object.entries(r.faults).filter(([, n]) => (n ?? 0) > 0).map(([k]) => k);
    expect(injected).toEqual(expect.arrayContaining(["status503", "status429", "drop", "duplicate"]));
    const denied = scenario.requests.filter((q) => q.expected.type === "Denied").length;
    expect(r.requests.filter((q) => q.terminal?.type === "Denied")).toHaveLength(denied);
    expect(r.requests.filter((q) => q.terminal?.type === "Issued")).toHaveLength(scenario.requests.length - denied);
  }, 240_000);
});
