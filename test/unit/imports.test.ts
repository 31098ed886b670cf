// Import rules that keep the function bundles small (cold start): a rule broken here silently
// brings back hundreds of KiB to every function (see esbuild.config.mjs and shared/zod.ts).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { describe, expect, it } from "vitest";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}
const files = [...sources("shared"), ...sources("functions"), ...sources("cli"), ...sources("local-cluster")];
const importsOf = (file: string) => [...readFileSync(file, "utf8").matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]!);
/** The project sources a file imports (relative imports, type-only ones included), as paths. */
const localImportsOf = (file: string) =>
  importsOf(file).filter((i) => i.startsWith(".")).map((i) => normalize(join(dirname(file), i.replace(/\.js$/, ".ts"))));

/** Every import cycle in `graph`, each as the files on it (Tarjan's strongly connected components). */
function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

describe("imports", () => {
  it("finds the sources it checks", () => {
    expect(files).toContain(join("shared", "zod.ts"));
    expect(files.length).toBeGreaterThan(40);
  });

  it("takes zod only through shared/zod.ts (zod/mini with the English messages)", () => {
    const direct = files.filter((f) => f !== join("shared", "zod.ts") && importsOf(f).some((i) => i === "zod" || i.startsWith("zod/")));
    expect(direct).toEqual([]);
  });

  it("imports from client-node, in what the functions use, only KubeConfig and its transport", () => {
    // The CLI and the local flow (kubelet emulation, ApiServerSource) may use them; the functions'
    // Kubernetes access (shared/kube) uses KubeConfig and its transport only.
    const named = (file: string) =>
      [...readFileSync(file, "utf8").matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"@kubernetes\/client-node"/g)].flatMap((m) =>
        m[1]!.split(",").map((n) => n.trim().replace(/^type\s+/, "")),
      );
    const allowed = new Set(["KubeConfig", "RequestContext", "HttpMethod", "IsomorphicFetchHttpLibrary", ""]);
    const files = [...sources(join("shared", "kube")), ...sources(join("shared", "runtime")), ...sources("functions")];
    expect(files.flatMap(named)).toContain("KubeConfig");
    const offenders = files.flatMap((f) => named(f).filter((n) => !allowed.has(n)).map((n) => `${f}: ${n}`));
    expect(offenders).toEqual([]);
  });

  it("has no import cycle (a module's imports are below it: cli/main.ts → subcommands → cli/args.ts)", () => {
    const graph = new Map(files.map((f) => [f, localImportsOf(f)]));
    expect(graph.get(join("cli", "ca.ts"))).toContain(join("cli", "args.ts"));
    expect(importCycles(graph)).toEqual([]);
  });

  it("finds a cycle when there is one (the check above can fail)", () => {
    const graph = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]], ["e", ["e"]]]);
    expect(importCycles(graph)).toEqual([["a", "b", "c"], ["e"]]);
  });

  it("keeps shared/runtime at the top of shared/: nothing else in shared/ imports it (e.g. shared/kube)", () => {
    const runtime = join("shared", "runtime");
    const upward = files
      .filter((f) => f.startsWith(`shared${sep}`) && !f.startsWith(`${runtime}${sep}`))
      .flatMap((f) => localImportsOf(f).filter((i) => i.startsWith(`${runtime}${sep}`)).map((i) => `${f} → ${i}`));
    expect(files.filter((f) => f.startsWith(join("shared", "kube")))).toContain(join("shared", "kube", "event-recorder.ts"));
    expect(upward).toEqual([]);
  });

  it("reads the environment in the CLI only at its edge, cli/main.ts (subcommands are given what they need)", () => {
    const cli = files.filter((f) => f.startsWith(`cli${sep}`));
    expect(cli).toContain(join("cli", "issue-command.ts"));
    const readers = cli.filter((f) => f !== join("cli", "main.ts") && /process\.env\b|shared\/runtime\/env\.js/.test(readFileSync(f, "utf8")));
    expect(readers).toEqual([]);
  });

  it("reports schema errors only through describeIssues (every issue, bounded), never by reading .issues", () => {
    const readers = files.filter((f) => f !== join("shared", "zod.ts") && /\.issues\b/.test(readFileSync(f, "utf8")));
    expect(readers).toEqual([]);
  });
});
