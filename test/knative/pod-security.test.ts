// Namespace podcert enforces the "restricted" Pod Security Standard, and every pod the manifests
// lead to meets it, with the containers and volumes Knative adds (queue-proxy, the
// ApiServerSource's receive adapter).
import { describe, expect, it } from "vitest";
import { clone, find, KNATIVE_REVISION_ADDS, knativeServices, loadDir, type Obj, podSecurityProblems, podsOf, restrictedProblems } from "./manifests.js";

const { docs } = loadDir();
const PSA = "pod-security.kubernetes.io";

describe("Pod Security", () => {
  it("namespace podcert enforces restricted at a pinned version, and warns and audits it", () => {
    const labels = find(docs, "Namespace", "podcert").metadata.labels;
    expect(labels[`${PSA}/enforce`]).toBe("restricted");
    expect(labels[`${PSA}/enforce-version`]).toMatch(/^v1\.\d+$/);
    expect(podSecurityProblems(docs)).toEqual([]);
  });

  it("checks every pod: each Knative Service's with queue-proxy, and the receive adapter's", () => {
    const pods = podsOf(docs);
    // The PingSource adds none: Eventing's shared adapter in knative-eventing sends its ticks.
    expect(docs.some((d) => d.obj.kind === "PingSource")).toBe(true);
    expect(pods).toHaveLength(knativeServices(docs).length + 1);
    expect(pods.map((p) => p.name)).toEqual(expect.arrayContaining([expect.stringContaining("Service podcert-publish-trust")]));
    expect(pods.filter((p) => p.spec.containers.some((c: Obj) => c.name === "queue-proxy"))).toHaveLength(knativeServices(docs).length);
    expect(pods.filter((p) => p.name.endsWith("ApiServerSource podcert-pcrs receive adapter"))).toHaveLength(1);
  });

  it("detects a namespace that does not enforce restricted", () => {
    const before = clone(docs); // the labels before: warn and audit only
    const labels = find(before, "Namespace", "podcert").metadata.labels;
    delete labels[`${PSA}/enforce`];
    delete labels[`${PSA}/enforce-version`];
    expect(podSecurityProblems(before)).toEqual([
      expect.stringContaining(`${PSA}/enforce must be restricted, is undefined`),
      expect.stringContaining(`${PSA}/enforce-version must pin a version (v1.N), is undefined`),
    ]);

    const baseline = clone(docs);
    find(baseline, "Namespace", "podcert").metadata.labels[`${PSA}/enforce`] = "baseline";
    find(baseline, "Namespace", "podcert").metadata.labels[`${PSA}/enforce-version`] = "latest";
    expect(podSecurityProblems(baseline)).toHaveLength(2);
  });

  it("detects containers and pods that break the profile", () => {
    const loose = clone(docs);
    const sign = find(loose, "Service", "podcert-sign").spec.template.spec;
    delete sign.containers[0].securityContext.seccompProfile;
    sign.containers[0].securityContext.allowPrivilegeEscalation = true;
    find(loose, "Service", "podcert-deny").spec.template.spec.containers[0].securityContext.capabilities = { drop: ["ALL"], add: ["NET_ADMIN"] };
    find(loose, "Service", "podcert-validate").spec.template.spec.volumes.push({ name: "host", hostPath: { path: "/var/run" } });
    find(loose, "Service", "podcert-publish-trust").spec.template.spec.containers[0].securityContext.runAsNonRoot = false;
    expect(podSecurityProblems(loose)).toEqual([
      expect.stringContaining("podcert-validate: volume host is of kind hostPath"),
      expect.stringContaining("podcert-sign: container sign: allowPrivilegeEscalation must be false"),
      expect.stringContaining("podcert-sign: container sign: seccompProfile must be RuntimeDefault or Localhost, is undefined"),
      expect.stringContaining("podcert-deny: container deny: adds capability NET_ADMIN"),
      expect.stringContaining("podcert-publish-trust: container publish-trust: runAsNonRoot must be true"),
    ]);

    // A plain workload with Kubernetes' defaults would be refused.
    const deployment = clone(docs);
    deployment.push({ file: "extra.yaml", index: 0, obj: { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x", namespace: "podcert" }, spec: { template: { spec: { containers: [{ name: "x" }] } } } } });
    expect(podSecurityProblems(deployment)).toHaveLength(4);
  });

  it("applies the pod's securityContext to containers that set none, as Kubernetes does", () => {
    const c = { name: "c", securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } } };
    expect(restrictedProblems({ securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } }, containers: [c] }, "p")).toEqual([]);
    expect(restrictedProblems({ securityContext: { runAsNonRoot: true, seccompProfile: { type: "Unconfined" } }, containers: [c] }, "p")).toEqual([
      "p: pod seccompProfile Unconfined",
      "p: container c: seccompProfile must be RuntimeDefault or Localhost, is Unconfined",
    ]);
    // queue-proxy as Knative Serving 1.9 to 1.11 built it, without a seccomp profile: refused.
    const oldQueueProxy = { ...KNATIVE_REVISION_ADDS.containers[0]!, securityContext: { ...KNATIVE_REVISION_ADDS.containers[0]!.securityContext, seccompProfile: undefined } };
    expect(restrictedProblems({ containers: [oldQueueProxy] }, "p")).toEqual(["p: container queue-proxy: seccompProfile must be RuntimeDefault or Localhost, is undefined"]);
  });
});
