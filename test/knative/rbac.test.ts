// The permissions each ServiceAccount ends up with, computed from every Role, ClusterRole and
// binding in knative/, equal exactly the least-privilege list: nothing missing, nothing extra.
import { describe, expect, it } from "vitest";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import { clone, effectiveGrants, find, grantsOf, loadDir, type Grant } from "./manifests.js";

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
  // get: the Services a pod names; list: all of them, for expects-service "true".
  "podcert/podcert-derive-sans": grantsOf([
    ["", "pods", ["get"]],
    ["", "services", ["get", "list"]],
  ]),
  // sign also reads the pod once more, just before it writes the certificate.
  "podcert/podcert-sign": new Set([...STATUS_WRITER, ...grantsOf([["", "pods", ["get"]]])]),
  "podcert/podcert-deny": STATUS_WRITER,
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
  it("grants each ServiceAccount exactly its list, cluster-wide, with no wildcards", () => {
    expect(rbacProblems(docs)).toEqual([]);
  });

  it("holds `sign` on exactly the configured signer names", () => {
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

    const missing = clone(docs);
    find(missing, "ClusterRole", "podcert-derive-sans").rules[1].verbs = ["list"];
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
});
