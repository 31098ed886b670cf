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
