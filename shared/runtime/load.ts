/** Loading what a function needs from files: configuration, step keys, the CA pool. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.js";
import { parseCaPool, parseCaTrust, type CaPool, type CaTrust } from "../ca/pool.js";
import type { StepKeys } from "../events/attestation.js";
import { EDGE_KEYS_FILE, loadStepKeys } from "../events/step-keys.js";
import type { StepName } from "../steps.js";
import { parseSignerConfig, type SignerConfig } from "../profiles/config.js";
import { defaultSignerConfig } from "../profiles/defaults.js";

/** A file's text; a missing or unreadable file is a ConfigError naming what it was for. */
export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The signer configuration file, or the built-in two signers when none is given. */
export function loadSignerConfig(path: string | undefined): SignerConfig {
  return path === undefined ? defaultSignerConfig() : parseSignerConfig(readText(path, "configuration file"), path);
}

/** One step's keys from its Secret's folder (the file `podcert keys init` writes). */
export function loadStepKeysDir(step: StepName, dir: string): StepKeys {
  return loadStepKeys(step, { [EDGE_KEYS_FILE]: readText(join(dir, EDGE_KEYS_FILE), `edge keys of ${step}`) });
}

export function loadCaPoolFile(path: string): CaPool {
  return parseCaPool(readText(path, "CA pool"));
}

export function loadCaTrustFile(path: string): CaTrust {
  return parseCaTrust(readText(path, "CA trust document"));
}
