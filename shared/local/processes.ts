/**
 * Starts each function bundle as its own process on its own port, as Knative runs one container
 * per Service, and waits until each answers /healthz.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
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
  // Port 0: find a free port here, so readiness does not depend on the function's log level.
  const port = o.port === 0 ? await freePort() : o.port;
  const started = performance.now();
  const child = spawn(process.execPath, [o.bundle], {
    env: { ...process.env, ...o.env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let buffered = "";
  const onData = (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      o.onLog?.(o.name, line);
    }
  };
  child.stderr!.on("data", onData);
  child.stdout!.on("data", onData);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new ConfigError(`function ${o.name} exited with ${child.exitCode} before it was ready${o.onLog ? "; see its log" : ""}`);
    if (i > 400) throw new ConfigError(`function ${o.name} did not become ready in 10 s`);
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

/** A port free right now on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : 0;
      server.close(() => resolve(port));
    });
  });
}
