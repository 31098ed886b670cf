/**
 * The process entry of one function bundle: read the environment once, connect to Kubernetes,
 * serve on $PORT, drain on SIGTERM. Everything a misconfiguration breaks fails here, at start,
 * with the variable or file named.
 */
import { isPodcertError } from "../errors.js";
import { KubeClusterApi, loadKubeConfig } from "../kube/client-node.js";
import { envBool, envInt, envOptional, envString } from "./env.js";
import type { FunctionContext, FunctionDefinition } from "./function.js";
import { serveFunction } from "./http.js";
import { loadCaPoolFile, loadSignerConfig, loadStepKeysDir } from "./load.js";
import { createLogger, type LogLevel } from "./log.js";
import { createMetrics } from "./metrics.js";

export async function runFunction(def: FunctionDefinition): Promise<void> {
  const log = createLogger({ level: (envOptional("LOG_LEVEL") ?? "info") as LogLevel, fields: { function: def.step } });
  try {
    const port = envInt("PORT", 8080, { min: 0, max: 65535 });
    const config = loadSignerConfig(envOptional("PODCERT_CONFIG"));
    const keys = loadStepKeysDir(def.step, envString("PODCERT_KEYS_DIR", "/var/run/podcert/keys"));
    const metrics = createMetrics(def.step);
    const ctx: FunctionContext = {
      config,
      cluster: new KubeClusterApi(loadKubeConfig(), metrics.apiCall),
      metrics,
      keys,
      now: () => new Date(),
      log,
      recordEvents: envBool("PODCERT_RECORD_EVENTS", true),
    };
    // Only sign is ever given a CA pool; the other functions never open one.
    if (def.step === "sign") ctx.caPool = loadCaPoolFile(envString("PODCERT_CA_POOL", "/var/run/podcert/ca/ca-pool.yaml"));

    const running = await serveFunction(def, ctx, {
      port,
      routes: { "/metrics": () => metrics.render() },
      // Event types come from the network: only known ones become label values.
      onHandled: (h) => {
        const type = h.event === undefined ? "invalid" : def.consumes.includes(h.event.type) ? h.event.type : "other";
        metrics.eventHandled({ fn: def.step, type, status: h.status, seconds: h.seconds });
      },
    });
    log.info("listening", { port: running.port, signers: [...config.signers.keys()] });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info("draining", { signal });
      void running.drain().then(() => process.exit(0));
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  } catch (e) {
    log.error("cannot start", { error: isPodcertError(e) ? e.message : String(e) });
    process.exit(78);
  }
}
