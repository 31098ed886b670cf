/**
 * What every `podcert` subcommand shares: its exit codes and its argument parsing. Its own module
 * so that main.ts imports the subcommands and they import only this (no cycle through main.ts).
 */
import { parseArgs } from "node:util";

/** sysexits(3): 64 usage, 65 data, 70 software, 75 temporary failure, 78 configuration. */
export const EXIT = { ok: 0, usage: 64, dataErr: 65, tempFail: 75, config: 78, software: 70 } as const;

/** Bad command line: main.ts prints it with the command's usage and exits 64. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export type Options = Record<string, string | boolean | undefined>;
export type OptionSpecs = Record<string, { type: "string" | "boolean" }>;

/**
 * Parses `args` against `options` (plus --help), in podcert's words rather than node's parser's:
 * an unknown option names the nearest known one, a missing value names the option.
 * `positionals`: how many bare arguments the command takes (default none).
 */
export function parse(args: string[], options: OptionSpecs, o: { positionals?: number } = {}): { values: Options; positionals: string[] } {
  const specs: OptionSpecs = { help: { type: "boolean" }, ...options };
  // Not strict: the checks below replace node's messages, which talk about its own API.
  const { values, positionals, tokens } = parseArgs({ args, options: { ...specs, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    const spec = specs[t.name];
    if (spec === undefined) throw new UsageError(`unknown option ${t.rawName}${suggestion(t.name, Object.keys(specs))}`);
    if (spec.type === "string" && (t.value === undefined || (!t.inlineValue && t.value.startsWith("--")))) throw new UsageError(`${t.rawName} needs a value`);
    if (spec.type === "boolean" && t.inlineValue) throw new UsageError(`${t.rawName} takes no value`);
  }
  const allowed = o.positionals ?? 0;
  if (positionals.length > allowed) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[allowed])}`);
  return { values: values as Options, positionals };
}

/** ", did you mean --x?" when a known option is close to `name` (a prefix of it, or a typo away). */
function suggestion(name: string, known: readonly string[]): string {
  let best: { option: string; distance: number } | undefined;
  for (const option of known) {
    const distance = option.startsWith(name) || name.startsWith(option) ? 1 : editDistance(name, option);
    if (best === undefined || distance < best.distance) best = { option, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? `; did you mean --${best.option}?` : "";
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

export function required(values: Options, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

export function optional(values: Options, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** An integer option within [min, max], or `fallback` when not given. */
export function integer(values: Options, name: string, o: { min: number; max: number; fallback: number }): number {
  const text = optional(values, name);
  if (text === undefined) return o.fallback;
  const n = /^-?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < o.min || n > o.max) throw new UsageError(`--${name} must be an integer from ${o.min} to ${o.max} (got ${JSON.stringify(text)})`);
  return n;
}
