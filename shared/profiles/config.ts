/**
 * Signer profiles: which signer names podcert serves and what each one puts in a certificate.
 * Profiles are data (a YAML file), validated whole when loaded so a bad file fails at start with
 * every problem listed, not on the first request.
 */
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../errors.js";
import { KEY_TYPES, type KeyType } from "../pcr/model.js";
import { validateExtensionOid } from "../x509/der.js";
import * as z from "../zod.js";
import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from "../kube/names.js";
import { MAX_DNS_NAME_LENGTH, MAX_DNS_NAMES, MAX_LABEL_LENGTH } from "../limits.js";

/** See clusterDomain below. */
const MAX_CLUSTER_DOMAIN_LENGTH = MAX_DNS_NAME_LENGTH - (3 * (MAX_LABEL_LENGTH + 1) + "svc.".length);

export const CONFIG_API_VERSION = "podcert.ate.dev/v1alpha1";
export const CONFIG_KIND = "SignerConfig";

/** RFC 5612's enterprise number for documentation; operators should use their own PEN. */
export const DEFAULT_POD_IDENTITY_OID = "1.3.6.1.4.1.32473.1.1";

// Signer names are "<domain>/<path>" (kube-apiserver's rule: a DNS subdomain, a slash, a path).
const SIGNER_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
// SPIFFE trust domains: lowercase letters, digits, dots, dashes and underscores.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const ANNOTATION_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const labelMap = z.record(
  z.string().check(z.maxLength(316), z.regex(ANNOTATION_KEY, "must be a label key")),
  z.string().check(z.maxLength(63)),
);

const namespaceScopeSchema = z
  .strictObject({
    /** Exactly these namespaces. */
    names: z.optional(z.array(z.string().check(z.regex(DNS1123_LABEL, "must be a namespace name"))).check(z.minLength(1))),
    /** Namespaces whose labels include all of these. */
    matchLabels: z.optional(labelMap),
    /** Every namespace. */
    any: z.optional(z.literal(true)),
    /** Never these, whatever the rules above say. */
    exclude: z._default(z.array(z.string().check(z.regex(DNS1123_LABEL, "must be a namespace name"))), []),
  })
  .check(
    z.refine(
      (s) => [s.names, s.matchLabels, s.any].filter((x) => x !== undefined).length === 1,
      "set exactly one of names, matchLabels or any",
    ),
  );

const dnsNamesSchema = z.strictObject({
  /** The unverifiedUserAnnotations key a pod sets to ask for Service DNS names. */
  optInAnnotation: z.string().check(z.maxLength(316), z.regex(ANNOTATION_KEY, "must be an annotation key")),
  /** When true, a request without the opt-in is denied (a signer whose certificates are for serving). */
  required: z._default(z.boolean(), false),
  /** Most DNS SANs in one certificate; more is a denial. */
  maxNames: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(MAX_DNS_NAMES)), 100),
});

const signerSchema = z.strictObject({
  name: z.string().check(z.maxLength(571), z.regex(SIGNER_NAME, "must be '<domain>/<name>', e.g. example.com/identity")),
  trustDomain: z.optional(
    z.string().check(z.regex(TRUST_DOMAIN, "must be a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')")),
  ),
  namespaces: namespaceScopeSchema,
  dnsNames: z.optional(dnsNamesSchema),
  podIdentityExtension: z.optional(
    z.strictObject({
      oid: z._default(z.string(), DEFAULT_POD_IDENTITY_OID).check(
        z.superRefine((oid, ctx) => {
          const problem = validateExtensionOid(oid);
          if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
        }),
      ),
    }),
  ),
  allowedKeyTypes: z._default(z.array(z.enum(KEY_TYPES)).check(z.minLength(1)), [...KEY_TYPES]),
  maxLifetimeSeconds: z._default(z.number().check(z.int(), z.minimum(3600), z.maximum(7862400)), 86400),
  refreshFraction: z._default(z.number().check(z.gt(0), z.lt(1)), 0.5),
});

const configSchema = z
  .strictObject({
    apiVersion: z.literal(CONFIG_API_VERSION),
    kind: z.literal(CONFIG_KIND),
    trustDomain: z._default(z.string().check(z.regex(TRUST_DOMAIN)), "cluster.local"),
    clusterDomain: z._default(
      z.string().check(
        z.regex(DNS1123_SUBDOMAIN, "must be a DNS name"),
        // The longest name podcert derives, <hostname>.<service>.<namespace>.svc.<clusterDomain>
        // (three 63-character labels), must still be a DNS name: at most 253 characters.
        z.maxLength(MAX_CLUSTER_DOMAIN_LENGTH, `must be at most ${MAX_CLUSTER_DOMAIN_LENGTH} characters, so that <hostname>.<service>.<namespace>.svc.<clusterDomain> fits in ${MAX_DNS_NAME_LENGTH}`),
      ),
      "cluster.local",
    ),
    /** How long a step's attestation stays valid: the broker's whole retry window. */
    attestationTTLSeconds: z._default(z.number().check(z.int(), z.minimum(30), z.maximum(86400)), 900),
    signers: z.array(signerSchema).check(z.minLength(1)),
  });

/**
 * Signer names given twice, read from the document as it is: a refinement of the schema would
 * run only once everything else is valid, hiding this behind any other problem.
 */
function duplicateSigners(doc: unknown): z.IssueList["issues"] {
  const signers = (doc as { signers?: unknown } | null)?.signers;
  if (!Array.isArray(signers)) return [];
  const seen = new Set<string>();
  const problems: { path: (string | number)[]; message: string }[] = [];
  signers.forEach((s: unknown, i) => {
    const name = (s as { name?: unknown } | null)?.name;
    if (typeof name !== "string") return;
    if (seen.has(name)) problems.push({ path: ["signers", i, "name"], message: `duplicate signer ${name}` });
    seen.add(name);
  });
  return problems;
}

type RawConfig = z.output<typeof configSchema>;
type RawSigner = RawConfig["signers"][number];

export interface NamespaceScope {
  names?: readonly string[];
  matchLabels?: Readonly<Record<string, string>>;
  any?: true;
  exclude: readonly string[];
}

export interface SignerProfile {
  name: string;
  trustDomain: string;
  namespaces: NamespaceScope;
  dnsNames?: { optInAnnotation: string; required: boolean; maxNames: number };
  podIdentityExtension?: { oid: string };
  allowedKeyTypes: readonly KeyType[];
  maxLifetimeSeconds: number;
  refreshFraction: number;
}

export interface SignerConfig {
  clusterDomain: string;
  attestationTTLSeconds: number;
  signers: ReadonlyMap<string, SignerProfile>;
}

function toProfile(raw: RawSigner, defaultTrustDomain: string): SignerProfile {
  const { trustDomain, dnsNames, podIdentityExtension, namespaces, ...rest } = raw;
  const scope: NamespaceScope = { exclude: namespaces.exclude };
  if (namespaces.names) scope.names = namespaces.names;
  if (namespaces.matchLabels) scope.matchLabels = namespaces.matchLabels;
  if (namespaces.any) scope.any = true;
  const profile: SignerProfile = { ...rest, namespaces: scope, trustDomain: trustDomain ?? defaultTrustDomain };
  if (dnsNames) profile.dnsNames = dnsNames;
  if (podIdentityExtension) profile.podIdentityExtension = podIdentityExtension;
  return profile;
}

/** Most a configuration file may be; it is operator input but still bounded. */
const MAX_CONFIG_BYTES = 1 << 20;

/** Parses and validates a configuration document (YAML or JSON). `source` names it in errors. */
export function parseSignerConfig(text: string, source = "configuration"): SignerConfig {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    throw new ConfigError(`${source}: larger than ${MAX_CONFIG_BYTES} bytes`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, maxAliasCount: 100 });
  } catch (e) {
    throw new ConfigError(`${source}: not valid YAML: ${(e as Error).message}`, { cause: e });
  }
  const result = configSchema.safeParse(doc);
  // Every problem in one pass: the schema's and the duplicate signers', which it cannot see.
  const duplicates = duplicateSigners(doc);
  if (!result.success || duplicates.length > 0) {
    const lists = result.success ? [{ issues: duplicates }] : [result.error, { issues: duplicates }];
    throw new ConfigError(`${source} is invalid:\n${z.describeIssues(...lists).map((p) => `  - ${p}`).join("\n")}`);
  }
  const c = result.data;
  return {
    clusterDomain: c.clusterDomain,
    attestationTTLSeconds: c.attestationTTLSeconds,
    signers: new Map(c.signers.map((s) => [s.name, toProfile(s, c.trustDomain)])),
  };
}
