/**
 * The CA pool: for each signer name, one or more CAs (certificate, PKCS#8 private key, optional
 * intermediates), each in a rotation state. Locally a YAML file, in a cluster a Kubernetes Secret
 * holding the same document.
 *
 * Rotation (README, "Rotating a CA"): a CA is `prepared` (published in the trust bundles, not
 * signing yet), `active` (the one CA that signs), `superseded` (stopped signing, still published
 * while certificates it signed can be valid) or `retired` (neither). `since` records when it
 * entered each state. A signer whose CAs carry no state (pools from `ca init` before rotation
 * existed) keeps the old rule: the valid CA with the latest notAfter signs, all are published.
 *
 * Key material never appears in error messages, logs or the JSON/inspect form of a loaded CA.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import YAML from "yaml";
import { ConfigError, TransientError } from "../errors.js";
import { certificatesApiVersion, type CertificatesVersion } from "../kube/api-versions.js";
import { prepareCaSigner, readCaChain, type CaChain, type CaSigner } from "../x509/ca-signer.js";
import { pemDecodeAll, pemEncode } from "../x509/pem.js";
import * as z from "../zod.js";

export const CA_POOL_API_VERSION = "podcert.ate.dev/v1alpha1";
export const CA_POOL_KIND = "CAPool";

export interface CaPoolDocument {
  apiVersion: "podcert.ate.dev/v1alpha1";
  kind: "CAPool";
  signers: {
    signerName: string;
    cas: {
      /** PEM, one CERTIFICATE. */
      certificate: string;
      /** PKCS#8 PEM ("PRIVATE KEY"). */
      privateKey: string;
      /**
       * PEM, the certificates above `certificate` in order; may end with the self-signed root
       * (then the trust anchor, kept out of issued chains).
       */
      intermediates?: string;
      /** Absent on every CA of a signer: the pre-rotation rule (see above). */
      state?: CaState;
      /** When it entered each state it has been in (RFC 3339). */
      since?: Partial<Record<CaState, string>>;
    }[];
  }[];
}

export const CA_STATES = ["prepared", "active", "superseded", "retired"] as const;
export type CaState = (typeof CA_STATES)[number];

export function serializeCaPool(doc: CaPoolDocument): string {
  return YAML.stringify(doc, { lineWidth: 0, blockQuote: "literal" });
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/** What anyone may know of a CA: its certificates, state and identity. */
export interface TrustedCa {
  signerName: string;
  /** undefined: the signer's CAs carry no state (the pre-rotation rule). */
  state: CaState | undefined;
  since: Partial<Record<CaState, Date>>;
  /** Hex, as openssl prints it. */
  serialHex: string;
  /** SHA-256 of the CA certificate (DER), hex. */
  fingerprintSha256: string;
  notBefore: Date;
  notAfter: Date;
  /** The CA certificate, PEM (re-encoded). */
  certificatePem: string;
  /** The top of this CA's chain, the trust anchor pods get: the certificate itself without intermediates, else the last one given. */
  rootDer: Buffer;
  rootPem: string;
}

/** A CA that can sign: sign's view. */
export interface LoadedCa extends TrustedCa {
  signer: CaSigner;
}

/** CAs by signer name, in document order. */
export interface CaSet<T extends TrustedCa> {
  signers: Map<string, T[]>;
}
export type CaPool = CaSet<LoadedCa>;
/** The certificates of a pool without its keys: the trust publisher's view (`podcert ca trust`). */
export type CaTrust = CaSet<TrustedCa>;

export const CA_TRUST_KIND = "CATrust";

/** A CA pool document without private keys. */
export interface CaTrustDocument {
  apiVersion: "podcert.ate.dev/v1alpha1";
  kind: "CATrust";
  signers: { signerName: string; cas: Omit<CaPoolDocument["signers"][number]["cas"][number], "privateKey">[] }[];
}

/** The trust document of a pool: everything but the private keys. */
export function caTrustDocument(pool: CaPoolDocument): CaTrustDocument {
  return {
    apiVersion: CA_POOL_API_VERSION,
    kind: CA_TRUST_KIND,
    signers: pool.signers.map((s) => ({ signerName: s.signerName, cas: s.cas.map(({ privateKey: _key, ...rest }) => rest) })),
  };
}

const rfc3339 = z.string().check(z.refine((t) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(t) && Number.isFinite(Date.parse(t)), "must be an RFC 3339 time"));

const trustedCaFields = {
  certificate: z.string().check(z.minLength(1)),
  intermediates: z.optional(z.string()),
  state: z.optional(z.enum(CA_STATES)),
  since: z.optional(z.partialRecord(z.enum(CA_STATES), rfc3339)),
};

function documentSchema<C extends z.ZodMiniType>(kind: string, ca: C) {
  return z.strictObject({
    apiVersion: z.literal(CA_POOL_API_VERSION),
    kind: z.literal(kind),
    signers: z
      .array(
        z.strictObject({
          signerName: z.string().check(z.minLength(1)),
          cas: z.array(ca).check(z.minLength(1)),
        }),
      )
      .check(z.minLength(1)),
  });
}

const poolSchema = documentSchema(CA_POOL_KIND, z.strictObject({ ...trustedCaFields, privateKey: z.string().check(z.minLength(1)) }));
const trustSchema = documentSchema(CA_TRUST_KIND, z.strictObject(trustedCaFields));

function loadPrivateKey(pem: string, where: string): KeyObject {
  let blocks;
  try {
    blocks = pemDecodeAll(pem);
  } catch (e) {
    // pem.ts messages never quote the input.
    throw new ConfigError(`${where}.privateKey: ${(e as Error).message}`);
  }
  if (blocks.length !== 1 || blocks[0]!.label !== "PRIVATE KEY") {
    throw new ConfigError(
      `${where}.privateKey must be exactly one PKCS#8 "PRIVATE KEY" PEM block (found ${blocks.length} block(s)${
        blocks.length ? ` labelled ${blocks.map((b) => JSON.stringify(b.label)).join(", ")}` : ""
      })`,
    );
  }
  try {
    return createPrivateKey({ key: blocks[0]!.der, format: "der", type: "pkcs8" });
  } catch {
    throw new ConfigError(`${where}.privateKey is not a usable PKCS#8 private key`);
  }
}

function parseYaml(text: string, what: string): unknown {
  try {
    return YAML.parse(text, { prettyErrors: false });
  } catch (e) {
    const err = e as { code?: string; linePos?: { line: number; col: number }[] };
    const pos = err.linePos?.[0];
    throw new ConfigError(`${what} is not valid YAML or JSON (${err.code ?? "parse error"}${pos ? ` at line ${pos.line}, column ${pos.col}` : ""})`);
  }
}

type CaEntry = { certificate: string; intermediates?: string | undefined; state?: CaState | undefined; since?: Partial<Record<CaState, string>> | undefined };

/** The checks both documents share, and each CA built by `load`; `what` names the document in messages. */
function loadSigners<E extends CaEntry, T extends TrustedCa>(
  signersIn: readonly { signerName: string; cas: readonly E[] }[],
  what: string,
  load: (c: E, where: string) => { chain: Pick<CaChain, "certDer" | "rootDer" | "notBefore" | "notAfter">; extra: Omit<T, keyof TrustedCa> },
): Map<string, T[]> {
  const signers = new Map<string, T[]>();
  signersIn.forEach((s, si) => {
    if (signers.has(s.signerName)) {
      throw new ConfigError(`signers[${si}]: signer ${s.signerName} appears more than once in the ${what}`);
    }
    const at = (ci: number) => `signers[${si}].cas[${ci}] (signer ${s.signerName})`;
    const stated = s.cas.filter((c) => c.state !== undefined).length;
    if (stated !== 0 && stated !== s.cas.length) {
      throw new ConfigError(`signers[${si}] (signer ${s.signerName}): either every CA has a state or none has (${stated} of ${s.cas.length} have)`);
    }
    const active = s.cas.filter((c) => c.state === "active").length;
    if (active > 1) throw new ConfigError(`signers[${si}] (signer ${s.signerName}): ${active} CAs are active; exactly one signs`);
    const list: T[] = [];
    s.cas.forEach((c, ci) => {
      if (c.state !== undefined && c.since?.[c.state] === undefined) {
        throw new ConfigError(`${at(ci)}: state ${c.state} needs since.${c.state}, when it entered it`);
      }
      if (c.state === undefined && c.since !== undefined) throw new ConfigError(`${at(ci)}: since is set but state is not`);
      const { chain, extra } = load(c, at(ci));
      const certificatePem = pemEncode("CERTIFICATE", chain.certDer);
      if (list.some((l) => l.certificatePem === certificatePem)) {
        throw new ConfigError(`${at(ci)}: the same CA certificate is listed twice`);
      }
      const trusted: TrustedCa = {
        signerName: s.signerName,
        state: c.state,
        since: Object.fromEntries(Object.entries(c.since ?? {}).map(([k, v]) => [k, new Date(v)])),
        ...certificateIds(chain.certDer),
        notBefore: chain.notBefore,
        notAfter: chain.notAfter,
        certificatePem,
        rootDer: chain.rootDer,
        rootPem: pemEncode("CERTIFICATE", chain.rootDer),
      };
      list.push({ ...trusted, ...extra } as T);
    });
    signers.set(s.signerName, list);
  });
  return signers;
}

/**
 * A CA pool document (YAML or JSON) checked for its shape only, not its certificates, keys or
 * states: what parseCaPool starts from, and what `podcert ca rotate` rewrites. ConfigError as
 * parseCaPool's.
 */
export function parseCaPoolDocument(text: string): CaPoolDocument {
  const parsed = poolSchema.safeParse(parseYaml(text, "CA pool"));
  if (!parsed.success) throw new ConfigError(`CA pool is invalid: ${z.describeIssues(parsed.error).join("; ")}`);
  return parsed.data as CaPoolDocument;
}

/** A certificate's serial (hex, as openssl prints it) and SHA-256 fingerprint (hex), as LoadedCa has them. */
export function certificateIds(der: Buffer): { serialHex: string; fingerprintSha256: string } {
  return { serialHex: new X509Certificate(der).serialNumber, fingerprintSha256: createHash("sha256").update(der).digest("hex") };
}

/**
 * Parses and checks a CA pool document (YAML or JSON). Throws ConfigError naming the place and
 * the problem; never quotes key material or PEM text.
 */
export function parseCaPool(text: string): CaPool {
  const signers = loadSigners<CaPoolDocument["signers"][number]["cas"][number], LoadedCa>(parseCaPoolDocument(text).signers, "CA pool", (c, where) => {
    const key = loadPrivateKey(c.privateKey, where);
    let signer: CaSigner;
    try {
      signer = prepareCaSigner(c.certificate, key, c.intermediates);
    } catch (e) {
      const msg = e instanceof ConfigError ? e.message : "the CA could not be prepared";
      throw new ConfigError(`${where}: ${msg}`);
    }
    return { chain: signer, extra: { signer } };
  });
  return { signers };
}

/**
 * Parses and checks a CA trust document (`podcert ca trust`: the pool's certificates and states,
 * no keys). A CA pool is refused: the publisher must never be given private keys.
 */
export function parseCaTrust(text: string): CaTrust {
  const raw = parseYaml(text, "CA trust document");
  if ((raw as { kind?: unknown } | null)?.kind === CA_POOL_KIND) {
    throw new ConfigError("this is a CA pool, with private keys; give the trust publisher the output of `podcert ca trust` instead");
  }
  const parsed = trustSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`CA trust document is invalid: ${z.describeIssues(parsed.error).join("; ")}`);
  const signers = loadSigners<(typeof parsed.data.signers)[number]["cas"][number], TrustedCa>(parsed.data.signers, "CA trust document", (c, where) => {
    try {
      return { chain: readCaChain(c.certificate, c.intermediates), extra: {} };
    } catch (e) {
      throw new ConfigError(`${where}: ${e instanceof ConfigError ? e.message : "the CA certificate could not be read"}`);
    }
  });
  return { signers };
}

function casOf<T extends TrustedCa>(pool: CaSet<T>, signerName: string): T[] {
  const cas = pool.signers.get(signerName);
  if (!cas || cas.length === 0) throw new ConfigError(`no CA for signer ${signerName} in the CA pool`);
  return cas;
}

/**
 * The CA to issue with: the signer's `active` CA, or, for a signer whose CAs carry no state, the
 * one valid at `now` with the latest notAfter. TransientError (retry later; never a denial) when
 * there is none or it is not valid now; ConfigError when the pool has no CA for the signer at all.
 * Whether it still covers a certificate is policy/lifetime.ts's certificateTimes, the one place
 * that judges the CA's end.
 */
export function activeCa(pool: CaPool, signerName: string, now: Date): LoadedCa {
  const cas = casOf(pool, signerName);
  const t = now.getTime();
  const validNow = (ca: LoadedCa) => ca.notBefore.getTime() <= t && t < ca.notAfter.getTime();
  if (cas[0]!.state !== undefined) {
    const active = cas.find((c) => c.state === "active");
    if (active === undefined) {
      throw new TransientError(`signer ${signerName} has no active CA; activate its prepared CA (podcert ca rotate --signer ${signerName} activate)`);
    }
    if (!validNow(active)) {
      throw new TransientError(
        `the active CA of signer ${signerName} (serial ${active.serialHex}) is not valid at ${now.toISOString()} (${active.notBefore.toISOString()}..${active.notAfter.toISOString()}); rotate to a new CA`,
      );
    }
    return active;
  }
  let best: LoadedCa | undefined;
  for (const ca of cas) {
    if (validNow(ca) && (!best || ca.notAfter.getTime() > best.notAfter.getTime())) best = ca;
  }
  if (!best) {
    const ranges = cas.map((c) => `${c.notBefore.toISOString()}..${c.notAfter.toISOString()}`).join(", ");
    throw new TransientError(
      `no CA for signer ${signerName} is valid at ${now.toISOString()} (CA validity: ${ranges})`,
    );
  }
  return best;
}

/** The CAs pods must trust for the signer: every CA that is not retired. */
export function publishedCas<T extends TrustedCa>(pool: CaSet<T>, signerName: string): T[] {
  return casOf(pool, signerName).filter((c) => c.state !== "retired");
}

/** The roots of the signer's published CAs, deduplicated, as PEM without headers. */
export function trustBundlePem(pool: CaSet<TrustedCa>, signerName: string): string {
  const seen = new Set<string>();
  let out = "";
  for (const ca of publishedCas(pool, signerName)) {
    const key = ca.rootDer.toString("base64");
    if (seen.has(key)) continue;
    seen.add(key);
    out += pemEncode("CERTIFICATE", ca.rootDer);
  }
  return out;
}

/** The ClusterTrustBundle name for a signer: "<signer with / as :>:bundle". */
export function clusterTrustBundleName(signerName: string): string {
  return `${signerName.replaceAll("/", ":")}:bundle`;
}

/**
 * A ClusterTrustBundle publishing the signer's roots, in certificates.k8s.io/v1 (Kubernetes 1.37+)
 * or v1beta1 (1.35, 1.36): the spec is the same in both.
 */
export function clusterTrustBundleManifest(pool: CaSet<TrustedCa>, signerName: string, version: CertificatesVersion = "v1"): object {
  return {
    apiVersion: certificatesApiVersion(version),
    kind: "ClusterTrustBundle",
    metadata: {
      name: clusterTrustBundleName(signerName),
      labels: { "app.kubernetes.io/managed-by": "podcert" },
    },
    spec: {
      signerName,
      trustBundle: trustBundlePem(pool, signerName),
    },
  };
}
