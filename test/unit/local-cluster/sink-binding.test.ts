import { describe, expect, it } from "vitest";
import { loadKnativeIdentities } from "../../../local-cluster/identities.js";
import { sinkBindings, sinkFor } from "../../../local-cluster/sink-binding.js";
import { STEP_REGISTRY, serviceName } from "../../../shared/steps.js";

describe("the local SinkBinding emulation", () => {
  it("gives K_SINK, the local broker's URL, exactly to the Services knative/'s SinkBindings name", () => {
    const bindings = sinkBindings(loadKnativeIdentities("knative").documents);
    expect(bindings).toEqual([{ name: "podcert-resync", namespace: "podcert", service: "podcert-resync", broker: "podcert" }]);
    for (const s of STEP_REGISTRY) {
      expect(sinkFor(bindings, serviceName(s.name), "podcert", "http://127.0.0.1:9"), s.name).toBe(s.postsToBroker ? "http://127.0.0.1:9" : undefined);
    }
    // Another Broker's binding gives nothing to this one's run.
    expect(sinkFor(bindings, "podcert-resync", "default", "http://127.0.0.1:9")).toBeUndefined();
  });

  it("ignores bindings it cannot emulate: by selector, or to a sink that is not a Broker", () => {
    const doc = (spec: unknown) => ({ apiVersion: "sources.knative.dev/v1", kind: "SinkBinding", metadata: { name: "b", namespace: "podcert" }, spec });
    const broker = { ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: "podcert" } };
    expect(sinkBindings([doc({ subject: { apiVersion: "serving.knative.dev/v1", kind: "Service", selector: { matchLabels: {} } }, sink: broker })])).toEqual([]);
    expect(sinkBindings([doc({ subject: { apiVersion: "serving.knative.dev/v1", kind: "Service", name: "x" }, sink: { uri: "http://elsewhere" } })])).toEqual([]);
    expect(sinkBindings([doc({ subject: { apiVersion: "apps/v1", kind: "Deployment", name: "x" }, sink: broker })])).toEqual([]);
  });
});
