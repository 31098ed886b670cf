// `npm run bench:build [-- --runs N]`: how long `npm run build` takes, cold (--force) and with
// nothing changed (the stamp check), as wall time and CPU time. CPU includes esbuild's own service
// process (read from /proc on Linux), since that is where most of the work happens: on a shared
// machine wall time mostly measures the other load, CPU time what the build costs.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

process.chdir(fileURLToPath(new URL("..", import.meta.url)));
const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Math.max(1, Number(values.runs));
const { buildAll } = await import("../esbuild.config.mjs");

const esbuildCpuMs = () => {
  try {
    const pids = execFileSync("pgrep", ["-P", String(process.pid), "-x", "esbuild"], { encoding: "utf8" }).trim().split("\n");
    // utime + stime, in clock ticks (100 per second on Linux).
    return pids.reduce((sum, pid) => sum + readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ").slice(11, 13).reduce((a, b) => a + Number(b), 0) * 10, 0);
  } catch {
    return Number.NaN;
  }
};
const measure = async (force) => {
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  const es0 = esbuildCpuMs();
  await buildAll({ force });
  const cpu = process.cpuUsage(cpu0);
  const es = esbuildCpuMs() - (Number.isNaN(es0) ? 0 : es0);
  return { wallMs: performance.now() - wall0, nodeCpuMs: (cpu.user + cpu.system) / 1000, esbuildCpuMs: es };
};

const rows = [];
// Interleaved, so drift in the machine's load hits both kinds alike.
for (let i = 0; i < runs; i++) {
  rows.push({ kind: "full build (--force)", ...(await measure(true)) });
  rows.push({ kind: "nothing changed", ...(await measure(false)) });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => (Number.isNaN(ms) ? "n/a" : `${(ms / 1000).toFixed(2)} s`);
process.stdout.write(`\nbuild time, median of ${runs} (load average ${(await import("node:os")).loadavg()[0].toFixed(1)} on ${(await import("node:os")).availableParallelism()} CPUs)\n`);
for (const kind of ["full build (--force)", "nothing changed"]) {
  const r = rows.filter((x) => x.kind === kind);
  const w = median(r.map((x) => x.wallMs));
  const n = median(r.map((x) => x.nodeCpuMs));
  const e = median(r.map((x) => x.esbuildCpuMs));
  process.stdout.write(`  ${kind.padEnd(22)} wall ${fmt(w).padStart(8)}   CPU: node ${fmt(n).padStart(8)}, esbuild ${fmt(e).padStart(8)}\n`);
}
process.exit(0);
