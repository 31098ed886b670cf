// Bundles each function into one self-contained ESM file, dist/<function>.mjs, and the CLI into
// dist/podcert.mjs (`node esbuild.config.mjs`). The functions are the steps of the registry,
// shared/steps.ts, which Node.js 22.18+ loads as it is (it strips the types). cloudevents is
// CommonJS: the banner gives the bundle a `require` for it. The options are exported for the benchmark (bench/build.mjs and its
// cold-start comparison bundles), so every bundle measured is built the same way.
import { build } from "esbuild";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, resolve as resolvePath } from "node:path";
import { STEP_REGISTRY } from "./shared/steps.ts";

/** One bundle per step of the registry (shared/steps.ts): step name → its handler's export. */
export const FUNCTIONS = Object.fromEntries(STEP_REGISTRY.map((s) => [s.name, s.handlerExport]));

// Packages declared free of side effects, so that esbuild keeps only the modules a bundle uses.
// @kubernetes/client-node re-exports every generated API class and model from its index; the
// functions use only KubeConfig and its HTTP transport (shared/kube/client-node.ts), and without
// this the bundle carries all of them (about 0.6 MiB more to compile at each cold start). Its one
// side-effect import, a `File` global polyfill for Node.js 18, is not needed on Node.js 22.
// A bundle that does use more of it (the CLI) gets it as before.
const SIDE_EFFECT_FREE = ["@kubernetes/client-node"];
const inSideEffectFree = (path) => SIDE_EFFECT_FREE.some((p) => path === p || path.includes(`/node_modules/${p}/`));
const isFile = (path) => statSync(path, { throwIfNoEntry: false })?.isFile() === true;
export const sideEffectFree = {
  name: "side-effect-free-packages",
  setup(b) {
    // The package itself and every module inside it (client-node's index re-exports modules
    // that re-export others: each link must be free of side effects for esbuild to drop it).
    b.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === "side-effect-free-packages") return undefined;
      if (!inSideEffectFree(args.path) && !inSideEffectFree(args.importer)) return undefined;
      // A relative import of a file inside the package, named with its extension (as ESM
      // requires): no need to ask esbuild's resolver. Asking it for each of client-node's
      // thousands of modules took about a minute per build (one round trip to esbuild's service
      // each); anything else still goes through it.
      if (args.path.startsWith(".") && inSideEffectFree(args.importer)) {
        const path = resolvePath(args.resolveDir, args.path);
        if (inSideEffectFree(path) && isFile(path)) return { path, sideEffects: false };
      }
      const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: "side-effect-free-packages" });
      if (r.errors.length > 0) return { errors: r.errors };
      return inSideEffectFree(r.path) ? { ...r, sideEffects: false } : r;
    });
  },
};

/** Options of every bundle; the functions' and the CLI's add the plugin above. */
export const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  minify: true,
  keepNames: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
  metafile: true,
  // podcert_build_info's version label (shared/runtime/metrics.ts).
  define: { PODCERT_VERSION: JSON.stringify(JSON.parse(readFileSync("package.json", "utf8")).version) },
  banner: { js: "import { createRequire as __podcertCreateRequire } from 'node:module'; const require = __podcertCreateRequire(import.meta.url);" },
};

// What went into each function bundle, for test/unit/bundle-contents.test.ts (no emulator, CLI or
// reflect-metadata code in a function) and for `npx esbuild --analyze`-style inspection.
function writeMetafile(name, result) {
  writeFileSync(`dist/${name}.meta.json`, JSON.stringify(result.metafile));
}

export async function buildAll() {
  mkdirSync("dist", { recursive: true });
  const options = { ...common, plugins: [sideEffectFree] };
  const builds = Object.entries(FUNCTIONS).map(([name, exported]) =>
    build({
      ...options,
      stdin: {
        contents: `import { runFunction } from "./shared/runtime/main.ts";\nimport { ${exported} } from "./functions/${name}/handler.ts";\nawait runFunction(${exported});\n`,
        resolveDir: ".",
        sourcefile: `${name}-entry.ts`,
        loader: "ts",
      },
      outfile: `dist/${name}.mjs`,
    }).then((r) => writeMetafile(name, r)),
  );
  builds.push(build({ ...options, entryPoints: ["cli/main.ts"], outfile: "dist/podcert.mjs" }));
  await Promise.all(builds);
}

// Run as `node esbuild.config.mjs`; imported (by the benchmark), it only exports its options.
if (basename(process.argv[1] ?? "") === "esbuild.config.mjs") await buildAll();
