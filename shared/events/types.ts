/** A CloudEvent as podcert handles it, and what one step hands the next (types and their schemas). */
import { RejectedEventError } from "../errors.js";
import { isNamespaceName, isObjectName } from "../kube/names.js";
import { MAX_ATTESTATION_BYTES, MAX_SIGNER_NAME_LENGTH, MAX_UID_LENGTH } from "../limits.js";
import { ATTESTING_STEPS, type AttestingStep } from "../steps.js";
import * as z from "../zod.js";

/** A CloudEvent as podcert handles it: plain data, already checked against the spec's rules. */
export interface PodcertEvent {
  id: string;
  type: string;
  source: string;
  specversion: "1.0";
  subject?: string;
  time?: string;
  datacontenttype?: string;
  data: unknown;
  /** Extension attributes (lowercase names), e.g. `kind`, `traceparent`. */
  extensions: Record<string, string>;
}

/**
 * A PCR's namespace and name, as Kubernetes allows them: they go into API paths, so anything else
 * (".." included) is refused here, before any call.
 */
export const pcrNamespaceSchema = z.string().check(z.refine(isNamespaceName, "must be a namespace name (a DNS-1123 label)"));
export const pcrNameSchema = z.string().check(z.refine(isObjectName, "must be an object name (a DNS-1123 subdomain)"));
export const pcrUidSchema = z.string().check(z.minLength(1), z.maxLength(MAX_UID_LENGTH));
export const signerNameSchema = z.string().check(z.minLength(1), z.maxLength(MAX_SIGNER_NAME_LENGTH));

const pcrRefSchema = z.strictObject({ namespace: pcrNamespaceSchema, name: pcrNameSchema, uid: pcrUidSchema });

const jws = z.string().check(z.minLength(1), z.maxLength(MAX_ATTESTATION_BYTES));

/** What one step hands the next: the PCR it is about and the attestations so far. */
export const stepEventDataSchema = z.strictObject({
  pcr: pcrRefSchema,
  signerName: signerNameSchema,
  attestations: z.strictObject(
    Object.fromEntries(ATTESTING_STEPS.map((step) => [step, z.optional(jws)])) as Record<AttestingStep, z.ZodMiniOptional<typeof jws>>,
  ),
});
export type StepEventData = z.infer<typeof stepEventDataSchema>;

/** Parses the data of an event one step handed to another; the attestations are checked later. */
export function readStepEventData(event: PodcertEvent): StepEventData {
  const parsed = stepEventDataSchema.safeParse(event.data);
  if (!parsed.success) {
    throw new RejectedEventError(`event ${event.id} (${event.type}): malformed data (${z.describeIssues(parsed.error).join("; ")})`);
  }
  return parsed.data;
}
