/**
 * `npm run chaos`: a burst of PCRs across both signers through the local event flow under each
 * fault mix (chaos/mixes.ts) and all combined, judged by issue 11's exit criteria
 * (chaos/verdict.ts). Prints a table, writes chaos/results/<time>.json and latest.json, and exits
 * 1 when any criterion failed (2 on a usage error).
 */
import "reflect-metadata";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatTable, percentile } from "../bench/report.js";
import { API_REQUEST_FAULTS, DELIVERY_FAULTS, WATCH_FAULTS } from "../local-cluster/faults.js";
import { apiFaultShare, MIXES } from "./mixes.js";
import { DEFAULT_TIMING, runMix, type MixResult } from "./run-mix.js";
import { buildScenario } from "./scenario.js";

const USAGE = `npm run chaos [-- --pcrs 1000] [--mix none,api-errors,...] [--seed 1] [--quick] [--out chaos/results]
  --pcrs   PCRs per mix (default 1000; at least 1000 for the README's figures)
  --mix    which mixes (default all): ${MIXES.map((m) => m.name).join(", ")}
  --seed   the seed of the cluster's composition and of the faults (default 1)
  --quick  200 PCRs, for a fast look
Exit status: 0 when every mix met every criterion, 1 when one did not, 2 on a usage error.
`;

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\n\n${USAGE}`);
  process.exit(2);
}

let values: { pcrs?: string; mix?: string; seed?: string; quick?: boolean; out?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: { pcrs: { type: "string" }, mix: { type: "string" }, seed: { type: "string" }, quick: { type: "boolean" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
  }));
} catch (e) {
  usage((e as Error).message.split(".")[0] ?? "invalid arguments");
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const pcrs = values.pcrs === undefined ? (values.quick ? 200 : 1000) : Number(values.pcrs);
if (!Number.isInteger(pcrs) || pcrs < 1 || pcrs > 20_000) usage(`--pcrs takes a whole number from 1 to 20000, not ${values.pcrs}`);
const seed = values.seed === undefined ? 1 : Number(values.seed);
if (!Number.isInteger(seed)) usage(`--seed takes a whole number, not ${values.seed}`);
const names = values.mix === undefined ? MIXES.map((m) => m.name) : values.mix.split(",").map((s) => s.trim());
const unknown = names.filter((n) => !MIXES.some((m) => m.name === n));
if (unknown.length > 0) usage(`no mix named ${unknown.join(", ")}`);
const mixes = MIXES.filter((m) => names.includes(m.name));
const outDir = values.out ?? join("chaos", "results");
const say = (m: string) => process.stderr.write(`${m}\n`);

const started = new Date();
const stamp = started.toISOString().replace(/[:.]/g, "-");
say(`podcert chaos run on ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.versions.node}: ${pcrs} PCRs per mix, seed ${seed}`);
say(`resync every ${DEFAULT_TIMING.resyncIntervalMs / 1000} s with a ${DEFAULT_TIMING.resyncGraceSeconds} s grace (on a cluster: 60 s and 30 s); late Services after ${DEFAULT_TIMING.lateServiceDelayMs / 1000} s`);
say("generating the cluster (real keys and proofs)…");
const scenario = buildScenario({ pcrs, seed });

const results: MixResult[] = [];
for (const mix of mixes) {
  say(`mix ${mix.name}: ${mix.what}`);
  const logDir = join(outDir, stamp, mix.name);
  const r = await runMix({ mix, scenario, seed, logDir, say });
  results.push(r);
  say(`   ${r.judgement.problems.length === 0 ? "passed" : `FAILED (${r.judgement.problems.length} problems)`} in ${Math.round(r.seconds)} s; logs in ${logDir}/`);
}

const count = (r: MixResult, type: string) => r.requests.filter((q) => q.terminal?.type === type).length;
const rows = results.map((r) => {
  const times = r.requests.filter((q) => q.terminalAt !== undefined).map((q) => (q.terminalAt! - q.createdAt) / 1000).sort((a, b) => a - b);
  const sum = (kinds: readonly (keyof MixResult["faults"])[]) => kinds.reduce((n, k) => n + (r.faults[k] ?? 0), 0);
  return {
    mix: r.mix.name,
    PCRs: r.requests.length,
    "API faults": sum([...API_REQUEST_FAULTS, ...WATCH_FAULTS]),
    "delivery faults": sum(DELIVERY_FAULTS),
    Issued: count(r, "Issued"),
    Denied: count(r, "Denied"),
    Failed: count(r, "Failed"),
    pending: r.requests.filter((q) => q.terminal === undefined).length,
    "p50 s": percentile(times, 50),
    "p99 s": percentile(times, 99),
    "dead letters": r.deadLetters.length,
    dropped: r.lost,
    "resync re-sent": r.resyncResent,
    rescued: r.resyncRescued,
    restarts: r.restarts,
    verdict: r.judgement.problems.length === 0 ? "pass" : `FAIL (${r.judgement.problems.length})`,
  };
});
process.stdout.write(`\n## chaos: ${pcrs} PCRs per mix (both signers, ${scenario.requests.filter((q) => q.expected.type === "Denied").length} to be denied, ${scenario.lateServices.length} of its Services created during the burst)\n${formatTable(rows)}\n`);
process.stdout.write("\nfaults injected, by kind:\n");
for (const r of results) {
  const kinds = Object.entries(r.faults).filter(([, n]) => (n ?? 0) > 0).map(([k, n]) => `${k} ${n}`);
  process.stdout.write(`   ${r.mix.name.padEnd(18)} ${kinds.length === 0 ? "none" : kinds.join(", ")}${r.mix.api ? ` (API fault rate ${Math.round(apiFaultShare(r.mix.api) * 100)}%)` : ""}\n`);
}
process.stdout.write("\ndead letters, by explanation:\n");
for (const r of results) {
  for (const [why, n] of r.judgement.deadLetterReasons) process.stdout.write(`   ${r.mix.name.padEnd(18)} ${String(n).padStart(4)}  ${why}\n`);
}
let failed = false;
for (const r of results) {
  if (r.judgement.problems.length === 0) continue;
  failed = true;
  process.stdout.write(`\n${r.mix.name}: ${r.judgement.problems.length} problems\n`);
  for (const p of r.judgement.problems.slice(0, 25)) process.stdout.write(`   - ${p}\n`);
  if (r.judgement.problems.length > 25) process.stdout.write(`   … and ${r.judgement.problems.length - 25} more (in the JSON results)\n`);
}

mkdirSync(outDir, { recursive: true });
const json = JSON.stringify(
  {
    started: started.toISOString(),
    node: process.versions.node,
    cpus: cpus().map((c) => c.model),
    pcrs,
    seed,
    timing: DEFAULT_TIMING,
    rows,
    mixes: results.map((r) => ({ mix: r.mix, faults: r.faults, deadLetterReasons: Object.fromEntries(r.judgement.deadLetterReasons), problems: r.judgement.problems })),
  },
  null,
  2,
);
writeFileSync(join(outDir, `${stamp}.json`), json);
writeFileSync(join(outDir, "latest.json"), json);
process.stdout.write(`\n${failed ? "FAILED: some criteria were not met" : "passed: every PCR ended as expected, in time, with one certificate carrying exactly its SANs; every dead letter explained"}\n`);
process.exit(failed ? 1 : 0);
