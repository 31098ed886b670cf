// Bundles the benchmark harness (bench/run.ts) into dist/bench.mjs and the burst floor's subscriber
// (bench/floor-issuer.ts) into dist/bench-floor-issuer.mjs, with the functions' options. The
// embedded API server's thread is the product's own, dist/podcert-apiserver.mjs (`npm run build`).
import { build } from "esbuild";
import { common } from "../esbuild.config.mjs";

await build({
  ...common,
  entryPoints: { bench: "bench/run.ts", "bench-floor-issuer": "bench/floor-issuer.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  // Readable stack traces in a harness; esbuild stays a runtime import (the comparison bundles).
  minify: false,
  keepNames: false,
  metafile: false,
  external: ["esbuild"],
});
