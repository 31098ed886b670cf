/**
 * Kubernetes `Status` error bodies, shaped and worded like kube-apiserver's, and {@link ApiError}
 * which carries one from the store to the HTTP layer (and to in-process callers).
 */

import type { ResourceType } from "./resources.js";

export type StatusReason =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "BadRequest"
  | "MethodNotAllowed"
  | "RequestEntityTooLarge"
  | "UnsupportedMediaType"
  | "Expired"
  | "Gone"
  | "InternalError"
  | "ServiceUnavailable"
  | "TooManyRequests"
  | "Timeout"
  | "Unauthorized"
  | "Forbidden";

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: StatusReason;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[]; retryAfterSeconds?: number };
  code: number;
}

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(readonly status: KubeStatus) {
    super(status.message);
  }
  get code(): number {
    return this.status.code;
  }
  get reason(): StatusReason | undefined {
    return this.status.reason;
  }
}

function failure(code: number, reason: StatusReason, message: string, details?: KubeStatus["details"]): ApiError {
  const status: KubeStatus = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details) status.details = details;
  return new ApiError(status);
}

/** "pods" or "podcertificaterequests.certificates.k8s.io", as in kube-apiserver messages. */
function qualified(rt: ResourceType): string {
  return rt.group ? `${rt.plural}.${rt.group}` : rt.plural;
}

function resourceDetails(rt: ResourceType, name: string): NonNullable<KubeStatus["details"]> {
  return rt.group ? { name, group: rt.group, kind: rt.plural } : { name, kind: rt.plural };
}

export function notFound(rt: ResourceType, name: string): ApiError {
  return failure(404, "NotFound", `${qualified(rt)} "${name}" not found`, resourceDetails(rt, name));
}

export function alreadyExists(rt: ResourceType, name: string): ApiError {
  return failure(409, "AlreadyExists", `${qualified(rt)} "${name}" already exists`, resourceDetails(rt, name));
}

export const STALE_OBJECT_MESSAGE =
  "the object has been modified; please apply your changes to the latest version and try again";

export function conflict(rt: ResourceType, name: string, why = STALE_OBJECT_MESSAGE): ApiError {
  return failure(409, "Conflict", `Operation cannot be fulfilled on ${qualified(rt)} "${name}": ${why}`,
    resourceDetails(rt, name));
}

/** 422 with one cause per field error; the message lists them as kube-apiserver does. */
export function invalid(rt: ResourceType, name: string, causes: StatusCause[]): ApiError {
  const kind = rt.group ? `${rt.kind}.${rt.group}` : rt.kind;
  const list = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const summary = list.length === 1 ? list[0] : `[${list.join(", ")}]`;
  const details: NonNullable<KubeStatus["details"]> = rt.group
    ? { name, group: rt.group, kind: rt.kind, causes }
    : { name, kind: rt.kind, causes };
  return failure(422, "Invalid", `${kind} "${name}" is invalid: ${summary}`, details);
}

export function fieldCause(field: string, message: string, reason = "FieldValueInvalid"): StatusCause {
  return { reason, message, field };
}

export function badRequest(message: string): ApiError {
  return failure(400, "BadRequest", message);
}

export function methodNotAllowed(method: string): ApiError {
  return failure(405, "MethodNotAllowed", `the server does not allow this method on the requested resource (${method})`);
}

export function pathNotFound(): ApiError {
  return failure(404, "NotFound", "the server could not find the requested resource");
}

export function tooLarge(limit: number): ApiError {
  return failure(413, "RequestEntityTooLarge", `Request entity too large: limit is ${limit}`);
}

export function unsupportedMediaType(type: string): ApiError {
  return failure(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json (got ${JSON.stringify(type)})`);
}

/** 401, as kube-apiserver answers a request it cannot authenticate. */
export function unauthorized(): ApiError {
  return failure(401, "Unauthorized", "Unauthorized");
}

// Go's responsewriters avoid errors that look like HTML.
const sanitize = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

/**
 * 403 as responsewriters.Forbidden writes it: apierrors.NewForbidden over the request's group and
 * resource (without subresource) and name, whose message is `<resource>.<group> "<name>" is
 * forbidden: <why>` (no name: `<resource>.<group> is forbidden: …`; a non-resource request:
 * `forbidden: …`), `why` being the authorizer's message and then its reason, if any.
 */
export function forbidden(o: { group: string; resource: string; name: string; message: string; reason: string }): ApiError {
  const why = o.reason === "" ? sanitize(o.message) : `${sanitize(o.message)}: ${o.reason}`;
  const qualified = o.resource === "" && o.group === "" ? "" : o.group === "" ? o.resource : `${o.resource}.${o.group}`;
  const message = qualified === "" ? `forbidden: ${why}` : o.name === "" ? `${qualified} is forbidden: ${why}` : `${qualified} "${o.name}" is forbidden: ${why}`;
  const details: NonNullable<KubeStatus["details"]> = {};
  if (o.name !== "") details.name = o.name;
  if (o.group !== "") details.group = o.group;
  if (o.resource !== "") details.kind = o.resource;
  return failure(403, "Forbidden", message, details);
}

export function expired(message: string): ApiError {
  return failure(410, "Expired", message);
}

export function internalError(message: string): ApiError {
  return failure(500, "InternalError", `Internal error occurred: ${message}`);
}

/** 503, as apierrors.NewServiceUnavailable. */
export function serviceUnavailable(message: string): ApiError {
  return failure(503, "ServiceUnavailable", message);
}

/**
 * 429 as API Priority and Fairness rejects a request (apierrors.NewTooManyRequests): the same
 * seconds go into the `Retry-After` header, which the HTTP layer sets from details.
 */
export function tooManyRequests(retryAfterSeconds: number): ApiError {
  return failure(429, "TooManyRequests", "Too many requests, please try again later.", { retryAfterSeconds });
}

/** 504, as kube-apiserver's timeout filter answers a request that ran past its deadline. */
export function timeout(): ApiError {
  return failure(504, "Timeout", "Timeout: request did not complete within the allotted timeout", {});
}

export function success(rt: ResourceType, name: string, uid?: string): Omit<KubeStatus, "code" | "status"> & { status: "Success" } {
  const details: NonNullable<KubeStatus["details"]> = { ...resourceDetails(rt, name) };
  if (uid) details.uid = uid;
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details };
}
