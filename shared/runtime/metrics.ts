/**
 * Prometheus metrics (prom-client) for one function. Labels are bounded: function, event type,
 * HTTP status, signer, reason, API operation; never a pod, namespace or PCR name.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ApiCallObserver } from "../kube/client-node.js";

export interface Metrics {
  eventHandled(o: { fn: string; type: string; status: number; seconds: number }): void;
  decision(o: { fn: string; signer: string; outcome: string; reason?: string }): void;
  issued(o: { signer: string; signSeconds: number; secondsSinceCreation?: number }): void;
  apiCall: ApiCallObserver;
  /** The trust publisher confirmed a signer's bundles equal to its published CAs at `at`. */
  trustPublished(o: { signer: string; at: Date }): void;
  render(): Promise<{ contentType: string; body: string }>;
}

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
  const trustPublishedAt = new Gauge({ name: "podcert_trust_published_timestamp_seconds", help: "When the signer's ClusterTrustBundle and SPIFFE bundle were last confirmed equal to its published CAs (alert on time() minus this)", labelNames: ["signer"], registers: [registry] });
  return {
    trustPublished: ({ signer, at }) => trustPublishedAt.set({ signer }, at.getTime() / 1000),
    eventHandled: ({ type, status, seconds }) => {
      events.inc({ type, status: String(status) });
      eventSeconds.observe({ type }, seconds);
    },
    decision: ({ signer, outcome, reason }) => outcomes.inc({ signer, outcome, reason: reason ?? "" }),
    issued: ({ signer, signSeconds, secondsSinceCreation }) => {
      signing.observe({ signer }, signSeconds);
      if (secondsSinceCreation !== undefined && secondsSinceCreation >= 0) toIssue.observe({ signer }, secondsSinceCreation);
    },
    apiCall: ({ operation, seconds, outcome }) => {
      api.observe({ operation, outcome }, seconds);
      if (outcome === "error") apiErrors.inc({ operation });
    },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
