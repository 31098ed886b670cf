// The Triggers route every event type a function emits to exactly the functions that consume it
// (as the step registry, shared/steps.ts, declares), and the Broker and ApiServerSource are
// wired as the local broker and a cluster expect.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseBrokerDelivery, parseIsoDurationMs } from "../../local-cluster/broker.js";
import { parseTriggers } from "../../local-cluster/router.js";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import { EVENT_TYPES, STEP_REGISTRY, stepEntry, type StepName } from "../../shared/steps.js";
import {
  API_SERVER_TYPES,
  clone,
  deliveryTimeoutProblems,
  effectiveDelivery,
  eventFor,
  eventOf,
  find,
  KNATIVE_DIR,
  knativeServices,
  loadDir,
  PING_SOURCE,
  pingSourceOf,
  pingSourceProblems,
  sinkBindingProblems,
  pingSourceSource,
  REGISTERED,
  type Doc,
  type Obj,
  ofKind,
  route,
  routingProblems,
  serviceName,
  serviceTimeoutMs,
  TERMINAL_TYPES,
  tickSeconds,
  triggers,
} from "./manifests.js";

const { docs } = loadDir();

describe("Triggers", () => {
  it("route each consumed type to its function once, each emitted type to exactly its consumers", () => {
    expect(routingProblems(docs, REGISTERED)).toEqual([]);
  });

  it("form the pipeline: add/update/resync -> validate -> derive-sans -> sign, denials -> deny; each PingSource's ticks -> its function", () => {
    expect(route(docs, eventOf("dev.knative.apiserver.resource.add"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.knative.apiserver.resource.update"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.knative.apiserver.resource.delete"))).toEqual([]);
    expect(route(docs, eventOf("dev.ate.podcert.request.resync"))).toEqual(["podcert-validate"]);
    expect(route(docs, eventOf("dev.ate.podcert.request.validated"))).toEqual(["podcert-derive-sans"]);
    expect(route(docs, eventOf("dev.ate.podcert.sans.derived"))).toEqual(["podcert-sign"]);
    expect(route(docs, eventOf("dev.ate.podcert.request.denied"))).toEqual(["podcert-deny"]);
    expect(route(docs, eventOf("dev.knative.sources.ping"))).toEqual(["podcert-publish-trust"]);
    expect(route(docs, eventFor("dev.knative.sources.ping", "resync"))).toEqual(["podcert-resync"]);
  });

  it("end at request.issued: nothing consumes it", () => {
    for (const type of TERMINAL_TYPES) {
      expect(route(docs, eventOf(type))).toEqual([]);
      for (const io of Object.values(REGISTERED)) expect(io.consumes).not.toContain(type);
    }
    // sign's other output is a denial (the pod went away before the write), which deny ends.
    expect(REGISTERED.sign!.emits).toEqual([...TERMINAL_TYPES, "dev.ate.podcert.request.denied"]);
  });

  it("are one per (function, event type), on Broker podcert, naming an existing Knative Service", () => {
    const expected = Object.values(REGISTERED).reduce((n, io) => n + io.consumes.length, 0);
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

  it("filter pings on the source of each function's own PingSource: another PingSource's ticks wake nobody", () => {
    expect(eventOf(EVENT_TYPES.ping).source).toBe("/apis/v1/namespaces/podcert/pingsources/podcert-publish-trust");
    expect(eventFor(EVENT_TYPES.ping, "resync").source).toBe("/apis/v1/namespaces/podcert/pingsources/podcert-resync");
    expect(route(docs, { type: EVENT_TYPES.ping, source: pingSourceSource("podcert", "nightly-report") })).toEqual([]);
    expect(route(docs, { type: EVENT_TYPES.ping, source: pingSourceSource("default", "podcert-publish-trust") })).toEqual([]);
  });

  it("detects wrong routing", () => {
    const loop = clone(docs);
    find(loop, "Trigger", "podcert-sign-sans-derived").spec.filter.attributes.type = "dev.ate.podcert.request.issued";
    expect(routingProblems(loop, REGISTERED)).toEqual(
      expect.arrayContaining([
        expect.stringContaining("routes dev.ate.podcert.request.issued back into sign"),
        expect.stringContaining("dev.ate.podcert.sans.derived reaches [], expected [podcert-sign]"),
        expect.stringContaining("dev.ate.podcert.request.issued is terminal"),
      ]),
    );

    const missing = clone(docs).filter((d) => d.obj.metadata?.name !== "podcert-derive-sans-validated");
    expect(routingProblems(missing, REGISTERED)).toEqual(expect.arrayContaining([expect.stringContaining("dev.ate.podcert.request.validated reaches [], expected [podcert-derive-sans]")]));

    const extra = clone(docs);
    const copy = structuredClone(extra.find((d) => d.obj.metadata?.name === "podcert-deny-denied")!);
    copy.obj.metadata.name = "podcert-validate-denied";
    copy.obj.spec.subscriber.ref.name = "podcert-validate";
    extra.push(copy);
    expect(routingProblems(extra, REGISTERED)).toEqual(
      expect.arrayContaining([expect.stringContaining("routes dev.ate.podcert.request.denied to validate, which does not consume it")]),
    );

    const noKind = clone(docs);
    delete find(noKind, "Trigger", "podcert-validate-pcr-add").spec.filter.attributes.kind;
    expect(routingProblems(noKind, REGISTERED)).toEqual(expect.arrayContaining([expect.stringContaining("must filter on kind PodCertificateRequest")]));

    // Every ping in the Broker would wake the publisher.
    const anyPing = clone(docs);
    delete find(anyPing, "Trigger", "podcert-publish-trust-ping").spec.filter.attributes.source;
    expect(routingProblems(anyPing, REGISTERED)).toEqual([
      expect.stringContaining("podcert-publish-trust-ping: filter attributes must be exactly source, type, are type"),
      expect.stringContaining(`podcert-publish-trust-ping: must filter on source ${PING_SOURCE}`),
      `resync's ticks (source ${pingSourceOf("resync")}) reach [podcert-publish-trust, podcert-resync], expected [podcert-resync]`,
      `dev.knative.sources.ping with another source reaches podcert-publish-trust`,
    ]);

    // resync's Trigger let through the publisher's ticks: each would wake the other's function.
    const crossed = clone(docs);
    find(crossed, "Trigger", "podcert-resync-ping").spec.filter.attributes.source = PING_SOURCE;
    expect(routingProblems(crossed, REGISTERED)).toEqual([
      expect.stringContaining(`podcert-resync-ping: must filter on source ${pingSourceOf("resync")}`),
      `dev.knative.sources.ping reaches resync 0 times, expected once`,
      `publish-trust's ticks (source ${PING_SOURCE}) reach [podcert-publish-trust, podcert-resync], expected [podcert-publish-trust]`,
      `resync's ticks (source ${pingSourceOf("resync")}) reach [], expected [podcert-resync]`,
    ]);

    const ghost = clone(docs);
    find(ghost, "Trigger", "podcert-deny-denied").spec.subscriber.ref.name = "podcert-denier";
    expect(routingProblems(ghost, REGISTERED)).toEqual(expect.arrayContaining([expect.stringContaining("podcert-denier is not a Knative Service")]));

    const wrongBroker = clone(docs);
    find(wrongBroker, "Trigger", "podcert-sign-sans-derived").spec.broker = "default";
    expect(routingProblems(wrongBroker, REGISTERED)).toEqual(expect.arrayContaining([expect.stringContaining("broker must be podcert")]));

    // A function that would consume what it emits, through the Broker.
    const loopy = { ...REGISTERED, deny: { ...REGISTERED.deny!, emits: ["dev.ate.podcert.request.resync"] } };
    expect(routingProblems(docs, loopy)).toEqual(expect.arrayContaining([expect.stringMatching(/event loop: .*deny -> validate/)]));
  });
});

describe("Broker", () => {
  const broker = find(docs, "Broker", "podcert");

  it("is in broker.yaml with retries, exponential backoff and the registry's dead-letter sink as dead-letter Knative Service", () => {
    expect(ofKind(docs, "eventing.knative.dev/v1", "Broker").map((d) => d.file)).toEqual(["broker.yaml"]);
    const d = broker.spec.delivery;
    expect(Number.isInteger(d.retry) && d.retry > 0).toBe(true);
    expect(d.backoffPolicy).toBe("exponential");
    expect(parseIsoDurationMs(d.backoffDelay)).toBeGreaterThan(0);
    expect(d.deadLetterSink.ref).toMatchObject({ apiVersion: "serving.knative.dev/v1", kind: "Service" });
    expect(knativeServices(docs).map((s) => s.obj.metadata.name)).toContain(d.deadLetterSink.ref.name);
    // podcert's own dead-letter function (shared/steps.ts deadLetterSink), which no Trigger routes to.
    const sinks = STEP_REGISTRY.filter((s) => s.deadLetterSink);
    expect(sinks.map((s) => serviceName(s.name))).toEqual([d.deadLetterSink.ref.name]);
    expect(sinks.flatMap((s) => s.consumes)).toEqual([]);
    expect(triggers(docs).map((t) => t.obj.spec?.subscriber?.ref?.name)).not.toContain(d.deadLetterSink.ref.name);
  });

  /**
   * The longest a hop can take, in seconds: every attempt runs until its timeout (without one,
   * until Serving ends it at the subscriber's timeoutSeconds), with the backoff between them.
   */
  function longestHop(all: readonly Doc[], trigger: Obj): number {
    const d = effectiveDelivery(all, trigger)!;
    const delay = parseIsoDurationMs(d.backoffDelay) / 1000;
    const attempt = (d.timeout !== undefined ? parseIsoDurationMs(d.timeout) : serviceTimeoutMs(all, trigger.spec.subscriber.ref.name)!) / 1000;
    let window = (d.retry + 1) * attempt;
    for (let i = 0; i < d.retry; i++) window += delay * 2 ** i; // Knative's exponential backoff: delay x 2^i
    return window;
  }
  const ttl = parseSignerConfig(find(docs, "ConfigMap", "podcert-config").data["config.yaml"] as string).attestationTTLSeconds;

  it("gives up on a hop well inside the step attestations' lifetime", () => {
    // validate's attestation must still be valid when sign takes it, after two retried hops.
    for (const t of triggers(docs)) expect(2 * longestHop(docs, t.obj), t.obj.metadata.name).toBeLessThan(ttl);
    expect(longestHop(docs, find(docs, "Trigger", "podcert-sign-sans-derived"))).toBeCloseTo(10 * 10 + 255.5);
    // Without a timeout, attempts hung until Serving's 60 s would overrun it.
    const untimed = clone(docs);
    delete find(untimed, "Broker", "podcert").spec.delivery.timeout;
    expect(2 * longestHop(untimed, find(untimed, "Trigger", "podcert-sign-sans-derived"))).toBeGreaterThan(ttl);
  });
});

describe("Trigger deliveries", () => {
  it("each attempt times out (ISO 8601) before the subscriber Service's timeoutSeconds", () => {
    expect(deliveryTimeoutProblems(docs)).toEqual([]);
    for (const t of triggers(docs)) {
      expect(t.obj.spec.delivery, t.obj.metadata.name).toBeUndefined();
      expect(parseIsoDurationMs(effectiveDelivery(docs, t.obj)!.timeout)).toBeLessThan(serviceTimeoutMs(docs, t.obj.spec.subscriber.ref.name)!);
    }
  });

  it("detects a missing, malformed or too long timeout, and a Trigger's own delivery spec", () => {
    const none = clone(docs);
    delete find(none, "Broker", "podcert").spec.delivery.timeout;
    expect(deliveryTimeoutProblems(none)).toHaveLength(triggers(docs).length);
    expect(deliveryTimeoutProblems(none)[0]).toMatch(/its deliveries have no timeout/);

    const malformed = clone(docs);
    find(malformed, "Broker", "podcert").spec.delivery.timeout = "10s";
    expect(deliveryTimeoutProblems(malformed)[0]).toMatch(/10s is not an ISO 8601 duration/);

    const long = clone(docs);
    find(long, "Service", "podcert-sign").spec.template.spec.timeoutSeconds = 10;
    expect(deliveryTimeoutProblems(long)).toEqual([expect.stringContaining("Trigger podcert-sign-sans-derived: timeout PT10S is not below podcert-sign's timeoutSeconds (10)")]);

    const unset = clone(docs);
    delete find(unset, "Service", "podcert-deny").spec.template.spec.timeoutSeconds;
    expect(deliveryTimeoutProblems(unset)).toEqual([expect.stringContaining("subscriber podcert-deny sets no timeoutSeconds")]);

    // A Trigger with only a timeout of its own: fine as far as the timeout goes, but it replaces the Broker's retries.
    const own = clone(docs);
    find(own, "Trigger", "podcert-deny-denied").spec.delivery = { timeout: "PT5S" };
    expect(deliveryTimeoutProblems(own)).toEqual([expect.stringContaining("Trigger podcert-deny-denied: sets its own delivery spec, which replaces the Broker's whole")]);
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
      timeoutMs: parseIsoDurationMs(spec.timeout),
      deadLetterSink: spec.deadLetterSink.ref.name,
    });
  });
});

describe("PingSource", () => {
  const pings = ofKind(docs, "sources.knative.dev/v1", "PingSource");

  it("ticks publish-trust every five minutes through the Broker, as often as its SPIFFE refresh hint says", () => {
    expect(pingSourceProblems(docs, REGISTERED)).toEqual([]);
    expect(pings.map((d) => `${d.file} ${d.obj.metadata.namespace}/${d.obj.metadata.name}`)).toEqual([
      "publish-trust.yaml podcert/podcert-publish-trust",
      "resync.yaml podcert/podcert-resync",
    ]);
    const spec = pings[0]!.obj.spec;
    expect(spec.schedule).toBe("*/5 * * * *");
    expect(spec.sink).toEqual({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: "podcert" } });
    expect(route(docs, { type: EVENT_TYPES.ping, source: pingSourceSource(pings[0]!.obj.metadata.namespace, pings[0]!.obj.metadata.name) })).toEqual(["podcert-publish-trust"]);
  });

  it("ticks resync every minute through the Broker, from its own PingSource", () => {
    const own = find(docs, "PingSource", "podcert-resync");
    expect(tickSeconds(own.spec.schedule)).toBe(60);
    expect(own.spec.sink).toEqual({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: "podcert" } });
    expect(route(docs, { type: EVENT_TYPES.ping, source: pingSourceSource("podcert", "podcert-resync") })).toEqual(["podcert-resync"]);
  });

  it("reads the period of every-N-minutes schedules, and refuses the others", () => {
    expect(tickSeconds("*/5 * * * *")).toBe(300);
    expect(tickSeconds("* * * * *")).toBe(60);
    expect(tickSeconds("*/60 * * * *")).toBe(3600);
    for (const s of ["*/7 * * * *", "0 * * * *", "@every 5m", "*/5 * * *", undefined]) expect(() => tickSeconds(s), String(s)).toThrow(/is not/);
  });

  it("detects a sink that is not the Broker, a missing or renamed PingSource, and a hint out of step", () => {
    const direct = clone(docs);
    find(direct, "PingSource", "podcert-publish-trust").spec.sink = { ref: { apiVersion: "serving.knative.dev/v1", kind: "Service", name: "podcert-publish-trust" } };
    expect(pingSourceProblems(direct, REGISTERED)).toEqual([expect.stringContaining("PingSource podcert-publish-trust: sink must be")]);

    const byUri = clone(docs);
    find(byUri, "PingSource", "podcert-publish-trust").spec.sink = { uri: "http://broker-ingress.knative-eventing.svc.cluster.local/podcert/podcert" };
    expect(pingSourceProblems(byUri, REGISTERED)).toEqual([expect.stringContaining("sink must be")]);

    const gone = clone(docs).filter((d) => d.obj.kind !== "PingSource");
    expect(pingSourceProblems(gone, REGISTERED)).toEqual([
      "publish-trust consumes dev.knative.sources.ping: expected one PingSource podcert/podcert-publish-trust, found 0",
      "resync consumes dev.knative.sources.ping: expected one PingSource podcert/podcert-resync, found 0",
    ]);

    // Renamed: its ticks carry another source, which the Trigger does not let through.
    const renamed = clone(docs);
    find(renamed, "PingSource", "podcert-publish-trust").metadata.name = "podcert-tick";
    expect(pingSourceProblems(renamed, REGISTERED)).toEqual([
      "publish-trust consumes dev.knative.sources.ping: expected one PingSource podcert/podcert-publish-trust, found 0",
      expect.stringContaining("its ticks (source /apis/v1/namespaces/podcert/pingsources/podcert-tick) reach no function"),
    ]);

    const hourly = clone(docs);
    find(hourly, "PingSource", "podcert-publish-trust").spec.schedule = "*/60 * * * *";
    expect(pingSourceProblems(hourly, REGISTERED)).toEqual([expect.stringContaining("ticks every 3600 s, but podcert-publish-trust hands out a SPIFFE refresh hint of 300 s")]);

    const irregular = clone(docs);
    find(irregular, "PingSource", "podcert-publish-trust").spec.schedule = "*/7 * * * *";
    expect(pingSourceProblems(irregular, REGISTERED)).toEqual([expect.stringContaining('schedule "*/7 * * * *" is not')]);
  });
});

describe("SinkBinding", () => {
  it("gives the steps that post to the Broker themselves (resync) K_SINK = the Broker, and nobody else", () => {
    expect(sinkBindingProblems(docs)).toEqual([]);
    expect(Object.keys(REGISTERED).filter((fn) => stepEntry(fn as StepName).postsToBroker)).toEqual(["resync"]);
    const b = find(docs, "SinkBinding", "podcert-resync");
    expect(b.spec.subject).toEqual({ apiVersion: "serving.knative.dev/v1", kind: "Service", name: "podcert-resync" });
  });

  it("detects a missing binding, a sink that is not the Broker, and a binding for a function that does not post", () => {
    expect(sinkBindingProblems(clone(docs).filter((d) => d.obj.kind !== "SinkBinding"))).toEqual(["resync posts to the Broker: expected one SinkBinding with subject podcert-resync, found 0"]);
    const direct = clone(docs);
    find(direct, "SinkBinding", "podcert-resync").spec.sink = { ref: { apiVersion: "serving.knative.dev/v1", kind: "Service", name: "podcert-validate" } };
    expect(sinkBindingProblems(direct)).toEqual([expect.stringContaining("SinkBinding podcert-resync: sink must be")]);
    const other = clone(docs);
    find(other, "SinkBinding", "podcert-resync").spec.subject.name = "podcert-sign";
    expect(sinkBindingProblems(other)).toEqual([
      expect.stringContaining("binds podcert-sign, which does not post to the Broker"),
      "resync posts to the Broker: expected one SinkBinding with subject podcert-resync, found 0",
    ]);
    const bySelector = clone(docs);
    find(bySelector, "SinkBinding", "podcert-resync").spec.subject = { apiVersion: "serving.knative.dev/v1", kind: "Service", selector: { matchLabels: { "app.kubernetes.io/part-of": "podcert" } } };
    expect(sinkBindingProblems(bySelector)).toEqual([expect.stringContaining("subject must be one Knative Service by name"), expect.stringContaining("found 0")]);
  });
});

describe("ApiServerSource", () => {
  const sources = ofKind(docs, "sources.knative.dev/v1", "ApiServerSource");

  it("watches v1 PodCertificateRequests (1.37+; a component switches to v1beta1) in all namespaces, in Resource mode, into the Broker", () => {
    expect(sources).toHaveLength(1);
    const spec = sources[0]!.obj.spec;
    expect(spec.mode).toBe("Resource");
    expect(spec.resources).toEqual([{ apiVersion: "certificates.k8s.io/v1", kind: "PodCertificateRequest" }]);
    // {} selects every namespace; leaving it unset would watch only the source's own namespace.
    expect(spec.namespaceSelector).toEqual({});
    expect(spec.sink).toEqual({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: "podcert" } });
    expect(ofKind(docs, "v1", "ServiceAccount").map((d) => d.obj.metadata.name)).toContain(spec.serviceAccountName);
    expect(Object.keys(REGISTERED).map(serviceName)).not.toContain(spec.serviceAccountName);
  });
});
