// Bundles the benchmark harness (bench/run.ts) into dist/bench.mjs, like the functions.
import { build } from "esbuild";

await build({
  entryPoints: ["bench/run.ts"],
  outfile: "dist/bench.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  sourcemap: "linked",
  logLevel: "warning",
  banner: { js: "import { createRequire as __podcertCreateRequire } from 'node:module'; const require = __podcertCreateRequire(import.meta.url);" },
});
