// The local run (local-cluster/flow.ts, what `npm start` drives): its function processes listen on
// loopback only, and one that dies is restarted on its port and reported, while the broker's
// retries carry the deliveries it missed (issue 8, findings 1 and 8).
import { throwawayCaPool } from "../../cli/ca-create.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadClusterFile } from "../../cli/cluster.js";
import { requestPodCertificates } from "../../local-cluster/kubelet/emulator.js";
import { startLocalFlow, type LocalFlow } from "../../local-cluster/flow.js";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import { listeningAddress } from "../helpers/raw-http.js";
import { STEPS } from "../../shared/steps.js";

let flow: LocalFlow;
const said: string[] = [];

beforeAll(async () => {
  flow = await startLocalFlow({ objects: loadClusterFile("examples/cluster.yaml"), config: defaultSignerConfig(), caPool: await throwawayCaPool(defaultSignerConfig().signers.keys()), knativeDir: "knative", logLevel: "warn", say: (m) => said.push(m) });
});

afterAll(async () => {
  await flow?.stop();
});

describe("the local run", () => {
  it("binds every function process to loopback", async () => {
    expect(flow.processes.map((p) => p.name)).toEqual(STEPS);
    for (const p of flow.processes) {
      const where = await listeningAddress(Number(new URL(p.url).port));
      if (where === undefined) return; // no /proc/net/tcp on this system
      expect(where, p.name).toBe("127.0.0.1");
    }
  });

  it("restarts a function process that dies on the same port, reports it, and the requests it missed still finish as expected", async () => {
    const sign = flow.processes.find((p) => p.name === "sign")!;
    const killed = sign.child;
    const gone = new Promise((r) => killed.once("exit", r));
    killed.kill("SIGKILL");
    await gone;
    // The PCRs are created while sign is down or coming back: deliveries to it fail and are retried.
    const requests = await requestPodCertificates(flow.kubeconfig);

    // The flow records the restart once its own readiness check passes, which may be a moment
    // after the new process first answers /healthz: wait for the record, then check both.
    await expect.poll(() => flow.exits[0]?.restarted?.ok, { timeout: 20_000, interval: 100 }).toBe(true);
    expect((await fetch(`${sign.url}/healthz`)).status).toBe(200);
    expect(sign.child).not.toBe(killed);
    expect(flow.exits).toMatchObject([{ name: "sign", signal: "SIGKILL", restarts: 1, restarted: { ok: true } }]);
    expect(said.some((m) => /sign exited unexpectedly \(signal SIGKILL\); restarting it on the same port/.test(m))).toBe(true);
    expect(said.some((m) => /sign restarted, ready in \d+ ms/.test(m))).toBe(true);

    await expect.poll(() => requests.filter((r) => flow.finishedAt.has(r.pcr.metadata.uid ?? "")).length, { timeout: 60_000, interval: 100 }).toBe(requests.length);
    const outcomes = requests.map((r) => {
      const pcr = flow.api.store.get("podcertificaterequests", r.pcr.metadata.namespace, r.pcr.metadata.name) as unknown as PodCertificateRequest;
      const c = terminalCondition(pcr);
      return { pod: `${r.pod.namespace}/${r.pod.name}`, expected: r.expected, outcome: c?.type === "Issued" ? "Issued" : `${c?.type}:${c?.reason}` };
    });
    for (const o of outcomes) if (o.expected !== undefined) expect(o.outcome, o.pod).toBe(o.expected);
    expect(outcomes.filter((o) => o.outcome === "Issued").length).toBeGreaterThan(0);
    expect(flow.deadLetters).toEqual([]);
  });
});
