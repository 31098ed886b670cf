// The resync sender (dist/resync.mjs) over HTTP against the embedded API server with knative/'s
// RBAC enforced, posting to a sink started here as its K_SINK: it re-announces the pending PCRs
// past the grace period, oldest first and at most N, lists them page by page, leaves fresh and
// terminal ones alone, and answers 503 when a post fails. Then the rescue: a PCR whose live events
// were all lost is Issued once resync's event goes through validate → derive-sans → sign.
import { fixture, KUBELET, PCR_API_PATH } from "../helpers/kubernetes.js";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { describeRefusal } from "../../local-cluster/apiserver/server.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { loadFunctions } from "../../local-cluster/functions.js";
import { loadKnativeIdentities, userOfService } from "../../local-cluster/identities.js";
import { buildPodCertificateRequest } from "../../local-cluster/kubelet/request.js";
import { deliver, type InProcessPipeline } from "../../local-cluster/pipeline.js";
import { BROKER_NAME, loadTriggers } from "../../local-cluster/router.js";
import { parseCaPool } from "../../shared/ca/pool.js";
import { eventFromHttp } from "../../shared/events/codec.js";
import { apiServerSourceEvent, readPcrTrigger } from "../../shared/events/pcr-event.js";
import { resyncCandidate } from "../../shared/policy/resync.js";
import { resyncEvent } from "../../functions/resync/handler.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import type { ClusterApi } from "../../shared/kube/cluster.js";
import { terminalCondition, type Node, type Pod, type PodCertificateRequest, type ServiceAccount } from "../../shared/pcr/model.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import { silentLogger } from "../../shared/runtime/log.js";
import { EVENT_TYPES, serviceName, STEPS, type StepName } from "../../shared/steps.js";
import { postEvent, startBundleEnv, type BundleEnv } from "../helpers/bundles.js";

const A = "atesystem.podcert.ate.dev/identity";
const W = "workerpool.podcert.ate.dev/identity";
const ids = loadKnativeIdentities("knative");
const userOf = (fn: StepName) => userOfService(ids, serviceName(fn)).name;

/** An HTTP sink standing in for the Broker's ingress: keeps every event; `failing` answers 500. */
interface Sink {
  url: string;
  events: { event: PodcertEvent; contentType: string | undefined }[];
  failing: boolean;
  close(): Promise<void>;
}
async function startSink(): Promise<Sink> {
  const sink: Sink = { url: "", events: [], failing: false, close: async () => {} };
  const server: Server = createServer((req: IncomingMessage, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (sink.failing) return void res.writeHead(500).end();
      sink.events.push({ event: eventFromHttp(req.headers, body), contentType: req.headers["content-type"] });
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  sink.close = () => new Promise<void>((r) => server.close(() => r()));
  return sink;
}

const ping = (): PodcertEvent => ({
  specversion: "1.0",
  id: `ping-${Math.random()}`,
  type: EVENT_TYPES.ping,
  source: "/apis/v1/namespaces/podcert/pingsources/podcert-resync",
  datacontenttype: "application/json",
  data: {},
  extensions: {},
});

/** No PCR from the fixture: each test makes its own, with the ages it needs. */
const objectsWithoutPcrs = () => parseClusterFile(readFileSync(fixture("clusters/issued.yaml"), "utf8")).filter((o) => (o as { kind?: string }).kind !== "PodCertificateRequest");

/**
 * A PCR as kubelet makes it for a pod of the fixture, created `ageSeconds` ago (seeded, so the
 * creationTimestamp is kept), optionally with a status, and with no ApiServerSource event: its
 * live events are "lost".
 */
function seedPcr(env: BundleEnv, o: { name: string; signerName: string; ageSeconds: number; status?: PodCertificateRequest["status"] }): PodCertificateRequest {
  const [namespace, podName] = o.signerName === A ? ["ate-system", "api-ecdsap256"] : ["workers", "worker-ecdsap256"];
  const pod = env.api.store.get("pods", namespace, podName) as unknown as Pod;
  const node = env.api.store.get("nodes", undefined, pod.spec.nodeName!) as unknown as Node;
  const sa = env.api.store.get("serviceaccounts", namespace, pod.spec.serviceAccountName ?? "default") as unknown as ServiceAccount;
  // As the control plane's own kubelets write it (seeded in the stored form, v1beta1).
  const { pcr } = buildPodCertificateRequest(pod, { signerName: o.signerName, keyType: "ECDSAP256", publicKeyForm: KUBELET.form }, { nodeUID: node.metadata.uid!, serviceAccountUID: sa.metadata.uid!, name: o.name });
  const created = new Date(Date.now() - o.ageSeconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  const seeded = { ...pcr, metadata: { ...pcr.metadata, creationTimestamp: created }, ...(o.status === undefined ? {} : { status: o.status }) };
  return env.api.store.create(seeded, { seed: true }) as unknown as PodCertificateRequest;
}

const resyncEventFor = (pcr: PodCertificateRequest): PodcertEvent => resyncEvent(resyncCandidate(pcr)!, new Date());

const condition = (type: string) => ({ type, status: "True", reason: type === "Denied" ? "UnsupportedKeyType" : type, message: "seeded", lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z") });

describe("resync over HTTP, as its ServiceAccount, posting to K_SINK", () => {
  let env: BundleEnv;
  let sink: Sink;
  beforeAll(async () => {
    env = await startBundleEnv({ objects: objectsWithoutPcrs() });
    sink = await startSink();
    // Pending and old, both signers (ages in seconds): the ones a run re-announces.
    for (const [name, signerName, ageSeconds] of [
      ["old-a-600", A, 600],
      ["old-w-500", W, 500],
      ["old-a-400", A, 400],
      ["old-w-300", W, 300],
      ["old-a-200", A, 200],
      ["old-w-100", W, 100],
      ["old-a-60", A, 60],
    ] as const) {
      seedPcr(env, { name, signerName, ageSeconds });
    }
    // Fresh: left to their live events.
    seedPcr(env, { name: "fresh-a", signerName: A, ageSeconds: 2 });
    seedPcr(env, { name: "fresh-w", signerName: W, ageSeconds: 5 });
    // Terminal, however old.
    seedPcr(env, { name: "issued-old", signerName: A, ageSeconds: 700, status: { conditions: [condition("Issued")] } as PodCertificateRequest["status"] });
    seedPcr(env, { name: "denied-old", signerName: W, ageSeconds: 700, status: { conditions: [condition("Denied")] } as PodCertificateRequest["status"] });
  }, 60_000);
  afterAll(async () => {
    await sink?.close();
    await env?.stop();
  });

  it("posts the oldest pending PCRs past the grace period, at most N, listing page by page; fresh and terminal ones not", async () => {
    const fn = await env.serve("resync", {
      K_SINK: sink.url,
      PODCERT_RESYNC_MAX_EVENTS: "5",
      PODCERT_RESYNC_PAGE_SIZE: "2",
      // One post at a time, so the order of arrival is the order chosen.
      PODCERT_RESYNC_CONCURRENCY: "1",
    });
    sink.events.length = 0;
    const before = env.api.servedRequests().length;
    const answer = await postEvent(fn.url, ping());
    expect(answer.status, fn.stderr()).toBe(204);

    expect(sink.events.map((e) => e.event.data as { metadata: { name: string } }).map((d) => d.metadata.name)).toEqual(["old-a-600", "old-w-500", "old-a-400", "old-w-300", "old-a-200"]);
    for (const { event, contentType } of sink.events) {
      // Binary mode: the attributes in ce- headers, the data as the body.
      expect(contentType).toMatch(/^application\/json/);
      expect(event.type).toBe(EVENT_TYPES.resync);
      expect(event.source).toBe("/podcert/resync");
      // A reference in the shape validate reads, naming the stored PCR exactly.
      const t = readPcrTrigger(event);
      const stored = env.api.store.get("podcertificaterequests", t.ref.namespace, t.ref.name) as unknown as PodCertificateRequest;
      expect(t.ref.uid).toBe(stored.metadata.uid);
      expect(t.signerName).toBe(stored.spec.signerName);
      expect(t.terminal).toBe(false);
      expect(Object.keys(event.data as object).sort()).toEqual(["kind", "metadata", "spec"]);
    }

    // Paged: each signer's PCRs in pages of 2 (A: 6 stored, W: 5), by fieldSelector, as resync's ServiceAccount.
    // Its one call besides GET /api and discovery (the readiness check at start, which also opens the connection).
    const lists = env.api.servedRequests().slice(before).filter((r) => r.user === userOf("resync") && r.url !== "/api");
    expect(lists.every((r) => r.method === "GET" && r.url.startsWith(`${PCR_API_PATH}/podcertificaterequests?`) && r.status === 200)).toBe(true);
    const signersListed = lists.map((r) => new URL(r.url, "http://x").searchParams.get("fieldSelector"));
    expect(signersListed.filter((s) => s === `spec.signerName=${A}`)).toHaveLength(3);
    expect(signersListed.filter((s) => s === `spec.signerName=${W}`)).toHaveLength(3);
    expect(lists.every((r) => new URL(r.url, "http://x").searchParams.get("limit") === "2")).toBe(true);
    expect(lists.filter((r) => new URL(r.url, "http://x").searchParams.has("continue"))).toHaveLength(4);
    expect(env.api.refusedRequests().map(describeRefusal)).toEqual([]);
    const run = fn.stderr().split("\n").filter((l) => l.includes('"resync run"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(run).toEqual([expect.objectContaining({ listed: 11, pages: 6, pending: 7, posted: 5, failed: 0, deferred: 2 })]);
    // podcert_pending_requests: every pending one (the fresh too), by signer and age; terminal ones not.
    const metrics = await (await fetch(`${fn.url}/metrics`)).text();
    const pending = Object.fromEntries(
      [...metrics.matchAll(/^podcert_pending_requests\{signer="([^"]+)",age="([^"]+)",function="resync"\} (\d+)$/gm)].map((m) => [`${m[1] === A ? "A" : "W"} ${m[2]}`, Number(m[3])]),
    );
    expect(pending).toEqual({ "A 0-1m": 1, "A 1-5m": 2, "A 5-15m": 2, "A 15m+": 0, "W 0-1m": 1, "W 1-5m": 1, "W 5-15m": 2, "W 15m+": 0 });
    expect(metrics).toMatch(/^podcert_pending_requests_listed_timestamp_seconds\{function="resync"\} \d/m);

    // A shorter grace period takes the fresh ones too; a larger bound, every pending one.
    const all = await env.serve("resync", { K_SINK: sink.url, PODCERT_RESYNC_GRACE_SECONDS: "0", PODCERT_RESYNC_MAX_EVENTS: "100" });
    sink.events.length = 0;
    expect((await postEvent(all.url, ping())).status).toBe(204);
    expect(sink.events.map((e) => (e.event.data as { metadata: { name: string } }).metadata.name).sort()).toEqual(
      ["fresh-a", "fresh-w", "old-a-200", "old-a-400", "old-a-600", "old-a-60", "old-w-100", "old-w-300", "old-w-500"].sort(),
    );
  });

  it("answers 503 when the sink refuses an event (the Broker retries the tick)", async () => {
    const fn = await env.serve("resync", { K_SINK: sink.url, PODCERT_RESYNC_MAX_EVENTS: "3" });
    sink.failing = true;
    try {
      const answer = await postEvent(fn.url, ping());
      expect(answer.status).toBe(503);
      expect(answer.text).toContain("3 of 3 events could not be posted");
      expect(fn.stderr()).toContain("resync: event not posted");
    } finally {
      sink.failing = false;
    }
    // The next tick retries from the cluster's state.
    sink.events.length = 0;
    expect((await postEvent(fn.url, ping())).status).toBe(204);
    expect(sink.events).toHaveLength(3);
  });

  it("does not start without K_SINK (no SinkBinding), naming it", async () => {
    await expect(env.serve("resync", { K_SINK: "" })).rejects.toThrow(/K_SINK is required/);
    await expect(env.serve("resync", { K_SINK: "ftp://broker" })).rejects.toThrow(/K_SINK must be an http\(s\) URL/);
  });
});

describe("rescue: a PCR whose live events were all lost", () => {
  let env: BundleEnv;
  let sink: Sink;
  beforeAll(async () => {
    env = await startBundleEnv({ objects: objectsWithoutPcrs() });
    sink = await startSink();
  }, 60_000);
  afterAll(async () => {
    await sink?.close();
    await env?.stop();
  });

  it("is Issued after a resync tick, through validate → derive-sans → sign routed by knative/triggers.yaml", async () => {
    // Created a minute ago, and no ApiServerSource event ever sent for it.
    const lost = seedPcr(env, { name: "lost", signerName: A, ageSeconds: 60 });
    expect(terminalCondition(lost)).toBeUndefined();

    const fn = await env.serve("resync", { K_SINK: sink.url });
    expect((await postEvent(fn.url, ping())).status, fn.stderr()).toBe(204);
    expect(sink.events).toHaveLength(1);

    // What the Broker does with it: the Triggers route it to validate, and each reply on.
    const config = defaultSignerConfig();
    const clusters = Object.fromEntries(STEPS.map((s) => [s, clusterApiFor(env.api, userOf(s))])) as Record<StepName, ClusterApi>;
    const pipeline: InProcessPipeline = {
      routes: loadTriggers(),
      broker: BROKER_NAME,
      functions: await loadFunctions(),
      contexts: stepContexts({ config, cluster: clusters, keys: ephemeralStepKeys(), caPool: parseCaPool(readFileSync(env.caPoolPath, "utf8")), log: silentLogger, events: false }),
      maxAttempts: 2,
      backoffMs: 5,
    };
    const hops = await deliver(pipeline, sink.events[0]!.event);
    expect(hops.map((h) => `${h.step} ${h.status}`)).toEqual(["validate 200", "derive-sans 200", "sign 200"]);
    const after = env.api.store.get("podcertificaterequests", "ate-system", "lost") as unknown as PodCertificateRequest;
    expect(terminalCondition(after)?.type).toBe("Issued");
    expect(after.status?.certificateChain).toMatch(/BEGIN CERTIFICATE/);

    // Issued now: the next tick has nothing to post for it.
    sink.events.length = 0;
    expect((await postEvent(fn.url, ping())).status).toBe(204);
    expect(sink.events).toEqual([]);
    expect(env.api.refusedRequests().map(describeRefusal)).toEqual([]);
  });

  it("sign's own status write, coming back as an update event, costs validate at most one read and no write", async () => {
    const issued = env.api.store.get("podcertificaterequests", "ate-system", "lost") as unknown as PodCertificateRequest;
    expect(terminalCondition(issued)?.type).toBe("Issued");
    const validate = await env.serve("validate");
    // Counted at the API server, by validate's ServiceAccount (its readiness check, GET /api at start, aside).
    const callsDuring = async (event: PodcertEvent) => {
      const before = env.api.servedRequests().length;
      const answer = await postEvent(validate.url, event);
      expect(answer.status, validate.stderr()).toBe(204);
      return env.api.servedRequests().slice(before).filter((r) => r.user === userOf("validate") && r.url !== "/api").map((r) => `${r.method} ${r.url}`);
    };
    // The echo as the ApiServerSource sends it: its copy is already terminal, so nothing is read.
    expect(await callsDuring(apiServerSourceEvent("update", issued))).toEqual([]);
    // A stale copy (an update from before the write, delivered late): one read of the PCR, no write.
    const { status: _status, ...stale } = issued;
    expect(await callsDuring(apiServerSourceEvent("update", stale))).toEqual([`GET ${PCR_API_PATH}/namespaces/ate-system/podcertificaterequests/lost`]);
    // And a resync event for it (a reference, never terminal on its face): the same single read.
    expect(await callsDuring(resyncEventFor(issued))).toEqual([`GET ${PCR_API_PATH}/namespaces/ate-system/podcertificaterequests/lost`]);
    expect(env.api.store.get("podcertificaterequests", "ate-system", "lost")?.metadata.resourceVersion).toBe(issued.metadata.resourceVersion);
  });
});
