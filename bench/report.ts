/** What each benchmark part returns, and how the harness prints and stores it. */

export interface TargetCheck {
  name: string;
  /** The measured value and the target, in the same unit. */
  value: number;
  target: number;
  unit: string;
  /** "min": value must be at least target; "max": at most. */
  kind: "min" | "max";
  met: boolean;
  note?: string;
}

export interface BenchPart {
  /** e.g. "1. cryptographic limit" */
  title: string;
  /** Table rows; every row has the same keys, which become the columns. */
  rows: Record<string, string | number>[];
  targets: TargetCheck[];
  /** Anything a reader needs to interpret the numbers. */
  notes?: string[];
}

export function target(name: string, value: number, kind: "min" | "max", t: number, unit: string, note?: string): TargetCheck {
  const check: TargetCheck = { name, value, target: t, unit, kind, met: kind === "min" ? value >= t : value <= t };
  if (note !== undefined) check.note = note;
  return check;
}

/**
 * What a floor measured in the same run says about a missed target: out of reach on this machine
 * when the floor itself misses it (below a `min` target, above a `max` one), else the miss is the code's.
 */
export function floorVerdict(floor: number, target: number, kind: "min" | "max" = "min"): string {
  if (kind === "min") return floor < target ? "below the target: unreachable on this machine" : "above the target";
  return floor > target ? "above the target: unreachable on this machine" : "within the target";
}

/** Runs `fn` repeatedly for at least `ms` (after a warm-up) and returns operations per second. */
export function opsPerSecond(fn: () => void, o: { ms?: number; warmupMs?: number } = {}): number {
  const until = (ms: number) => {
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now - start < ms) {
      for (let i = 0; i < 16; i++) fn();
      n += 16;
      now = performance.now();
    }
    return n / ((now - start) / 1000);
  };
  until(o.warmupMs ?? 200);
  return until(o.ms ?? 1000);
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function formatTable(rows: readonly Record<string, string | number>[]): string {
  if (rows.length === 0) return "(no rows)";
  const cols = Object.keys(rows[0]!);
  const cell = (v: string | number | undefined) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 3 : 1)) : (v ?? ""));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(cols), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join("\n");
}
