/**
 * kube-apiserver's RBAC authorizer (plugin/pkg/auth/authorizer/rbac and the rule resolver in
 * pkg/registry/rbac/validation) as pure functions over plain data: Role, ClusterRole, RoleBinding
 * and ClusterRoleBinding documents in, a decision out. The embedded API server runs it on every
 * request when it enforces RBAC; test/knative/ uses the same parsing and role resolution to list
 * each ServiceAccount's effective grants, so the manifests are read one way only.
 *
 * As in Kubernetes:
 * - a rule matches on verbs (`*`), apiGroups (`*`), resources (`*`, `resource/subresource`,
 *   `*\/subresource`; a rule for `pods` does not cover `pods/status`) and resourceNames, which
 *   must contain the request's name: requests without one (list, watch, create,
 *   deletecollection) never match a rule that lists names, except list/watch with a
 *   `metadata.name=` field selector (request-info.ts); non-resource requests match
 *   nonResourceURLs (exact, `*`, or a `prefix*`);
 * - ClusterRoleBindings apply everywhere, RoleBindings only to requests in their namespace;
 *   subjects are Users, Groups and ServiceAccounts (`system:serviceaccount:<ns>:<name>`, the
 *   namespace defaulting to the RoleBinding's); a binding to a role that does not exist grants
 *   nothing and its error becomes the denial's reason (`RBAC: clusterrole... "x" not found`);
 * - every cluster's bootstrap roles (BOOTSTRAP_RBAC): cluster-admin for `system:masters`,
 *   system:discovery and system:public-info-viewer for every authenticated user;
 * - the checks on the synthetic `signers` resource (`sign`, `approve`, `attest`):
 *   {@link isAuthorizedForSignerName}, the signer's name or `<domain>/*`.
 * Not emulated: aggregated ClusterRoles (a controller fills their rules; refused as a problem),
 * the Node authorizer and webhooks, impersonation. Deny is the default: RBAC has no deny rules.
 */

import { isRecord } from "./json.js";

export interface UserInfo {
  name: string;
  groups: readonly string[];
}

export interface PolicyRule {
  verbs: readonly string[];
  apiGroups: readonly string[];
  resources: readonly string[];
  resourceNames: readonly string[];
  nonResourceURLs: readonly string[];
}

export interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

export interface Binding {
  kind: "ClusterRoleBinding" | "RoleBinding";
  name: string;
  /** RoleBindings only. */
  namespace?: string;
  roleRef: { kind: "ClusterRole" | "Role"; name: string };
  subjects: readonly Subject[];
}

export interface RbacPolicy {
  clusterRoles: ReadonlyMap<string, readonly PolicyRule[]>;
  /** Keyed `<namespace>/<name>`. */
  roles: ReadonlyMap<string, readonly PolicyRule[]>;
  clusterRoleBindings: readonly Binding[];
  roleBindings: readonly Binding[];
}

/** What kube-apiserver authorizes a request by (authorizer.Attributes, without the user). */
export type RequestAttributes = ResourceAttributes | NonResourceAttributes;

export interface ResourceAttributes {
  resourceRequest: true;
  verb: string;
  apiGroup: string;
  apiVersion: string;
  /** "" for cluster-scoped requests and for lists across namespaces. */
  namespace: string;
  resource: string;
  subresource: string;
  /** "" when the request names no object. */
  name: string;
}

export interface NonResourceAttributes {
  resourceRequest: false;
  verb: string;
  path: string;
}

export type Decision = { allowed: true; reason: string } | { allowed: false; reason: string };

export const RBAC_API_VERSION = "rbac.authorization.k8s.io/v1";
const RBAC_GROUP = "rbac.authorization.k8s.io";
const RBAC_KINDS = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/** The user a ServiceAccount's token authenticates as, with the groups kube-apiserver adds. */
export function serviceAccountUser(namespace: string, name: string): UserInfo {
  return {
    name: `system:serviceaccount:${namespace}:${name}`,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
  };
}

/** The roles and bindings every cluster starts with, as far as podcert's stand-ins need them. */
export const BOOTSTRAP_RBAC: readonly unknown[] = [
  clusterRole("cluster-admin", [
    { apiGroups: ["*"], resources: ["*"], verbs: ["*"] },
    { nonResourceURLs: ["*"], verbs: ["*"] },
  ]),
  clusterRole("system:discovery", [{
    nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
    verbs: ["get"],
  }]),
  clusterRole("system:public-info-viewer", [{ nonResourceURLs: ["/healthz", "/livez", "/readyz", "/version", "/version/"], verbs: ["get"] }]),
  clusterRoleBinding("cluster-admin", [{ kind: "Group", apiGroup: RBAC_GROUP, name: "system:masters" }]),
  clusterRoleBinding("system:discovery", [{ kind: "Group", apiGroup: RBAC_GROUP, name: "system:authenticated" }]),
  clusterRoleBinding("system:public-info-viewer", [
    { kind: "Group", apiGroup: RBAC_GROUP, name: "system:authenticated" },
    { kind: "Group", apiGroup: RBAC_GROUP, name: "system:unauthenticated" },
  ]),
];

function clusterRole(name: string, rules: unknown[]): unknown {
  return { apiVersion: RBAC_API_VERSION, kind: "ClusterRole", metadata: { name }, rules };
}

function clusterRoleBinding(name: string, subjects: unknown[]): unknown {
  return { apiVersion: RBAC_API_VERSION, kind: "ClusterRoleBinding", metadata: { name }, roleRef: { apiGroup: RBAC_GROUP, kind: "ClusterRole", name }, subjects };
}

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * The RBAC objects among `objects` (anything else is skipped), checked as kube-apiserver's
 * validation would on create: an object it would refuse is left out and named in `problems`.
 */
export function parseRbacPolicy(objects: readonly unknown[]): { policy: RbacPolicy; problems: string[] } {
  const problems: string[] = [];
  const clusterRoles = new Map<string, readonly PolicyRule[]>();
  const roles = new Map<string, readonly PolicyRule[]>();
  const clusterRoleBindings: Binding[] = [];
  const roleBindings: Binding[] = [];
  for (const raw of objects) {
    if (!isRecord(raw) || raw.apiVersion !== RBAC_API_VERSION || !RBAC_KINDS.includes(String(raw.kind))) continue;
    const kind = String(raw.kind);
    const meta = isRecord(raw.metadata) ? raw.metadata : {};
    const name = typeof meta.name === "string" ? meta.name : "";
    const namespace = typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : undefined;
    const namespaced = kind === "Role" || kind === "RoleBinding";
    const what = `${kind} ${namespace ? `${namespace}/` : ""}${name || "?"}`;
    const own: string[] = [];
    if (name === "") own.push("metadata.name: Required value");
    if (namespaced && namespace === undefined) own.push("metadata.namespace: Required value");
    if (kind === "Role" || kind === "ClusterRole") {
      if (kind === "ClusterRole" && raw.aggregationRule !== undefined && raw.aggregationRule !== null) {
        own.push("aggregationRule: aggregated ClusterRoles get their rules from a controller, which is not emulated");
      }
      const rules = parseRules(raw.rules, namespaced, own);
      if (own.length === 0) (kind === "Role" ? roles.set(`${namespace}/${name}`, rules) : clusterRoles.set(name, rules));
    } else {
      const binding = parseBinding(raw, kind as Binding["kind"], name, namespace, own);
      if (own.length === 0 && binding) (kind === "RoleBinding" ? roleBindings : clusterRoleBindings).push(binding);
    }
    problems.push(...own.map((p) => `${what}: ${p}`));
  }
  return { policy: { clusterRoles, roles, clusterRoleBindings, roleBindings }, problems };
}

function parseRules(raw: unknown, namespaced: boolean, problems: string[]): PolicyRule[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    problems.push("rules: must be a list");
    return [];
  }
  return raw.map((r: unknown, i) => {
    const at = `rules[${i}]`;
    const rec = isRecord(r) ? r : {};
    const list = (field: string): string[] => {
      const v = rec[field];
      if (v === undefined || v === null) return [];
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
        problems.push(`${at}.${field}: must be a list of strings`);
        return [];
      }
      return v as string[];
    };
    const rule: PolicyRule = {
      verbs: list("verbs"),
      apiGroups: list("apiGroups"),
      resources: list("resources"),
      resourceNames: list("resourceNames"),
      nonResourceURLs: list("nonResourceURLs"),
    };
    // pkg/apis/rbac/validation ValidatePolicyRule.
    if (rule.verbs.length === 0) problems.push(`${at}.verbs: Required value: verbs must contain at least one value`);
    if (rule.nonResourceURLs.length > 0) {
      if (namespaced) problems.push(`${at}.nonResourceURLs: Invalid value: namespaced rules cannot apply to non-resource URLs`);
      if (rule.apiGroups.length > 0 || rule.resources.length > 0) {
        problems.push(`${at}.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs`);
      }
    } else {
      if (rule.apiGroups.length === 0) problems.push(`${at}.apiGroups: Required value: resource rules must supply at least one api group`);
      if (rule.resources.length === 0) problems.push(`${at}.resources: Required value: resource rules must supply at least one resource`);
    }
    return rule;
  });
}

function parseBinding(raw: Record<string, unknown>, kind: Binding["kind"], name: string, namespace: string | undefined, problems: string[]): Binding | undefined {
  const ref = isRecord(raw.roleRef) ? raw.roleRef : {};
  const refKind = ref.kind;
  const allowed = kind === "ClusterRoleBinding" ? ["ClusterRole"] : ["Role", "ClusterRole"];
  if (ref.apiGroup !== RBAC_GROUP) problems.push(`roleRef.apiGroup: Unsupported value: ${JSON.stringify(ref.apiGroup)}: supported values: "${RBAC_GROUP}"`);
  if (typeof refKind !== "string" || !allowed.includes(refKind)) {
    problems.push(`roleRef.kind: Unsupported value: ${JSON.stringify(refKind)}: supported values: ${allowed.map((k) => `"${k}"`).join(", ")}`);
  }
  if (typeof ref.name !== "string" || ref.name === "") problems.push("roleRef.name: Required value");
  const subjects: Subject[] = [];
  const rawSubjects = raw.subjects ?? [];
  if (!Array.isArray(rawSubjects)) problems.push("subjects: must be a list");
  else {
    rawSubjects.forEach((s: unknown, i) => {
      const rec = isRecord(s) ? s : {};
      const at = `subjects[${i}]`;
      const sKind = rec.kind;
      const sName = typeof rec.name === "string" ? rec.name : "";
      if (sName === "") problems.push(`${at}.name: Required value`);
      const subject: Subject = { kind: String(sKind), name: sName };
      if (sKind === "ServiceAccount") {
        if (rec.apiGroup !== undefined && rec.apiGroup !== "") problems.push(`${at}.apiGroup: Unsupported value: ${JSON.stringify(rec.apiGroup)}: supported values: ""`);
        if (typeof rec.namespace === "string" && rec.namespace !== "") subject.namespace = rec.namespace;
        else if (kind === "ClusterRoleBinding") problems.push(`${at}.namespace: Required value`);
      } else if (sKind === "User" || sKind === "Group") {
        if (rec.apiGroup !== RBAC_GROUP) problems.push(`${at}.apiGroup: Unsupported value: ${JSON.stringify(rec.apiGroup)}: supported values: "${RBAC_GROUP}"`);
      } else {
        problems.push(`${at}.kind: Unsupported value: ${JSON.stringify(sKind)}: supported values: "ServiceAccount", "User", "Group"`);
      }
      subjects.push(subject);
    });
  }
  if (problems.length > 0) return undefined;
  const binding: Binding = { kind, name, roleRef: { kind: refKind as Binding["roleRef"]["kind"], name: ref.name as string }, subjects };
  if (namespace !== undefined && kind === "RoleBinding") binding.namespace = namespace;
  return binding;
}

// ---------------------------------------------------------------------------------------------
// Resolution and decisions

/**
 * The rules a binding grants (rule resolver's GetRoleReferenceRules): its ClusterRole, or its
 * Role in the binding's namespace; an error, worded as the lister's NotFound, when it is missing.
 */
export function bindingRules(policy: RbacPolicy, b: Binding): { rules: readonly PolicyRule[] } | { error: string } {
  const rules = b.roleRef.kind === "ClusterRole" ? policy.clusterRoles.get(b.roleRef.name) : policy.roles.get(`${b.namespace ?? ""}/${b.roleRef.name}`);
  if (rules !== undefined) return { rules };
  return { error: `${b.roleRef.kind.toLowerCase()}.${RBAC_GROUP} "${b.roleRef.name}" not found` };
}

/** The first of `subjects` that is `user` (appliesTo); `namespace` is the RoleBinding's, "" for a ClusterRoleBinding. */
export function subjectFor(user: UserInfo, subjects: readonly Subject[], namespace: string): Subject | undefined {
  return subjects.find((s) => {
    switch (s.kind) {
      case "User":
        return user.name === s.name;
      case "Group":
        return user.groups.includes(s.name);
      case "ServiceAccount": {
        const ns = s.namespace ?? namespace;
        return ns !== "" && user.name === `system:serviceaccount:${ns}:${s.name}`;
      }
      default:
        return false;
    }
  });
}

/** kube's RuleAllows. */
export function ruleAllows(a: RequestAttributes, rule: PolicyRule): boolean {
  const verb = rule.verbs.includes("*") || rule.verbs.includes(a.verb);
  if (!a.resourceRequest) return verb && nonResourceUrlMatches(rule, a.path);
  const combined = a.subresource === "" ? a.resource : `${a.resource}/${a.subresource}`;
  return verb &&
    (rule.apiGroups.includes("*") || rule.apiGroups.includes(a.apiGroup)) &&
    resourceMatches(rule, combined, a.subresource) &&
    (rule.resourceNames.length === 0 || rule.resourceNames.includes(a.name));
}

function resourceMatches(rule: PolicyRule, combined: string, subresource: string): boolean {
  return rule.resources.some((r) => r === "*" || r === combined || (subresource !== "" && r === `*/${subresource}`));
}

function nonResourceUrlMatches(rule: PolicyRule, path: string): boolean {
  return rule.nonResourceURLs.some((u) => u === "*" || u === path || (u.endsWith("*") && path.startsWith(u.slice(0, -1))));
}

/**
 * kube's RBACAuthorizer.Authorize: ClusterRoleBindings first, then the RoleBindings of the
 * request's namespace; allowed by the first rule that matches. A denial's reason lists the
 * bindings whose roles could not be found (empty otherwise), as kube-apiserver appends it to 403s.
 */
export function authorize(policy: RbacPolicy, user: UserInfo, a: RequestAttributes): Decision {
  const errors: string[] = [];
  const visit = (b: Binding, scope: string): string | undefined => {
    const subject = subjectFor(user, b.subjects, scope);
    if (subject === undefined) return undefined;
    const resolved = bindingRules(policy, b);
    if ("error" in resolved) {
      errors.push(resolved.error);
      return undefined;
    }
    if (!resolved.rules.some((r) => ruleAllows(a, r))) return undefined;
    const binding = b.kind === "RoleBinding" ? `${b.name}/${b.namespace ?? ""}` : b.name;
    const who = subject.kind === "ServiceAccount" ? `${subject.name}/${subject.namespace ?? scope}` : subject.name;
    return `RBAC: allowed by ${b.kind} "${binding}" of ${b.roleRef.kind} "${b.roleRef.name}" to ${subject.kind} "${who}"`;
  };
  for (const b of policy.clusterRoleBindings) {
    const allowed = visit(b, "");
    if (allowed !== undefined) return { allowed: true, reason: allowed };
  }
  const namespace = a.resourceRequest ? a.namespace : "";
  if (namespace !== "") {
    for (const b of policy.roleBindings) {
      if (b.namespace !== namespace) continue;
      const allowed = visit(b, namespace);
      if (allowed !== undefined) return { allowed: true, reason: allowed };
    }
  }
  // utilerrors.NewAggregate: one error as itself, several as a bracketed list.
  const reason = errors.length === 0 ? "" : `RBAC: ${errors.length === 1 ? errors[0] : `[${errors.join(", ")}]`}`;
  return { allowed: false, reason };
}

/**
 * certauthorization.IsAuthorizedForSignerName: may `user` perform `verb` (sign, approve, attest)
 * on the synthetic cluster-scoped resource `signers` of certificates.k8s.io named `signerName`,
 * or, failing that, named `<domain>/*` (the part before the first `/`)?
 */
export function isAuthorizedForSignerName(policy: RbacPolicy, user: UserInfo, verb: string, signerName: string): boolean {
  const attrs = (name: string): ResourceAttributes => ({
    resourceRequest: true,
    verb,
    apiGroup: "certificates.k8s.io",
    apiVersion: "*",
    namespace: "",
    resource: "signers",
    subresource: "",
    name,
  });
  return authorize(policy, user, attrs(signerName)).allowed ||
    authorize(policy, user, attrs(`${signerName.split("/")[0]}/*`)).allowed;
}

/**
 * The message of kube-apiserver's 403 (responsewriters.forbiddenMessage), before NewForbidden
 * prefixes the resource and name.
 */
export function forbiddenMessage(user: UserInfo, a: RequestAttributes): string {
  if (!a.resourceRequest) return `User ${goQuote(user.name)} cannot ${a.verb} path ${goQuote(a.path)}`;
  const resource = a.subresource === "" ? a.resource : `${a.resource}/${a.subresource}`;
  const head = `User ${goQuote(user.name)} cannot ${a.verb} resource ${goQuote(resource)} in API group ${goQuote(a.apiGroup)}`;
  return a.namespace === "" ? `${head} at the cluster scope` : `${head} in the namespace ${goQuote(a.namespace)}`;
}

/** Go's %q for the printable ASCII strings Kubernetes names are: JSON's quoting is the same there. */
export function goQuote(s: string): string {
  return JSON.stringify(s);
}
