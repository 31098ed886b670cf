/**
 * Starts each function bundle as its own process on its own port, as Knative runs one container
 * per Service, and waits until each answers /healthz.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.js";

export interface FunctionProcess {
  name: string;
  url: string;
  child: ChildProcess;
  /** Milliseconds from spawn to the first successful /healthz. */
  startMs: number;
}

export async function startFunctionProcess(o: {
  name: string;
  bundle: string;
  port: number;
  env: Record<string, string>;
  onLog?: (fn: string, line: string) => void;
}): Promise<FunctionProcess> {
  if (!existsSync(o.bundle)) throw new ConfigError(`${o.bundle} does not exist; run npm run build`);
  const started = performance.now();
  const child = spawn(process.execPath, [o.bundle], {
    env: { ...process.env, ...o.env, PORT: String(o.port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let buffered = "";
  let port: number | undefined = o.port === 0 ? undefined : o.port;
  const portKnown = new Promise<number>((resolve, reject) => {
    if (port !== undefined) resolve(port);
    const onData = (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        o.onLog?.(o.name, line);
        if (port === undefined) {
          const listening = listeningPort(line);
          if (listening !== undefined) resolve((port = listening));
        }
      }
    };
    child.stderr!.on("data", onData);
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new ConfigError(`function ${o.name} exited with ${code} before it was ready`)));
  });
  const p = await portKnown;
  const url = `http://127.0.0.1:${p}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 200 || child.exitCode !== null) throw new ConfigError(`function ${o.name} did not become ready`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { name: o.name, url, child, startMs: performance.now() - started };
}

export function bundlePath(distDir: string, fn: string): string {
  return join(distDir, `${fn}.mjs`);
}

/** SIGTERM, then wait for exit (the functions drain in-flight requests first). */
export async function stopFunctionProcess(p: FunctionProcess, timeoutMs = 5_000): Promise<number | null> {
  if (p.child.exitCode !== null) return p.child.exitCode;
  const exited = new Promise<number | null>((r) => p.child.once("exit", (code) => r(code)));
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), timeoutMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** The port in a function's "listening" log line, if this is that line. */
export function listeningPort(line: string): number | undefined {
  try {
    const record = JSON.parse(line) as { msg?: unknown; port?: unknown };
    return record.msg === "listening" && typeof record.port === "number" ? record.port : undefined;
  } catch {
    return undefined;
  }
}
