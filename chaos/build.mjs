// Bundles the chaos harness (chaos/run.ts) into dist/chaos.mjs with the functions' options.
import { build } from "esbuild";
import { common } from "../esbuild.config.mjs";

await build({
  ...common,
  entryPoints: { chaos: "chaos/run.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  // Readable stack traces in a harness.
  minify: false,
  keepNames: false,
  metafile: false,
});
