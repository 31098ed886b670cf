#!/usr/bin/env node
// `npm run serve -- <function>`: serve one function bundle on $PORT (default 8080), as Knative would.
const name = process.argv[2];
// The steps of the registry (Node.js 22.18+ loads the TypeScript file as it is: it strips the types).
const { STEPS: functions } = await import("../shared/steps.ts");
if (!functions.includes(name)) {
  process.stderr.write(`usage: npm run serve -- <${functions.join("|")}>\n`);
  process.exit(64);
}
await import(`../dist/${name}.mjs`);
