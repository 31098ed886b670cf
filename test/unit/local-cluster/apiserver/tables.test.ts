// Server-side Tables and short names: built from plain objects, then read by the real kubectl
// (skipped where it is not installed) against the embedded API server.
import { fixture } from "../../../helpers/kubernetes.js";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { parseClusterFile } from "../../../../local-cluster/apiserver/cluster-file.js";
import { resolveResource, type KubeObject } from "../../../../local-cluster/apiserver/resources.js";
import { startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import { humanDuration, toTable, wantsTable } from "../../../../local-cluster/apiserver/tables.js";
import { testCa } from "../../../helpers/ca.js";
import { tempDir } from "../../../helpers/temp.js";
import { hasKubectl } from "../../../helpers/tools.js";
import { serveKubectl } from "../../../../cli/kubectl-access.js";

const NOW = new Date("2026-05-01T12:00:00Z");
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString();
const type = (ref: string) => resolveResource(ref)!;
const KUBECTL_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

const obj = (kind: string, name: string, rest: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): KubeObject =>
  ({ apiVersion: "v1", kind, metadata: { name, creationTimestamp: ago(300), ...meta }, ...rest }) as KubeObject;

const pcr = (name: string, conditions: unknown[] = []) =>
  obj("PodCertificateRequest", name, {
    spec: { signerName: "example.com/id", podName: "web-0", serviceAccountName: "web", nodeName: "node-1" },
    status: { conditions },
  }, { namespace: "team-a" });

describe("Tables", () => {
  it("recognises kubectl's Accept header, and only a v1 Table request", () => {
    expect(wantsTable(KUBECTL_ACCEPT)).toBe(true);
    expect(wantsTable("application/json")).toBe(false);
    expect(wantsTable(undefined)).toBe(false);
    expect(wantsTable("application/json;as=Table;v=v1beta1;g=meta.k8s.io")).toBe(false);
  });

  it("prints ages as apimachinery's HumanDuration", () => {
    expect([5, 119, 303, 600, 3 * 3600 - 1, 3 * 3600 + 120, 30 * 3600, 3 * 86400 + 7200, 400 * 86400, 3 * 365 * 86400 + 86400 * 10].map((s) => humanDuration(s * 1000)))
      .toEqual(["5s", "119s", "5m3s", "10m", "179m", "3h2m", "30h", "3d2h", "400d", "3y10d"]);
    expect(humanDuration(-5000)).toBe("<invalid>");
  });

  it("gives PodCertificateRequests their state from the terminal condition", () => {
    const table = toTable(type("podcertificaterequests"), [
      pcr("pending"),
      pcr("issued", [{ type: "Issued", status: "True" }]),
      pcr("denied", [{ type: "Denied", status: "True", reason: "NotAllowed" }]),
    ], { now: NOW });
    expect(table.columnDefinitions.map((c) => c.name)).toEqual(["Name", "PodName", "ServiceAccountName", "NodeName", "SignerName", "State", "Age"]);
    expect(table.rows.map((r) => r.cells)).toEqual([
      ["pending", "web-0", "web", "node-1", "example.com/id", "Pending", "5m"],
      ["issued", "web-0", "web", "node-1", "example.com/id", "Issued", "5m"],
      ["denied", "web-0", "web", "node-1", "example.com/id", "Denied", "5m"],
    ]);
    expect(table.rows[0]!.object.metadata.namespace).toBe("team-a");
  });

  it("prints Services, ClusterTrustBundles, Events and (by default) NAME/AGE", () => {
    const svc = toTable(type("services"), [obj("Service", "api", { spec: { type: "ClusterIP", clusterIP: "10.0.0.7", ports: [{ port: 443, protocol: "TCP" }], selector: { app: "api" } } })], { now: NOW });
    expect(svc.columnDefinitions.map((c) => c.name)).toEqual(["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    expect(svc.rows[0]!.cells).toEqual(["api", "ClusterIP", "10.0.0.7", "<none>", "443/TCP", "5m", "app=api"]);
    const ctb = toTable(type("clustertrustbundles"), [obj("ClusterTrustBundle", "example.com:id:bundle", { spec: { signerName: "example.com/id", trustBundle: "" } })], { now: NOW });
    expect(ctb.columnDefinitions.map((c) => c.name)).toEqual(["Name", "SignerName"]);
    expect(ctb.rows[0]!.cells).toEqual(["example.com:id:bundle", "example.com/id"]);
    const ev = toTable(type("events"), [obj("Event", "x.1", {
      involvedObject: { kind: "PodCertificateRequest", name: "x" }, type: "Warning", reason: "NoUsableCa", message: "rotate",
      source: { component: "podcert-sign" }, firstTimestamp: ago(60), lastTimestamp: ago(30), count: 2,
    })], { now: NOW });
    expect(ev.rows[0]!.cells).toEqual(["30s", "Warning", "NoUsableCa", "podcertificaterequest/x", "", "podcert-sign", "rotate", "60s", "2", "x.1"]);
    const sa = toTable(type("namespaces"), [obj("Namespace", "team-a", { status: { phase: "Active" } })], { now: NOW });
    expect(sa.rows[0]!.cells).toEqual(["team-a", "Active", "5m"]);
  });

  it("has one cell per column for every kind", () => {
    for (const ref of ["pods", "services", "namespaces", "nodes", "serviceaccounts", "configmaps", "events", "events.events.k8s.io", "podcertificaterequests", "clustertrustbundles"]) {
      const t = type(ref);
      const table = toTable(t, [obj(t.kind, "x")], { now: NOW });
      expect(table.rows[0]!.cells.length, ref).toBe(table.columnDefinitions.length);
    }
  });
});

const run = promisify(execFile);
const kubectlPath = "kubectl";

describe.skipIf(!hasKubectl)("kubectl against the embedded API server", () => {
  let server: EmbeddedApiServer;
  let dir: string;
  beforeAll(async () => {
    const ca = await testCa({ name: "root", notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 86_400_000) });
    server = await startApiServer({
      objects: [
        // PCRs (with their pods, nodes, ...) as `podcert issue` would find them.
        ...parseClusterFile(readFileSync(fixture("clusters/issued.yaml"), "utf8")),
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "team-a" } },
        { apiVersion: "v1", kind: "Service", metadata: { name: "api", namespace: "team-a" }, spec: { clusterIP: "10.0.0.7", ports: [{ port: 443, protocol: "TCP" }] } },
        { apiVersion: "certificates.k8s.io/v1beta1", kind: "ClusterTrustBundle", metadata: { name: "example.com:id:bundle" }, spec: { signerName: "example.com/id", trustBundle: ca.certificate } },
      ],
    });
    dir = tempDir("podcert-kubectl-");
    writeFileSync(join(dir, "kubeconfig"), server.kubeconfig(), { mode: 0o600 });
  });
  afterAll(async () => {
    await server?.stop();
  });
  // A fresh discovery cache each time: kubectl would otherwise reuse another server's.
  const kubectl = async (...args: string[]) =>
    (await run(kubectlPath, ["--kubeconfig", join(dir, "kubeconfig"), "--cache-dir", join(dir, "cache"), ...args])).stdout;
  const header = (out: string) => out.split("\n")[0]!.trim().split(/\s{2,}/);

  it("prints the columns kube-apiserver prints", async () => {
    const pcrs = await kubectl("get", "podcertificaterequests", "-A");
    expect(header(pcrs)).toEqual(["NAMESPACE", "NAME", "PODNAME", "SERVICEACCOUNTNAME", "NODENAME", "SIGNERNAME", "STATE", "AGE"]);
    expect(pcrs.split("\n").filter((l) => l.trim() !== "").length).toBeGreaterThan(1);
    expect(header(await kubectl("get", "clustertrustbundles"))).toEqual(["NAME", "SIGNERNAME"]);
    expect(header(await kubectl("get", "svc", "-A"))).toEqual(["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    expect(header(await kubectl("get", "svc", "-A", "-o", "wide"))).toEqual(["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
    expect(header(await kubectl("get", "ns"))).toEqual(["NAME", "STATUS", "AGE"]);
    expect(header(await kubectl("get", "po", "-A"))).toEqual(["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
  });

  it("knows kube-apiserver's short names, and no others", async () => {
    for (const short of ["po", "svc", "ns", "sa", "cm", "ev", "no"]) await expect(kubectl("get", short, "-A")).resolves.toBeTypeOf("string");
    // kube-apiserver defines none for ClusterTrustBundles (nor PodCertificateRequests).
    await expect(kubectl("get", "ctb")).rejects.toThrow(/doesn't have a resource type "ctb"/);
  });
});

describe.skipIf(!hasKubectl)("kubectl with credentials (podcert demo --keep-running)", () => {
  it("reads the API over HTTPS as the administrator, and is refused without the token", async () => {
    const server = await startApiServer({
      objects: parseClusterFile(readFileSync(fixture("clusters/issued.yaml"), "utf8")),
      authorization: { rbac: [], users: [] },
    });
    try {
      const dir = tempDir("podcert-kubectl-tls-");
      const config = join(dir, "kubeconfig");
      const url = await serveKubectl(server, config);
      expect(url).toMatch(/^https:\/\/localhost:\d+$/);
      const get = (kubeconfig: string) => run(kubectlPath, ["--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), "get", "podcertificaterequests", "-A"]);
      const out = (await get(config)).stdout;
      expect(out.split("\n")[0]).toMatch(/^NAMESPACE\s+NAME\s+PODNAME/);
      // The same server without the token: kubectl verified the certificate and the server refused it.
      writeFileSync(join(dir, "anonymous"), readFileSync(config, "utf8").replace(/token: .*/, "token: not-a-token"), { mode: 0o600 });
      await expect(get(join(dir, "anonymous"))).rejects.toThrow(/Unauthorized|provide credentials/);
    } finally {
      await server.stop();
    }
  });
});
