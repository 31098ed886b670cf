// One Knative Service per function, following the runtime contract (environment, Secrets and
// ConfigMap mounts, readiness, scale), with restrictive security settings, behind a NetworkPolicy
// that admits only Knative's delivery path.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { STEP_REGISTRY, STEPS } from "../../shared/steps.js";
import { EDGE_KEYS_FILE } from "../../shared/events/step-keys.js";
import {
  autoscalingAim,
  autoscalingProblems,
  clone,
  find,
  functionServiceProblems,
  issuancePath,
  KNATIVE_DIR,
  knativeServices,
  loadDir,
  networkPolicyProblems,
  REGISTERED,
  ROOT,
  securityProblems,
  serviceName,
} from "./manifests.js";

const { docs } = loadDir();
const STEP_KEY_FILES = [EDGE_KEYS_FILE];
const FNS = STEPS;

/** The autoscaling aim per pod a text states ("aims at N in-flight events per pod"), YAML comment marks ignored. */
function statedAim(text: string): number | undefined {
  const m = /aims at (\d+(?:\.\d+)?)\s+in-flight\s+events\s+per\s+pod/.exec(text.replace(/\n\s*#\s*/g, " "));
  return m === null ? undefined : Number(m[1]);
}
const servicesNote = statedAim(readFileSync(join(KNATIVE_DIR, "services.yaml"), "utf8"));
const readmeAim = statedAim(readFileSync(join(ROOT, "README.md"), "utf8"));

describe("Knative Services", () => {
  it.each(FNS)("%s: exactly one Service, following the runtime contract", (fn) => {
    expect(functionServiceProblems(docs, fn, STEP_KEY_FILES)).toEqual([]);
  });

  it("are the functions of the registry (the dead-letter sink among them), nothing else", () => {
    expect(knativeServices(docs).map((d) => d.obj.metadata.name).sort()).toEqual(FNS.map(serviceName).sort());
    expect(STEP_REGISTRY.filter((s) => s.deadLetterSink).map((s) => s.name)).toEqual(["dead-letter"]);
  });

  it("only sign mounts the CA pool, only publish-trust the CA trust; each function only its own step key, the dead-letter sink none", () => {
    // The registry says who holds what; the Services follow it.
    expect(STEP_REGISTRY.filter((s) => s.holdsCaPool).map((s) => s.name)).toEqual(["sign"]);
    expect(STEP_REGISTRY.filter((s) => s.publishesTrust).map((s) => s.name)).toEqual(["publish-trust"]);
    const expected: Record<string, string[]> = { sign: ["podcert-ca-pool", "podcert-step-sign"], "publish-trust": ["podcert-ca-trust", "podcert-step-publish-trust"], "dead-letter": [] };
    for (const fn of FNS) {
      const svc = find(docs, "Service", serviceName(fn));
      const secrets = ((svc.spec.template.spec.volumes ?? []) as { secret?: { secretName: string } }[]).flatMap((v) => (v.secret ? [v.secret.secretName] : []));
      expect(secrets.sort(), fn).toEqual(expected[fn] ?? [`podcert-step-${fn}`]);
    }
  });

  it("keep a warm pod for the steps an Issued status waits on, and let deny, publish-trust, resync and dead-letter scale to zero", () => {
    expect([...issuancePath(REGISTERED)].sort()).toEqual(["derive-sans", "sign", "validate"]);
    const minScale = (fn: string) => find(docs, "Service", serviceName(fn)).spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"];
    expect(Object.fromEntries(FNS.map((fn) => [fn, minScale(fn)]))).toEqual({ validate: "1", "derive-sans": "1", sign: "1", deny: "0", "publish-trust": "0", resync: "0", "dead-letter": "0" });
    // A step whose denial led on to issuance would join the warm path.
    const chained = { ...REGISTERED, deny: { ...REGISTERED.deny!, emits: ["dev.ate.podcert.request.resync"] } };
    expect(issuancePath(chained).has("deny")).toBe(true);
  });

  it("every Service's container is non-root, read-only, unprivileged, without capabilities, seccomp RuntimeDefault", () => {
    expect(securityProblems(docs)).toEqual([]);
  });

  it("detects contract and security violations", () => {
    const caInValidate = clone(docs);
    const validate = find(caInValidate, "Service", "podcert-validate").spec.template.spec;
    validate.volumes.push({ name: "ca", secret: { secretName: "podcert-ca-pool" } });
    expect(functionServiceProblems(caInValidate, "validate", STEP_KEY_FILES)).toEqual([
      "podcert-validate: reads Secrets [podcert-ca-pool, podcert-step-validate], expected exactly [podcert-step-validate]",
    ]);

    const otherKey = clone(docs);
    find(otherKey, "Service", "podcert-deny").spec.template.spec.volumes[0].secret.secretName = "podcert-step-sign";
    expect(functionServiceProblems(otherKey, "deny", STEP_KEY_FILES)).toEqual(
      expect.arrayContaining(["podcert-deny: /var/run/podcert/keys must be Secret podcert-step-deny"]),
    );

    const noCa = clone(docs);
    const signEnv = find(noCa, "Service", "podcert-sign").spec.template.spec.containers[0].env as { name: string }[];
    signEnv.splice(signEnv.findIndex((e) => e.name === "PODCERT_CA_POOL"), 1);
    expect(functionServiceProblems(noCa, "sign", STEP_KEY_FILES)).toEqual(["podcert-sign: env PODCERT_CA_POOL must be /var/run/podcert/ca/ca-pool.yaml, is undefined"]);

    const wrongPath = clone(docs);
    find(wrongPath, "Service", "podcert-derive-sans").spec.template.spec.containers[0].volumeMounts[1].mountPath = "/etc/config";
    expect(functionServiceProblems(wrongPath, "derive-sans", STEP_KEY_FILES)).toEqual(["podcert-derive-sans: nothing is mounted at /etc/podcert"]);

    // K_SINK is the SinkBinding's to inject; the resync settings are resync's alone.
    const sinkByHand = clone(docs);
    (find(sinkByHand, "Service", "podcert-resync").spec.template.spec.containers[0].env as { name: string; value: string }[]).push({ name: "K_SINK", value: "http://broker" });
    expect(functionServiceProblems(sinkByHand, "resync", STEP_KEY_FILES)).toEqual(["podcert-resync: K_SINK is the SinkBinding's to inject (sinkBindingProblems)"]);
    const resyncEnvElsewhere = clone(docs);
    (find(resyncEnvElsewhere, "Service", "podcert-validate").spec.template.spec.containers[0].env as { name: string; value: string }[]).push({ name: "PODCERT_RESYNC_MAX_EVENTS", value: "5" });
    expect(functionServiceProblems(resyncEnvElsewhere, "validate", STEP_KEY_FILES)).toEqual(["podcert-validate: only a step that posts to the Broker (shared/steps.ts) is given PODCERT_RESYNC_MAX_EVENTS"]);

    const cold = clone(docs);
    find(cold, "Service", "podcert-sign").spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"] = "0";
    expect(functionServiceProblems(cold, "sign", STEP_KEY_FILES)).toEqual([expect.stringContaining("min-scale must be 1")]);

    const noProbe = clone(docs);
    delete find(noProbe, "Service", "podcert-deny").spec.template.spec.containers[0].readinessProbe;
    expect(functionServiceProblems(noProbe, "deny", STEP_KEY_FILES)).toEqual(["podcert-deny: readinessProbe must be httpGet /healthz"]);
    const trivialReadiness = clone(docs);
    find(trivialReadiness, "Service", "podcert-sign").spec.template.spec.containers[0].readinessProbe.httpGet.path = "/livez";
    expect(functionServiceProblems(trivialReadiness, "sign", STEP_KEY_FILES)).toEqual(["podcert-sign: readinessProbe must be httpGet /healthz"]);
    const noLiveness = clone(docs);
    delete find(noLiveness, "Service", "podcert-deny").spec.template.spec.containers[0].livenessProbe;
    expect(functionServiceProblems(noLiveness, "deny", STEP_KEY_FILES)).toEqual(["podcert-deny: livenessProbe must be httpGet /livez"]);

    const gone = clone(docs).filter((d) => d.obj.metadata?.name !== "podcert-derive-sans" || d.obj.kind !== "Service");
    expect(functionServiceProblems(gone, "derive-sans", STEP_KEY_FILES)).toEqual(["derive-sans: 0 Knative Services named podcert-derive-sans, expected 1"]);

    const warmPublisher = clone(docs);
    find(warmPublisher, "Service", "podcert-publish-trust").spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"] = "1";
    expect(functionServiceProblems(warmPublisher, "publish-trust", STEP_KEY_FILES)).toEqual([expect.stringContaining("min-scale must be 0")]);

    const loose = clone(docs);
    const sc = find(loose, "Service", "podcert-dead-letter").spec.template.spec.containers[0].securityContext;
    sc.readOnlyRootFilesystem = false;
    delete sc.seccompProfile;
    sc.capabilities = { drop: ["NET_RAW"] };
    expect(securityProblems(loose)).toHaveLength(3);
  });
});

describe("the trust publisher's Service", () => {
  const publisher = (d: typeof docs) => find(d, "Service", "podcert-publish-trust").spec.template.spec;
  const problems = (d: typeof docs) => functionServiceProblems(d, "publish-trust", STEP_KEY_FILES);

  it("mounts the CA trust, never the CA pool", () => {
    const withPool = clone(docs);
    const spec = publisher(withPool);
    spec.volumes.push({ name: "ca-pool", secret: { secretName: "podcert-ca-pool", defaultMode: 292, items: [{ key: "ca-pool.yaml", path: "ca-pool.yaml" }] } });
    spec.containers[0].volumeMounts.push({ name: "ca-pool", mountPath: "/var/run/podcert/ca", readOnly: true });
    expect(problems(withPool)).toEqual([
      "podcert-publish-trust: reads Secrets [podcert-ca-pool, podcert-ca-trust, podcert-step-publish-trust], expected exactly [podcert-ca-trust, podcert-step-publish-trust]",
    ]);

    // The pool instead of the trust document, at the trust document's path.
    const swapped = clone(docs);
    publisher(swapped).volumes.find((v: { name: string }) => v.name === "ca-trust").secret = { secretName: "podcert-ca-pool", items: [{ key: "ca-pool.yaml", path: "ca-trust.yaml" }] };
    expect(problems(swapped)).toEqual(
      expect.arrayContaining([
        "podcert-publish-trust: /var/run/podcert/trust must be Secret podcert-ca-trust",
        "podcert-publish-trust: reads Secrets [podcert-ca-pool, podcert-step-publish-trust], expected exactly [podcert-ca-trust, podcert-step-publish-trust]",
      ]),
    );

    const poolEnv = clone(docs);
    publisher(poolEnv).containers[0].env.push({ name: "PODCERT_CA_POOL", value: "/var/run/podcert/ca/ca-pool.yaml" });
    expect(problems(poolEnv)).toEqual(["podcert-publish-trust: only a step that holds the CA pool (shared/steps.ts) is given PODCERT_CA_POOL"]);

    const untrusted = clone(docs);
    const env = publisher(untrusted).containers[0].env as { name: string }[];
    env.splice(env.findIndex((e) => e.name === "PODCERT_CA_TRUST"), 1);
    expect(problems(untrusted)).toEqual(["podcert-publish-trust: env PODCERT_CA_TRUST must be /var/run/podcert/trust/ca-trust.yaml, is undefined"]);

    const subPath = clone(docs);
    const mount = publisher(subPath).containers[0].volumeMounts.find((m: { name: string }) => m.name === "ca-trust");
    Object.assign(mount, { mountPath: "/var/run/podcert/trust/ca-trust.yaml", subPath: "ca-trust.yaml" });
    expect(problems(subPath)).toEqual(["podcert-publish-trust: nothing is mounted at /var/run/podcert/trust", "podcert-publish-trust: mount ca-trust uses subPath, which kubelet never updates"]);
  });

  it("is given its namespace written out (Knative refuses fieldRef by default), and the ConfigMap its Role names", () => {
    const downward = clone(docs);
    const env = publisher(downward).containers[0].env as { name: string; value?: string; valueFrom?: unknown }[];
    const ns = env.find((e) => e.name === "POD_NAMESPACE")!;
    delete ns.value;
    ns.valueFrom = { fieldRef: { fieldPath: "metadata.namespace" } };
    expect(problems(downward)).toEqual([
      "podcert-publish-trust: env POD_NAMESPACE must be podcert, is undefined",
      "podcert-publish-trust: env POD_NAMESPACE: Knative refuses the downward API in env by default (kubernetes.podspec-fieldref); write the value",
    ]);

    const otherMap = clone(docs);
    (publisher(otherMap).containers[0].env as { name: string; value: string }[]).find((e) => e.name === "PODCERT_SPIFFE_BUNDLES_CONFIGMAP")!.value = "spiffe";
    expect(problems(otherMap)).toEqual(["podcert-publish-trust: env PODCERT_SPIFFE_BUNDLES_CONFIGMAP must be podcert-spiffe-bundles, is spiffe"]);

    const hint = clone(docs);
    (publisher(hint).containers[0].env as { name: string; value: string }[]).find((e) => e.name === "PODCERT_SPIFFE_REFRESH_HINT_SECONDS")!.value = "5m";
    expect(problems(hint)).toEqual(["podcert-publish-trust: env PODCERT_SPIFFE_REFRESH_HINT_SECONDS must be whole seconds from 10 to 86400, is 5m"]);
  });

  it("is the only function given the trust publisher's environment", () => {
    const leaked = clone(docs);
    find(leaked, "Service", "podcert-validate").spec.template.spec.containers[0].env.push({ name: "PODCERT_CA_TRUST", value: "/var/run/podcert/trust/ca-trust.yaml" });
    expect(functionServiceProblems(leaked, "validate", STEP_KEY_FILES)).toEqual(["podcert-validate: only the trust publisher (shared/steps.ts) is given PODCERT_CA_TRUST"]);
  });
});

describe("autoscaling", () => {
  it("aims at the in-flight events per pod that services.yaml and the README state, on any cluster", () => {
    expect(servicesNote).toBeDefined();
    expect(readmeAim).toBe(servicesNote);
    expect(autoscalingProblems(docs, FNS, servicesNote)).toEqual([]);
  });

  it("computes the aim as Knative does: min(target, containerConcurrency) x utilization", () => {
    const svc = (cc: number, ann: Record<string, string>) => ({ spec: { template: { metadata: { annotations: ann }, spec: { containerConcurrency: cc } } } });
    expect(autoscalingAim(svc(50, { "autoscaling.knative.dev/target": "35" }))).toBeCloseTo(24.5);
    expect(autoscalingAim(svc(50, {}))).toBe(35);
    expect(autoscalingAim(svc(50, { "autoscaling.knative.dev/target": "80" }))).toBe(35);
    expect(autoscalingAim(svc(0, {}))).toBe(70);
    expect(autoscalingAim(svc(0, { "autoscaling.knative.dev/target": "10", "autoscaling.knative.dev/target-utilization-percentage": "100" }))).toBe(10);
    expect(() => autoscalingAim(svc(50, { "autoscaling.knative.dev/metric": "rps" }))).toThrow(/only KPA concurrency/);
  });

  it("detects an aim that differs from the note, or depends on the cluster", () => {
    // The annotations before the fix: target 35, described as 70% of containerConcurrency.
    const old = clone(docs);
    const ann = find(old, "Service", "podcert-sign").spec.template.metadata.annotations;
    delete ann["autoscaling.knative.dev/target-utilization-percentage"];
    ann["autoscaling.knative.dev/target"] = "35";
    expect(autoscalingProblems(old, FNS, servicesNote)).toEqual([
      expect.stringContaining("podcert-sign: the autoscaler aims at 24.5 in-flight requests per pod, the manifests say 35"),
      expect.stringContaining("podcert-sign: the aim depends on the cluster's config-autoscaler"),
    ]);

    const smaller = clone(docs);
    find(smaller, "Service", "podcert-validate").spec.template.spec.containerConcurrency = 40;
    expect(autoscalingProblems(smaller, FNS, servicesNote)).toEqual([expect.stringContaining("podcert-validate: the autoscaler aims at 28 in-flight")]);

    expect(autoscalingProblems(docs, FNS, undefined)).toEqual(["the aim per pod is not stated"]);
  });
});

describe("NetworkPolicy", () => {
  it("admits only knative-serving (activator, autoscaler) and knative-eventing to every Service's pods", () => {
    expect(networkPolicyProblems(docs)).toEqual([]);
  });

  it("detects an open policy, an unselected Service and a Service bypassing the activator", () => {
    const open = clone(docs);
    find(open, "NetworkPolicy", "podcert-functions-ingress").spec.ingress.push({ from: [{ podSelector: {} }] });
    expect(networkPolicyProblems(open)).toEqual([expect.stringContaining("is not one named Knative namespace")]);

    const unselected = clone(docs);
    find(unselected, "Service", "podcert-sign").spec.template.metadata.labels = {};
    expect(networkPolicyProblems(unselected)).toEqual([expect.stringContaining("no ingress NetworkPolicy selects its pods")]);

    const direct = clone(docs);
    delete find(direct, "Service", "podcert-validate").spec.template.metadata.annotations["autoscaling.knative.dev/target-burst-capacity"];
    expect(networkPolicyProblems(direct)).toEqual([expect.stringContaining("target-burst-capacity")]);
  });
});
