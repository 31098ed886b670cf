// The Triggers route every event type a function emits to exactly the functions that consume it
// (as the functions declare in shared/cli/functions.ts), and the Broker and ApiServerSource are
// wired as the local broker and a cluster expect.
import { describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../shared/cli/functions.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseBrokerDelivery, parseIsoDurationMs, parseTriggers } from "../../shared/local/broker.js";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import {
  API_SERVER_TYPES,
  clone,
  eventOf,
  find,
  KNATIVE_DIR,
  knativeServices,
  loadDir,
  ofKind,
  route,
  routingProblems,
  serviceName,
  TERMINAL_TYPES,
  triggers,
} from "./manifests.js";

const { docs } = loadDir();

describe("Triggers", () => {
  it("route each consumed type to its function once, each emitted type to exactly its consumers", () => {
    expect(routingProblems(docs, FUNCTIONS)).toEqual([]);
  });

  it("form the pipeline: add/update/resync -> validate -> derive-sans -> sign, denials -> deny", () => {
    expect(route(docs, eventOf("dev.knative.apiserver.resource.add"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.knative.apiserver.resource.update"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.knative.apiserver.resource.delete"))).toEqual([]);
    expect(route(docs, eventOf("dev.ate.podcert.request.resync"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.ate.podcert.request.validated"))).toEqual(["podcert-derive-sans"]);
    expect(route(docs, eventOf("dev.ate.podcert.sans.derived"))).toEqual(["podcert-sign"]);
    expect(route(docs, eventOf("dev.ate.podcert.request.denied"))).toEqual(["podcert-deny"]);
  });

  it("end at request.issued: nothing consumes it", () => {
    for (const type of TERMINAL_TYPES) {
      expect(route(docs, eventOf(type))).toEqual([]);
      for (const io of Object.values(FUNCTIONS)) expect(io.consumes).not.toContain(type);
    }
    // sign's other output is a denial (the pod went away before the write), which deny ends.
    expect(FUNCTIONS.sign.emits).toEqual([...TERMINAL_TYPES, "dev.ate.podcert.request.denied"]);
  });

  it("are one per (function, event type), on Broker podcert, naming an existing Knative Service", () => {
    const expected = Object.values(FUNCTIONS).reduce((n, io) => n + io.consumes.length, 0);
    expect(triggers(docs)).toHaveLength(expected);
    const services = knativeServices(docs).map((d) => d.obj.metadata.name);
    for (const t of triggers(docs)) {
      expect(t.file).toBe("triggers.yaml");
      expect(t.obj.spec.broker).toBe("podcert");
      expect(services).toContain(t.obj.spec.subscriber.ref.name);
    }
  });

  it("filter ApiServerSource events on kind PodCertificateRequest", () => {
    for (const type of API_SERVER_TYPES) {
      expect(route(docs, { ...eventOf(type), kind: "Pod" })).toEqual([]);
      const { kind: _kind, ...withoutKind } = eventOf(type);
      expect(route(docs, withoutKind)).toEqual([]);
    }
  });

  it("detects wrong routing", () => {
    const loop = clone(docs);
    find(loop, "Trigger", "podcert-sign-sans-derived").spec.filter.attributes.type = "dev.ate.podcert.request.issued";
    expect(routingProblems(loop, FUNCTIONS)).toEqual(
      expect.arrayContaining([
        expect.stringContaining("routes dev.ate.podcert.request.issued back into sign"),
        expect.stringContaining("dev.ate.podcert.sans.derived reaches [], expected [podcert-sign]"),
        expect.stringContaining("dev.ate.podcert.request.issued is terminal"),
      ]),
    );

    const missing = clone(docs).filter((d) => d.obj.metadata?.name !== "podcert-derive-sans-validated");
    expect(routingProblems(missing, FUNCTIONS)).toEqual(expect.arrayContaining([expect.stringContaining("dev.ate.podcert.request.validated reaches [], expected [podcert-derive-sans]")]));

    const extra = clone(docs);
    const copy = structuredClone(extra.find((d) => d.obj.metadata?.name === "podcert-deny-denied")!);
    copy.obj.metadata.name = "podcert-validate-denied";
    copy.obj.spec.subscriber.ref.name = "podcert-validate";
    extra.push(copy);
    expect(routingProblems(extra, FUNCTIONS)).toEqual(
      expect.arrayContaining([expect.stringContaining("routes dev.ate.podcert.request.denied to validate, which does not consume it")]),
    );

    const noKind = clone(docs);
    delete find(noKind, "Trigger", "podcert-validate-pcr-add").spec.filter.attributes.kind;
    expect(routingProblems(noKind, FUNCTIONS)).toEqual(expect.arrayContaining([expect.stringContaining("must filter on kind PodCertificateRequest")]));

    const ghost = clone(docs);
    find(ghost, "Trigger", "podcert-deny-denied").spec.subscriber.ref.name = "podcert-denier";
    expect(routingProblems(ghost, FUNCTIONS)).toEqual(expect.arrayContaining([expect.stringContaining("podcert-denier is not a Knative Service")]));

    const wrongBroker = clone(docs);
    find(wrongBroker, "Trigger", "podcert-sign-sans-derived").spec.broker = "default";
    expect(routingProblems(wrongBroker, FUNCTIONS)).toEqual(expect.arrayContaining([expect.stringContaining("broker must be podcert")]));

    // A function that would consume what it emits, through the Broker.
    const loopy = { ...FUNCTIONS, deny: { ...FUNCTIONS.deny, emits: ["dev.ate.podcert.request.resync"] } };
    expect(routingProblems(docs, loopy)).toEqual(expect.arrayContaining([expect.stringMatching(/event loop: .*deny -> validate/)]));
  });
});

describe("Broker", () => {
  const broker = find(docs, "Broker", "podcert");

  it("is in broker.yaml with retries, exponential backoff and a dead-letter Knative Service", () => {
    expect(ofKind(docs, "eventing.knative.dev/v1", "Broker").map((d) => d.file)).toEqual(["broker.yaml"]);
    const d = broker.spec.delivery;
    expect(Number.isInteger(d.retry) && d.retry > 0).toBe(true);
    expect(d.backoffPolicy).toBe("exponential");
    expect(parseIsoDurationMs(d.backoffDelay)).toBeGreaterThan(0);
    expect(d.deadLetterSink.ref).toMatchObject({ apiVersion: "serving.knative.dev/v1", kind: "Service" });
    expect(knativeServices(docs).map((s) => s.obj.metadata.name)).toContain(d.deadLetterSink.ref.name);
    expect(Object.keys(FUNCTIONS).map(serviceName)).not.toContain(d.deadLetterSink.ref.name);
  });

  it("gives up on a hop well inside the step attestations' lifetime", () => {
    const d = broker.spec.delivery;
    const delay = parseIsoDurationMs(d.backoffDelay) / 1000;
    let window = 0;
    for (let i = 0; i < d.retry; i++) window += delay * 2 ** i;
    const config = parseSignerConfig(find(docs, "ConfigMap", "podcert-config").data["config.yaml"] as string);
    // validate's attestation must still be valid when sign takes it, after two retried hops.
    expect(2 * window).toBeLessThan(config.attestationTTLSeconds);
  });
});

describe("the local broker (npm start)", () => {
  it("reads the same routes and delivery spec from triggers.yaml and broker.yaml", () => {
    const routes = parseTriggers(readFileSync(join(KNATIVE_DIR, "triggers.yaml"), "utf8"), "triggers.yaml");
    expect(routes.map((r) => `${r.broker} ${JSON.stringify(r.filter)} ${r.subscriber}`).sort()).toEqual(
      triggers(docs)
        .map((t) => `${t.obj.spec.broker} ${JSON.stringify(t.obj.spec.filter.attributes)} ${t.obj.spec.subscriber.ref.name}`)
        .sort(),
    );
    const delivery = parseBrokerDelivery(readFileSync(join(KNATIVE_DIR, "broker.yaml"), "utf8"), "podcert");
    const spec = find(docs, "Broker", "podcert").spec.delivery;
    expect(delivery).toEqual({
      retry: spec.retry,
      backoffPolicy: spec.backoffPolicy,
      backoffDelayMs: parseIsoDurationMs(spec.backoffDelay),
      deadLetterSink: spec.deadLetterSink.ref.name,
    });
  });
});

describe("ApiServerSource", () => {
  const sources = ofKind(docs, "sources.knative.dev/v1", "ApiServerSource");

  it("watches v1beta1 PodCertificateRequests in all namespaces, in Resource mode, into the Broker", () => {
    expect(sources).toHaveLength(1);
    const spec = sources[0]!.obj.spec;
    expect(spec.mode).toBe("Resource");
    expect(spec.resources).toEqual([{ apiVersion: "certificates.k8s.io/v1beta1", kind: "PodCertificateRequest" }]);
    // {} selects every namespace; leaving it unset would watch only the source's own namespace.
    expect(spec.namespaceSelector).toEqual({});
    expect(spec.sink).toEqual({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: "podcert" } });
    expect(ofKind(docs, "v1", "ServiceAccount").map((d) => d.obj.metadata.name)).toContain(spec.serviceAccountName);
    expect(Object.keys(FUNCTIONS).map(serviceName)).not.toContain(spec.serviceAccountName);
  });
});
