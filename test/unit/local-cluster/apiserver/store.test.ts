import { describe, expect, it } from "vitest";

import { ApiError } from "../../../../local-cluster/apiserver/status.js";
import { ObjectStore, type KubeObject, type WatchEvent } from "../../../../local-cluster/apiserver/store.js";

const NOW = new Date("2030-01-02T03:04:05.678Z");

function store(historyLimit?: number): ObjectStore {
  const s = new ObjectStore({ now: () => NOW, ...(historyLimit ? { historyLimit } : {}) });
  s.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "ns" } });
  return s;
}

const pod = (name: string, labels?: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: "ns", ...(labels ? { labels } : {}) },
  spec: { nodeName: "node-1", serviceAccountName: "sa" },
  ...extra,
});

const pcr = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: "certificates.k8s.io/v1beta1",
  kind: "PodCertificateRequest",
  metadata: { name, namespace: "ns" },
  spec: {
    signerName: "example.com/s",
    podName: "p",
    podUID: "pu",
    serviceAccountName: "sa",
    serviceAccountUID: "su",
    nodeName: "n",
    nodeUID: "nu",
    pkixPublicKey: "AAAA",
    proofOfPossession: "AAAA",
  },
  ...extra,
});

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    return e as ApiError;
  }
  throw new Error("expected an ApiError");
}

function record(s: ObjectStore, resource: string, o: Parameters<ObjectStore["watch"]>[2] = {}) {
  const seen: string[] = [];
  const stop = s.watch(resource, (e: WatchEvent) => seen.push(`${e.type} ${e.object.metadata.name} ${e.object.metadata.resourceVersion}`), o);
  return { seen, stop };
}

describe("create", () => {
  it("assigns uid, a global resourceVersion and a whole-second creationTimestamp; keeps a given uid", () => {
    const s = store();
    const a = s.create(pod("a"));
    const b = s.create({ ...pod("b"), metadata: { name: "b", namespace: "ns", uid: "given", resourceVersion: "999", creationTimestamp: "2000-01-01T00:00:00Z" } });
    expect(a.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.metadata.uid).toBe("given");
    expect(Number(b.metadata.resourceVersion)).toBe(Number(a.metadata.resourceVersion) + 1);
    expect(a.metadata.creationTimestamp).toBe("2030-01-02T03:04:05Z");
    expect(b.metadata.creationTimestamp).toBe("2030-01-02T03:04:05Z"); // only seeding keeps it
    expect(s.resourceVersion).toBe(b.metadata.resourceVersion);
  });

  it("generates names from generateName", () => {
    const s = store();
    const names = new Set(Array.from({ length: 20 }, () => s.create({ ...pcr(""), metadata: { generateName: "req-", namespace: "ns" } }).metadata.name));
    expect(names.size).toBe(20);
    for (const n of names) expect(n).toMatch(/^req-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  });

  it("requires the namespace to exist, except when seeding", () => {
    const s = store();
    const e = apiError(() => s.create({ ...pod("a"), metadata: { name: "a", namespace: "missing" } }));
    expect(e.code).toBe(404);
    expect(e.message).toBe('namespaces "missing" not found');
    s.create({ ...pod("a"), metadata: { name: "a", namespace: "missing" } }, { seed: true });
    expect(s.get("Namespace", undefined, "missing")?.status).toEqual({ phase: "Active" });
  });

  it("validates names and required fields (422) and refuses duplicates (409)", () => {
    const s = store();
    expect(apiError(() => s.create(pod("Bad_Name"))).status).toMatchObject({ code: 422, reason: "Invalid", details: { causes: [{ field: "metadata.name" }] } });
    expect(apiError(() => s.create({ ...pod(""), metadata: { namespace: "ns" } })).code).toBe(422);
    s.create(pod("a"));
    expect(apiError(() => s.create(pod("a"))).status).toMatchObject({ code: 409, reason: "AlreadyExists", message: 'pods "a" already exists' });
    const missing = apiError(() => s.create({ ...pcr("x"), spec: { signerName: "example.com/s" } }));
    expect(missing.status.details?.causes?.map((c) => c.field)).toContain("spec.podUID");
    expect(apiError(() => s.create({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d" } })).code).toBe(400);
  });

  it("applies defaults: PCR maxExpirationSeconds, Service type and clusterIP", () => {
    const s = store();
    expect((s.create(pcr("a")).spec as { maxExpirationSeconds: number }).maxExpirationSeconds).toBe(86400);
    const svc = s.create({ apiVersion: "v1", kind: "Service", metadata: { name: "s", namespace: "ns" }, spec: { ports: [{ port: 80 }] } });
    expect(svc.spec).toMatchObject({ type: "ClusterIP", clusterIP: "10.96.0.10", clusterIPs: ["10.96.0.10"] });
    const svc2 = s.create({ apiVersion: "v1", kind: "Service", metadata: { name: "s2", namespace: "ns" } });
    expect((svc2.spec as { clusterIP: string }).clusterIP).toBe("10.96.0.11");
    const ext = s.create({ apiVersion: "v1", kind: "Service", metadata: { name: "e", namespace: "ns" }, spec: { type: "ExternalName", externalName: "x.example" } });
    expect((ext.spec as { clusterIP?: string }).clusterIP).toBeUndefined();
  });

  it("drops a PCR's status on create, keeps it when seeding", () => {
    const s = store();
    const status = { conditions: [{ type: "Denied", status: "True", reason: "X", message: "", lastTransitionTime: "2030-01-02T03:00:00Z" }] };
    expect(s.create(pcr("a", { status })).status).toBeUndefined();
    expect(s.create(pcr("b", { status }), { seed: true }).status).toEqual(status);
  });

  it("hands out copies; the store's own objects cannot be changed from outside", () => {
    const s = store();
    const a = s.create(pod("a"));
    a.metadata.labels = { changed: "yes" };
    expect(s.get("pods", "ns", "a")?.metadata.labels).toBeUndefined();
  });
});

describe("list", () => {
  it("filters by namespace, labels and fields, sorted by namespace/name", () => {
    const s = store();
    s.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "aaa" } });
    s.create(pod("b", { app: "web", tier: "front" }));
    s.create(pod("a", { app: "db" }));
    s.create({ ...pod("c", { app: "web" }), metadata: { name: "c", namespace: "aaa", labels: { app: "web" } } });
    const names = (o: Parameters<ObjectStore["list"]>[1]) => s.list("Pod", o).items.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
    expect(names({})).toEqual(["aaa/c", "ns/a", "ns/b"]);
    expect(names({ namespace: "ns" })).toEqual(["ns/a", "ns/b"]);
    expect(names({ labelSelector: "app=web" })).toEqual(["aaa/c", "ns/b"]);
    expect(names({ labelSelector: "app==web,tier" })).toEqual(["ns/b"]);
    expect(names({ labelSelector: "app!=web" })).toEqual(["ns/a"]);
    expect(names({ labelSelector: "!tier" })).toEqual(["aaa/c", "ns/a"]);
    expect(names({ labelSelector: "app notin (web)" })).toEqual(["ns/a"]);
    expect(names({ fieldSelector: "metadata.namespace=aaa" })).toEqual(["aaa/c"]);
    expect(names({ fieldSelector: "metadata.name!=a,spec.nodeName=node-1" })).toEqual(["aaa/c", "ns/b"]);
    expect(apiError(() => s.list("Pod", { fieldSelector: "spec.signerName=x" })).message).toBe("field label not supported: spec.signerName");
    expect(apiError(() => s.list("Pod", { labelSelector: "a=(b" })).code).toBe(400);
  });

  it("supports the PCR field selectors", () => {
    const s = store();
    s.create(pcr("a"));
    s.create({ ...pcr("b"), spec: { ...pcr("b").spec, signerName: "other.example/s", podName: "q", nodeName: "m" } });
    const names = (fieldSelector: string) => s.list("podcertificaterequests.certificates.k8s.io", { fieldSelector }).items.map((p) => p.metadata.name);
    expect(names("spec.signerName=example.com/s")).toEqual(["a"]);
    expect(names("spec.podName=q")).toEqual(["b"]);
    expect(names("spec.nodeName=n")).toEqual(["a"]);
    expect(names("metadata.name=b")).toEqual(["b"]);
  });
});

describe("replace and replaceStatus", () => {
  it("checks resourceVersion and uid preconditions (409) and keeps the status of the main resource", () => {
    const s = store();
    const a = s.create(pod("a", undefined, { status: { phase: "Running" } }));
    const updated = s.replace({ ...a, metadata: { ...a.metadata, labels: { x: "y" } }, status: { phase: "Failed" } });
    expect(updated.metadata.labels).toEqual({ x: "y" });
    expect(updated.status).toEqual({ phase: "Running" });
    expect(updated.metadata.uid).toBe(a.metadata.uid);
    const stale = apiError(() => s.replace(a));
    expect(stale.status).toMatchObject({ code: 409, reason: "Conflict" });
    expect(stale.message).toMatch(/the object has been modified; please apply your changes to the latest version and try again$/);
    const wrongUid = apiError(() => s.replace({ ...updated, metadata: { ...updated.metadata, uid: "other" } }));
    expect(wrongUid.message).toMatch(/Precondition failed: UID in precondition: other/);
    // no resourceVersion: an unconditional update
    const { resourceVersion: _rv, ...meta } = updated.metadata;
    expect(s.replace({ ...updated, metadata: { ...meta, labels: { x: "z" } } }).metadata.labels).toEqual({ x: "z" });
    expect(apiError(() => s.replace(pod("missing"))).code).toBe(404);
  });

  it("does not bump the resourceVersion or notify for a write that changes nothing", () => {
    const s = store();
    const a = s.create(pod("a"));
    const { seen } = record(s, "pods", { resourceVersion: s.resourceVersion });
    expect(s.replace(a).metadata.resourceVersion).toBe(a.metadata.resourceVersion);
    expect(s.replaceStatus(a).metadata.resourceVersion).toBe(a.metadata.resourceVersion);
    expect(seen).toEqual([]);
  });

  it("replaceStatus changes only the status", () => {
    const s = store();
    const a = s.create(pod("a"));
    const next = s.replaceStatus({ ...a, metadata: { ...a.metadata, labels: { ignored: "yes" } }, spec: { nodeName: "elsewhere" }, status: { phase: "Running" } });
    expect(next.status).toEqual({ phase: "Running" });
    expect(next.metadata.labels).toBeUndefined();
    expect(next.spec).toEqual(a.spec);
    expect(apiError(() => s.replaceStatus({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "x", namespace: "ns" } })).code).toBe(400);
  });

  it("enforces the PCR status rules and stores whole-second times", () => {
    const s = store();
    const a = s.create(pcr("a"));
    const bad = apiError(() => s.replaceStatus({ ...a, status: { conditions: [{ type: "Approved", status: "True", reason: "X", message: "", lastTransitionTime: NOW.toISOString() }] } }));
    expect(bad.status).toMatchObject({ code: 422, details: { kind: "PodCertificateRequest", group: "certificates.k8s.io", causes: [{ field: "status.conditions[0].type", reason: "FieldValueNotSupported" }] } });
    expect(apiError(() => s.replaceStatus({ ...a, status: { conditions: "Denied" } })).code).toBe(400);
    expect(apiError(() => s.replaceStatus({ ...a, status: { notBefore: 5 } })).code).toBe(400);
    const denied = s.replaceStatus({ ...a, status: { conditions: [{ type: "Denied", status: "True", reason: "PodMismatch", message: "no", lastTransitionTime: NOW.toISOString() }] } });
    expect((denied.status as { conditions: { lastTransitionTime: string }[] }).conditions[0]!.lastTransitionTime).toBe("2030-01-02T03:04:05Z");
  });

  it("keeps a PCR spec immutable", () => {
    const s = store();
    const a = s.create(pcr("a"));
    const e = apiError(() => s.replace({ ...a, spec: { ...(a.spec as object), signerName: "x.example/y", maxExpirationSeconds: 3600 } }));
    expect(e.status.details?.causes?.map((c) => c.field).sort()).toEqual(["spec.maxExpirationSeconds", "spec.signerName"]);
    // leaving out a defaulted field is not a change
    const { maxExpirationSeconds: _m, ...spec } = a.spec as Record<string, unknown>;
    expect(s.replace({ ...a, spec }).metadata.resourceVersion).toBe(a.metadata.resourceVersion);
    // as in Go, an empty map or string equals an absent field
    expect(() => s.replace({ ...a, metadata: { ...a.metadata, resourceVersion: undefined }, spec: { ...spec, unverifiedUserAnnotations: {}, stubPKCS10Request: "" } })).not.toThrow();
  });
});

describe("delete", () => {
  it("deletes with preconditions; deleting a namespace deletes its objects", () => {
    const s = store();
    const a = s.create(pod("a"));
    s.create(pod("b"));
    expect(apiError(() => s.delete("pods", "ns", "a", { uid: "other" })).code).toBe(409);
    const { seen } = record(s, "pods", { resourceVersion: s.resourceVersion });
    const gone = s.delete("pods", "ns", "a", { uid: a.metadata.uid! });
    expect(Number(gone.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion));
    expect(s.get("pods", "ns", "a")).toBeUndefined();
    s.delete("Namespace", undefined, "ns");
    expect(s.list("pods").items).toEqual([]);
    expect(seen.map((x) => x.split(" ").slice(0, 2).join(" "))).toEqual(["DELETED a", "DELETED b"]);
    expect(apiError(() => s.delete("pods", "ns", "a")).code).toBe(404);
  });
});

describe("watch", () => {
  it("without a resourceVersion: ADDED for existing objects, then changes in order", () => {
    const s = store();
    s.create(pod("a"));
    const { seen, stop } = record(s, "pods");
    const b = s.create(pod("b"));
    s.replaceStatus({ ...b, status: { phase: "Running" } });
    s.delete("pods", "ns", "a");
    stop();
    s.create(pod("c"));
    expect(seen.map((x) => x.split(" ").slice(0, 2).join(" "))).toEqual(["ADDED a", "ADDED b", "MODIFIED b", "DELETED a"]);
  });

  it("resumes after a resourceVersion; 410 when that version has been compacted", () => {
    const s = store(3);
    const a = s.create(pod("a"));
    const b = s.create(pod("b"));
    const { seen } = record(s, "pods", { resourceVersion: a.metadata.resourceVersion! });
    expect(seen).toEqual([`ADDED b ${b.metadata.resourceVersion}`]);
    s.create(pod("c"));
    s.create(pod("d"));
    // history holds 3 changes: b's (3) is still there, so resuming after a's (2) works...
    expect(() => s.watch("pods", () => {}, { resourceVersion: a.metadata.resourceVersion! })()).not.toThrow();
    s.create(pod("e"));
    // ...until b's change is dropped
    const e = apiError(() => s.watch("pods", () => {}, { resourceVersion: a.metadata.resourceVersion! }));
    expect(e.status).toMatchObject({ code: 410, reason: "Expired" });
    expect(apiError(() => s.watch("pods", () => {}, { resourceVersion: "abc" })).code).toBe(400);
  });

  it("turns changes across a selector into ADDED / DELETED", () => {
    const s = store();
    const a = s.create(pod("a", { app: "web" }));
    const { seen } = record(s, "pods", { labelSelector: "app=web" });
    const moved = s.replace({ ...a, metadata: { ...a.metadata, labels: { app: "db" } } });
    const back = s.replace({ ...moved, metadata: { ...moved.metadata, labels: { app: "web" } } });
    s.replace({ ...back, metadata: { ...back.metadata, annotations: { x: "y" } } });
    expect(seen.map((x) => x.split(" ")[0])).toEqual(["ADDED", "DELETED", "ADDED", "MODIFIED"]);
  });

  it("delivers in order when a listener writes, and hands out frozen objects", () => {
    const s = store();
    const seen: string[] = [];
    let frozen = false;
    s.watch("pods", (e) => {
      seen.push(`${e.type} ${e.object.metadata.name}`);
      frozen ||= Object.isFrozen(e.object.metadata);
      if (e.object.metadata.name === "a") s.create(pod("b"));
    });
    s.create(pod("a"));
    s.create(pod("c"));
    expect(seen).toEqual(["ADDED a", "ADDED b", "ADDED c"]);
    expect(frozen).toBe(true);
  });

  it("keeps every listener in order when listeners write, and a watch started inside a listener sees each change once", () => {
    const s = store();
    const sub: string[] = [];
    const late: string[] = [];
    s.watch("pods", (e) => {
      if (e.object.metadata.name === "a") s.create(pod("b"));
      if (e.object.metadata.name === "b") s.watch("pods", (x) => late.push(`${x.type} ${x.object.metadata.name}`), { resourceVersion: "1" });
    });
    s.subscribe((e) => sub.push(`${e.type} ${e.object.metadata.name}`));
    s.create(pod("a"));
    s.create(pod("c"));
    expect(sub).toEqual(["ADDED a", "ADDED b", "ADDED c"]);
    expect(late).toEqual(["ADDED a", "ADDED b", "ADDED c"]);
  });

  it("subscribe sees every change of every type", () => {
    const s = store();
    const seen: string[] = [];
    const stop = s.subscribe((e) => seen.push(`${e.type} ${e.resource.kind} ${e.object.metadata.name} ${e.previous ? "prev" : "-"}`));
    const a = s.create(pod("a"));
    s.replaceStatus({ ...a, status: { phase: "Running" } });
    s.create(pcr("r"));
    stop();
    s.create(pod("z"));
    expect(seen).toEqual(["ADDED Pod a -", "MODIFIED Pod a prev", "ADDED PodCertificateRequest r -"]);
  });

  it("waitFor resolves when the predicate holds, and times out otherwise", async () => {
    const s = store();
    const a = s.create(pcr("a"));
    const waiting = s.waitFor("PodCertificateRequest", "ns", "a", (o: KubeObject) => o.status !== undefined, 2000);
    s.replaceStatus({ ...a, status: { conditions: [{ type: "Failed", status: "True", reason: "X", message: "", lastTransitionTime: NOW.toISOString() }] } });
    expect((await waiting).status).toBeDefined();
    expect(await s.waitFor("PodCertificateRequest", "ns", "a", () => true)).toMatchObject({ metadata: { name: "a" } });
    await expect(s.waitFor("pods", "ns", "never", () => true, 20)).rejects.toThrow(/timed out after 20 ms waiting for pods ns\/never/);
  });
});
