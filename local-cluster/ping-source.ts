/**
 * A local stand-in for the Knative PingSources of knative/ (the trust publisher's and resync's ticks): it posts
 * the event Knative's ping adapter sends — type dev.knative.sources.ping, source
 * /apis/v1/namespaces/<ns>/pingsources/<name>, the spec's data — to the broker. The schedule is a
 * fixed interval here (a cron of every few minutes would outlast a local run), and it ticks once
 * at start, as the adapter does not; the function also publishes at its own start.
 */
import { randomUUID } from "node:crypto";
import type { PodcertEvent } from "../shared/events/types.js";
import { EVENT_TYPES } from "../shared/steps.js";

interface PingSourceDoc {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { data?: string; contentType?: string; sink?: { ref?: { kind?: string; name?: string } } };
}

export interface PingSourceSpec {
  name: string;
  namespace: string;
  /** The Broker its sink names. */
  broker: string;
  data: unknown;
}

/** The PingSources among the manifests' documents whose sink is a Broker. */
export function pingSources(documents: readonly unknown[]): PingSourceSpec[] {
  return documents
    .map((d) => d as PingSourceDoc)
    .filter((d) => d.apiVersion === "sources.knative.dev/v1" && d.kind === "PingSource" && d.spec?.sink?.ref?.kind === "Broker")
    .map((d) => ({
      name: d.metadata?.name ?? "ping",
      namespace: d.metadata?.namespace ?? "default",
      broker: d.spec!.sink!.ref!.name ?? "default",
      data: parseData(d.spec?.data, d.spec?.contentType),
    }));
}

function parseData(data: string | undefined, contentType: string | undefined): unknown {
  if (data === undefined) return undefined;
  if (contentType === "application/json") {
    try {
      return JSON.parse(data) as unknown;
    } catch {
      return data;
    }
  }
  return data;
}

export function pingEvent(s: PingSourceSpec, now = new Date()): PodcertEvent {
  return {
    specversion: "1.0",
    id: randomUUID(),
    type: EVENT_TYPES.ping,
    source: `/apis/v1/namespaces/${s.namespace}/pingsources/${s.name}`,
    time: now.toISOString(),
    datacontenttype: "application/json",
    data: s.data ?? {},
    extensions: {},
  };
}

/** Ticks every `intervalMs` (and once now); returns a stop. */
export function startPingSource(s: PingSourceSpec, o: { intervalMs: number; publish: (e: PodcertEvent) => void }): () => void {
  o.publish(pingEvent(s));
  const timer = setInterval(() => o.publish(pingEvent(s)), o.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
