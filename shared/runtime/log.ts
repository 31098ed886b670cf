/**
 * Structured JSON logs, one line per record. Hand-written rather than pino: a function's cold start
 * pays for every module it loads, and podcert needs only levels and fields. Callers pass fields,
 * never key material; `redactKeys` is a last line of defence against a PEM private key slipping in.
 */
import { MAX_LOG_LINE_BYTES, MAX_LOG_LIST_ITEMS, MAX_LOG_STRING_LENGTH } from "../limits.js";

/** The levels, least severe first: what LOG_LEVEL may be. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;

export function redactKeys(line: string): string {
  return line.replace(PRIVATE_KEY_PEM, "[REDACTED PRIVATE KEY]");
}

export function createLogger(o: {
  level?: LogLevel;
  write?: (line: string) => void;
  fields?: LogFields;
} = {}): Logger {
  const min = ORDER[o.level ?? "info"];
  const write = o.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const base = o.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[level] < min) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg };
    for (const [k, v] of Object.entries({ ...base, ...fields })) {
      // Callers' fields never replace time, level or msg.
      if (!(k in record)) record[k] = v;
    }
    write(redactKeys(boundedLine(record)));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger({ ...o, fields: { ...base, ...fields } }),
  };
}

/**
 * The record as one JSON line of at most MAX_LOG_LINE_BYTES: fields can quote untrusted input
 * (names, annotation values, error messages), so long strings and lists are cut, and a line still
 * too long keeps only its time, level and message.
 */
function boundedLine(record: Record<string, unknown>): string {
  const line = JSON.stringify(record, boundingReplacer);
  if (Buffer.byteLength(line) <= MAX_LOG_LINE_BYTES) return line;
  const { time, level, msg } = record;
  return JSON.stringify({ time, level, msg: bound(String(msg)), truncated: `fields dropped: the line had ${Buffer.byteLength(line)} bytes, more than ${MAX_LOG_LINE_BYTES}` });
}

function bound(s: string): string {
  return s.length <= MAX_LOG_STRING_LENGTH ? s : `${s.slice(0, MAX_LOG_STRING_LENGTH)}…(${s.length - MAX_LOG_STRING_LENGTH} more characters)`;
}

function boundingReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    // The replacer is applied to this object too, which bounds the message.
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if ("code" in value) out.code = (value as { code: unknown }).code;
    return out;
  }
  if (typeof value === "string") return bound(value);
  if (Array.isArray(value) && value.length > MAX_LOG_LIST_ITEMS) {
    return [...value.slice(0, MAX_LOG_LIST_ITEMS), `…(${value.length - MAX_LOG_LIST_ITEMS} more)`];
  }
  return value;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
