// podcert against an API server that misbehaves (the embedded server's fault injection): the
// Kubernetes client turns each fault into the error its callers expect, the steps answer what the
// broker retries (503, 429) and write nothing, a 409 on sign's status write never leads to a second
// certificate, a seeded mix of faults ends with the same outcomes as a run without any, and the
// emulated ApiServerSource reconnects without losing what it was sent.
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";

import { createCaPool } from "../../cli/ca-create.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { CONCURRENT_WRITER_ANNOTATION, startApiServer, type EmbeddedApiServer } from "../../local-cluster/apiserver/server.js";
import { startApiServerSource, type EmulatedSource } from "../../local-cluster/apiserver-source.js";
import { controlPlaneApis } from "../../local-cluster/kubernetes-versions.js";
import { API_REQUEST_FAULTS, drawFault, seededRandom, type ApiFaultPlan } from "../../local-cluster/faults.js";
import { loadFunctions } from "../../local-cluster/functions.js";
import { requestPodCertificates } from "../../local-cluster/kubelet/emulator.js";
import { BROKER_NAME, loadTriggers, retryable, routeEvent, stepOfService } from "../../local-cluster/router.js";
import { parseCaPool, serializeCaPool } from "../../shared/ca/pool.js";
import { ConflictError, TransientError } from "../../shared/errors.js";
import { apiServerAddEvent } from "../../shared/events/pcr-event.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { KubeClusterApi, loadKubeConfig } from "../../shared/kube/client-node.js";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import { dispatch } from "../../shared/runtime/http.js";
import { silentLogger } from "../../shared/runtime/log.js";
import { EVENT_TYPES, type StepName } from "../../shared/steps.js";
import { REQUEST_FAULT_CASES } from "../helpers/api-faults.js";

const servers: EmbeddedApiServer[] = [];
const sources: EmulatedSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) s.stop();
  for (const s of servers.splice(0)) await s.stop();
});

/**
 * The example cluster with its PCRs (created before any fault), the steps in-process on one
 * client (without authorization every request gets the plan's faults), lookups read live.
 */
async function setup() {
  const server = await startApiServer({ objects: parseClusterFile(readFileSync("examples/cluster.yaml", "utf8")) });
  servers.push(server);
  const requests = await requestPodCertificates(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
  const config = defaultSignerConfig();
  const caPool = parseCaPool(serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
  const cluster = clusterApiFor(server);
  const contexts = stepContexts({ config, cluster, keys: ephemeralStepKeys(), caPool, log: silentLogger, lookupCacheSeconds: 0 });
  const functions = await loadFunctions();
  const run = (step: StepName, event: PodcertEvent) => dispatch(functions[step], contexts[step], event);
  const pcrFor = (pod: string) => {
    const r = requests.find((x) => x.pod.name === pod);
    if (!r) throw new Error(`no PCR for ${pod}`);
    return r.pcr;
  };
  const stored = (pcr: PodCertificateRequest) => server.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name) as unknown as PodCertificateRequest;
  /** Every status write that set a certificate, per PCR uid. */
  const chainsWritten = new Map<string, string[]>();
  server.store.subscribe((e) => {
    const chain = (e.object.status as { certificateChain?: string } | undefined)?.certificateChain;
    const before = (e.previous?.status as { certificateChain?: string } | undefined)?.certificateChain;
    if (e.resource.kind === "PodCertificateRequest" && chain !== undefined && chain !== before) {
      const uid = e.object.metadata.uid ?? "";
      chainsWritten.set(uid, [...(chainsWritten.get(uid) ?? []), chain]);
    }
  });
  /**
   * Delivers an event as the broker does (routes of knative/, retrying 429/5xx up to `attempts`),
   * and each reply likewise; returns every answer of every attempt.
   */
  const deliver = async (event: PodcertEvent, attempts = 60, answers: { step: StepName; status: number; error?: unknown }[] = []) => {
    for (const route of routeEvent(loadTriggers(), BROKER_NAME, event)) {
      const step = stepOfService(route.subscriber)!;
      for (let attempt = 1; ; attempt++) {
        const r = await run(step, event);
        answers.push({ step, status: r.status, ...(r.error === undefined ? {} : { error: r.error }) });
        if (r.reply) await deliver(r.reply, attempts, answers);
        if (!retryable(r.status) || attempt >= attempts) break;
      }
    }
    return answers;
  };
  return { server, cluster, contexts, run, deliver, pcrFor, stored, chainsWritten, requests };
}

describe("the Kubernetes client's view of each fault", () => {
  it.each([
    { kind: "status500", plan: { status500: 1 }, overloaded: false },
    { kind: "status503", plan: { status503: 1 }, overloaded: false },
    { kind: "status429", plan: { status429: 1 }, overloaded: true },
    { kind: "reset", plan: { reset: 1 }, overloaded: false },
    { kind: "slow (504 from the server)", plan: { slow: 1, slowMs: 50 }, overloaded: false },
  ])("$kind is a TransientError (overloaded: $overloaded)", async ({ plan, overloaded }) => {
    const server = await startApiServer({ objects: parseClusterFile(readFileSync("examples/cluster.yaml", "utf8")), faults: { plan } });
    servers.push(server);
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
    const err = await api.readNamespace("default").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).overloaded).toBe(overloaded);
  });

  it("a held answer past the client's own timeout is a TransientError", async () => {
    const server = await startApiServer({ faults: { plan: { slow: 1, slowMs: 60_000 } } });
    servers.push(server);
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), undefined, { timeoutMs: 200 });
    const err = await api.readNamespace("default").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect(String((err as Error).message)).toMatch(/timeout/i);
  });

  it("conflict on a status write is a ConflictError", async () => {
    const t = await setup();
    const pcr = await t.cluster.readPcr(t.pcrFor("atenet-router").metadata.namespace, t.pcrFor("atenet-router").metadata.name);
    t.server.setFaults({ conflict: 1 });
    await expect(t.cluster.replacePcrStatus(pcr!, { conditions: [] })).rejects.toBeInstanceOf(ConflictError);
  });
});

describe("the steps under request faults", () => {
  it.each(REQUEST_FAULT_CASES)("$kind: every step answers $status (retried by the broker) and writes nothing; then it issues", async ({ plan, status }) => {
    const t = await setup();
    // Its pod expects a Service, so derive-sans reads the API too.
    const pcr = t.pcrFor("ate-apiserver");
    const validated = await t.run("validate", apiServerAddEvent(pcr));
    expect(validated.reply?.type, String(validated.error)).toBe(EVENT_TYPES.validated);
    const derived = await t.run("derive-sans", validated.reply!);
    expect(derived.reply?.type, String(derived.error)).toBe(EVENT_TYPES.sansDerived);
    const before = t.stored(pcr);

    t.server.setFaults(plan);
    for (const [step, event] of [["validate", apiServerAddEvent(pcr)], ["derive-sans", validated.reply!], ["sign", derived.reply!]] as const) {
      const r = await t.run(step, event);
      expect({ step, status: r.status }).toEqual({ step, status });
      expect(r.error).toBeInstanceOf(TransientError);
      expect(r.reply).toBeUndefined();
    }
    expect(t.stored(pcr)).toEqual(before);
    expect(t.server.faultCounts().total()).toBeGreaterThanOrEqual(3);

    t.server.setFaults(undefined);
    expect((await t.run("sign", derived.reply!)).status).toBe(200);
    expect(terminalCondition(t.stored(pcr))?.type).toBe("Issued");
  });

  it("conflict on sign's status write: retryable, nothing written, then exactly one certificate", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const validated = await t.run("validate", apiServerAddEvent(pcr));
    const derived = await t.run("derive-sans", validated.reply!);
    expect(derived.reply?.type).toBe(EVENT_TYPES.sansDerived);

    t.server.setFaults({ conflict: 1 });
    const r = await t.run("sign", derived.reply!);
    expect(r.status).toBe(503);
    expect(r.error).toBeInstanceOf(TransientError);
    // sign writes on the resourceVersion validate attested: after that conflict it reads the PCR
    // back, finds it the attested request still pending, and writes once more with the fresh
    // resourceVersion, which conflicts too (every write does here); then it gives up (retried).
    expect(t.server.faultCounts().get("conflict")).toBe(2);
    const afterConflict = t.stored(pcr);
    expect(afterConflict.metadata.annotations?.[CONCURRENT_WRITER_ANNOTATION]).toBe("2");
    expect(terminalCondition(afterConflict)).toBeUndefined();
    expect(afterConflict.status?.certificateChain).toBeUndefined();

    t.server.setFaults(undefined);
    expect((await t.run("sign", derived.reply!)).status).toBe(200);
    // A redelivery after the issue (the broker's or the update event's) changes nothing.
    expect((await t.run("sign", derived.reply!)).status).toBe(204);
    expect(terminalCondition(t.stored(pcr))?.type).toBe("Issued");
    expect(t.chainsWritten.get(pcr.metadata.uid!)).toHaveLength(1);
  });

  it("a seeded mix of every request fault ends as a run without faults: same outcomes, one certificate each, only retryable failures", async () => {
    const clean = await setup();
    for (const { pcr } of clean.requests) await clean.deliver(apiServerAddEvent(pcr));
    const keyOf = (pcr: PodCertificateRequest) => `${pcr.spec.podName}/${pcr.spec.signerName}`;
    const expected = new Map(clean.requests.map(({ pcr }) => [keyOf(pcr), terminalCondition(clean.stored(pcr))?.type]));
    expect([...expected.values()]).not.toContain(undefined);

    const t = await setup();
    t.server.setFaults({ status500: 0.04, status503: 0.04, status429: 0.04, reset: 0.04, slow: 0.02, slowMs: 20, conflict: 0.3 }, { seed: 11 });
    const answers: { step: StepName; status: number; error?: unknown }[] = [];
    for (const { pcr } of t.requests) await t.deliver(apiServerAddEvent(pcr), 60, answers);
    await Promise.all(Object.values(t.contexts).map((c) => c.events?.flush(10_000)));
    t.server.setFaults(undefined);

    for (const a of answers.filter((x) => x.status >= 300)) {
      expect({ step: a.step, status: a.status }).toEqual({ step: a.step, status: a.status === 429 ? 429 : 503 });
      expect(a.error).toBeInstanceOf(TransientError);
    }
    for (const { pcr } of t.requests) {
      expect({ pod: pcr.spec.podName, outcome: terminalCondition(t.stored(pcr))?.type }).toEqual({ pod: pcr.spec.podName, outcome: expected.get(keyOf(pcr)) });
      expect((t.chainsWritten.get(pcr.metadata.uid!) ?? []).length).toBeLessThanOrEqual(1);
    }
    const counts = t.server.faultCounts();
    for (const kind of API_REQUEST_FAULTS) expect({ kind, hit: counts.get(kind) > 0 }).toEqual({ kind, hit: true });
  }, 120_000);
});

describe("the emulated ApiServerSource", () => {
  const pcrObject = (stored: PodCertificateRequest, name: string) => ({
    apiVersion: "certificates.k8s.io/v1beta1",
    kind: "PodCertificateRequest",
    metadata: { name, namespace: stored.metadata.namespace },
    spec: stored.spec,
  });

  /** The source on `server`, collecting the names of added PCRs. */
  async function source(server: EmbeddedApiServer) {
    const added: string[] = [];
    const s = await startApiServerSource(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), (e) => {
      if (e.type === EVENT_TYPES.apiServerAdd) added.push((e.data as PodCertificateRequest).metadata.name);
      // The version named, as the manifest does: no discovery requests, so a seed's draws fall on the list and the watch.
    }, { retryMs: 20, apiVersion: controlPlaneApis(server.kubernetesVersion).podCertificateRequests[0]! });
    sources.push(s);
    return { added, s };
  }

  it("a watch that fails when it starts is retried from the list's resourceVersion: nothing created meanwhile is lost", async () => {
    const t = await setup();
    const template = t.stored(t.pcrFor("atenet-router"));
    // A seed whose first draw spares the list and whose second fails the watch with a 503.
    const plan: ApiFaultPlan = { status503: 0.5 };
    const seed = [...Array(1000).keys()].find((s) => {
      const r = seededRandom(s);
      return drawFault(r, plan, API_REQUEST_FAULTS) === undefined && drawFault(r, plan, API_REQUEST_FAULTS) === "status503" && drawFault(r, plan, API_REQUEST_FAULTS) === undefined;
    })!;
    t.server.setFaults(plan, { seed });
    const { added } = await source(t.server);
    t.server.store.create(pcrObject(template, "made-after-start"));
    await expect.poll(() => added, { timeout: 20_000 }).toEqual(["made-after-start"]);
    expect(t.server.faultCounts().get("status503")).toBeGreaterThanOrEqual(1);
    expect(t.server.servedRequests().find((r) => r.url.includes("watch=true"))).toMatchObject({ status: 503, fault: "status503" });
  });

  it("watchCloseEarly and failed reconnects: every later change still arrives, in order", async () => {
    const t = await setup();
    const template = t.stored(t.pcrFor("atenet-router"));
    const { added } = await source(t.server);
    t.server.setFaults({ watchCloseEarly: 0.5, status503: 0.2, status429: 0.1, reset: 0.1 }, { seed: 5 });
    const names = Array.from({ length: 12 }, (_, i) => `pcr-${i}`);
    for (const name of names) t.server.store.create(pcrObject(template, name));
    await expect.poll(() => added, { timeout: 30_000 }).toEqual(names);
    expect(t.server.faultCounts().get("watchCloseEarly")).toBeGreaterThan(0);
  });

  it("watchSkip loses the skipped events only: the source keeps watching and delivers later ones", async () => {
    const t = await setup();
    const template = t.stored(t.pcrFor("atenet-router"));
    const { added } = await source(t.server);
    t.server.setFaults({ watchSkip: 1 });
    t.server.store.create(pcrObject(template, "skipped"));
    t.server.setFaults(undefined);
    t.server.store.create(pcrObject(template, "after"));
    await expect.poll(() => added, { timeout: 20_000 }).toEqual(["after"]);
    expect(t.server.faultCounts().get("watchSkip")).toBe(1);
  });
});
