/**
 * Starts each function bundle as its own process on its own port, as Knative runs one container
 * per Service, and waits until each answers /healthz. A process that exits while nobody asked it
 * to is restarted on the same port, as Kubernetes restarts a container that dies, and reported:
 * a function that exits on its own has hit a bug.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.js";

/** A function process that exited without being asked to. */
export interface FunctionExit {
  name: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The process that exited. */
  pid: number | undefined;
  /** killFunctionProcess killed it (a fault the run injected), rather than a crash of its own. */
  killed: boolean;
  /** Restarts of this function so far, this one included. */
  restarts: number;
  /** How the restart went: `undefined` while it is under way. */
  restarted?: { ok: true; startMs: number } | { ok: false; error: string };
}

export interface FunctionProcess {
  name: string;
  url: string;
  /** The process serving now (a restart replaces it). */
  child: ChildProcess;
  /** Milliseconds from spawn to the first successful /healthz. */
  startMs: number;
  /** Unexpected exits so far, each with how its restart went. */
  exits: FunctionExit[];
  /** Set by stopFunctionProcess: exits from then on are expected. */
  stopping: boolean;
  /** When (performance.now()) the process serving now answered its first /healthz; undefined while a replacement starts. */
  readyAt: number | undefined;
  /** The pid killFunctionProcess killed: its exit is a replacement, not a crash. */
  killedPid?: number;
}

/**
 * Restarts wait a little longer each time (Kubernetes' CrashLoopBackOff starts at 10 s; locally
 * the broker retries for about 30 s, so the first restart is immediate and the wait stays short).
 */
function restartDelayMs(restarts: number): number {
  return restarts <= 1 ? 0 : Math.min(5_000, 250 * 2 ** (restarts - 2));
}

export async function startFunctionProcess(o: {
  name: string;
  bundle: string;
  port: number;
  env: Record<string, string>;
  onLog?: (fn: string, line: string) => void;
  /** Called when the process exits unexpectedly, and again once its restart succeeded or failed. */
  onExit?: (e: FunctionExit) => void;
}): Promise<FunctionProcess> {
  if (!existsSync(o.bundle)) throw new ConfigError(`${o.bundle} does not exist; run npm run build`);
  // Port 0: find a free port here, so readiness does not depend on the function's log level.
  const port = o.port === 0 ? await freePort() : o.port;
  const url = `http://127.0.0.1:${port}`;
  const spawnChild = () => {
    // Loopback only: the local run's functions are for this machine (the container default is
    // 0.0.0.0, which would offer them to the network).
    const child = spawn(process.execPath, [o.bundle], {
      env: { ...process.env, ...o.env, PORT: String(port), HOST: "127.0.0.1" },
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
    return child;
  };
  const started = performance.now();
  const first = spawnChild();
  await waitReady(o.name, url, first, o.onLog !== undefined);
  const p: FunctionProcess = { name: o.name, url, child: first, startMs: performance.now() - started, exits: [], stopping: false, readyAt: performance.now() };

  const supervise = (child: ChildProcess) => {
    child.once("exit", (code, signal) => {
      if (p.stopping) return;
      const killed = child.pid !== undefined && child.pid === p.killedPid;
      const exit: FunctionExit = { name: o.name, code, signal, pid: child.pid, killed, restarts: p.exits.length + 1 };
      p.exits.push(exit);
      o.onExit?.(exit);
      // A killed pod is replaced at once (Knative starts another); only crashes back off, as
      // CrashLoopBackOff does, counting crashes alone.
      const crashes = p.exits.filter((e) => !e.killed).length;
      void (async () => {
        await new Promise((r) => setTimeout(r, killed ? 0 : restartDelayMs(crashes)));
        if (p.stopping) return;
        const t0 = performance.now();
        const next = spawnChild();
        p.child = next;
        // Not ready until /healthz says so: Knative routes nothing to such a pod, so no fault kills it.
        p.readyAt = undefined;
        supervise(next);
        try {
          await waitReady(o.name, url, next, o.onLog !== undefined);
          p.readyAt = performance.now();
          exit.restarted = { ok: true, startMs: performance.now() - t0 };
        } catch (e) {
          exit.restarted = { ok: false, error: (e as Error).message };
        }
        if (!p.stopping) o.onExit?.(exit);
      })();
    });
  };
  supervise(first);
  return p;
}

async function waitReady(name: string, url: string, child: ChildProcess, logged: boolean): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new ConfigError(`function ${name} exited with ${child.exitCode ?? child.signalCode} before it was ready${logged ? "; see its log" : ""}`);
    }
    if (i > 400) throw new ConfigError(`function ${name} did not become ready in 10 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function bundlePath(distDir: string, fn: string): string {
  return join(distDir, `${fn}.mjs`);
}

/**
 * SIGKILL, as a node losing the pod: no draining. The process is replaced at once on the same
 * port. Returns false (and kills nothing) when the process is stopping, already gone, or served
 * for less than `minUptimeMs` since it became ready: a pod killed again while it starts would
 * measure the harness, not podcert.
 */
export function killFunctionProcess(p: FunctionProcess, minUptimeMs = 0): boolean {
  const child = p.child;
  if (p.stopping || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
  if (p.readyAt === undefined || performance.now() - p.readyAt < minUptimeMs) return false;
  p.killedPid = child.pid;
  child.kill("SIGKILL");
  return true;
}

/** SIGTERM, then wait for exit (the functions drain in-flight requests first); no restart. */
export async function stopFunctionProcess(p: FunctionProcess, timeoutMs = 5_000): Promise<number | null> {
  p.stopping = true;
  const child = p.child;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
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
