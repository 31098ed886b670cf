/**
 * The process entry of one function bundle: read the environment once, connect to Kubernetes,
 * serve on $PORT, drain on SIGTERM. Everything a misconfiguration breaks fails here, at start,
 * with the variable or file named.
 *
 * Errors nobody handled: the server (http.ts) answers every request-path error itself, so what
 * reaches the process is a bug elsewhere, and the two kinds are treated differently.
 * - An unhandled promise rejection is logged and the function keeps serving. A rejection leaves
 *   no half-run code behind (whatever awaited it just never continues), requests each await
 *   their own work, and exiting would turn a bug in background work (Events, metrics) into an
 *   outage of every request in flight.
 * - An uncaught exception stops the function with exit code 70: it interrupted synchronous
 *   code that may have left shared state (counters, caches) half-updated, which Node documents
 *   as unsafe to resume. It drains first, as on SIGTERM (requests in flight finish, bounded by
 *   the drain timeout); Knative then restarts the container.
 */
import { openCaPoolFile } from "../ca/pool-source.js";
import { ConfigError, isPodcertError } from "../errors.js";
import { isKeyedStep, isPodcertEventType, stepEntry } from "../steps.js";
import { describeCertificatesApis } from "../kube/api-versions.js";
import { KubeClusterApi, loadKubeConfig, missingCredentials } from "../kube/client-node.js";
import { noCluster } from "../kube/no-cluster.js";
import { createEventRecorder } from "../kube/event-recorder.js";
import { DEFAULT_LOOKUP_CACHE_SECONDS, withLookupCache } from "../kube/lookup-cache.js";
import { ServicesIndex } from "../kube/services-index.js";
import { DEFAULT_RESYNC_GRACE_SECONDS, DEFAULT_RESYNC_MAX_EVENTS } from "../policy/resync.js";
import { createDeliveryAuth, deliveryAuthConfigFromEnv, describeDeliveryAuth } from "./delivery-auth.js";
import { envBool, envChoice, envInt, envOptional, envString } from "./env.js";
import type { FunctionContext, FunctionDefinition, TrustContext } from "./function.js";
import { DEFAULT_MAX_CONNECTIONS, DRAIN_TIMEOUT_MS, serveFunction, type RunningServer } from "./http.js";
import { loadCaTrustFile, loadSignerConfig, loadStepKeysDir } from "./load.js";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "./log.js";
import { caPoolProblems, caTrustProblems, createReadiness } from "./readiness.js";
import type { Metrics } from "./metrics.js";

export async function runFunction(def: FunctionDefinition): Promise<void> {
  // The level is read first, for the logger that reports every start error; a wrong one is
  // reported (at the default level) and stops the start as any other configuration error.
  let level: LogLevel = "info";
  let levelError: unknown;
  try {
    level = envChoice("LOG_LEVEL", LOG_LEVELS, "info");
  } catch (e) {
    levelError = e;
  }
  const log = createLogger({ level, fields: { function: def.step } });
  let running: RunningServer | undefined;
  let flushEvents: ((timeoutMs: number) => Promise<boolean>) | undefined;
  let stopping = false;
  const stop = (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log.info("draining", { reason });
    // Whatever the drain waits on, the process exits by then (kept referenced, so that a drain
    // stuck on a promise nothing will settle cannot let the process end early with code 0).
    setTimeout(() => process.exit(code), DRAIN_TIMEOUT_MS + EVENT_FLUSH_TIMEOUT_MS + 1_000);
    // Answers first, then the Events they queued, for a bounded time: an unreachable API server
    // must not hold the pod past its termination grace period (Events are best effort).
    void (running?.drain() ?? Promise.resolve())
      .then(async () => {
        if (flushEvents !== undefined && !(await flushEvents(EVENT_FLUSH_TIMEOUT_MS))) {
          log.warn("stopping with Kubernetes Events not yet sent", { waitedMs: EVENT_FLUSH_TIMEOUT_MS });
        }
      })
      .catch((e: unknown) => log.error("drain failed", { error: e }))
      .finally(() => process.exit(code));
  };
  process.on("unhandledRejection", (reason) => {
    log.error("unhandled promise rejection (a bug); still serving", { error: describeError(reason) });
  });
  process.on("uncaughtException", (e) => {
    log.error("uncaught exception (a bug); stopping", { error: describeError(e) });
    // A second one while draining: stop at once.
    if (stopping) process.exit(EXIT_SOFTWARE);
    stop("uncaughtException", EXIT_SOFTWARE);
  });
  process.on("SIGTERM", () => stop("SIGTERM", 0));
  process.on("SIGINT", () => stop("SIGINT", 0));
  try {
    if (levelError !== undefined) throw levelError;
    const port = envInt("PORT", 8080, { min: 0, max: 65535 });
    // 0.0.0.0 in a container (the pod's address); the local run binds loopback.
    const host = envString("HOST", "0.0.0.0");
    const maxConnections = envInt("PODCERT_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, { min: 1, max: 10_000 });
    const config = loadSignerConfig(envOptional("PODCERT_CONFIG"));
    const entry = stepEntry(def.step);
    // The dead-letter sink has no step keys (it attests and verifies nothing): none are read.
    const keys = isKeyedStep(def.step) ? loadStepKeysDir(def.step, envString("PODCERT_KEYS_DIR", "/var/run/podcert/keys")) : undefined;
    const metrics = lazyMetrics(def.step, log);
    const lookupCacheSeconds = envInt("PODCERT_LOOKUP_CACHE_SECONDS", DEFAULT_LOOKUP_CACHE_SECONDS, { min: 0, max: 60 });
    // A function the registry keeps off the Kubernetes API (usesKubernetes: false) reads no
    // kubeconfig, has no client (every call refused: kube/no-cluster.ts) and records no Events:
    // its pod mounts no ServiceAccount token, and its readiness must not wait for one.
    const kubeconfig = entry.usesKubernetes ? loadKubeConfig() : undefined;
    // Which certificates.k8s.io version and why, once discovery (the readiness check's) answered.
    const api = kubeconfig === undefined ? undefined : new KubeClusterApi(kubeconfig, metrics.apiCall, {
      onCertificatesApis: (apis) => log.info("Kubernetes API versions", { certificates: describeCertificatesApis(apis) }),
    });
    const cluster = api === undefined ? noCluster(def.step) : withLookupCache(api, { ttlMs: lookupCacheSeconds * 1000 });
    const events = api !== undefined && envBool("PODCERT_RECORD_EVENTS", true)
      ? createEventRecorder(cluster, log, {
        ratePerSecond: envInt("PODCERT_EVENTS_PER_SECOND", 10, { min: 0, max: 10_000 }),
        burst: envInt("PODCERT_EVENTS_BURST", 100, { min: 2, max: 100_000 }),
      })
      : undefined;
    if (events !== undefined) flushEvents = (ms) => events.flush(ms);
    const ctx: FunctionContext = { config, cluster, metrics, now: () => new Date(), log, ...(keys ? { keys } : {}), ...(events ? { events } : {}) };
    // Created empty: it lists and watches a namespace only once a request there asks for every
    // Service selecting its pod. Its watches end with the process.
    if (entry.indexesServices && api !== undefined) ctx.servicesIndex = new ServicesIndex(api, { log });
    // Only sign is ever given a CA pool; the other functions never open one. It follows the file
    // (a Secret kubelet updates in place) without a restart: ca/pool-source.ts.
    if (entry.holdsCaPool) {
      const caPool = openCaPoolFile(envString("PODCERT_CA_POOL", "/var/run/podcert/ca/ca-pool.yaml"), { log, signers: config.signers.keys() });
      ctx.caPool = caPool;
      metrics.watchCaPool(caPool);
      metrics.signerLimits([...config.signers].map(([signer, p]) => ({ signer, maxLifetimeSeconds: p.maxLifetimeSeconds })));
    }
    // The trust publisher reads the CA certificates (never the keys), at start to fail early on a
    // broken file, then again at each run (the mounted Secret changes in place).
    if (entry.publishesTrust) {
      if (api === undefined) throw new ConfigError(`${def.step} publishes trust but the registry says it does not use Kubernetes (shared/steps.ts)`);
      const path = envString("PODCERT_CA_TRUST", "/var/run/podcert/trust/ca-trust.yaml");
      loadCaTrustFile(path);
      ctx.trust = {
        read: () => loadCaTrustFile(path),
        api,
        namespace: envString("POD_NAMESPACE", "podcert"),
        configMapName: envString("PODCERT_SPIFFE_BUNDLES_CONFIGMAP", "podcert-spiffe-bundles"),
        refreshHintSeconds: envInt("PODCERT_SPIFFE_REFRESH_HINT_SECONDS", 300, { min: 10, max: 86_400 }),
      };
    }

    // The resync sender posts its events itself, to the Broker that a SinkBinding names in K_SINK;
    // without one it could only fail at every tick, so it does not start.
    if (entry.postsToBroker) {
      if (api === undefined) throw new ConfigError(`${def.step} posts resync events but the registry says it does not use Kubernetes (shared/steps.ts)`);
      ctx.resync = {
        api,
        sink: envUrl("K_SINK"),
        graceSeconds: envInt("PODCERT_RESYNC_GRACE_SECONDS", DEFAULT_RESYNC_GRACE_SECONDS, { min: 0, max: 3600 }),
        maxEvents: envInt("PODCERT_RESYNC_MAX_EVENTS", DEFAULT_RESYNC_MAX_EVENTS, { min: 1, max: 100_000 }),
        pageSize: envInt("PODCERT_RESYNC_PAGE_SIZE", DEFAULT_RESYNC_PAGE_SIZE, { min: 1, max: 5000 }),
        concurrency: envInt("PODCERT_RESYNC_CONCURRENCY", DEFAULT_RESYNC_CONCURRENCY, { min: 1, max: 100 }),
        postTimeoutMs: DEFAULT_RESYNC_POST_TIMEOUT_MS,
      };
      const sinkTokenFile = envOptional("PODCERT_SINK_TOKEN_FILE");
      if (sinkTokenFile !== undefined) ctx.resync.sinkTokenFile = sinkTokenFile;
    }

    // Readiness (readiness.ts). Its first API check also opens the connection, so that a cold
    // start's first event finds it open.
    const signers = [...config.signers.keys()];
    const { caPool, trust } = ctx;
    const readiness = createReadiness({
      log,
      ...(kubeconfig !== undefined && api !== undefined ? { kubernetes: { credentials: missingCredentials(kubeconfig), checkApi: () => api.checkAccess() } } : {}),
      checks: () => [
        ...(caPool !== undefined ? caPoolProblems(caPool.current(), signers, ctx.now()) : []),
        ...(trust !== undefined ? trustProblems(trust, signers, ctx.now()) : []),
      ],
    });

    // Knative Eventing's OIDC delivery tokens, when configured (README "Delivery authentication").
    const deliveryAuthConfig = deliveryAuthConfigFromEnv();
    const deliveryAuth = deliveryAuthConfig === undefined ? undefined : createDeliveryAuth(deliveryAuthConfig);
    log.info("delivery authentication", describeDeliveryAuth(deliveryAuthConfig));

    running = await serveFunction(def, ctx, {
      port,
      host,
      maxConnections,
      ...(deliveryAuth !== undefined ? { deliveryAuth } : {}),
      readiness,
      routes: { "/metrics": () => metrics.render() },
      // Event types come from the network: only known ones become label values.
      onHandled: (h) => {
        // The dead-letter sink consumes every type: podcert's own are kept, the rest are "other".
        const known = h.event !== undefined && (def.consumes.includes(h.event.type) || (entry.deadLetterSink && isPodcertEventType(h.event.type)));
        const type = h.event === undefined ? "invalid" : known ? h.event.type : "other";
        metrics.eventHandled({ fn: def.step, type, status: h.status, seconds: h.seconds });
        setImmediate(() => void metrics.load());
      },
    });
    log.info("listening", { host, port: running.port, maxConnections, signers: [...config.signers.keys()] });
    if (def.onStart !== undefined) {
      const onStart = def.onStart.bind(def);
      void onStart(ctx).catch((e: unknown) => log.warn("start-up work failed; the next event retries it", { error: isPodcertError(e) ? e.message : String(e) }));
    }
    // prom-client is loaded once the process has answered (or idled), off the cold path.
    setTimeout(() => void metrics.load(), METRICS_LOAD_DELAY_MS).unref();
  } catch (e) {
    log.error("cannot start", { error: isPodcertError(e) ? e.message : String(e) });
    process.exit(78);
  }
}

/** The trust document as it is now; one that does not load is itself the problem. */
function trustProblems(trust: TrustContext, signers: readonly string[], now: Date): string[] {
  try {
    return caTrustProblems(trust.read(), signers, now);
  } catch (e) {
    return [`the CA trust document cannot be read: ${isPodcertError(e) ? e.message : String(e)}`];
  }
}

/** Resync bounds the environment does not usually set (README "Deploying on Knative"). */
const DEFAULT_RESYNC_PAGE_SIZE = 500;
const DEFAULT_RESYNC_CONCURRENCY = 8;
const DEFAULT_RESYNC_POST_TIMEOUT_MS = 10_000;

/** An http(s) URL from the environment, required. */
function envUrl(name: string): string {
  const value = envString(name);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} is not a URL: ${JSON.stringify(value.slice(0, 200))}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError(`${name} must be an http(s) URL, is ${url.protocol}`);
  return url.toString();
}

/** sysexits' EX_SOFTWARE: the function stopped because of a bug. */
const EXIT_SOFTWARE = 70;

/** An error for the log: its name, message and code (as the logger writes errors), and where. */
function describeError(e: unknown): unknown {
  if (!(e instanceof Error)) return String(e).slice(0, 1000);
  return { name: e.name, message: e.message, ...("code" in e ? { code: (e as { code: unknown }).code } : {}), stack: e.stack?.slice(0, 2000) };
}

/** How long a stopping function waits for its queued Kubernetes Events. */
const EVENT_FLUSH_TIMEOUT_MS = 5000;

/** When the metrics are loaded if no event comes first. */
const METRICS_LOAD_DELAY_MS = 1000;
/** Observations kept while prom-client loads (it takes milliseconds; this is only a safety bound). */
const MAX_PENDING_OBSERVATIONS = 10_000;

/**
 * The function's metrics, with prom-client loaded on demand: a cold start pays for every module
 * it evaluates before answering its first event, and prom-client's registry is not needed for
 * that. Observations made before it is loaded are queued and replayed in order (their values,
 * e.g. durations, are measured when they happen), so /metrics shows every event; rendering
 * /metrics loads it at once. `load` is idempotent.
 */
function lazyMetrics(step: string, log: Logger): Metrics & { load(): Promise<Metrics | undefined> } {
  let real: Metrics | undefined;
  let loading: Promise<Metrics | undefined> | undefined;
  let pending: ((m: Metrics) => void)[] | undefined = [];
  const observe = (f: (m: Metrics) => void) => {
    if (real) f(real);
    else if (pending && pending.length < MAX_PENDING_OBSERVATIONS) pending.push(f);
  };
  const load = () =>
    (loading ??= import("./metrics.js").then(
      ({ createMetrics }) => {
        const m = createMetrics(step);
        for (const f of pending ?? []) f(m);
        pending = undefined;
        real = m;
        return m;
      },
      (e: unknown) => {
        pending = undefined;
        log.error("metrics unavailable", { error: String(e) });
        return undefined;
      },
    ));
  return {
    eventHandled: (o) => observe((m) => m.eventHandled(o)),
    decision: (o) => observe((m) => m.decision(o)),
    deadLettered: (o) => observe((m) => m.deadLettered(o)),
    issued: (o) => observe((m) => m.issued(o)),
    apiCall: (c) => observe((m) => m.apiCall(c)),
    trustPublished: (o) => observe((m) => m.trustPublished(o)),
    signerLimits: (o) => observe((m) => m.signerLimits(o)),
    pendingListed: (o) => observe((m) => m.pendingListed(o)),
    watchCaPool: (f) => observe((m) => m.watchCaPool(f)),
    render: async () => {
      const m = await load();
      return m ? m.render() : { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "# metrics unavailable (see the log)\n" };
    },
    load,
  };
}
