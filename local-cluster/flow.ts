/**
 * The local event flow as one object: embedded API server, function processes, a broker routing
 * by the knative/ manifests, and an emulated ApiServerSource. Used by `podcert demo` and by the
 * benchmark's HTTP burst, so both measure the same thing.
 *
 * The API server enforces the RBAC of the manifests (every Role, ClusterRole and binding the
 * kustomization applies), and each function process and the source authenticate as the
 * ServiceAccount the manifests give them, so a call a function makes without a rule for it fails
 * here as on a cluster, and shows in `api.refusedRequests()`.
 *
 * Faults (faults.ts) are off unless asked for: the broker's delivery faults (a killMidRequest
 * SIGKILLs the subscriber's process, which processes.ts restarts; such kills are kept apart from
 * the exits that are bugs) and, where the API server offers them, its own.
 */
import { randomInt } from "node:crypto";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { startApiServer, type EmbeddedApiServer } from "./apiserver/server.js";
import type { KubernetesVersion } from "./kubernetes-versions.js";
import { caTrustDocument, parseCaPool, serializeCaPool, type CaPool, type CaPoolDocument } from "../shared/ca/pool.js";
import { stringify } from "yaml";
import { ConfigError } from "../shared/errors.js";
import { generateStepSecrets } from "../shared/events/step-keys.js";
import type { PodcertEvent } from "../shared/events/types.js";
import { EVENT_TYPES, isKeyedStep, KEYED_STEPS, serviceName, stepEntry, STEPS } from "../shared/steps.js";
import { loadKubeConfig } from "../shared/kube/client-node.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import { readText } from "../shared/runtime/load.js";
import { sourceAccessProblem, startApiServerSource, type EmulatedSource } from "./apiserver-source.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "./identities.js";
import { LocalBroker, parseBrokerDelivery, parseContainerConcurrency, type DeadLetter, type Delivery, type DeliverySpec, type LostDelivery, type SinkDelivery } from "./broker.js";
import { FaultCounter, seededRandom, type ApiFaultPlan, type DeliveryFaultPlan, type FaultKind } from "./faults.js";
import { BROKER_NAME, loadTriggers, type TriggerRoute } from "./router.js";
import { pingEvent, pingSources, startPingSource } from "./ping-source.js";
import { sinkBindings, sinkFor } from "./sink-binding.js";
import { bundlePath, killFunctionProcess, startFunctionProcess, stopFunctionProcess, type FunctionExit, type FunctionProcess } from "./processes.js";

/**
 * A `killMidRequest` fault spares a process that became ready less than this long ago: the
 * deliveries waiting for it arrive together when it starts, and killing it again then would keep
 * the function down for the whole run (a pod lost now and then is what the fault models).
 */
export const KILL_MIN_UPTIME_MS = 5_000;

export interface LocalFlowOptions {
  objects: readonly unknown[];
  config: SignerConfig;
  configPath?: string;
  /** The CAs the local sign function uses (cli/ca-create.ts makes a throwaway pool). */
  caPool: CaPoolDocument;
  knativeDir: string;
  /** The control plane the embedded API server emulates; default kubernetesVersionFromEnv(). */
  kubernetesVersion?: KubernetesVersion;
  distDir?: string;
  /** Functions on portBase, portBase+1, ... in registry order, then the broker; 0 = any free port. */
  portBase?: number;
  /** Where function logs and the dead-letter log go; no logs when absent. */
  logDir?: string;
  logLevel?: string;
  say?: (m: string) => void;
  /** How often the PingSources of knative/ tick locally (default 60 s; on a cluster, their schedule). */
  pingIntervalMs?: number;
  /** The n of the run's "[k/n]" step lines (default 6, `podcert demo`'s; more with --rotate). */
  totalSteps?: number;
  /**
   * Added to every function process's environment, e.g. PODCERT_RESYNC_GRACE_SECONDS=2 with a
   * short pingIntervalMs so resync rescues lost events within a test. The flow's own variables
   * (credentials, keys, CA files, sink) win.
   */
  env?: Record<string, string>;
  /**
   * Fault injection (faults.ts), off when absent: the API server's plan, the broker's plan, and
   * one seed for both (default: a random one, in LocalFlow.faultSeed, to repeat a run).
   */
  faults?: { api?: ApiFaultPlan; delivery?: DeliveryFaultPlan; seed?: number };
  /** A `killMidRequest` fault spares a process ready for less than this (default KILL_MIN_UPTIME_MS). */
  killMinUptimeMs?: number;
  /** Each delivery the broker ends (answered, or failed for good). */
  onDelivery?: (d: Delivery) => void;
}

export interface LocalFlow {
  api: EmbeddedApiServer;
  /** The version of PodCertificateRequests the emulated ApiServerSource watches (certificates.k8s.io/v1 on 1.37). */
  sourceApiVersion: string;
  /** The cluster administrator's (for the emulated kubelet and experiments). */
  kubeconfig: KubeConfig;
  /** The administrator's kubeconfig file; each function has its own ServiceAccount's. */
  kubeconfigPath: string;
  /** The CA pool as the run started with it (the file below may have changed since). */
  caPool: CaPool;
  /**
   * The CA pool file `sign` follows (PODCERT_CA_POOL; mode 0600, in the run's private state
   * folder, removed at stop). Replace it atomically (write a temporary file beside it, rename it
   * over) and sign's next request signs with it, as when kubelet swaps a mounted Secret.
   */
  caPoolPath: string;
  /** The CA trust document publish-trust reads at each run (PODCERT_CA_TRUST; certificates, no keys). */
  caTrustPath: string;
  /** Posts one tick of each PingSource to the broker now, as its schedule would (publish-trust runs). */
  ping(): void;
  processes: FunctionProcess[];
  broker: LocalBroker;
  brokerUrl: string;
  routes: TriggerRoute[];
  delivery: DeliverySpec;
  deadLetters: DeadLetter[];
  /**
   * What became of each dead letter's delivery to the dead-letter function over HTTP (its id, the
   * sink's answer): after its deadLetters record, and not awaited by broker.idle().
   */
  sinkDeliveries: { id: string; status: SinkDelivery["status"]; attempts: number; error?: string }[];
  /** Deliveries the broker dropped on purpose (a `drop` fault): lost, never dead-lettered. */
  lostDeliveries: LostDelivery[];
  /** The delivery faults injected in this run, by kind (the broker's counter; faultCounts() adds the API server's). */
  faults: FaultCounter;
  /** The seed of this run's fault draws. */
  faultSeed: number;
  /** Every fault injected so far, by kind: the broker's and, when it injects any, the API server's. */
  faultCounts(): Partial<Record<FaultKind, number>>;
  /**
   * Switches fault plans during the run: a side given (`api`, `delivery`) is replaced, undefined
   * turning it off; a side left out is kept. A bad plan throws ConfigError and changes nothing.
   */
  setFaults(plans: { api?: ApiFaultPlan; delivery?: DeliveryFaultPlan }): void;
  /** PCR uid → when (performance.now()) the source saw its terminal status. */
  finishedAt: Map<string, number>;
  /** Function processes that exited on their own (each a bug) and were restarted. */
  exits: FunctionExit[];
  /** Function processes the run killed itself (killMidRequest faults), each restarted; not in `exits`. */
  kills: FunctionExit[];
  stop(): Promise<void>;
}

/**
 * Records when (performance.now()) the source first saw a PCR's terminal status, by its uid: the
 * status write comes back as an update event. Later updates of a finished PCR keep the first time.
 */
export function noteFinished(finishedAt: Map<string, number>, event: PodcertEvent): void {
  const pcr = event.data as PodCertificateRequest;
  const uid = pcr.metadata.uid ?? "";
  if (event.type === EVENT_TYPES.apiServerUpdate && terminalCondition(pcr) && !finishedAt.has(uid)) finishedAt.set(uid, performance.now());
}

export async function startLocalFlow(o: LocalFlowOptions): Promise<LocalFlow> {
  const say = o.say ?? (() => {});
  const portBase = o.portBase ?? 0;
  const routes = loadTriggers(o.knativeDir);
  const delivery = parseBrokerDelivery(readText(join(o.knativeDir, "broker.yaml"), "Broker manifest"), BROKER_NAME);
  // The function Services, and the dead-letter sink's in its own file.
  const concurrency = new Map([
    ...parseContainerConcurrency(readText(join(o.knativeDir, "services.yaml"), "Service manifest"), join(o.knativeDir, "services.yaml")),
    ...parseContainerConcurrency(readText(join(o.knativeDir, "dead-letter.yaml"), "dead-letter manifest"), join(o.knativeDir, "dead-letter.yaml")),
  ]);
  // Secrets for this run only: the CA pool and step keys live in a private temp folder.
  const state = mkdtempSync(join(tmpdir(), "podcert-flow-"));
  const stops: (() => Promise<unknown> | void)[] = [() => rmSync(state, { recursive: true, force: true })];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s();
  };
  try {
    const ids = loadKnativeIdentities(o.knativeDir);
    const faultSeed = o.faults?.seed ?? randomInt(2 ** 31);
    const api = await startApiServer({
      ...(o.kubernetesVersion === undefined ? {} : { kubernetesVersion: o.kubernetesVersion }),
      objects: [...o.objects, ...manifestNamespaces(ids, o.objects)],
      authorization: { rbac: ids.documents, users: [...ids.services.values(), ids.source] },
      // An empty plan injects nothing; the seed is set now so setFaults later draws a repeatable sequence.
      faults: { plan: o.faults?.api ?? {}, seed: faultSeed },
    });
    stops.push(() => api.stop());
    const kubeconfigPath = join(state, "kubeconfig");
    writeFileSync(kubeconfigPath, api.kubeconfig(), { mode: 0o600 });
    const total = o.totalSteps ?? 6;
    say(`[1/${total}] embedded API server at ${api.url} (Kubernetes ${api.kubernetesVersion}; ${o.objects.length} objects; RBAC of ${o.knativeDir}/ enforced)`);
    // As Knative's controller would refuse to start the source (the namespaces it selects: all).
    const namespaces = api.store.list("namespaces").items.map((n) => n.metadata.name);
    const sourceProblem = sourceAccessProblem(api.accessReview, ids.source.name, namespaces);
    if (sourceProblem !== undefined) throw new ConfigError(`ApiServerSource: ${sourceProblem}`);

    const caText = serializeCaPool(o.caPool);
    const caPoolPath = join(state, "ca-pool.yaml");
    const caTrustPath = join(state, "ca-trust.yaml");
    writeFileSync(caPoolPath, caText, { mode: 0o600 });
    // What the trust publisher mounts: the certificates and states, no keys.
    writeFileSync(caTrustPath, stringify(caTrustDocument(o.caPool)), { mode: 0o600 });
    const secrets = generateStepSecrets();
    for (const step of KEYED_STEPS) {
      mkdirSync(join(state, "keys", step), { recursive: true, mode: 0o700 });
      for (const [file, content] of Object.entries(secrets[step])) writeFileSync(join(state, "keys", step, file), content, { mode: 0o600 });
    }

    // The broker listens before the functions start: the resync sender is given its ingress URL
    // (K_SINK, as its SinkBinding gives it on a cluster). Nothing is published to it before every
    // function runs; until then each subscriber's URL is a placeholder that refuses connections.
    const subscribers = new Map<string, string>(STEPS.map((fn) => [serviceName(fn), "http://127.0.0.1:0"]));
    if (o.logDir) mkdirSync(o.logDir, { recursive: true });
    const deadLetters: DeadLetter[] = [];
    const sinkDeliveries: LocalFlow["sinkDeliveries"] = [];
    const lostDeliveries: LostDelivery[] = [];
    const faults = new FaultCounter();
    const processes: FunctionProcess[] = [];
    const deadLetterLog = o.logDir ? join(o.logDir, "dead-letter.jsonl") : undefined;
    if (deadLetterLog) writeFileSync(deadLetterLog, "");
    const broker = new LocalBroker({
      routes,
      delivery,
      brokerName: BROKER_NAME,
      subscribers,
      concurrency,
      // Its own generator, seeded apart from the API server's, so the two draw unrelated sequences.
      faults: { ...(o.faults?.delivery ? { plan: o.faults.delivery } : {}), random: seededRandom(faultSeed ^ 0x5bd1e995), counter: faults },
      onLost: (d) => lostDeliveries.push(d),
      // As a node losing the pod mid-request: SIGKILL, no draining; processes.ts restarts it.
      onKill: (subscriber) => {
        const p = processes.find((x) => serviceName(x.name) === subscriber);
        return p !== undefined && killFunctionProcess(p, o.killMinUptimeMs ?? KILL_MIN_UPTIME_MS);
      },
      ...(o.onDelivery ? { onDelivery: o.onDelivery } : {}),
      onDeadLetter: (d) => {
        deadLetters.push(d);
        if (deadLetterLog) appendFileSync(deadLetterLog, `${JSON.stringify({ ...d, event: { id: d.event.id, type: d.event.type, subject: d.event.subject } })}\n`);
      },
      // The dead-letter function's own log says what it received; a sink that failed is said here.
      onSinkDelivery: (d) => {
        sinkDeliveries.push({ id: d.event.id, status: d.status, attempts: d.attempts, ...(d.error === undefined ? {} : { error: d.error }) });
        if (d.status !== "closed" && (typeof d.status !== "number" || d.status >= 300)) {
          say(`      dead letter ${d.event.id} not delivered to the dead-letter sink (${d.status}${d.error ? `: ${d.error.slice(0, 200)}` : ""})`);
        }
      },
    });
    const brokerUrl = await broker.listen(portBase === 0 ? 0 : portBase + STEPS.length);
    // Closed after the functions stop (stops run in reverse), so none posts to a closed broker.
    stops.push(() => broker.close());
    say(`[2/${total}] local broker at ${brokerUrl}: ${routes.length} Triggers from ${join(o.knativeDir, "triggers.yaml")}, retry ${delivery.retry} (${delivery.backoffPolicy}, ${delivery.backoffDelayMs} ms)`);
    const bindings = sinkBindings(ids.documents);

    say(`[3/${total}] starting the function bundles${o.logDir ? ` (logs in ${o.logDir}/)` : ""}`);
    const exits: FunctionExit[] = [];
    const kills: FunctionExit[] = [];
    // On stderr as it happens (say), and kept for the run's verdict.
    const onExit = (e: FunctionExit) => {
      const how = e.signal !== null ? `signal ${e.signal}` : `code ${e.code}`;
      if (e.restarted === undefined && e.killed) {
        kills.push(e);
        say(`      ${e.name} killed mid-request (fault injection); restarting it on the same port (restart ${e.restarts})`);
      } else if (e.restarted === undefined) {
        exits.push(e);
        say(`      ${e.name} exited unexpectedly (${how}); restarting it on the same port, as Knative would (restart ${e.restarts})`);
      } else if (e.restarted.ok) {
        say(`      ${e.name} restarted, ready in ${Math.round(e.restarted.startMs)} ms`);
      } else {
        say(`      ${e.name} could not be restarted: ${e.restarted.error}`);
      }
    };
    stops.push(async () => {
      for (const p of processes) await stopFunctionProcess(p);
    });
    for (const [i, fn] of STEPS.entries()) {
      const log = o.logDir ? join(o.logDir, `${fn}.log`) : undefined;
      if (log) writeFileSync(log, "");
      const entry = stepEntry(fn);
      // As in its pod: the function authenticates as its Knative Service's ServiceAccount. One
      // without Kubernetes access (the dead-letter sink: no token mounted) is given no kubeconfig,
      // and KUBECONFIG is emptied so it cannot pick up this process's own.
      const user = userOfService(ids, serviceName(fn));
      const env: Record<string, string> = { ...o.env, LOG_LEVEL: o.logLevel ?? "info" };
      if (entry.usesKubernetes) {
        const fnKubeconfig = join(state, `kubeconfig-${fn}`);
        writeFileSync(fnKubeconfig, api.kubeconfig(user.name), { mode: 0o600 });
        env.KUBECONFIG = fnKubeconfig;
      } else {
        env.KUBECONFIG = "";
      }
      if (isKeyedStep(fn)) env.PODCERT_KEYS_DIR = join(state, "keys", fn);
      if (o.configPath !== undefined) env.PODCERT_CONFIG = o.configPath;
      if (entry.holdsCaPool) env.PODCERT_CA_POOL = caPoolPath;
      if (entry.publishesTrust) {
        env.PODCERT_CA_TRUST = caTrustPath;
        // The downward API gives the pod its namespace: the ServiceAccount's ("system:serviceaccount:<ns>:<name>").
        env.POD_NAMESPACE = user.name.split(":")[2] ?? "podcert";
      }
      const sink = sinkFor(bindings, serviceName(fn), BROKER_NAME, brokerUrl);
      if (sink !== undefined) env.K_SINK = sink;
      const p = await startFunctionProcess({
        name: fn,
        bundle: bundlePath(o.distDir ?? "dist", fn),
        port: portBase === 0 ? 0 : portBase + i,
        env,
        onExit,
        ...(log ? { onLog: (_fn: string, line: string) => appendFileSync(log, `${line}\n`) } : {}),
      });
      processes.push(p);
      subscribers.set(serviceName(fn), p.url);
      say(`      ${fn.padEnd(11)} ${p.url}  ready in ${Math.round(p.startMs)} ms, ${entry.usesKubernetes ? `as ${user.name}` : "without Kubernetes access"}`);
    }


    // Terminal status writes come back as update events; they tell when each PCR finished.
    const finishedAt = new Map<string, number>();
    const kubeconfig = loadKubeConfig({ kubeconfigText: api.kubeconfig() });
    const source: EmulatedSource = await startApiServerSource(
      loadKubeConfig({ kubeconfigText: api.kubeconfig(ids.source.name) }),
      (event: PodcertEvent) => {
        noteFinished(finishedAt, event);
        broker.publish(event);
      },
      { onError: (e) => say(`      ApiServerSource: watch interrupted (${(e as Error).message}); reconnecting`) },
    );
    stops.push(() => source.stop());

    const pings = pingSources(ids.documents).filter((p) => p.broker === BROKER_NAME);
    for (const p of pings) stops.push(startPingSource(p, { intervalMs: o.pingIntervalMs ?? 60_000, publish: (e) => broker.publish(e) }));
    const ping = () => {
      for (const p of pings) broker.publish(pingEvent(p));
    };
    const faultCounts = () => {
      const merged: Partial<Record<FaultKind, number>> = api.faultCounts().snapshot();
      for (const [kind, n] of Object.entries(faults.snapshot()) as [FaultKind, number][]) merged[kind] = (merged[kind] ?? 0) + n;
      return merged;
    };
    const setFaults = (plans: { api?: ApiFaultPlan; delivery?: DeliveryFaultPlan }) => {
      const before = broker.faultPlan;
      if ("delivery" in plans) broker.setFaults(plans.delivery);
      try {
        if ("api" in plans) api.setFaults(plans.api);
      } catch (e) {
        // A bad API plan changes nothing: the delivery plan goes back to what it was.
        broker.setFaults(before);
        throw e;
      }
    };
    return {
      api, kubeconfig, kubeconfigPath, caPool: parseCaPool(caText), caPoolPath, caTrustPath, ping, processes, broker, brokerUrl, routes, delivery,
      deadLetters, sinkDeliveries, lostDeliveries, faults, faultSeed, faultCounts, setFaults, finishedAt, exits, kills, stop, sourceApiVersion: source.apiVersion,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
