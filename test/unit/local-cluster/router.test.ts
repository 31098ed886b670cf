// One router for the local broker, the in-process pipeline and the manifest tests: Knative's
// matching over the Triggers of knative/, and Knative's rule for which answers are retried.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkRoutes, deliver, type InProcessPipeline } from "../../../local-cluster/pipeline.js";
import { BROKER_NAME, DEFAULT_KNATIVE_DIR, loadTriggers, parseTriggers, retryable, routeEvent, stepOfService } from "../../../local-cluster/router.js";
import { RejectedEventError, TransientError } from "../../../shared/errors.js";
import type { PodcertEvent } from "../../../shared/events/types.js";
import type { FunctionContext, FunctionDefinition } from "../../../shared/runtime/function.js";
import { silentLogger } from "../../../shared/runtime/log.js";
import { EVENT_TYPES, serviceName, STEP_REGISTRY, STEPS, type StepName } from "../../../shared/steps.js";

const TRIGGERS = readFileSync("knative/triggers.yaml", "utf8");
const routes = parseTriggers(TRIGGERS);

function event(type: string, o: { extensions?: Record<string, string>; source?: string; subject?: string } = {}): PodcertEvent {
  return { specversion: "1.0", id: `e-${Math.random()}`, type, source: o.source ?? "/test", ...(o.subject ? { subject: o.subject } : {}), data: { n: 1 }, extensions: o.extensions ?? {} };
}
const reached = (e: PodcertEvent) => routeEvent(routes, BROKER_NAME, e).map((r) => r.subscriber).sort();

describe("routing from knative/triggers.yaml", () => {
  it("finds knative/ from its own location, whatever the working directory", () => {
    expect(loadTriggers(DEFAULT_KNATIVE_DIR)).toEqual(routes);
  });

  it.each([
    { type: EVENT_TYPES.apiServerAdd, ext: { kind: "PodCertificateRequest" }, to: ["validate"] },
    { type: EVENT_TYPES.apiServerUpdate, ext: { kind: "PodCertificateRequest" }, to: ["validate"] },
    { type: EVENT_TYPES.apiServerAdd, ext: { kind: "Pod" }, to: [] },
    { type: EVENT_TYPES.apiServerAdd, ext: {}, to: [] },
    { type: EVENT_TYPES.resync, ext: {}, to: ["validate"] },
    { type: EVENT_TYPES.validated, ext: {}, to: ["derive-sans"] },
    { type: EVENT_TYPES.sansDerived, ext: {}, to: ["sign"] },
    { type: EVENT_TYPES.denied, ext: {}, to: ["deny"] },
    { type: EVENT_TYPES.issued, ext: {}, to: [] },
    { type: "dev.knative.apiserver.resource.delete", ext: { kind: "PodCertificateRequest" }, to: [] },
  ] as { type: string; ext: Record<string, string>; to: string[] }[])("$type (kind $ext.kind) goes to $to", ({ type, ext, to }) => {
    expect(reached(event(type, { extensions: ext }))).toEqual(to.map(serviceName).sort());
  });

  it("routes every type a step emits to exactly the steps that consume it (shared/steps.ts), never back", () => {
    for (const step of STEP_REGISTRY) {
      for (const type of step.emits) {
        const consumers = STEP_REGISTRY.filter((s) => (s.consumes as readonly string[]).includes(type)).map((s) => serviceName(s.name)).sort();
        expect(reached(event(type)), type).toEqual(consumers);
        expect(reached(event(type))).not.toContain(serviceName(step.name));
      }
    }
  });

  it("matches on every attribute a filter names (source, subject, extensions), exactly", () => {
    const own = [{ name: "t", broker: "b", subscriber: "s", filter: { type: "x", source: "/a", subject: "p", region: "eu" } }];
    expect(routeEvent(own, "b", event("x", { source: "/a", subject: "p", extensions: { region: "eu" } }))).toHaveLength(1);
    expect(routeEvent(own, "other", event("x", { source: "/a", subject: "p", extensions: { region: "eu" } }))).toHaveLength(0);
    expect(routeEvent(own, "b", event("x", { source: "/a", subject: "p", extensions: { region: "EU" } }))).toHaveLength(0);
    expect(routeEvent(own, "b", event("x", { source: "/a", extensions: { region: "eu" } }))).toHaveLength(0);
    expect(routeEvent(own, "b", event("x", { source: "/b", subject: "p", extensions: { region: "eu" } }))).toHaveLength(0);
  });

  it("refuses a Trigger with a delivery spec of its own (Knative would use it instead of the Broker's)", () => {
    const own = TRIGGERS.replace("spec:\n  broker: podcert\n", "spec:\n  broker: podcert\n  delivery: {timeout: PT5S}\n");
    expect(own).not.toBe(TRIGGERS);
    expect(() => parseTriggers(own, "t.yaml")).toThrow(/t.yaml: Trigger podcert-validate-pcr-add sets its own delivery spec/);
  });

  it("refuses a Trigger whose subscriber is not a Knative Service", () => {
    const uri = "kind: Trigger\nmetadata: {name: t}\nspec: {broker: podcert, subscriber: {uri: http://x}}\n";
    expect(() => parseTriggers(uri, "t.yaml")).toThrow(/Trigger t must name a Knative Service/);
  });

  it("knows the step behind each Knative Service, and no other", () => {
    for (const step of STEPS) expect(stepOfService(serviceName(step))).toBe(step);
    expect(stepOfService("podcert-dead-letter")).toBe("dead-letter");
    expect(stepOfService("podcert-event-display")).toBeUndefined();
  });
});

describe("retryable", () => {
  it.each([
    [200, false], [202, false], [204, false],
    [400, false], [401, false], [403, false], [405, false], [413, false], [415, false], [422, false],
    [404, true], [408, true], [409, true], [429, true], [500, true], [502, true], [503, true], [504, true],
  ])("HTTP %i: %s", (status, want) => expect(retryable(status)).toBe(want));
});

describe("the in-process pipeline routes by the same Triggers", () => {
  type Script = (e: PodcertEvent, attempt: number) => PodcertEvent | undefined;
  /** Stand-in functions with the registry's consumes/emits, answering as `scripts` say. */
  function pipeline(scripts: Partial<Record<StepName, Script>>, o: { maxAttempts?: number; routes?: InProcessPipeline["routes"] } = {}) {
    const calls: { step: StepName; type: string }[] = [];
    const attempts = new Map<string, number>();
    const functions = Object.fromEntries(
      STEP_REGISTRY.map((s): [StepName, FunctionDefinition] => [
        s.name,
        {
          step: s.name,
          consumes: s.consumes,
          emits: s.emits,
          async handle(e) {
            calls.push({ step: s.name, type: e.type });
            const n = (attempts.get(`${s.name}/${e.id}`) ?? 0) + 1;
            attempts.set(`${s.name}/${e.id}`, n);
            return scripts[s.name]?.(e, n);
          },
        },
      ]),
    ) as Record<StepName, FunctionDefinition>;
    const ctx = { log: silentLogger } as FunctionContext; // the stand-ins read nothing else
    const contexts = Object.fromEntries(STEPS.map((s) => [s, ctx])) as Record<StepName, FunctionContext>;
    const p: InProcessPipeline = { routes: o.routes ?? routes, broker: BROKER_NAME, functions, contexts, maxAttempts: o.maxAttempts ?? 4, backoffMs: 1 };
    return { p, calls };
  }
  const pcrAdd = () => event(EVENT_TYPES.apiServerAdd, { extensions: { kind: "PodCertificateRequest" } });

  it("follows the replies through validate, derive-sans and sign, as the broker would", async () => {
    const { p, calls } = pipeline({
      validate: () => event(EVENT_TYPES.validated),
      "derive-sans": () => event(EVENT_TYPES.sansDerived),
      sign: () => event(EVENT_TYPES.issued),
    });
    const hops = await deliver(p, pcrAdd());
    expect(hops.map((h) => [h.step, h.eventType, h.status])).toEqual([
      ["validate", EVENT_TYPES.apiServerAdd, 200],
      ["derive-sans", EVENT_TYPES.validated, 200],
      ["sign", EVENT_TYPES.sansDerived, 200],
    ]);
    expect(calls.map((c) => c.step)).toEqual(["validate", "derive-sans", "sign"]);
  });

  it("sends what no Trigger matches nowhere (another kind, a terminal type)", async () => {
    const { p, calls } = pipeline({});
    expect(await deliver(p, event(EVENT_TYPES.apiServerAdd, { extensions: { kind: "Pod" } }))).toEqual([]);
    expect(await deliver(p, event(EVENT_TYPES.issued))).toEqual([]);
    expect(calls).toEqual([]);
  });

  it("retries what the broker retries, with the same rule, and stops at maxAttempts", async () => {
    const transient = pipeline({ validate: () => { throw new TransientError("not yet"); } }, { maxAttempts: 3 });
    expect(await deliver(transient.p, pcrAdd())).toEqual([expect.objectContaining({ step: "validate", status: 503, attempts: 3 })]);

    const thenOk = pipeline({ validate: (_e, n) => { if (n < 2) throw new TransientError("not yet", { overloaded: true }); return undefined; } });
    expect(await deliver(thenOk.p, pcrAdd())).toEqual([expect.objectContaining({ step: "validate", status: 204, attempts: 2 })]);

    const rejected = pipeline({ validate: () => { throw new RejectedEventError("bad", 403); } });
    expect(await deliver(rejected.p, pcrAdd())).toEqual([expect.objectContaining({ step: "validate", status: 403, attempts: 1 })]);
  });

  it("refuses Triggers that name a Service no registered step runs", () => {
    const ghost = [...routes, { name: "ghost", broker: BROKER_NAME, filter: { type: EVENT_TYPES.issued }, subscriber: "podcert-auditor" }];
    expect(() => checkRoutes({ routes: ghost, broker: BROKER_NAME })).toThrow(/Trigger ghost names Service podcert-auditor, which runs no registered step/);
    expect(() => checkRoutes({ routes, broker: BROKER_NAME })).not.toThrow();
  });
});
