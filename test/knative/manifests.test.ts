// Every document in knative/ parses, validates against its kind's schema, sits in the right
// namespace, and the kustomization lists exactly the folder's files.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import { clone, documentProblems, find, isKustomization, KNATIVE_DIR, loadDir, parseYaml, ROOT, schemaProblems } from "./manifests.js";

const { docs, files, problems: parseProblems } = loadDir();

describe("knative/ documents", () => {
  it("has manifests to check", () => {
    expect(files).toContain("kustomization.yaml");
    expect(docs.length).toBeGreaterThan(20);
  });

  it("every file parses, identically as YAML 1.1 (kubectl) and 1.2 (yaml, the local broker)", () => {
    expect(parseProblems).toEqual([]);
  });

  it("every document validates against its kind's schema, in namespace podcert, once", () => {
    expect(documentProblems(docs)).toEqual([]);
  });

  it("uses only kinds with a schema model (plus the kustomization)", () => {
    const kinds = new Set(docs.filter((d) => !isKustomization(d.obj)).map((d) => `${d.obj.apiVersion} ${d.obj.kind}`));
    expect([...kinds].sort()).toEqual(
      [
        "eventing.knative.dev/v1 Broker",
        "eventing.knative.dev/v1 Trigger",
        "networking.k8s.io/v1 NetworkPolicy",
        "rbac.authorization.k8s.io/v1 ClusterRole",
        "rbac.authorization.k8s.io/v1 ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1 Role",
        "rbac.authorization.k8s.io/v1 RoleBinding",
        "serving.knative.dev/v1 Service",
        "sources.knative.dev/v1 ApiServerSource",
        "sources.knative.dev/v1 PingSource",
        "sources.knative.dev/v1 SinkBinding",
        "v1 ConfigMap",
        "v1 Namespace",
        "v1 ServiceAccount",
      ].sort(),
    );
  });

  it("holds no key or CA material (the user creates Secrets and ClusterTrustBundles)", () => {
    for (const f of files) expect(readFileSync(join(KNATIVE_DIR, f), "utf8"), f).not.toMatch(/BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)|"kty"/);
    expect(docs.filter((d) => d.obj.kind === "Secret" || d.obj.kind === "ClusterTrustBundle")).toEqual([]);
  });

  it("the ConfigMap carries the built-in configuration (examples/config/ate.yaml)", () => {
    const text = find(docs, "ConfigMap", "podcert-config").data?.["config.yaml"] as string;
    expect(parse(text)).toEqual(parse(readFileSync(join(ROOT, "examples/config/ate.yaml"), "utf8")));
    expect([...parseSignerConfig(text, "podcert-config").signers.keys()].sort()).toEqual(["atesystem.podcert.ate.dev/identity", "workerpool.podcert.ate.dev/identity"]);
  });

  it("detects broken documents", () => {
    const broken = clone(docs);
    find(broken, "Service", "podcert-sign").spec.template.spec.containerConcurrency = "50";
    find(broken, "ClusterRole", "podcert-deny").rules[0].verbs = undefined;
    find(broken, "Trigger", "podcert-deny-denied").spec.filter.attributes.type = 7;
    find(broken, "NetworkPolicy", "podcert-functions-ingress").metadata.namespace = "default";
    find(broken, "PingSource", "podcert-publish-trust").spec.schedule = 5;
    const p = documentProblems(broken);
    expect(p.some((m) => m.includes("podcert-sign") && m.includes("containerConcurrency"))).toBe(true);
    expect(p.some((m) => m.includes("podcert-deny") && m.includes("verbs"))).toBe(true);
    expect(p.some((m) => m.includes("podcert-deny-denied") && m.includes("type"))).toBe(true);
    expect(p.some((m) => m.includes("namespace must be podcert"))).toBe(true);
    expect(p.some((m) => m.includes("PingSource podcert-publish-trust") && m.includes("schedule"))).toBe(true);
    expect(schemaProblems({ apiVersion: "v1", kind: "Secret", metadata: { name: "x" } }, "x")).toEqual(["x: no schema model for v1 Secret"]);
    expect(parseYaml("a: 0444\nb: yes\n", "t").problems).toHaveLength(1);
    expect(parseYaml("a: [\n", "t").problems.length).toBeGreaterThan(0);
  });
});

describe("knative/kustomization.yaml", () => {
  const k = docs.find((d) => isKustomization(d.obj))!.obj;

  /** What is wrong with a kustomization against the folder's files. */
  function kustomizationProblems(kust: Record<string, unknown>, folder: readonly string[]): string[] {
    const problems: string[] = [];
    const resources = (kust.resources ?? []) as string[];
    const expected = folder.filter((f) => f !== "kustomization.yaml");
    for (const f of expected) if (!resources.includes(f)) problems.push(`${f} is not listed`);
    for (const r of resources) if (!expected.includes(r)) problems.push(`${r} is listed but is not a file of knative/`);
    if (new Set(resources).size !== resources.length) problems.push("a file is listed twice");
    for (const key of Object.keys(kust)) {
      if (/generator|helm|transformers|components|crds|openapi/i.test(key)) problems.push(`${key}: a plain resources list only`);
    }
    return problems;
  }

  it("lists every file of knative/ and nothing else, with no generators", () => {
    expect(kustomizationProblems(k, files)).toEqual([]);
  });

  it("detects a missing or extra file and generators", () => {
    const resources = k.resources as string[];
    expect(kustomizationProblems({ ...k, resources: resources.slice(1) }, files)).toEqual([`${resources[0]} is not listed`]);
    expect(kustomizationProblems(k, [...files, "extra.yaml"])).toEqual(["extra.yaml is not listed"]);
    expect(kustomizationProblems({ ...k, resources: [...resources, "https://example.com/x.yaml"] }, files)).toHaveLength(1);
    expect(kustomizationProblems({ ...k, secretGenerator: [] }, files)).toHaveLength(1);
  });
});
