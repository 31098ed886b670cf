// Bundles each function into one self-contained ESM file, dist/<function>.mjs, the CLI into
// dist/podcert.mjs and the embedded API server's thread (local-cluster/apiserver/thread.ts) into
// dist/podcert-apiserver.mjs (`node esbuild.config.mjs`). The functions are the steps of the registry,
// shared/steps.ts, which Node.js 22.18+ loads as it is (it strips the types). cloudevents is
// CommonJS: the banner gives the bundle a `require` for it. The options are exported for the benchmark (bench/build.mjs and its
// cold-start comparison bundles), so every bundle measured is built the same way.
import { build, version as esbuildVersion } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire, isBuiltin } from "node:module";
import { basename, dirname, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
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

// Node.js built-ins loaded with require (the banner's), not imported. Importing one makes Node
// build an ES module facade for it, which reads every export: node:http's lazy WebSocket,
// CloseEvent and MessageEvent getters load Node's own undici, and node:util's TextDecoder
// node:encoding, about 40 ms of each cold start spent on things no function uses. Required, the
// built-in is the plain CommonJS object, and esbuild's interop reads an export only when used.
export const BUILTIN_NS = "node-builtin-require";
export const builtinsByRequire = {
  name: "builtins-by-require",
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z][a-z0-9_/]*$/ }, (args) => {
      if (args.namespace === BUILTIN_NS || !isBuiltin(args.path)) return undefined;
      // Free of side effects as far as a bundle goes: an import nothing uses loads nothing.
      return { path: args.path, namespace: BUILTIN_NS, sideEffects: false };
    });
    b.onLoad({ filter: /.*/, namespace: BUILTIN_NS }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: "js" }));
  },
};

// undici's index evaluates every module of it (fetch, WebSocket, EventSource, caches, mocks, cache
// stores) at import: about 40 ms of CPU at each cold start for a function that only needs an
// Agent (client-node's transport, kube/client-node.ts) and its `request`. This stand-in for
// "undici" evaluates the dispatchers alone, with the Dispatcher API undici's index adds to them;
// anything else it exports loads the index on first use (the same modules: one copy of each
// class). An import of a name it does not export fails the build.
const UNDICI_NS = "undici-slim";
const UNDICI_SLIM = `
import Dispatcher from "./lib/dispatcher/dispatcher.js";
import api from "./lib/api/index.js";
export { default as Agent } from "./lib/dispatcher/agent.js";
export { default as ProxyAgent } from "./lib/dispatcher/proxy-agent.js";
export { getGlobalDispatcher, setGlobalDispatcher } from "./lib/global.js";
export { Dispatcher };
Object.assign(Dispatcher.prototype, api);
const index = () => require("./index.js");
export function request(...args) { return index().request(...args); }
export function fetch(...args) { return index().fetch(...args); }
`;
export const undiciSlim = {
  name: "undici-slim",
  setup(b) {
    // undici has no "exports" map: its index.js is what require and import both get, found the
    // way Node finds it from the importer (one copy in this repository, shared with client-node).
    b.onResolve({ filter: /^undici$/ }, (args) => ({ path: createRequire(resolvePath(args.resolveDir, "_")).resolve("undici"), namespace: UNDICI_NS }));
    b.onLoad({ filter: /.*/, namespace: UNDICI_NS }, (args) => ({ contents: UNDICI_SLIM, resolveDir: dirname(args.path), loader: "js" }));
  },
};

/** Options of every bundle; the functions' and the CLI's add the plugins above. */
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

// The functions and the CLI are built in one build() with many entry points (no code splitting,
// so each bundle stays self-contained): the ~2,000 modules they share are read, parsed and passed
// through the plugin once instead of once per bundle (about a quarter of the CPU time).
const ENTRY_NS = "podcert-entry";
const entryModules = {
  name: "podcert-entries",
  setup(b) {
    b.onResolve({ filter: /^podcert-entry:/ }, (args) => ({ path: args.path.slice(ENTRY_NS.length + 1), namespace: ENTRY_NS }));
    b.onLoad({ filter: /.*/, namespace: ENTRY_NS }, (args) => {
      const name = args.path.replace(/-entry\.ts$/, "");
      const exported = FUNCTIONS[name];
      return {
        contents: `import { runFunction } from "./shared/runtime/main.ts";\nimport { ${exported} } from "./functions/${name}/handler.ts";\nawait runFunction(${exported});\n`,
        resolveDir: process.cwd(),
        loader: "ts",
      };
    });
  },
};

// What went into each function bundle, for test/unit/bundle-contents.test.ts (no emulator, CLI or
// reflect-metadata code in a function) and for `npx esbuild --analyze`-style inspection. The shared
// build's metafile covers every bundle: each function's is the part reachable from its entry.
function writeMetafile(name, metafile) {
  const outputs = Object.fromEntries(Object.entries(metafile.outputs).filter(([k]) => k === `dist/${name}.mjs` || k === `dist/${name}.mjs.map`));
  const inputs = {};
  const walk = (path) => {
    if (path in inputs || !(path in metafile.inputs)) return;
    inputs[path] = metafile.inputs[path];
    for (const i of metafile.inputs[path].imports) if (!i.external) walk(i.path);
  };
  walk(outputs[`dist/${name}.mjs`].entryPoint);
  writeFileSync(`dist/${name}.meta.json`, JSON.stringify({ inputs, outputs }));
}

// Built once per change: `prepare`, `npm start` and the tests' global set-up all run this file.
// The stamp records a hash of every input the last build read, with what else decides the output
// (this file, esbuild's version, the package files); nothing differs → nothing to build.
const STAMP = "dist/.build-stamp.json";
const sha = (data) => createHash("sha256").update(data).digest("hex");
const readOrEmpty = (path) => (isFile(path) ? readFileSync(path) : "");
function buildKey() {
  const self = fileURLToPath(import.meta.url);
  return sha([esbuildVersion, ...[self, "shared/steps.ts", "package.json", "package-lock.json", "tsconfig.json"].map((f) => sha(readOrEmpty(f)))].join("\n"));
}
function upToDate(key) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(STAMP, "utf8"));
  } catch {
    return false;
  }
  if (stamp.key !== key || !stamp.outputs.every(isFile)) return false;
  return Object.entries(stamp.inputs).every(([path, hash]) => isFile(path) && sha(readFileSync(path)) === hash);
}
function writeStamp(key, metafile, outputs) {
  const inputs = Object.fromEntries(Object.keys(metafile.inputs).filter((p) => !p.includes(":")).map((p) => [p, sha(readFileSync(p))]));
  writeFileSync(`${STAMP}.tmp`, JSON.stringify({ key, outputs, inputs }));
  renameSync(`${STAMP}.tmp`, STAMP);
}

/** Builds every bundle into dist/, unless nothing changed since the last build (or `force`). */
export async function buildAll({ force = false } = {}) {
  mkdirSync("dist", { recursive: true });
  const key = buildKey();
  if (!force && upToDate(key)) {
    process.stderr.write("podcert: bundles in dist/ are up to date\n");
    return { built: false };
  }
  // A build that fails or is interrupted leaves no stamp, so the next run builds again.
  rmSync(STAMP, { force: true });
  const names = Object.keys(FUNCTIONS);
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  const label = `podcert: building ${names.length} function bundles and the CLI into dist/`;
  const tty = process.stderr.isTTY === true;
  process.stderr.write(tty ? `${label}…` : `${label}…\n`);
  const ticker = tty ? setInterval(() => process.stderr.write(`\r${label}… ${elapsed()}`), 1000) : undefined;
  let result;
  try {
    result = await build({
      ...common,
      plugins: [entryModules, undiciSlim, builtinsByRequire, sideEffectFree],
      entryPoints: { ...Object.fromEntries(names.map((n) => [n, `${ENTRY_NS}:${n}-entry.ts`])), podcert: "cli/main.ts", "podcert-apiserver": "local-cluster/apiserver/thread-entry.ts" },
      outdir: "dist",
      outExtension: { ".js": ".mjs" },
    });
  } finally {
    clearInterval(ticker);
    if (tty) process.stderr.write("\n");
  }
  for (const name of names) writeMetafile(name, result.metafile);
  writeStamp(key, result.metafile, [...Object.keys(result.metafile.outputs), ...names.map((n) => `dist/${n}.meta.json`)]);
  process.stderr.write(`podcert: built in ${elapsed()}\n`);
  return { built: true };
}

// Run as `node esbuild.config.mjs [--force]`; imported (by the benchmark), it only exports its options.
if (basename(process.argv[1] ?? "") === "esbuild.config.mjs") await buildAll({ force: process.argv.includes("--force") });
