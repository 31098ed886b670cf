// ClusterTrustBundles as kube-apiserver stores them: ValidateClusterTrustBundle's name, signer
// name and PEM rules (tables over the pure functions), and over HTTP the ClusterTrustBundleAttest
// admission check, the resourceVersion an update needs, and label selectors on list and watch.
import "reflect-metadata";

import { ApiException, CertificatesV1beta1Api, KubeConfig, Watch, type V1beta1ClusterTrustBundle } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { KubeObject } from "../../../../local-cluster/apiserver/resources.js";
import { ADMIN_USER, startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import {
  MAX_TRUST_BUNDLE_SIZE,
  validateClusterTrustBundle,
  validateClusterTrustBundleUpdate,
} from "../../../../local-cluster/apiserver/trust-bundles.js";
import { makeCa, makeLeaf, type TestCa } from "../../../helpers/trust-anchors.js";

const CERTS = "certificates.k8s.io";
const SIGNER = "example.com/signer";
const PREFIX = "example.com:signer:";
const CTBS = `/apis/${CERTS}/v1beta1/clustertrustbundles`;
const SUBDOMAIN_MSG = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

let ca: TestCa;
let other: TestCa;
let leaf: string;

beforeAll(async () => {
  [ca, other] = await Promise.all([makeCa("ca one"), makeCa("ca two")]);
  leaf = await makeLeaf(ca);
});

const ctb = (name: string, signerName: string | undefined, trustBundle: string, labels?: Record<string, string>): KubeObject => ({
  apiVersion: `${CERTS}/v1beta1`,
  kind: "ClusterTrustBundle",
  metadata: { name, ...(labels ? { labels } : {}) },
  spec: { ...(signerName === undefined ? {} : { signerName }), trustBundle },
});
/** "field: message" per cause, as the 422's message lists them. */
const errors = (obj: KubeObject) => validateClusterTrustBundle(obj).map((c) => `${c.field}: ${c.message}`);
const nameInvalid = (name: string, m: string) => `metadata.name: Invalid value: ${JSON.stringify(name)}: ${m}`;
const bundleInvalid = (m: string) => `spec.trustBundle: Invalid value: "<value omitted>": ${m}`;

describe("ValidateClusterTrustBundleName", () => {
  it.each([
    { case: "an unlinked DNS-subdomain name", name: "corp-roots.v1", signer: undefined, want: [] },
    { case: "an unlinked name with ':'", name: "example.com:signer:x", signer: undefined, want: [nameInvalid("example.com:signer:x", 'ClusterTrustBundle without signer name must not have ":" in its name')] },
    { case: "an unlinked name that is no DNS subdomain", name: "Corp_Roots", signer: undefined, want: [nameInvalid("Corp_Roots", SUBDOMAIN_MSG)] },
    { case: "a linked name with the signer prefix", name: `${PREFIX}primary`, signer: SIGNER, want: [] },
    { case: "a linked name with a dotted suffix", name: `${PREFIX}live.v2`, signer: SIGNER, want: [] },
    { case: "a linked name without the prefix", name: "primary", signer: SIGNER, want: [nameInvalid("primary", `ClusterTrustBundle for signerName ${SIGNER} must be named with prefix ${PREFIX}`)] },
    { case: "a linked name with another signer's prefix", name: "example.com:other:x", signer: SIGNER, want: [nameInvalid("example.com:other:x", `ClusterTrustBundle for signerName ${SIGNER} must be named with prefix ${PREFIX}`)] },
    { case: "a linked name that is only the prefix", name: PREFIX, signer: SIGNER, want: [nameInvalid(PREFIX, SUBDOMAIN_MSG)] },
    { case: "a linked name whose suffix has a capital", name: `${PREFIX}Live`, signer: SIGNER, want: [nameInvalid(`${PREFIX}Live`, SUBDOMAIN_MSG)] },
    { case: "a linked name whose suffix has a ':'", name: `${PREFIX}a:b`, signer: SIGNER, want: [nameInvalid(`${PREFIX}a:b`, SUBDOMAIN_MSG)] },
    { case: "a linked name whose suffix is 254 characters", name: `${PREFIX}${"a".repeat(254)}`, signer: SIGNER, want: [nameInvalid(`${PREFIX}${"a".repeat(254)}`, "must be no more than 253 characters")] },
    // Only the suffix is length-checked, as in Go: ValidateObjectMeta has no total length rule.
    { case: "a linked name longer than 253 characters in all", name: `${PREFIX}${"a".repeat(253)}`, signer: SIGNER, want: [] },
  ])("$case", ({ name, signer, want }) => {
    expect(errors(ctb(name, signer, ca.pem))).toEqual(want);
  });
});

describe("ValidateSignerName on spec.signerName", () => {
  const sig = (m: string) => `spec.signerName: ${m}`;
  it.each([
    { case: "domain/path", signer: "example.com/signer", want: [] },
    { case: "a dotted path", signer: "example.com/ns.name", want: [] },
    { case: "no '/'", signer: "example.com", want: [sig(`Invalid value: "example.com": must be a fully qualified domain and path of the form 'example.com/signer-name'`)] },
    { case: "two '/'", signer: "example.com/a/b", want: [sig(`Invalid value: "example.com/a/b": must be a fully qualified domain and path of the form 'example.com/signer-name'`)] },
    { case: "a one-label domain", signer: "localhost/signer", want: [sig('Invalid value: "localhost": should be a domain with at least two segments separated by dots')] },
    { case: "a capital in the domain", signer: "Example.com/signer", want: [sig(`Invalid value: "Example.com": validating label "Example": ${LABEL_MSG}`)] },
    { case: "an empty path", signer: "example.com/", want: [sig(`Invalid value: "": validating label "": ${SUBDOMAIN_MSG}`)] },
    { case: "an underscore in the path", signer: "example.com/my_signer", want: [sig(`Invalid value: "my_signer": validating label "my_signer": ${SUBDOMAIN_MSG}`)] },
  ])("$case", ({ signer, want }) => {
    const name = `${signer.replaceAll("/", ":")}:x`;
    expect(errors(ctb(name, signer, ca.pem))).toEqual(want);
  });
});

describe("validateTrustBundle on spec.trustBundle", () => {
  const withHeaders = () => ca.pem.replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n");
  const wrap = (type: string, der: Buffer) => `-----BEGIN ${type}-----\n${der.toString("base64")}\n-----END ${type}-----\n`;
  it.each([
    { case: "one CA", bundle: () => ca.pem, want: [] },
    { case: "two CAs with text around them", bundle: () => `# roots\n${ca.pem}between\n${other.pem}after`, want: [] },
    { case: "an empty bundle", bundle: () => "", want: [bundleInvalid("at least one trust anchor must be provided")] },
    { case: "text without PEM blocks", bundle: () => "no certificates here", want: [bundleInvalid("at least one trust anchor must be provided")] },
    { case: "a block Go cannot decode (skipped, so none left)", bundle: () => wrap("CERTIFICATE", ca.der).replace(/\n-----END/, "!\n-----END"), want: [bundleInvalid("at least one trust anchor must be provided")] },
    { case: "a non-CERTIFICATE block", bundle: () => `${ca.pem}${wrap("PRIVATE KEY", ca.der)}`, want: [bundleInvalid("entry 1 has bad block type: PRIVATE KEY")] },
    { case: "PEM headers", bundle: withHeaders, want: [bundleInvalid("entry 0 has PEM block headers")] },
    { case: "a block that is not X.509", bundle: () => wrap("CERTIFICATE", Buffer.from("not a certificate")), want: [bundleInvalid("entry 0 does not parse as X.509")] },
    { case: "a leaf (cA=false)", bundle: () => `${ca.pem}${leaf}`, want: [bundleInvalid("entry 1 does not have the CA bit set")] },
    { case: "a duplicate", bundle: () => `${ca.pem}${other.pem}${ca.pem}`, want: [bundleInvalid("duplicate trust anchor (indices [0 2])")] },
    { case: "the same anchor three times", bundle: () => `${ca.pem}${ca.pem}${ca.pem}`, want: [bundleInvalid("duplicate trust anchor (indices [0 1 2])")] },
    // A malformed block suppresses the duplicate and the "at least one" messages.
    { case: "a duplicate and a leaf", bundle: () => `${ca.pem}${ca.pem}${leaf}`, want: [bundleInvalid("entry 2 does not have the CA bit set")] },
    { case: "several bad blocks (one message each)", bundle: () => `${leaf}${wrap("X", ca.der)}`, want: [bundleInvalid("entry 0 does not have the CA bit set"), bundleInvalid("entry 1 has bad block type: X")] },
  ])("$case", ({ bundle, want }) => {
    expect(errors(ctb("roots", undefined, bundle()))).toEqual(want);
  });

  it("allows 1 MiB and refuses a byte more (bytes, not characters), with no other message", () => {
    const pad = (bytes: number) => `${ca.pem}${"#".repeat(bytes - Buffer.byteLength(ca.pem))}`;
    expect(errors(ctb("roots", undefined, pad(MAX_TRUST_BUNDLE_SIZE)))).toEqual([]);
    expect(errors(ctb("roots", undefined, pad(MAX_TRUST_BUNDLE_SIZE + 1)))).toEqual(["spec.trustBundle: Too long: may not be more than 1048576 bytes"]);
    const multiByte = `${ca.pem}${"é".repeat((MAX_TRUST_BUNDLE_SIZE - Buffer.byteLength(ca.pem)) / 2 + 1)}`;
    expect(multiByte.length).toBeLessThan(MAX_TRUST_BUNDLE_SIZE);
    expect(errors(ctb("roots", undefined, multiByte))).toEqual(["spec.trustBundle: Too long: may not be more than 1048576 bytes"]);
  });

  it("reports metadata, signer name and bundle problems together, in that order", () => {
    expect(errors(ctb("nope", "localhost/x", ""))).toEqual([
      nameInvalid("nope", "ClusterTrustBundle for signerName localhost/x must be named with prefix localhost:x:"),
      'spec.signerName: Invalid value: "localhost": should be a domain with at least two segments separated by dots',
      bundleInvalid("at least one trust anchor must be provided"),
    ]);
  });

  it("does not parse an unchanged bundle again on update, and does parse a changed one", () => {
    const old = ctb("roots", undefined, leaf); // stored by an older server that accepted it
    const relabelled = { ...old, metadata: { ...old.metadata, labels: { a: "b" } } };
    expect(validateClusterTrustBundleUpdate(relabelled, old)).toEqual([]);
    expect(validateClusterTrustBundleUpdate(ctb("roots", undefined, `${leaf}\n`), old).map((c) => c.message)).toEqual([
      'Invalid value: "<value omitted>": entry 0 does not have the CA bit set',
    ]);
    // The name is still checked.
    expect(validateClusterTrustBundleUpdate({ ...old, metadata: { name: "a:b" } }, old)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Over HTTP, with RBAC

const G = "rbac.authorization.k8s.io";
const role = (name: string, rules: unknown[]) => ({ apiVersion: `${G}/v1`, kind: "ClusterRole", metadata: { name }, rules });
const bind = (name: string, users: string[]) => ({
  apiVersion: `${G}/v1`, kind: "ClusterRoleBinding", metadata: { name }, roleRef: { apiGroup: G, kind: "ClusterRole", name },
  subjects: users.map((u) => ({ kind: "User", apiGroup: G, name: u })),
});
const person = (name: string) => ({ name, groups: ["system:authenticated"] });
const attest = (names: string[]) => [{ apiGroups: [CERTS], resources: ["signers"], resourceNames: names, verbs: ["attest"] }];
const RBAC = [
  role("ctb-writer", [{ apiGroups: [CERTS], resources: ["clustertrustbundles"], verbs: ["create", "get", "list", "watch", "update", "delete"] }]),
  bind("ctb-writer", ["attester", "domain-attester", "other-attester", "no-attest"]),
  role("attest-signer", attest([SIGNER])),
  bind("attest-signer", ["attester"]),
  role("attest-domain", attest(["example.com/*"])),
  bind("attest-domain", ["domain-attester"]),
  role("attest-other", attest(["example.com/other"])),
  bind("attest-other", ["other-attester"]),
  // `attest` alone: the CTB verbs are needed besides it.
  role("attest-only", attest([SIGNER])),
  bind("attest-only", ["attest-only"]),
];

let api: EmbeddedApiServer;

beforeAll(async () => {
  api = await startApiServer({
    authorization: { rbac: RBAC, users: ["attester", "domain-attester", "other-attester", "no-attest", "attest-only"].map(person) },
  });
});

afterAll(async () => {
  await api?.stop();
});

async function call(who: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${api.token(who)}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function clientFor(who: string): CertificatesV1beta1Api {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(who));
  return kc.makeApiClient(CertificatesV1beta1Api);
}

const forbiddenBody = (name: string, signer: string) => ({
  kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason: "Forbidden", code: 403,
  message: `clustertrustbundles.${CERTS} "${name}" is forbidden: user not permitted to attest for signerName "${signer}"`,
  details: { name, group: CERTS, kind: "clustertrustbundles" },
});

describe("the attest check (ClusterTrustBundleAttest)", () => {
  it("refuses to create a signer-linked bundle without `attest` on its signer: 403, recorded, nothing stored", async () => {
    const name = `${PREFIX}refused`;
    for (const who of ["no-attest", "other-attester"]) {
      const before = api.refusedRequests().length;
      expect(await call(who, "POST", CTBS, ctb(name, SIGNER, ca.pem))).toEqual({ status: 403, body: forbiddenBody(name, SIGNER) });
      expect(api.refusedRequests().slice(before)).toEqual([{
        user: who, method: "POST", url: CTBS, code: 403, verb: "attest", apiGroup: CERTS, resource: "signers", name: SIGNER,
        message: `user not permitted to attest for signerName "${SIGNER}"`,
      }]);
    }
    expect(api.store.get("clustertrustbundles", undefined, name)).toBeUndefined();
  });

  it("allows it with `attest` on the signer's name or on `<domain>/*`", async () => {
    expect((await call("attester", "POST", CTBS, ctb(`${PREFIX}by-name`, SIGNER, ca.pem))).status).toBe(201);
    expect((await call("domain-attester", "POST", CTBS, ctb(`${PREFIX}by-domain`, SIGNER, ca.pem))).status).toBe(201);
  });

  it("needs no `attest` for a bundle without a signer", async () => {
    expect((await call("no-attest", "POST", CTBS, ctb("corp-roots", undefined, ca.pem))).status).toBe(201);
  });

  it("needs the clustertrustbundles verb besides `attest` (RBAC refuses first)", async () => {
    const r = await call("attest-only", "POST", CTBS, ctb(`${PREFIX}x`, SIGNER, ca.pem));
    expect(r.status).toBe(403);
    expect(r.body.message).toBe(`clustertrustbundles.${CERTS} is forbidden: User "attest-only" cannot create resource "clustertrustbundles" in API group "${CERTS}" at the cluster scope`);
  });

  it("validates before it checks: an invalid bundle is 422 even for a user without `attest`", async () => {
    const r = await call("no-attest", "POST", CTBS, ctb("misnamed", SIGNER, ca.pem));
    expect(r.status).toBe(422);
    expect(r.body.message).toBe(`ClusterTrustBundle.${CERTS} "misnamed" is invalid: metadata.name: Invalid value: "misnamed": ClusterTrustBundle for signerName ${SIGNER} must be named with prefix ${PREFIX}`);
  });

  it("checks updates: any change needs `attest`, except one of only ownerReferences and finalizers", async () => {
    const name = `${PREFIX}updates`;
    const created = (await call("attester", "POST", CTBS, ctb(name, SIGNER, ca.pem))).body as unknown as KubeObject;
    const put = (who: string, obj: KubeObject) => call(who, "PUT", `${CTBS}/${name}`, obj);

    // Relabelling or new content: 403 without attest.
    const relabelled = { ...created, metadata: { ...created.metadata, labels: { tier: "live" } } };
    expect(await put("no-attest", relabelled)).toEqual({ status: 403, body: forbiddenBody(name, SIGNER) });
    expect(await put("no-attest", { ...created, spec: { signerName: SIGNER, trustBundle: `${ca.pem}${other.pem}` } })).toMatchObject({ status: 403 });

    // Writing it back unchanged, or changing what the garbage collector changes: allowed.
    expect((await put("no-attest", created)).status).toBe(200);
    const owned = (await put("no-attest", { ...created, metadata: { ...created.metadata, ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: "u-1" }] } })).body as unknown as KubeObject;
    expect(owned.metadata.ownerReferences).toHaveLength(1);
    const finalized = await put("no-attest", { ...owned, metadata: { ...owned.metadata, finalizers: ["example.com/keep"] } });
    expect(finalized.status).toBe(200);

    // With attest, the relabelling goes through.
    const current = finalized.body as unknown as KubeObject;
    expect((await put("attester", { ...current, metadata: { ...current.metadata, labels: { tier: "live" } } })).status).toBe(200);
  });

  it("is not checked when the server does not enforce RBAC (AlwaysAllow)", async () => {
    const open = await startApiServer();
    try {
      const kc = new KubeConfig();
      kc.loadFromString(open.kubeconfig());
      const created = await kc.makeApiClient(CertificatesV1beta1Api).createClusterTrustBundle({ body: ctb(`${PREFIX}open`, SIGNER, ca.pem) as unknown as V1beta1ClusterTrustBundle });
      expect(created.metadata?.name).toBe(`${PREFIX}open`);
    } finally {
      await open.stop();
    }
  });
});

describe("updates", () => {
  it("need a resourceVersion (the strategy allows no unconditional update): 422 as the registry words it", async () => {
    const name = `${PREFIX}unconditional`;
    const created = (await call("attester", "POST", CTBS, ctb(name, SIGNER, ca.pem))).body as unknown as KubeObject;
    const { resourceVersion: _, ...meta } = created.metadata;
    expect(await call("attester", "PUT", `${CTBS}/${name}`, { ...created, metadata: meta })).toEqual({
      status: 422,
      body: {
        kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason: "Invalid", code: 422,
        message: `clustertrustbundles.${CERTS} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update`,
        details: { name, group: CERTS, kind: "clustertrustbundles", causes: [{ reason: "FieldValueInvalid", field: "metadata.resourceVersion", message: "Invalid value: 0: must be specified for an update" }] },
      },
    });
  });

  it("keep spec.signerName: a change is 422, after the name rule it now breaks", async () => {
    const name = `${PREFIX}immutable`;
    const created = (await call("attester", "POST", CTBS, ctb(name, SIGNER, ca.pem))).body as unknown as KubeObject;
    const r = await call("attester", "PUT", `${CTBS}/${name}`, { ...created, spec: { signerName: "example.com/other", trustBundle: ca.pem } });
    expect(r.status).toBe(422);
    expect((r.body.details as { causes: { field: string }[] }).causes.map((c) => c.field)).toEqual(["metadata.name", "spec.signerName"]);
  });

  it("refuses a spec field of the wrong JSON type with 400, as decoding would", async () => {
    const r = await call("attester", "POST", CTBS, { ...ctb(`${PREFIX}typed`, SIGNER, ""), spec: { signerName: SIGNER, trustBundle: 7 } });
    expect(r.status).toBe(400);
    expect(r.body.message).toBe('ClusterTrustBundle in version "v1beta1" cannot be handled as a ClusterTrustBundle: spec.trustBundle: expected a string');
  });
});

describe("label selectors on list and watch", () => {
  const MANAGED = { "app.kubernetes.io/managed-by": "podcert" };
  let certs: CertificatesV1beta1Api;

  beforeAll(async () => {
    certs = clientFor(ADMIN_USER.name);
    const bodies = [
      ctb(`${PREFIX}sel-live`, SIGNER, ca.pem, { ...MANAGED, tier: "live" }),
      ctb(`${PREFIX}sel-canary`, SIGNER, other.pem, { ...MANAGED, tier: "canary" }),
      ctb(`${PREFIX}sel-manual`, SIGNER, ca.pem, { tier: "live" }),
      ctb("example.com:other:sel", "example.com/other", ca.pem, MANAGED),
    ];
    for (const body of bodies) await certs.createClusterTrustBundle({ body: body as unknown as V1beta1ClusterTrustBundle });
  });

  const names = async (labelSelector: string, fieldSelector?: string) =>
    (await certs.listClusterTrustBundle({ labelSelector, ...(fieldSelector ? { fieldSelector } : {}) })).items
      .map((b) => b.metadata?.name ?? "").filter((n) => n.includes("sel"));

  it.each([
    { case: "equality", selector: "app.kubernetes.io/managed-by=podcert", want: ["example.com:other:sel", `${PREFIX}sel-canary`, `${PREFIX}sel-live`] },
    { case: "inequality (an absent label is not equal)", selector: "tier!=live", want: ["example.com:other:sel", `${PREFIX}sel-canary`] },
    { case: "a set", selector: "tier in (canary,live),app.kubernetes.io/managed-by", want: [`${PREFIX}sel-canary`, `${PREFIX}sel-live`] },
    { case: "absence", selector: "!app.kubernetes.io/managed-by", want: [`${PREFIX}sel-manual`] },
  ])("lists by $case", async ({ selector, want }) => {
    expect(await names(selector)).toEqual(want);
  });

  it("combines a label selector with the signer's field selector, as a publisher or kubelet would", async () => {
    expect(await names("app.kubernetes.io/managed-by=podcert", `spec.signerName=${SIGNER}`)).toEqual([`${PREFIX}sel-canary`, `${PREFIX}sel-live`]);
  });

  it("refuses a malformed label selector (400)", async () => {
    const e = await certs.listClusterTrustBundle({ labelSelector: "tier in canary" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiException);
    expect((e as ApiException<unknown>).code).toBe(400);
  });

  it("watches by label: a bundle entering the selection is ADDED, one leaving it DELETED", async () => {
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
    const seen: string[] = [];
    const req = await new Watch(kc).watch(`${CTBS}`, { labelSelector: "tier=canary" }, (type: string, obj: V1beta1ClusterTrustBundle) => {
      seen.push(`${type} ${obj.metadata?.name}`);
    }, () => undefined);
    try {
      const until = async (n: number) => {
        for (let i = 0; i < 100 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 20));
      };
      await until(1);
      const live = await certs.readClusterTrustBundle({ name: `${PREFIX}sel-live` });
      const moved = await certs.replaceClusterTrustBundle({ name: `${PREFIX}sel-live`, body: { ...live, metadata: { ...live.metadata, labels: { ...MANAGED, tier: "canary" } } } });
      await until(2);
      await certs.replaceClusterTrustBundle({ name: `${PREFIX}sel-live`, body: { ...moved, metadata: { ...moved.metadata, labels: { ...MANAGED, tier: "live" } } } });
      await until(3);
      expect(seen).toEqual([`ADDED ${PREFIX}sel-canary`, `ADDED ${PREFIX}sel-live`, `DELETED ${PREFIX}sel-live`]);
    } finally {
      req.abort();
    }
  });
});
