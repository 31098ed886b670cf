/**
 * The Services index (shared/kube/services-index.ts) against the embedded API server: it seeds from
 * a request's list, follows the watch, and only ever hands on Services the API server has now, so
 * the decision (policy/sans.ts) gives the same names as from a list of every Service; it drops a
 * namespace whose watch fails and lists again, and lists when it is over its bounds.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startApiServer, type EmbeddedApiServer } from "../../../local-cluster/apiserver/server.js";
import { seededRandom } from "../../../local-cluster/faults.js";
import { ResourceExpiredError, type ServiceWatchEvent } from "../../../shared/kube/cluster.js";
import { TransientError } from "../../../shared/errors.js";
import { KubeClusterApi, loadKubeConfig } from "../../../shared/kube/client-node.js";
import { ServicesIndex, type ServicesIndexOptions } from "../../../shared/kube/services-index.js";
import type { Service } from "../../../shared/pcr/model.js";
import { deriveDnsNames, type SanDecision } from "../../../shared/policy/sans.js";
import { namespace, NS, pod, service, v1 } from "../../helpers/objects.js";

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

async function setup(o: { objects?: unknown[]; index?: ServicesIndexOptions; server?: Parameters<typeof startApiServer>[0] } = {}) {
  const server: EmbeddedApiServer = await startApiServer({ objects: [v1("Namespace", namespace(NS)), ...(o.objects ?? [])], ...o.server });
  stops.push(() => server.stop());
  const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
  const index = new ServicesIndex(api, o.index);
  stops.push(() => index.close());
  return { server, api, index };
}

/** Requests the server answered since `from`, by kind. */
function served(server: EmbeddedApiServer, from: number) {
  const rs = server.servedRequests().slice(from).filter((r) => r.url.includes("/services"));
  return {
    lists: rs.filter((r) => r.method === "GET" && /\/services(\?(?!.*watch=true)|$)/.test(r.url)).length,
    gets: rs.filter((r) => r.method === "GET" && /\/services\/[^/?]+/.test(r.url)).length,
  };
}

/** Waits for `cond` (the watch is asynchronous); no timing is asserted, the test's timeout bounds it. */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 10));
}

const names = (services: readonly Service[]) => services.map((s) => s.metadata.name).sort();
const create = (server: EmbeddedApiServer, s: Service) => server.store.create(v1("Service", s));

/** Until the index has seen every change so far: a sentinel created last shows up (watch events are in order). */
let sentinels = 0;
async function caughtUp(server: EmbeddedApiServer, index: ServicesIndex, ns = NS) {
  const label = { sentinel: String(++sentinels) };
  create(server, service(`sentinel-${sentinels}`, { namespace: ns, selector: label }));
  await until(async () => (await index.selecting(ns, label)).length === 1);
}

describe("Services index", () => {
  it("seeds from the first request's list, then reads only the selecting Services (no list)", async () => {
    const others = Array.from({ length: 50 }, (_, i) => v1("Service", service(`other-${i}`, { selector: { app: `other-${i}` } })));
    const { server, index } = await setup({ objects: [v1("Service", service("web")), ...others] });
    let from = server.servedRequests().length;
    expect(index.isIndexed(NS)).toBe(false);
    expect(names(await index.selecting(NS, { app: "web" }))).toHaveLength(51); // the list, as without an index
    expect(served(server, from)).toEqual({ lists: 1, gets: 0 });
    expect(index.isIndexed(NS)).toBe(true);

    from = server.servedRequests().length;
    expect(names(await index.selecting(NS, { app: "web", tier: "x" }))).toEqual(["web"]);
    expect(names(await index.selecting(NS, { app: "nothing" }))).toEqual([]);
    expect(served(server, from)).toEqual({ lists: 0, gets: 1 });
  });

  it("makes one list for a burst's first round: requests arriving while it lists wait, then read from the index", async () => {
    const others = Array.from({ length: 20 }, (_, i) => v1("Service", service(`other-${i}`, { selector: { app: `other-${i}` } })));
    const { server, index } = await setup({ objects: [v1("Service", service("web")), ...others] });
    const from = server.servedRequests().length;
    const burst = await Promise.all(Array.from({ length: 10 }, () => index.selecting(NS, { app: "web" })));
    expect(burst.map((r) => r.length)).toEqual([21, ...Array(9).fill(1)]); // the first has the list; the rest, the confirmed candidate
    expect(served(server, from)).toEqual({ lists: 1, gets: 9 });
  });

  it("when the seeding list fails, the requests that waited for it list for themselves (no chain of waits)", async () => {
    const server = await startApiServer({ objects: [v1("Namespace", namespace(NS)), v1("Service", service("web"))] });
    stops.push(() => server.stop());
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
    let failNext = true;
    // The real client, except that the first list fails as a broken connection would.
    const flaky = Object.assign(Object.create(api) as KubeClusterApi, {
      listServicesVersioned: async (ns: string) => {
        if (!failNext) return api.listServicesVersioned(ns);
        failNext = false;
        await new Promise((r) => setTimeout(r, 20));
        throw new TransientError("connection reset");
      },
    });
    const index = new ServicesIndex(flaky);
    stops.push(() => index.close());
    const from = server.servedRequests().length;
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => index.selecting(NS, { app: "web" })));
    expect(results.map((r) => r.status)).toEqual(["rejected", "fulfilled", "fulfilled", "fulfilled"]);
    expect(served(server, from).lists).toBe(3);
    expect(index.isIndexed(NS)).toBe(true);
  });

  it("follows created, changed and deleted Services", async () => {
    const { server, index } = await setup({ objects: [v1("Service", service("web"))] });
    await index.selecting(NS, { app: "web" });
    create(server, service("api", { selector: { app: "web", tier: "api" } }));
    await caughtUp(server, index);
    expect(names(await index.selecting(NS, { app: "web", tier: "api" }))).toEqual(["api", "web"]);
    expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["web"]);

    server.store.replace(v1("Service", service("api", { selector: { app: "db" } })));
    server.store.delete("services", NS, "web");
    await caughtUp(server, index);
    expect(names(await index.selecting(NS, { app: "web", tier: "api" }))).toEqual([]);
    expect(names(await index.selecting(NS, { app: "db" }))).toEqual(["api"]);
  });

  it("hands on a Service as the API server has it now, not as the index saw it (events lost)", async () => {
    const { server, index } = await setup({ objects: [v1("Service", service("web")), v1("Service", service("gone"))] });
    await index.selecting(NS, { app: "web" });
    // Every watch event is lost: the index still holds both Services with selector app=web.
    server.setFaults({ watchSkip: 1 });
    server.store.replace(v1("Service", service("web", { selector: { app: "db" } })));
    server.store.delete("services", NS, "gone");
    const from = server.servedRequests().length;
    const services = await index.selecting(NS, { app: "web" });
    expect(served(server, from)).toEqual({ lists: 0, gets: 2 });
    // The deleted one is not there; the changed one is, with its new selector, which the decision refuses.
    expect(names(services)).toEqual(["web"]);
    const d = deriveDnsNames({ namespace: NS, clusterDomain: "cluster.local", maxNames: 100, pod: pod(), services, selection: { kind: "all" } });
    expect(d.outcome).toBe("waiting");
  });

  it("drops a namespace whose watch breaks, and the next request lists and seeds it again", async () => {
    // retryMs 0: this watch ends as it opens, which would otherwise hold the namespace off.
    const { server, index } = await setup({ objects: [v1("Service", service("web"))], index: { retryMs: 0 } });
    await index.selecting(NS, { app: "web" });
    server.setFaults({ watchCloseEarly: 1 });
    create(server, service("api"));
    await until(() => !index.isIndexed(NS));
    server.setFaults(undefined);
    const from = server.servedRequests().length;
    expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["api", "web"]);
    expect(served(server, from).lists).toBe(1);
    expect(index.isIndexed(NS)).toBe(true);
  });

  it("a 410 (changes that old are gone) drops the namespace quietly: logged at debug, the next request lists", async () => {
    const server = await startApiServer({ objects: [v1("Namespace", namespace(NS)), v1("Service", service("web"))] });
    stops.push(() => server.stop());
    const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
    let now = 0;
    // The real client, except that its watch runs a while (on the index's clock) and ends with a 410.
    const expiring = Object.assign(Object.create(api) as KubeClusterApi, {
      watchServices: async () => {
        now += 5_000;
        throw new ResourceExpiredError("too old resource version");
      },
    });
    const logged: { level: string; msg: string }[] = [];
    const record = (level: string) => (msg: string) => void logged.push({ level, msg });
    const index = new ServicesIndex(expiring, { nowMs: () => now, log: { debug: record("debug"), info: record("info"), warn: record("warn") } });
    stops.push(() => index.close());
    await index.selecting(NS, { app: "web" });
    await until(() => !index.isIndexed(NS));
    expect(logged.filter((l) => l.level !== "debug")).toEqual([]);
    expect(logged.map((l) => l.msg)).toContainEqual(expect.stringContaining("expired"));
    const from = server.servedRequests().length;
    expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["web"]);
    expect(served(server, from).lists).toBe(1);
  });

  it("resumes a watch the API server ended, and drops a namespace listed longer than relistMs ago", async () => {
    const { server, index } = await setup({ objects: [v1("Service", service("web"))], index: { watchSeconds: 1 } });
    await index.selecting(NS, { app: "web" });
    const watches = () => server.servedRequests().filter((r) => r.url.includes("watch=true")).length;
    await until(() => watches() >= 2); // the first ended after its timeoutSeconds, and was resumed
    expect(index.isIndexed(NS)).toBe(true);
    create(server, service("api"));
    await caughtUp(server, index);
    expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["api", "web"]);

    const relisting = new ServicesIndex(new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() })), { watchSeconds: 1, relistMs: 0 });
    stops.push(() => relisting.close());
    await relisting.selecting(NS, { app: "web" });
    await until(() => !relisting.isIndexed(NS));
  });

  it("without `watch` in its ClusterRole: refused once, then lists per request without asking again for retryMs", async () => {
    const user = { name: "system:serviceaccount:podcert:podcert-derive-sans", groups: ["system:serviceaccounts", "system:authenticated"] };
    const rbac = [
      { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "read-services" }, rules: [{ apiGroups: [""], resources: ["services"], verbs: ["get", "list"] }] },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "read-services" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "read-services" },
        subjects: [{ kind: "ServiceAccount", namespace: "podcert", name: "podcert-derive-sans" }],
      },
    ];
    const server = await startApiServer({ objects: [v1("Namespace", namespace(NS)), v1("Service", service("web"))], authorization: { rbac, users: [user] } });
    stops.push(() => server.stop());
    const index = new ServicesIndex(new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig(user.name) })));
    stops.push(() => index.close());
    expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["web"]);
    await until(() => !index.isIndexed(NS));
    for (let i = 0; i < 3; i++) expect(names(await index.selecting(NS, { app: "web" }))).toEqual(["web"]);
    expect(server.refusedRequests().map((r) => r.verb)).toEqual(["watch"]);
    expect(index.isIndexed(NS)).toBe(false);
  });

  it("survives the API server going away: the watch fails, nothing is thrown, the namespace is dropped", async () => {
    const { server, index } = await setup({ objects: [v1("Service", service("web"))] });
    await index.selecting(NS, { app: "web" });
    await server.stop();
    await until(() => !index.isIndexed(NS));
    await expect(index.selecting(NS, { app: "web" })).rejects.toMatchObject({ name: "TransientError" });
  });

  it("lists for every request beyond its bounds: namespaces, Services held, candidates", async () => {
    const two = "other-ns";
    const { server, index } = await setup({
      objects: [v1("Namespace", namespace(two)), v1("Service", service("web")), v1("Service", service("web", { namespace: two }))],
      index: { maxNamespaces: 1 },
    });
    await index.selecting(NS, { app: "web" });
    await index.selecting(two, { app: "web" });
    expect([index.isIndexed(NS), index.isIndexed(two)]).toEqual([true, false]);
    let from = server.servedRequests().length;
    await index.selecting(two, { app: "web" });
    expect(served(server, from)).toEqual({ lists: 1, gets: 0 });

    const small = new ServicesIndex(new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() })), { maxServices: 1 });
    stops.push(() => small.close());
    create(server, service("api"));
    await small.selecting(NS, { app: "web" });
    expect(small.isIndexed(NS)).toBe(false);

    const few = new ServicesIndex(new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() })), { maxCandidates: 1 });
    stops.push(() => few.close());
    await few.selecting(NS, { app: "web" });
    from = server.servedRequests().length;
    expect(names(await few.selecting(NS, { app: "web" }))).toEqual(["api", "web"]);
    expect(served(server, from)).toEqual({ lists: 1, gets: 0 });
  });

  it("gives the decision the same names as a list of every Service (generated Services and pods)", async () => {
    const random = seededRandom(14);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const keys = ["app", "tier", "zone"];
    const values = ["a", "b", "c"];
    const labels = (): Record<string, string> => Object.fromEntries(keys.filter(() => random() < 0.6).map((k) => [k, pick(values)]));
    const generated = (name: string): Service => {
      const type = pick(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]);
      const s = service(name, { type, selector: random() < 0.1 ? null : labels(), headless: type === "ClusterIP" && random() < 0.3 });
      if (type === "ExternalName") (s.spec as Record<string, unknown>).externalName = "example.com";
      return s;
    };
    const initial = Array.from({ length: 60 }, (_, i) => v1("Service", generated(`svc-${i}`)));
    const { server, api, index } = await setup({ objects: initial });
    await index.selecting(NS, {});
    let created = initial.length;

    const compare = async () => {
      for (let i = 0; i < 40; i++) {
        const p = pod({ labels: labels() });
        p.spec.hostname = "web-0";
        p.spec.subdomain = pick(["svc-1", "svc-2", "svc-3", "none"]);
        const facts = { namespace: NS, clusterDomain: "cluster.local", maxNames: 12, pod: p, selection: { kind: "all" } as const };
        const viaList: SanDecision = deriveDnsNames({ ...facts, services: await api.listServices(NS) });
        const viaIndex: SanDecision = deriveDnsNames({ ...facts, services: await index.selecting(NS, p.metadata.labels ?? {}) });
        expect(comparable(viaIndex)).toEqual(comparable(viaList));
      }
    };
    await compare();
    // Changes through the watch: selectors and types changed, Services deleted and created.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 20; i++) {
        const existing = server.store.list("services", { namespace: NS }).items.filter((s) => !s.metadata.name.startsWith("sentinel"));
        const victim = pick(existing).metadata.name;
        const r = random();
        if (r < 0.4) server.store.replace(v1("Service", generated(victim)));
        else if (r < 0.7) server.store.delete("services", NS, victim);
        else create(server, generated(`svc-${created++}`));
      }
      await caughtUp(server, index);
      await compare();
    }
  });
});

function comparable(d: SanDecision) {
  return d.outcome === "denied" ? { outcome: d.outcome, reason: d.error.reason, message: d.error.message } : d;
}

describe("KubeClusterApi Services watch", () => {
  it("sends the changes after a resourceVersion, BOOKMARKs, and 410 as ResourceExpiredError", async () => {
    const { server, api } = await setup({ server: { historyLimit: 2, bookmarkIntervalMs: 20 } });
    const { resourceVersion } = await api.listServicesVersioned(NS);
    const seen: ServiceWatchEvent[] = [];
    const abort = new AbortController();
    const watching = api.watchServices(NS, { resourceVersion, timeoutSeconds: 60, signal: abort.signal }, (e) => seen.push(e));
    create(server, service("web"));
    await until(() => seen.some((e) => e.type === "ADDED") && seen.some((e) => e.type === "BOOKMARK"));
    abort.abort();
    await watching;
    expect(seen.find((e) => e.type === "ADDED")).toMatchObject({ object: { metadata: { name: "web", namespace: NS } } });

    for (const n of ["a", "b", "c"]) create(server, service(n));
    const stale = api.watchServices(NS, { resourceVersion, timeoutSeconds: 60, signal: new AbortController().signal }, () => {});
    await expect(stale).rejects.toBeInstanceOf(ResourceExpiredError);
  });
});
