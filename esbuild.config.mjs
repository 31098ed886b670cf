// Bundles each function into one self-contained ESM file, dist/<function>.mjs, and the CLI into
// dist/podcert.mjs. cloudevents is CommonJS: the banner gives the bundle a `require` for it.
import { build } from "esbuild";
import { mkdirSync } from "node:fs";

export const FUNCTIONS = {
  validate: "validate",
  "derive-sans": "deriveSans",
  sign: "sign",
  deny: "deny",
};

// @peculiar/x509 (with its ASN.1 schema, tsyringe and asn1js dependencies, about 330 KiB) is
// imported by shared/ca/pool.ts only for createCa, which no function calls; as a CommonJS package
// it would still be bundled and evaluated at every cold start (about 0.1 s here). Declaring it free
// of side effects lets esbuild leave it out wherever nothing uses it; a bundle that does use it
// (the CLI) gets it as before.
const peculiarWhenUsed = {
  name: "peculiar-x509-when-used",
  setup(b) {
    b.onResolve({ filter: /^@peculiar\/x509$/ }, async (args) => {
      if (args.pluginData === "peculiar-x509-when-used") return undefined;
      const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: "peculiar-x509-when-used" });
      return r.errors.length > 0 ? { errors: r.errors } : { ...r, sideEffects: false };
    });
  },
};

const common = {
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
  banner: { js: "import { createRequire as __podcertCreateRequire } from 'node:module'; const require = __podcertCreateRequire(import.meta.url);" },
  plugins: [peculiarWhenUsed],
};

mkdirSync("dist", { recursive: true });

const builds = Object.entries(FUNCTIONS).map(([name, exported]) =>
  build({
    ...common,
    stdin: {
      contents: `import { runFunction } from "./shared/runtime/main.ts";\nimport { ${exported} } from "./functions/${name}/handler.ts";\nawait runFunction(${exported});\n`,
      resolveDir: ".",
      sourcefile: `${name}-entry.ts`,
      loader: "ts",
    },
    outfile: `dist/${name}.mjs`,
  }),
);
builds.push(build({ ...common, entryPoints: ["shared/cli/main.ts"], outfile: "dist/podcert.mjs" }));

await Promise.all(builds);
