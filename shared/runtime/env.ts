/** Environment variables, read once at start through typed helpers that name the variable on error. */
import { ConfigError } from "../errors.js";

export function envString(name: string, fallback?: string): string {
  const v = process.env[name];
  if (v !== undefined && v !== "") return v;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`environment variable ${name} is required`);
}

export function envOptional(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** One of `allowed` (e.g. LOG_LEVEL); anything else is refused with the allowed values named. */
export function envChoice<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  if ((allowed as readonly string[]).includes(v)) return v as T;
  throw new ConfigError(`environment variable ${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v.slice(0, 40))}`);
}

export function envInt(name: string, fallback: number, o: { min: number; max: number }): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < o.min || n > o.max) {
    throw new ConfigError(`environment variable ${name} must be an integer from ${o.min} to ${o.max}, got ${JSON.stringify(v.slice(0, 40))}`);
  }
  return n;
}

export function envBool(name: string, fallback: boolean): boolean {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new ConfigError(`environment variable ${name} must be true or false`);
}
