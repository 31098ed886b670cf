// The embedded API server with authentication and RBAC on, over HTTP: 401 and 403 as
// kube-apiserver answers them, authorization before routing, the `sign` check on PCR status writes,
// and the record of every refusal.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceAccountUser } from "../../../../local-cluster/apiserver/rbac.js";
import { ADMIN_USER, startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import { ConfigError, TransientError } from "../../../../shared/errors.js";
import { KubeClusterApi, loadKubeConfig } from "../../../../shared/kube/client-node.js";

const G = "rbac.authorization.k8s.io";
const V1 = `${G}/v1`;
const CERTS = "certificates.k8s.io";
const SIGNER = "example.com/identity";
const PCRS = `/apis/${CERTS}/v1beta1/namespaces/n/podcertificaterequests`;
const DERIVE = serviceAccountUser("podcert", "podcert-derive-sans");
const LONELY = serviceAccountUser("podcert", "lonely");
const person = (name: string) => ({ name, groups: ["system:authenticated"] });

const role = (name: string, rules: unknown[]) => ({ apiVersion: V1, kind: "ClusterRole", metadata: { name }, rules });
const bind = (name: string, subjects: unknown[]) => ({
  apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name }, roleRef: { apiGroup: G, kind: "ClusterRole", name }, subjects,
});
const user = (name: string) => ({ kind: "User", apiGroup: G, name });

const RBAC = [
  // derive-sans as knative/rbac.yaml had it before: services may be listed, not read one by one.
  role("svc-list", [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }, { apiGroups: [""], resources: ["services"], verbs: ["list"] }]),
  bind("svc-list", [{ kind: "ServiceAccount", name: "podcert-derive-sans", namespace: "podcert" }]),
  role("status-writer", [
    { apiGroups: [CERTS], resources: ["podcertificaterequests"], verbs: ["get"] },
    { apiGroups: [CERTS], resources: ["podcertificaterequests/status"], verbs: ["update"] },
  ]),
  bind("status-writer", [user("no-sign"), user("signs"), user("signs-domain")]),
  role("signs", [{ apiGroups: [CERTS], resources: ["signers"], resourceNames: [SIGNER], verbs: ["sign"] }]),
  bind("signs", [user("signs")]),
  role("signs-domain", [{ apiGroups: [CERTS], resources: ["signers"], resourceNames: ["example.com/*"], verbs: ["sign"] }]),
  bind("signs-domain", [user("signs-domain")]),
];

const pcr = (name: string) => ({
  apiVersion: `${CERTS}/v1beta1`,
  kind: "PodCertificateRequest",
  metadata: { name, namespace: "n" },
  spec: {
    signerName: SIGNER, podName: "p", podUID: "u1", serviceAccountName: "sa", serviceAccountUID: "u2",
    nodeName: "node", nodeUID: "u3", pkixPublicKey: "AAAA", proofOfPossession: "AAAA",
  },
});

let api: EmbeddedApiServer;

beforeAll(async () => {
  api = await startApiServer({
    objects: [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: "n" } },
      { apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: "n" }, spec: { selector: { app: "a" } } },
      pcr("req-exact"), pcr("req-domain"), pcr("req-none"),
    ],
    authorization: { rbac: RBAC, users: [DERIVE, LONELY, person("no-sign"), person("signs"), person("signs-domain")] },
  });
});

afterAll(async () => {
  await api?.stop();
});

async function call(who: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (who !== undefined) headers.authorization = `Bearer ${api.token(who)}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${api.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, body: text.startsWith("{") ? (JSON.parse(text) as Record<string, unknown>) : { text } };
}

const status = (code: number, reason: string, message: string, details?: Record<string, unknown>) => ({
  kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code,
});

describe("authentication", () => {
  it("answers 401 Unauthorized without a known bearer token, even for /version", async () => {
    const unauthorized = status(401, "Unauthorized", "Unauthorized");
    const before = api.refusedRequests().length;
    for (const authorization of [undefined, "Bearer not-a-token", `Basic ${api.token()}`, "Bearer "]) {
      const res = await fetch(`${api.url}/version`, { headers: authorization === undefined ? {} : { authorization } });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual(unauthorized);
    }
    expect(api.refusedRequests().slice(before)).toEqual(Array(4).fill({ method: "GET", url: "/version", code: 401, message: "Unauthorized" }));
  });

  it("gives each user its own token, and a kubeconfig holding it; an unknown user is a ConfigError", () => {
    expect(api.token(DERIVE.name)).not.toBe(api.token());
    expect(api.kubeconfig(DERIVE.name)).toContain(`token: ${api.token(DERIVE.name)}`);
    expect(api.kubeconfig()).toContain(`token: ${api.token(ADMIN_USER.name)}`);
    expect(() => api.kubeconfig("system:serviceaccount:podcert:nobody")).toThrow(ConfigError);
  });
});

describe("authorization", () => {
  it("answers 403 as kube-apiserver does to a read the role lacks, and allows what it grants", async () => {
    expect(await call(DERIVE.name, "GET", "/api/v1/namespaces/n/services/api")).toEqual({
      status: 403,
      body: status(403, "Forbidden", 'services "api" is forbidden: User "system:serviceaccount:podcert:podcert-derive-sans" cannot get resource "services" in API group "" in the namespace "n"', { name: "api", kind: "services" }),
    });
    expect((await call(DERIVE.name, "GET", "/api/v1/namespaces/n/services")).status).toBe(200);
    expect((await call(DERIVE.name, "GET", "/api/v1/namespaces/n/services?watch=true")).body).toEqual(
      status(403, "Forbidden", 'services is forbidden: User "system:serviceaccount:podcert:podcert-derive-sans" cannot watch resource "services" in API group "" in the namespace "n"', { kind: "services" }),
    );
    // A ClusterRoleBinding grants across namespaces too.
    expect((await call(DERIVE.name, "GET", "/api/v1/services")).status).toBe(200);
    expect((await call(DERIVE.name, "GET", "/api/v1/nodes")).body).toEqual(
      status(403, "Forbidden", 'nodes is forbidden: User "system:serviceaccount:podcert:podcert-derive-sans" cannot list resource "nodes" in API group "" at the cluster scope', { kind: "nodes" }),
    );
    expect((await call(ADMIN_USER.name, "GET", "/api/v1/namespaces/n/services/api")).status).toBe(200);
  });

  it("authorizes before routing: a path nobody serves is 403 to those without a rule, 404 to the admin", async () => {
    expect((await call(LONELY.name, "GET", "/api/v1/namespaces/n/secrets/x")).body).toEqual(
      status(403, "Forbidden", 'secrets "x" is forbidden: User "system:serviceaccount:podcert:lonely" cannot get resource "secrets" in API group "" in the namespace "n"', { name: "x", kind: "secrets" }),
    );
    expect((await call(ADMIN_USER.name, "GET", "/api/v1/namespaces/n/secrets/x")).status).toBe(404);
  });

  it("lets every authenticated user read /version and discovery (bootstrap roles), and nothing else", async () => {
    for (const path of ["/version", "/healthz", "/api", "/api/v1", "/apis", `/apis/${CERTS}/v1beta1`]) {
      expect((await call(LONELY.name, "GET", path)).status, path).toBe(200);
    }
    expect((await call(LONELY.name, "GET", "/metrics")).body).toEqual(
      status(403, "Forbidden", 'forbidden: User "system:serviceaccount:podcert:lonely" cannot get path "/metrics"', {}),
    );
    expect((await call(LONELY.name, "GET", "/api/v1/nodes/n1")).body).toEqual(
      status(403, "Forbidden", 'nodes "n1" is forbidden: User "system:serviceaccount:podcert:lonely" cannot get resource "nodes" in API group "" at the cluster scope', { name: "n1", kind: "nodes" }),
    );
  });

  it("records each refusal with what was refused", async () => {
    const before = api.refusedRequests().length;
    await call(DERIVE.name, "GET", "/api/v1/namespaces/n/services/api?x=1");
    expect(api.refusedRequests().slice(before)).toEqual([{
      user: DERIVE.name, method: "GET", url: "/api/v1/namespaces/n/services/api?x=1", code: 403,
      verb: "get", apiGroup: "", resource: "services", namespace: "n", name: "api",
      message: 'services "api" is forbidden: User "system:serviceaccount:podcert:podcert-derive-sans" cannot get resource "services" in API group "" in the namespace "n"',
    }]);
  });

  it("reaches client-node's callers as a transient error carrying kube's message", async () => {
    const kube = new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig(DERIVE.name) }));
    expect((await kube.listServices("n")).map((s) => s.metadata.name)).toEqual(["api"]);
    const err = await kube.readService("n", "api").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toBe('Kubernetes API get service failed with HTTP 403: services "api" is forbidden: User "system:serviceaccount:podcert:podcert-derive-sans" cannot get resource "services" in API group "" in the namespace "n"');
  });
});

describe("the sign check on PodCertificateRequest status writes", () => {
  const denied = () => ({ conditions: [{ type: "Denied", status: "True", reason: "Nope", message: "no", lastTransitionTime: new Date().toISOString() }] });
  const put = (who: string, name: string, st: unknown) => call(who, "PUT", `${PCRS}/${name}/status`, { ...pcr(name), status: st });

  it("refuses a status change from a user who may update the status but not sign for the signer (422)", async () => {
    const before = api.refusedRequests().length;
    const r = await put("no-sign", "req-none", denied());
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({
      reason: "Invalid",
      message: `PodCertificateRequest.${CERTS} "req-none" is invalid: spec.signerName: Forbidden: User "no-sign" is not permitted to "sign" for signer "${SIGNER}"`,
      details: { name: "req-none", group: CERTS, kind: "PodCertificateRequest", causes: [{ reason: "FieldValueForbidden", field: "spec.signerName", message: `Forbidden: User "no-sign" is not permitted to "sign" for signer "${SIGNER}"` }] },
    });
    expect((api.store.get("podcertificaterequests", "n", "req-none") as { status?: unknown }).status ?? {}).toEqual({});
    expect(api.refusedRequests().slice(before)).toEqual([expect.objectContaining({ user: "no-sign", code: 422, verb: "sign", apiGroup: CERTS, resource: "signers", name: SIGNER })]);
  });

  it("checks the status rules first, and needs no `sign` for a write that changes nothing", async () => {
    const bad = await put("no-sign", "req-none", { conditions: [{ type: "Denied", status: "True", reason: "", lastTransitionTime: new Date().toISOString() }] });
    expect(bad.status).toBe(422);
    expect(bad.body.message).toMatch(/status\.conditions\[0\]\.reason: Required value/);
    expect((await put("no-sign", "req-none", {})).status).toBe(200);
  });

  it("allows it with `sign` on the signer's name, or on its domain's wildcard", async () => {
    expect((await put("signs", "req-exact", denied())).status).toBe(200);
    expect((await put("signs-domain", "req-domain", denied())).status).toBe(200);
    expect(api.store.get("podcertificaterequests", "n", "req-domain")?.status).toMatchObject({ conditions: [{ type: "Denied" }] });
  });

  it("allows the admin (cluster-admin holds every verb on every resource, signers included)", async () => {
    const r = await put(ADMIN_USER.name, "req-none", denied());
    expect(r.status).toBe(200);
  });
});

describe("configuration", () => {
  it("refuses RBAC documents kube-apiserver would refuse, naming each problem", async () => {
    await expect(startApiServer({
      authorization: { rbac: [{ apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name: "x" }, roleRef: { apiGroup: G, kind: "Role", name: "r" }, subjects: [] }], users: [] },
    })).rejects.toThrow(/ClusterRoleBinding x: roleRef\.kind: Unsupported value: "Role"/);
  });

  it("without `authorization`, asks for nothing and hands out kubeconfigs without credentials", async () => {
    const open = await startApiServer();
    try {
      expect(open.token()).toBeUndefined();
      expect(open.kubeconfig("anyone")).toContain("user: {}");
      expect((await fetch(`${open.url}/api/v1/nodes`)).status).toBe(200);
      expect(open.refusedRequests()).toEqual([]);
    } finally {
      await open.stop();
    }
  });
});
