/**
 * Prometheus metrics (prom-client) for one function. Labels are bounded: function, event type,
 * HTTP status, signer, reason, API operation, and for sign's CAs their serial and state (a pool
 * holds a few CAs per signer); never a pod, namespace or PCR name.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { CA_STATES } from "../ca/pool.js";
import type { CaPoolFileState } from "../ca/pool-source.js";
import type { ApiCallObserver } from "../kube/client-node.js";

/** The values of podcert_ca_state's `state` label: the pool's states, and `unset` for the CAs of a signer whose CAs carry none. */
export const CA_STATE_LABELS = [...CA_STATES, "unset"] as const;

export interface Metrics {
  eventHandled(o: { fn: string; type: string; status: number; seconds: number }): void;
  decision(o: { fn: string; signer: string; outcome: string; reason?: string }): void;
  issued(o: { signer: string; signSeconds: number; secondsSinceCreation?: number }): void;
  apiCall: ApiCallObserver;
  /** The trust publisher confirmed a signer's bundles equal to its published CAs at `at`. */
  trustPublished(o: { signer: string; at: Date }): void;
  /** sign: each configured signer's longest certificate lifetime (what a CA must outlive, for the expiry alert). */
  signerLimits(o: { signer: string; maxLifetimeSeconds: number }[]): void;
  /** resync: the pending PCRs of the configured signers it listed at `at`, by signer and age bucket (every bucket, zeros too). */
  pendingListed(o: { at: Date; counts: { signer: string; age: string; count: number }[] }): void;
  /** dead-letter: one event the Broker could not deliver, by type (one of podcert's, or "other"). */
  deadLettered(o: { type: string }): void;
  /** sign: the CA gauges read this pool file's state at each scrape (so they follow reloads). */
  watchCaPool(file: { state(): CaPoolFileState }): void;
  render(): Promise<{ contentType: string; body: string }>;
}

/** The version esbuild's `define` writes into the bundles (esbuild.config.mjs); "unbundled" elsewhere. */
declare const PODCERT_VERSION: string | undefined;
const PODCERT_BUILD_VERSION = typeof PODCERT_VERSION === "string" ? PODCERT_VERSION : "unbundled";

export function createMetrics(fn: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ function: fn });
  const events = new Counter({ name: "podcert_events_received_total", help: "CloudEvents received, by type and HTTP status answered", labelNames: ["type", "status"], registers: [registry] });
  const eventSeconds = new Histogram({ name: "podcert_event_handling_seconds", help: "Time to handle one event", labelNames: ["type"], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  const outcomes = new Counter({ name: "podcert_decisions_total", help: "Decisions by signer and outcome (validated, derived, issued, denied, failed, waiting, skipped) and reason", labelNames: ["signer", "outcome", "reason"], registers: [registry] });
  const toIssue = new Histogram({ name: "podcert_time_to_issue_seconds", help: "Time from PCR creation to the Issued status write", labelNames: ["signer"], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300], registers: [registry] });
  const signing = new Histogram({ name: "podcert_signing_seconds", help: "Time to build and sign one certificate", labelNames: ["signer"], buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05], registers: [registry] });
  const api = new Histogram({ name: "podcert_kubernetes_api_seconds", help: "Kubernetes API call latency by operation and outcome", labelNames: ["operation", "outcome"], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const apiErrors = new Counter({ name: "podcert_kubernetes_api_errors_total", help: "Kubernetes API calls that failed (not 404/409)", labelNames: ["operation"], registers: [registry] });
  new Gauge({ name: "podcert_build_info", help: "1, labelled with the podcert version this function was built from", labelNames: ["version"], registers: [registry] }).set({ version: PODCERT_BUILD_VERSION }, 1);
  const maxLifetime = new Gauge({ name: "podcert_signer_max_lifetime_seconds", help: "The longest certificate lifetime the configuration grants for the signer (sign)", labelNames: ["signer"], registers: [registry] });
  const deadLetters = new Counter({
    name: "podcert_dead_letters_total",
    help: "Events the Broker dead-lettered (retries exhausted, or a 4xx answer), received by the dead-letter function, by event type (podcert's types; any other is \"other\")",
    labelNames: ["type"],
    registers: [registry],
  });
  const pending = new Gauge({
    name: "podcert_pending_requests",
    help: "PCRs of the signer without a terminal condition at resync's last listing, by age since creation (0-1m, 1-5m, 5-15m, 15m+; kube-controller-manager deletes them at 15m)",
    labelNames: ["signer", "age"],
    registers: [registry],
  });
  const pendingListedAt = new Gauge({ name: "podcert_pending_requests_listed_timestamp_seconds", help: "When resync last listed the pending PCRs (podcert_pending_requests is as of then), Unix seconds", registers: [registry] });
  const trustPublishedAt = new Gauge({ name: "podcert_trust_published_timestamp_seconds", help: "When the signer's ClusterTrustBundle and SPIFFE bundle were last confirmed equal to its published CAs (alert on time() minus this)", labelNames: ["signer"], registers: [registry] });
  // The CA gauges are computed when scraped, from the pool in use then (state() checks the file
  // first), so they are right after a reload and seconds-until-expiry is current. A StateSet for
  // the state (every state a series, 1 for the CA's own, as kube-state-metrics' phases): a state
  // change flips values instead of making and dropping series.
  let caFile: { state(): CaPoolFileState } | undefined;
  new Gauge({
    name: "podcert_ca_seconds_until_expiry",
    help: "Seconds from now until the CA certificate's notAfter (negative once expired), per signer and CA serial",
    labelNames: ["signer", "serial"],
    registers: [registry],
    collect() {
      this.reset();
      if (caFile === undefined) return;
      const now = Date.now();
      for (const [signer, cas] of caFile.state().pool.signers) {
        for (const ca of cas) this.set({ signer, serial: ca.serialHex }, (ca.notAfter.getTime() - now) / 1000);
      }
    },
  });
  new Gauge({
    name: "podcert_ca_state",
    help: `The CA's rotation state: 1 for its state, 0 for the others (${CA_STATE_LABELS.join(", ")}; unset: a pool without states)`,
    labelNames: ["signer", "serial", "state"],
    registers: [registry],
    collect() {
      this.reset();
      if (caFile === undefined) return;
      for (const [signer, cas] of caFile.state().pool.signers) {
        for (const ca of cas) {
          const own = ca.state ?? "unset";
          for (const state of CA_STATE_LABELS) this.set({ signer, serial: ca.serialHex, state }, state === own ? 1 : 0);
        }
      }
    },
  });
  new Gauge({
    name: "podcert_ca_pool_last_reload_timestamp_seconds",
    help: "When the CA pool in use was loaded (at start or by the last reload that succeeded), Unix seconds",
    registers: [registry],
    collect() {
      this.reset();
      if (caFile !== undefined) this.set(caFile.state().loadedAt.getTime() / 1000);
    },
  });
  new Gauge({
    name: "podcert_ca_pool_last_reload_successful",
    help: "1 when the CA pool file on disk is the pool in use, 0 while it holds a file that was refused",
    registers: [registry],
    collect() {
      this.reset();
      if (caFile !== undefined) this.set(caFile.state().upToDate ? 1 : 0);
    },
  });
  new Counter({
    name: "podcert_ca_pool_reload_failures_total",
    help: "CA pool files refused (broken, partial, a key that does not match), each distinct content once; the last good pool kept signing",
    registers: [registry],
    collect() {
      // The source counts; the counter shows its count (monotonic: it only grows).
      this.reset();
      if (caFile !== undefined) this.inc(caFile.state().refusals);
    },
  });
  return {
    signerLimits: (limits) => {
      maxLifetime.reset();
      for (const { signer, maxLifetimeSeconds } of limits) maxLifetime.set({ signer }, maxLifetimeSeconds);
    },
    pendingListed: ({ at, counts }) => {
      // Replaced as a whole: a signer no longer configured leaves no stale series.
      pending.reset();
      for (const { signer, age, count } of counts) pending.set({ signer, age }, count);
      pendingListedAt.set(at.getTime() / 1000);
    },
    trustPublished: ({ signer, at }) => trustPublishedAt.set({ signer }, at.getTime() / 1000),
    eventHandled: ({ type, status, seconds }) => {
      events.inc({ type, status: String(status) });
      eventSeconds.observe({ type }, seconds);
    },
    deadLettered: ({ type }) => deadLetters.inc({ type }),
    decision: ({ signer, outcome, reason }) => outcomes.inc({ signer, outcome, reason: reason ?? "" }),
    issued: ({ signer, signSeconds, secondsSinceCreation }) => {
      signing.observe({ signer }, signSeconds);
      if (secondsSinceCreation !== undefined && secondsSinceCreation >= 0) toIssue.observe({ signer }, secondsSinceCreation);
    },
    apiCall: ({ operation, seconds, outcome }) => {
      api.observe({ operation, outcome }, seconds);
      if (outcome === "error") apiErrors.inc({ operation });
    },
    watchCaPool: (file) => {
      caFile = file;
    },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
