// The step handlers in-process against the embedded API server, through client-node: the paths
// the fixture runs do not reach (idempotency, races, expiry, CA end of life, configuration data).
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { startApiServer, type EmbeddedApiServer } from "../../local-cluster/apiserver/server.js";
import { parseCaPool, serializeCaPool, type CaPool } from "../../shared/ca/pool.js";
import { createCa, createCaPool } from "../../cli/ca-create.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { loadFunctions } from "../../local-cluster/functions.js";
import { issueAll } from "../../cli/issue.js";
import { requestPodCertificates } from "../../local-cluster/kubelet/emulator.js";
import { handOn } from "../../shared/runtime/steps.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import { type PodcertEvent } from "../../shared/events/types.js";
import { EVENT_TYPES, STEPS, type KeyedStep, type StepName } from "../../shared/steps.js";
import type { Decision, StepKeys } from "../../shared/events/attestation.js";
import { KubeClusterApi, loadKubeConfig } from "../../shared/kube/client-node.js";
import type { ServicesWatchApi } from "../../shared/kube/cluster.js";
import { ServicesIndex } from "../../shared/kube/services-index.js";
import { MAX_ATTESTED_POD_LABELS } from "../../shared/limits.js";
import { controlPlaneApis } from "../../local-cluster/kubernetes-versions.js";
import { pcrRef, terminalCondition, type PcrSpec, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { parseSignerConfig, type SignerConfig } from "../../shared/profiles/config.js";
import { ATESYSTEM_SIGNER, defaultSignerConfig, WORKERPOOL_SIGNER } from "../../shared/profiles/defaults.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { dispatch } from "../../shared/runtime/http.js";
import { silentLogger } from "../../shared/runtime/log.js";
import { apiServerAddEvent } from "../../shared/events/pcr-event.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";

const servers: EmbeddedApiServer[] = [];
/** The claims of an attestation (a General JWS as JSON text), unverified. */
const decodePayload = (token: string) => JSON.parse(Buffer.from((JSON.parse(token) as { payload: string }).payload, "base64url").toString("utf8")) as Record<string, unknown>;

const indexes: ServicesIndex[] = [];
afterEach(async () => {
  for (const i of indexes.splice(0)) i.close();
  for (const s of servers.splice(0)) await s.stop();
});

async function setup(o: { clusterYaml?: string; config?: SignerConfig; caPool?: CaPool; now?: () => Date; servicesIndex?: boolean; perStepClients?: boolean } = {}) {
  const server = await startApiServer({ objects: parseClusterFile(o.clusterYaml ?? readFileSync("examples/cluster.yaml", "utf8")) });
  servers.push(server);
  const requests = await requestPodCertificates(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
  const config = o.config ?? defaultSignerConfig();
  const caPool = o.caPool ?? parseCaPool(serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
  const cluster = clusterApiFor(server);
  const keys: Record<KeyedStep, StepKeys> = ephemeralStepKeys();
  const servicesIndexes = (api: ServicesWatchApi) => {
    const index = new ServicesIndex(api);
    indexes.push(index);
    return index;
  };
  // With perStepClients, each step has its own client (as one process per step), and the API
  // calls each makes are recorded ("operation:outcome"), as bench/pipeline.ts counts them.
  const calls = Object.fromEntries(STEPS.map((step) => [step, [] as string[]])) as Record<StepName, string[]>;
  const perStep = Object.fromEntries(STEPS.map((step) => [step, new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), (c) => void calls[step].push(`${c.operation}:${c.outcome}`))])) as Record<StepName, KubeClusterApi>;
  const contexts = stepContexts({
    config,
    cluster: o.perStepClients === true ? perStep : cluster,
    keys,
    caPool,
    log: silentLogger,
    ...(o.now ? { now: o.now } : {}),
    ...(o.servicesIndex ? { servicesIndexes } : {}),
  });
  const pcrFor = (pod: string, signer?: string) => {
    const r = requests.find((x) => x.pod.name === pod && (signer === undefined || x.pcr.spec.signerName === signer));
    if (!r) throw new Error(`no PCR for ${pod}`);
    return r.pcr;
  };
  /** Runs one step; returns its outcome. */
  const run = async (step: StepName, event: PodcertEvent) => dispatch((await loadFunctions())[step], contexts[step], event);
  /** validate then derive-sans: the sans.derived event for a PCR. */
  const derivedFor = async (pcr: PodCertificateRequest) => {
    const v = await run("validate", apiServerAddEvent(pcr));
    expect(v.reply?.type, String(v.error)).toBe(EVENT_TYPES.validated);
    const d = await run("derive-sans", v.reply!);
    expect(d.reply?.type, String(d.error)).toBe(EVENT_TYPES.sansDerived);
    return d.reply!;
  };
  const read = async (pcr: PodCertificateRequest) => (await cluster.readPcr(pcr.metadata.namespace, pcr.metadata.name))!;
  /**
   * Deletes a PCR and creates it again with the same uid (the embedded store keeps a given uid;
   * PCR spec is immutable, so this is the only way to change it): the attestations still name
   * this PCR, but the request as stored is another. Returns it as the handlers will read it.
   */
  const recreateSameUid = async (pcr: PodCertificateRequest, spec: Partial<PcrSpec>) => {
    const stored = server.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name)!;
    server.store.delete("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name);
    server.store.create({ ...stored, spec: { ...(stored.spec as PcrSpec), ...spec } });
    const again = await read(pcr);
    expect(again.metadata.uid).toBe(pcr.metadata.uid);
    return again;
  };
  /** The calls a step made since the last look: hot-path ones only (cached lookups, Events and discovery aside), sorted. */
  const hotCalls = (step: StepName) =>
    calls[step].splice(0).filter((c) => !/^(get (serviceaccount|node|namespace)|create event|discover )/.test(c)).sort();
  return { server, cluster, contexts, keys, config, run, derivedFor, pcrFor, read, recreateSameUid, hotCalls };
}

describe("sign", () => {
  it("issues once when the same event is delivered twice at the same time", async () => {
    const t = await setup();
    const derived = await t.derivedFor(t.pcrFor("atenet-router"));
    const [a, b] = await Promise.all([t.run("sign", derived), t.run("sign", derived)]);
    expect([a.status, b.status].sort()).toEqual([200, 204]);
    const pcr = await t.read(t.pcrFor("atenet-router"));
    expect(terminalCondition(pcr)?.type).toBe("Issued");
    // One Kubernetes Event on the PCR, for kubectl describe (recorded in the background).
    await t.contexts.sign.events?.flush();
    const events = t.server.store.list("events", { namespace: pcr.metadata.namespace }).items as unknown as { reason: string; involvedObject: { uid: string } }[];
    expect(events.filter((e) => e.involvedObject.uid === pcr.metadata.uid).map((e) => e.reason)).toEqual(["Issued"]);
    // A third, later delivery is a no-op too.
    expect((await t.run("sign", derived)).status).toBe(204);
    expect((await t.read(pcr)).status).toEqual(pcr.status);
  });

  it("does nothing for a PCR that was deleted or re-created under the same name", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(pcr);
    t.server.store.delete("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name);
    expect((await t.run("sign", derived)).status).toBe(204);
  });

  it("refuses an attestation past its expiry (403), whatever the PCR", async () => {
    let now = new Date();
    const t = await setup({ now: () => now });
    const derived = await t.derivedFor(t.pcrFor("atenet-router"));
    now = new Date(now.getTime() + (t.config.attestationTTLSeconds + 60) * 1000);
    const r = await t.run("sign", derived);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(/expired/);
    expect(terminalCondition(await t.read(t.pcrFor("atenet-router")))).toBeUndefined();
  });

  it("refuses attestations for one PCR on an event about another (403), writing neither", async () => {
    const t = await setup();
    const router = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(router);
    // Point the event at the api server pod's PCR: the attestations still name the router's.
    const api = t.pcrFor("ate-apiserver");
    const moved = structuredClone(derived) as PodcertEvent & { data: { pcr: { name: string; uid: string } } };
    moved.data.pcr = pcrRef(api);
    const before = await t.read(api);
    const r = await t.run("sign", moved);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(new RegExp(`attestation from (validate|derive-sans) does not match the event: it is for PCR ate-system/${router.metadata.name} \\(uid ${router.metadata.uid}\\)`));
    expect(await t.read(api)).toEqual(before);
    expect(terminalCondition(await t.read(router))).toBeUndefined();
  });

  it("refuses when validate and derive-sans attested different keys (403), and writes nothing", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(pcr);
    // derive-sans' own key signs its decision again, bound to the api server pod's key: both
    // tokens verify and name this PCR, only the keys they bind differ.
    const attestations = (derived.data as { attestations: Record<string, string> }).attestations;
    const decision = decodePayload(attestations["derive-sans"]!).decision as Decision;
    const otherKey = requestKeyBinding(t.pcrFor("ate-apiserver").spec);
    expect(otherKey).not.toBe(requestKeyBinding(pcr.spec));
    const mixed = await handOn(t.contexts["derive-sans"], derived, {
      type: EVENT_TYPES.sansDerived,
      pcr: pcrRef(pcr),
      signerName: pcr.spec.signerName,
      spkiSha256: otherKey,
      decision,
      previous: { validate: attestations.validate! },
    });
    const before = await t.read(pcr);
    const r = await t.run("sign", mixed);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(/the validate and derive-sans attestations are bound to different keys/);
    expect(await t.read(pcr)).toEqual(before);
    expect(terminalCondition(await t.read(pcr))).toBeUndefined();
  });

  it.each([
    { case: "another key", change: (other: PodCertificateRequest): Partial<PcrSpec> => ({ pkixPublicKey: other.spec.pkixPublicKey, proofOfPossession: other.spec.proofOfPossession }) },
    { case: "another signer", change: (): Partial<PcrSpec> => ({ signerName: WORKERPOOL_SIGNER }) },
  ])("refuses attestations that do not match the PCR as stored ($case): 403, nothing written", async ({ change }) => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    expect(pcr.spec.signerName).toBe(ATESYSTEM_SIGNER);
    const derived = await t.derivedFor(pcr);
    // Same namespace, name and uid, so the attestations name it; but not the request they attested.
    const stored = await t.recreateSameUid(pcr, change(t.pcrFor("ate-apiserver")));
    const r = await t.run("sign", derived);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(new RegExp(`attestations do not match PCR ate-system/${pcr.metadata.name} as stored`));
    expect(await t.read(pcr)).toEqual(stored);
    expect(stored.status?.conditions ?? []).toEqual([]);
  });

  it("refuses a derive-sans attestation naming another identity than the stored request's (403), writing nothing", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(pcr);
    // A derive-sans gone bad: a genuine token (its own key, this PCR, this key) whose SAN list
    // names the API server's ServiceAccount instead of the router's.
    const attestations = (derived.data as { attestations: Record<string, string> }).attestations;
    const decision = decodePayload(attestations["derive-sans"]!).decision as Extract<Decision, { kind: "sans-derived" }>;
    const other = decision.uris[0]!.replace(/\/sa\/[^/]+$/, "/sa/ate-apiserver");
    expect(other).not.toBe(decision.uris[0]);
    const forged = await handOn(t.contexts["derive-sans"], derived, {
      type: EVENT_TYPES.sansDerived,
      pcr: pcrRef(pcr),
      signerName: pcr.spec.signerName,
      spkiSha256: requestKeyBinding(pcr.spec),
      decision: { ...decision, uris: [other] },
      previous: { validate: attestations.validate! },
    });
    const before = await t.read(pcr);
    const r = await t.run("sign", forged);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(/are not the request's identity spiffe:\/\/.*\/sa\/atenet-router/);
    expect(await t.read(pcr)).toEqual(before);
  });

  it("waits (503) rather than issue when the active CA cannot cover an hour", async () => {
    const config = defaultSignerConfig();
    const now = new Date();
    const doc = await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 1, now: new Date(now.getTime() - 86400_000 + 30 * 60_000) });
    const t = await setup({ caPool: parseCaPool(serializeCaPool(doc)) });
    const r = await t.run("sign", await t.derivedFor(t.pcrFor("atenet-router")));
    expect(r.status).toBe(503);
    expect(String(r.error)).toMatch(/CA/);
    expect(terminalCondition(await t.read(t.pcrFor("atenet-router")))).toBeUndefined();
  });

  it("waits (503) with a Warning NoUsableCA Event on the PCR while the signer has no active CA", async () => {
    const config = defaultSignerConfig();
    const doc = await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    // Prepared, not yet activated: published, signing nothing.
    for (const s of doc.signers) for (const c of s.cas) Object.assign(c, { state: "prepared", since: { prepared: new Date().toISOString() } });
    const t = await setup({ caPool: parseCaPool(serializeCaPool(doc)) });
    const pcr = t.pcrFor("atenet-router");
    const r = await t.run("sign", await t.derivedFor(pcr));
    expect(r.status).toBe(503);
    expect(terminalCondition(await t.read(pcr))).toBeUndefined();
    await t.contexts.sign.events?.flush();
    const events = t.server.store.list("events", { namespace: pcr.metadata.namespace }).items as unknown as { type: string; reason: string; message: string; involvedObject: { uid: string } }[];
    expect(events.filter((e) => e.involvedObject.uid === pcr.metadata.uid)).toMatchObject([
      { type: "Warning", reason: "NoUsableCA", message: expect.stringMatching(new RegExp(`^signer ${pcr.spec.signerName.replaceAll(".", "\\.")} has no active CA; activate its prepared CA .*stay pending`)) },
    ]);
  });

  it("never puts notAfter past the CA's own notAfter", async () => {
    const config = defaultSignerConfig();
    const now = new Date();
    const doc = await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 1, now: new Date(now.getTime() - 20 * 3600_000) });
    const pool = parseCaPool(serializeCaPool(doc));
    const t = await setup({ caPool: pool });
    expect((await t.run("sign", await t.derivedFor(t.pcrFor("atenet-router")))).status).toBe(200);
    const pcr = await t.read(t.pcrFor("atenet-router"));
    const caEnd = pool.signers.get(pcr.spec.signerName)![0]!.notAfter.getTime();
    expect(new Date(pcr.status!.notAfter!).getTime()).toBeLessThanOrEqual(caEnd);
    expect(new Date(pcr.status!.notAfter!).getTime() - new Date(pcr.status!.notBefore!).getTime()).toBeGreaterThanOrEqual(3600_000);
  });

  it("uses the newest CA when the pool holds two (rotation)", async () => {
    const signer = "atesystem.podcert.ate.dev/identity";
    const config = defaultSignerConfig();
    const base = await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    const newer = await createCa({ signerName: signer, keyAlgorithm: "ECDSAP384", validityDays: 60, now: new Date() });
    base.signers.find((s) => s.signerName === signer)!.cas.push(newer);
    const t = await setup({ caPool: parseCaPool(serializeCaPool(base)) });
    await t.run("sign", await t.derivedFor(t.pcrFor("atenet-router")));
    const chain = (await t.read(t.pcrFor("atenet-router"))).status!.certificateChain!;
    const { X509Certificate } = await import("node:crypto");
    expect(new X509Certificate(chain).verify(new X509Certificate(newer.certificate).publicKey)).toBe(true);
  });
});

describe("API calls per issued PCR (issue 14): validate reads, the others work from its attestation", () => {
  const attested = (event: PodcertEvent, step: "validate" | "derive-sans" | "sign") =>
    decodePayload((event.data as { attestations: Record<string, string> }).attestations[step]!).decision as Decision;
  /**
   * A PCR read: one GET, or two for a request a 1.35 kubelet made with a PKIX key on a control
   * plane serving v1 (node-1's, at 1.37): v1 shows it without a key, so it is read again through
   * v1beta1 (kube/api-versions.ts), and its status is written there, the version validate attests.
   */
  const pcrGets = async (t: Awaited<ReturnType<typeof setup>>, pcr: PodCertificateRequest) => {
    const legacy = (await t.read(pcr)).apiVersion !== `certificates.k8s.io/${controlPlaneApis(t.server.kubernetesVersion).podCertificateRequests[0]}`;
    return legacy ? ["get podcertificaterequest:ok", "get podcertificaterequest:ok"] : ["get podcertificaterequest:ok"];
  };
  /** Changes an object in the store (a new resourceVersion), as a controller or a user would. */
  const edit = (t: Awaited<ReturnType<typeof setup>>, resource: "pods" | "podcertificaterequests", namespace: string, name: string, change: (o: { metadata: { labels?: Record<string, string> } }) => void) => {
    const o = structuredClone(t.server.store.get(resource, namespace, name)!) as unknown as { metadata: { labels?: Record<string, string> } };
    change(o);
    t.server.store.replace(o);
  };

  it.each([
    { pod: "atenet-router", dnsNames: false, deriveSans: [] },
    { pod: "ate-apiserver", dnsNames: true, deriveSans: ["get service:ok"] },
  ])("$pod (DNS names: $dnsNames): validate reads the PCR and the pod, derive-sans only the Services, sign the pod and writes", async ({ pod, dnsNames, deriveSans }) => {
    const t = await setup({ perStepClients: true });
    const pcr = t.pcrFor(pod);
    const v = await t.run("validate", apiServerAddEvent(pcr));
    expect(t.hotCalls("validate")).toEqual(["get pod:ok", ...(await pcrGets(t, pcr))]);
    expect((attested(v.reply!, "validate") as { request: { apiVersion: string } }).request.apiVersion).toBe((await t.read(pcr)).apiVersion);
    const d = await t.run("derive-sans", v.reply!);
    expect(d.reply?.type, String(d.error)).toBe(EVENT_TYPES.sansDerived);
    expect(t.hotCalls("derive-sans")).toEqual(deriveSans);
    expect((attested(d.reply!, "derive-sans") as { dnsNames: string[] }).dnsNames.length > 0).toBe(dnsNames);
    const s = await t.run("sign", d.reply!);
    expect(s.status, String(s.error)).toBe(200);
    expect(t.hotCalls("sign")).toEqual(["get pod:ok", "update podcertificaterequests/status:ok"]);
    expect(terminalCondition(await t.read(pcr))?.type).toBe("Issued");
  });

  it("issues a PCR whose resourceVersion changed while it was pending: one re-read, compared with the attested request, and one more write", async () => {
    const t = await setup({ perStepClients: true });
    const pcr = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(pcr);
    edit(t, "podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name, (o) => (o.metadata.labels = { ...o.metadata.labels, touched: "yes" }));
    t.hotCalls("sign");
    const s = await t.run("sign", derived);
    expect(s.status, String(s.error)).toBe(200);
    expect(t.hotCalls("sign")).toEqual(["get pod:ok", ...(await pcrGets(t, pcr)), "update podcertificaterequests/status:conflict", "update podcertificaterequests/status:ok"]);
    const stored = await t.read(pcr);
    expect(terminalCondition(stored)?.type).toBe("Issued");
    expect(stored.metadata.labels).toMatchObject({ touched: "yes" });
  });

  it("a duplicate delivery after Issued is a skip (204): the conflict, one re-read, nothing written", async () => {
    const t = await setup({ perStepClients: true });
    const pcr = t.pcrFor("atenet-router");
    const derived = await t.derivedFor(pcr);
    expect((await t.run("sign", derived)).status).toBe(200);
    const issued = await t.read(pcr);
    t.hotCalls("sign");
    expect((await t.run("sign", derived)).status).toBe(204);
    expect(t.hotCalls("sign")).toEqual(["get pod:ok", ...(await pcrGets(t, pcr)), "update podcertificaterequests/status:conflict"]);
    expect(await t.read(pcr)).toEqual(issued);
  });

  it("denies PodMismatch when the pod's labels changed between validate and sign (its DNS names came from them)", async () => {
    const t = await setup();
    const pcr = t.pcrFor("ate-apiserver");
    const derived = await t.derivedFor(pcr);
    expect((attested(derived, "validate") as { pod?: { labels: Record<string, string> } }).pod?.labels).toEqual({ app: "ate-apiserver" });
    edit(t, "pods", pcr.metadata.namespace, pcr.spec.podName, (o) => (o.metadata.labels = { ...o.metadata.labels, tier: "edge" }));
    const s = await t.run("sign", derived);
    expect(s.reply?.type, String(s.error)).toBe(EVENT_TYPES.denied);
    expect(attested(s.reply!, "sign")).toMatchObject({
      kind: "denied",
      reason: "PodMismatch",
      message: expect.stringMatching(/^pod ate-apiserver changed after its DNS names were derived: its labels changed \(tier\)/),
    });
    expect(terminalCondition(await t.read(pcr))).toBeUndefined();
  });

  it("a pod with more labels than validate attests: derive-sans reads the pod itself (one call more), and the request is issued", async () => {
    const t = await setup({ perStepClients: true });
    const pcr = t.pcrFor("ate-apiserver");
    edit(t, "pods", pcr.metadata.namespace, pcr.spec.podName, (o) => {
      for (let i = 0; i < MAX_ATTESTED_POD_LABELS; i++) o.metadata.labels = { ...o.metadata.labels, [`extra-${i}`]: "x" };
    });
    const v = await t.run("validate", apiServerAddEvent(pcr));
    expect(v.reply?.type, String(v.error)).toBe(EVENT_TYPES.validated);
    expect(attested(v.reply!, "validate")).not.toHaveProperty("pod");
    t.hotCalls("derive-sans");
    const d = await t.run("derive-sans", v.reply!);
    expect(d.reply?.type, String(d.error)).toBe(EVENT_TYPES.sansDerived);
    expect(t.hotCalls("derive-sans")).toEqual(["get pod:ok", "get service:ok"]);
    expect((attested(d.reply!, "derive-sans") as { dnsNames: string[] }).dnsNames).toContain("api.ate-system.svc");
    expect((await t.run("sign", d.reply!)).status).toBe(200);
    expect(terminalCondition(await t.read(pcr))?.type).toBe("Issued");
  });
});

describe("deny", () => {
  it("writes Failed for a decision no retry can fix, with no certificate fields", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const validateCtx: FunctionContext = t.contexts.validate;
    const event = await handOn(validateCtx, apiServerAddEvent(pcr), {
      type: EVENT_TYPES.denied,
      pcr: pcrRef(pcr),
      signerName: pcr.spec.signerName,
      spkiSha256: requestKeyBinding(pcr.spec),
      decision: { kind: "denied", reason: "SignerMisconfigured", message: "no retry can fix this", permanent: true },
    });
    expect((await t.run("deny", event)).status).toBe(204);
    const after = await t.read(pcr);
    expect(terminalCondition(after)).toMatchObject({ type: "Failed", reason: "SignerMisconfigured", status: "True" });
    expect(after.status?.certificateChain ?? "").toBe("");
    // Idempotent: the status is terminal, a second delivery changes nothing.
    expect((await t.run("deny", event)).status).toBe(204);
  });

  it("refuses a denial signed by sign's key (only validate and derive-sans may deny)", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const forged = await handOn({ ...t.contexts.validate, keys: { ...t.keys.sign, step: "validate" } }, apiServerAddEvent(pcr), {
      type: EVENT_TYPES.denied,
      pcr: pcrRef(pcr),
      signerName: pcr.spec.signerName,
      spkiSha256: requestKeyBinding(pcr.spec),
      decision: { kind: "denied", reason: "Nope", message: "forged", permanent: false },
    });
    expect((await t.run("deny", forged)).status).toBe(403);
    expect(terminalCondition(await t.read(pcr))).toBeUndefined();
  });

  it.each([
    { case: "another key", binding: (other: PodCertificateRequest) => ({ spkiSha256: requestKeyBinding(other.spec) }) },
    { case: "another signer", binding: () => ({ signerName: WORKERPOOL_SIGNER }) },
  ])("refuses a denial that does not match the PCR as stored ($case): 403, nothing written", async ({ binding }) => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    expect(pcr.spec.signerName).toBe(ATESYSTEM_SIGNER);
    // Signed by validate's own key and naming this PCR (namespace, name, uid), so it verifies;
    // only the key or signer it binds is not the stored request's.
    const denial = await handOn(t.contexts.validate, apiServerAddEvent(pcr), {
      type: EVENT_TYPES.denied,
      pcr: pcrRef(pcr),
      signerName: pcr.spec.signerName,
      spkiSha256: requestKeyBinding(pcr.spec),
      decision: { kind: "denied", reason: "PodMismatch", message: "bound to something else", permanent: false },
      ...binding(t.pcrFor("ate-apiserver")),
    });
    const before = await t.read(pcr);
    const r = await t.run("deny", denial);
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(new RegExp(`attestation does not match PCR ate-system/${pcr.metadata.name} as stored`));
    expect(await t.read(pcr)).toEqual(before);
    expect(terminalCondition(before)).toBeUndefined();
  });
});

describe("validate", () => {
  it("ignores a PCR that is already terminal (our own status write echoing back)", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    await t.run("sign", await t.derivedFor(pcr));
    const issued = await t.read(pcr);
    const r = await t.run("validate", { ...apiServerAddEvent(issued), type: EVENT_TYPES.apiServerUpdate });
    expect(r.status).toBe(204);
  });

  it("reads the PCR from the API server, not from the event", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const lying = structuredClone(pcr);
    lying.spec.podName = "ate-apiserver"; // would be a different identity if trusted
    const v = await t.run("validate", apiServerAddEvent(lying));
    expect(v.reply?.type).toBe(EVENT_TYPES.validated);
    const d = await t.run("derive-sans", v.reply!);
    const s = await t.run("sign", d.reply!);
    expect(s.status).toBe(200);
    const { X509Certificate } = await import("node:crypto");
    expect(new X509Certificate((await t.read(pcr)).status!.certificateChain!).subjectAltName).toBe("URI:spiffe://cluster.local/ns/ate-system/sa/atenet-router");
  });

  it("answers a resync event like an add", async () => {
    const t = await setup();
    const r = await t.run("validate", { ...apiServerAddEvent(t.pcrFor("atenet-router")), type: EVENT_TYPES.resync });
    expect(r.reply?.type).toBe(EVENT_TYPES.validated);
  });

  it("never denies on a cached lookup: a namespace labelled a moment ago counts at once", async () => {
    const t = await setup();
    const pcr = t.pcrFor("app", "workerpool.podcert.ate.dev/identity");
    // tenant is not labelled for the worker pool: denied, and the namespace is now in the cache.
    expect((await t.run("validate", apiServerAddEvent(pcr))).reply?.type).toBe(EVENT_TYPES.denied);
    const ns = t.server.store.get("namespaces", undefined, "tenant")!;
    t.server.store.replace({ ...ns, metadata: { ...ns.metadata, labels: { "podcert.ate.dev/workerpool": "true" } } });
    expect((await t.run("validate", apiServerAddEvent(pcr))).reply?.type).toBe(EVENT_TYPES.validated);
  });

  it("denies a request whose pod is terminating (PodMismatch)", async () => {
    const t = await setup();
    const pcr = t.pcrFor("atenet-router");
    const pod = t.server.store.get("pods", "ate-system", "atenet-router")!;
    t.server.store.replace({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: new Date().toISOString() } });
    const r = await t.run("validate", apiServerAddEvent(pcr));
    expect(r.reply?.type).toBe(EVENT_TYPES.denied);
    await t.run("deny", r.reply!);
    expect(terminalCondition(await t.read(pcr))).toMatchObject({ type: "Denied", reason: "PodMismatch" });
  });
});

describe("derive-sans with its Services index, as the function server runs it", () => {
  it("names only what the Service justifies now, even when the index missed its change", async () => {
    const t = await setup({ servicesIndex: true });
    const pcr = t.pcrFor("valkey-0"); // expects-service "true"; Service valkey (headless) selects it
    const v = await t.run("validate", apiServerAddEvent(pcr));
    expect((await t.run("derive-sans", v.reply!)).reply?.type).toBe(EVENT_TYPES.sansDerived); // lists, seeds the index

    // Every watch event lost from here: the index still sees valkey selecting app=valkey.
    t.server.setFaults({ watchSkip: 1 });
    const valkey = t.server.store.get("services", "ate-system", "valkey")!;
    t.server.store.replace({ ...valkey, spec: { ...(valkey.spec as object), selector: { app: "other" } } });
    const from = t.server.servedRequests().length;
    const stale = await t.run("derive-sans", v.reply!);
    expect(stale.status).toBe(503); // waiting: no Service selects the pod now
    expect(stale.reply).toBeUndefined();
    // (The index's own watch may be logged here too, whenever it opened: not this request's.)
    const calls = t.server.servedRequests().slice(from).filter((r) => !r.url.includes("watch=true")).map((r) => `${r.method} ${r.url}`);
    // The pod's labels come from validate's attestation: only the candidate Service is read.
    expect(calls).toEqual(["GET /api/v1/namespaces/ate-system/services/valkey"]);

    t.server.store.replace({ ...valkey, metadata: { ...valkey.metadata, resourceVersion: undefined } });
    const d = await t.run("derive-sans", v.reply!);
    expect(d.reply?.type).toBe(EVENT_TYPES.sansDerived);
    expect((await t.run("sign", d.reply!)).status).toBe(200);
    const { X509Certificate } = await import("node:crypto");
    expect(new X509Certificate((await t.read(pcr)).status!.certificateChain!).subjectAltName).toContain("DNS:valkey-0.valkey.ate-system.svc");
  });
});

describe("signer profiles as data", () => {
  it("denies TooManyDNSNames past the configured limit", async () => {
    const yaml = readFileSync("examples/config/ate.yaml", "utf8").replace("maxNames: 100", "maxNames: 3");
    const t = await setup({ config: parseSignerConfig(yaml) });
    const pcr = t.pcrFor("valkey-0"); // 4 names: the headless Service and the per-pod names
    const v = await t.run("validate", apiServerAddEvent(pcr));
    const d = await t.run("derive-sans", v.reply!);
    expect(d.reply?.type).toBe(EVENT_TYPES.denied);
    await t.run("deny", d.reply!);
    const c = terminalCondition(await t.read(pcr));
    expect(c).toMatchObject({ type: "Denied", reason: "TooManyDNSNames" });
    expect(c?.message).toMatch(/4 DNS names.*at most 3/);
  });

  it("refuses in validate a named list longer than the limit allows, before any Service is read", async () => {
    const yaml = readFileSync("examples/config/ate.yaml", "utf8").replace("maxNames: 100", "maxNames: 3");
    const clusterYaml = readFileSync("examples/cluster.yaml", "utf8").replace("expects-service: api\n", "expects-service: api, missing-one\n");
    const t = await setup({ config: parseSignerConfig(yaml), clusterYaml });
    const v = await t.run("validate", apiServerAddEvent(t.pcrFor("ate-apiserver")));
    // Not "waiting for missing-one": two Services can never fit in three names.
    expect(v.reply?.type).toBe(EVENT_TYPES.denied);
    await t.run("deny", v.reply!);
    expect(terminalCondition(await t.read(t.pcrFor("ate-apiserver")))).toMatchObject({ reason: "TooManyDNSNames" });
  });

  it("runs the upstream-style two-signer layout with the same code", async () => {
    const config = parseSignerConfig(readFileSync("examples/config/upstream-style.yaml", "utf8"));
    const clusterYaml = readFileSync("examples/cluster.yaml", "utf8")
      .replaceAll("atesystem.podcert.ate.dev/identity", "servicedns.podcert.ate.dev/serving")
      .replaceAll("atesystem.podcert.ate.dev/expects-service", "servicedns.podcert.ate.dev/expects-service")
      .replaceAll("workerpool.podcert.ate.dev/identity", "spiffe.podcert.ate.dev/service-account");
    const t = await setup({ config, clusterYaml });
    const result = await issueAll({ cluster: t.cluster, contexts: t.contexts, backoffMs: 1 });
    const outcome = (pod: string, signer: string) => {
      const pcr = result.pcrs.find((p) => p.spec.podName === pod && p.spec.signerName === signer)!;
      const c = terminalCondition(pcr);
      return c?.type === "Issued" ? "Issued" : `${c?.type}:${c?.reason}`;
    };
    expect(outcome("ate-apiserver", "servicedns.podcert.ate.dev/serving")).toBe("Issued");
    // No opt-in: a serving signer refuses rather than issue a certificate without DNS names.
    expect(outcome("atenet-router", "servicedns.podcert.ate.dev/serving")).toBe("Denied:InvalidUnverifiedUserAnnotations");
    // The SPIFFE signer serves every namespace but kube-system, the tenant's included.
    expect(outcome("app", "spiffe.podcert.ate.dev/service-account")).toBe("Issued");
  });
});
