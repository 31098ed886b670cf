/**
 * KubeClusterApi: client-node's KubeConfig and transport with podcert's own REST calls. Against the
 * embedded API server for what a real one answers, and against a bare HTTP server for what the
 * embedded one never does (throttling, broken bodies), so every failure maps to what the caller
 * must do: absent, conflict (re-read), or transient (retry; never a denial).
 */
import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_SLOW_MS } from "../../../local-cluster/apiserver/fault-injection.js";
import { kubeconfigFor, startApiServer, type EmbeddedApiServer } from "../../../local-cluster/apiserver/server.js";
import { parseBrokerDelivery } from "../../../local-cluster/broker.js";
import { controlPlaneApis } from "../../../local-cluster/kubernetes-versions.js";
import { activeCa, parseCaPool, serializeCaPool, trustBundlePem } from "../../../shared/ca/pool.js";
import { createCaPool } from "../../../cli/ca-create.js";
import { ConflictError, TransientError } from "../../../shared/errors.js";
import { ResourceExpiredError } from "../../../shared/kube/cluster.js";
import { API_TIMEOUT_MS, KubeClusterApi, loadKubeConfig, missingCredentials, type ApiCallObserver } from "../../../shared/kube/client-node.js";
import { deniedStatus } from "../../../shared/pcr/status.js";
import { issueLeaf } from "../../../shared/x509/leaf.js";
import { namespace, node, NS, pcrFor, pod, service, serviceAccount, v1 } from "../../helpers/objects.js";

const SIGNER = "atesystem.podcert.ate.dev/identity";
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

async function embedded(objects: unknown[] = []) {
  const server: EmbeddedApiServer = await startApiServer({ objects });
  stops.push(() => server.stop());
  const calls: Parameters<ApiCallObserver>[0][] = [];
  const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), (c) => calls.push(c));
  return { server, api, calls };
}

type Answer = { status: number; body: string };

/** A server answering every request with `answer` (or what it returns for the path), recording what it was sent. */
async function scripted(answer: Answer | ((url: string) => Answer)) {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      const a = typeof answer === "function" ? answer(req.url ?? "") : answer;
      res.writeHead(a.status, { "content-type": "application/json" });
      res.end(a.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  stops.push(() => new Promise((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen };
}

const p = pod();
const objects = () => [
  v1("Namespace", namespace(NS)),
  v1("Pod", p),
  v1("Node", node()),
  v1("ServiceAccount", serviceAccount()),
  v1("Service", service("api", { selector: p.metadata.labels ?? {} })),
];

describe("reads", () => {
  it("returns the API server's JSON as plain wire-format objects, and undefined for 404", async () => {
    const { api, calls } = await embedded(objects());
    const got = await api.readPod(NS, p.metadata.name);
    expect(got?.metadata.uid).toBe(p.metadata.uid);
    // Wire format: timestamps stay RFC 3339 strings (no Date objects), kind and apiVersion kept.
    expect(typeof got?.metadata.creationTimestamp).toBe("string");
    expect(got).toMatchObject({ apiVersion: "v1", kind: "Pod" });
    expect((await api.readNode("node-a"))?.metadata.name).toBe("node-a");
    expect((await api.readNamespace(NS))?.metadata.name).toBe(NS);
    expect((await api.readServiceAccount(NS, "web"))?.metadata.name).toBe("web");
    expect((await api.readService(NS, "api"))?.metadata.name).toBe("api");
    expect((await api.listServices(NS)).map((s) => s.metadata.name)).toEqual(["api"]);
    expect(await api.readPod(NS, "nobody")).toBeUndefined();
    expect(await api.readService("elsewhere", "api")).toBeUndefined();
    expect(calls.map((c) => `${c.operation}:${c.outcome}`)).toEqual([
      "get pod:ok",
      "get node:ok",
      "get namespace:ok",
      "get serviceaccount:ok",
      "get service:ok",
      "list services:ok",
      "get pod:absent",
      "get service:absent",
    ]);
  });

  /** A 1.35/1.36 API server: /api, and certificates.k8s.io v1 (CSRs only) and v1beta1 (PCRs). */
  const discovery = (pcrsServed: boolean) => (url: string): Answer => {
    if (url === "/api") return { status: 200, body: '{"kind":"APIVersions"}' };
    const resources = url.endsWith("/v1beta1") ? (pcrsServed ? ["podcertificaterequests", "clustertrustbundles"] : []) : ["certificatesigningrequests"];
    return { status: 200, body: JSON.stringify({ kind: "APIResourceList", resources: resources.map((name) => ({ name })) }) };
  };

  it("checks access with GET /api and the certificates.k8s.io discovery, and reports rather than throws what keeps it from working", async () => {
    const ok = await scripted(discovery(true));
    const discovered: unknown[] = [];
    expect(await new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(ok.url) }), undefined, { onCertificatesApis: (c) => discovered.push(c) }).checkAccess()).toBeUndefined();
    expect(ok.seen.map((s) => `${s.method} ${s.url}`).sort()).toEqual(["GET /api", "GET /apis/certificates.k8s.io/v1", "GET /apis/certificates.k8s.io/v1beta1"]);
    expect(discovered).toEqual([{ pcr: "v1beta1", ctb: "v1beta1" }]);
    // Reachable, but PodCertificateRequests are not served (the feature gate is off): not ready, and why.
    const gateOff = await scripted(discovery(false));
    expect(await new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(gateOff.url) })).checkAccess()).toMatch(/serves no podcertificaterequests in certificates\.k8s\.io v1 or v1beta1: .*feature gate/);
    const refused = await scripted({ status: 401, body: '{"kind":"Status","code":401,"message":"Unauthorized"}' });
    expect(await new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(refused.url) })).checkAccess()).toMatch(/refused the credentials \(HTTP 401\)/);
    const anonymous = await scripted({ status: 403, body: '{"kind":"Status","code":403,"message":"forbidden: User \\"system:anonymous\\""}' });
    expect(await new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(anonymous.url) })).checkAccess()).toMatch(/does not authenticate this identity \(HTTP 403: forbidden: User "system:anonymous"\)/);
    const away = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor("http://127.0.0.1:1") }));
    expect(await away.checkAccess()).toMatch(/^the Kubernetes API server http:\/\/127\.0\.0\.1:1 cannot be reached/);
  });

  it("tells a kubeconfig without credentials from one with them", () => {
    expect(missingCredentials(loadKubeConfig({ kubeconfigText: kubeconfigFor("http://127.0.0.1:1", "a-token") }))).toBeUndefined();
    expect(missingCredentials(loadKubeConfig({ kubeconfigText: kubeconfigFor("http://127.0.0.1:1") }))).toMatch(/^no Kubernetes credentials: the kubeconfig's user "podcert-embedded" has no token/);
  });

  it("escapes names into the path, so a hostile name cannot reach another resource", async () => {
    const { url, seen } = await scripted({ status: 404, body: '{"kind":"Status","code":404}' });
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }));
    expect(await api.readPod(NS, "../../nodes/x?y=1")).toBeUndefined();
    expect(seen[0]!.url).toBe(`/api/v1/namespaces/${NS}/pods/..%2F..%2Fnodes%2Fx%3Fy%3D1`);
  });

  it.each([
    { case: "a namespace of ..", call: (api: KubeClusterApi) => api.readPcr("..", "x") },
    { case: "a namespace and a name of ..", call: (api: KubeClusterApi) => api.readPcr("..", "..") },
    { case: "a name of .", call: (api: KubeClusterApi) => api.readPod(NS, ".") },
    { case: "an empty name", call: (api: KubeClusterApi) => api.readNode("") },
  ])("refuses $case as a bug, sending nothing", async ({ call }) => {
    const { url, seen } = await scripted({ status: 200, body: "{}" });
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }));
    await expect(async () => call(api)).rejects.toThrow(/^bug: .* as a Kubernetes API path segment$/);
    expect(seen).toEqual([]);
  });
});

describe("PodCertificateRequests", () => {
  it("lists by signer (items get their apiVersion and kind back) and writes the status with the read resourceVersion", async () => {
    const pcr = pcrFor(p, { signerName: SIGNER });
    const { api, server } = await embedded([...objects(), pcr]);
    const other = pcrFor(p, { signerName: "workerpool.podcert.ate.dev/identity", name: "req-other", uid: "6e4d3c2b-1a09-4f8e-9d7c-6b5a49382716" });
    server.store.create(other);
    const listed = await api.listPcrs({ signerName: SIGNER });
    expect(listed.map((x) => x.metadata.name)).toEqual([pcr.metadata.name]);
    expect(listed[0]).toMatchObject({ apiVersion: `certificates.k8s.io/${controlPlaneApis(server.kubernetesVersion).podCertificateRequests[0]}`, kind: "PodCertificateRequest" });
    expect((await api.listPcrs({ namespace: "elsewhere" })).length).toBe(0);

    const read = (await api.readPcr(NS, pcr.metadata.name))!;
    const status = deniedStatus({ reason: "UnsupportedKeyType", message: "no", permanent: false, now: new Date() });
    const written = (await api.replacePcrStatus(read, status))!;
    expect(written.status?.conditions?.[0]).toMatchObject({ type: "Denied", reason: "UnsupportedKeyType" });
    expect(written.metadata.resourceVersion).not.toBe(read.metadata.resourceVersion);
    // The same write again carries a stale resourceVersion: the caller must re-read.
    await expect(api.replacePcrStatus(read, status)).rejects.toBeInstanceOf(ConflictError);
  });

  it("turns a status the API server refuses (422) into a TransientError with its reason, never a denial", async () => {
    const pcr = pcrFor(p, { signerName: SIGNER });
    const { api } = await embedded([...objects(), pcr]);
    const read = (await api.readPcr(NS, pcr.metadata.name))!;
    const err = await api.replacePcrStatus(read, { certificateChain: "not a chain" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/HTTP 422: PodCertificateRequest.* is invalid: status/);
  });
});

describe("API versions (kube/api-versions.ts)", () => {
  async function server137() {
    const server = await startApiServer({ objects: objects(), kubernetesVersion: "1.37" });
    stops.push(() => server.stop());
    const calls: string[] = [];
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), (c) => calls.push(`${c.operation}:${c.outcome}`));
    /** Created through the API, in the version a kubelet of that form writes. */
    const create = async (pcr: ReturnType<typeof pcrFor>) => {
      const res = await fetch(`${server.url}/apis/${pcr.apiVersion}/namespaces/${NS}/podcertificaterequests`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(pcr) });
      expect(res.status, await res.clone().text()).toBe(201);
    };
    return { server, api, calls, create };
  }

  it("on 1.37 reads and writes v1; a 1.35 kubelet's PKIX-key request is read again through v1beta1 and its status written there", async () => {
    const { api, calls, create, server } = await server137();
    const pkix = pcrFor(p, { signerName: SIGNER, name: "req-pkix", uid: "7e4d3c2b-1a09-4f8e-9d7c-6b5a49382716" });
    const csr = { ...pcrFor(p, { signerName: SIGNER, name: "req-csr", uid: "8e4d3c2b-1a09-4f8e-9d7c-6b5a49382716", form: "csr" }), apiVersion: "certificates.k8s.io/v1" };
    await create(pkix);
    await create(csr);

    const readCsr = (await api.readPcr(NS, "req-csr"))!;
    expect(readCsr.apiVersion).toBe("certificates.k8s.io/v1");
    expect(readCsr.spec.stubPKCS10Request).toBe(csr.spec.stubPKCS10Request);
    expect(calls.filter((c) => c.startsWith("get podcertificaterequest"))).toEqual(["get podcertificaterequest:ok"]);

    calls.length = 0;
    const readPkix = (await api.readPcr(NS, "req-pkix"))!;
    // v1 shows it without a key; the second read, through v1beta1, has it.
    expect(calls).toEqual(["get podcertificaterequest:ok", "get podcertificaterequest:ok"]);
    expect(readPkix.apiVersion).toBe("certificates.k8s.io/v1beta1");
    expect(readPkix.spec.pkixPublicKey).toBe(pkix.spec.pkixPublicKey);
    expect(readPkix.spec.proofOfPossession).toBe(pkix.spec.proofOfPossession);

    const status = deniedStatus({ reason: "UnsupportedKeyType", message: "no", permanent: false, now: new Date() });
    for (const read of [readCsr, readPkix]) {
      const written = (await api.replacePcrStatus(read, status))!;
      expect(written.apiVersion).toBe(read.apiVersion);
      expect(written.status?.conditions?.[0]).toMatchObject({ type: "Denied" });
    }
    // Lists come in v1 (what resync and `podcert status` need: names, signers, conditions).
    const listed = await api.listPcrs({ signerName: SIGNER });
    expect(listed.map((x) => [x.metadata.name, x.apiVersion, x.status?.conditions?.[0]?.type])).toEqual([
      ["req-csr", "certificates.k8s.io/v1", "Denied"],
      ["req-pkix", "certificates.k8s.io/v1", "Denied"],
    ]);
    expect(server.kubernetesVersion).toBe("1.37");
  });

  it("on 1.37 writes ClusterTrustBundles through v1, whatever version they were built in", async () => {
    const { api, calls } = await server137();
    const bundle = { apiVersion: "certificates.k8s.io/v1beta1", kind: "ClusterTrustBundle" as const, metadata: { name: "test.example:signer:bundle", labels: { "app.kubernetes.io/managed-by": "podcert" } }, spec: { signerName: "test.example/signer", trustBundle: await caPem() } };
    await api.createTrustBundle(bundle);
    const listed = await api.listTrustBundles("app.kubernetes.io/managed-by=podcert");
    expect(listed.map((b) => [b.metadata.name, b.apiVersion])).toEqual([["test.example:signer:bundle", "certificates.k8s.io/v1"]]);
    expect(calls.filter((c) => c.includes("clustertrustbundles"))).toEqual(["create clustertrustbundles:ok", "list clustertrustbundles:ok"]);
  });

  it.each(["1.35", "1.36"] as const)("on %s (no v1 served) reads and lists v1beta1", async (kubernetesVersion) => {
    const pcr = pcrFor(p, { signerName: SIGNER });
    const server = await startApiServer({ objects: [...objects(), pcr], kubernetesVersion });
    stops.push(() => server.stop());
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
    expect(await api.certificatesApis()).toEqual({ pcr: "v1beta1", ctb: "v1beta1" });
    expect((await api.readPcr(NS, pcr.metadata.name))?.apiVersion).toBe("certificates.k8s.io/v1beta1");
    expect((await api.listPcrs())[0]?.apiVersion).toBe("certificates.k8s.io/v1beta1");
  });
});

/** One CA certificate (PEM) for a trust bundle. */
async function caPem(): Promise<string> {
  const now = new Date();
  const pool = parseCaPool(serializeCaPool(await createCaPool(["test.example/signer"], { keyAlgorithm: "ECDSAP256", validityDays: 1, now })));
  return trustBundlePem(pool, "test.example/signer");
}

describe("events", () => {
  it("creates a core Event about the PCR", async () => {
    const pcr = pcrFor(p, { signerName: SIGNER });
    const { api, server } = await embedded([...objects(), pcr]);
    const regarding = { kind: "PodCertificateRequest", apiVersion: "certificates.k8s.io/v1beta1", namespace: NS, name: pcr.metadata.name, uid: pcr.metadata.uid! };
    await api.createEvent({ regarding, type: "Normal", reason: "Issued", message: "issued", reportingComponent: "podcert-sign" });
    const events = server.store.list("events", { namespace: NS }).items as unknown as { reason: string; involvedObject: { uid: string }; metadata: { name: string } }[];
    expect(events.map((e) => [e.reason, e.involvedObject.uid])).toEqual([["Issued", pcr.metadata.uid]]);
    expect(events[0]!.metadata.name.startsWith(`${pcr.metadata.name}.`)).toBe(true);
  });
});

describe("failures", () => {
  it("sends the kubeconfig's credentials (client-node's authentication is applied)", async () => {
    const { url, seen } = await scripted({ status: 200, body: '{"kind":"Node","metadata":{"name":"n"}}' });
    const kubeconfig = kubeconfigFor(url).replace("user: {}", "user:\n      token: s3cr3t-token");
    expect(kubeconfig).toContain("s3cr3t-token");
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfig }));
    await api.readNode("n");
    expect(seen[0]!.headers.authorization).toBe("Bearer s3cr3t-token");
    expect(seen[0]!.headers.accept).toBe("application/json");
  });

  it("talks TLS to an API server whose CA the kubeconfig names, reusing one connection, and refuses another CA", async () => {
    const now = new Date();
    const pool = parseCaPool(serializeCaPool(await createCaPool(["test.example/signer"], { keyAlgorithm: "ECDSAP256", validityDays: 1, now })));
    const ca = activeCa(pool, "test.example/signer", now);
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const leaf = issueLeaf(ca.signer, {
      spkiDer: publicKey.export({ type: "spki", format: "der" }),
      keyType: "ECDSAP256",
      uris: ["spiffe://test.example/apiserver"],
      dnsNames: ["localhost"],
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 3_600_000),
      extensions: [],
    });
    const sockets = new Set<unknown>();
    const server = createHttpsServer({ key: privateKey.export({ type: "pkcs8", format: "pem" }), cert: leaf.chainPem }, (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"kind":"Node","metadata":{"name":"n"}}');
    });
    server.on("secureConnection", (s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    stops.push(() => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))));
    const port = (server.address() as AddressInfo).port;
    const kubeconfig = (caPem: string) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server: `https://localhost:${port}`, "certificate-authority-data": Buffer.from(caPem).toString("base64") } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
        "current-context": "c",
      });
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfig(trustBundlePem(pool, "test.example/signer")) }));
    for (let i = 0; i < 10; i++) expect((await api.readNode("n"))?.metadata.name).toBe("n");
    // Kept-alive connections for ten calls (undici may open a second while the first is being
    // released); client-node 2.0.1 alone makes a new Agent, so a new handshake, per call.
    expect(sockets.size).toBeLessThanOrEqual(2);

    const other = parseCaPool(serializeCaPool(await createCaPool(["other.example/signer"], { keyAlgorithm: "ECDSAP256", validityDays: 1, now })));
    const untrusting = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfig(trustBundlePem(other, "other.example/signer")) }));
    await expect(untrusting.readNode("n")).rejects.toBeInstanceOf(TransientError);
  });

  it("maps 429 to an overloaded TransientError with the Status message", async () => {
    const { url } = await scripted({ status: 429, body: '{"kind":"Status","message":"too many requests, please try again later"}' });
    const calls: string[] = [];
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }), (c) => calls.push(c.outcome));
    const err = await api.readPod(NS, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).overloaded).toBe(true);
    expect((err as Error).message).toContain("HTTP 429: too many requests");
    expect(calls).toEqual(["error"]);
  });

  it("treats 403 and 500 as transient: RBAC or an unwell API server never deny a request", async () => {
    for (const status of [403, 500]) {
      const { url } = await scripted({ status, body: "<html>oops</html>" });
      const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }));
      const err = await api.readServiceAccount(NS, "web").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransientError);
      expect((err as TransientError).overloaded).toBe(false);
      expect((err as Error).message).toContain(`HTTP ${status}: <html>oops</html>`);
    }
  });

  it("treats a 200 whose body is not a JSON object as transient", async () => {
    for (const body of ["not json", "null", "[1]", "\"text\""]) {
      const { url } = await scripted({ status: 200, body });
      const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }));
      await expect(api.readNode("n")).rejects.toBeInstanceOf(TransientError);
    }
  });

  it("gives up on an API server that does not answer, as a transient failure", async () => {
    const silent: Server = createServer(() => {
      // Never answers.
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    stops.push(() => new Promise((r) => (silent.closeAllConnections(), silent.close(() => r()))));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }), () => {}, { timeoutMs: 200 });
    const err = await api.readNode("n").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/^Kubernetes API get node failed: .*[Tt]imeout/);
  });

  it("gives up within the Broker's per-attempt delivery timeout, and before the API fault plan's default slow answer", () => {
    const delivery = parseBrokerDelivery(readFileSync("knative/broker.yaml", "utf8"), "podcert");
    expect(delivery.timeoutMs).toBeDefined();
    expect(API_TIMEOUT_MS).toBeLessThan(delivery.timeoutMs!);
    expect(API_TIMEOUT_MS).toBeLessThan(DEFAULT_SLOW_MS);
  });

  it("treats an unreachable API server as transient", async () => {
    const { server, api } = await embedded(objects());
    await server.stop();
    const err = await api.readPod(NS, p.metadata.name).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/^Kubernetes API get pod failed: /);
  });

  it("refuses a kubeconfig with no current context at construction, not at the first call", () => {
    const kubeconfig = kubeconfigFor("http://127.0.0.1:1").replace(/current-context: .*/, "");
    expect(kubeconfig).not.toContain("current-context");
    expect(() => new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfig }))).toThrow(/names no cluster server/);
  });
});

describe("watchServices", () => {
  const watch = (api: KubeClusterApi) => api.watchServices(NS, { resourceVersion: "5", timeoutSeconds: 60, signal: new AbortController().signal }, () => {});
  const scriptedApi = async (answer: Answer) => new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor((await scripted(answer)).url) }));

  it("asks from the resourceVersion with BOOKMARKs and a timeout, and hands on each event of the stream", async () => {
    const lines = [
      { type: "ADDED", object: { metadata: { name: "web", namespace: NS, resourceVersion: "6" }, spec: {} } },
      { type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } },
      { type: "DELETED", object: { metadata: { name: "web", namespace: NS, resourceVersion: "8" }, spec: {} } },
    ];
    const s = await scripted({ status: 200, body: lines.map((l) => JSON.stringify(l)).join("\n") + "\n" });
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(s.url) }));
    const seen: string[] = [];
    await api.watchServices(NS, { resourceVersion: "5", timeoutSeconds: 60, signal: new AbortController().signal }, (e) =>
      seen.push(e.type === "BOOKMARK" ? `BOOKMARK ${e.resourceVersion}` : `${e.type} ${e.object.metadata.name}`));
    expect(seen).toEqual(["ADDED web", "BOOKMARK 7", "DELETED web"]);
    expect(s.seen[0]?.url).toBe(`/api/v1/namespaces/${NS}/services?watch=true&allowWatchBookmarks=true&timeoutSeconds=60&resourceVersion=5`);
  });

  it("maps 410 (an answer or an ERROR event) to ResourceExpiredError, anything else to TransientError", async () => {
    const expired = { kind: "Status", apiVersion: "v1", status: "Failure", code: 410, reason: "Expired", message: "too old resource version: 5 (9)" };
    await expect(watch(await scriptedApi({ status: 410, body: JSON.stringify(expired) }))).rejects.toBeInstanceOf(ResourceExpiredError);
    await expect(watch(await scriptedApi({ status: 200, body: `${JSON.stringify({ type: "ERROR", object: expired })}\n` }))).rejects.toBeInstanceOf(ResourceExpiredError);
    for (const answer of [
      { status: 403, body: JSON.stringify({ kind: "Status", code: 403, message: "forbidden" }) },
      { status: 200, body: `${JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 500, message: "internal" } })}\n` },
      { status: 200, body: "not json\n" },
    ]) {
      const e = await watch(await scriptedApi(answer)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(TransientError);
      expect(e).not.toBeInstanceOf(ResourceExpiredError);
    }
  });

  it("maps an HTTP status to the same error as any other call, with the same outcome observed", async () => {
    for (const status of [403, 409, 429, 500]) {
      const { url } = await scripted({ status, body: JSON.stringify({ kind: "Status", code: status, message: `status ${status}` }) });
      const outcomes: string[] = [];
      const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor(url) }), (c) => outcomes.push(c.outcome));
      const fromCall = (await api.readService(NS, "web").catch((e: unknown) => e)) as Error;
      const fromWatch = (await watch(api).catch((e: unknown) => e)) as Error;
      expect(fromWatch.constructor).toBe(fromCall.constructor);
      expect(fromCall).toBeInstanceOf(status === 409 ? ConflictError : TransientError);
      expect(fromWatch.message).toBe(fromCall.message.replace("get service", "watch services"));
      if (fromCall instanceof TransientError) expect((fromWatch as TransientError).overloaded).toBe(fromCall.overloaded);
      expect(outcomes).toEqual([status === 409 ? "conflict" : "error", status === 409 ? "conflict" : "error"]);
    }
  });
});
