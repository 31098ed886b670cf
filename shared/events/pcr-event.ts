/**
 * Reading the PCR out of an ApiServerSource (Resource mode) or resync event. The event is not
 * authenticated: validate uses it only to learn which PCR to look at, then reads that PCR from the
 * API server. Only the fields needed for that are read here, after schema and size checks.
 */
import { randomUUID } from "node:crypto";
import { RejectedEventError } from "../errors.js";
import { PCR_KIND, TERMINAL_CONDITION_TYPES, type PcrRef, type PodCertificateRequest } from "../pcr/model.js";
import * as z from "../zod.js";
import { EVENT_TYPES } from "../steps.js";
import { pcrNameSchema, pcrNamespaceSchema, pcrUidSchema, signerNameSchema, type PodcertEvent } from "./types.js";
import { withArticle } from "../words.js";

const triggerSchema = z.object({
  kind: z.optional(z.literal(PCR_KIND)),
  metadata: z.object({
    name: pcrNameSchema,
    namespace: pcrNamespaceSchema,
    uid: pcrUidSchema,
  }),
  spec: z.object({ signerName: signerNameSchema }),
  status: z.optional(
    z.object({
      conditions: z.optional(
        z.array(z.object({ type: z.string().check(z.maxLength(316)), status: z.string().check(z.maxLength(16)) })).check(z.maxLength(64)),
      ),
    }),
  ),
});

export interface PcrTrigger {
  ref: PcrRef;
  signerName: string;
  /** The event's copy already had a terminal condition (e.g. our own status write echoing back). */
  terminal: boolean;
}

export function readPcrTrigger(event: PodcertEvent): PcrTrigger {
  const kind = event.extensions.kind;
  if (kind !== undefined && kind !== PCR_KIND) {
    throw new RejectedEventError(`event ${event.id} is about ${withArticle(kind.slice(0, 64))}, not ${withArticle(PCR_KIND)}`);
  }
  const parsed = triggerSchema.safeParse(event.data);
  if (!parsed.success) {
    throw new RejectedEventError(`event ${event.id}: data is not a PodCertificateRequest (${z.describeIssues(parsed.error).join("; ")})`);
  }
  const { metadata, spec, status } = parsed.data;
  return {
    ref: { namespace: metadata.namespace, name: metadata.name, uid: metadata.uid },
    signerName: spec.signerName,
    terminal: (status?.conditions ?? []).some(
      (c) => (TERMINAL_CONDITION_TYPES as readonly string[]).includes(c.type) && c.status === "True",
    ),
  };
}

/** The event a Knative ApiServerSource in Resource mode sends for a PCR change. */
export function apiServerSourceEvent(op: "add" | "update" | "delete", pcr: PodCertificateRequest): PodcertEvent {
  const type = op === "add" ? EVENT_TYPES.apiServerAdd : op === "update" ? EVENT_TYPES.apiServerUpdate : "dev.knative.apiserver.resource.delete";
  return {
    specversion: "1.0",
    id: randomUUID(),
    type,
    source: "https://kubernetes.default.svc",
    subject: `/apis/${pcr.apiVersion}/namespaces/${pcr.metadata.namespace}/podcertificaterequests/${pcr.metadata.name}`,
    time: new Date().toISOString(),
    datacontenttype: "application/json",
    data: pcr,
    extensions: { kind: PCR_KIND, apiversion: pcr.apiVersion, name: pcr.metadata.name, namespace: pcr.metadata.namespace },
  };
}

export function apiServerAddEvent(pcr: PodCertificateRequest): PodcertEvent {
  return apiServerSourceEvent("add", pcr);
}
