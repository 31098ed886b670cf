// Pod updates as kube-apiserver's ValidatePodUpdate allows them (tables over the pure function),
// and over HTTP to @kubernetes/client-node: a PUT that changes the spec beyond images and the few
// other updatable fields is 422 with kube's message, while labels, annotations, images and the
// status subresource still change.
import "reflect-metadata";

import { ApiException, CoreV1Api, KubeConfig, type V1Pod, type V1PodSpec } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { POD_UPDATE_FORBIDDEN, UPDATABLE_POD_SPEC_FIELDS, validatePodUpdate } from "../../../../local-cluster/apiserver/pods.js";
import type { KubeObject } from "../../../../local-cluster/apiserver/resources.js";
import { startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import { deepEqual } from "../../../../local-cluster/apiserver/store.js";

type Spec = Record<string, unknown>;

const baseSpec = (): Spec => ({
  serviceAccountName: "app",
  nodeName: "node-1",
  hostname: "web-0",
  subdomain: "web",
  containers: [{ name: "app", image: "registry.example/app:1", ports: [{ containerPort: 8080 }] }],
  initContainers: [{ name: "init", image: "registry.example/init:1" }],
});
const pod = (spec: Spec = baseSpec(), annotations?: Record<string, string>): KubeObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web-0", namespace: "ns", ...(annotations ? { annotations } : {}) },
  spec,
});
const check = (next: KubeObject, old: KubeObject) => validatePodUpdate(next, old, (a, b) => deepEqual(a, b, true));
const messages = (next: KubeObject, old: KubeObject) => check(next, old).map((c) => `${c.field}: ${c.message.split("\n")[0]}`);
const SPEC_FORBIDDEN = `spec: Forbidden: ${POD_UPDATE_FORBIDDEN}`;

describe("ValidatePodUpdate", () => {
  it("names the updatable fields as kube-apiserver's message does", () => {
    expect(UPDATABLE_POD_SPEC_FIELDS).toBe(
      "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)," +
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    );
  });

  it.each([
    { field: "hostname", value: "web-1" },
    { field: "subdomain", value: "other" },
    { field: "serviceAccountName", value: "admin" },
    { field: "nodeName", value: "node-2" },
    { field: "nodeName", value: undefined }, // unset
    { field: "restartPolicy", value: "Never" },
    { field: "volumes", value: [{ name: "v", emptyDir: {} }] },
  ])("refuses a change of spec.$field ($value) with one spec cause", ({ field, value }) => {
    const spec = baseSpec();
    if (value === undefined) delete spec[field];
    else spec[field] = value;
    const causes = check(pod(spec), pod());
    expect(causes).toHaveLength(1);
    expect(causes[0]).toMatchObject({ reason: "FieldValueForbidden", field: "spec" });
    expect(causes[0]!.message.split("\n")[0]).toBe(`Forbidden: ${POD_UPDATE_FORBIDDEN}`);
    // The diff names what changed.
    expect(causes[0]!.message).toContain(`- \t${field}: `);
  });

  it("refuses setting spec.nodeName on an unbound pod (that is the binding subresource's job)", () => {
    const { nodeName: _n, ...unbound } = baseSpec();
    expect(messages(pod(baseSpec()), pod(unbound))).toEqual([SPEC_FORBIDDEN]);
  });

  it("refuses a container change other than its image: command, ports, name, env", () => {
    const withContainer = (c: Record<string, unknown>) => ({ ...baseSpec(), containers: [{ ...(baseSpec().containers as object[])[0], ...c }] });
    for (const change of [{ command: ["sh"] }, { ports: [{ containerPort: 9090 }] }, { name: "renamed" }, { env: [{ name: "A", value: "b" }] }]) {
      expect(messages(pod(withContainer(change)), pod())).toEqual([SPEC_FORBIDDEN]);
    }
    // An image change alongside another one: the other is still refused.
    expect(messages(pod(withContainer({ image: "registry.example/app:2", command: ["sh"] })), pod())).toEqual([SPEC_FORBIDDEN]);
  });

  it("refuses adding or removing a container on its own, before comparing the rest", () => {
    const spec = { ...baseSpec(), hostname: "changed-too", containers: [...(baseSpec().containers as object[]), { name: "b", image: "b:1" }] };
    expect(messages(pod(spec), pod())).toEqual(["spec.containers: Forbidden: pod updates may not add or remove containers"]);
    expect(messages(pod({ ...baseSpec(), initContainers: [] }), pod())).toEqual(["spec.initContainers: Forbidden: pod updates may not add or remove containers"]);
  });

  it("allows image changes, but not an empty image or one with surrounding spaces", () => {
    const images = (app: string, init: string) => ({ ...baseSpec(), containers: [{ ...(baseSpec().containers as object[])[0], image: app }], initContainers: [{ name: "init", image: init }] });
    expect(check(pod(images("registry.example/app:2", "registry.example/init:2")), pod())).toEqual([]);
    expect(messages(pod(images("", " x ")), pod())).toEqual([
      "spec.containers[0].image: Required value",
      'spec.initContainers[0].image: Invalid value: " x ": must not have leading or trailing whitespace',
    ]);
  });

  it("allows metadata changes (labels, annotations) with the spec unchanged, and empty equal to absent", () => {
    const next = pod({ ...baseSpec(), tolerations: [], nodeSelector: {}, schedulerName: "" });
    next.metadata.labels = { tier: "edge" };
    next.metadata.annotations = { note: "x" };
    expect(check(next, pod())).toEqual([]);
  });

  it("keeps the mirror-pod and AppArmor beta annotations as they are", () => {
    const mirror = { "kubernetes.io/config.mirror": "abc" };
    expect(messages(pod(baseSpec(), mirror), pod())).toEqual(["metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not add mirror pod annotation"]);
    expect(messages(pod(), pod(baseSpec(), mirror))).toEqual(["metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not remove or update mirror pod annotation"]);
    const apparmor = "container.apparmor.security.beta.kubernetes.io/app";
    expect(messages(pod(baseSpec(), { [apparmor]: "runtime/default" }), pod())).toEqual([`metadata.annotations[${apparmor}]: Forbidden: may not add AppArmor annotations`]);
  });

  it("activeDeadlineSeconds: may be set or lowered, not raised, unset or out of range", () => {
    const deadline = (n?: number) => pod(n === undefined ? baseSpec() : { ...baseSpec(), activeDeadlineSeconds: n });
    expect(check(deadline(60), deadline())).toEqual([]);
    expect(check(deadline(30), deadline(60))).toEqual([]);
    expect(messages(deadline(90), deadline(60))).toEqual(["spec.activeDeadlineSeconds: Invalid value: 90: must be less than or equal to previous value"]);
    expect(messages(deadline(), deadline(60))).toEqual(['spec.activeDeadlineSeconds: Invalid value: "null": must not update from a positive integer to nil value']);
    expect(messages(deadline(-1), deadline())).toEqual(["spec.activeDeadlineSeconds: Invalid value: -1: must be between 0 and 2147483647, inclusive"]);
  });

  it("tolerations: additions and tolerationSeconds changes only", () => {
    const t1 = { key: "a", operator: "Exists", effect: "NoExecute", tolerationSeconds: 30 };
    const t2 = { key: "b", operator: "Equal", value: "x", effect: "NoSchedule" };
    const tol = (...t: object[]) => pod({ ...baseSpec(), tolerations: t });
    expect(check(tol(t1, t2), tol(t1))).toEqual([]);
    expect(check(tol({ ...t1, tolerationSeconds: 60 }), tol(t1))).toEqual([]);
    expect(messages(tol(t2), tol(t1))).toEqual(["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]);
  });

  it("schedulingGates: removals only", () => {
    const gates = (...names: string[]) => pod({ ...baseSpec(), schedulingGates: names.map((name) => ({ name })) });
    expect(check(gates("a"), gates("a", "b"))).toEqual([]);
    expect(check(gates(), gates("a"))).toEqual([]);
    expect(messages(gates("a", "c"), gates("a"))).toEqual(["spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'c'"]);
  });

  it("terminationGracePeriodSeconds: only to 1 from a negative value", () => {
    const grace = (n: number) => pod({ ...baseSpec(), terminationGracePeriodSeconds: n });
    expect(check(grace(1), grace(-1))).toEqual([]);
    expect(messages(grace(10), grace(30))).toEqual([SPEC_FORBIDDEN]);
  });
});

// ---------------------------------------------------------------------------------------------
// Over HTTP

let api: EmbeddedApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  api = await startApiServer({ objects: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "ns" } }] });
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  core = kc.makeApiClient(CoreV1Api);
});

afterAll(async () => {
  await api?.stop();
});

async function failure(p: Promise<unknown>): Promise<{ code: number; reason: string; message: string; causes: unknown }> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  if (!(e instanceof ApiException)) throw new Error(`expected an ApiException, got ${String(e)}`);
  const body = (typeof e.body === "string" ? JSON.parse(e.body) : e.body) as { reason: string; message: string; details?: { causes?: unknown } };
  return { code: e.code, reason: body.reason, message: body.message, causes: body.details?.causes };
}

describe("Pod updates over HTTP", () => {
  const create = async (name: string): Promise<V1Pod> =>
    core.createNamespacedPod({ namespace: "ns", body: { metadata: { name, labels: { app: "web" } }, spec: baseSpec() as unknown as V1PodSpec } });

  it.each([
    { field: "hostname", value: "web-1" },
    { field: "subdomain", value: "other" },
    { field: "serviceAccountName", value: "admin" },
    { field: "nodeName", value: "node-2" },
  ])("answers 422 Invalid to a PUT changing spec.$field, and keeps the pod", async ({ field, value }) => {
    const created = await create(`change-${field.toLowerCase()}`);
    const name = created.metadata!.name!;
    const r = await failure(core.replaceNamespacedPod({ namespace: "ns", name, body: { ...created, spec: { ...created.spec!, [field]: value } } }));
    expect(r).toMatchObject({ code: 422, reason: "Invalid", causes: [{ reason: "FieldValueForbidden", field: "spec" }] });
    expect(r.message.startsWith(`Pod "${name}" is invalid: ${SPEC_FORBIDDEN}\n`)).toBe(true);
    const stored = await core.readNamespacedPod({ namespace: "ns", name });
    expect((stored.spec as unknown as Spec)[field]).toBe(baseSpec()[field]);
    expect(stored.metadata?.resourceVersion).toBe(created.metadata?.resourceVersion);
  });

  it("answers 422 to a PUT changing a container's ports, or adding a container", async () => {
    const created = await create("containers");
    const [c] = created.spec!.containers;
    const ports = await failure(core.replaceNamespacedPod({ namespace: "ns", name: "containers", body: { ...created, spec: { ...created.spec!, containers: [{ ...c!, ports: [{ containerPort: 9090 }] }] } } }));
    expect(ports).toMatchObject({ code: 422, reason: "Invalid" });
    expect(ports.message).toContain(SPEC_FORBIDDEN);
    const added = await failure(core.replaceNamespacedPod({ namespace: "ns", name: "containers", body: { ...created, spec: { ...created.spec!, containers: [c!, { name: "b", image: "b:1" }] } } }));
    expect(added).toMatchObject({
      code: 422,
      message: 'Pod "containers" is invalid: spec.containers: Forbidden: pod updates may not add or remove containers',
    });
  });

  it("allows a PUT changing labels and annotations, then one changing an image", async () => {
    const created = await create("allowed");
    const relabelled = await core.replaceNamespacedPod({
      namespace: "ns",
      name: "allowed",
      body: { ...created, metadata: { ...created.metadata, labels: { app: "web", tier: "edge" }, annotations: { note: "x" } } },
    });
    expect(relabelled.metadata?.labels).toEqual({ app: "web", tier: "edge" });
    expect(relabelled.metadata?.uid).toBe(created.metadata?.uid);
    const [c] = relabelled.spec!.containers;
    const reimaged = await core.replaceNamespacedPod({ namespace: "ns", name: "allowed", body: { ...relabelled, spec: { ...relabelled.spec!, containers: [{ ...c!, image: "registry.example/app:2" }] } } });
    expect(reimaged.spec?.containers[0]?.image).toBe("registry.example/app:2");
    expect(reimaged.spec?.nodeName).toBe("node-1");
  });

  it("allows status writes through the status subresource", async () => {
    const created = await create("status");
    const updated = await core.replaceNamespacedPodStatus({ namespace: "ns", name: "status", body: { ...created, status: { phase: "Running", podIP: "10.0.0.7" } } });
    expect(updated.status).toMatchObject({ phase: "Running", podIP: "10.0.0.7" });
    expect((await core.readNamespacedPod({ namespace: "ns", name: "status" })).status?.phase).toBe("Running");
  });

  it("changes a pod's identity the way a real cluster does: delete and recreate (a new uid)", async () => {
    const created = await create("recreated");
    await core.deleteNamespacedPod({ namespace: "ns", name: "recreated" });
    const again = await core.createNamespacedPod({ namespace: "ns", body: { metadata: { name: "recreated" }, spec: { ...(baseSpec() as unknown as V1PodSpec), hostname: "other" } } });
    expect(again.metadata?.uid).not.toBe(created.metadata?.uid);
    expect(again.spec?.hostname).toBe("other");
  });
});
