// Runs before each test file (vitest setupFiles): gives the file a temp folder of its own inside
// the run's (test/global-setup.ts), and fails the file if anything is left in it once the file's
// own afterAll hooks have run (this hook was registered first, so it runs last). Tests make CA
// pools and step keys: a test must remove them even when it fails.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, expect } from "vitest";
import { leftovers } from "./global-setup.js";

const outer = process.env.TMPDIR;
const dir = mkdtempSync(join(tmpdir(), `${basename(expect.getState().testPath ?? "file")}-`));
// os.tmpdir() reads TMPDIR on each call; child processes inherit it.
process.env.TMPDIR = dir;

afterAll(() => {
  if (outer === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = outer;
  const left = leftovers(dir);
  rmSync(dir, { recursive: true, force: true });
  if (left.length > 0) throw new Error(`this file left ${left.length} entries in the temp folder (removed now):\n  ${left.join("\n  ")}`);
});
