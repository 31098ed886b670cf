// The RBAC authorizer and request attributes as pure functions, in tables after kube's own
// (plugin/pkg/auth/authorizer/rbac/rbac_test.go, endpoints/request/requestinfo_test.go).
import { describe, expect, it } from "vitest";
import {
  authorize,
  BOOTSTRAP_RBAC,
  forbiddenMessage,
  isAuthorizedForSignerName,
  parseRbacPolicy,
  ruleAllows,
  serviceAccountUser,
  type PolicyRule,
  type RequestAttributes,
  type ResourceAttributes,
  type UserInfo,
} from "../../../../local-cluster/apiserver/rbac.js";
import { isWatch, requestAttributes } from "../../../../local-cluster/apiserver/request-info.js";

const G = "rbac.authorization.k8s.io";
const V1 = `${G}/v1`;

function rule(r: Partial<PolicyRule>): PolicyRule {
  return { verbs: [], apiGroups: [], resources: [], resourceNames: [], nonResourceURLs: [], ...r };
}

function res(verb: string, resource: string, o: Partial<ResourceAttributes> = {}): ResourceAttributes {
  return { resourceRequest: true, verb, apiGroup: "", apiVersion: "v1", namespace: "", resource, subresource: "", name: "", ...o };
}

const path = (verb: string, p: string): RequestAttributes => ({ resourceRequest: false, verb, path: p });

const user = (name: string, ...groups: string[]): UserInfo => ({ name, groups: [...groups, "system:authenticated"] });

describe("ruleAllows", () => {
  it.each([
    { case: "star verb", r: rule({ verbs: ["*"], apiGroups: ["g1"], resources: ["r1"] }), a: res("anything", "r1", { apiGroup: "g1" }), want: true },
    { case: "star verb, other group", r: rule({ verbs: ["*"], apiGroups: ["g1"], resources: ["r1"] }), a: res("get", "r1", { apiGroup: "g2" }), want: false },
    { case: "star group", r: rule({ verbs: ["get"], apiGroups: ["*"], resources: ["r1"] }), a: res("get", "r1", { apiGroup: "g2" }), want: true },
    { case: "star resource", r: rule({ verbs: ["get"], apiGroups: [""], resources: ["*"] }), a: res("get", "pods"), want: true },
    { case: "star resource covers a subresource", r: rule({ verbs: ["get"], apiGroups: [""], resources: ["*"] }), a: res("get", "pods", { subresource: "status" }), want: true },
    { case: "tuple expansion", r: rule({ verbs: ["get", "list"], apiGroups: ["", "apps"], resources: ["pods", "deployments"] }), a: res("list", "deployments", { apiGroup: "" }), want: true },
    { case: "wrong verb", r: rule({ verbs: ["list"], apiGroups: [""], resources: ["services"] }), a: res("get", "services", { name: "api" }), want: false },
    { case: "a resource does not cover its subresource", r: rule({ verbs: ["*"], apiGroups: ["*"], resources: ["pods"] }), a: res("get", "pods", { subresource: "status" }), want: false },
    { case: "a subresource does not cover its resource", r: rule({ verbs: ["*"], apiGroups: ["*"], resources: ["pods/status"] }), a: res("get", "pods"), want: false },
    { case: "resource/subresource", r: rule({ verbs: ["update"], apiGroups: ["*"], resources: ["pods/status"] }), a: res("update", "pods", { subresource: "status" }), want: true },
    { case: "*/subresource", r: rule({ verbs: ["update"], apiGroups: ["*"], resources: ["*/status"] }), a: res("update", "nodes", { subresource: "status" }), want: true },
    { case: "*/subresource is not the resource", r: rule({ verbs: ["update"], apiGroups: ["*"], resources: ["*/status"] }), a: res("update", "nodes"), want: false },
    { case: "resourceNames: the name", r: rule({ verbs: ["get"], apiGroups: [""], resources: ["services"], resourceNames: ["api"] }), a: res("get", "services", { name: "api" }), want: true },
    { case: "resourceNames: another name", r: rule({ verbs: ["get"], apiGroups: [""], resources: ["services"], resourceNames: ["api"] }), a: res("get", "services", { name: "db" }), want: false },
    { case: "resourceNames: a list has no name", r: rule({ verbs: ["list"], apiGroups: [""], resources: ["services"], resourceNames: ["api"] }), a: res("list", "services"), want: false },
    { case: "resourceNames: a create has no name", r: rule({ verbs: ["create"], apiGroups: [""], resources: ["events"], resourceNames: ["x"] }), a: res("create", "events"), want: false },
    { case: "resourceNames: a list selecting metadata.name has it", r: rule({ verbs: ["list"], apiGroups: [""], resources: ["services"], resourceNames: ["api"] }), a: res("list", "services", { name: "api" }), want: true },
    { case: "a resource rule never matches a path", r: rule({ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }), a: path("get", "/version"), want: false },
    { case: "nonResourceURL exact", r: rule({ verbs: ["get"], nonResourceURLs: ["/apis"] }), a: path("get", "/apis"), want: true },
    { case: "nonResourceURL, wrong verb", r: rule({ verbs: ["get"], nonResourceURLs: ["/apis"] }), a: path("post", "/apis"), want: false },
    { case: "nonResourceURL star", r: rule({ verbs: ["get"], nonResourceURLs: ["*"] }), a: path("get", "/foo/bar"), want: true },
    { case: "nonResourceURL prefix", r: rule({ verbs: ["get"], nonResourceURLs: ["/apis/*"] }), a: path("get", "/apis/v1/foo"), want: true },
    { case: "nonResourceURL prefix is not the bare path", r: rule({ verbs: ["get"], nonResourceURLs: ["/apis/*"] }), a: path("get", "/apis"), want: false },
    { case: "a path rule never matches a resource", r: rule({ verbs: ["*"], nonResourceURLs: ["*"] }), a: res("get", "pods"), want: false },
  ])("$case", ({ r, a, want }) => {
    expect(ruleAllows(a, r)).toBe(want);
  });
});

describe("authorize", () => {
  const docs = [
    { apiVersion: V1, kind: "ClusterRole", metadata: { name: "admin" }, rules: [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }] },
    { apiVersion: V1, kind: "ClusterRole", metadata: { name: "svc-reader" }, rules: [{ verbs: ["get"], apiGroups: [""], resources: ["services"] }] },
    { apiVersion: V1, kind: "Role", metadata: { name: "pod-reader", namespace: "ns1" }, rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"] }] },
    { apiVersion: V1, kind: "RoleBinding", metadata: { name: "admins", namespace: "ns1" }, roleRef: { apiGroup: G, kind: "ClusterRole", name: "admin" }, subjects: [{ kind: "User", apiGroup: G, name: "admin" }, { kind: "Group", apiGroup: G, name: "admins" }] },
    { apiVersion: V1, kind: "RoleBinding", metadata: { name: "pods", namespace: "ns1" }, roleRef: { apiGroup: G, kind: "Role", name: "pod-reader" }, subjects: [{ kind: "ServiceAccount", name: "reader" }] },
    { apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name: "svc" }, roleRef: { apiGroup: G, kind: "ClusterRole", name: "svc-reader" }, subjects: [{ kind: "ServiceAccount", name: "derive", namespace: "podcert" }] },
    { apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name: "dangling" }, roleRef: { apiGroup: G, kind: "ClusterRole", name: "view" }, subjects: [{ kind: "Group", apiGroup: G, name: "system:serviceaccounts:podcert" }] },
  ];
  const { policy, problems } = parseRbacPolicy([...BOOTSTRAP_RBAC, ...docs]);

  it("parses without problems", () => {
    expect(problems).toEqual([]);
  });

  it.each([
    { case: "a RoleBinding grants in its namespace", u: user("admin"), a: res("get", "pods", { namespace: "ns1" }), want: true },
    { case: "through a group", u: user("joe", "admins"), a: res("watch", "foobar", { namespace: "ns1" }), want: true },
    { case: "not in another namespace", u: user("admin"), a: res("get", "pods", { namespace: "ns2" }), want: false },
    { case: "not at the cluster scope", u: user("admin"), a: res("get", "nodes"), want: false },
    { case: "not across namespaces", u: user("admin"), a: res("list", "pods"), want: false },
    { case: "a Role in the binding's namespace, ServiceAccount subject defaulting to it", u: serviceAccountUser("ns1", "reader"), a: res("get", "pods", { namespace: "ns1", name: "p" }), want: true },
    { case: "the same ServiceAccount name in another namespace", u: serviceAccountUser("ns2", "reader"), a: res("get", "pods", { namespace: "ns1", name: "p" }), want: false },
    { case: "a ClusterRoleBinding grants everywhere", u: serviceAccountUser("podcert", "derive"), a: res("get", "services", { namespace: "any", name: "api" }), want: true },
    { case: "and only its rules", u: serviceAccountUser("podcert", "derive"), a: res("list", "services", { namespace: "any" }), want: false },
    { case: "every authenticated user reads /version", u: serviceAccountUser("podcert", "derive"), a: path("get", "/version"), want: true },
    { case: "and discovery", u: user("nobody"), a: path("get", "/apis/certificates.k8s.io/v1beta1"), want: true },
    { case: "but not /metrics", u: user("nobody"), a: path("get", "/metrics"), want: false },
    { case: "system:masters may do anything", u: user("root", "system:masters"), a: res("delete", "nodes", { name: "n" }), want: true },
    { case: "and any path", u: user("root", "system:masters"), a: path("post", "/anything"), want: true },
  ])("$case", ({ u, a, want }) => {
    expect(authorize(policy, u, a).allowed).toBe(want);
  });

  it("names the binding that allowed, and a missing role in a denial's reason, as kube does", () => {
    expect(authorize(policy, serviceAccountUser("podcert", "derive"), res("get", "services", { namespace: "x", name: "api" }))).toEqual({
      allowed: true,
      reason: 'RBAC: allowed by ClusterRoleBinding "svc" of ClusterRole "svc-reader" to ServiceAccount "derive/podcert"',
    });
    expect(authorize(policy, serviceAccountUser("podcert", "derive"), res("list", "services", { namespace: "x" }))).toEqual({
      allowed: false,
      reason: 'RBAC: clusterrole.rbac.authorization.k8s.io "view" not found',
    });
    expect(authorize(policy, user("joe"), res("list", "services"))).toEqual({ allowed: false, reason: "" });
  });
});

describe("isAuthorizedForSignerName", () => {
  const signer = (name: string, resourceNames: string[], binding: "ClusterRoleBinding" | "RoleBinding" = "ClusterRoleBinding") => parseRbacPolicy([
    { apiVersion: V1, kind: "ClusterRole", metadata: { name }, rules: [{ verbs: ["sign"], apiGroups: ["certificates.k8s.io"], resources: ["signers"], resourceNames }] },
    { apiVersion: V1, kind: binding, metadata: { name, ...(binding === "RoleBinding" ? { namespace: "podcert" } : {}) }, roleRef: { apiGroup: G, kind: "ClusterRole", name }, subjects: [{ kind: "User", apiGroup: G, name: "s" }] },
  ]).policy;

  it.each([
    { case: "the exact signer name", p: signer("a", ["example.com/identity"]), name: "example.com/identity", want: true },
    { case: "another signer of the domain", p: signer("a", ["example.com/identity"]), name: "example.com/other", want: false },
    { case: "the domain wildcard", p: signer("a", ["example.com/*"]), name: "example.com/other", want: true },
    { case: "another domain's wildcard", p: signer("a", ["example.org/*"]), name: "example.com/other", want: false },
    { case: "a RoleBinding does not count (signers are cluster-scoped)", p: signer("a", ["example.com/identity"], "RoleBinding"), name: "example.com/identity", want: false },
  ])("$case", ({ p, name, want }) => {
    expect(isAuthorizedForSignerName(p, user("s"), "sign", name)).toBe(want);
    expect(isAuthorizedForSignerName(p, user("s"), "attest", name)).toBe(false);
  });
});

describe("parseRbacPolicy", () => {
  it("refuses what kube-apiserver's validation refuses, and keeps the rest", () => {
    const { policy, problems } = parseRbacPolicy([
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ignored" } },
      { apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name: "to-role" }, roleRef: { apiGroup: G, kind: "Role", name: "r" }, subjects: [] },
      { apiVersion: V1, kind: "ClusterRoleBinding", metadata: { name: "sa-no-ns" }, roleRef: { apiGroup: G, kind: "ClusterRole", name: "r" }, subjects: [{ kind: "ServiceAccount", name: "x" }] },
      { apiVersion: V1, kind: "ClusterRole", metadata: { name: "no-verbs" }, rules: [{ apiGroups: [""], resources: ["pods"] }] },
      { apiVersion: V1, kind: "Role", metadata: { name: "urls", namespace: "n" }, rules: [{ verbs: ["get"], nonResourceURLs: ["/x"] }] },
      { apiVersion: V1, kind: "ClusterRole", metadata: { name: "mixed" }, rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"], nonResourceURLs: ["/x"] }] },
      { apiVersion: V1, kind: "ClusterRole", metadata: { name: "aggregated" }, aggregationRule: { clusterRoleSelectors: [] } },
      { apiVersion: V1, kind: "ClusterRole", metadata: { name: "ok" }, rules: [{ verbs: ["get"], apiGroups: [""], resources: ["pods"] }] },
    ]);
    expect(problems).toEqual([
      'ClusterRoleBinding to-role: roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
      "ClusterRoleBinding sa-no-ns: subjects[0].namespace: Required value",
      "ClusterRole no-verbs: rules[0].verbs: Required value: verbs must contain at least one value",
      "Role n/urls: rules[0].nonResourceURLs: Invalid value: namespaced rules cannot apply to non-resource URLs",
      "ClusterRole mixed: rules[0].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs",
      "ClusterRole aggregated: aggregationRule: aggregated ClusterRoles get their rules from a controller, which is not emulated",
    ]);
    expect([...policy.clusterRoles.keys()]).toEqual(["ok"]);
    expect(policy.clusterRoleBindings).toEqual([]);
  });
});

describe("forbiddenMessage", () => {
  const sa = serviceAccountUser("podcert", "podcert-derive-sans");
  it.each([
    { a: res("get", "services", { namespace: "ate-system", name: "api" }), want: 'User "system:serviceaccount:podcert:podcert-derive-sans" cannot get resource "services" in API group "" in the namespace "ate-system"' },
    { a: res("update", "podcertificaterequests", { apiGroup: "certificates.k8s.io", namespace: "n", name: "x", subresource: "status" }), want: 'User "system:serviceaccount:podcert:podcert-derive-sans" cannot update resource "podcertificaterequests/status" in API group "certificates.k8s.io" in the namespace "n"' },
    { a: res("list", "nodes"), want: 'User "system:serviceaccount:podcert:podcert-derive-sans" cannot list resource "nodes" in API group "" at the cluster scope' },
    { a: path("get", "/metrics"), want: 'User "system:serviceaccount:podcert:podcert-derive-sans" cannot get path "/metrics"' },
  ])("$want", ({ a, want }) => {
    expect(forbiddenMessage(sa, a)).toBe(want);
  });
});

describe("requestAttributes", () => {
  const at = (method: string, url: string) => requestAttributes(method, new URL(url, "http://x"));
  const r = (verb: string, resource: string, o: Partial<ResourceAttributes> = {}) => res(verb, resource, o);

  it.each([
    { m: "GET", u: "/api/v1/namespaces/ns/services/api", want: r("get", "services", { namespace: "ns", name: "api" }) },
    { m: "HEAD", u: "/api/v1/namespaces/ns/services/api", want: r("get", "services", { namespace: "ns", name: "api" }) },
    { m: "GET", u: "/api/v1/namespaces/ns/services", want: r("list", "services", { namespace: "ns" }) },
    { m: "GET", u: "/api/v1/namespaces/ns/services?watch=true", want: r("watch", "services", { namespace: "ns" }) },
    { m: "GET", u: "/api/v1/namespaces/ns/services?watch=1", want: r("watch", "services", { namespace: "ns" }) },
    { m: "GET", u: "/api/v1/namespaces/ns/services?watch=false", want: r("list", "services", { namespace: "ns" }) },
    { m: "GET", u: "/api/v1/namespaces/ns/services?watch=0", want: r("list", "services", { namespace: "ns" }) },
    { m: "GET", u: "/api/v1/services?fieldSelector=metadata.name%3Dapi", want: r("list", "services", { name: "api" }) },
    { m: "GET", u: "/api/v1/services?fieldSelector=spec.type%3DClusterIP", want: r("list", "services") },
    { m: "GET", u: "/api/v1/watch/namespaces/ns/pods", want: r("watch", "pods", { namespace: "ns" }) },
    { m: "GET", u: "/apis/certificates.k8s.io/v1beta1/podcertificaterequests?watch=true&resourceVersion=5", want: r("watch", "podcertificaterequests", { apiGroup: "certificates.k8s.io", apiVersion: "v1beta1" }) },
    { m: "PUT", u: "/apis/certificates.k8s.io/v1beta1/namespaces/n/podcertificaterequests/req-1/status", want: r("update", "podcertificaterequests", { apiGroup: "certificates.k8s.io", apiVersion: "v1beta1", namespace: "n", name: "req-1", subresource: "status" }) },
    { m: "POST", u: "/api/v1/namespaces/n/events", want: r("create", "events", { namespace: "n" }) },
    { m: "PATCH", u: "/api/v1/nodes/n1", want: r("patch", "nodes", { name: "n1" }) },
    { m: "DELETE", u: "/api/v1/namespaces/n/pods/p", want: r("delete", "pods", { namespace: "n", name: "p" }) },
    { m: "DELETE", u: "/api/v1/namespaces/n/pods", want: r("deletecollection", "pods", { namespace: "n" }) },
    { m: "GET", u: "/api/v1/namespaces/n", want: r("get", "namespaces", { namespace: "n", name: "n" }) },
    { m: "PUT", u: "/api/v1/namespaces/n/status", want: r("update", "namespaces", { namespace: "n", name: "n", subresource: "status" }) },
    { m: "GET", u: "/api/v1/namespaces", want: r("list", "namespaces") },
    { m: "GET", u: "/api/v1/nodes/node-1", want: r("get", "nodes", { name: "node-1" }) },
    { m: "GET", u: "/version", want: path("get", "/version") },
    { m: "GET", u: "/api", want: path("get", "/api") },
    { m: "GET", u: "/api/v1", want: path("get", "/api/v1") },
    { m: "GET", u: "/apis/certificates.k8s.io/v1beta1", want: path("get", "/apis/certificates.k8s.io/v1beta1") },
    { m: "POST", u: "/healthz", want: path("post", "/healthz") },
    { m: "GET", u: "/other/v1/pods", want: path("get", "/other/v1/pods") },
  ])("$m $u", ({ m, u, want }) => {
    expect(at(m, u)).toEqual(want);
  });

  it("reads `watch` as kube converts a query bool: anything but 0 and false", () => {
    const w = (q: string) => isWatch(new URLSearchParams(q));
    expect([w(""), w("watch=true"), w("watch=TRUE"), w("watch="), w("watch=yes"), w("watch=0"), w("watch=False")]).toEqual([false, true, true, true, true, false, false]);
  });
});
