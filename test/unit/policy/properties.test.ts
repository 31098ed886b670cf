// Properties of the whole decision path (validate → derive-sans → sign, pure functions called as the
// handlers call them) over random clusters and requests (issue 11). Generators, the path and the
// oracle are in properties.world.ts. fast-check prints the seed and the shrunk counterexample of a
// failure; replay it with { seed, path } in fc.assert's options.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RequestDeniedError } from "../../../shared/errors.js";
import { MAX_CONDITION_MESSAGE_BYTES } from "../../../shared/limits.js";
import type { Service } from "../../../shared/pcr/model.js";
import { pcrStatusUpdateErrors } from "../../../shared/pcr/status-rules.js";
import { deniedStatus } from "../../../shared/pcr/status.js";
import { checkUserAnnotations, parseExpectsService, type ServiceSelection } from "../../../shared/policy/annotations.js";
import { DENIAL_REASONS, isDenialReason } from "../../../shared/policy/reasons.js";
import { decideSans, deriveDnsNames } from "../../../shared/policy/sans.js";
import { defaultSignerConfig, ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../../../shared/profiles/defaults.js";
import {
  arbWorld,
  buildPcr,
  buildPod,
  CONFIGS,
  expectsValue,
  isDnsName,
  namesFrom,
  own,
  NOW,
  podServiceAccount,
  run,
  selectsPod,
  SERVICE_NAMES,
  summary,
  uniqueServices,
  type Outcome,
  type WorldCase,
} from "./properties.world.js";

const RUNS = { numRuns: 200 };

/** The opt-in value the request carries for its signer, if its profile has an opt-in. */
function optInValue(w: WorldCase): string | undefined {
  const key = own(w.cfg.signers, w.request.signerName)?.optIn;
  const a = w.request.userAnnotations;
  return key !== undefined && a !== undefined && Object.hasOwn(a, key) ? a[key] : undefined;
}

/** What the oracle says the pod may get for its opt-in: every selecting Service's names, or the named ones'. */
function oracleDnsNames(w: WorldCase, value: string): { names: string[]; missing: string[] } {
  const selecting = w.services.filter((s) => selectsPod(s, w.pod));
  const wanted = value === "true" ? selecting : selecting.filter((s) => value.split(",").map((i) => i.trim()).includes(s.metadata.name));
  const missing = value === "true" ? (selecting.length === 0 ? ["any"] : []) : value.split(",").map((i) => i.trim()).filter((i) => !selecting.some((s) => s.metadata.name === i));
  return { names: [...new Set(wanted.flatMap((s) => namesFrom(s, w.pod, w.cfg.clusterDomain)))].sort(), missing };
}

/** Property 2's checks, for one world and its outcome. */
function checkDerivable(w: WorldCase, o: Outcome): void {
  if (o.kind === "waiting" && o.step === "derive-sans") {
    // Waiting for Services only when the pod opted in and a Service it needs does not select it (yet).
    const value = optInValue(w);
    expect(value).toBeDefined();
    expect(oracleDnsNames(w, value!).missing.length, o.message).toBeGreaterThan(0);
    return;
  }
  if (o.kind !== "issued") return;
  expect(w.podLater.change, "issued only to a pod that is still there, unchanged").toBe("none");
  const signer = own(w.cfg.signers, w.request.signerName);
  expect(signer, "issued only for a configured signer").toBeDefined();
  if (!signer) return;
  const ns = w.pod.namespace;
  const nsLabel = w.namespaceLabels[ns];
  expect(signer.inScope(ns, nsLabel === "missing" ? undefined : nsLabel === undefined ? {} : { "podcert.ate.dev/workerpool": nsLabel })).toBe(true);
  expect(o.uris).toEqual([`spiffe://${signer.trustDomain}/ns/${ns}/sa/${podServiceAccount(w.pod)}`]);
  const asked = w.request.maxExpirationSeconds ?? 86400;
  expect(o.lifetimeSeconds).toBe(Math.max(3600, Math.min(signer.maxLifetime, asked)));
  // Only the opt-in key is ever accepted.
  for (const k of Object.keys(w.request.userAnnotations ?? {})) expect(k).toBe(signer.optIn);

  for (const n of o.dnsNames) {
    expect(n).not.toContain("*");
    expect(isDnsName(n), n).toBe(true);
  }
  expect(new Set(o.dnsNames).size).toBe(o.dnsNames.length);
  expect(o.dnsNames.length).toBeLessThanOrEqual(signer.maxNames);
  const value = optInValue(w);
  if (value === undefined) {
    expect(o.dnsNames).toEqual([]);
    return;
  }
  const want = oracleDnsNames(w, value);
  expect(want.missing).toEqual([]);
  expect([...o.dnsNames].sort()).toEqual(want.names);
  expect(o.dnsNames.length).toBeGreaterThan(0);
}

/** Property 3's checks: a documented reason, a message bounded to what a condition holds, a status kube-apiserver takes. */
function checkDenial(w: WorldCase, o: Outcome): void {
  if (o.kind !== "denied") return;
  expect(o.error).toBeInstanceOf(RequestDeniedError);
  expect(isDenialReason(o.error.reason), o.error.reason).toBe(true);
  expect(o.error.permanent).toBe(false);
  expect(Buffer.byteLength(o.error.message)).toBeLessThanOrEqual(MAX_CONDITION_MESSAGE_BYTES);
  expect(o.error.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/u);
  const status = deniedStatus({ reason: o.error.reason, message: o.error.message, permanent: false, now: NOW });
  expect(pcrStatusUpdateErrors(buildPcr(w), status, NOW)).toEqual([]);
}

describe("properties of the request's path over random clusters and requests", () => {
  it("1. never throws, whatever the pods, Services, namespaces and requests; every outcome is reached", () => {
    const seen = { ignored: 0, denied: 0, waiting: 0, issued: 0, issuedWithNames: 0 };
    const reasons = new Set<string>();
    fc.assert(
      fc.property(arbWorld, (w) => {
        const o = run(w); // a throw fails the property
        seen[o.kind]++;
        if (o.kind === "issued" && o.dnsNames.length > 0) seen.issuedWithNames++;
        if (o.kind === "denied") reasons.add(`${o.step} ${o.error.reason}`);
      }),
      { numRuns: 400 },
    );
    // The generators must reach every branch often enough for the other properties to mean something.
    expect(seen.issued, JSON.stringify(seen)).toBeGreaterThan(30);
    expect(seen.issuedWithNames, JSON.stringify(seen)).toBeGreaterThan(5);
    expect(seen.waiting, JSON.stringify(seen)).toBeGreaterThan(10);
    expect(seen.ignored, JSON.stringify(seen)).toBeGreaterThan(10);
    // Every documented reason, and the denials of the later steps (derive-sans, sign).
    expect(new Set([...reasons].map((r) => r.split(" ")[1]))).toEqual(new Set(DENIAL_REASONS));
    expect([...reasons].filter((r) => !r.startsWith("validate ")).length, [...reasons].join(", ")).toBeGreaterThan(0);
  });

  it("2. every SAN issued is derivable: the profile's SPIFFE ID, and DNS names only from Services in the pod's namespace that select it, when it opted in", () => {
    fc.assert(
      fc.property(arbWorld, (w) => checkDerivable(w, run(w))),
      { numRuns: 400 },
    );
  });

  it("3. every denial has a documented reason and a message a status condition holds", () => {
    fc.assert(
      fc.property(arbWorld, (w) => checkDenial(w, run(w))),
      RUNS,
    );
  });
});

describe("consistency properties", () => {
  it("adding or removing Services in other namespaces never changes the outcome", () => {
    const withForeign = arbWorld.chain((w) => uniqueServices(w.pod, 6).map((extra) => ({ w, extra })));
    fc.assert(
      fc.property(withForeign, ({ w, extra }) => {
        const here = new Set([w.pod.namespace, w.request.namespace ?? w.pod.namespace]);
        const taken = new Set(w.services.map((s) => `${s.metadata.namespace}/${s.metadata.name}`));
        const foreign = extra.filter((s) => !here.has(s.metadata.namespace!) && !taken.has(`${s.metadata.namespace}/${s.metadata.name}`));
        const before = summary(run(w));
        expect(summary(run({ ...w, services: [...w.services, ...foreign] }))).toEqual(before);
        expect(summary(run({ ...w, services: w.services.filter((s) => here.has(s.metadata.namespace!)) }))).toEqual(before);
      }),
      RUNS,
    );
  });

  it("the order of the Services never changes the outcome", () => {
    const shuffled = arbWorld.chain((w) => fc.shuffledSubarray(w.services, { minLength: w.services.length, maxLength: w.services.length }).map((s) => ({ w, s })));
    fc.assert(
      fc.property(shuffled, ({ w, s }) => {
        expect(summary(run({ ...w, services: s }))).toEqual(summary(run(w)));
      }),
      RUNS,
    );
  });

  it("removing the opt-in annotation removes every DNS name, and only them", () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const key = own(w.cfg.signers, w.request.signerName)?.optIn;
        if (key === undefined) return;
        const { [key]: _, ...rest } = w.request.userAnnotations ?? {};
        const without = run({ ...w, request: { ...w.request, userAnnotations: rest } });
        if (without.kind === "issued") expect(without.dnsNames).toEqual([]);
        const before = run(w);
        if (before.kind === "issued") {
          expect(without.kind).toBe("issued");
          if (without.kind === "issued") expect({ uris: without.uris, lifetimeSeconds: without.lifetimeSeconds }).toEqual({ uris: before.uris, lifetimeSeconds: before.lifetimeSeconds });
        }
      }),
      RUNS,
    );
  });

  it("a Service that does not select the pod, added to its namespace, changes no certificate", () => {
    const notSelecting = fc.record({
      name: fc.constantFrom("zz-new", "zz-new-2"),
      how: fc.constantFrom("noSelector", "emptySelector", "otherLabels", "externalName"),
      headless: fc.boolean(),
    });
    fc.assert(
      fc.property(arbWorld, notSelecting, (w, n) => {
        const before = run(w);
        if (before.kind !== "issued") return;
        const s: Service = { metadata: { name: n.name, namespace: w.pod.namespace }, spec: { ...(n.headless ? { clusterIP: "None" } : {}) } };
        if (n.how === "emptySelector") s.spec.selector = {};
        if (n.how === "otherLabels") s.spec.selector = { "zz.example/never": "x" };
        if (n.how === "externalName") Object.assign(s.spec, { type: "ExternalName", selector: Object.fromEntries(Object.entries(w.pod.labels).slice(0, 1)) });
        expect(summary(run({ ...w, services: [...w.services, s] }))).toEqual(summary(before));
      }),
      RUNS,
    );
  });

  it("validate never reads Services: its denials are the same whatever Services exist", () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const before = run(w);
        if (before.kind === "denied" && before.step === "validate") expect(summary(run({ ...w, services: [] }))).toEqual(summary(before));
      }),
      RUNS,
    );
  });
});

describe("the decisions alone, on arbitrary input", () => {
  const ate = defaultSignerConfig().signers.get(ATESYSTEM_SIGNER)!;
  const workerpool = defaultSignerConfig().signers.get(WORKERPOOL_SIGNER)!;

  it("checkUserAnnotations never throws and refuses only with its two reasons, whatever the map", () => {
    const anyString = fc.string({ unit: "binary", maxLength: 64 });
    const map = fc.oneof(
      fc.dictionary(anyString, fc.oneof(anyString, expectsValue), { maxKeys: 40 }),
      fc.tuple(fc.constantFrom(ate.dnsNames!.optInAnnotation), fc.oneof(anyString, expectsValue)).map(([k, v]) => ({ [k]: v })),
    );
    fc.assert(
      fc.property(map, fc.constantFrom(ate, workerpool), (a, profile) => {
        const r = checkUserAnnotations(a, profile);
        if (!r.ok) {
          expect(["InvalidUnverifiedUserAnnotations", "TooManyDNSNames"]).toContain(r.reason);
          // Before RequestDeniedError bounds it: the message quotes at most five short items.
          expect(Buffer.byteLength(r.message)).toBeLessThan(8 * 1024);
          return;
        }
        if (r.services.kind !== "none") expect(profile.dnsNames).toBeDefined();
      }),
      { numRuns: 500 },
    );
  });

  it("parseExpectsService never throws, for any value and any maxNames", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), expectsValue), fc.integer({ min: 0, max: 1000 }), (value, maxNames) => {
        const r = parseExpectsService(value, maxNames);
        if (r.ok && r.services.kind === "named") expect(r.services.names.length * 2).toBeLessThanOrEqual(maxNames);
      }),
      { numRuns: 500 },
    );
  });

  it("decideSans throws only its documented TypeError, only when the live pod and Services were not read for an opt-in", () => {
    const selection = fc.oneof(
      fc.constant<ServiceSelection>({ kind: "none" }),
      fc.constant<ServiceSelection>({ kind: "all" }),
      fc.uniqueArray(fc.constantFrom(...SERVICE_NAMES), { minLength: 1 }).map((names): ServiceSelection => ({ kind: "named", names })),
    );
    const cfg = CONFIGS[0]!;
    fc.assert(
      fc.property(arbWorld, selection, fc.boolean(), (w, services, read) => {
        const live = read ? { pod: buildPod(w.pod), services: w.services } : undefined;
        const facts = {
          profile: ate,
          clusterDomain: cfg.clusterDomain,
          namespace: w.pod.namespace,
          validated: { podName: w.pod.name, podUID: w.pod.uid, serviceAccountName: podServiceAccount(w.pod), services },
          live,
        };
        if (live === undefined && services.kind !== "none") expect(() => decideSans(facts)).toThrow(TypeError);
        else decideSans(facts);
      }),
      { numRuns: 200 },
    );
  });

  it("deriveDnsNames, handed every Service of the cluster (any namespace), derives exactly the oracle's names for what the pod asked", () => {
    const selection = fc.oneof(
      fc.constant<ServiceSelection>({ kind: "all" }),
      fc.uniqueArray(fc.constantFrom(...SERVICE_NAMES), { minLength: 1, maxLength: 3 }).map((names): ServiceSelection => ({ kind: "named", names })),
    );
    let derivedRuns = 0;
    fc.assert(
      fc.property(arbWorld, selection, (w, sel) => {
        const facts = { namespace: w.pod.namespace, clusterDomain: w.cfg.clusterDomain, maxNames: 1000, pod: buildPod(w.pod), selection: sel };
        const d = deriveDnsNames({ ...facts, services: w.services });
        // The same as when handed only the pod's namespace's Services, as the handler reads them.
        expect(d).toEqual(deriveDnsNames({ ...facts, services: w.services.filter((s) => s.metadata.namespace === w.pod.namespace) }));
        const want = oracleDnsNames(w, sel.kind === "named" ? sel.names.join(",") : "true");
        if (want.missing.length > 0) {
          expect(d.outcome).toBe("waiting");
          return;
        }
        expect(d.outcome).toBe("derived");
        if (d.outcome === "derived") expect([...d.dnsNames].sort()).toEqual(want.names);
        derivedRuns++;
      }),
      { numRuns: 300 },
    );
    expect(derivedRuns).toBeGreaterThan(20);
  });
});
