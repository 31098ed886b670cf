// One Knative Service per function, following the runtime contract (environment, Secrets and
// ConfigMap mounts, readiness, scale), with restrictive security settings, behind a NetworkPolicy
// that admits only Knative's delivery path.
import { describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../shared/cli/functions.js";
import { ACCEPTED_KEYS_FILE, SIGNING_KEY_FILE } from "../../shared/events/step-keys.js";
import { clone, find, functionServiceProblems, knativeServices, loadDir, networkPolicyProblems, securityProblems, serviceName } from "./manifests.js";

const { docs } = loadDir();
const STEP_KEY_FILES = [SIGNING_KEY_FILE, ACCEPTED_KEYS_FILE];
const FNS = Object.keys(FUNCTIONS);

describe("Knative Services", () => {
  it.each(FNS)("%s: exactly one Service, following the runtime contract", (fn) => {
    expect(functionServiceProblems(docs, fn, STEP_KEY_FILES)).toEqual([]);
  });

  it("are the four functions plus the dead-letter sink, nothing else", () => {
    expect(knativeServices(docs).map((d) => d.obj.metadata.name).sort()).toEqual([...FNS.map(serviceName), "podcert-dead-letter"].sort());
  });

  it("only sign mounts the CA pool; each function only its own step key", () => {
    for (const fn of FNS) {
      const svc = find(docs, "Service", serviceName(fn));
      const secrets = (svc.spec.template.spec.volumes as { secret?: { secretName: string } }[]).flatMap((v) => (v.secret ? [v.secret.secretName] : []));
      expect(secrets.sort(), fn).toEqual(fn === "sign" ? ["podcert-ca-pool", "podcert-step-sign"] : [`podcert-step-${fn}`]);
    }
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

    const cold = clone(docs);
    find(cold, "Service", "podcert-sign").spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"] = "0";
    expect(functionServiceProblems(cold, "sign", STEP_KEY_FILES)).toEqual([expect.stringContaining("min-scale must be 1")]);

    const noProbe = clone(docs);
    delete find(noProbe, "Service", "podcert-deny").spec.template.spec.containers[0].readinessProbe;
    expect(functionServiceProblems(noProbe, "deny", STEP_KEY_FILES)).toEqual(["podcert-deny: readinessProbe must be httpGet /healthz"]);

    const gone = clone(docs).filter((d) => d.obj.metadata?.name !== "podcert-derive-sans" || d.obj.kind !== "Service");
    expect(functionServiceProblems(gone, "derive-sans", STEP_KEY_FILES)).toEqual(["derive-sans: 0 Knative Services named podcert-derive-sans, expected 1"]);

    const loose = clone(docs);
    const sc = find(loose, "Service", "podcert-dead-letter").spec.template.spec.containers[0].securityContext;
    sc.readOnlyRootFilesystem = false;
    delete sc.seccompProfile;
    sc.capabilities = { drop: ["NET_RAW"] };
    expect(securityProblems(loose)).toHaveLength(3);
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
