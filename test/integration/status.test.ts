// `podcert status` and `podcert doctor` as a user runs them: the built command against the
// embedded API server through a kubeconfig, and on files alone.
import { CTB_VERSION, fixture } from "../helpers/kubernetes.js";
import { certificatesApiVersion } from "../../shared/kube/api-versions.js";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { StatusReport } from "../../cli/status.js";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import type { KubeObject } from "../../local-cluster/apiserver/resources.js";
import { startApiServer, type EmbeddedApiServer } from "../../local-cluster/apiserver/server.js";
import { parseCaPool } from "../../shared/ca/pool.js";
import { desiredTrustBundle } from "../../shared/ca/publication.js";
import { tempDir } from "../helpers/temp.js";
import { podcert } from "./cli.js";

const dir = tempDir("podcert-status-");
const pool = join(dir, "pool.yaml");
const servers: EmbeddedApiServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const issuedFixture = () => parseClusterFile(readFileSync(fixture("clusters/issued.yaml"), "utf8"));
const pcrsOf = (objects: KubeObject[]) => objects.filter((o) => o.kind === "PodCertificateRequest");

/** A kubeconfig file for a server seeded with `objects`. */
async function clusterWith(objects: unknown[], name: string): Promise<string> {
  const server = await startApiServer({ objects });
  servers.push(server);
  const path = join(dir, `kubeconfig-${name}`);
  writeFileSync(path, server.kubeconfig(), { mode: 0o600 });
  return path;
}

beforeAll(async () => {
  const r = await podcert(["ca", "init", "--out", pool]);
  expect(r.code).toBe(0);
});

describe("podcert status", () => {
  it("reports a cluster where all is well, and exits 0", async () => {
    const trust = parseCaPool(readFileSync(pool, "utf8"));
    const objects = issuedFixture();
    // Issued already: a fresh requests' status, as sign writes it (the cluster file has none).
    const now = new Date().toISOString();
    for (const p of pcrsOf(objects)) {
      p.metadata.creationTimestamp = now;
      p.status = { conditions: [{ type: "Issued", status: "True", reason: "Issued", message: "", lastTransitionTime: now }] };
    }
    // Seeded in the version this control plane serves them in (publish-trust writes that one too).
    const bundles = [...trust.signers.keys()].map((s) => ({ ...desiredTrustBundle(trust, s), apiVersion: certificatesApiVersion(CTB_VERSION) }));
    const kubeconfig = await clusterWith([...objects, ...bundles], "healthy");
    const r = await podcert(["status", "--kubeconfig", kubeconfig, "--ca-pool", pool]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("Pending requests: 0");
    expect(r.stdout).toContain("No problems found.");
    expect(r.stdout).not.toContain("PRIVATE KEY");
    expect(r.code).toBe(0);
  });

  it("names late requests (with why they wait), denials and unpublished bundles, exits 1, and says the same as JSON", async () => {
    const objects = issuedFixture();
    const [late, denied] = pcrsOf(objects) as [KubeObject, KubeObject];
    late.metadata.creationTimestamp = new Date(Date.now() - 11 * 60_000).toISOString();
    denied.status = { conditions: [{ type: "Denied", status: "True", reason: "NamespaceNotAllowed", message: "namespace is not served", lastTransitionTime: new Date().toISOString() }] };
    const warning = {
      apiVersion: "v1", kind: "Event", metadata: { name: `${late.metadata.name}.1`, namespace: late.metadata.namespace },
      involvedObject: { kind: "PodCertificateRequest", namespace: late.metadata.namespace, name: late.metadata.name, uid: late.metadata.uid },
      type: "Warning", reason: "NoUsableCa", message: "rotate the CA", source: { component: "podcert-sign" }, lastTimestamp: new Date().toISOString(),
    };
    const kubeconfig = await clusterWith([...objects, warning], "troubled");
    const r = await podcert(["status", "--kubeconfig", kubeconfig, "--ca-pool", pool, "--output", "json"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as StatusReport;
    expect(report.pending!.find((p) => p.name === late.metadata.name)).toMatchObject({ waiting: "NoUsableCa: rotate the CA" });
    expect(report.pending!.find((p) => p.name === late.metadata.name)!.deletedInSeconds).toBeLessThanOrEqual(4 * 60);
    expect(report.denials).toEqual([expect.objectContaining({ name: denied.metadata.name, reason: "NamespaceNotAllowed" })]);
    expect(report.bundles!.map((b) => b.state)).toEqual(["missing", "missing"]);
    expect(report.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/pending longer than 5m \(oldest .*NoUsableCa: rotate the CA\)/),
      expect.stringMatching(/ClusterTrustBundle .* is not published/),
    ]));
  });

  it("exits 75 when the API server cannot be reached, and 78 when the kubeconfig is unusable", async () => {
    const server = await startApiServer();
    const kubeconfig = join(dir, "kubeconfig-gone");
    writeFileSync(kubeconfig, server.kubeconfig(), { mode: 0o600 });
    await server.stop();
    const gone = await podcert(["status", "--kubeconfig", kubeconfig]);
    expect(gone.code).toBe(75);
    expect(gone.stderr).toMatch(/Kubernetes API .* failed/);
    const bad = await podcert(["status", "--kubeconfig", join(dir, "missing")]);
    expect(bad.code).toBe(78);
    const none = await podcert(["status"], { env: { KUBECONFIG: join(dir, "missing"), HOME: dir, KUBERNETES_SERVICE_HOST: "" } });
    expect(none.code).toBe(78);
    expect(none.stderr).toContain("no kubeconfig");
  });
});

describe("podcert doctor", () => {
  it("finds the checkout's files consistent with a fresh pool", async () => {
    const r = await podcert(["doctor", "--ca-pool", pool, "--manifests", "knative"]);
    expect(r.stdout).toContain("No problems found.");
    expect(r.code).toBe(0);
  });

  it("names the RBAC rule that lost a signer, and exits 1", async () => {
    const manifests = join(dir, "knative");
    cpSync("knative", manifests, { recursive: true });
    const rbac = join(manifests, "rbac.yaml");
    // Only podcert-sign's rule: the first `resourceNames` line naming both signers.
    writeFileSync(rbac, readFileSync(rbac, "utf8").replace("resourceNames: [atesystem.podcert.ate.dev/identity, workerpool.podcert.ate.dev/identity]", "resourceNames: [atesystem.podcert.ate.dev/identity]"));
    const r = await podcert(["doctor", "--ca-pool", pool, "--manifests", manifests, "--output", "json"]);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as StatusReport).problems).toEqual([
      expect.stringMatching(/^ClusterRole podcert-sign .*: sign on signers resourceNames lacks workerpool\.podcert\.ate\.dev\/identity/),
    ]);
  });

  it("exits 78 on a pool it cannot use, and 0 with its own help", async () => {
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, "kind: CAPool\n");
    expect((await podcert(["doctor", "--ca-pool", broken])).code).toBe(78);
    const help = await podcert(["doctor", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: podcert doctor");
  });
});
