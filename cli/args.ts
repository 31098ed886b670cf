/**
 * What every `podcert` subcommand shares: its exit codes and its argument parsing. Its own module
 * so that main.ts imports the subcommands and they import only this (no cycle through main.ts).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

export const EXIT = { ok: 0, usage: 64, dataErr: 65, tempFail: 75, config: 78, software: 70 } as const;

/** Bad command line: main.ts prints it with the usage text and exits 64. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export type Options = Record<string, string | boolean | undefined>;

export function parse(args: string[], options: ParseArgsConfig["options"]): { values: Options; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options: { config: { type: "string" }, help: { type: "boolean", short: "h" }, ...options }, allowPositionals: true, strict: true });
    return { values: values as Options, positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
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
