// Each function's RBAC (knative/rbac.yaml) is exactly what it needs, proven by running it as its
// own ServiceAccount against an embedded API server enforcing those documents: over HTTP the
// bundles make every call they need (issue 8, finding 9: derive-sans' GET on a named Service was
// refused on a cluster), and with any single grant removed the flow fails.
import { fixture } from "../helpers/kubernetes.js";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { bindingRules, parseRbacPolicy, subjectFor, type PolicyRule } from "../../local-cluster/apiserver/rbac.js";
import { RESOURCE_TYPES } from "../../local-cluster/apiserver/resources.js";
import { describeRefusal, startApiServer, type EmbeddedApiServer, type RefusedRequest } from "../../local-cluster/apiserver/server.js";
import { caTrustDocument, clusterTrustBundleName, parseCaPool, parseCaTrust, serializeCaPool, trustBundlePem, type CaPool, type CaTrust } from "../../shared/ca/pool.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../../shared/ca/publication.js";
import { publish } from "../../functions/publish-trust/handler.js";
import { runResync } from "../../functions/resync/handler.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { FunctionContext, TrustContext } from "../../shared/runtime/function.js";
import { ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../../shared/profiles/defaults.js";
import { createCa, createCaPool, throwawayCaPool } from "../../cli/ca-create.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { issueAll } from "../../cli/issue.js";
import { requestPodCertificates, type EmulatedRequest } from "../../local-cluster/kubelet/emulator.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import { EVENT_TYPES, stepEntry, STEPS, type StepName } from "../../shared/steps.js";
import { KubeClusterApi, loadKubeConfig } from "../../shared/kube/client-node.js";
import type { ClusterApi, PcrStatusTarget, ServicesWatchApi } from "../../shared/kube/cluster.js";
import { ServicesIndex } from "../../shared/kube/services-index.js";
import type { PcrStatus } from "../../shared/pcr/model.js";
import { MAX_ATTESTED_POD_LABELS } from "../../shared/limits.js";
import { startLocalFlow } from "../../local-cluster/flow.js";
import { serviceName } from "../../shared/steps.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "../../local-cluster/identities.js";
import { terminalCondition } from "../../shared/pcr/model.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import { silentLogger } from "../../shared/runtime/log.js";
import { startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";

const ids = loadKnativeIdentities("knative");
const userOf = (fn: StepName) => userOfService(ids, serviceName(fn)).name;

describe("over HTTP, each function bundle as its own ServiceAccount", () => {
  let env: BundleEnv;
  beforeAll(async () => {
    env = await startBundleEnv();
  });
  afterAll(async () => {
    await env?.stop();
  });

  /** POSTs a binary-mode reply (as the broker re-enqueues it) to the next function. */
  async function forward(to: ServedBundle, reply: Response): Promise<Response> {
    const headers: Record<string, string> = {};
    reply.headers.forEach((v, k) => {
      if (k.startsWith("ce-") || k === "content-type" || k === "traceparent") headers[k] = v;
    });
    return fetch(to.url, { method: "POST", headers, body: await reply.text() });
  }

  it("issues a certificate with the DNS names of the Services the pod names, every call allowed", async () => {
    const [validate, deriveSans, sign] = await Promise.all([env.serve("validate"), env.serve("derive-sans"), env.serve("sign")]);
    const event = readFileSync(fixture("events/issued/api-ecdsap256.json"), "utf8");
    const validated = await fetch(validate.url, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: event });
    expect(validated.status, validate.stderr()).toBe(200);
    // The pod names its Services ("api, api-internal"): derive-sans reads each with a GET.
    const derived = await forward(deriveSans, validated);
    expect(derived.status, deriveSans.stderr()).toBe(200);
    expect(derived.headers.get("ce-type")).toBe(EVENT_TYPES.sansDerived);
    const issued = await forward(sign, derived);
    expect(issued.status, sign.stderr()).toBe(200);
    const pcr = env.api.store.get("podcertificaterequests", "ate-system", "req-api-ecdsap256") as { status?: { conditions?: { type: string }[]; certificateChain?: string } };
    expect(pcr.status?.conditions?.[0]?.type).toBe("Issued");

    // sign sends its Kubernetes Event in the background, and flushes it when it stops.
    for (const f of [validate, deriveSans, sign]) f.child.kill("SIGTERM");
    expect(await sign.exited).toBe(0);
    expect(env.api.refusedRequests().map(describeRefusal)).toEqual([]);
    const events = env.api.store.list("events", { namespace: "ate-system" }).items as unknown as { reason: string }[];
    expect(events.map((e) => e.reason)).toContain("Issued");
  });
});

// ---------------------------------------------------------------------------------------------

/** One permission of one function's ClusterRole: a single verb on a single resource (and name). */
interface Grant {
  fn: StepName;
  role: string;
  /** A Role's namespace; absent for a ClusterRole. */
  namespace?: string;
  apiGroup: string;
  resource: string;
  verb: string;
  resourceName?: string;
}

const label = (g: Grant) => `${g.fn} without ${g.verb} ${g.resource}${g.apiGroup ? `.${g.apiGroup}` : ""}${g.resourceName ? ` "${g.resourceName}"` : ""}`;

/** Every grant of the ClusterRoles and Roles bound to each function's ServiceAccount, rule by rule. */
function functionGrants(documents: readonly unknown[]): Grant[] {
  const { policy, problems } = parseRbacPolicy(documents);
  expect(problems).toEqual([]);
  const out: Grant[] = [];
  for (const fn of STEPS) {
    const user = userOfService(ids, serviceName(fn));
    for (const b of [...policy.clusterRoleBindings, ...policy.roleBindings]) {
      if (subjectFor(user, b.subjects, b.namespace ?? "") === undefined) continue;
      const resolved = bindingRules(policy, b);
      if ("error" in resolved) throw new Error(resolved.error);
      const namespace = b.roleRef.kind === "Role" ? { namespace: b.namespace ?? "" } : {};
      for (const g of atomic(resolved.rules)) out.push({ fn, role: b.roleRef.name, ...namespace, ...g });
    }
  }
  return out;
}

function atomic(rules: readonly PolicyRule[]): Omit<Grant, "fn" | "role">[] {
  return rules.flatMap((r) => r.apiGroups.flatMap((apiGroup) => r.resources.flatMap((resource) => r.verbs.flatMap((verb) =>
    (r.resourceNames.length > 0 ? r.resourceNames : [undefined]).map((resourceName) => ({ apiGroup, resource, verb, ...(resourceName === undefined ? {} : { resourceName }) }))))));
}

/** The documents with one grant taken out of its ClusterRole (the rest of the role, rule by rule, kept). */
function without(documents: readonly unknown[], g: Grant): unknown[] {
  const same = (x: Omit<Grant, "fn" | "role">) => x.apiGroup === g.apiGroup && x.resource === g.resource && x.verb === g.verb && x.resourceName === g.resourceName;
  return documents.map((d) => {
    const doc = d as { apiVersion?: string; kind?: string; metadata?: { name?: string }; rules?: unknown[] };
    const kind = g.namespace === undefined ? "ClusterRole" : "Role";
    const ns = (doc.metadata as { namespace?: string } | undefined)?.namespace;
    if (doc.apiVersion !== "rbac.authorization.k8s.io/v1" || doc.kind !== kind || doc.metadata?.name !== g.role || (kind === "Role" && ns !== g.namespace)) return d;
    const { policy } = parseRbacPolicy([d]);
    const current = kind === "Role" ? policy.roles.get(`${g.namespace}/${g.role}`) : policy.clusterRoles.get(g.role);
    const rules = atomic(current ?? []).filter((x) => !same(x)).map((x) => ({
      apiGroups: [x.apiGroup], resources: [x.resource], verbs: [x.verb], ...(x.resourceName === undefined ? {} : { resourceNames: [x.resourceName] }),
    }));
    return { ...doc, rules };
  });
}

describe("without any one grant of a function's roles, the flow fails", () => {
  let objects: unknown[];
  let requests: EmulatedRequest[];
  let caPool: CaPool;
  let trust: CaTrust;
  const config = defaultSignerConfig();
  const keys = ephemeralStepKeys();

  beforeAll(async () => {
    // The example cluster (every call: named Services, "true", issued and denied requests for both
    // signers) with its PCRs created once, by the emulated kubelet; each case seeds a copy.
    const seed = await startApiServer({ objects: parseClusterFile(readFileSync("examples/cluster.yaml", "utf8")) });
    try {
      requests = await requestPodCertificates(loadKubeConfig({ kubeconfigText: seed.kubeconfig() }));
      objects = RESOURCE_TYPES.flatMap((t) => seed.store.list(t).items);
    } finally {
      await seed.stop();
    }
    const poolDoc = await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    caPool = parseCaPool(serializeCaPool(poolDoc));
    trust = parseCaTrust(stringify(caTrustDocument(poolDoc)));
    // For the trust publisher: podcert's namespace, atesystem's bundle drifted (an update), none yet
    // for workerpool (a create), and a managed bundle of a signer no longer configured (a delete).
    const stray = await createCa({ signerName: "example.com/retired", keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    // Two paths the example's requests do not take by themselves, so that the grants only they
    // use are proven too (issue 14): a pod with more labels than validate attests, whose Service
    // names derive-sans derives from the pod it reads itself (`get pods`); and, in runFlow, a PCR
    // changed while pending, which sign reads back after its conditional write conflicts (`get`
    // on PCRs).
    const apiPod = objects.find((o) => (o as { kind?: string; metadata?: { name?: string } }).kind === "Pod" && (o as { metadata: { name: string } }).metadata.name === "ate-apiserver") as { metadata: { labels?: Record<string, string> } };
    for (let i = 0; i < MAX_ATTESTED_POD_LABELS; i++) apiPod.metadata.labels = { ...apiPod.metadata.labels, [`extra-${i}`]: "x" };
    objects.push(
      ...manifestNamespaces(ids, objects),
      managedBundle(ATESYSTEM_SIGNER, stray.certificate),
      managedBundle("example.com/retired", stray.certificate),
    );
  });

  const managedBundle = (signerName: string, pem: string) => ({
    apiVersion: "certificates.k8s.io/v1beta1",
    kind: "ClusterTrustBundle",
    metadata: { name: clusterTrustBundleName(signerName), labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    spec: { signerName, trustBundle: pem },
  });

  /**
   * The trust publisher's two runs, as its ServiceAccount: the first updates, creates and deletes
   * bundles and creates its ConfigMap; then workerpool's bundle and the ConfigMap drift, and the
   * second updates both. Returns what went wrong.
   */
  async function publishTwice(api: EmbeddedApiServer, ctx: FunctionContext): Promise<string[]> {
    const trustCtx: TrustContext = {
      read: () => trust,
      api: new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig(userOf("publish-trust")) })),
      namespace: "podcert",
      configMapName: "podcert-spiffe-bundles",
      refreshHintSeconds: 300,
    };
    const run = { ...ctx, trust: trustCtx };
    try {
      await publish(run);
      const w = api.store.get("clustertrustbundles", undefined, clusterTrustBundleName(WORKERPOOL_SIGNER))!;
      api.store.replace({ ...w, spec: { ...(w.spec as object), trustBundle: trustBundlePem(trust, ATESYSTEM_SIGNER) } });
      const cm = api.store.get("configmaps", "podcert", "podcert-spiffe-bundles")!;
      api.store.replace({ ...cm, data: {} });
      await publish(run);
    } catch (e) {
      return [`publish-trust: ${(e as Error).message}`];
    }
    const wrong = [ATESYSTEM_SIGNER, WORKERPOOL_SIGNER].filter((signer) => (api.store.get("clustertrustbundles", undefined, clusterTrustBundleName(signer))?.spec as { trustBundle?: string } | undefined)?.trustBundle !== trustBundlePem(trust, signer));
    if (api.store.get("clustertrustbundles", undefined, clusterTrustBundleName("example.com/retired")) !== undefined) wrong.push("example.com/retired (not deleted)");
    return wrong.map((w) => `publish-trust: bundle of ${w} not as published`);
  }

  /**
   * The resync sender's run before anything is issued, as its ServiceAccount, posting to a sink
   * started here: every PCR is pending, so it must re-announce each one (listing in pages of 2).
   * Returns what went wrong.
   */
  async function resyncOnce(api: EmbeddedApiServer, ctx: FunctionContext): Promise<string[]> {
    const posted: string[] = [];
    const sink = createServer((req, res) => {
      posted.push(String(req.headers["ce-subject"]));
      req.resume().on("end", () => res.writeHead(202).end());
    });
    await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
    try {
      const report = await runResync({
        ...ctx,
        resync: {
          api: new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig(userOf("resync")) })),
          sink: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/`,
          graceSeconds: 0,
          maxEvents: 1000,
          pageSize: 2,
          concurrency: 4,
          postTimeoutMs: 5000,
        },
      });
      return report.posted === requests.length && report.failed === 0 ? [] : [`resync: posted ${report.posted} of ${requests.length} pending PCRs (${report.failed} failed)`];
    } catch (e) {
      return [`resync: ${(e as Error).message}`];
    } finally {
      await new Promise<void>((r) => sink.close(() => r()));
    }
  }

  /** The in-process pipeline, each step calling the API server over HTTP as its ServiceAccount. */
  async function runFlow(rbac: readonly unknown[]): Promise<{ unexpected: string[]; refused: RefusedRequest[] }> {
    const api = await startApiServer({ objects, authorization: { rbac, users: [...ids.services.values(), ids.source] } });
    // derive-sans with its Services index, as the function server runs it (list, watch).
    const indexes: ServicesIndex[] = [];
    const servicesIndexes = (a: ServicesWatchApi) => {
      const index = new ServicesIndex(a, { log: silentLogger });
      indexes.push(index);
      return index;
    };
    try {
      const clusters = Object.fromEntries(STEPS.map((s) => [s, clusterApiFor(api, userOf(s))])) as Record<StepName, ClusterApi>;
      // Something else (a label) changes the router's PCR just before sign's first status write.
      const touch = new Set(requests.filter((r) => r.pod.name === "atenet-router").map((r) => r.pcr.metadata.name));
      const signApi = clusters.sign;
      clusters.sign = Object.assign(Object.create(signApi) as ClusterApi, {
        replacePcrStatus: (pcr: PcrStatusTarget, status: PcrStatus) => {
          if (touch.delete(pcr.metadata.name)) {
            const stored = structuredClone(api.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name)!);
            api.store.replace({ ...stored, metadata: { ...stored.metadata, labels: { touched: "true" } } });
          }
          return signApi.replacePcrStatus(pcr, status);
        },
      });
      const resynced = await resyncOnce(api, stepContexts({ config, cluster: clusters, keys, caPool, log: silentLogger })["resync"]);
      const result = await issueAll({
        // The ApiServerSource's stand-in lists the PCRs, as its ServiceAccount.
        cluster: clusterApiFor(api, ids.source.name),
        contexts: stepContexts({ config, cluster: clusters, keys, caPool, log: silentLogger, servicesIndexes }),
        maxAttempts: 2,
        backoffMs: 5,
      });
      const contexts = stepContexts({ config, cluster: clusters, keys, caPool, log: silentLogger });
      const published = await publishTwice(api, contexts["publish-trust"]);
      const unexpected = requests.flatMap((r) => {
        const pcr = result.pcrs.find((p) => p.metadata.uid === r.pcr.metadata.uid);
        const c = pcr ? terminalCondition(pcr) : undefined;
        const outcome = c === undefined ? "Pending" : c.type === "Issued" ? "Issued" : `${c.type}:${c.reason}`;
        return outcome === r.expected ? [] : [`${r.pod.namespace}/${r.pod.name} ${r.pcr.spec.signerName}: ${outcome}, expected ${r.expected}`];
      });
      return { unexpected: [...unexpected, ...published, ...resynced], refused: api.refusedRequests() };
    } finally {
      for (const index of indexes) index.close();
      await api.stop();
    }
  }

  it("succeeds with every grant, no call refused, every request as its pod expects", async () => {
    expect(requests.filter((r) => r.expected === undefined)).toEqual([]);
    const r = await runFlow(ids.documents);
    expect(r.unexpected).toEqual([]);
    expect(r.refused.map(describeRefusal)).toEqual([]);
  });

  const grants = functionGrants(ids.documents);

  it("covers every grant of every function's roles", () => {
    // Every function that uses Kubernetes has grants; one that does not (the dead-letter sink) none.
    expect(new Set(grants.map((g) => g.fn))).toEqual(new Set(STEPS.filter((s) => stepEntry(s).usesKubernetes)));
    expect(STEPS.filter((s) => !stepEntry(s).usesKubernetes)).toEqual(["dead-letter"]);
    // derive-sans without `get services` is knative/rbac.yaml before issue 8's finding 9.
    expect(grants.map(label)).toContain("derive-sans without get services");
  });

  it.each(grants.map((g) => ({ case: label(g), g })))("$case", async ({ g }) => {
    const r = await runFlow(without(ids.documents, g));
    const user = userOf(g.fn);
    // The API server refused exactly that call of that function...
    const refusedCalls = r.refused.filter((x) => x.user === user && x.verb === g.verb && x.resource === g.resource &&
      (x.apiGroup ?? "") === g.apiGroup && (g.resourceName === undefined || x.name === g.resourceName));
    expect(refusedCalls.length, `refused: ${r.refused.map(describeRefusal).join("; ") || "nothing"}`).toBeGreaterThan(0);
    // ...and some request did not end as expected, except for the Events sent in the background
    // (best effort: a lost Event changes no outcome; the refusal above is what catches it) and the
    // Services index's watch (an optimisation: refused, derive-sans lists every Service instead).
    const watch = g.resource === "services" && g.verb === "watch";
    if (watch) expect(r.unexpected).toEqual([]);
    else if (!(g.resource === "events" && g.verb === "create")) expect(r.unexpected).not.toEqual([]);
  });
});

describe("the emulated ApiServerSource, like Knative's controller, checks its ServiceAccount first", () => {
  it.each(["get", "list", "watch"])("does not start without %s on PodCertificateRequests", async (verb) => {
    const knative = mkdtempSync(join(tmpdir(), "podcert-knative-"));
    try {
      cpSync("knative", knative, { recursive: true });
      const file = join(knative, "apiserversource.yaml");
      const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJSON() as { kind?: string; metadata?: { name?: string }; rules?: { verbs: string[] }[] });
      const role = docs.find((d) => d.kind === "ClusterRole" && d.metadata?.name === "podcert-apiserver-source")!;
      for (const r of role.rules!) r.verbs = r.verbs.filter((v) => v !== verb);
      writeFileSync(file, docs.map((d) => stringify(d)).join("---\n"));
      await expect(startLocalFlow({ objects: parseClusterFile(readFileSync("examples/cluster.yaml", "utf8")), config: defaultSignerConfig(), caPool: await throwawayCaPool(defaultSignerConfig().signers.keys()), knativeDir: knative }))
        .rejects.toThrow(`ApiServerSource: insufficient permissions: User ${ids.source.name} cannot ${verb} resource "podcertificaterequests" in API group "certificates.k8s.io" in Namespace "ate-system"`);
    } finally {
      rmSync(knative, { recursive: true, force: true });
    }
  });
});
