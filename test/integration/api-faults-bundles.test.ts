// The function bundles, served over HTTP as Knative runs them, against an API server that injects
// faults into their ServiceAccounts' requests (knative/'s RBAC enforced, so faults come after
// authorization): each answers what the broker retries, logs a transient failure (never a handler
// failure), writes nothing, and stays up; a 409 on sign's status write never yields a second certificate.
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { createPcr, postEvent, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { REQUEST_FAULT_CASES } from "../helpers/api-faults.js";

const WORKER = "workerpool.podcert.ate.dev/identity";

let env: BundleEnv;
let fns: Record<"validate" | "derive-sans" | "sign", ServedBundle>;
beforeAll(async () => {
  env = await startBundleEnv();
  fns = { validate: await env.serve("validate"), "derive-sans": await env.serve("derive-sans"), sign: await env.serve("sign") };
}, 120_000);
afterAll(async () => env?.stop());

let n = 0;
const newPcr = () => createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: `req-fault-${++n}` });
const stored = (pcr: PodCertificateRequest) => env.api.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name) as unknown as PodCertificateRequest;

describe("the bundles under API faults", () => {
  it.each(REQUEST_FAULT_CASES)("validate answers $status under $kind, writes nothing, and stays up", async ({ plan, status }) => {
    const { pcr, event } = newPcr();
    env.api.setFaults(plan);
    try {
      const a = await postEvent(fns.validate.url, event);
      expect(a.status, a.text).toBe(status);
    } finally {
      env.api.setFaults(undefined);
    }
    expect(stored(pcr)).toEqual(pcr);
    expect(fns.validate.child.exitCode).toBeNull();
    // Logged as what it is, for this event: a failure the broker retries (a 429 too), not a rejection.
    const logged = fns.validate.stderr().split("\n").filter((l) => l.includes(`"eventId":"${event.id}"`));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/"msg":"transient failure"/);
    expect(fns.validate.stderr()).not.toMatch(/"msg":"handler failed"/);
    // The broker's retry, once the API server is well again, goes through.
    expect((await postEvent(fns.validate.url, event)).reply?.type).toBe(EVENT_TYPES.validated);
  });

  it("sign under a conflict on its status write answers 503 and writes one certificate only once retried", async () => {
    const { pcr, event } = newPcr();
    const v = await postEvent(fns.validate.url, event);
    expect(v.reply?.type, v.text).toBe(EVENT_TYPES.validated);
    const d = await postEvent(fns["derive-sans"].url, v.reply!);
    expect(d.reply?.type, d.text).toBe(EVENT_TYPES.sansDerived);

    const before = env.api.faultCounts().get("conflict");
    env.api.setFaults({ conflict: 1 });
    try {
      const a = await postEvent(fns.sign.url, d.reply!);
      expect(a.status, a.text).toBe(503);
    } finally {
      env.api.setFaults(undefined);
    }
    // The write on the resourceVersion validate attested, then once more on the fresh one.
    expect(env.api.faultCounts().get("conflict")).toBe(before + 2);
    expect(stored(pcr).status?.certificateChain).toBeUndefined();

    const again = await postEvent(fns.sign.url, d.reply!);
    expect(again.status, again.text).toBe(200);
    const issued = stored(pcr);
    expect(terminalCondition(issued)?.type).toBe("Issued");
    expect((await postEvent(fns.sign.url, d.reply!)).status).toBe(204);
    expect(stored(pcr).status).toEqual(issued.status);
    expect(env.api.refusedRequests()).toEqual([]);
  });
});
