/**
 * The embedded API server as @kubernetes/client-node sees it: every call here goes over HTTP
 * through client-node's generated APIs, Watch and informer, exactly as against a real cluster.
 */
import "reflect-metadata";

import { webcrypto } from "node:crypto";

import {
  ApiException,
  CertificatesV1beta1Api,
  CoreV1Api,
  EventsV1Api,
  KubeConfig,
  makeInformer,
  Watch,
  type V1beta1PodCertificateRequest,
  type V1beta1PodCertificateRequestSpec,
} from "@kubernetes/client-node";
import * as x509 from "@peculiar/x509";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";

const subtle = webcrypto.subtle;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

const NS = "team-a";
const SIGNER = "example.com/signer";
const PCRS = "/apis/certificates.k8s.io/v1beta1/podcertificaterequests";

const SEED = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
  { apiVersion: "v1", kind: "Node", metadata: { name: "node-1", uid: "node-uid-1" } },
  { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "web", namespace: NS, uid: "sa-uid-1" } },
  {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "web-0", namespace: NS, uid: "pod-uid-1", labels: { app: "web" } },
    spec: { nodeName: "node-1", serviceAccountName: "web", containers: [{ name: "c", image: "x" }] },
  },
  { apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: NS, labels: { app: "web" } }, spec: { selector: { app: "web" } } },
  { apiVersion: "v1", kind: "Service", metadata: { name: "db", namespace: NS, labels: { app: "db" } }, spec: { clusterIP: "None" } },
  // its namespace is not listed: seeding creates it
  { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default", namespace: "implicit" } },
];

let server: EmbeddedApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let certs: CertificatesV1beta1Api;
let ca: webcrypto.CryptoKeyPair;
let leafKey: webcrypto.CryptoKeyPair;
let spki: string;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  server = await startApiServer({ objects: SEED });
  kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  core = kc.makeApiClient(CoreV1Api);
  certs = kc.makeApiClient(CertificatesV1beta1Api);
  ca = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  leafKey = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  spki = Buffer.from(await subtle.exportKey("spki", leafKey.publicKey)).toString("base64");
});

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

afterAll(async () => {
  await server.stop();
});

function pcrBody(o: { signerName?: string; podName?: string } = {}): V1beta1PodCertificateRequest {
  return {
    metadata: { generateName: "req-" },
    spec: {
      signerName: o.signerName ?? SIGNER,
      podName: o.podName ?? "web-0",
      podUID: "pod-uid-1",
      serviceAccountName: "web",
      serviceAccountUID: "sa-uid-1",
      nodeName: "node-1",
      nodeUID: "node-uid-1",
      pkixPublicKey: spki,
      proofOfPossession: "AAAA",
    } as V1beta1PodCertificateRequestSpec, // the generated type wrongly makes stubPKCS10Request required
  };
}

async function createPcr(o?: Parameters<typeof pcrBody>[0]): Promise<V1beta1PodCertificateRequest> {
  return certs.createNamespacedPodCertificateRequest({ namespace: NS, body: pcrBody(o) });
}

/** An Issued status with Dates, as client-node users build it (Dates serialize as ".000Z"). */
async function issuedStatus(): Promise<NonNullable<V1beta1PodCertificateRequest["status"]>> {
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + 24 * 3600 * 1000);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "0102",
    subject: "",
    issuer: "CN=test ca",
    notBefore,
    notAfter,
    publicKey: leafKey.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: SIGN,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "web.team-a.svc" }], true)],
  });
  return {
    conditions: [{ type: "Issued", status: "True", reason: "Issued", message: "ok", lastTransitionTime: new Date() }],
    certificateChain: leaf.toString("pem"),
    notBefore,
    notAfter,
    beginRefreshAt: new Date(notAfter.getTime() - 3600 * 1000),
  };
}

/** client-node throws ApiException: `code` is the HTTP status, `body` the Status as JSON text. */
async function apiError(p: Promise<unknown>): Promise<{ code: number; status: { reason: string; message: string; details?: { causes?: { field: string; message: string }[] } } }> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ApiException);
    const err = e as ApiException<string>;
    return { code: err.code, status: JSON.parse(err.body) };
  }
  throw new Error("expected the call to fail");
}

function rawFetch(path: string, init?: RequestInit): Promise<Response> {
  return fetch(server.url + path, init);
}

describe("core reads through client-node", () => {
  it("serves a kubeconfig for the embedded cluster", () => {
    expect(kc.getCurrentContext()).toBe("podcert-embedded");
    expect(kc.getCurrentCluster()?.server).toBe(server.url);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("reads pods, namespaces, nodes and service accounts, keeping given uids", async () => {
    const pod = await core.readNamespacedPod({ name: "web-0", namespace: NS });
    expect(pod.metadata?.uid).toBe("pod-uid-1");
    expect(pod.spec?.nodeName).toBe("node-1");
    expect(pod.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(Number(pod.metadata?.resourceVersion)).toBeGreaterThan(0);

    const ns = await core.readNamespace({ name: NS });
    expect(ns.status?.phase).toBe("Active");
    expect(ns.metadata?.labels?.["kubernetes.io/metadata.name"]).toBe(NS);
    expect((await core.readNamespace({ name: "implicit" })).metadata?.name).toBe("implicit");

    expect((await core.readNode({ name: "node-1" })).metadata?.uid).toBe("node-uid-1");
    const sa = await core.readNamespacedServiceAccount({ name: "web", namespace: NS });
    expect(sa.metadata?.uid).toBe("sa-uid-1");
    expect(sa.metadata?.uid).not.toBe((await core.readNamespacedServiceAccount({ name: "default", namespace: "implicit" })).metadata?.uid);
  });

  it("lists services with label selectors and applies Service defaults", async () => {
    const web = await core.listNamespacedService({ namespace: NS, labelSelector: "app=web" });
    expect(web.items.map((s) => s.metadata?.name)).toEqual(["web"]);
    expect(web.items[0]!.spec?.type).toBe("ClusterIP");
    expect(web.items[0]!.spec?.clusterIP).toMatch(/^10\.96\./);
    expect(Number(web.metadata?.resourceVersion)).toBeGreaterThan(0);

    const notWeb = await core.listServiceForAllNamespaces({ labelSelector: "app!=web" });
    expect(notWeb.items.map((s) => s.metadata?.name)).toEqual(["db"]);
    expect(notWeb.items[0]!.spec?.clusterIP).toBe("None");
    expect((await core.listNamespacedService({ namespace: NS, labelSelector: "app in (web,db)" })).items).toHaveLength(2);
    expect((await core.listNamespacedService({ namespace: NS, labelSelector: "!app" })).items).toHaveLength(0);
    expect((await core.listNamespacedService({ namespace: NS, fieldSelector: "metadata.name=db" })).items).toHaveLength(1);
  });

  it("answers 404 NotFound as a Status", async () => {
    const { code, status } = await apiError(core.readNamespacedPod({ name: "nope", namespace: NS }));
    expect(code).toBe(404);
    expect(status).toMatchObject({ kind: "Status", status: "Failure", reason: "NotFound", message: 'pods "nope" not found', details: { name: "nope", kind: "pods" } });
    expect((await apiError(certs.readNamespacedPodCertificateRequest({ name: "nope", namespace: NS }))).status.message)
      .toBe('podcertificaterequests.certificates.k8s.io "nope" not found');
  });

  it("creates core and events.k8s.io events, with generateName", async () => {
    const created = await core.createNamespacedEvent({
      namespace: NS,
      body: {
        metadata: { generateName: "req-x." },
        involvedObject: { kind: "PodCertificateRequest", namespace: NS, name: "req-x" },
        reason: "Issued",
        message: "issued",
        type: "Normal",
        eventTime: new Date(),
      },
    });
    expect(created.metadata?.name).toMatch(/^req-x\.[a-z0-9]{5}$/);
    expect(server.store.list("Event", { namespace: NS, fieldSelector: "involvedObject.name=req-x" }).items).toHaveLength(1);

    const events = kc.makeApiClient(EventsV1Api);
    const ev = await events.createNamespacedEvent({
      namespace: NS,
      body: { metadata: { generateName: "e-" }, eventTime: new Date(), reason: "Denied", action: "Sign", reportingController: "podcert", reportingInstance: "x", type: "Warning" },
    });
    expect(ev.metadata?.name).toMatch(/^e-/);
    expect(server.store.get("events.events.k8s.io", NS, ev.metadata!.name!)).toBeDefined();

    const missing = await apiError(core.createNamespacedEvent({ namespace: "no-such-ns", body: { metadata: { name: "e" }, involvedObject: {} } }));
    expect(missing.code).toBe(404);
    expect(missing.status.message).toBe('namespaces "no-such-ns" not found');
  });
});

describe("PodCertificateRequests through client-node", () => {
  it("creates with generateName and defaults, lists by field selector, reads back", async () => {
    const pcr = await createPcr();
    const name = pcr.metadata!.name!;
    expect(name).toMatch(/^req-[a-z0-9]{5}$/);
    expect(pcr.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(pcr.spec.maxExpirationSeconds).toBe(86400);
    expect(pcr.metadata?.creationTimestamp?.getMilliseconds()).toBe(0);
    expect(pcr.status).toBeUndefined();

    const mine = await certs.listPodCertificateRequestForAllNamespaces({ fieldSelector: `spec.signerName=${SIGNER}` });
    expect(mine.items.map((p) => p.metadata?.name)).toContain(name);
    expect(mine.kind).toBe("PodCertificateRequestList");
    const other = await certs.listPodCertificateRequestForAllNamespaces({ fieldSelector: "spec.signerName=other.example/x" });
    expect(other.items).toHaveLength(0);
    const byPod = await certs.listNamespacedPodCertificateRequest({ namespace: NS, fieldSelector: `spec.podName=web-0,spec.nodeName=node-1,metadata.name=${name}` });
    expect(byPod.items).toHaveLength(1);

    const read = await certs.readNamespacedPodCertificateRequest({ name, namespace: NS });
    expect(read.metadata?.uid).toBe(pcr.metadata?.uid);
    expect(read.spec.pkixPublicKey).toBe(spki);

    const bad = await apiError(certs.listPodCertificateRequestForAllNamespaces({ fieldSelector: "spec.podUID=x" }));
    expect(bad.code).toBe(400);
    expect(bad.status.message).toBe("field label not supported: spec.podUID");
  });

  it("accepts a valid Issued status written with Dates and stores whole-second times", async () => {
    const pcr = await createPcr();
    const status = await issuedStatus();
    const updated = await certs.replaceNamespacedPodCertificateRequestStatus({
      name: pcr.metadata!.name!,
      namespace: NS,
      body: { ...pcr, status },
    });
    expect(updated.status?.notBefore?.getTime()).toBe(status.notBefore!.getTime());
    expect(updated.status?.conditions?.[0]?.type).toBe("Issued");
    expect(Number(updated.metadata?.resourceVersion)).toBeGreaterThan(Number(pcr.metadata?.resourceVersion));

    const raw = (await (await rawFetch(`/apis/certificates.k8s.io/v1beta1/namespaces/${NS}/podcertificaterequests/${pcr.metadata!.name}`)).json()) as { status: Record<string, string> };
    expect(raw.status.notBefore).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    // Writing the identical status again is a no-op (same resourceVersion); anything else is refused.
    const again = await certs.replaceNamespacedPodCertificateRequestStatus({ name: pcr.metadata!.name!, namespace: NS, body: updated });
    expect(again.metadata?.resourceVersion).toBe(updated.metadata?.resourceVersion);
    const changed = structuredClone(updated);
    changed.status!.conditions![0]!.message = "changed";
    const refused = await apiError(certs.replaceNamespacedPodCertificateRequestStatus({ name: pcr.metadata!.name!, namespace: NS, body: changed }));
    expect(refused.code).toBe(422);
    expect(refused.status.details?.causes?.[0]?.message).toMatch(/immutable after PodCertificateRequest is issued/);
  });

  it("answers 409 Conflict on a stale resourceVersion", async () => {
    const pcr = await createPcr();
    await certs.replaceNamespacedPodCertificateRequest({ name: pcr.metadata!.name!, namespace: NS, body: { ...pcr, metadata: { ...pcr.metadata, labels: { touched: "yes" } } } });
    const { code, status } = await apiError(certs.replaceNamespacedPodCertificateRequestStatus({
      name: pcr.metadata!.name!,
      namespace: NS,
      body: { ...pcr, status: { conditions: [{ type: "Denied", status: "True", reason: "PodMismatch", message: "m", lastTransitionTime: new Date() }] } },
    }));
    expect(code).toBe(409);
    expect(status.reason).toBe("Conflict");
    expect(status.message).toBe(`Operation cannot be fulfilled on podcertificaterequests.certificates.k8s.io "${pcr.metadata!.name}": the object has been modified; please apply your changes to the latest version and try again`);
  });

  it("answers 422 Invalid with one cause per violated rule", async () => {
    const pcr = await createPcr();
    const status = await issuedStatus();
    status.notBefore = new Date(status.notBefore!.getTime() + 1000);
    status.beginRefreshAt = new Date(status.notBefore.getTime());
    const { code, status: body } = await apiError(certs.replaceNamespacedPodCertificateRequestStatus({ name: pcr.metadata!.name!, namespace: NS, body: { ...pcr, status } }));
    expect(code).toBe(422);
    expect(body.reason).toBe("Invalid");
    expect(body.message).toMatch(/^PodCertificateRequest\.certificates\.k8s\.io "req-[a-z0-9]{5}" is invalid: \[status\.notBefore: /);
    expect(body.details?.causes?.map((c) => c.field)).toEqual(["status.notBefore", "status.beginRefreshAt"]);
    // nothing was written
    const read = await certs.readNamespacedPodCertificateRequest({ name: pcr.metadata!.name!, namespace: NS });
    expect(read.status).toBeUndefined();
    expect(read.metadata?.resourceVersion).toBe(pcr.metadata?.resourceVersion);

    const progress = await apiError(certs.replaceNamespacedPodCertificateRequestStatus({
      name: pcr.metadata!.name!, namespace: NS, body: { ...pcr, status: { certificateChain: "x" } },
    }));
    expect(progress.status.details?.causes?.[0]?.message).toMatch(/status is immutable unless transitioning/);
  });

  it("keeps the spec immutable and the status out of main-resource PUTs", async () => {
    const pcr = await createPcr();
    const name = pcr.metadata!.name!;
    const changed = structuredClone(pcr);
    changed.spec.podName = "other";
    const { code, status } = await apiError(certs.replaceNamespacedPodCertificateRequest({ name, namespace: NS, body: changed }));
    expect(code).toBe(422);
    expect(status.details?.causes).toEqual([expect.objectContaining({ field: "spec.podName" })]);

    const withStatus = { ...pcr, status: (await issuedStatus()) };
    const put = await certs.replaceNamespacedPodCertificateRequest({ name, namespace: NS, body: withStatus });
    expect(put.status).toBeUndefined();
    expect(put.metadata?.resourceVersion).toBe(pcr.metadata?.resourceVersion); // nothing changed
  });

  it("refuses duplicates, missing namespaces and invalid specs", async () => {
    const pcr = await createPcr();
    const dup = await apiError(certs.createNamespacedPodCertificateRequest({ namespace: NS, body: { ...pcrBody(), metadata: { name: pcr.metadata!.name! } } }));
    expect(dup.code).toBe(409);
    expect(dup.status.reason).toBe("AlreadyExists");
    const nons = await apiError(certs.createNamespacedPodCertificateRequest({ namespace: "nowhere", body: pcrBody() }));
    expect(nons.code).toBe(404);
    const body = pcrBody();
    body.spec.maxExpirationSeconds = 60;
    const bad = await apiError(certs.createNamespacedPodCertificateRequest({ namespace: NS, body }));
    expect(bad.code).toBe(422);
    expect(bad.status.details?.causes?.[0]?.field).toBe("spec.maxExpirationSeconds");
  });

  it("deletes", async () => {
    const pcr = await createPcr();
    await certs.deleteNamespacedPodCertificateRequest({ name: pcr.metadata!.name!, namespace: NS });
    expect((await apiError(certs.readNamespacedPodCertificateRequest({ name: pcr.metadata!.name!, namespace: NS }))).code).toBe(404);
  });
});

describe("watches through client-node", () => {
  it("Watch gets ADDED for existing objects, then ADDED and MODIFIED as they happen", async () => {
    const before = await createPcr({ signerName: "watch.example/a" });
    const seen: string[] = [];
    let done: unknown = "not called";
    const controller = await new Watch(kc).watch(PCRS, { fieldSelector: "spec.signerName=watch.example/a" },
      (type, obj: V1beta1PodCertificateRequest) => seen.push(`${type} ${obj.metadata?.name} ${obj.status?.conditions?.[0]?.type ?? "-"}`),
      (err) => (done = err));
    cleanups.push(() => controller.abort());

    const created = await createPcr({ signerName: "watch.example/a" });
    await createPcr({ signerName: "watch.example/other" }); // filtered out
    await certs.replaceNamespacedPodCertificateRequestStatus({ name: created.metadata!.name!, namespace: NS, body: { ...created, status: await issuedStatus() } });
    await server.store.waitFor("PodCertificateRequest", NS, created.metadata!.name!, (o) => o.status !== undefined);
    await expect.poll(() => seen.length).toBe(3);
    expect(seen).toEqual([
      `ADDED ${before.metadata!.name} -`,
      `ADDED ${created.metadata!.name} -`,
      `MODIFIED ${created.metadata!.name} Issued`,
    ]);
    expect(done).toBe("not called");
  });

  it("Watch resumes after a resourceVersion and sees DELETED", async () => {
    const first = await createPcr({ signerName: "watch.example/b" });
    const seen: string[] = [];
    const controller = await new Watch(kc).watch(PCRS, { resourceVersion: first.metadata!.resourceVersion, fieldSelector: "spec.signerName=watch.example/b" },
      (type, obj: V1beta1PodCertificateRequest) => seen.push(`${type} ${obj.metadata?.name}`), () => {});
    cleanups.push(() => controller.abort());
    const second = await createPcr({ signerName: "watch.example/b" });
    await certs.deleteNamespacedPodCertificateRequest({ name: first.metadata!.name!, namespace: NS });
    await expect.poll(() => seen).toEqual([`ADDED ${second.metadata!.name}`, `DELETED ${first.metadata!.name}`]);
  });

  it("an informer lists, then follows adds and updates", async () => {
    const listFn = () => certs.listPodCertificateRequestForAllNamespaces({ fieldSelector: "spec.signerName=informer.example/x" });
    const informer = makeInformer(kc, `${PCRS}?fieldSelector=${encodeURIComponent("spec.signerName=informer.example/x")}`, listFn);
    const existing = await createPcr({ signerName: "informer.example/x" });
    const events: string[] = [];
    informer.on("add", (o) => events.push(`add ${o.metadata?.name}`));
    informer.on("update", (o) => events.push(`update ${o.metadata?.name} ${o.status?.conditions?.[0]?.type}`));
    informer.on("error", (e) => events.push(`error ${String(e)}`));
    await informer.start();
    cleanups.push(() => void informer.stop());
    const added = await createPcr({ signerName: "informer.example/x" });
    await certs.replaceNamespacedPodCertificateRequestStatus({
      name: added.metadata!.name!, namespace: NS,
      body: { ...added, status: { conditions: [{ type: "Failed", status: "True", reason: "Broken", message: "m", lastTransitionTime: new Date() }] } },
    });
    await expect.poll(() => events).toEqual([
      `add ${existing.metadata!.name}`,
      `add ${added.metadata!.name}`,
      `update ${added.metadata!.name} Failed`,
    ]);
    expect(informer.list(NS).map((o) => o.metadata?.name).sort()).toEqual([existing.metadata!.name, added.metadata!.name].sort());
  });

  it("sends BOOKMARKs only when asked, and an ERROR 410 for a compacted resourceVersion", async () => {
    const small = await startApiServer({ historyLimit: 2, bookmarkIntervalMs: 50 });
    try {
      for (let i = 0; i < 4; i++) small.store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: `n${i}` } });
      const expired = await (await fetch(`${small.url}/api/v1/namespaces?watch=true&resourceVersion=1`)).text();
      expect(JSON.parse(expired.trim())).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } });

      const res = await fetch(`${small.url}/api/v1/namespaces?watch=1&allowWatchBookmarks=true&resourceVersion=4`);
      const reader = res.body!.getReader();
      const { value } = await reader.read();
      expect(JSON.parse(new TextDecoder().decode(value).split("\n")[0]!)).toMatchObject({ type: "BOOKMARK", object: { kind: "Namespace", metadata: { resourceVersion: "4" } } });
      await reader.cancel();
    } finally {
      await small.stop();
    }
  });

  it("stop() ends open watches", async () => {
    const other = await startApiServer();
    const okc = new KubeConfig();
    okc.loadFromString(other.kubeconfig());
    let done: unknown = "not called";
    await new Watch(okc).watch("/api/v1/pods", {}, () => {}, (err) => (done = err));
    await other.stop();
    await expect.poll(() => done).not.toBe("not called");
  });
});

describe("HTTP edges", () => {
  it("answers 405 for PATCH, 404 for unknown paths, 400 for bad JSON, 413 for big bodies", async () => {
    const patch = await rawFetch(`/api/v1/namespaces/${NS}/pods/web-0`, { method: "PATCH", headers: { "content-type": "application/merge-patch+json" }, body: "{}" });
    expect(patch.status).toBe(405);
    expect(await patch.json()).toMatchObject({ kind: "Status", reason: "MethodNotAllowed", code: 405 });

    const unknown = await rawFetch("/apis/apps/v1/deployments");
    expect(unknown.status).toBe(404);
    expect((await rawFetch(`/api/v1/namespaces/${NS}/pods/web-0/log`)).status).toBe(404);

    const badJson = await rawFetch(`/api/v1/namespaces/${NS}/pods`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ reason: "BadRequest" });

    const big = await rawFetch(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ metadata: { name: "big", annotations: { a: "x".repeat(3 * 1024 * 1024) } } }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ reason: "RequestEntityTooLarge", code: 413 });
  });

  it("checks the body against the URL", async () => {
    const wrongNs = await rawFetch(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ metadata: { name: "x", namespace: "other" } }),
    });
    expect(wrongNs.status).toBe(400);
    const wrongKind = await rawFetch(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "x" } }),
    });
    expect(wrongKind.status).toBe(400);
  });

  it("serves version, health and discovery", async () => {
    expect(await (await rawFetch("/healthz")).text()).toBe("ok");
    expect(await (await rawFetch("/version")).json()).toMatchObject({ major: "1" });
    const resources = (await (await rawFetch("/apis/certificates.k8s.io/v1beta1")).json()) as { resources: { name: string; namespaced: boolean }[] };
    expect(resources.resources).toContainEqual(expect.objectContaining({ name: "podcertificaterequests", namespaced: true }));
    expect(resources.resources).toContainEqual(expect.objectContaining({ name: "clustertrustbundles", namespaced: false }));
  });

  it("creates, reads and lists ClusterTrustBundles (cluster-scoped, names with ':')", async () => {
    const caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "01", name: "CN=ca", keys: ca, signingAlgorithm: SIGN,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const api = certs;
    const name = "example.com:signer:primary";
    await api.createClusterTrustBundle({ body: { metadata: { name, labels: { a: "b" } }, spec: { signerName: SIGNER, trustBundle: caCert.toString("pem") } } });
    expect((await api.readClusterTrustBundle({ name })).spec.signerName).toBe(SIGNER);
    expect((await api.listClusterTrustBundle({ fieldSelector: `spec.signerName=${SIGNER}` })).items).toHaveLength(1);
    const misnamed = await apiError(api.createClusterTrustBundle({ body: { metadata: { name: "wrong" }, spec: { signerName: SIGNER, trustBundle: caCert.toString("pem") } } }));
    expect(misnamed.code).toBe(422);
  });
});

describe("paged lists", () => {
  it("serves limit and continue as kube-apiserver does: pages in order, a token while more remain, 400 for a token it did not make", async () => {
    const all = (await core.listNamespacedService({ namespace: NS })).items.map((s) => s.metadata?.name);
    expect(all.length).toBeGreaterThanOrEqual(2);
    const seen: (string | undefined)[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await core.listNamespacedService({ namespace: NS, limit: 1, ...(token === undefined ? {} : { _continue: token }) });
      expect(page.items).toHaveLength(1);
      seen.push(...page.items.map((s) => s.metadata?.name));
      token = page.metadata?._continue;
      if (token !== undefined) expect(page.metadata?.remainingItemCount).toBe(all.length - seen.length);
      pages++;
    } while (token !== undefined && pages < 10);
    expect(seen).toEqual(all);
    expect(pages).toBe(all.length);
    // limit 0 or larger than the list: the whole list, no token.
    expect((await core.listNamespacedService({ namespace: NS, limit: 0 })).metadata?._continue).toBeUndefined();
    expect((await core.listNamespacedService({ namespace: NS, limit: 100 })).items).toHaveLength(all.length);
    const bad = await apiError(core.listNamespacedService({ namespace: NS, limit: 1, _continue: "not-a-token" }));
    expect(bad.code).toBe(400);
  });
});
