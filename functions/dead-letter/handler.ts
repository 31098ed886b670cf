/**
 * dead-letter: the Broker's dead-letter sink (knative/broker.yaml deadLetterSink). The Broker sends
 * it every event whose delivery failed for good (retries exhausted, or a 4xx answer), of any type.
 * It logs one bounded line per event and counts it (podcert_dead_letters_total, which the
 * PodcertEventsDeadLettered alert reads), then answers 204: a dead letter is not retried, and
 * nothing here could make its delivery succeed. It holds no CA, no step keys and no Kubernetes
 * credentials (shared/steps.ts: deadLetterSink, usesKubernetes false).
 *
 * What Knative adds to a dead-lettered event (knative/eventing, pkg/channel/attributes/
 * knative_error.go: KnativeErrorDestExtensionKey, KnativeErrorCodeExtensionKey,
 * KnativeErrorDataExtensionKey, KnativeErrorDataExtensionMaxLength = 1024; the eventing docs'
 * "Configuring Broker event delivery" lists the same three):
 * - knativeerrordest: the URL of the subscriber whose delivery failed;
 * - knativeerrorcode: the HTTP status of the last attempt (an int);
 * - knativeerrordata: the last answer's body, cut to 1024 bytes (base64 in the dispatchers
 *   podcert runs on). Not logged: it is the subscriber's error text, which may quote the event.
 *
 * Everything about the event is untrusted (anyone who can reach the Broker can post an event
 * that fails): only its envelope is read, never `data` (it can hold a PCR, attestation tokens),
 * each string is cut and checked against what it should be before it is logged, and the metric's
 * only label is a known event type or "other".
 */
import type { PodcertEvent } from "../../shared/events/types.js";
import { isNamespaceName, isObjectName } from "../../shared/kube/names.js";
import type { FunctionContext, FunctionDefinition } from "../../shared/runtime/function.js";
import { isPodcertEventType, registered } from "../../shared/steps.js";

/** The Knative extension attributes of a dead-lettered event (knative_error.go). */
export const KNATIVE_ERROR_DEST = "knativeerrordest";
export const KNATIVE_ERROR_CODE = "knativeerrorcode";
export const KNATIVE_ERROR_DATA = "knativeerrordata";
/** Knative's KnativeErrorDataExtensionMaxLength: the most of the failed answer's body it keeps. */
export const KNATIVE_ERROR_DATA_MAX_BYTES = 1024;

/** The longest envelope string logged (ids, sources, subjects, destinations); the rest is cut and marked. */
export const MAX_LOGGED_LENGTH = 256;

/** A PCR's subject as podcert's steps write it (describePcr: "<namespace>/<name>"). */
const STEP_SUBJECT = /^([^/]+)\/([^/]+)$/;
/** A PCR's subject as the ApiServerSource writes it (its API path). */
const API_SUBJECT = /^\/apis\/certificates\.k8s\.io\/[a-z0-9]+\/namespaces\/([^/]+)\/podcertificaterequests\/([^/]+)$/;

/** The PCR a subject names, when it names one with valid Kubernetes names; anything else: none. */
export function pcrOfSubject(subject: string | undefined): { namespace: string; name: string } | undefined {
  if (subject === undefined) return undefined;
  const m = STEP_SUBJECT.exec(subject) ?? API_SUBJECT.exec(subject);
  if (m === null) return undefined;
  const [, namespace, name] = m;
  if (namespace === undefined || name === undefined || !isNamespaceName(namespace) || !isObjectName(name)) return undefined;
  return { namespace, name };
}

/**
 * A string from the event fit for a log line: at most MAX_LOGGED_LENGTH characters (marked when
 * cut), printable ASCII only (the codec already refuses other envelope characters; this does not
 * depend on it). Absent stays absent.
 */
export function loggable(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const printable = value.replace(/[^\x20-\x7e]/g, "?");
  return printable.length <= MAX_LOGGED_LENGTH ? printable : `${printable.slice(0, MAX_LOGGED_LENGTH)}...(${printable.length} characters)`;
}

/** knativeerrorcode as a status code (100-599), or undefined for anything else. */
export function errorCode(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-5][0-9]{2}$/.test(value)) return undefined;
  return Number(value);
}

/** What is logged of one dead letter: its envelope, bounded; never its data. */
export function deadLetterRecord(event: PodcertEvent): Record<string, unknown> {
  const pcr = pcrOfSubject(event.subject);
  const code = event.extensions[KNATIVE_ERROR_CODE];
  const record: Record<string, unknown> = {
    eventId: loggable(event.id),
    type: loggable(event.type),
    source: loggable(event.source),
    subject: loggable(event.subject),
    ...(pcr === undefined ? {} : { pcrNamespace: pcr.namespace, pcrName: pcr.name }),
    errorDestination: loggable(event.extensions[KNATIVE_ERROR_DEST]),
    errorCode: errorCode(code) ?? (code === undefined ? undefined : "invalid"),
  };
  // Absent fields are left out rather than written as null.
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}

export const deadLetter: FunctionDefinition = {
  ...registered("dead-letter"),
  handle(event: PodcertEvent, ctx: FunctionContext): Promise<undefined> {
    // Warn: every dead letter is an event podcert failed to handle (or one that never was podcert's).
    ctx.log.warn("event dead-lettered", deadLetterRecord(event));
    ctx.metrics?.deadLettered({ type: isPodcertEventType(event.type) ? event.type : "other" });
    return Promise.resolve(undefined);
  },
};
