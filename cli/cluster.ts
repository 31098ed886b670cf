/** Starting the embedded API server from a cluster file and building function contexts on it. */
import { clusterFileProblems, parseClusterFile } from "../local-cluster/apiserver/cluster-file.js";
import { KUBERNETES_VERSION_ENV, KUBERNETES_VERSIONS, kubernetesVersionFromEnv, parseKubernetesVersion, type KubernetesVersion } from "../local-cluster/kubernetes-versions.js";
import { UsageError } from "./args.js";
import type { KubeObject } from "../local-cluster/apiserver/store.js";
import { startApiServer, type EmbeddedApiServer } from "../local-cluster/apiserver/server.js";
import { startApiServerThread, type ApiServerThread } from "../local-cluster/apiserver/thread.js";
import type { CaPool } from "../shared/ca/pool.js";
import { fixedCaPool } from "../shared/ca/pool-source.js";
import type { StepKeys } from "../shared/events/attestation.js";
import { isKeyedStep, stepEntry, STEPS, type KeyedStep, type StepName } from "../shared/steps.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import type { ClusterApi, ServicesWatchApi } from "../shared/kube/cluster.js";
import { noCluster } from "../shared/kube/no-cluster.js";
import type { ServicesIndex } from "../shared/kube/services-index.js";
import { createEventRecorder, type EventRecorder } from "../shared/kube/event-recorder.js";
import { DEFAULT_LOOKUP_CACHE_SECONDS, withLookupCache } from "../shared/kube/lookup-cache.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import type { FunctionContext } from "../shared/runtime/function.js";
import { readText } from "../shared/runtime/load.js";
import type { Logger } from "../shared/runtime/log.js";

const warnOnStderr = (m: string) => process.stderr.write(`podcert: ${m}\n`);

/** The help line of `--kubernetes-version`, for every command that starts the embedded API server. */
export const KUBERNETES_VERSION_OPTION = `  --kubernetes-version <v> the control plane the embedded API server emulates:
                           ${KUBERNETES_VERSIONS.join(", ")} (README "Kubernetes versions")    [$${KUBERNETES_VERSION_ENV}, else 1.36]`;

/** `--kubernetes-version` as given, else PODCERT_KUBERNETES_VERSION, else the default; anything else is a usage error. */
export function kubernetesVersionOption(value: string | undefined): KubernetesVersion {
  if (value === undefined) return kubernetesVersionFromEnv();
  const v = parseKubernetesVersion(value);
  if (v === undefined) throw new UsageError(`--kubernetes-version must be one of ${KUBERNETES_VERSIONS.join(", ")}; got ${JSON.stringify(value)}`);
  return v;
}

/** The objects of a cluster file (Kubernetes List or multi-document YAML); `warn` hears what the API server would ignore. */
export function loadClusterFile(path: string, kubernetesVersion: KubernetesVersion = kubernetesVersionFromEnv(), warn: (m: string) => void = warnOnStderr): KubeObject[] {
  const objects = parseClusterFile(readText(path, "cluster file"));
  for (const problem of clusterFileProblems(objects, kubernetesVersion)) warn(`cluster file ${path}: ${problem}`);
  return objects;
}

export async function startClusterFromFile(path: string, kubernetesVersion: KubernetesVersion = kubernetesVersionFromEnv()): Promise<EmbeddedApiServer> {
  return startApiServer({ objects: loadClusterFile(path, kubernetesVersion), kubernetesVersion });
}

/**
 * The same, with the server on a thread of its own (local-cluster/apiserver/thread.ts), for a run
 * whose own thread is busy with the whole pipeline (`podcert issue`). Only from the bundle: its
 * thread's entry is dist/podcert-apiserver.mjs, next to dist/podcert.mjs.
 */
export async function startClusterThreadFromFile(path: string, kubernetesVersion: KubernetesVersion = kubernetesVersionFromEnv()): Promise<ApiServerThread> {
  return startApiServerThread({ objects: loadClusterFile(path, kubernetesVersion), kubernetesVersion });
}

/** A client of `server` authenticated as `user` (default: the cluster admin, when it authenticates at all). */
export function clusterApiFor(server: EmbeddedApiServer, user?: string): ClusterApi {
  return new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig(user) }));
}

export function stepContexts(o: {
  config: SignerConfig;
  /**
   * The API every step uses, or each step's own, as on a cluster where each function calls the API
   * server as its own ServiceAccount (then each also records its Kubernetes Events as itself).
   */
  cluster: ClusterApi | Readonly<Record<StepName, ClusterApi>>;
  /** Every step's but the dead-letter sink's, which has none. */
  keys: Record<KeyedStep, StepKeys>;
  caPool?: CaPool;
  log: Logger;
  now?: () => Date;
  /** Default: one recorder per API given (so shared by every step when there is one). Flush before the process ends. */
  events?: EventRecorder | false;
  /** Default: DEFAULT_LOOKUP_CACHE_SECONDS, as the functions; 0 reads every lookup live. */
  lookupCacheSeconds?: number;
  /**
   * Give the steps the registry says index Services one index per API, as the function server
   * does (kube/services-index.ts): called only for those steps' APIs (one call per distinct API),
   * so the caller closes every index it returned (its watches stay open until then), no other.
   * Default: none, so a one-shot run leaves nothing open; every Service is listed.
   */
  servicesIndexes?: (api: ServicesWatchApi) => ServicesIndex;
}): Record<StepName, FunctionContext> {
  const out = {} as Record<StepName, FunctionContext>;
  const given = o.cluster;
  const apiOf = (step: StepName): ClusterApi => (isClusterApi(given) ? given : given[step]);
  // One lookup cache, one Event recorder and (for the steps that index Services) one Services
  // index per distinct API, as one per process in a cluster.
  const perApi = new Map<ClusterApi, { cluster: ClusterApi; events: EventRecorder | undefined; index?: ServicesIndex }>();
  for (const step of STEPS) {
    // A step without Kubernetes access (the dead-letter sink) gets none here either.
    if (!stepEntry(step).usesKubernetes) {
      out[step] = { config: o.config, cluster: noCluster(step), now: o.now ?? (() => new Date()), log: o.log.child({ function: step }) };
      continue;
    }
    const api = apiOf(step);
    if (!perApi.has(api)) {
      perApi.set(api, {
        cluster: withLookupCache(api, { ttlMs: (o.lookupCacheSeconds ?? DEFAULT_LOOKUP_CACHE_SECONDS) * 1000 }),
        events: o.events === false ? undefined : (o.events ?? createEventRecorder(api, o.log)),
      });
    }
    const shared = perApi.get(api)!;
    const { cluster, events } = shared;
    const ctx: FunctionContext = {
      config: o.config,
      cluster,
      ...(isKeyedStep(step) ? { keys: o.keys[step] } : {}),
      now: o.now ?? (() => new Date()),
      log: o.log.child({ function: step }),
    };
    if (events) ctx.events = events;
    if (stepEntry(step).indexesServices && o.servicesIndexes !== undefined && isServicesWatchApi(api)) {
      ctx.servicesIndex = shared.index ??= o.servicesIndexes(api);
    }
    // In-process runs read the pool once: fixed for the run.
    if (stepEntry(step).holdsCaPool && o.caPool) ctx.caPool = fixedCaPool(o.caPool);
    out[step] = ctx;
  }
  return out;
}

function isServicesWatchApi(x: ClusterApi): x is ClusterApi & ServicesWatchApi {
  const w = x as Partial<ServicesWatchApi>;
  return typeof w.listServicesVersioned === "function" && typeof w.watchServices === "function";
}

function isClusterApi(x: ClusterApi | Readonly<Record<StepName, ClusterApi>>): x is ClusterApi {
  return typeof (x as Partial<ClusterApi>).readPcr === "function";
}
