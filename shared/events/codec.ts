/**
 * CloudEvents in and out of HTTP (binary and structured mode) and JSON files, with the checks the
 * SDK leaves to us: it validates nothing by itself, enforces no size limit, and accepts batches.
 */
import { CloudEvent, HTTP, ValidationError } from "cloudevents";
import { RejectedEventError } from "../errors.js";
import type { PodcertEvent } from "./types.js";

/** Larger than any event podcert makes (a PCR, or attestations with 1,000 SANs), far below memory trouble. */
export const MAX_EVENT_BYTES = 1 << 20;

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

function toPodcertEvent(ce: CloudEvent<unknown>): PodcertEvent {
  try {
    ce.validate();
  } catch (e) {
    const detail = e instanceof ValidationError ? JSON.stringify(e.errors ?? e.message).slice(0, 300) : String(e);
    throw new RejectedEventError(`not a valid CloudEvent: ${detail}`);
  }
  if (ce.specversion !== "1.0") throw new RejectedEventError(`CloudEvents specversion ${ce.specversion} is not supported; use 1.0`);
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(ce)) {
    if (CORE_ATTRIBUTES.has(k) || v === undefined) continue;
    extensions[k] = String(v);
  }
  let data: unknown = ce.data;
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

export function eventFromHttp(headers: Record<string, string | string[] | undefined>, body: string): PodcertEvent {
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
    parsed = HTTP.toEvent({ headers: flat, body }) as CloudEvent<unknown> | CloudEvent<unknown>[];
  } catch (e) {
    throw new RejectedEventError(`not a CloudEvent: ${(e as Error).message.slice(0, 300)}`);
  }
  if (Array.isArray(parsed)) throw new RejectedEventError("batched CloudEvents are not supported", 415);
  return toPodcertEvent(parsed);
}

export function eventFromJson(json: unknown): PodcertEvent {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new RejectedEventError("a structured CloudEvent must be a JSON object");
  requireAttributes((a) => (json as Record<string, unknown>)[a], "the event");
  let ce: CloudEvent<unknown>;
  try {
    ce = new CloudEvent(json as ConstructorParameters<typeof CloudEvent>[0], false);
  } catch (e) {
    throw new RejectedEventError(`not a valid CloudEvent: ${(e as Error).message.slice(0, 300)}`);
  }
  return toPodcertEvent(ce);
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
