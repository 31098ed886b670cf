// Import rules that keep the function bundles small (cold start): a rule broken here silently
// brings back hundreds of KiB to every function (see esbuild.config.mjs and shared/zod.ts).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}
const files = [...sources("shared"), ...sources("functions"), ...sources("cli"), ...sources("local-cluster")];
const importsOf = (file: string) => [...readFileSync(file, "utf8").matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]!);

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
});
