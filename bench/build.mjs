// Bundles the benchmark harness (bench/run.ts) into dist/bench.mjs, and the embedded API server's
// thread (bench/apiserver-thread.ts) into dist/bench-apiserver.mjs and the burst floor's subscriber
// (bench/floor-issuer.ts) into dist/bench-floor-issuer.mjs, with the functions' options.
import { build } from "esbuild";
import { common } from "../esbuild.config.mjs";

await build({
  ...common,
  entryPoints: { bench: "bench/run.ts", "bench-apiserver": "bench/apiserver-thread.ts", "bench-floor-issuer": "bench/floor-issuer.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  // Readable stack traces in a harness; esbuild stays a runtime import (the comparison bundles).
  minify: false,
  keepNames: false,
  metafile: false,
  external: ["esbuild"],
});
