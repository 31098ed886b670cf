// Builds the bundles once before the tests (a no-op when nothing changed since the last build), so
// integration tests exercise exactly what ships. Gives the run a temp folder of its own and fails
// the run if a test leaves anything in it: tests make CA pools and keys, which must not outlive them.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** What a test run left in its temp folder (`dir`), as lines for the failure message. */
export function leftovers(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? `${e.name}/ (${readdirSync(join(dir, e.name)).join(", ")})` : e.name));
}

/** Removes the temp folders of earlier runs that were killed before their teardown (their process is gone). */
function removeAbandonedRuns(): void {
  for (const name of readdirSync(tmpdir())) {
    const pid = /^podcert-test-run-(\d+)-/.exec(name)?.[1];
    if (pid === undefined || alive(Number(pid))) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One run temp folder however many projects the run has: vitest calls the global set-up once per
 * project of the test matrix (vitest.config.ts), in one process; the first call makes the folder,
 * the last teardown checks and removes it. (Per call, each folder would be made inside the
 * previous one and every teardown but the last would find the next project's folder in it.)
 */
interface RunTemp {
  dir: string;
  outer: string | undefined;
  users: number;
}
const shared = globalThis as { podcertRunTemp?: RunTemp };

export default function setup(): () => void {
  if (shared.podcertRunTemp === undefined) {
    execFileSync(process.execPath, ["esbuild.config.mjs"], { stdio: "inherit" });
    // Set before vitest starts its workers, so they (and every process they start) inherit it:
    // os.tmpdir() and mktemp follow TMPDIR. Other processes on the machine keep the shared /tmp.
    removeAbandonedRuns();
    const dir = mkdtempSync(join(tmpdir(), `podcert-test-run-${process.pid}-`));
    shared.podcertRunTemp = { dir, outer: process.env.TMPDIR, users: 0 };
    process.env.TMPDIR = dir;
  }
  const run = shared.podcertRunTemp;
  run.users++;
  return () => {
    if (--run.users > 0) return;
    shared.podcertRunTemp = undefined;
    if (run.outer === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = run.outer;
    const left = leftovers(run.dir);
    // Removed either way: what a failing test left may hold private keys.
    rmSync(run.dir, { recursive: true, force: true });
    // What outlived its test file (test/temp-guard.ts checks each file): vitest only logs an
    // error thrown here, so the exit code says it.
    if (left.length > 0) {
      process.stderr.write(`tests left ${left.length} entries in their temp folder (removed now):\n  ${left.join("\n  ")}\n`);
      process.exitCode = 1;
    }
  };
}
