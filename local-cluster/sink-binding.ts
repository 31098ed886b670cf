/**
 * A local stand-in for the Knative SinkBindings of knative/ (resync's way to the Broker): Eventing
 * injects K_SINK, the sink's address, into the subject's pods; the local run sets K_SINK in the
 * environment of the function process whose Knative Service a SinkBinding names, to the local
 * broker's ingress URL when the sink is that Broker.
 */

interface SinkBindingDoc {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: {
    subject?: { apiVersion?: string; kind?: string; name?: string };
    sink?: { ref?: { apiVersion?: string; kind?: string; name?: string } };
  };
}

export interface SinkBindingSpec {
  name: string;
  namespace: string;
  /** The Knative Service whose pods get K_SINK. */
  service: string;
  /** The Broker its sink names. */
  broker: string;
}

/** The SinkBindings among the manifests' documents binding a Knative Service (by name) to a Broker. */
export function sinkBindings(documents: readonly unknown[]): SinkBindingSpec[] {
  return documents
    .map((d) => d as SinkBindingDoc)
    .filter(
      (d) =>
        d.apiVersion === "sources.knative.dev/v1" &&
        d.kind === "SinkBinding" &&
        d.spec?.subject?.apiVersion === "serving.knative.dev/v1" &&
        d.spec.subject.kind === "Service" &&
        typeof d.spec.subject.name === "string" &&
        d.spec.sink?.ref?.kind === "Broker",
    )
    .map((d) => ({
      name: d.metadata?.name ?? "sink-binding",
      namespace: d.metadata?.namespace ?? "default",
      service: d.spec!.subject!.name!,
      broker: d.spec!.sink!.ref!.name ?? "default",
    }));
}

/** K_SINK for a Knative Service, if a SinkBinding names it with `broker` as its sink. */
export function sinkFor(bindings: readonly SinkBindingSpec[], service: string, broker: string, brokerUrl: string): string | undefined {
  return bindings.some((b) => b.service === service && b.broker === broker) ? brokerUrl : undefined;
}
