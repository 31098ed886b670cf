// The embedded API server emulating Kubernetes 1.35, 1.36 and 1.37, over HTTP: which
// certificates.k8s.io versions each serves (discovery, 404 otherwise), one store read and written
// through every served version (conversion, watch, status rules, the sign check, RBAC, tables),
// the request forms each version accepts, unknown-field warnings and Strict, and 1.37's
// deprecation warnings. docs/kubernetes-versions.md has the facts and their sources.
import "reflect-metadata";

import { KeyObject, webcrypto } from "node:crypto";

import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { stubCsr } from "../../../../local-cluster/kubelet/keys.js";
import { clusterFileProblems } from "../../../../local-cluster/apiserver/cluster-file.js";
import type { KubeObject } from "../../../../local-cluster/apiserver/resources.js";
import { resolveResource } from "../../../../local-cluster/apiserver/resources.js";
import { ADMIN_USER, startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import {
  compareApiVersions,
  fromInternal,
  toInternal,
  unknownFields,
  warningHeader,
} from "../../../../local-cluster/apiserver/versions.js";
import { KUBERNETES_VERSIONS, type KubernetesVersion } from "../../../../local-cluster/kubernetes-versions.js";
import { makeCa } from "../../../helpers/trust-anchors.js";

const subtle = webcrypto.subtle;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

const CERTS = "certificates.k8s.io";
const G = "rbac.authorization.k8s.io";
const SIGNER = "example.com/signer";
const NS = "n";
const pcrs = (v: string, name = "") => `/apis/${CERTS}/${v}/namespaces/${NS}/podcertificaterequests${name ? `/${name}` : ""}`;
const ctbs = (v: string, name = "") => `/apis/${CERTS}/${v}/clustertrustbundles${name ? `/${name}` : ""}`;
const DEPRECATED_PCR = `${CERTS}/v1beta1 PodCertificateRequest is deprecated in v1.37+, unavailable in v1.40+; use ${CERTS}/v1 PodCertificateRequest`;
const DEPRECATED_CTB = `${CERTS}/v1beta1 ClusterTrustBundle is deprecated in v1.37+, unavailable in v1.40+; use ${CERTS}/v1 ClusterTrustBundle`;
const TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

const role = (name: string, rules: unknown[]) => ({ apiVersion: `${G}/v1`, kind: "ClusterRole", metadata: { name }, rules });
const bind = (name: string, users: string[]) => ({
  apiVersion: `${G}/v1`, kind: "ClusterRoleBinding", metadata: { name }, roleRef: { apiGroup: G, kind: "ClusterRole", name },
  subjects: users.map((u) => ({ kind: "User", apiGroup: G, name: u })),
});
const RBAC = [
  role("status-writer", [
    { apiGroups: [CERTS], resources: ["podcertificaterequests"], verbs: ["get", "list"] },
    { apiGroups: [CERTS], resources: ["podcertificaterequests/status"], verbs: ["update"] },
  ]),
  bind("status-writer", ["no-sign", "signs"]),
  role("signs", [{ apiGroups: [CERTS], resources: ["signers"], resourceNames: [SIGNER], verbs: ["sign"] }]),
  bind("signs", ["signs"]),
];
const USERS = ["no-sign", "signs", "nobody"].map((name) => ({ name, groups: ["system:authenticated"] }));

const servers = {} as Record<KubernetesVersion, EmbeddedApiServer>;
let leafKey: webcrypto.CryptoKeyPair;
let caKey: webcrypto.CryptoKeyPair;
let spki: string;
let stub: string;
let caPem: string;
const seedLog: string[] = [];

const baseSpec = (podName = "web-0") => ({
  signerName: SIGNER, podName, podUID: "pod-uid-1", serviceAccountName: "web", serviceAccountUID: "sa-uid-1",
  nodeName: "node-1", nodeUID: "node-uid-1",
});
const pcr = (v: string, spec: Record<string, unknown>, name?: string) => ({
  apiVersion: `${CERTS}/${v}`, kind: "PodCertificateRequest",
  metadata: name === undefined ? { generateName: "req-" } : { name }, spec,
});
const pkixSpec = (podName?: string) => ({ ...baseSpec(podName), pkixPublicKey: spki, proofOfPossession: "AAAA" });
const stubSpec = (podName?: string) => ({ ...baseSpec(podName), stubPKCS10Request: stub });

beforeAll(async () => {
  leafKey = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  caKey = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const spkiDer = Buffer.from(await subtle.exportKey("spki", leafKey.publicKey));
  spki = spkiDer.toString("base64");
  stub = stubCsr(KeyObject.from(leafKey.privateKey), spkiDer).toString("base64");
  caPem = (await makeCa("versions test ca")).pem;
  for (const v of KUBERNETES_VERSIONS) {
    servers[v] = await startApiServer({
      kubernetesVersion: v,
      objects: [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
        // Only 1.37 serves v1: the others skip it, as an unknown kind.
        { ...pcr("v1", stubSpec("seeded"), "seeded-v1"), metadata: { name: "seeded-v1", namespace: NS } },
      ],
      authorization: { rbac: RBAC, users: USERS },
      log: (line) => seedLog.push(`${v} ${line}`),
    });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  warnings: string[];
}

async function call(v: KubernetesVersion, method: string, path: string, body?: unknown, o: { user?: string; accept?: string } = {}): Promise<Answer> {
  const server = servers[v];
  const headers: Record<string, string> = { accept: o.accept ?? "application/json", authorization: `Bearer ${server.token(o.user ?? ADMIN_USER.name)}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${server.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  // fetch joins repeated headers with ", "; each warning is one quoted string.
  const warnings = [...(res.headers.get("warning") ?? "").matchAll(/299 - "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, "$1"));
  return { status: res.status, body: text.startsWith("{") ? (JSON.parse(text) as Record<string, unknown>) : { text }, warnings };
}

const specOf = (a: Answer) => a.body.spec as Record<string, unknown>;
const nameOf = (a: Answer) => (a.body.metadata as { name: string }).name;
const causesOf = (a: Answer) => ((a.body.details as { causes?: { field: string; message: string }[] } | undefined)?.causes ?? []).map((c) => `${c.field}: ${c.message}`);

async function create(v: KubernetesVersion, apiVersion: string, spec: Record<string, unknown>): Promise<Answer> {
  const a = await call(v, "POST", pcrs(apiVersion), pcr(apiVersion, spec));
  expect(a.status, JSON.stringify(a.body)).toBe(201);
  return a;
}

/** A watch, open once its headers arrived (the server registers it before sending them). */
async function openWatch(v: KubernetesVersion, path: string): Promise<{ take(n: number): Promise<{ type: string; object: KubeObject }[]> }> {
  const server = servers[v];
  const abort = new AbortController();
  const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.token()}` }, signal: abort.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  return {
    async take(n) {
      const lines: { type: string; object: KubeObject }[] = [];
      let buf = "";
      while (lines.length < n) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          lines.push(JSON.parse(buf.slice(0, i)) as { type: string; object: KubeObject });
          buf = buf.slice(i + 1);
        }
      }
      abort.abort();
      return lines;
    },
  };
}

async function issuedStatus(): Promise<Record<string, unknown>> {
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + 24 * 3600 * 1000);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "0102", subject: "", issuer: "CN=test ca", notBefore, notAfter,
    publicKey: leafKey.publicKey, signingKey: caKey.privateKey, signingAlgorithm: SIGN,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "web.n.svc" }], true)],
  });
  return {
    conditions: [{ type: "Issued", status: "True", reason: "Issued", message: "ok", lastTransitionTime: new Date().toISOString() }],
    certificateChain: leaf.toString("pem"),
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
    beginRefreshAt: new Date(notAfter.getTime() - 3600 * 1000).toISOString(),
  };
}

const denied = (reason = "Nope") => ({ conditions: [{ type: "Denied", status: "True", reason, message: "no", lastTransitionTime: new Date().toISOString() }] });

describe("what each emulated version serves", () => {
  it.each([
    ["1.35", ["v1beta1"]],
    ["1.36", ["v1beta1"]],
    ["1.37", ["v1", "v1beta1"]],
  ] as const)("%s: discovery lists %j, the rest is 404, /version says so", async (v, versions) => {
    const groups = (await call(v, "GET", "/apis")).body.groups as { name: string; versions: { version: string }[]; preferredVersion: { version: string } }[];
    const certs = groups.find((g) => g.name === CERTS)!;
    expect(certs.versions.map((x) => x.version)).toEqual(versions);
    expect(certs.preferredVersion.version).toBe(versions[0]);
    expect(((await call(v, "GET", `/apis/${CERTS}`)).body.preferredVersion as { version: string }).version).toBe(versions[0]);
    for (const version of ["v1", "v1beta1", "v1alpha1"]) {
      const served = (versions as readonly string[]).includes(version);
      const list = await call(v, "GET", `/apis/${CERTS}/${version}`);
      expect(list.status, `${v} ${version}`).toBe(served ? 200 : 404);
      if (served) {
        expect((list.body.resources as { name: string }[]).map((r) => r.name)).toEqual(["podcertificaterequests", "podcertificaterequests/status", "clustertrustbundles"]);
      }
      expect((await call(v, "GET", pcrs(version))).status).toBe(served ? 200 : 404);
      expect((await call(v, "GET", ctbs(version))).status).toBe(served ? 200 : 404);
      expect((await call(v, "POST", pcrs(version), pcr(version, stubSpec()))).status).not.toBe(served ? 404 : 201);
    }
    expect((await call(v, "GET", "/version")).body).toMatchObject({ major: "1", minor: v.split(".")[1], gitVersion: `v${v}.0-podcert-embedded` });
    expect(servers[v].kubernetesVersion).toBe(v);
  });

  it("seeds a v1 object only where v1 is served, skipping it elsewhere as an unknown kind (logged)", async () => {
    expect((await call("1.37", "GET", pcrs("v1beta1", "seeded-v1"))).status).toBe(200);
    for (const v of ["1.35", "1.36"] as const) {
      expect((await call(v, "GET", pcrs("v1beta1", "seeded-v1"))).status).toBe(404);
      expect(seedLog).toContain(`${v} skipping object 1 (PodCertificateRequest ${NS}/seeded-v1): ${CERTS}/v1 PodCertificateRequest is not served by Kubernetes ${v}`);
    }
    const objects = [pcr("v1", stubSpec(), "x") as unknown as KubeObject];
    expect(clusterFileProblems(objects, "1.37")).toEqual([]);
    expect(clusterFileProblems(objects, "1.36")[0]).toBe(`PodCertificateRequest x: ${CERTS}/v1 PodCertificateRequest is not served by Kubernetes 1.36; ignored`);
  });

  it("sends the deprecation warning for v1beta1 in 1.37 only, errors included", async () => {
    expect((await call("1.37", "GET", pcrs("v1beta1"))).warnings).toEqual([DEPRECATED_PCR]);
    expect((await call("1.37", "GET", pcrs("v1beta1", "missing"))).warnings).toEqual([DEPRECATED_PCR]);
    expect((await call("1.37", "GET", ctbs("v1beta1"))).warnings).toEqual([DEPRECATED_CTB]);
    expect((await call("1.37", "GET", pcrs("v1"))).warnings).toEqual([]);
    expect((await call("1.37", "GET", `/apis/${CERTS}/v1beta1`)).warnings).toEqual([]);
    for (const v of ["1.35", "1.36"] as const) expect((await call(v, "GET", pcrs("v1beta1"))).warnings).toEqual([]);
  });
});

describe("one store, read and written through both versions (1.37)", () => {
  it("shows a PKIX-form request made through v1beta1 without its key through v1, intact through v1beta1", async () => {
    const made = await create("1.37", "v1beta1", pkixSpec("pkix-pod"));
    const name = nameOf(made);
    const v1 = await call("1.37", "GET", pcrs("v1", name));
    expect(v1.body.apiVersion).toBe(`${CERTS}/v1`);
    expect(specOf(v1)).toEqual({ ...baseSpec("pkix-pod"), maxExpirationSeconds: 86400, stubPKCS10Request: null });
    const beta = await call("1.37", "GET", pcrs("v1beta1", name));
    expect(beta.body.apiVersion).toBe(`${CERTS}/v1beta1`);
    expect(specOf(beta)).toEqual({ ...pkixSpec("pkix-pod"), maxExpirationSeconds: 86400 });
    // One object: same uid and resourceVersion through both.
    expect(v1.body.metadata).toEqual(beta.body.metadata);
    // Lists and field selectors, in each version.
    for (const version of ["v1", "v1beta1"]) {
      const list = await call("1.37", "GET", `${pcrs(version)}?fieldSelector=spec.podName%3Dpkix-pod,spec.nodeName%3Dnode-1`);
      expect(list.body.apiVersion).toBe(`${CERTS}/${version}`);
      expect(list.body.kind).toBe("PodCertificateRequestList");
      const items = list.body.items as KubeObject[];
      expect(items.map((i) => [i.apiVersion, i.metadata.name])).toEqual([[`${CERTS}/${version}`, name]]);
      expect("pkixPublicKey" in (items[0]!.spec as object)).toBe(version === "v1beta1");
    }
  });

  it("shows a stub-form request made through v1 through v1beta1", async () => {
    const made = await create("1.37", "v1", stubSpec("stub-pod"));
    expect(made.body.apiVersion).toBe(`${CERTS}/v1`);
    expect(made.warnings).toEqual([]);
    expect(specOf(made)).toEqual({ ...stubSpec("stub-pod"), maxExpirationSeconds: 86400 });
    const beta = await call("1.37", "GET", pcrs("v1beta1", nameOf(made)));
    expect(specOf(beta)).toEqual({ ...stubSpec("stub-pod"), maxExpirationSeconds: 86400 });
    expect(servers["1.37"].store.get("PodCertificateRequest", NS, nameOf(made))?.apiVersion).toBe(`${CERTS}/v1beta1`);
  });

  it("lets each version's watch see the same changes, in its own version (bookmarks too)", async () => {
    const rv = servers["1.37"].store.resourceVersion;
    const q = `?watch=true&resourceVersion=${rv}&fieldSelector=spec.podName%3Dwatched`;
    const watches = await Promise.all(["v1", "v1beta1"].map((version) => openWatch("1.37", `${pcrs(version)}${q}`)));
    const made = await create("1.37", "v1beta1", pkixSpec("watched"));
    const name = nameOf(made);
    const denial = await call("1.37", "PUT", pcrs("v1", `${name}/status`), { ...pcr("v1", {}, name), status: denied() });
    expect(denial.status).toBe(200);
    expect((await call("1.37", "DELETE", pcrs("v1", name))).status).toBe(200);
    const [v1, beta] = await Promise.all(watches.map((w) => w.take(3)));
    for (const [events, version] of [[v1!, "v1"], [beta!, "v1beta1"]] as const) {
      expect(events.map((e) => [e.type, e.object.apiVersion, e.object.metadata.name])).toEqual(
        ["ADDED", "MODIFIED", "DELETED"].map((t) => [t, `${CERTS}/${version}`, name]),
      );
      expect(events.map((e) => "pkixPublicKey" in (e.object.spec as object))).toEqual(Array(3).fill(version === "v1beta1"));
    }
    expect(v1!.map((e) => e.object.metadata.resourceVersion)).toEqual(beta!.map((e) => e.object.metadata.resourceVersion));

    for (const version of ["v1", "v1beta1"]) {
      const w = await openWatch("1.37", `${pcrs(version)}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&fieldSelector=metadata.name%3Dnone`);
      const lines = await w.take(1);
      expect(lines[0]).toMatchObject({ type: "BOOKMARK", object: { kind: "PodCertificateRequest", apiVersion: `${CERTS}/${version}` } });
    }
  });

  it("refuses a main-resource update through v1 of a PKIX-form request as a spec change; v1beta1 and stub-form ones update", async () => {
    const pkix = await call("1.37", "GET", pcrs("v1", nameOf(await create("1.37", "v1beta1", pkixSpec("upd")))));
    const labelled = (a: Answer) => ({ ...a.body, metadata: { ...(a.body.metadata as object), labels: { x: "y" } } });
    const refused = await call("1.37", "PUT", pcrs("v1", nameOf(pkix)), labelled(pkix));
    expect(refused.status).toBe(422);
    expect(causesOf(refused)).toEqual(["spec.pkixPublicKey: Invalid value: field is immutable", "spec.proofOfPossession: Invalid value: field is immutable"]);
    const beta = await call("1.37", "GET", pcrs("v1beta1", nameOf(pkix)));
    expect((await call("1.37", "PUT", pcrs("v1beta1", nameOf(pkix)), labelled(beta))).status).toBe(200);
    const stubbed = await create("1.37", "v1", stubSpec("upd2"));
    const updated = await call("1.37", "PUT", pcrs("v1", nameOf(stubbed)), labelled(stubbed));
    expect(updated.status).toBe(200);
    expect(updated.body.apiVersion).toBe(`${CERTS}/v1`);
  });

  it("applies the same status rules and sign check through either version, against the stored spec", async () => {
    const pkixName = nameOf(await create("1.37", "v1beta1", pkixSpec("st-1")));
    const stubName = nameOf(await create("1.37", "v1", stubSpec("st-2")));
    for (const version of ["v1", "v1beta1"]) {
      const bad = await call("1.37", "PUT", pcrs(version, `${pkixName}/status`), { ...pcr(version, {}, pkixName), status: denied("") }, { user: "signs" });
      expect(bad.status).toBe(422);
      expect(causesOf(bad).some((c) => c.startsWith("status.conditions[0].reason"))).toBe(true);
      const forbidden = await call("1.37", "PUT", pcrs(version, `${pkixName}/status`), { ...pcr(version, {}, pkixName), status: denied() }, { user: "no-sign" });
      expect(forbidden.status).toBe(422);
      expect(causesOf(forbidden)).toEqual([`spec.signerName: Forbidden: User "no-sign" is not permitted to "sign" for signer "${SIGNER}"`]);
    }
    // Issued through v1 for a PKIX-form request: the leaf key is checked against the stored pkixPublicKey.
    const issued = await call("1.37", "PUT", pcrs("v1", `${pkixName}/status`), { ...pcr("v1", {}, pkixName), status: await issuedStatus() }, { user: "signs" });
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);
    expect(specOf(issued).pkixPublicKey).toBeUndefined();
    expect(specOf(await call("1.37", "GET", pcrs("v1beta1", pkixName))).pkixPublicKey).toBe(spki);
    // Issued through v1beta1 for a request made through v1 (the key from its stub CSR).
    const issued2 = await call("1.37", "PUT", pcrs("v1beta1", `${stubName}/status`), { ...pcr("v1beta1", {}, stubName), status: await issuedStatus() }, { user: "signs" });
    expect(issued2.status, JSON.stringify(issued2.body)).toBe(200);
    expect((await call("1.37", "GET", pcrs("v1", stubName))).body.status).toEqual(issued2.body.status);
  });

  it("authorizes by group and resource, whatever the version", async () => {
    for (const version of ["v1", "v1beta1"]) {
      expect((await call("1.37", "GET", pcrs(version), undefined, { user: "no-sign" })).status).toBe(200);
      const refused = await call("1.37", "GET", pcrs(version), undefined, { user: "nobody" });
      expect(refused.status).toBe(403);
      expect(refused.body.message).toBe(`podcertificaterequests.${CERTS} is forbidden: User "nobody" cannot list resource "podcertificaterequests" in API group "${CERTS}" in the namespace "${NS}"`);
    }
  });

  it("prints tables through either version", async () => {
    for (const version of ["v1", "v1beta1"]) {
      const table = await call("1.37", "GET", `${pcrs(version)}?fieldSelector=spec.podName%3Dstub-pod`, undefined, { accept: TABLE_ACCEPT });
      expect(table.body.kind).toBe("Table");
      expect((table.body.rows as { object: KubeObject }[]).map((r) => r.object.metadata.namespace)).toEqual([NS]);
    }
  });

  it("serves ClusterTrustBundles through both versions", async () => {
    const made = await call("1.37", "POST", ctbs("v1"), { apiVersion: `${CERTS}/v1`, kind: "ClusterTrustBundle", metadata: { name: "bundle-a" }, spec: { trustBundle: caPem } });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect(made.body.apiVersion).toBe(`${CERTS}/v1`);
    const beta = await call("1.37", "GET", ctbs("v1beta1", "bundle-a"));
    expect(beta.body.apiVersion).toBe(`${CERTS}/v1beta1`);
    expect(beta.body.spec).toEqual(made.body.spec);
    expect(beta.warnings).toEqual([DEPRECATED_CTB]);
    const put = await call("1.37", "PUT", ctbs("v1beta1", "bundle-a"), { ...beta.body, metadata: { ...(beta.body.metadata as object), labels: { a: "b" } } });
    expect(put.status).toBe(200);
    const v1 = await call("1.37", "GET", `${ctbs("v1")}?labelSelector=a%3Db`);
    expect((v1.body.items as KubeObject[]).map((i) => [i.apiVersion, i.metadata.name])).toEqual([[`${CERTS}/v1`, "bundle-a"]]);
    expect((await call("1.37", "GET", `${ctbs("v1")}?fieldSelector=spec.signerName%3D`)).status).toBe(200);
    expect((await call("1.37", "DELETE", ctbs("v1", "bundle-a"))).status).toBe(200);
  });
});

describe("the request forms each version accepts", () => {
  it("1.37 v1: requires stubPKCS10Request (422)", async () => {
    const a = await call("1.37", "POST", pcrs("v1"), pcr("v1", baseSpec()));
    expect(a.status).toBe(422);
    expect(causesOf(a)).toEqual(["spec.stubPKCS10Request: Required value"]);
  });

  it("1.37 v1: drops pkixPublicKey/proofOfPossession with a warning each; Ignore: silently; Strict: 400", async () => {
    const spec = { ...stubSpec("extra"), pkixPublicKey: spki, proofOfPossession: "AAAA" };
    const warned = await call("1.37", "POST", pcrs("v1"), pcr("v1", spec));
    expect(warned.status).toBe(201);
    expect(warned.warnings).toEqual(['unknown field "spec.pkixPublicKey"', 'unknown field "spec.proofOfPossession"']);
    expect(specOf(await call("1.37", "GET", pcrs("v1beta1", nameOf(warned))))).toEqual({ ...stubSpec("extra"), maxExpirationSeconds: 86400 });
    const ignored = await call("1.37", "POST", `${pcrs("v1")}?fieldValidation=Ignore`, pcr("v1", spec));
    expect([ignored.status, ignored.warnings]).toEqual([201, []]);
    const strict = await call("1.37", "POST", `${pcrs("v1")}?fieldValidation=Strict`, pcr("v1", spec));
    expect(strict.status).toBe(400);
    expect(strict.body.message).toBe('PodCertificateRequest in version "v1" cannot be handled as a PodCertificateRequest: strict decoding error: unknown field "spec.pkixPublicKey", unknown field "spec.proofOfPossession"');
    expect((await call("1.37", "POST", `${pcrs("v1")}?fieldValidation=strict`, pcr("v1", spec))).status).toBe(400);
  });

  it("1.37 and 1.36 v1beta1: one form or the other, not both (422), not neither", async () => {
    for (const v of ["1.36", "1.37"] as const) {
      const both = await call(v, "POST", pcrs("v1beta1"), pcr("v1beta1", { ...pkixSpec(), stubPKCS10Request: stub }));
      expect(both.status).toBe(422);
      expect(causesOf(both)).toEqual([
        "spec.pkixPublicKey: Forbidden: must be empty when stubPKCS10Request is set",
        "spec.proofOfPossession: Forbidden: must be empty when stubPKCS10Request is set",
      ]);
      const neither = await call(v, "POST", pcrs("v1beta1"), pcr("v1beta1", baseSpec()));
      expect(causesOf(neither)).toEqual(["spec.pkixPublicKey: Required value: one of pkixPublicKey or stubPKCS10Request must be set"]);
      await create(v, "v1beta1", pkixSpec());
      await create(v, "v1beta1", stubSpec());
    }
  });

  it("1.35 v1beta1: has no stubPKCS10Request (dropped, warned, Strict 400) and requires the PKIX key and proof", async () => {
    const stubOnly = await call("1.35", "POST", pcrs("v1beta1"), pcr("v1beta1", stubSpec()));
    expect(stubOnly.status).toBe(422);
    expect(stubOnly.warnings).toEqual(['unknown field "spec.stubPKCS10Request"']);
    expect(causesOf(stubOnly)).toEqual(["spec.pkixPublicKey: Required value", "spec.proofOfPossession: Required value"]);
    const noProof = await call("1.35", "POST", pcrs("v1beta1"), pcr("v1beta1", { ...baseSpec(), pkixPublicKey: spki }));
    expect(causesOf(noProof)).toEqual(["spec.proofOfPossession: Required value"]);
    const both = await create("1.35", "v1beta1", { ...pkixSpec(), stubPKCS10Request: stub });
    expect(both.warnings).toEqual(['unknown field "spec.stubPKCS10Request"']);
    expect(specOf(both).stubPKCS10Request).toBeUndefined();
    expect((await call("1.35", "POST", `${pcrs("v1beta1")}?fieldValidation=Strict`, pcr("v1beta1", { ...pkixSpec(), stubPKCS10Request: stub }))).status).toBe(400);
  });
});

describe("conversion functions", () => {
  const v1 = resolveResource("PodCertificateRequest")!;
  const typeOf = (version: string) => ({ ...v1, version, apiVersion: `${CERTS}/${version}` });
  const stored = { apiVersion: `${CERTS}/v1beta1`, kind: "PodCertificateRequest", metadata: { name: "a" }, spec: { podName: "p", pkixPublicKey: "k", proofOfPossession: "p" } } as KubeObject;

  it("render and decode, leaving their input alone", () => {
    const frozen = Object.freeze({ ...stored, spec: Object.freeze({ ...(stored.spec as object) }) }) as KubeObject;
    expect(fromInternal("1.37", typeOf("v1"), frozen)).toEqual({ ...stored, apiVersion: `${CERTS}/v1`, spec: { podName: "p", stubPKCS10Request: null } });
    expect(fromInternal("1.37", typeOf("v1beta1"), frozen)).toBe(frozen);
    expect(fromInternal("1.35", typeOf("v1beta1"), { ...stored, spec: { stubPKCS10Request: "s" } })).toEqual({ ...stored, spec: {} });
    expect(toInternal("1.37", typeOf("v1"), { ...stored, apiVersion: `${CERTS}/v1`, spec: { podName: "p", pkixPublicKey: "k", stubPKCS10Request: null } }))
      .toEqual({ ...stored, spec: { podName: "p" } });
    expect(unknownFields("1.37", typeOf("v1"), { ...stored, spec: { pkixPublicKey: null } })).toEqual(["spec.pkixPublicKey"]);
    expect(unknownFields("1.36", typeOf("v1beta1"), stored)).toEqual([]);
  });

  it("orders versions as kube-apiserver prefers them, and quotes warnings", () => {
    expect(["v1beta1", "v1alpha1", "v2", "v1", "v1beta2"].sort(compareApiVersions)).toEqual(["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    expect(warningHeader('unknown field "x\\y"')).toBe('299 - "unknown field \\"x\\\\y\\""');
  });
});
