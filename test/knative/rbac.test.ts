// The permissions each ServiceAccount ends up with, computed from every Role, ClusterRole and
// binding in knative/, equal exactly the least-privilege list: nothing missing, nothing extra.
import { describe, expect, it } from "vitest";
import { clusterTrustBundleName } from "../../shared/ca/pool.js";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import { clone, CONTRACT, effectiveGrants, find, grantsOf, loadDir, NAMESPACE, type Grant } from "./manifests.js";

const { docs } = loadDir();
const config = parseSignerConfig(find(docs, "ConfigMap", "podcert-config").data["config.yaml"] as string);
const SIGNERS = ["atesystem.podcert.ate.dev/identity", "workerpool.podcert.ate.dev/identity"];
const CERTS = "certificates.k8s.io";

/** sign and deny both write statuses (Issued; Denied/Failed), which needs `sign` on the signer name. */
const STATUS_WRITER = grantsOf([
  [CERTS, "podcertificaterequests", ["get"]],
  [CERTS, "podcertificaterequests/status", ["update"]],
  [CERTS, "signers", ["sign"], SIGNERS],
  ["", "events", ["create"]],
]);

const EXPECTED: Record<string, Set<Grant>> = {
  "podcert/podcert-validate": grantsOf([
    [CERTS, "podcertificaterequests", ["get"]],
    ["", "pods", ["get"]],
    ["", "serviceaccounts", ["get"]],
    ["", "namespaces", ["get"]],
    ["", "nodes", ["get"]],
  ]),
  // get: the Services a pod names, and the index's candidates; list and watch: the Services index
  // for expects-service "true" (its seed list, and its watch).
  "podcert/podcert-derive-sans": grantsOf([
    ["", "pods", ["get"]],
    ["", "services", ["get", "list", "watch"]],
  ]),
  // sign also reads the pod once more, just before it writes the certificate.
  "podcert/podcert-sign": new Set([...STATUS_WRITER, ...grantsOf([["", "pods", ["get"]]])]),
  "podcert/podcert-deny": STATUS_WRITER,
  // list: the bundles it manages, by label; create/delete by any name (new bundles; those of
  // signers no longer configured); update only its signers' bundles; `attest` on exactly the
  // signer names (creating or updating a signer-linked bundle needs it). Its ConfigMap: in its
  // own namespace only, get/update by name, create (which names nothing yet) namespace-wide.
  "podcert/podcert-publish-trust": new Set([
    ...grantsOf([
      [CERTS, "clustertrustbundles", ["list", "create", "delete"]],
      [CERTS, "clustertrustbundles", ["update"], SIGNERS.map(clusterTrustBundleName)],
      [CERTS, "signers", ["attest"], SIGNERS],
    ]),
    ...grantsOf(
      [
        ["", "configmaps", ["create"]],
        ["", "configmaps", ["get", "update"], [CONTRACT.spiffeConfigMap]],
      ],
      NAMESPACE,
    ),
  ]),
  // list only: it posts references; validate reads each PCR back as itself.
  "podcert/podcert-resync": grantsOf([[CERTS, "podcertificaterequests", ["list"]]]),
  "podcert/podcert-apiserver-source": grantsOf([[CERTS, "podcertificaterequests", ["get", "list", "watch"]]]),
};

/** Differences between the effective grants and EXPECTED, as readable lines. */
function rbacProblems(d: typeof docs): string[] {
  const { grants, problems } = effectiveGrants(d);
  for (const subject of new Set([...grants.keys(), ...Object.keys(EXPECTED)])) {
    const actual = grants.get(subject) ?? new Set<Grant>();
    const expected = EXPECTED[subject] ?? new Set<Grant>();
    for (const g of actual) if (!expected.has(g)) problems.push(`${subject} has extra: ${g}`);
    for (const g of expected) if (!actual.has(g)) problems.push(`${subject} lacks: ${g}`);
  }
  return problems;
}

describe("RBAC", () => {
  it("grants each ServiceAccount exactly its list, cluster-wide or in namespace podcert, with no wildcards", () => {
    expect(rbacProblems(docs)).toEqual([]);
  });

  it("holds `sign` and `attest` on exactly the configured signer names", () => {
    expect([...config.signers.keys()].sort()).toEqual(SIGNERS);
  });

  it("binds every function's and the source's ServiceAccount; the dead-letter sink has none", () => {
    const { grants } = effectiveGrants(docs);
    expect([...grants.keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
    expect(find(docs, "ServiceAccount", "podcert-dead-letter").automountServiceAccountToken).toBe(false);
  });

  it("detects extra, missing, wildcard and unverifiable grants", () => {
    const extraVerb = clone(docs);
    find(extraVerb, "ClusterRole", "podcert-validate").rules[1].verbs.push("list");
    expect(rbacProblems(extraVerb)).toEqual(expect.arrayContaining(["podcert/podcert-validate has extra: cluster core pods list *"]));

    const wildcard = clone(docs);
    find(wildcard, "ClusterRole", "podcert-sign").rules[2].resourceNames = ["*"];
    expect(rbacProblems(wildcard)).toEqual(expect.arrayContaining(["ClusterRole//podcert-sign: wildcard in resourceNames"]));

    const anySigner = clone(docs);
    delete find(anySigner, "ClusterRole", "podcert-deny").rules[2].resourceNames;
    expect(rbacProblems(anySigner)).toEqual(expect.arrayContaining(["podcert/podcert-deny has extra: cluster certificates.k8s.io signers sign *"]));

    // The resync sender reading PCRs or watching them would be more than it needs.
    const resyncReads = clone(docs);
    find(resyncReads, "ClusterRole", "podcert-resync").rules[0].verbs.push("get", "watch");
    expect(rbacProblems(resyncReads)).toEqual([
      "podcert/podcert-resync has extra: cluster certificates.k8s.io podcertificaterequests get *",
      "podcert/podcert-resync has extra: cluster certificates.k8s.io podcertificaterequests watch *",
    ]);

    const missing = clone(docs);
    find(missing, "ClusterRole", "podcert-derive-sans").rules[1].verbs = ["list", "watch"];
    expect(rbacProblems(missing)).toEqual(["podcert/podcert-derive-sans lacks: cluster core services get *"]);

    const builtIn = clone(docs);
    find(builtIn, "ClusterRoleBinding", "podcert-validate").roleRef.name = "view";
    expect(rbacProblems(builtIn)).toEqual(expect.arrayContaining([expect.stringContaining("binds ClusterRole view, which knative/ does not define")]));

    const shared = clone(docs);
    find(shared, "ClusterRoleBinding", "podcert-sign").subjects.push({ kind: "ServiceAccount", name: "podcert-validate", namespace: "podcert" });
    expect(rbacProblems(shared)).toEqual(expect.arrayContaining(["podcert/podcert-validate has extra: cluster certificates.k8s.io podcertificaterequests/status update *"]));

    const namespaced = clone(docs);
    const binding = namespaced.find((d) => d.obj.kind === "ClusterRoleBinding" && d.obj.metadata.name === "podcert-derive-sans")!;
    binding.obj.kind = "RoleBinding";
    binding.obj.metadata.namespace = "podcert";
    expect(rbacProblems(namespaced)).toEqual(expect.arrayContaining(["podcert/podcert-derive-sans lacks: cluster core pods get *"]));
  });

  it("detects a trust publisher without `attest`, with more of it, or reaching beyond its ConfigMap", () => {
    const attestRule = (d: typeof docs) => (find(d, "ClusterRole", "podcert-publish-trust").rules as { resources: string[]; verbs: string[]; resourceNames?: string[] }[]).find((r) => r.resources.includes("signers"))!;

    const noAttest = clone(docs);
    const role = find(noAttest, "ClusterRole", "podcert-publish-trust");
    role.rules = role.rules.filter((r: { resources: string[] }) => !r.resources.includes("signers"));
    expect(rbacProblems(noAttest)).toEqual(SIGNERS.map((s) => `podcert/podcert-publish-trust lacks: cluster certificates.k8s.io signers attest ${s}`));

    const anySigner = clone(docs);
    delete attestRule(anySigner).resourceNames;
    expect(rbacProblems(anySigner)).toEqual(expect.arrayContaining(["podcert/podcert-publish-trust has extra: cluster certificates.k8s.io signers attest *"]));

    // `sign` instead of `attest`: it could then write PCR statuses' certificates for the signers.
    const signs = clone(docs);
    attestRule(signs).verbs = ["sign"];
    expect(rbacProblems(signs)).toEqual(expect.arrayContaining([`podcert/podcert-publish-trust has extra: cluster certificates.k8s.io signers sign ${SIGNERS[0]}`]));

    const anyBundle = clone(docs);
    const update = (find(anyBundle, "ClusterRole", "podcert-publish-trust").rules as { verbs: string[]; resourceNames?: string[] }[]).find((r) => r.verbs.includes("update"))!;
    delete update.resourceNames;
    expect(rbacProblems(anyBundle)).toEqual(expect.arrayContaining(["podcert/podcert-publish-trust has extra: cluster certificates.k8s.io clustertrustbundles update *"]));

    const anyConfigMap = clone(docs);
    delete find(anyConfigMap, "Role", "podcert-publish-trust").rules[1].resourceNames;
    expect(rbacProblems(anyConfigMap)).toEqual(
      expect.arrayContaining(["podcert/podcert-publish-trust has extra: namespace:podcert core configmaps get *", "podcert/podcert-publish-trust has extra: namespace:podcert core configmaps update *"]),
    );

    // The Role made a ClusterRole, bound cluster-wide: every namespace's ConfigMaps.
    const clusterWide = clone(docs);
    const r = clusterWide.find((d) => d.obj.kind === "Role" && d.obj.metadata.name === "podcert-publish-trust")!.obj;
    const rb = clusterWide.find((d) => d.obj.kind === "RoleBinding" && d.obj.metadata.name === "podcert-publish-trust")!.obj;
    r.kind = "ClusterRole";
    rb.kind = "ClusterRoleBinding";
    r.metadata = { name: "podcert-publish-trust-configmaps" };
    rb.metadata = { name: "podcert-publish-trust-configmaps" };
    rb.roleRef = { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "podcert-publish-trust-configmaps" };
    expect(rbacProblems(clusterWide)).toEqual(
      expect.arrayContaining(["podcert/podcert-publish-trust has extra: cluster core configmaps create *", "podcert/podcert-publish-trust lacks: namespace:podcert core configmaps create *"]),
    );
  });
});
