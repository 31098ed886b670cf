/**
 * `podcert ca rotate` and `podcert ca status`: the CA lifecycle on a pool file. The rules are in
 * ca-rotation.ts; this reads the pool, applies one rule and rewrites the file atomically.
 */
import { createPrivateKey, randomBytes } from "node:crypto";
import { closeSync, fchmodSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CA_POOL_API_VERSION, CA_POOL_KIND, parseCaPool, parseCaPoolDocument, serializeCaPool, type CaPoolDocument } from "../shared/ca/pool.js";
import { ConfigError } from "../shared/errors.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import { loadSignerConfig, readText } from "../shared/runtime/load.js";
import { EXIT, optional, parse, required, UsageError, type Options } from "./args.js";
import { newCaOptions, NEW_CA_OPTIONS } from "./ca.js";
import { createCa } from "./ca-create.js";
import {
  activateCa,
  checkCanPrepare,
  DEFAULT_PROPAGATION_SECONDS,
  poolStatus,
  prepareCa,
  retireCa,
  showTime,
  type NewCa,
  type RotationOutcome,
  type SignerStatus,
} from "./ca-rotation.js";

const ACTIONS = ["prepare", "activate", "retire"] as const;
type Action = (typeof ACTIONS)[number];

const IMPORT_OPTIONS = { certificate: { type: "string" }, "private-key": { type: "string" }, chain: { type: "string" } } as const;
/** The options only some actions take (the others are common to all). */
const ACTION_OPTIONS: Record<Action, readonly string[]> = {
  prepare: [...Object.keys(NEW_CA_OPTIONS), ...Object.keys(IMPORT_OPTIONS)],
  activate: ["force"],
  retire: ["force", "serial"],
};

/** --propagation: "10m", "90s", "1h", "1h30m" → seconds; 10 minutes when not given. */
function propagationSeconds(values: Options): number {
  const text = optional(values, "propagation");
  if (text === undefined) return DEFAULT_PROPAGATION_SECONDS;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === "") throw new UsageError(`--propagation must be a duration like 10m, 90s or 1h (got ${JSON.stringify(text)})`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

function maxLifetimeOf(config: SignerConfig, signerName: string, configPath: string | undefined): number {
  const profile = config.signers.get(signerName);
  if (!profile) {
    throw new ConfigError(
      `signer ${signerName} is not in the signer configuration (${configPath ?? "the built-in one"}: ${[...config.signers.keys()].join(", ")}); ` +
        "its maximum certificate lifetime decides when a step is safe: pass the --config sign uses",
    );
  }
  return profile.maxLifetimeSeconds;
}

/** The pool file's text and document; it must load as it is (keys and all) before anything changes. */
function readPool(path: string): { text: string; doc: CaPoolDocument } {
  const text = readText(path, "CA pool");
  parseCaPool(text);
  return { text, doc: parseCaPoolDocument(text) };
}

/** A PEM private key in the form the pool holds (PKCS#8), from PKCS#8, SEC1 or PKCS#1. */
function pkcs8(path: string): string {
  try {
    return createPrivateKey(readText(path, "CA private key")).export({ type: "pkcs8", format: "pem" }) as string;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    // node's messages do not quote the key, but name no cause either: say what is accepted.
    throw new ConfigError(`--private-key ${path} is not a usable PEM private key (PKCS#8, SEC1 or PKCS#1; not encrypted)`);
  }
}

/** The CA `prepare` adds: imported from files, or created here. Checked alone, so errors name the files. */
async function newCa(values: Options, signerName: string, now: Date): Promise<NewCa> {
  const certificate = optional(values, "certificate");
  const key = optional(values, "private-key");
  const chain = optional(values, "chain");
  if (certificate === undefined && key === undefined && chain === undefined) {
    const o = newCaOptions(values);
    process.stderr.write(`creating a new CA (${o.keyAlgorithm}) for ${signerName}\n`);
    return createCa({ signerName, ...o, now });
  }
  if (certificate === undefined || key === undefined) throw new UsageError("importing a CA takes both --certificate and --private-key (and --chain when it is not a root)");
  if (values["key-algorithm"] !== undefined || values["validity-days"] !== undefined) {
    throw new UsageError("--key-algorithm and --validity-days are for a CA podcert creates, not with --certificate");
  }
  const ca: NewCa = { certificate: readText(certificate, "CA certificate"), privateKey: pkcs8(key) };
  if (chain !== undefined) ca.intermediates = readText(chain, "CA chain");
  const alone: CaPoolDocument = { apiVersion: CA_POOL_API_VERSION, kind: CA_POOL_KIND, signers: [{ signerName, cas: [ca] }] };
  try {
    parseCaPool(serializeCaPool(alone));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const where = `signers[0].cas[0] (signer ${signerName}): `;
    throw new ConfigError(`the CA to import (--certificate ${certificate}): ${e.message.replace(where, "")}`);
  }
  return ca;
}

/**
 * Replaces the file at `path` (following a symlink) with `text`: a temporary file in the same
 * directory, mode 0600 from its creation, written and synced, then renamed over the pool, so a
 * reader sees the old or the new pool and never half of one. Refuses when the file no longer
 * holds `expected` (another rotation got there first). The temporary file, which holds keys, is
 * removed on any failure.
 */
export function rewriteFile(path: string, expected: string, text: string): void {
  const target = realpathSync(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  let fd: number | undefined;
  let renamed = false;
  try {
    fd = openSync(tmp, "wx", 0o600);
    fchmodSync(fd, 0o600); // the umask can only narrow the mode: make it exactly 0600
    writeFileSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    if (readFileSync(target, "utf8") !== expected) throw new ConfigError(`${path} changed while podcert was working on it; run the command again`);
    renameSync(tmp, target);
    renamed = true;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot rewrite ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
    if (!renamed) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        process.stderr.write(`podcert: could not remove ${tmp}; delete it (it may hold CA keys)\n`);
      }
    }
  }
  // The rename is durable once the directory is synced; a platform that cannot sync a directory
  // still has the renamed file.
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* best effort, see above */
  }
}

export async function runCaRotate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    config: { type: "string" },
    "ca-pool": { type: "string" },
    signer: { type: "string" },
    propagation: { type: "string" },
    force: { type: "boolean" },
    serial: { type: "string" },
    ...NEW_CA_OPTIONS,
    ...IMPORT_OPTIONS,
  }, { positionals: 1 });
  const [action] = positionals;
  if (!ACTIONS.includes(action as Action)) throw new UsageError("podcert ca rotate: expected one of prepare, activate, retire");
  const act = action as Action;
  for (const name of Object.values(ACTION_OPTIONS).flat()) {
    if (values[name] !== undefined && !ACTION_OPTIONS[act].includes(name)) throw new UsageError(`--${name} is not an option of ca rotate ${act}`);
  }
  const poolPath = required(values, "ca-pool");
  const signerName = required(values, "signer");
  const propagation = propagationSeconds(values);
  const configPath = optional(values, "config");
  const maxLifetimeSeconds = maxLifetimeOf(loadSignerConfig(configPath), signerName, configPath);
  const { text: before, doc } = readPool(poolPath);
  const now = new Date();
  const facts = { now, maxLifetimeSeconds, propagationSeconds: propagation, force: values.force === true };

  let outcome: RotationOutcome;
  if (act === "prepare") {
    checkCanPrepare(doc, signerName); // before making a key for nothing
    outcome = prepareCa(doc, signerName, await newCa(values, signerName, now), facts);
  } else if (act === "activate") outcome = activateCa(doc, signerName, facts);
  else {
    const serialHex = optional(values, "serial");
    outcome = retireCa(doc, signerName, serialHex === undefined ? facts : { ...facts, serialHex });
  }

  const after = serializeCaPool(outcome.doc);
  try {
    parseCaPool(after);
  } catch (e) {
    // A rule made a pool that does not load: a bug, but the file stays as it was.
    throw new ConfigError(`the rewritten CA pool would not load (${(e as Error).message}); ${poolPath} is unchanged`);
  }
  rewriteFile(poolPath, before, after);
  for (const risk of outcome.risks) process.stderr.write(`podcert: --force: ${risk}\n`);
  process.stderr.write(`${outcome.changed}. Next: ${outcome.next.text}\n`);
  return EXIT.ok;
}

// ---------------------------------------------------------------------------------------------

function stateText(ca: SignerStatus["cas"][number]): string {
  if (ca.state !== null) return ca.state;
  return ca.signs ? "(none, signs)" : "(none)";
}

/** Columns padded to their widest cell; the last is not padded. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

export async function runCaStatus(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: "string" }, "ca-pool": { type: "string" }, propagation: { type: "string" }, output: { type: "string" } });
  const output = optional(values, "output") ?? "table";
  if (output !== "table" && output !== "json") throw new UsageError("--output must be table or json");
  const propagation = propagationSeconds(values);
  const config = loadSignerConfig(optional(values, "config"));
  const { doc } = readPool(required(values, "ca-pool"));
  const now = new Date();
  const status = poolStatus(doc, { now, propagationSeconds: propagation, maxLifetimeSeconds: (n) => config.signers.get(n)?.maxLifetimeSeconds });
  if (output === "json") {
    const signers = status.map((s) => ({ ...s, maxLifetimeSeconds: s.maxLifetimeSeconds ?? null }));
    process.stdout.write(`${JSON.stringify({ now, propagationSeconds: propagation, signers }, null, 2)}\n`);
    return EXIT.ok;
  }
  const rows = [["SIGNER", "SERIAL", "SHA-256", "STATE", "SINCE", "NOT AFTER", "NEXT"]];
  for (const s of status) {
    for (const ca of s.cas) {
      rows.push([s.signerName, ca.serialHex, ca.fingerprintSha256.slice(0, 16), stateText(ca), ca.since ? showTime(ca.since, "down") : "-", showTime(ca.notAfter), ca.next.text]);
    }
  }
  process.stdout.write(table(rows));
  return EXIT.ok;
}
