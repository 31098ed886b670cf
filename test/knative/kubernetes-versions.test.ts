// knative/kubernetes-1.35-1.36/: the Component that points the ApiServerSource at v1beta1 for
// clusters that do not serve v1 PodCertificateRequests yet (issue 13). Rendered with kubectl's
// kustomize where installed (offline), as the README tells users to.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { controlPlaneApis } from "../../local-cluster/kubernetes-versions.js";
import { tempDir } from "../helpers/temp.js";
import { hasKubectl } from "../helpers/tools.js";

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec?: { resources?: { apiVersion: string; kind: string }[] } };

function render(components: string[]): Doc[] {
  const dir = tempDir("podcert-k8s-versions-");
  cpSync("knative", join(dir, "knative"), { recursive: true });
  mkdirSync(join(dir, "deploy"));
  const kustomization = { apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources: ["../knative"], components: components.map((c) => `../knative/${c}`) };
  writeFileSync(join(dir, "deploy", "kustomization.yaml"), YAML.stringify(kustomization));
  const r = spawnSync("kubectl", ["kustomize", join(dir, "deploy")], { encoding: "utf8", timeout: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc);
}

const watched = (docs: Doc[]) => docs.filter((d) => d.kind === "ApiServerSource").flatMap((d) => d.spec?.resources ?? []);

describe.skipIf(!hasKubectl)("the ApiServerSource's version per Kubernetes version (skipped without kubectl)", () => {
  it("the base watches v1 PodCertificateRequests, which 1.37 serves first", () => {
    expect(watched(render([]))).toEqual([{ apiVersion: "certificates.k8s.io/v1", kind: "PodCertificateRequest" }]);
    expect(controlPlaneApis("1.37").podCertificateRequests[0]).toBe("v1");
  });

  it("with kubernetes-1.35-1.36 it watches v1beta1, the only version 1.35 and 1.36 serve, and nothing else changes", () => {
    const base = render([]);
    const patched = render(["kubernetes-1.35-1.36"]);
    expect(watched(patched)).toEqual([{ apiVersion: "certificates.k8s.io/v1beta1", kind: "PodCertificateRequest" }]);
    for (const v of ["1.35", "1.36"] as const) expect(controlPlaneApis(v).podCertificateRequests).toEqual(["v1beta1"]);
    const others = (docs: Doc[]) => docs.filter((d) => d.kind !== "ApiServerSource");
    expect(others(patched)).toEqual(others(base));
  });
});
