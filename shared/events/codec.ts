/**
 * CloudEvents in and out of HTTP (binary and structured mode) and JSON files, with the checks the
 * SDK leaves to us: it validates nothing by itself, enforces no size limit, and accepts batches.
 */
import { CloudEvent, HTTP, ValidationError } from "cloudevents";
import { RejectedEventError } from "../errors.js";
import { MAX_EVENT_ATTRIBUTE_LENGTH, MAX_EVENT_BYTES } from "../limits.js";
import type { PodcertEvent } from "./types.js";

export { MAX_EVENT_BYTES };

/** Called for each attribute dropped from an incoming event (the caller logs it). */
export type OnDroppedAttribute = (attribute: string, reason: string) => void;

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent is
 * version-traceid-parentid-flags in lowercase hex; version ff is invalid, version 00 has exactly
 * these four fields, a later version may add fields after a dash. Trace and parent ids of all
 * zeros are invalid.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?$/;
/** tracestate: list-members key=value; keys are simple or tenant@system, values printable ASCII without ',' and '='. */
const TRACESTATE_KEY = /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const MAX_TRACESTATE_MEMBERS = 32;
/** W3C asks vendors to pass on at least 512 characters; twice that is still a small header. */
const MAX_TRACESTATE_LENGTH = 1024;
/** What a header may carry without encoding: printable ASCII and space (no CR, LF, NUL, DEL, non-ASCII). */
const HEADER_SAFE = /^[\x20-\x7e]*$/;

export function isValidTraceparent(value: string): boolean {
  const m = TRACEPARENT.exec(value);
  if (!m) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === "ff") return false;
  if (version === "00" && rest !== undefined) return false;
  return !/^0+$/.test(traceId!) && !/^0+$/.test(parentId!);
}

export function isValidTracestate(value: string): boolean {
  if (value.length > MAX_TRACESTATE_LENGTH || !HEADER_SAFE.test(value)) return false;
  const members = value.split(",").map((m) => m.trim()).filter((m) => m !== "");
  if (members.length > MAX_TRACESTATE_MEMBERS) return false;
  const keys = new Set<string>();
  for (const member of members) {
    const eq = member.indexOf("=");
    if (eq <= 0) return false;
    const key = member.slice(0, eq);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(member.slice(eq + 1)) || keys.has(key)) return false;
    keys.add(key);
  }
  return true;
}

/** Why an envelope string cannot be carried in a header (the broker forwards it as ce-<name>), or undefined. */
function headerProblem(value: string): string | undefined {
  if (value.length > MAX_EVENT_ATTRIBUTE_LENGTH) return `longer than ${MAX_EVENT_ATTRIBUTE_LENGTH} characters`;
  if (!HEADER_SAFE.test(value)) return "holds a character other than printable ASCII";
  return undefined;
}

const TRACE_CONTEXT: Readonly<Record<string, (v: string) => boolean>> = { traceparent: isValidTraceparent, tracestate: isValidTracestate };

const CORE_ATTRIBUTES = new Set(["id", "type", "source", "specversion", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"]);

const REQUIRED = ["id", "source", "type", "specversion"] as const;

/**
 * The SDK's CloudEvent constructor fills in a missing id, specversion and time, so its validate()
 * never sees them missing: check the raw attributes first.
 */
function requireAttributes(get: (name: string) => unknown, where: string): void {
  const missing = REQUIRED.filter((a) => {
    const v = get(a);
    return typeof v !== "string" || v === "";
  });
  if (missing.length > 0) throw new RejectedEventError(`not a CloudEvent: ${where} lacks ${missing.join(", ")}`);
}

function toPodcertEvent(ce: CloudEvent<unknown>, onDropped: OnDroppedAttribute): PodcertEvent {
  try {
    ce.validate();
  } catch (e) {
    const detail = e instanceof ValidationError ? JSON.stringify(e.errors ?? e.message).slice(0, 300) : String(e);
    throw new RejectedEventError(`not a valid CloudEvent: ${detail}`);
  }
  if (ce.specversion !== "1.0") throw new RejectedEventError(`CloudEvents specversion ${ce.specversion} is not supported; use 1.0`);
  // Every envelope string may become a header (the broker forwards events in binary mode): an
  // unusable core attribute makes the event unusable; trace context that breaks its grammar is
  // dropped (a trace then restarts, as W3C prescribes), never copied into a reply.
  for (const a of ["id", "source", "type", "subject", "time", "datacontenttype", "dataschema"] as const) {
    const v = ce[a];
    const problem = typeof v === "string" ? headerProblem(v) : undefined;
    if (problem !== undefined) throw new RejectedEventError(`event attribute ${a} ${problem}`);
  }
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(ce)) {
    if (CORE_ATTRIBUTES.has(k) || v === undefined) continue;
    const value = String(v);
    const traceCheck = TRACE_CONTEXT[k];
    if (traceCheck !== undefined) {
      if (traceCheck(value)) extensions[k] = value;
      else onDropped(k, "does not follow the W3C Trace Context grammar");
      continue;
    }
    if (!/^[a-z0-9]{1,20}$/.test(k)) throw new RejectedEventError(`event extension name ${JSON.stringify(k.slice(0, 40))} is not a CloudEvents attribute name`);
    const problem = headerProblem(value);
    if (problem !== undefined) throw new RejectedEventError(`event extension ${k} ${problem}`);
    extensions[k] = value;
  }
  let data: unknown = ce.data;
  // No body and no content type: an event without data (a PingSource's tick without `data`).
  if (data === "" && ce.datacontenttype === undefined) data = undefined;
  if (typeof data === "string" && (ce.datacontenttype ?? "application/json").startsWith("application/json")) {
    try {
      data = JSON.parse(data);
    } catch {
      throw new RejectedEventError(`event ${ce.id}: data is not JSON`);
    }
  }
  const event: PodcertEvent = { specversion: "1.0", id: ce.id, type: ce.type, source: ce.source, data, extensions };
  if (ce.subject !== undefined) event.subject = ce.subject;
  if (ce.time !== undefined) event.time = ce.time;
  if (ce.datacontenttype !== undefined) event.datacontenttype = ce.datacontenttype;
  return event;
}

/**
 * Runs `fn` with no stack captured for the errors it creates. The SDK's JSON parser builds two
 * ValidationErrors on every call, thrown or not; nothing reads their stacks (an SDK error becomes a
 * RejectedEventError's message).
 */
function withoutStackTraces<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export function eventFromHttp(headers: Record<string, string | string[] | undefined>, body: string, onDropped: OnDroppedAttribute = () => {}): PodcertEvent {
  if (Buffer.byteLength(body) > MAX_EVENT_BYTES) throw new RejectedEventError(`event larger than ${MAX_EVENT_BYTES} bytes`, 413);
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined) flat[k.toLowerCase()] = Array.isArray(v) ? v.join(",") : v;
  }
  const contentType = flat["content-type"] ?? "";
  if (contentType.startsWith("application/cloudevents-batch")) throw new RejectedEventError("batched CloudEvents are not supported", 415);
  if (contentType.startsWith("application/cloudevents")) {
    let raw: unknown;
    try {
      raw = JSON.parse(body);
    } catch {
      throw new RejectedEventError("structured-mode CloudEvent body is not JSON");
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new RejectedEventError("structured-mode CloudEvent must be a JSON object");
    requireAttributes((a) => (raw as Record<string, unknown>)[a], "the event");
  } else {
    requireAttributes((a) => flat[`ce-${a}`], "the request headers");
  }
  let parsed: CloudEvent<unknown> | CloudEvent<unknown>[];
  try {
    // toEvent builds CloudEvent instances; its declared type is the wider interface.
    parsed = withoutStackTraces(() => HTTP.toEvent({ headers: flat, body }) as CloudEvent<unknown> | CloudEvent<unknown>[]);
  } catch (e) {
    throw new RejectedEventError(`not a CloudEvent: ${(e as Error).message.slice(0, 300)}`);
  }
  if (Array.isArray(parsed)) throw new RejectedEventError("batched CloudEvents are not supported", 415);
  return toPodcertEvent(parsed, onDropped);
}

export function eventFromJson(json: unknown, onDropped: OnDroppedAttribute = () => {}): PodcertEvent {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new RejectedEventError("a structured CloudEvent must be a JSON object");
  requireAttributes((a) => (json as Record<string, unknown>)[a], "the event");
  let ce: CloudEvent<unknown>;
  try {
    ce = new CloudEvent(json as ConstructorParameters<typeof CloudEvent>[0], false);
  } catch (e) {
    throw new RejectedEventError(`not a valid CloudEvent: ${(e as Error).message.slice(0, 300)}`);
  }
  return toPodcertEvent(ce, onDropped);
}

function toCloudEvent(event: PodcertEvent): CloudEvent<unknown> {
  const { extensions, ...core } = event;
  return new CloudEvent({ ...extensions, ...core }, false);
}

export function eventToBinaryHttp(event: PodcertEvent): { headers: Record<string, string>; body: string } {
  const message = HTTP.binary(toCloudEvent(event));
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers)) if (v !== undefined) headers[k] = String(v);
  return { headers, body: typeof message.body === "string" ? message.body : JSON.stringify(message.body) };
}

/** The structured JSON form (what `podcert invoke` prints and reads). */
export function eventToJson(event: PodcertEvent): Record<string, unknown> {
  const { extensions, ...core } = event;
  return { ...core, ...extensions };
}
