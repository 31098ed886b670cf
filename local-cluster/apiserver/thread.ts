/**
 * The embedded API server on a thread of its own. kube-apiserver runs elsewhere in a cluster, so a
 * one-process run (`podcert issue`, the benchmark) gives the server the machine's second core
 * instead of making the pipeline's thread do the server's work too (storage, validation, the
 * status rules' parse of every chain). The thread runs the same server code the tests run
 * in-process; only its kubeconfig (the cluster admin's) crosses over.
 *
 * Both ends live here: `startApiServerThread` in the caller, `serveApiServerThread` in the worker
 * (its entry, thread-entry.ts, is bundled as dist/podcert-apiserver.mjs).
 */
import { parentPort, Worker, workerData } from "node:worker_threads";
import { ConfigError } from "../../shared/errors.js";
import type { KubernetesVersion } from "../kubernetes-versions.js";
import { startApiServer } from "./server.js";

interface ThreadData {
  objects: readonly unknown[];
  kubernetesVersion?: KubernetesVersion;
}
interface ToThread {
  stop: true;
}
type FromThread = { kubeconfig: string } | { error: string; config: boolean };

export interface ApiServerThread {
  /** The cluster admin's kubeconfig (YAML) for the server. */
  kubeconfig: string;
  /** Stops the server and ends the thread; resolves at once when the thread has already ended. */
  stop(): Promise<void>;
}

/**
 * Starts the server with `objects` in a worker running `entry`: by default dist/podcert-apiserver.mjs
 * next to the bundle this module is built into (dist/podcert.mjs, dist/bench.mjs); code run from
 * source names the built entry. A seed object the server refuses rejects with the server's
 * ConfigError message, as in-process.
 */
export async function startApiServerThread(o: ThreadData & { entry?: URL }): Promise<ApiServerThread> {
  const { entry = new URL("./podcert-apiserver.mjs", import.meta.url), ...data } = o;
  const worker = new Worker(entry, { workerData: { podcertApiServer: data } });
  const exit = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const first = await new Promise<FromThread>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    void exit.then(() => reject(new Error(`the embedded API server's thread (${entry.pathname}) ended before it started`)));
  });
  if (!("kubeconfig" in first)) {
    await worker.terminate();
    throw first.config ? new ConfigError(first.error) : new Error(`embedded API server thread did not start: ${first.error}`);
  }
  // A thread that fails later (a bug in the server) must not end the caller silently: its requests
  // then fail as a down API server's do, and this says why.
  worker.on("error", (e) => process.stderr.write(`podcert: the embedded API server's thread failed: ${e.message}\n`));
  return {
    kubeconfig: first.kubeconfig,
    async stop() {
      // After the thread has ended the message goes nowhere and `exit` has already resolved.
      worker.postMessage({ stop: true } satisfies ToThread);
      await exit;
    },
  };
}

/** The worker's side: serves until the caller says stop. Does nothing outside such a worker. */
export async function serveApiServerThread(): Promise<void> {
  const data = (workerData as { podcertApiServer?: ThreadData } | null)?.podcertApiServer;
  const port = parentPort;
  if (port === null || data === undefined) return;
  try {
    const server = await startApiServer({ objects: data.objects, ...(data.kubernetesVersion ? { kubernetesVersion: data.kubernetesVersion } : {}) });
    port.on("message", (m: ToThread) => {
      if (m.stop) void server.stop().then(() => port.close());
    });
    port.postMessage({ kubeconfig: server.kubeconfig() } satisfies FromThread);
  } catch (e) {
    port.postMessage({ error: e instanceof Error ? e.message : String(e), config: e instanceof ConfigError } satisfies FromThread);
  }
}
