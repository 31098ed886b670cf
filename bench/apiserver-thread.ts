/**
 * The embedded API server on its own thread, for the benchmark: in a cluster kube-apiserver runs
 * elsewhere, so the pipeline's thread should pay for its own work (client calls, crypto, decisions)
 * and not for the server's (storage, validation of every status write). The same server code runs
 * here as in the tests; this file is both the thread's entry and the harness's handle on it.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { startApiServer } from "../local-cluster/apiserver/server.js";

interface ToThread {
  stop: true;
}
type FromThread = { kubeconfig: string } | { error: string } | { stopped: true };

export interface ApiServerThread {
  kubeconfig: string;
  stop(): Promise<void>;
}

/** Starts the server in a worker running `entry` (this module, bundled: dist/bench-apiserver.mjs). */
export async function startApiServerThread(entry: URL, objects: readonly unknown[]): Promise<ApiServerThread> {
  const worker = new Worker(entry, { workerData: { objects } });
  const first = await new Promise<FromThread>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  if (!("kubeconfig" in first)) {
    await worker.terminate();
    throw new Error(`embedded API server thread did not start: ${"error" in first ? first.error : "?"}`);
  }
  return {
    kubeconfig: first.kubeconfig,
    async stop() {
      const stopped = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
      worker.postMessage({ stop: true } satisfies ToThread);
      await stopped;
    },
  };
}

if (!isMainThread && parentPort !== null && (workerData as { objects?: unknown } | null)?.objects !== undefined) {
  const port = parentPort;
  try {
    const server = await startApiServer({ objects: (workerData as { objects: unknown[] }).objects });
    port.on("message", (m: ToThread) => {
      if (m.stop) void server.stop().then(() => port.close());
    });
    port.postMessage({ kubeconfig: server.kubeconfig() } satisfies FromThread);
  } catch (e) {
    port.postMessage({ error: String(e) } satisfies FromThread);
  }
}
