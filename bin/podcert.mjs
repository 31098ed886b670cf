#!/usr/bin/env node
// The podcert command: runs the bundle `npm install` built (prepare). Needs Node.js 22.19+;
// in a clone, npm scripts and npx put the project's own Node 22 (the node@22 package) first on PATH.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`podcert needs Node.js 22.19 or newer (this is ${process.versions.node}); run it as \`npx podcert\` in the clone, or install Node.js 22+\n`);
  process.exit(78);
}
const { main } = await import("../dist/podcert.mjs");
process.exitCode = await main(process.argv.slice(2));
