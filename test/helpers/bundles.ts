/**
 * The function bundles (dist/<function>.mjs) served over HTTP as Knative runs them, against an
 * embedded API server, with throwaway step keys and a CA pool: what attack and regression tests
 * drive over the network. Everything lives in one temp folder that `stop` removes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterFile } from "../../shared/apiserver/cluster-file.js";
import { startApiServer, type EmbeddedApiServer } from "../../shared/apiserver/server.js";
import type { StepName } from "../../shared/events/types.js";
import { podcert } from "../integration/cli.js";

export interface ServedBundle {
  fn: StepName;
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its JSON log). */
  stderr(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
}

export interface BundleEnv {
  dir: string;
  api: EmbeddedApiServer;
  kubeconfigPath: string;
  keysDir: string;
  caPoolPath: string;
  /**
   * Starts `dist/<fn>.mjs` (or `bundle`, run as function `fn`) on a free port (sign gets the CA
   * pool) and waits until it listens.
   */
  serve(fn: StepName, env?: Record<string, string>, bundle?: string): Promise<ServedBundle>;
  /** Kills every process started here, stops the API server and removes the folder. */
  stop(): Promise<void>;
}

export async function startBundleEnv(o: { clusterFile?: string; objects?: readonly unknown[] } = {}): Promise<BundleEnv> {
  const dir = mkdtempSync(join(tmpdir(), "podcert-bundles-"));
  const objects = o.objects ?? parseClusterFile(readFileSync(o.clusterFile ?? "test/fixtures/clusters/issued.yaml", "utf8"));
  const api = await startApiServer({ objects });
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, api.kubeconfig(), { mode: 0o600 });
  const keysDir = join(dir, "keys");
  const caPoolPath = join(dir, "ca.yaml");
  for (const args of [["keys", "init", "--out", keysDir], ["ca", "init", "--out", caPoolPath]]) {
    const r = await podcert(args);
    if (r.code !== 0) throw new Error(`podcert ${args.join(" ")} failed: ${r.stderr}`);
  }
  const children: ChildProcess[] = [];

  const serve = async (fn: StepName, env: Record<string, string> = {}, bundle = `dist/${fn}.mjs`): Promise<ServedBundle> => {
    const child = spawn(process.execPath, [bundle], {
      env: {
        ...process.env,
        PORT: "0",
        KUBECONFIG: kubeconfigPath,
        PODCERT_KEYS_DIR: join(keysDir, fn),
        ...(fn === "sign" ? { PODCERT_CA_POOL: caPoolPath } : {}),
        ...env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      child.stderr!.on("data", (d: Buffer) => {
        stderr += d.toString();
        const m = /"msg":"listening".*"port":(\d+)/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      void exited.then((code) => reject(new Error(`${fn} exited ${code}: ${stderr}`)));
    });
    return { fn, url: `http://127.0.0.1:${port}`, child, stderr: () => stderr, exited };
  };

  return {
    dir,
    api,
    kubeconfigPath,
    keysDir,
    caPoolPath,
    serve,
    async stop() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      await api.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
