// ConfigMaps as kube-apiserver validates them (tables over the pure functions), and served over
// HTTP to @kubernetes/client-node like every core kind: CRUD, list and watch with selectors, 400
// for what Go would not decode, 422 with kube's messages, and RBAC.
import "reflect-metadata";

import { ApiException, CoreV1Api, KubeConfig, Watch, type V1ConfigMap } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  configMapKeyErrors,
  MAX_CONFIG_MAP_SIZE,
  validateConfigMap,
  validateConfigMapUpdate,
} from "../../../../local-cluster/apiserver/config-maps.js";
import { serviceAccountUser } from "../../../../local-cluster/apiserver/rbac.js";
import type { KubeObject } from "../../../../local-cluster/apiserver/resources.js";
import { startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import { deepEqual } from "../../../../local-cluster/apiserver/store.js";

const KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

const cm = (o: { data?: Record<string, string>; binaryData?: Record<string, string>; immutable?: boolean; labels?: Record<string, string> } = {}): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "cfg", namespace: "ns", ...(o.labels ? { labels: o.labels } : {}) },
  ...(o.data ? { data: o.data } : {}),
  ...(o.binaryData ? { binaryData: o.binaryData } : {}),
  ...(o.immutable === undefined ? {} : { immutable: o.immutable }),
});
const messages = (causes: { field?: string; message: string }[]) => causes.map((c) => `${c.field}: ${c.message}`);

describe("IsConfigMapKey", () => {
  it.each([
    { case: "letters, digits, '-', '_', '.'", key: "config.yaml_v2-x", want: [] },
    { case: "a leading single dot", key: ".hidden", want: [] },
    { case: "'.'", key: ".", want: ["must not be '.'"] },
    { case: "'..'", key: "..", want: ["must not be '..'"] },
    { case: "a leading '..'", key: "..data", want: ["must not start with '..'"] },
    { case: "a '/'", key: "a/b", want: [KEY_MSG] },
    { case: "an empty key", key: "", want: [KEY_MSG] },
    { case: "254 characters", key: "k".repeat(254), want: ["must be no more than 253 characters"] },
    { case: "253 characters", key: "k".repeat(253), want: [] },
  ])("$case", ({ key, want }) => {
    expect(configMapKeyErrors(key)).toEqual(want);
  });
});

describe("ValidateConfigMap", () => {
  it("names the key of each bad entry, in data and binaryData", () => {
    expect(messages(validateConfigMap(cm({ data: { "bad/key": "v", ok: "v" }, binaryData: { "..x": "AA==" } })))).toEqual([
      `data[bad/key]: Invalid value: "bad/key": ${KEY_MSG}`,
      `binaryData[..x]: Invalid value: "..x": must not start with '..'`,
    ]);
  });

  it("refuses a key present in both data and binaryData, on the data side", () => {
    expect(messages(validateConfigMap(cm({ data: { both: "v" }, binaryData: { both: "AA==" } })))).toEqual([
      'data[both]: Invalid value: "both": duplicate of key present in binaryData',
    ]);
  });

  it("counts data bytes (UTF-8) and decoded binaryData bytes together against 1 MiB", () => {
    const half = MAX_CONFIG_MAP_SIZE / 2;
    const bin = (n: number) => Buffer.alloc(n, 1).toString("base64");
    expect(validateConfigMap(cm({ data: { a: "x".repeat(half) }, binaryData: { b: bin(half) } }))).toEqual([]);
    const over = [{ reason: "FieldValueTooLong", field: "", message: "Too long: may not be more than 1048576 bytes" }];
    expect(validateConfigMap(cm({ data: { a: "x".repeat(half) }, binaryData: { b: bin(half + 1) } }))).toEqual(over);
    // 2-byte characters: fewer characters than the limit, more bytes.
    expect(validateConfigMap(cm({ data: { a: "é".repeat(half + 1) } }))).toEqual(over);
  });

  it("accepts an empty ConfigMap", () => {
    expect(validateConfigMap(cm())).toEqual([]);
  });
});

describe("ValidateConfigMapUpdate", () => {
  const update = (next: KubeObject, old: KubeObject) => messages(validateConfigMapUpdate(next, old, (a, b) => deepEqual(a, b)));
  const frozen = (path: string) => `${path}: Forbidden: field is immutable when \`immutable\` is set`;

  it("lets a mutable ConfigMap change anything, and become immutable", () => {
    expect(update(cm({ data: { a: "2" }, immutable: true }), cm({ data: { a: "1" } }))).toEqual([]);
  });

  it.each([
    { case: "changed data", next: cm({ data: { a: "2" }, immutable: true }), want: [frozen("data")] },
    { case: "data removed", next: cm({ immutable: true }), want: [frozen("data")] },
    { case: "changed binaryData", next: cm({ data: { a: "1" }, binaryData: { b: "AA==" }, immutable: true }), want: [frozen("binaryData")] },
    { case: "immutable unset", next: cm({ data: { a: "1" } }), want: [frozen("immutable")] },
    { case: "immutable false and data changed", next: cm({ data: { a: "2" }, immutable: false }), want: [frozen("immutable"), frozen("data")] },
    { case: "only labels changed", next: cm({ data: { a: "1" }, immutable: true, labels: { x: "y" } }), want: [] },
  ])("an immutable ConfigMap with $case", ({ next, want }) => {
    expect(update(next, cm({ data: { a: "1" }, immutable: true }))).toEqual(want);
  });
});

// ---------------------------------------------------------------------------------------------
// Over HTTP, with RBAC

const G = "rbac.authorization.k8s.io";
const PUBLISHER = serviceAccountUser("podcert", "publisher");
const READER = serviceAccountUser("podcert", "reader");
const RBAC = [
  { apiVersion: `${G}/v1`, kind: "Role", metadata: { name: "bundles", namespace: "podcert" }, rules: [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list", "watch", "create", "update", "delete"] }] },
  { apiVersion: `${G}/v1`, kind: "RoleBinding", metadata: { name: "bundles", namespace: "podcert" }, roleRef: { apiGroup: G, kind: "Role", name: "bundles" }, subjects: [{ kind: "ServiceAccount", name: "publisher" }] },
  { apiVersion: `${G}/v1`, kind: "Role", metadata: { name: "read", namespace: "podcert" }, rules: [{ apiGroups: [""], resources: ["configmaps"], resourceNames: ["spiffe-bundle"], verbs: ["get"] }] },
  { apiVersion: `${G}/v1`, kind: "RoleBinding", metadata: { name: "read", namespace: "podcert" }, roleRef: { apiGroup: G, kind: "Role", name: "read" }, subjects: [{ kind: "ServiceAccount", name: "reader" }] },
];

let api: EmbeddedApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  api = await startApiServer({
    objects: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "podcert" } }, { apiVersion: "v1", kind: "Namespace", metadata: { name: "other" } }],
    authorization: { rbac: RBAC, users: [PUBLISHER, READER] },
  });
  core = clientFor(PUBLISHER.name);
});

afterAll(async () => {
  await api?.stop();
});

function clientFor(user: string): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(user));
  return kc.makeApiClient(CoreV1Api);
}

async function failure(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  if (!(e instanceof ApiException)) throw new Error(`expected an ApiException, got ${String(e)}`);
  const body = (typeof e.body === "string" ? JSON.parse(e.body) : e.body) as { message: string };
  return { code: e.code, message: body.message };
}

const body = (name: string, data: Record<string, string>, labels?: Record<string, string>): V1ConfigMap => ({ metadata: { name, ...(labels ? { labels } : {}) }, data });

describe("ConfigMaps over HTTP", () => {
  it("creates, reads, lists, replaces and deletes them", async () => {
    const created = await core.createNamespacedConfigMap({ namespace: "podcert", body: body("spiffe-bundle", { "bundle.jwks": "{}" }, { app: "podcert" }) });
    expect(created.metadata?.uid).toBeTruthy();
    expect((await core.readNamespacedConfigMap({ namespace: "podcert", name: "spiffe-bundle" })).data).toEqual({ "bundle.jwks": "{}" });
    const replaced = await core.replaceNamespacedConfigMap({ namespace: "podcert", name: "spiffe-bundle", body: { ...created, data: { "bundle.jwks": '{"keys":[]}' } } });
    expect(replaced.data).toEqual({ "bundle.jwks": '{"keys":[]}' });
    expect(Number(replaced.metadata?.resourceVersion)).toBeGreaterThan(Number(created.metadata?.resourceVersion));
    // A stale resourceVersion is a conflict, as for every kind.
    expect((await failure(core.replaceNamespacedConfigMap({ namespace: "podcert", name: "spiffe-bundle", body: created }))).code).toBe(409);

    await core.createNamespacedConfigMap({ namespace: "podcert", body: body("unrelated", { a: "b" }) });
    const listed = await core.listNamespacedConfigMap({ namespace: "podcert", labelSelector: "app=podcert" });
    expect(listed.items.map((c) => c.metadata?.name)).toEqual(["spiffe-bundle"]);

    await core.deleteNamespacedConfigMap({ namespace: "podcert", name: "unrelated" });
    expect((await failure(core.readNamespacedConfigMap({ namespace: "podcert", name: "unrelated" }))).code).toBe(404);
  });

  it("watches them", async () => {
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig(PUBLISHER.name));
    const seen: string[] = [];
    const req = await new Watch(kc).watch("/api/v1/namespaces/podcert/configmaps", { fieldSelector: "metadata.name=watched" }, (type: string, obj: V1ConfigMap) => {
      seen.push(`${type} ${JSON.stringify(obj.data)}`);
    }, () => undefined);
    try {
      const created = await core.createNamespacedConfigMap({ namespace: "podcert", body: body("watched", { v: "1" }) });
      await core.replaceNamespacedConfigMap({ namespace: "podcert", name: "watched", body: { ...created, data: { v: "2" } } });
      await core.deleteNamespacedConfigMap({ namespace: "podcert", name: "watched" });
      for (let i = 0; i < 100 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual(['ADDED {"v":"1"}', 'MODIFIED {"v":"2"}', 'DELETED {"v":"2"}']);
    } finally {
      req.abort();
    }
  });

  it("answers 422 with kube-apiserver's message for a bad name or key", async () => {
    expect(await failure(core.createNamespacedConfigMap({ namespace: "podcert", body: body("Bad_Name", {}) }))).toMatchObject({ code: 422 });
    expect(await failure(core.createNamespacedConfigMap({ namespace: "podcert", body: body("keys", { "a/b": "v" }) }))).toEqual({
      code: 422,
      message: `ConfigMap "keys" is invalid: data[a/b]: Invalid value: "a/b": ${KEY_MSG}`,
    });
  });

  it("answers 400 for a value Go would not decode: a number in data, bad base64 in binaryData", async () => {
    const raw = (obj: unknown) => fetch(`${api.url}/api/v1/namespaces/podcert/configmaps`, {
      method: "POST",
      headers: { authorization: `Bearer ${api.token(PUBLISHER.name)}`, "content-type": "application/json" },
      body: JSON.stringify(obj),
    });
    const number = await raw({ metadata: { name: "typed" }, data: { port: 8080 } });
    expect(number.status).toBe(400);
    expect(((await number.json()) as { message: string }).message).toBe('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string');
    expect((await raw({ metadata: { name: "typed" }, binaryData: { b: "not base64!" } })).status).toBe(400);
    expect(api.store.get("configmaps", "podcert", "typed")).toBeUndefined();
  });

  it("keeps an immutable ConfigMap's data (422) while its labels may change", async () => {
    const created = await core.createNamespacedConfigMap({ namespace: "podcert", body: { ...body("frozen", { a: "1" }), immutable: true } });
    expect(await failure(core.replaceNamespacedConfigMap({ namespace: "podcert", name: "frozen", body: { ...created, data: { a: "2" } } }))).toEqual({
      code: 422,
      message: 'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set',
    });
    const relabelled = await core.replaceNamespacedConfigMap({ namespace: "podcert", name: "frozen", body: { ...created, metadata: { ...created.metadata, labels: { x: "y" } } } });
    expect(relabelled.metadata?.labels).toEqual({ x: "y" });
  });

  it("applies RBAC as to every resource: the Role's namespace only, and resourceNames", async () => {
    const denied = await failure(core.listNamespacedConfigMap({ namespace: "other" }));
    expect(denied).toEqual({
      code: 403,
      message: `configmaps is forbidden: User "${PUBLISHER.name}" cannot list resource "configmaps" in API group "" in the namespace "other"`,
    });
    const reader = clientFor(READER.name);
    expect((await reader.readNamespacedConfigMap({ namespace: "podcert", name: "spiffe-bundle" })).metadata?.name).toBe("spiffe-bundle");
    expect((await failure(reader.readNamespacedConfigMap({ namespace: "podcert", name: "frozen" }))).code).toBe(403);
    expect((await failure(reader.createNamespacedConfigMap({ namespace: "podcert", body: body("mine", {}) }))).code).toBe(403);
  });

  it("is listed by discovery", async () => {
    const res = await fetch(`${api.url}/api/v1`, { headers: { authorization: `Bearer ${api.token()}` } });
    const doc = (await res.json()) as { resources: { name: string; namespaced: boolean; kind: string }[] };
    expect(doc.resources).toContainEqual(expect.objectContaining({ name: "configmaps", namespaced: true, kind: "ConfigMap" }));
  });
});
