/**
 * `npm run bench`: the performance harness. Runs the six parts of issue 4, prints a table per part
 * and the targets, and writes bench/results/<time>.json, bench/results/latest.json and an SVG chart.
 * Numbers are measurements, never assertions: nothing here fails a build.
 */
import "reflect-metadata";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runBurst } from "./burst.js";
import { writeChart } from "./chart.js";
import { runColdStart } from "./coldstart.js";
import { runCryptoLimit, runLeafAndProof } from "./crypto.js";
import { runPipeline } from "./pipeline.js";
import { formatTable, type BenchPart } from "./report.js";
import { runSans } from "./sans.js";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    quick: { type: "boolean" },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(`npm run bench [-- --only 1,2,3,4,5,6] [--quick] [--out bench/results]
  --only   run only these parts (1 limit and no-I/O rates, 2 in-process pipeline, 3 HTTP burst,
           4 cold start, 5 SAN derivation, 6 memory — measured with 3)
  --quick  smaller sizes, for a fast look (not for the README figures)\n`);
  process.exit(0);
}
const only = new Set((values.only ?? "1,2,3,4,5,6").split(",").map((s) => s.trim()));
const quick = values.quick ?? false;
const outDir = values.out ?? join("bench", "results");
const say = (m: string) => process.stderr.write(`${m}\n`);

const parts: BenchPart[] = [];
const print = (p: BenchPart) => {
  parts.push(p);
  process.stdout.write(`\n## ${p.title}\n${formatTable(p.rows)}\n`);
  for (const n of p.notes ?? []) process.stdout.write(`   note: ${n}\n`);
  for (const t of p.targets) {
    const v = Number.isInteger(t.value) ? String(t.value) : t.value.toFixed(t.value < 10 ? 3 : 1);
    process.stdout.write(`   ${t.met ? "MET " : "MISS"} ${t.name}: ${v} ${t.unit} (target ${t.kind === "min" ? "≥" : "≤"} ${t.target})${t.note ? ` — ${t.note}` : ""}\n`);
  }
};

const started = new Date();
say(`podcert benchmark on ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.versions.node}${quick ? " (quick)" : ""}`);
if (only.has("1")) {
  say("part 1: the cryptographic limit, leaf issuance and proof verification…");
  const limit = await runCryptoLimit(quick ? { ms: 200, rounds: 3 } : {});
  print(limit);
  print(await runLeafAndProof(limit.limits, quick ? { ms: 200, rounds: 3 } : {}));
}
if (only.has("2")) {
  say("part 2: in-process pipeline…");
  print(await runPipeline(quick ? { pods: 100, wholeProcess: { small: 100, large: 600, rounds: 1 } } : {}));
}
if (only.has("3") || only.has("6")) {
  say("parts 3 and 6: HTTP burst and memory…");
  for (const p of await runBurst({ pcrs: quick ? 200 : 1000, say: (m) => say(`   ${m.trim()}`) })) print(p);
}
if (only.has("4")) {
  say("part 4: cold start…");
  print(await runColdStart(quick ? { runs: 5 } : {}));
}
if (only.has("5")) {
  say("part 5: SAN derivation…");
  print(await runSans(quick ? { sizes: [10, 1000], requests: 20 } : {}));
}

mkdirSync(outDir, { recursive: true });
const result = {
  started: started.toISOString(),
  node: process.versions.node,
  cpus: cpus().map((c) => c.model),
  quick,
  parts,
};
const stamp = started.toISOString().replaceAll(":", "-").replace(/\.\d+Z$/, "Z");
writeFileSync(join(outDir, `${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(result, null, 2)}\n`);
writeChart(parts, join(outDir, "latest.svg"));
const targets = parts.flatMap((p) => p.targets);
say(`\n${targets.filter((t) => t.met).length}/${targets.length} targets met; results in ${join(outDir, "latest.json")} and ${join(outDir, "latest.svg")}`);
