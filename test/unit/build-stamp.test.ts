// The build runs once per change (esbuild.config.mjs): the stamp it leaves in dist/ names every
// input with its hash, so a later run with nothing changed builds nothing. The global set-up has
// built before this file runs.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../esbuild.config.mjs";

const stamp = JSON.parse(readFileSync("dist/.build-stamp.json", "utf8")) as { key: string; outputs: string[]; inputs: Record<string, string> };
const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

describe("the build stamp", () => {
  it("names every bundle and the current hash of every source they are built from", () => {
    for (const name of [...Object.keys(FUNCTIONS), "podcert"]) expect(stamp.outputs).toContain(`dist/${name}.mjs`);
    for (const name of Object.keys(FUNCTIONS)) expect(Object.keys(stamp.inputs)).toContain(`functions/${name}/handler.ts`);
    // Packages too (their path is where node_modules really is: it may be a link).
    const clientNode = Object.keys(stamp.inputs).find((p) => p.endsWith("node_modules/@kubernetes/client-node/dist/config.js"));
    for (const path of ["shared/runtime/main.ts", "cli/main.ts", clientNode!]) expect(stamp.inputs[path], path).toBe(sha(path));
  });

  it("makes a second build with nothing changed a no-op", () => {
    const before = Object.fromEntries(stamp.outputs.map((o) => [o, statSync(o).mtimeMs]));
    const r = spawnSync(process.execPath, ["esbuild.config.mjs"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("up to date");
    for (const o of stamp.outputs) expect(statSync(o).mtimeMs, o).toBe(before[o]);
  });
});
