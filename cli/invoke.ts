/** `podcert invoke`: one function, one event, against a cluster file; prints the reply event. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fixedCaPool } from "../shared/ca/pool-source.js";
import { RejectedEventError, TransientError } from "../shared/errors.js";
import { eventFromJson, eventToJson, MAX_EVENT_BYTES } from "../shared/events/codec.js";
import { EVENT_TYPES, isKeyedStep, isStepName, stepEntry, STEPS } from "../shared/steps.js";
import type { ClusterApi } from "../shared/kube/cluster.js";
import { noCluster } from "../shared/kube/no-cluster.js";
import { createEventRecorder } from "../shared/kube/event-recorder.js";
import { dispatch } from "../shared/runtime/http.js";
import { loadCaPoolFile, loadSignerConfig, loadStepKeysDir, readText } from "../shared/runtime/load.js";
import { createLogger } from "../shared/runtime/log.js";
import { clusterApiFor, kubernetesVersionOption, startClusterFromFile } from "./cluster.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { retryable } from "../local-cluster/router.js";
import { EXIT, optional, parse, required, UsageError } from "./args.js";

export async function runInvoke(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    config: { type: "string" },
    out: { type: "string" },
    event: { type: "string" },
    cluster: { type: "string" },
    keys: { type: "string" },
    "ca-pool": { type: "string" },
    "kubernetes-version": { type: "string" },
  }, { positionals: 1 });
  const kubernetesVersion = kubernetesVersionOption(optional(values, "kubernetes-version"));
  const step = positionals[0];
  if (step === undefined || !isStepName(step)) throw new UsageError(`podcert invoke: name a function: ${STEPS.join(", ")}`);
  const { holdsCaPool, usesKubernetes } = stepEntry(step);
  const eventPath = required(values, "event");
  const config = loadSignerConfig(optional(values, "config"));
  // The dead-letter sink has no step keys and no Kubernetes access: --keys and --cluster are not
  // needed (nor read) for it.
  const keys = isKeyedStep(step) ? loadStepKeysDir(step, join(required(values, "keys"), step)) : undefined;
  const caPoolPath = optional(values, "ca-pool");
  if (holdsCaPool && caPoolPath === undefined) throw new UsageError(`podcert invoke ${step} needs --ca-pool`);
  if (values.out !== undefined && step !== "sign") throw new UsageError("--out is an option of invoke sign only (where the issued chain goes)");

  const eventText = readText(eventPath, "event file");
  if (Buffer.byteLength(eventText) > MAX_EVENT_BYTES) throw new RejectedEventError(`event file larger than ${MAX_EVENT_BYTES} bytes`, 413);
  let json: unknown;
  try {
    json = JSON.parse(eventText);
  } catch {
    throw new RejectedEventError(`${eventPath} is not JSON (a structured-mode CloudEvent)`);
  }
  const event = eventFromJson(json, (attribute, reason) => process.stderr.write(`podcert: ${eventPath}: attribute ${attribute} dropped: ${reason}\n`));

  if (!usesKubernetes) {
    const log = createLogger({ fields: { function: step } });
    const result = await dispatch((await loadFunctions())[step], { config, cluster: noCluster(step), now: () => new Date(), log, ...(keys ? { keys } : {}) }, event);
    if (result.reply) process.stdout.write(`${JSON.stringify(eventToJson(result.reply), null, 2)}\n`);
    return outcome(result);
  }
  const server = await startClusterFromFile(required(values, "cluster"), kubernetesVersion);
  try {
    const cluster = clusterApiFor(server);
    const log = createLogger({ fields: { function: step } });
    const ctx = {
      config,
      cluster,
      events: createEventRecorder(cluster, log),
      ...(keys ? { keys } : {}),
      now: () => new Date(),
      log,
      ...(holdsCaPool && caPoolPath !== undefined ? { caPool: fixedCaPool(loadCaPoolFile(caPoolPath)) } : {}),
    };
    const result = await dispatch((await loadFunctions())[step], ctx, event);
    await ctx.events.flush();
    if (result.reply) process.stdout.write(`${JSON.stringify(eventToJson(result.reply), null, 2)}\n`);
    if (result.reply?.type === EVENT_TYPES.issued) await showChain(cluster, result.reply.data as { pcr?: { namespace?: string; name?: string } }, optional(values, "out"));
    return outcome(result);
  } finally {
    await server.stop();
  }
}

/** The exit for a dispatch result: ok, or the error that says retry (75) or rejected (65). */
function outcome(result: { status: number; error?: unknown }): number {
  if (result.status < 300) return EXIT.ok;
  const message = result.error instanceof Error ? result.error.message : `HTTP ${result.status}`;
  if (retryable(result.status)) {
    throw result.error instanceof TransientError ? result.error : new TransientError(message);
  }
  throw result.error instanceof RejectedEventError ? result.error : new RejectedEventError(message);
}

/** The chain sign issued, as the PCR's status holds it: to `out`, or on stderr (stdout is the reply). */
async function showChain(cluster: ClusterApi, data: { pcr?: { namespace?: string; name?: string } }, out: string | undefined): Promise<void> {
  const { namespace, name } = data.pcr ?? {};
  if (namespace === undefined || name === undefined) return;
  const chain = (await cluster.readPcr(namespace, name))?.status?.certificateChain;
  if (!chain) return;
  if (out === undefined) {
    process.stderr.write(`issued certificate chain of ${namespace}/${name} (--out <file> writes it to a file):\n${chain}`);
    return;
  }
  writeFileSync(out, chain, { mode: 0o644 });
  process.stderr.write(`wrote the issued certificate chain of ${namespace}/${name} to ${out}\n`);
}
