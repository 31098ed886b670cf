#!/usr/bin/env node
// `npm run serve -- <function>`: serve one function bundle on $PORT (default 8080), as Knative would.
const name = process.argv[2];
const functions = ["validate", "derive-sans", "sign", "deny"];
if (!functions.includes(name)) {
  process.stderr.write(`usage: npm run serve -- <${functions.join("|")}>\n`);
  process.exit(64);
}
await import(`../dist/${name}.mjs`);
