// What kubelet writes for a clusterTrustBundle projection: which bundles a source selects (by
// name, by signer and labels; nil selects nothing, {} everything), the merged and de-duplicated
// certificates, the errors that fail the mount, and the same read through the API.
import { CTB_VERSION } from "../../../helpers/kubernetes.js";
import "reflect-metadata";

import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startApiServer, type EmbeddedApiServer } from "../../../../local-cluster/apiserver/server.js";
import {
  labelSelectorQuery,
  projectClusterTrustBundles,
  readClusterTrustBundleProjection,
  TrustProjectionError,
  type ClusterTrustBundleLike,
  type ClusterTrustBundleProjection,
  type LabelSelector,
} from "../../../../local-cluster/kubelet/trust-projection.js";
import { pemDecodeAll } from "../../../../shared/x509/pem.js";
import { makeCa, type TestCa } from "../../../helpers/trust-anchors.js";

const SIGNER = "example.com/signer";
const OTHER = "example.com/other";
const PREFIX = "example.com:signer:";
const MANAGED = { "app.kubernetes.io/managed-by": "podcert" };
/** The selector the README documents for pods. */
const DOCUMENTED: LabelSelector = { matchLabels: MANAGED };

let cas: TestCa[];
let bundles: ClusterTrustBundleLike[];

const bundle = (name: string, signerName: string | undefined, labels: Record<string, string>, anchors: TestCa[]): ClusterTrustBundleLike => ({
  metadata: { name, labels },
  spec: { ...(signerName === undefined ? {} : { signerName }), trustBundle: anchors.map((c) => c.pem).join("") },
});

beforeAll(async () => {
  cas = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => makeCa(`ca ${i}`)));
  const [c0, c1, c2, c3, c4, c5] = cas as [TestCa, TestCa, TestCa, TestCa, TestCa, TestCa];
  bundles = [
    bundle(`${PREFIX}live`, SIGNER, { ...MANAGED, tier: "live" }, [c0, c1]),
    bundle(`${PREFIX}canary`, SIGNER, { ...MANAGED, tier: "canary" }, [c1, c2]), // c1 in both
    bundle(`${PREFIX}manual`, SIGNER, { tier: "live" }, [c3]),
    bundle("example.com:other:x", OTHER, MANAGED, [c4]),
    bundle("corp-roots", undefined, MANAGED, [c5]),
  ];
});

/** The CA indices (into `cas`) of a projection's certificates, in the file's order. */
const anchorsIn = (pem: string) => pemDecodeAll(pem).map((b) => cas.findIndex((c) => c.der.equals(b.der)));
const sortedProjection = (source: Omit<ClusterTrustBundleProjection, "path">) =>
  anchorsIn(projectClusterTrustBundles(bundles, { ...source, path: "ca.pem" }, { order: "sorted" })).sort();

describe("which bundles a source selects", () => {
  it.each<{ case: string; source: Omit<ClusterTrustBundleProjection, "path">; want: number[] }>([
    { case: "by name", source: { name: `${PREFIX}live` }, want: [0, 1] },
    { case: "by name, an unlinked bundle", source: { name: "corp-roots" }, want: [5] },
    { case: "by name, ignoring signerName and labelSelector (kubelet checks name first)", source: { name: "corp-roots", signerName: SIGNER, labelSelector: { matchLabels: { tier: "none" } } }, want: [5] },
    { case: "by name, missing but optional", source: { name: "absent", optional: true }, want: [] },
    { case: "the signer with {} (every bundle of the signer, merged, c1 once)", source: { signerName: SIGNER, labelSelector: {} }, want: [0, 1, 2, 3] },
    { case: "the signer with the documented selector", source: { signerName: SIGNER, labelSelector: DOCUMENTED }, want: [0, 1, 2] },
    { case: "another signer with the documented selector (never another signer's or an unlinked bundle)", source: { signerName: OTHER, labelSelector: DOCUMENTED }, want: [4] },
    { case: "In", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["canary"] }] } }, want: [1, 2] },
    { case: "NotIn", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["canary"] }] } }, want: [0, 1, 3] },
    { case: "Exists", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "app.kubernetes.io/managed-by", operator: "Exists" }] } }, want: [0, 1, 2] },
    { case: "DoesNotExist", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "app.kubernetes.io/managed-by", operator: "DoesNotExist" }] } }, want: [3] },
    { case: "matchLabels and matchExpressions together (AND)", source: { signerName: SIGNER, labelSelector: { matchLabels: MANAGED, matchExpressions: [{ key: "tier", operator: "In", values: ["live", "other"] }] } }, want: [0, 1] },
    { case: "a nil selector, optional", source: { signerName: SIGNER, optional: true }, want: [] },
    { case: "a selector matching nothing, optional", source: { signerName: SIGNER, labelSelector: { matchLabels: { tier: "none" } }, optional: true }, want: [] },
  ])("$case", ({ source, want }) => {
    expect(sortedProjection(source)).toEqual(want);
  });

  it("writes an empty file when an optional source finds nothing", () => {
    expect(projectClusterTrustBundles(bundles, { signerName: SIGNER, labelSelector: null, optional: true, path: "ca.pem" })).toBe("");
  });
});

describe("the errors that fail the mount", () => {
  const failure = (source: Omit<ClusterTrustBundleProjection, "path">) => {
    try {
      projectClusterTrustBundles(bundles, { ...source, path: "ca.pem" });
    } catch (e) {
      if (e instanceof TrustProjectionError) return { code: e.code, message: e.message };
      throw e;
    }
    throw new Error("expected a TrustProjectionError");
  };

  it.each<{ case: string; source: Omit<ClusterTrustBundleProjection, "path">; code: string; message: string }>([
    { case: "a missing named bundle", source: { name: "absent" }, code: "ERR_CTB_NOT_FOUND", message: 'while getting ClusterTrustBundle: clustertrustbundles.certificates.k8s.io "absent" not found' },
    { case: "a missing named bundle, optional: false", source: { name: "absent", optional: false }, code: "ERR_CTB_NOT_FOUND", message: 'while getting ClusterTrustBundle: clustertrustbundles.certificates.k8s.io "absent" not found' },
    { case: "a nil selector (matches nothing)", source: { signerName: SIGNER }, code: "ERR_CTB_NONE_MATCHED", message: "combination of signerName and labelSelector matched zero ClusterTrustBundles" },
    { case: "a selector matching nothing", source: { signerName: SIGNER, labelSelector: { matchLabels: { tier: "none" } } }, code: "ERR_CTB_NONE_MATCHED", message: "combination of signerName and labelSelector matched zero ClusterTrustBundles" },
    { case: "a signer without bundles", source: { signerName: "example.com/none", labelSelector: {} }, code: "ERR_CTB_NONE_MATCHED", message: "combination of signerName and labelSelector matched zero ClusterTrustBundles" },
    { case: "neither name nor signerName", source: { labelSelector: {} }, code: "ERR_CTB_PROJECTION_INVALID", message: "ClusterTrustBundle projection requires either name or signerName to be set" },
    { case: "In without values", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "In", values: [] }] } }, code: "ERR_CTB_PROJECTION_INVALID", message: "while parsing label selector: values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty" },
    { case: "Exists with values", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "Exists", values: ["x"] }] } }, code: "ERR_CTB_PROJECTION_INVALID", message: "while parsing label selector: values: Invalid value: values set must be empty for exists and does not exist" },
    { case: "an unknown operator", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "Gt", values: ["1"] }] } }, code: "ERR_CTB_PROJECTION_INVALID", message: 'while parsing label selector: "Gt" is not a valid label selector operator' },
    { case: "a bad key", source: { signerName: SIGNER, labelSelector: { matchLabels: { "bad key": "x" } } }, code: "ERR_CTB_PROJECTION_INVALID", message: 'while parsing label selector: key: Invalid value: "bad key": not a valid label key' },
    // A comma would split the query into two terms: it must be refused, not passed on.
    { case: "a value with a comma", source: { signerName: SIGNER, labelSelector: { matchLabels: { tier: "live,x" } } }, code: "ERR_CTB_PROJECTION_INVALID", message: 'while parsing label selector: values: Invalid value: "live,x": not a valid label value' },
    { case: "a 64-character value", source: { signerName: SIGNER, labelSelector: { matchLabels: { tier: "v".repeat(64) } } }, code: "ERR_CTB_PROJECTION_INVALID", message: `while parsing label selector: values: Invalid value: "${"v".repeat(64)}": not a valid label value` },
  ])("$case", ({ source, code, message }) => {
    expect(failure(source)).toEqual({ code, message });
  });
});

describe("the file's content", () => {
  it("holds each certificate once as a bare CERTIFICATE block: text, headers and other types' labels dropped", () => {
    const [c0, c1] = cas as [TestCa, TestCa];
    const messy: ClusterTrustBundleLike = {
      metadata: { name: "messy" },
      spec: { trustBundle: `# comment\n${c0.pem.replace("-----\n", "-----\nX-Note: kept out\n\n")}junk\n${c1.pem}${c0.pem}` },
    };
    const pem = projectClusterTrustBundles([messy], { name: "messy", path: "ca.pem" }, { order: "sorted" });
    const expected = [c0.der, c1.der].sort(Buffer.compare).map((der) => `-----BEGIN CERTIFICATE-----\n${der.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`);
    expect(pem).toBe(expected.join(""));
  });

  it("sorts by DER, then shuffles as rand.Shuffle does (Fisher-Yates from the end)", () => {
    const source: ClusterTrustBundleProjection = { signerName: SIGNER, labelSelector: {}, path: "ca.pem" };
    const sorted = anchorsIn(projectClusterTrustBundles(bundles, source, { order: "sorted" }));
    expect(sorted.map((i) => cas[i]!.der)).toEqual([...sorted.map((i) => cas[i]!.der)].sort(Buffer.compare));
    // random() = 0 always picks index 0: [a,b,c,d] → swap(3,0) → swap(2,0) → swap(1,0) = [b,c,d,a].
    const [a, b, c, d] = sorted;
    expect(anchorsIn(projectClusterTrustBundles(bundles, source, { random: () => 0 }))).toEqual([b, c, d, a]);
    // random() just below 1 picks i itself: no swaps.
    expect(anchorsIn(projectClusterTrustBundles(bundles, source, { random: () => 0.999 }))).toEqual(sorted);
    // By default it is shuffled with Math.random: always the same set.
    expect(anchorsIn(projectClusterTrustBundles(bundles, source)).sort()).toEqual([...sorted].sort());
  });
});

describe("labelSelectorQuery", () => {
  it.each([
    { case: "{} (everything)", selector: {}, want: "" },
    { case: "matchLabels", selector: { matchLabels: { a: "1", "example.com/b": "2" } }, want: "a=1,example.com/b=2" },
    { case: "every operator", selector: { matchExpressions: [{ key: "a", operator: "In", values: ["x", "y"] }, { key: "b", operator: "NotIn", values: ["z"] }, { key: "c", operator: "Exists" }, { key: "d", operator: "DoesNotExist", values: null }] }, want: "a in (x,y),b notin (z),c,!d" },
  ])("spells $case as the labelSelector query", ({ selector, want }) => {
    expect(labelSelectorQuery(selector)).toBe(want);
  });
});

describe("readClusterTrustBundleProjection (through the API)", () => {
  let api: EmbeddedApiServer;
  let kc: KubeConfig;
  const requests: string[] = [];

  beforeAll(async () => {
    api = await startApiServer({
      objects: bundles.map((b) => ({ apiVersion: "certificates.k8s.io/v1beta1", kind: "ClusterTrustBundle", ...b })),
      authorization: { rbac: [], users: [] },
      log: (line) => requests.push(line),
    });
    kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig());
  });

  afterAll(async () => {
    await api?.stop();
  });

  it.each([
    { case: "the documented selector", source: { signerName: SIGNER, labelSelector: DOCUMENTED } },
    { case: "{}", source: { signerName: SIGNER, labelSelector: {} } },
    { case: "an expression", source: { signerName: SIGNER, labelSelector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["canary"] }] } } },
    { case: "a name", source: { name: `${PREFIX}canary` } },
    { case: "a missing name, optional", source: { name: "absent", optional: true } },
  ])("reads what the pure projection computes from every stored bundle: $case", async ({ source }) => {
    const stored = api.store.list("clustertrustbundles").items as unknown as ClusterTrustBundleLike[];
    const want = projectClusterTrustBundles(stored, { ...source, path: "ca.pem" }, { order: "sorted" });
    expect(await readClusterTrustBundleProjection(kc, { ...source, path: "ca.pem" }, { order: "sorted" })).toBe(want);
  });

  it("lists only the signer's bundles, with its field selector and the projection's label selector", async () => {
    requests.length = 0;
    await readClusterTrustBundleProjection(kc, { signerName: SIGNER, labelSelector: DOCUMENTED, path: "ca.pem" });
    // In the version the control plane serves them in (v1 on 1.37).
    const lists = requests.filter((l) => l.startsWith(`GET /apis/certificates.k8s.io/${CTB_VERSION}/clustertrustbundles?`));
    expect(lists).toHaveLength(1);
    const q = new URL(lists[0]!.split(" ")[1]!, "http://x").searchParams;
    expect(q.get("fieldSelector")).toBe(`spec.signerName=${SIGNER}`);
    expect(q.get("labelSelector")).toBe("app.kubernetes.io/managed-by=podcert");
  });

  it("fails as kubelet's mount does when nothing is found", async () => {
    await expect(readClusterTrustBundleProjection(kc, { name: "absent", path: "ca.pem" })).rejects.toMatchObject({ code: "ERR_CTB_NOT_FOUND" });
    await expect(readClusterTrustBundleProjection(kc, { signerName: SIGNER, path: "ca.pem" })).rejects.toMatchObject({ code: "ERR_CTB_NONE_MATCHED" });
  });
});
