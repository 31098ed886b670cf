// The step registry (shared/steps.ts) is the only list of steps: what it says must hold for the
// handlers it names, and no other source may list the steps again.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadFunctions } from "../../local-cluster/functions.js";
import { attestationEdges, ATTESTING_STEPS, edgeKid, edgesOf, EVENT_TYPES, KEYED_STEPS, STEP_REGISTRY, STEPS, stepEntry } from "../../shared/steps.js";
import { acceptsFrom, attestsTo } from "../helpers/edges.js";

describe("the step registry", () => {
  it("names each step once, and each name is a folder of functions/ with a handler", () => {
    expect(new Set(STEPS).size).toBe(STEPS.length);
    const folders = readdirSync("functions", { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect([...folders].sort()).toEqual([...STEPS].sort());
  });

  it("is what each handler module exports, under the registered name", async () => {
    const functions = await loadFunctions();
    for (const s of STEP_REGISTRY) {
      expect(functions[s.name].step).toBe(s.name);
      expect(functions[s.name].consumes).toEqual(s.consumes);
      expect(functions[s.name].emits).toEqual(s.emits);
    }
  });

  it("uses only the declared event types", () => {
    const types = new Set<string>(Object.values(EVENT_TYPES));
    for (const s of STEP_REGISTRY) for (const t of [...s.consumes, ...s.emits]) expect(types.has(t), `${s.name}: ${t}`).toBe(true);
  });

  it("lets a step accept attestations only from earlier steps that attest", () => {
    for (const [i, step] of STEPS.entries()) {
      for (const from of acceptsFrom(step)) {
        expect(STEPS.indexOf(from), `${step} accepts ${from}`).toBeGreaterThanOrEqual(0);
        expect(STEPS.indexOf(from), `${step} accepts ${from}`).toBeLessThan(i);
        expect(ATTESTING_STEPS).toContain(from);
      }
    }
  });

  it("lists the attestation edges, one per (sender, receiver) the registry's acceptsAttestationsFrom names", () => {
    expect(attestationEdges().map(edgeKid)).toEqual([
      "validate->derive-sans",
      "validate->sign",
      "derive-sans->sign",
      "validate->deny",
      "derive-sans->deny",
      "sign->deny",
    ]);
    // Each edge once; every kid distinct and ASCII (it goes into JWS headers and JWK Sets).
    const kids = attestationEdges().map(edgeKid);
    expect(new Set(kids).size).toBe(kids.length);
    for (const k of kids) expect(k).toMatch(/^[a-z-]+->[a-z-]+$/);
    for (const step of STEPS) for (const from of acceptsFrom(step)) expect(kids).toContain(edgeKid({ from, to: step }));
  });

  it("gives every step that hands on at least one receiver, and the dead-letter sink no edge", () => {
    for (const step of ATTESTING_STEPS) expect(attestsTo(step).length, step).toBeGreaterThan(0);
    expect(attestsTo("validate")).toEqual(["derive-sans", "sign", "deny"]);
    expect(edgesOf("sign").map(edgeKid)).toEqual(["validate->sign", "derive-sans->sign", "sign->deny"]);
    for (const step of ["dead-letter", "publish-trust", "resync"] as const) expect(edgesOf(step), step).toEqual([]);
  });

  it("gives the CA pool only to steps that issue", () => {
    for (const s of STEP_REGISTRY) expect(stepEntry(s.name).holdsCaPool, s.name).toBe((s.emits as readonly string[]).includes(EVENT_TYPES.issued));
  });

  it("has one dead-letter sink: routed by no Trigger (consumes nothing), replying nothing, holding nothing, without Kubernetes access or step keys", () => {
    const sinks = STEP_REGISTRY.filter((s) => s.deadLetterSink);
    expect(sinks.map((s) => s.name)).toEqual(["dead-letter"]);
    for (const s of sinks) {
      expect(s).toMatchObject({ consumes: [], emits: [], acceptsAttestationsFrom: [], holdsCaPool: false, publishesTrust: false, postsToBroker: false, usesKubernetes: false });
      expect(KEYED_STEPS).not.toContain(s.name);
    }
    expect([...KEYED_STEPS].sort()).toEqual(STEP_REGISTRY.filter((s) => !s.deadLetterSink).map((s) => s.name).sort());
    // What needs the API (the CA pool's writes, trust publication, resync's listing) needs Kubernetes.
    for (const s of STEP_REGISTRY) if (s.holdsCaPool || s.publishesTrust || s.postsToBroker || s.consumes.length > 0) expect(s.usesKubernetes, s.name).toBe(true);
  });
});

describe("no other list of steps", () => {
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : /\.(ts|mjs)$/.test(e.name) ? [join(dir, e.name)] : []));
  // bench/ is left out: its cold-start scenario is a Record<StepName, event>, so a new step fails
  // the type check there rather than being silently left out.
  const files = [...["shared", "functions", "cli", "local-cluster", "bin"].flatMap(sources), "esbuild.config.mjs"].filter((f) => f !== join("shared", "steps.ts"));
  // A list of steps names them all; a handler naming itself and the steps it expects attestations
  // from, or a benchmark scenario running some of them, is not one.
  const namesEveryStep = (file: string) => {
    const text = readFileSync(file, "utf8");
    return STEPS.every((s) => text.includes(`"${s}"`) || text.includes(`'${s}'`));
  };

  it("finds the sources it checks", () => {
    expect(files).toContain(join("cli", "main.ts"));
    expect(files).toContain(join("bin", "serve.mjs"));
    expect(files).toContain("esbuild.config.mjs");
  });

  // Or three or more step names in a row, joined as prose or usage text joins them.
  const run = new RegExp(`\\b(${STEPS.join("|")})((\\||, | or | and |/)(${STEPS.join("|")})){2,}\\b`);
  const runsSteps = (file: string) => run.test(readFileSync(file, "utf8"));

  it("has no source naming every step but the registry", () => {
    expect(files.filter(namesEveryStep)).toEqual([]);
    expect(files.filter(runsSteps)).toEqual([]);
    expect(runsSteps(join("shared", "steps.ts"))).toBe(false); // the registry lists them as entries
    expect(run.test("podcert invoke <validate|derive-sans|sign|deny> --event")).toBe(true);
    // The check does see a list: the registry itself is one.
    expect(namesEveryStep(join("shared", "steps.ts"))).toBe(true);
  });
});
