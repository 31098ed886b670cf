// What a function bundle may contain (issue 9): the code the functions share (shared/), their own
// handler, and the libraries they use, never the local stand-ins for a cluster (local-cluster/),
// the CLI (cli/) or the CA-creation stack (@peculiar/x509 and its reflect-metadata). Read from the
// metafiles esbuild.config.mjs writes beside each bundle (the global setup builds them).
import { readdirSync, readFileSync } from "node:fs";
import { join, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { BUILTIN_NS, FUNCTIONS } from "../../esbuild.config.mjs";

interface Metafile {
  inputs: Record<string, unknown>;
  outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
}

const metafile = (name: string): Metafile => JSON.parse(readFileSync(`dist/${name}.meta.json`, "utf8")) as Metafile;
/** The package a node_modules path belongs to ("@scope/name" or "name"). */
const packageOf = (path: string) => {
  const parts = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length).split("/");
  return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
};
const FORBIDDEN_PACKAGES = ["reflect-metadata", "@peculiar/x509", "@peculiar/asn1-schema", "tsyringe"];

describe.each(Object.keys(FUNCTIONS))("the %s bundle", (name) => {
  const meta = metafile(name);
  const parsed = Object.keys(meta.inputs);
  const emitted = Object.entries(meta.outputs[`dist/${name}.mjs`]!.inputs)
    .filter(([, i]) => i.bytesInOutput > 0)
    .map(([path]) => path);

  it("is built from its own handler and shared/ (the check sees the sources)", () => {
    expect(emitted).toContain(`functions/${name}/handler.ts`);
    expect(emitted).toContain("shared/runtime/main.ts");
  });

  it("reads no source of the CLI, the local cluster or another function", () => {
    // The stand-ins that require Node.js built-ins (esbuild.config.mjs) are no source either.
    const own = parsed.filter((p) => !p.includes("node_modules/") && !p.endsWith("-entry.ts") && !p.startsWith(`${BUILTIN_NS}:`));
    const foreign = own.filter((p) => !p.startsWith("shared/") && p !== `functions/${name}/handler.ts`);
    expect(foreign).toEqual([]);
  });

  it("imports no Node.js built-in as an ES module (each is required: esbuild.config.mjs)", () => {
    const imported = readFileSync(`dist/${name}.mjs`, "utf8").match(/(?:^|[;}\n])\s*import\s*(?:[\w*{][^;]*?from\s*)?["'](?:node:)?[a-z_/]+["']/g) ?? [];
    // The banner's one import of node:module gives the bundle its require.
    expect(imported.filter((i) => !i.includes("createRequire"))).toEqual([]);
  });

  it("carries no CA-creation stack (@peculiar/x509, reflect-metadata)", () => {
    const packages = new Set(emitted.filter((p) => p.includes("node_modules/")).map(packageOf));
    // The check reads package names correctly (scoped ones too): every function talks to Kubernetes.
    expect(packages.has("@kubernetes/client-node")).toBe(true);
    expect(FORBIDDEN_PACKAGES.filter((p) => packages.has(p))).toEqual([]);
  });
});

describe("shared/", () => {
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : [join(dir, e.name)]));
  // Type-only modules leave nothing in a bundle; they count as shared when a bundled file imports them.
  const typeOnly = (file: string) => !/^export\s+(?!type\b|interface\b)/m.test(readFileSync(file, "utf8"));

  it("holds only what the function bundles are built from", () => {
    const bundled = new Set(Object.keys(FUNCTIONS).flatMap((name) => Object.keys(metafile(name).inputs)));
    const unused = sources("shared").filter((f) => !bundled.has(f.split(sep).join("/")) && !typeOnly(f));
    expect(sources("shared").length).toBeGreaterThan(30);
    expect(unused).toEqual([]);
  });
});
