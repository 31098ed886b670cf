/**
 * Every size limit podcert applies, in one place. Untrusted input (events, PCR fields, the pod's
 * user annotations, headers) is checked against these where it is first read, and what one step
 * hands the next is bounded by the same numbers, so a value one step accepts is never refused by
 * the next: a request that passes validate's limits always reaches a terminal status.
 *
 * The derived limits are computed from the primitive ones below; test/unit/limits.test.ts builds
 * the largest legitimate attestation and event and checks that they fit.
 */

// ---------------------------------------------------------------------------------------------
// Kubernetes' own limits (apimachinery validation, kube-apiserver's PCR status rules)

/** An object name: a DNS-1123 subdomain (pods, nodes, PCRs, service accounts). */
export const MAX_NAME_LENGTH = 253;
/** A namespace or a Service name: a DNS-1123 label. */
export const MAX_LABEL_LENGTH = 63;
/** metadata.uid: a UUID in practice (36); any longer is not one kube-apiserver made. */
export const MAX_UID_LENGTH = 128;
/** A signer name: a DNS subdomain, "/", a path segment (qualified-name rules). */
export const MAX_SIGNER_NAME_LENGTH = 571;
/** A condition's reason (kube-apiserver: at most 1024 characters). */
export const MAX_CONDITION_REASON_LENGTH = 1024;
/** A condition's message (kube-apiserver: at most 32 KiB). */
export const MAX_CONDITION_MESSAGE_BYTES = 32 * 1024;
/** An Issued status's certificateChain (kube-apiserver: at most 100 KiB). */
export const MAX_CERTIFICATE_CHAIN_BYTES = 100 * 1024;
/** All annotations of one object together, keys and values (apimachinery ValidateAnnotations). */
export const MAX_KUBE_ANNOTATIONS_BYTES = 256 * 1024;
/** A Kubernetes Event's message (events.k8s.io "note": at most 1 KiB). */
export const MAX_EVENT_NOTE_BYTES = 1024;

// ---------------------------------------------------------------------------------------------
// What a pod may ask for (podcert's policy; larger is Denied with the reason named)

/** unverifiedUserAnnotations entries (InvalidUnverifiedUserAnnotations beyond). */
export const MAX_USER_ANNOTATIONS = 32;
/** One unverifiedUserAnnotations value, e.g. a list of Service names. */
export const MAX_USER_ANNOTATION_VALUE_BYTES = 4096;
/**
 * The base64 text of each request-key field, checked before anything is decoded: larger than any
 * key or proof of the six key types kubelet makes (an RSA 4096 SubjectPublicKeyInfo is 736
 * characters, its stub CSR under 2 KiB).
 */
export const REQUEST_KEY_LIMITS = {
  pkixPublicKey: 4 * 1024,
  proofOfPossession: 2 * 1024,
  stubPKCS10Request: 16 * 1024,
} as const;
/** The largest `dnsNames.maxNames` a signer profile may set. */
export const MAX_DNS_NAMES = 1000;
/** One DNS name in a certificate. */
export const MAX_DNS_NAME_LENGTH = 253;
/**
 * The DNS names of one certificate together (bytes, as in the SAN extension). With them the
 * chain must still fit kube-apiserver's 100 KiB: 60 KiB of names is about 82 KiB of PEM, leaving
 * about 18 KiB for the rest of the leaf (largest key and signature: RSA 4096, under 2 KiB of PEM)
 * and the CA certificates after it. More is denied as TooManyDNSNames.
 */
export const MAX_DNS_NAMES_BYTES = 60 * 1024;
/** Service names in an expects-service list: each gives at least two DNS names. */
export const MAX_SERVICE_NAMES = MAX_DNS_NAMES / 2;
/** The SPIFFE ID (SPIFFE allows 2048 bytes). */
export const MAX_URI_LENGTH = 2048;
/** A label key: an optional DNS-subdomain prefix (253), "/", a name (63). Values are MAX_LABEL_LENGTH. */
export const MAX_LABEL_KEY_LENGTH = 317;
/**
 * The pod labels validate attests for derive-sans (so it does not read the pod again). A pod with
 * more, or a key or value longer than Kubernetes allows, gets no labels attested and derive-sans
 * reads the pod itself: one more API call, never a denial. Pods with Service names rarely carry
 * more than a dozen; 32 at their longest keep validate's attestation within MAX_ATTESTATION_BYTES.
 */
export const MAX_ATTESTED_POD_LABELS = 32;
/** metadata.resourceVersion as attested (etcd's are decimal uint64s, 20 digits at most). */
export const MAX_RESOURCE_VERSION_LENGTH = 64;
/** metadata.creationTimestamp as attested (RFC 3339). */
export const MAX_TIMESTAMP_LENGTH = 64;

// ---------------------------------------------------------------------------------------------
// What podcert hands on and accepts (derived from the above)

/**
 * One step attestation (a General JWS as JSON text: one payload, one signature per receiver). The
 * largest a step can make is derive-sans' with MAX_DNS_NAMES_BYTES of names (every name quoted in
 * JSON, then base64url: about 88 KiB), or a denial quoting a message of
 * MAX_CONDITION_MESSAGE_BYTES (escaped quotes at worst double it: about 86 KiB); 96 KiB leaves
 * room for the claims around them and the signatures (about 150 bytes each, at most three: a
 * sender has one per receiver, validate the most), so the per-edge MACs did not change the bound.
 */
export const MAX_ATTESTATION_BYTES = 96 * 1024;

/**
 * One CloudEvent, as received over HTTP. Sized from the largest event podcert must accept, which is
 * not one of its own: an ApiServerSource event carries the whole PCR, whose user annotations alone
 * may hold 256 KiB (they must be read to be Denied, else the request would never end); with the
 * key fields and metadata that is under 400 KiB. (Thousands of tiny annotations are refused by the
 * JSON budget, MAX_JSON_VALUES, instead: see there.) podcert's own largest event, sign's reply with
 * three attestations, stays under 3 × MAX_ATTESTATION_BYTES (288 KiB).
 */
export const MAX_EVENT_BYTES = 512 * 1024;

/**
 * JSON values (containers, members, elements, as counted below) one event may have. A PCR as
 * Kubernetes stores it has about a hundred, plus about five per label, annotation or user
 * annotation (its entry, and its managedFields entry); podcert denies more than 32 user
 * annotations. 10,000 costs at most about 0.6 MiB of heap per parse (5,000 empty objects,
 * measured). The price: a PCR whose pod gave it thousands of user annotations (Kubernetes allows
 * 256 KiB of them) cannot be read from its event, so it stays pending instead of being Denied.
 * Without the budget, 50 such events of 512 KiB at once (26,000 annotations each) took a
 * function to 385-413 MiB.
 */
export const MAX_JSON_VALUES = 10_000;
/** Nesting depth. A PCR's deepest path (managedFields' fieldsV1) is about 8 levels. */
export const MAX_JSON_DEPTH = 64;

/** A string field of a CloudEvent's envelope (id, source, type, subject, an extension's value). */
export const MAX_EVENT_ATTRIBUTE_LENGTH = 2048;

/**
 * Schema issues spelled out in one error (shared/zod.ts describeIssues): the rest are counted.
 * Each is cut to MAX_ISSUE_TEXT_LENGTH characters, as messages can quote the input (key names).
 */
export const MAX_REPORTED_ISSUES = 5;
export const MAX_ISSUE_TEXT_LENGTH = 300;

/** One log line; longer strings and lists inside it are cut first (runtime/log.ts). */
export const MAX_LOG_LINE_BYTES = 16 * 1024;
/** A string value inside a log line. */
export const MAX_LOG_STRING_LENGTH = 2048;
/** A list inside a log line (e.g. a certificate's DNS names). */
export const MAX_LOG_LIST_ITEMS = 100;

/**
 * `text` cut to at most `maxBytes` bytes of UTF-8, on a character boundary, ending in "…" when cut
 * (a split character would reach the API server as U+FFFD).
 */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  return `${Buffer.from(text).subarray(0, maxBytes - 3).toString("utf8").replace(/\uFFFD+$/u, "")}…`;
}

/**
 * A status condition's message cut to what kube-apiserver accepts (MAX_CONDITION_MESSAGE_BYTES):
 * the one bound both the statuses podcert builds (pcr/status.ts) and the denials it hands on
 * (errors.ts) apply, and the one pcr/status-rules.ts checks.
 */
export function boundConditionMessage(message: string): string {
  return truncateUtf8(message, MAX_CONDITION_MESSAGE_BYTES);
}
