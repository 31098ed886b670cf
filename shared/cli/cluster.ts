/** Starting the embedded API server from a cluster file and building function contexts on it. */
import { parseClusterFile } from "../apiserver/cluster-file.js";
import type { KubeObject } from "../apiserver/store.js";
import { startApiServer, type EmbeddedApiServer } from "../apiserver/server.js";
import type { CaPool } from "../ca/pool.js";
import type { StepKeys } from "../events/attestation.js";
import { STEPS, type StepName } from "../events/types.js";
import { KubeClusterApi, loadKubeConfig } from "../kube/client-node.js";
import type { ClusterApi } from "../kube/cluster.js";
import type { SignerConfig } from "../profiles/config.js";
import type { FunctionContext } from "../runtime/function.js";
import { readText } from "../runtime/load.js";
import type { Logger } from "../runtime/log.js";

/** The objects of a cluster file (Kubernetes List or multi-document YAML). */
export function loadClusterFile(path: string): KubeObject[] {
  return parseClusterFile(readText(path, "cluster file"));
}

export async function startClusterFromFile(path: string): Promise<EmbeddedApiServer> {
  return startApiServer({ objects: loadClusterFile(path) });
}

export function clusterApiFor(server: EmbeddedApiServer): ClusterApi {
  return new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig() }));
}

export function stepContexts(o: {
  config: SignerConfig;
  cluster: ClusterApi;
  keys: Record<StepName, StepKeys>;
  caPool?: CaPool;
  log: Logger;
  now?: () => Date;
  recordEvents?: boolean;
}): Record<StepName, FunctionContext> {
  const out = {} as Record<StepName, FunctionContext>;
  for (const step of STEPS) {
    const ctx: FunctionContext = {
      config: o.config,
      cluster: o.cluster,
      keys: o.keys[step],
      now: o.now ?? (() => new Date()),
      log: o.log.child({ function: step }),
      recordEvents: o.recordEvents ?? true,
    };
    if (step === "sign" && o.caPool) ctx.caPool = o.caPool;
    out[step] = ctx;
  }
  return out;
}
