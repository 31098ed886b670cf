/**
 * Where `sign` gets its CA pool for each request: a pool fixed for the process (the CLI, in-process
 * runs) or the pool file it was started with, followed as it changes (the function).
 *
 * How a mounted Secret changes: kubelet writes the new content into a new timestamped folder
 * beside the old one and swaps the `..data` symlink to it in one rename; the file's path
 * (`ca-pool.yaml → ..data/ca-pool.yaml`) keeps its name and resolves to a new inode.
 *
 * What is chosen, and why: whenever the pool is asked for (each request, each /metrics scrape),
 * at most once per CHECK_INTERVAL_MS, one stat of the path (following the symlinks) is compared
 * with the file last read (device, inode, size, mtime and ctime, in nanoseconds). Unchanged, that
 * is all (a few microseconds a second). Changed, the file is read and parsed there and then: a
 * few milliseconds of CPU once per Secret change, which would block the event loop just as long
 * from a timer or a watcher, so the one request that notices the change pays them and itself
 * signs with the new pool ("the next request after the swap signs with the new CA"). No fs.watch:
 * a watch on the file keeps following the old inode after the first swap, one on the folder
 * depends on the platform and the volume (inotify, overlay, NFS), and the stat is needed anyway;
 * no timer: nothing to keep alive or close, and a scrape checks as a request does, so the metrics
 * are right after a swap even without traffic.
 *
 * A file that does not load (partial, not YAML, a key that does not match its certificate, a
 * configured signer missing) is refused: logged once per distinct content, with the problem and
 * never key material (pool.ts's messages quote none), counted, and the last good pool keeps
 * signing; the next change is tried again. At start there is no last good pool: a bad file is a
 * ConfigError, as before (the function exits 78).
 */
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, statSync, type BigIntStats } from "node:fs";
import { ConfigError, isPodcertError } from "../errors.js";
import { activeCa, parseCaPool, publishedCas, type CaPool } from "./pool.js";

/** What a step that signs reads its CA pool from, per request. */
export interface CaPoolSource {
  /** The pool to sign with now. */
  current(): CaPool;
}

/** A pool that never changes (the CLI and in-process runs: each run reads the file once). */
export function fixedCaPool(pool: CaPool): CaPoolSource {
  return { current: () => pool };
}

export interface CaPoolFileState {
  /** The pool in use: the last file that loaded. */
  pool: CaPool;
  /** When it was loaded (at start or by the last reload that succeeded). */
  loadedAt: Date;
  /** false while the file on disk is one that was refused (the pool in use is older). */
  upToDate: boolean;
  /** Files refused since start, each distinct content (or read error) once. */
  refusals: number;
}

/** The pool file followed as it changes. */
export interface CaPoolFile extends CaPoolSource {
  /** The pool in use and how it was loaded, after the same check as current(). */
  state(): CaPoolFileState;
}

/** The two log methods the source uses (declared here: shared/ca sits below the runtime's logger). */
export interface CaPoolLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** How often, at most, the file is looked at. kubelet takes a minute or more to project a change. */
export const CHECK_INTERVAL_MS = 1000;

/**
 * Loads the pool at `path` (a ConfigError when it does not load: the start fails) and follows it.
 * `signers`: the signers the configuration serves; a file lacking a CA for one is refused.
 */
export function openCaPoolFile(
  path: string,
  o: { log: CaPoolLog; signers?: Iterable<string>; checkIntervalMs?: number; clock?: () => number },
): CaPoolFile {
  const signers = [...(o.signers ?? [])];
  const interval = o.checkIntervalMs ?? CHECK_INTERVAL_MS;
  const clock = o.clock ?? (() => performance.now());
  const load = (text: string): CaPool => {
    const pool = parseCaPool(text);
    const missing = signers.filter((s) => !pool.signers.has(s));
    if (missing.length > 0) throw new ConfigError(`the CA pool has no CA for signer ${missing.join(", ")}, which the configuration serves`);
    return pool;
  };

  const first = readVersion(path);
  let pool = load(first.text);
  let digest = sha256(first.text);
  let seen: string | undefined = first.stamp;
  let loadedAt = new Date();
  let upToDate = true;
  let refusals = 0;
  /** The last content (or read error) refused, so that it is logged and counted once. */
  let refused: string | undefined;
  let lastCheck = clock();
  o.log.info("CA pool loaded", { path, signers: describePool(pool, loadedAt) });

  const refuse = (key: string, problem: string) => {
    upToDate = false;
    if (key === refused) return;
    refused = key;
    refusals++;
    o.log.error("CA pool file refused; still signing with the last good pool", { path, error: problem, lastGoodLoadedAt: loadedAt.toISOString() });
  };

  const reload = () => {
    let version: Version;
    try {
      version = readVersion(path);
    } catch (e) {
      // Not remembered as seen: the next check reads again.
      seen = undefined;
      return refuse(`read:${describeProblem(e)}`, describeProblem(e));
    }
    seen = version.stamp;
    const d = sha256(version.text);
    // The same bytes again (kubelet re-projects a Secret when any of its keys changes).
    if (d === digest) {
      upToDate = true;
      refused = undefined;
      return;
    }
    let next: CaPool;
    try {
      // Content refused before is not parsed again: refuse() only keeps upToDate false.
      if (d === refused) throw new ConfigError("refused before");
      next = load(version.text);
    } catch (e) {
      return refuse(d, describeProblem(e));
    }
    pool = next;
    digest = d;
    loadedAt = new Date();
    upToDate = true;
    refused = undefined;
    o.log.info("CA pool reloaded", { path, signers: describePool(pool, loadedAt) });
  };

  const check = () => {
    const t = clock();
    if (t - lastCheck < interval) return;
    lastCheck = t;
    let stamp: string;
    try {
      stamp = stampOf(statSync(path, { bigint: true }));
    } catch (e) {
      seen = undefined;
      return refuse(`read:${describeProblem(e)}`, describeProblem(e));
    }
    if (stamp !== seen) reload();
  };

  return {
    current() {
      check();
      return pool;
    },
    state() {
      check();
      return { pool, loadedAt, upToDate, refusals };
    },
  };
}

interface Version {
  text: string;
  /** The file's identity and version, taken after the read: a write still under way changes it again. */
  stamp: string;
}

function readVersion(path: string): Version {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new ConfigError(`cannot read CA pool ${path}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
  }
  try {
    const text = readFileSync(fd, "utf8");
    return { text, stamp: stampOf(fstatSync(fd, { bigint: true })) };
  } catch (e) {
    throw new ConfigError(`cannot read CA pool ${path}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
  } finally {
    closeSync(fd);
  }
}

function stampOf(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A refusal's reason for the log: podcert's own messages (which never quote key material), else only the error's kind. */
function describeProblem(e: unknown): string {
  if (isPodcertError(e)) return e.message;
  if (e instanceof Error && "code" in e && typeof e.code === "string") return `cannot read the CA pool: ${e.code}`;
  return `unexpected ${e instanceof Error ? e.name : typeof e} while loading the CA pool`;
}

/** Per signer: the CA that signs now and the published ones, by serial and state (nothing secret). */
function describePool(pool: CaPool, now: Date): unknown[] {
  return [...pool.signers.keys()].map((signer) => {
    let signing: string | undefined;
    try {
      signing = activeCa(pool, signer, now).serialHex;
    } catch {
      signing = undefined; // said by the published list's states; sign says it per request
    }
    return {
      signer,
      signing: signing ?? "none",
      published: publishedCas(pool, signer).map((ca) => ({ serial: ca.serialHex, state: ca.state ?? "unset", notAfter: ca.notAfter.toISOString() })),
    };
  });
}
