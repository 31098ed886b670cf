/** `podcert ca init` and `podcert ca bundle` (rotation and status: ca-rotate.ts). */
import { existsSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { caTrustDocument, clusterTrustBundleManifest, parseCaPool, parseCaTrust, serializeCaPool, trustBundlePem, type CaPoolDocument } from "../shared/ca/pool.js";
import { CA_KEY_ALGORITHMS, createCaPool, type CaKeyAlgorithm } from "./ca-create.js";
import { ConfigError } from "../shared/errors.js";
import { certificatesApiVersion, certificatesVersionOf } from "../shared/kube/api-versions.js";
import { loadCaPoolFile, loadSignerConfig, readText } from "../shared/runtime/load.js";
import { parse as parseYaml, stringify } from "yaml";
import { EXIT, integer, optional, parse, required, UsageError, type Options } from "./args.js";

/** The options of a CA podcert creates, shared by `ca init` and `ca rotate prepare`. */
export const NEW_CA_OPTIONS = { "key-algorithm": { type: "string" }, "validity-days": { type: "string" } } as const;

export function newCaOptions(values: Options): { keyAlgorithm: CaKeyAlgorithm; validityDays: number } {
  const keyAlgorithm = (optional(values, "key-algorithm") ?? "ECDSAP256") as CaKeyAlgorithm;
  if (!CA_KEY_ALGORITHMS.includes(keyAlgorithm)) throw new UsageError(`--key-algorithm must be one of ${CA_KEY_ALGORITHMS.join(", ")}`);
  const validityDays = integer(values, "validity-days", { min: 1, max: 3650, fallback: 365 });
  return { keyAlgorithm, validityDays };
}

export async function runCaInit(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: "string" }, out: { type: "string" }, ...NEW_CA_OPTIONS });
  const out = required(values, "out");
  const config = loadSignerConfig(optional(values, "config"));
  const { keyAlgorithm, validityDays } = newCaOptions(values);
  if (existsSync(out)) throw new ConfigError(`${out} already exists; podcert ca init never overwrites a CA pool`);
  // Before making keys that could not be written.
  if (statSync(dirname(out), { throwIfNoEntry: false })?.isDirectory() !== true) throw new ConfigError(`--out ${out}: folder ${dirname(out)} does not exist`);
  const signers = [...config.signers.keys()];
  process.stderr.write(`creating ${keyAlgorithm} CAs for ${signers.join(", ")}\n`);
  const doc = await createCaPool(signers, { keyAlgorithm, validityDays, now: new Date() });
  // "wx": fail rather than replace a file created since the check above; 0600: owner only.
  writeFileSync(out, serializeCaPool(doc), { flag: "wx", mode: 0o600 });
  process.stderr.write(`wrote ${out} (mode 0600)\n`);
  return EXIT.ok;
}

export async function runCaBundle(args: string[]): Promise<number> {
  const { values } = parse(args, { "ca-pool": { type: "string" }, signer: { type: "string" }, format: { type: "string" }, "api-version": { type: "string" } });
  const poolPath = required(values, "ca-pool");
  const signer = required(values, "signer");
  const format = optional(values, "format") ?? "pem";
  if (format !== "pem" && format !== "clustertrustbundle") throw new UsageError("--format must be pem or clustertrustbundle");
  const apiVersionText = optional(values, "api-version");
  if (apiVersionText !== undefined && format !== "clustertrustbundle") throw new UsageError("--api-version applies to --format clustertrustbundle only");
  const version = apiVersionText === undefined ? "v1" : certificatesVersionOf(apiVersionText);
  if (version === undefined) {
    throw new UsageError(`--api-version must be ${certificatesApiVersion("v1")} (Kubernetes 1.37+) or ${certificatesApiVersion("v1beta1")} (1.35, 1.36); got ${JSON.stringify(apiVersionText)}`);
  }
  const pool = loadCaPoolFile(poolPath);
  if (!pool.signers.has(signer)) throw new ConfigError(`the CA pool has no CA for signer ${signer} (it has: ${[...pool.signers.keys()].join(", ")})`);
  process.stdout.write(format === "pem" ? trustBundlePem(pool, signer) : stringify(clusterTrustBundleManifest(pool, signer, version)));
  return EXIT.ok;
}

/**
 * `podcert ca trust`: the pool's certificates and rotation states without its private keys, for
 * the trust publisher's Secret (podcert-ca-trust). Regenerate it after every `ca rotate`.
 */
export async function runCaTrust(args: string[]): Promise<number> {
  const { values } = parse(args, { "ca-pool": { type: "string" }, out: { type: "string" } });
  const poolPath = required(values, "ca-pool");
  const out = required(values, "out");
  const text = readText(poolPath, "CA pool");
  // Loaded in full first: a pool that sign would refuse must not be published either.
  parseCaPool(text);
  const trust = stringify(caTrustDocument(parseYaml(text) as CaPoolDocument), { lineWidth: 0, blockQuote: "literal" });
  parseCaTrust(trust);
  writeFileSync(out, trust, { mode: 0o644 });
  process.stderr.write(`wrote ${out}: the CA certificates and states of ${poolPath}, no private keys\n`);
  return EXIT.ok;
}
