/**
 * The lookup cache in front of the embedded API server: which reads it answers, for how long, and
 * what it never keeps (absent objects, failures), counted by the API calls that reach the server.
 */
import { KUBERNETES_VERSION } from "../../helpers/kubernetes.js";
import { afterEach, describe, expect, it } from "vitest";
import { startApiServer, type EmbeddedApiServer } from "../../../local-cluster/apiserver/server.js";
import { TransientError } from "../../../shared/errors.js";
import { KubeClusterApi, loadKubeConfig } from "../../../shared/kube/client-node.js";
import type { ClusterApi } from "../../../shared/kube/cluster.js";
import { withLookupCache } from "../../../shared/kube/lookup-cache.js";
import { namespace, node, NS, pod, serviceAccount, v1 } from "../../helpers/objects.js";

const servers: EmbeddedApiServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});


async function setup(o: { ttlMs?: number; maxEntries?: number } = {}) {
  const server = await startApiServer({ objects: [v1("Namespace", namespace(NS)), v1("Node", node()), v1("ServiceAccount", serviceAccount()), v1("Pod", pod())] });
  servers.push(server);
  const calls: string[] = [];
  let clock = 0;
  const direct = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }), (c) => calls.push(`${c.operation}:${c.outcome}`));
  const cluster = withLookupCache(direct, { ttlMs: o.ttlMs ?? 5000, nowMs: () => clock, ...(o.maxEntries ? { maxEntries: o.maxEntries } : {}) });
  return { server, direct, cluster, calls, advance: (ms: number) => (clock += ms) };
}

describe("lookup cache", () => {
  it("answers repeated and concurrent reads of a Node, ServiceAccount or Namespace with one API call per TTL", async () => {
    const t = await setup();
    const nodes = await Promise.all(Array.from({ length: 20 }, () => t.cluster.readNode("node-a")));
    expect(new Set(nodes.map((n) => n?.metadata.uid)).size).toBe(1);
    await t.cluster.readServiceAccount(NS, "web");
    await t.cluster.readServiceAccount(NS, "web");
    await t.cluster.readNamespace(NS);
    await t.cluster.readNamespace(NS);
    expect(t.calls).toEqual(["get node:ok", "get serviceaccount:ok", "get namespace:ok"]);
    t.advance(4999);
    await t.cluster.readNode("node-a");
    expect(t.calls).toHaveLength(3);
    t.advance(2);
    await t.cluster.readNode("node-a");
    expect(t.calls).toEqual(["get node:ok", "get serviceaccount:ok", "get namespace:ok", "get node:ok"]);
  });

  it("serves a changed object for at most the TTL, and at once when asked for `fresh`", async () => {
    const t = await setup();
    expect((await t.cluster.readNode("node-a"))?.metadata.uid).toBe(node().metadata.uid);
    t.server.store.delete("nodes", undefined, "node-a");
    t.server.store.create(v1("Node", node({ uid: "replaced-uid" })));
    expect((await t.cluster.readNode("node-a"))?.metadata.uid).toBe(node().metadata.uid);
    expect((await t.cluster.readNode("node-a", { fresh: true }))?.metadata.uid).toBe("replaced-uid");
    // The fresh answer replaced the cached one.
    expect((await t.cluster.readNode("node-a"))?.metadata.uid).toBe("replaced-uid");
    t.server.store.delete("nodes", undefined, "node-a");
    t.advance(5001);
    expect(await t.cluster.readNode("node-a")).toBeUndefined();
  });

  it("never keeps an absent object", async () => {
    const t = await setup();
    expect(await t.cluster.readServiceAccount(NS, "late")).toBeUndefined();
    t.server.store.create(v1("ServiceAccount", serviceAccount({ name: "late", uid: "late-uid" })));
    expect((await t.cluster.readServiceAccount(NS, "late"))?.metadata.uid).toBe("late-uid");
    expect(t.calls).toEqual(["get serviceaccount:absent", "get serviceaccount:ok"]);
  });

  it("never keeps a failure: the next read asks again", async () => {
    const t = await setup();
    let down = true;
    // The API server's answers, but namespaces fail while `down`.
    const flaky: ClusterApi = Object.assign(Object.create(t.direct) as ClusterApi, {
      readNamespace: (name: string) => (down ? Promise.reject(new TransientError("API server unavailable")) : t.direct.readNamespace(name)),
    });
    const cluster = withLookupCache(flaky, { ttlMs: 5000 });
    await expect(cluster.readNamespace(NS)).rejects.toThrow("API server unavailable");
    down = false;
    expect((await cluster.readNamespace(NS))?.metadata.name).toBe(NS);
  });

  it("reads Pods, PCRs and Services live every time", async () => {
    const t = await setup();
    await t.cluster.readPod(NS, pod().metadata.name);
    await t.cluster.readPod(NS, pod().metadata.name);
    await t.cluster.readService(NS, "api");
    await t.cluster.readService(NS, "api");
    await t.cluster.readPcr(NS, "x");
    await t.cluster.readPcr(NS, "x");
    // The first PCR read asks discovery once for the version (kube/api-versions.ts).
    expect(t.calls.filter((c) => !c.startsWith("discover "))).toEqual(["get pod:ok", "get pod:ok", "get service:absent", "get service:absent", "get podcertificaterequest:absent", "get podcertificaterequest:absent"]);
    // Both versions asked once, in parallel: v1 is absent (404) before 1.37.
    expect(t.calls.filter((c) => c.startsWith("discover ")).sort()).toEqual([`discover certificates.k8s.io/v1:${KUBERNETES_VERSION === "1.37" ? "ok" : "absent"}`, "discover certificates.k8s.io/v1beta1:ok"]);
  });

  it("keeps at most maxEntries objects, dropping the oldest", async () => {
    const t = await setup({ maxEntries: 2 });
    for (const name of ["n1", "n2", "n3"]) t.server.store.create(v1("Node", node({ name, uid: `${name}-uid` })));
    await t.cluster.readNode("n1");
    await t.cluster.readNode("n2");
    await t.cluster.readNode("n3");
    await t.cluster.readNode("n3");
    await t.cluster.readNode("n2");
    expect(t.calls).toHaveLength(3);
    await t.cluster.readNode("n1");
    expect(t.calls).toHaveLength(4);
  });

  it("is off with a TTL of 0", async () => {
    const t = await setup();
    expect(withLookupCache(t.direct, { ttlMs: 0 })).toBe(t.direct);
  });
});
