/**
 * What kube-apiserver authorizes an HTTP request as (RequestInfoFactory.NewRequestInfo in
 * k8s.io/apiserver/pkg/endpoints/request/requestinfo.go), as a pure function of method and URL:
 *
 * - `/api/<v>/...` and `/apis/<group>/<v>/...` with a resource are resource requests, anything
 *   shorter (`/api`, `/api/v1`, `/apis/<group>/<v>`, `/version`, `/healthz`) is a non-resource
 *   request whose verb is the lowercase HTTP method;
 * - verbs: POST create, GET/HEAD get, PUT update, PATCH patch, DELETE delete; a GET without a
 *   name is list, or watch when `watch` is given and not `false`/`0`; a DELETE without a name is
 *   deletecollection; the deprecated `/watch/` and `/proxy/` path prefixes set the verb;
 * - `/namespaces/<ns>/<resource>/...` sets the namespace; `/namespaces/<ns>` itself (and its
 *   `status`/`finalize`) is the resource `namespaces` named `<ns>` in namespace `<ns>`;
 * - a list or watch with a `metadata.name=<x>` (or `==`) field selector carries the name `<x>`,
 *   so resourceNames rules apply to it.
 */
import type { RequestAttributes } from "./rbac.js";

const SPECIAL_VERBS = new Set(["proxy", "watch"]);
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);

export function requestAttributes(method: string, url: URL): RequestAttributes {
  const path = decodePath(url.pathname);
  const verb = method.toLowerCase();
  let parts = path.split("/").filter((s) => s !== "");
  const nonResource: RequestAttributes = { resourceRequest: false, verb, path };
  if (parts.length < 3 || (parts[0] !== "api" && parts[0] !== "apis")) return nonResource;
  let apiGroup = "";
  if (parts[0] === "apis") {
    if (parts.length < 4) return nonResource;
    apiGroup = parts[1]!;
    parts = parts.slice(2);
  } else parts = parts.slice(1);
  const apiVersion = parts[0]!;
  parts = parts.slice(1);

  let kubeVerb: string;
  if (SPECIAL_VERBS.has(parts[0]!)) {
    kubeVerb = parts[0]!;
    parts = parts.slice(1);
  } else {
    kubeVerb = ({ POST: "create", GET: "get", HEAD: "get", PUT: "update", PATCH: "patch", DELETE: "delete" } as Record<string, string>)[method.toUpperCase()] ?? "";
  }

  let namespace = "";
  if (parts[0] === "namespaces") {
    if (parts.length > 1) {
      namespace = parts[1]!;
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2]!)) parts = parts.slice(2);
    }
  }
  const resource = parts[0] ?? "";
  let name = parts[1] ?? "";
  const subresource = parts.length >= 3 && kubeVerb !== "proxy" ? parts[2]! : "";

  if (name === "" && kubeVerb === "get") {
    kubeVerb = isWatch(url.searchParams) ? "watch" : "list";
    const selected = exactNameSelected(url.searchParams.get("fieldSelector"));
    if (selected !== undefined) name = selected;
  }
  if (name === "" && kubeVerb === "delete") kubeVerb = "deletecollection";
  return { resourceRequest: true, verb: kubeVerb, apiGroup, apiVersion, namespace, resource, subresource, name };
}

/**
 * The `watch` query parameter as kube-apiserver converts it to a bool
 * (Convert_Slice_string_To_bool): absent is false, `0` and `false` (any case) are false,
 * anything else, even empty, is true. The server's handler uses the same function.
 */
export function isWatch(q: URLSearchParams): boolean {
  const v = q.getAll("watch")[0];
  if (v === undefined) return false;
  return !(v === "0" || v.toLowerCase() === "false");
}

/** The name a field selector requires exactly (fields.Selector.RequiresExactMatch), if a valid path segment. */
function exactNameSelected(selector: string | null): string | undefined {
  if (selector === null) return undefined;
  for (const term of selector.split(",")) {
    const m = /^\s*metadata\.name\s*(==|=)\s*(.*?)\s*$/.exec(term);
    if (!m) continue;
    const value = m[2]!;
    // path.IsValidPathSegmentName
    if (value === "" || value === "." || value === ".." || value.includes("/") || value.includes("%")) return undefined;
    return value;
  }
  return undefined;
}

function decodePath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}
