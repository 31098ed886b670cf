// Bundles the benchmark harness (bench/run.ts) into dist/bench.mjs, and the embedded API server's
// thread (bench/apiserver-thread.ts) into dist/bench-apiserver.mjs, with the functions' options.
import { build } from "esbuild";
import { common } from "../esbuild.config.mjs";

await build({
  ...common,
  entryPoints: { bench: "bench/run.ts", "bench-apiserver": "bench/apiserver-thread.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  // Readable stack traces in a harness; esbuild stays a runtime import (the comparison bundles).
  minify: false,
  keepNames: false,
  metafile: false,
  external: ["esbuild"],
});
