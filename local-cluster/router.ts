/**
 * Routing as the Knative Broker does it, from the project's own Trigger manifests
 * (knative/triggers.yaml): the local broker, the in-process pipeline (`podcert issue`) and the
 * manifest tests all route with this code, so none of them can drift from what is deployed.
 * Semantics follow Knative's: every Trigger of the Broker whose exact attribute filters all match
 * gets the event; which answers are retried is `retryable`.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { ConfigError } from "../shared/errors.js";
import type { PodcertEvent } from "../shared/events/types.js";
import { readText } from "../shared/runtime/load.js";
import { serviceName, STEPS, type StepName } from "../shared/steps.js";

/** The Broker the Triggers in knative/ name. */
export const BROKER_NAME = "podcert";

/**
 * knative/ of this checkout: from cli/, local-cluster/ and the bundles in dist/ alike, one folder
 * up (so `podcert issue` finds it from any working directory).
 */
export const DEFAULT_KNATIVE_DIR = fileURLToPath(new URL("../knative/", import.meta.url));

export interface TriggerRoute {
  name: string;
  broker: string;
  /** Exact-match attribute filters (type, source, subject, extensions). */
  filter: Readonly<Record<string, string>>;
  /** The Knative Service the Trigger's subscriber names. */
  subscriber: string;
}

interface TriggerDoc {
  kind?: string;
  metadata?: { name?: string };
  spec?: { broker?: string; delivery?: unknown; filter?: { attributes?: Record<string, unknown> }; subscriber?: { ref?: { kind?: string; name?: string } } };
}

/** Routes from the Trigger documents of a manifest file (other kinds are ignored). */
export function parseTriggers(yamlText: string, source = "triggers"): TriggerRoute[] {
  const routes: TriggerRoute[] = [];
  for (const [i, doc] of parseAllDocuments(yamlText).entries()) {
    if (doc.errors.length > 0) throw new ConfigError(`${source}: document ${i}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
    const t = doc.toJSON() as TriggerDoc | null;
    if (t?.kind !== "Trigger") continue;
    const name = t.metadata?.name ?? `trigger-${i}`;
    const subscriber = t.spec?.subscriber?.ref?.name;
    if (subscriber === undefined || t.spec?.subscriber?.ref?.kind !== "Service") {
      throw new ConfigError(`${source}: Trigger ${name} must name a Knative Service as its subscriber`);
    }
    // Knative's channel-based Broker would use such a spec instead of the Broker's, whole; the
    // local broker applies the Broker's to every Trigger, so it refuses rather than differ.
    if (t.spec?.delivery !== undefined) throw new ConfigError(`${source}: Trigger ${name} sets its own delivery spec; the local broker applies only the Broker's`);
    routes.push({ name, broker: t.spec?.broker ?? "default", filter: triggerFilter(t.spec?.filter?.attributes), subscriber });
  }
  return routes;
}

/** The Triggers of `knativeDir`/triggers.yaml. */
export function loadTriggers(knativeDir = DEFAULT_KNATIVE_DIR): TriggerRoute[] {
  const path = join(knativeDir, "triggers.yaml");
  return parseTriggers(readText(path, "Trigger manifest"), path);
}

/** A Trigger's `spec.filter.attributes` as exact string matches. */
export function triggerFilter(attributes: Readonly<Record<string, unknown>> | undefined): Record<string, string> {
  const filter: Record<string, string> = {};
  for (const [k, v] of Object.entries(attributes ?? {})) filter[k] = String(v);
  return filter;
}

/** A CloudEvent attribute or extension by name, as a Trigger filter reads it. */
function attribute(event: PodcertEvent, name: string): string | undefined {
  switch (name) {
    case "id":
      return event.id;
    case "type":
      return event.type;
    case "source":
      return event.source;
    case "subject":
      return event.subject;
    case "specversion":
      return event.specversion;
    case "datacontenttype":
      return event.datacontenttype;
    case "time":
      return event.time;
    default:
      return event.extensions[name];
  }
}

/** The Triggers of `broker` that `event` reaches, in manifest order. */
export function routeEvent(routes: readonly TriggerRoute[], broker: string, event: PodcertEvent): TriggerRoute[] {
  return routes.filter((r) => r.broker === broker && Object.entries(r.filter).every(([k, v]) => attribute(event, k) === v));
}

/**
 * Whether a delivery answered with `status` is tried again: Knative retries 404, 408, 409, 429
 * and every 5xx (and network errors and timeouts); any other answer is final.
 */
export function retryable(status: number): boolean {
  return status === 404 || status === 408 || status === 409 || status === 429 || status >= 500;
}

/** The step a Trigger's subscriber (a Knative Service) runs, or undefined for another Service. */
export function stepOfService(service: string): StepName | undefined {
  return STEPS.find((step) => serviceName(step) === service);
}
