import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RequestDeniedError } from "../../../shared/errors.js";
import type { Pod, Service } from "../../../shared/pcr/model.js";
import type { ServiceSelection } from "../../../shared/policy/annotations.js";
import { decideSans, deriveDnsNames, serviceDnsNames, serviceIneligibility, type SanFacts, type SansDecision, type SansFacts } from "../../../shared/policy/sans.js";
import { ATESYSTEM_SIGNER, defaultSignerConfig, WORKERPOOL_SIGNER } from "../../../shared/profiles/defaults.js";
import { NS, POD_NAME, POD_UID, pod, SA_NAME, service } from "../../helpers/objects.js";

const CD = "cluster.local";

function facts(o: Partial<SanFacts> & { selection: ServiceSelection }): SanFacts {
  return { namespace: NS, clusterDomain: CD, maxNames: 100, pod: pod(), services: [], ...o };
}

/** The two names every eligible Service gives. */
const svcNames = (svc: string, ns = NS, cd = CD) => [`${svc}.${ns}.svc`, `${svc}.${ns}.svc.${cd}`];

function derived(d: ReturnType<typeof deriveDnsNames>): string[] {
  expect(d.outcome, JSON.stringify(d)).toBe("derived");
  return d.outcome === "derived" ? d.dnsNames : [];
}

function waiting(d: ReturnType<typeof deriveDnsNames>): string {
  expect(d.outcome, JSON.stringify(d)).toBe("waiting");
  return d.outcome === "waiting" ? d.message : "";
}

describe("serviceIneligibility", () => {
  const labels = { app: "web", tier: "front" };

  it.each([
    { case: "ClusterIP", svc: service("s", { type: "ClusterIP" }) },
    { case: "type absent (ClusterIP by default)", svc: service("s", { type: null }) },
    { case: "headless ClusterIP", svc: service("s", { headless: true }) },
    { case: "NodePort", svc: service("s", { type: "NodePort" }) },
    { case: "LoadBalancer", svc: service("s", { type: "LoadBalancer" }) },
    { case: "a selector that is a subset of the labels", svc: service("s", { selector: { tier: "front" } }) },
    { case: "a selector equal to the labels", svc: service("s", { selector: { app: "web", tier: "front" } }) },
  ])("eligible: $case", ({ svc }) => {
    expect(serviceIneligibility(svc, labels)).toBeUndefined();
  });

  it.each([
    { case: "ExternalName", svc: service("s", { type: "ExternalName" }), why: /type ExternalName/ },
    { case: "an unknown type", svc: service("s", { type: "Weird" }), why: /type Weird/ },
    { case: "no selector", svc: service("s", { selector: null }), why: /has no selector/ },
    { case: "an empty selector", svc: service("s", { selector: {} }), why: /has no selector/ },
    { case: "a selector on other labels", svc: service("s", { selector: { app: "db" } }), why: /does not select the pod.*app=db/ },
    { case: "a partial selector mismatch", svc: service("s", { selector: { app: "web", tier: "back" } }), why: /tier=back/ },
    { case: "a selector on a label the pod lacks", svc: service("s", { selector: { app: "web", zone: "a" } }), why: /zone=a/ },
  ])("not eligible: $case", ({ svc, why }) => {
    expect(serviceIneligibility(svc, labels)).toMatch(why);
  });

  it("names only the selector pairs that do not match", () => {
    const why = serviceIneligibility(service("s", { selector: { app: "web", tier: "back" } }), labels);
    expect(why).not.toContain("app=web");
  });

  // Found by properties.test.ts: a Service name kube-apiserver would refuse made a bad or wildcard SAN.
  it.each(["", "*", "Web", "a.b", "s".repeat(64)])("not eligible: a name that is not a DNS-1035 label (%j)", (name) => {
    expect(serviceIneligibility(service(name), labels)).toMatch(/not a DNS-1035 label/);
  });

  it("is not fooled by inherited properties of the label map", () => {
    expect(serviceIneligibility(service("s", { selector: { constructor: "x" } }), {})).toMatch(/does not select/);
  });
});

describe("serviceDnsNames", () => {
  it("gives <svc>.<ns>.svc and its cluster-domain form", () => {
    expect(serviceDnsNames(service("web"), pod(), "prod", "example.internal")).toEqual(["web.prod.svc", "web.prod.svc.example.internal"]);
  });

  it("adds the per-pod names (both forms) for a headless Service named by spec.subdomain when spec.hostname is set", () => {
    const p = pod({ hostname: "web-0", subdomain: "web" });
    expect(serviceDnsNames(service("web", { headless: true }), p, NS, CD)).toEqual([
      ...svcNames("web"),
      `web-0.web.${NS}.svc`,
      `web-0.web.${NS}.svc.${CD}`,
    ]);
  });

  it.each([
    { case: "headless, named by subdomain, no hostname", svc: service("web", { headless: true }), p: pod({ subdomain: "web" }) },
    { case: "headless, hostname set, subdomain names another Service", svc: service("web", { headless: true }), p: pod({ hostname: "web-0", subdomain: "other" }) },
    { case: "headless, hostname set, no subdomain", svc: service("web", { headless: true }), p: pod({ hostname: "web-0" }) },
    { case: "not headless, named by subdomain, hostname set", svc: service("web"), p: pod({ hostname: "web-0", subdomain: "web" }) },
    { case: "headless, hostname not a DNS label", svc: service("web", { headless: true }), p: pod({ hostname: "Web_0", subdomain: "web" }) },
    { case: "headless, hostname over 63 characters", svc: service("web", { headless: true }), p: pod({ hostname: "h".repeat(64), subdomain: "web" }) },
  ])("no per-pod names: $case", ({ svc, p }) => {
    expect(serviceDnsNames(svc, p, NS, CD)).toEqual(svcNames("web"));
  });
});

describe("deriveDnsNames", () => {
  it("derives nothing when the pod did not opt in", () => {
    expect(deriveDnsNames(facts({ selection: { kind: "none" }, services: [service("web")] }))).toEqual({ outcome: "derived", dnsNames: [] });
  });

  describe('"all"', () => {
    it("with one eligible Service: its two names", () => {
      expect(derived(deriveDnsNames(facts({ selection: { kind: "all" }, services: [service("web")] })))).toEqual(svcNames("web"));
    });

    it("with several eligible Services: all their names, and none from ineligible ones", () => {
      const services = [
        service("web"),
        service("metrics", { type: "NodePort" }),
        service("lb", { type: "LoadBalancer" }),
        service("db", { selector: { app: "db" } }),
        service("ext", { type: "ExternalName", selector: null }),
        service("bare", { selector: null }),
        service("partial", { selector: { app: "web", tier: "back" } }),
      ];
      const names = derived(deriveDnsNames(facts({ selection: { kind: "all" }, services })));
      expect(names).toEqual([...svcNames("lb"), ...svcNames("metrics"), ...svcNames("web")]);
    });

    it.each([
      { case: "no Services at all", services: [] as Service[] },
      { case: "only ineligible Services", services: [service("ext", { type: "ExternalName" }), service("bare", { selector: null }), service("db", { selector: { app: "db" } })] },
    ])("with no eligible Service: waits, never derives an empty list ($case)", ({ services }) => {
      const message = waiting(deriveDnsNames(facts({ selection: { kind: "all" }, services })));
      expect(message).toContain(pod().metadata.name);
      expect(message).toContain(NS);
    });

    it("includes per-pod names for the headless Service named by the pod's subdomain", () => {
      const p = pod({ hostname: "web-0", subdomain: "web-hl" });
      const services = [service("web"), service("web-hl", { headless: true })];
      expect(derived(deriveDnsNames(facts({ pod: p, selection: { kind: "all" }, services })))).toEqual([
        ...svcNames("web"),
        ...svcNames("web-hl"),
        `web-0.web-hl.${NS}.svc`,
        `web-0.web-hl.${NS}.svc.${CD}`,
      ]);
    });

    // Found by properties.test.ts (seed 797229592): "" and "*" Services gave ".ate-system.svc" and "*.ate-system.svc".
    it("never derives a name from a Service whose name is not a DNS-1035 label", () => {
      const services = [service(""), service("*"), service("Web"), service("web")];
      expect(derived(deriveDnsNames(facts({ selection: { kind: "all" }, services })))).toEqual(svcNames("web"));
      waiting(deriveDnsNames(facts({ selection: { kind: "all" }, services: [service("*")] })));
    });

    // Found by properties.test.ts: Services of another namespace, handed in, named the pod in its own.
    it("ignores Services of another namespace that a caller hands it", () => {
      const services = [service("web", { namespace: "tenant" }), service("api")];
      expect(derived(deriveDnsNames(facts({ selection: { kind: "all" }, services })))).toEqual(svcNames("api"));
      waiting(deriveDnsNames(facts({ selection: { kind: "all" }, services: [service("web", { namespace: "tenant" })] })));
      expect(waiting(deriveDnsNames(facts({ selection: { kind: "named", names: ["web"] }, services: [service("web", { namespace: "tenant" })] })))).toBe(`Service ${NS}/web does not exist`);
    });

    it("lists each name once when the same Service appears twice", () => {
      const names = derived(deriveDnsNames(facts({ selection: { kind: "all" }, services: [service("web"), service("web")] })));
      expect(names).toEqual(svcNames("web"));
    });
  });

  describe("named Services", () => {
    it("derives exactly the named ones, ignoring other eligible Services", () => {
      const services = [service("web"), service("metrics"), service("other")];
      const names = derived(deriveDnsNames(facts({ selection: { kind: "named", names: ["web", "metrics"] }, services })));
      expect(names).toEqual([...svcNames("metrics"), ...svcNames("web")]);
    });

    it.each([
      { case: "missing", services: [service("web")], why: /Service ate-system\/api does not exist/ },
      { case: "ExternalName", services: [service("web"), service("api", { type: "ExternalName", selector: null })], why: /Service ate-system\/api is of type ExternalName/ },
      { case: "selector-less", services: [service("web"), service("api", { selector: null })], why: /Service ate-system\/api has no selector/ },
      { case: "not selecting the pod", services: [service("web"), service("api", { selector: { app: "api" } })], why: /Service ate-system\/api does not select the pod/ },
      { case: "selecting only partly", services: [service("web"), service("api", { selector: { app: "web", tier: "x" } })], why: /Service ate-system\/api does not select the pod.*tier=x/ },
    ])("waits when one named Service is $case (never issues without its names)", ({ services, why }) => {
      const message = waiting(deriveDnsNames(facts({ selection: { kind: "named", names: ["web", "api"] }, services })));
      expect(message).toMatch(why);
      expect(message).not.toContain("ate-system/web");
    });

    it("names every problem at once", () => {
      const services = [service("ext", { type: "ExternalName" })];
      const message = waiting(deriveDnsNames(facts({ selection: { kind: "named", names: ["gone", "ext"] }, services })));
      expect(message).toContain("Service ate-system/gone does not exist");
      expect(message).toContain("Service ate-system/ext is of type ExternalName");
    });

    it("a NodePort, a LoadBalancer and a Service without type all qualify", () => {
      const services = [service("np", { type: "NodePort" }), service("lb", { type: "LoadBalancer" }), service("plain", { type: null })];
      const names = derived(deriveDnsNames(facts({ selection: { kind: "named", names: ["np", "lb", "plain"] }, services })));
      expect(names).toEqual([...svcNames("lb"), ...svcNames("np"), ...svcNames("plain")]);
    });

    it("gives per-pod names for a named headless Service that the pod's subdomain names", () => {
      const p = pod({ hostname: "db-2", subdomain: "db" });
      const names = derived(deriveDnsNames(facts({ pod: p, selection: { kind: "named", names: ["db"] }, services: [service("db", { headless: true })] })));
      expect(names).toEqual([...svcNames("db"), `db-2.db.${NS}.svc`, `db-2.db.${NS}.svc.${CD}`]);
    });

    it("uses the cluster domain and namespace it is given", () => {
      const names = derived(
        deriveDnsNames(facts({ namespace: "prod", clusterDomain: "corp.example", selection: { kind: "named", names: ["web"] }, services: [service("web", { namespace: "prod" })] })),
      );
      expect(names).toEqual(["web.prod.svc", "web.prod.svc.corp.example"]);
    });
  });

  it("orders names by Service name whatever order the Services come in", () => {
    const services = ["m", "a", "z", "b"].map((n) => service(n));
    const expected = ["a", "b", "m", "z"].flatMap((n) => svcNames(n));
    fc.assert(
      fc.property(fc.shuffledSubarray(services, { minLength: 4, maxLength: 4 }), (shuffled) => {
        expect(derived(deriveDnsNames(facts({ selection: { kind: "all" }, services: shuffled })))).toEqual(expected);
        expect(derived(deriveDnsNames(facts({ selection: { kind: "named", names: ["z", "a", "m", "b"] }, services: shuffled })))).toEqual(expected);
      }),
    );
  });

  it("does not reorder the caller's Service list", () => {
    const services = [service("z"), service("a")];
    deriveDnsNames(facts({ selection: { kind: "all" }, services }));
    expect(services.map((s) => s.metadata.name)).toEqual(["z", "a"]);
  });

  describe("the maxNames limit", () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => service(`svc-${String(i).padStart(3, "0")}`));

    it("allows exactly maxNames names", () => {
      expect(derived(deriveDnsNames(facts({ maxNames: 10, selection: { kind: "all" }, services: many(5) })))).toHaveLength(10);
    });

    it("denies more than maxNames with TooManyDNSNames and a message giving both numbers", () => {
      const d = deriveDnsNames(facts({ maxNames: 10, selection: { kind: "all" }, services: many(6) }));
      expect(d.outcome).toBe("denied");
      if (d.outcome !== "denied") return;
      expect(d.error).toBeInstanceOf(RequestDeniedError);
      expect(d.error.reason).toBe("TooManyDNSNames");
      expect(d.error.permanent).toBe(false);
      expect(d.error.message).toContain("12 DNS names");
      expect(d.error.message).toContain("at most 10");
    });

    it("denies names that together would not leave the chain room under kube-apiserver's 100 KiB", () => {
      // 250 Services with 60-character names in a 63-character namespace: 500 names, under
      // maxNames 1000, but about 64 KiB of names.
      const ns = "n".repeat(63);
      const services = Array.from({ length: 250 }, (_, i) => service(`s${String(i).padStart(59, "0")}`, { namespace: ns }));
      const p = pod({ namespace: ns });
      const d = deriveDnsNames(facts({ namespace: ns, pod: p, maxNames: 1000, selection: { kind: "all" }, services }));
      expect(d.outcome).toBe("denied");
      if (d.outcome !== "denied") return;
      expect(d.error.reason).toBe("TooManyDNSNames");
      expect(d.error.message).toMatch(/^the Services selecting the pod give 500 DNS names of \d+ bytes together; a certificate holds at most 61440 bytes of names/);
      // 200 of them fit.
      expect(derived(deriveDnsNames(facts({ namespace: ns, pod: p, maxNames: 1000, selection: { kind: "all" }, services: services.slice(0, 200) })))).toHaveLength(400);
    });

    it("with the default of 100: 50 Services pass, 51 are denied", () => {
      expect(derived(deriveDnsNames(facts({ selection: { kind: "all" }, services: many(50) })))).toHaveLength(100);
      expect(deriveDnsNames(facts({ selection: { kind: "all" }, services: many(51) })).outcome).toBe("denied");
    });

    it("counts per-pod names toward the limit", () => {
      const p = pod({ hostname: "h", subdomain: "svc-000" });
      const services = [service("svc-000", { headless: true }), service("svc-001")];
      expect(derived(deriveDnsNames(facts({ pod: p, maxNames: 6, selection: { kind: "all" }, services })))).toHaveLength(6);
      expect(deriveDnsNames(facts({ pod: p, maxNames: 5, selection: { kind: "all" }, services })).outcome).toBe("denied");
    });
  });

  describe("property: every name comes from an eligible Service that selects the pod", () => {
    // Small pools, so that selectors often match and named selections often name real Services.
    const labelKey = fc.constantFrom("app", "tier", "zone");
    const labelValue = fc.constantFrom("a", "b");
    const svcName = fc.constantFrom("web", "api", "db", "hl", "m0", "x9");
    const arbService = fc.record({
      name: svcName,
      type: fc.constantFrom<string | null>(null, "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"),
      selector: fc.option(fc.dictionary(labelKey, labelValue, { maxKeys: 2 }), { nil: null, freq: 6 }),
      headless: fc.boolean(),
    });
    const arbPod = fc.record({
      labels: fc.dictionary(labelKey, labelValue, { minKeys: 1, maxKeys: 3 }),
      hostname: fc.option(fc.constantFrom("h0", "h1", "Bad_Host"), { nil: undefined }),
      subdomain: fc.option(svcName, { nil: undefined }),
    });

    it("holds for random pods, Services and selections", () => {
      let derivedRuns = 0;
      fc.assert(
        fc.property(
          arbPod,
          fc.uniqueArray(arbService, { selector: (s) => s.name, maxLength: 6 }),
          fc.oneof(fc.constant<ServiceSelection>({ kind: "all" }), fc.uniqueArray(svcName, { minLength: 1, maxLength: 2 }).map((names): ServiceSelection => ({ kind: "named", names }))),
          fc.constantFrom("cluster.local", "corp.example"),
          (po, svcs, selection, clusterDomain) => {
            const p: Pod = pod({ labels: po.labels, ...(po.hostname ? { hostname: po.hostname } : {}), ...(po.subdomain ? { subdomain: po.subdomain } : {}) });
            const services = svcs.map((s) => {
              const o: Parameters<typeof service>[1] = { type: s.type, selector: s.selector, headless: s.headless };
              return service(s.name, o);
            });
            const d = deriveDnsNames({ namespace: NS, clusterDomain, maxNames: 1000, pod: p, services, selection });
            if (d.outcome !== "derived") {
              expect(d.outcome).toBe("waiting");
              return;
            }
            expect(d.dnsNames.length).toBeGreaterThan(0);
            derivedRuns++;
            expect(new Set(d.dnsNames).size).toBe(d.dnsNames.length);
            const byName = new Map(services.map((s) => [s.metadata.name, s]));
            for (const n of d.dnsNames) {
              const m = /^(?:([a-z0-9-]+)\.)?([a-z][a-z0-9]*)\.ate-system\.svc(\.(.+))?$/.exec(n);
              expect(m, n).not.toBeNull();
              if (!m) return;
              if (m[4] !== undefined) expect(m[4]).toBe(clusterDomain);
              expect(n.endsWith(".svc") || n.endsWith(`.svc.${clusterDomain}`)).toBe(true);
              const svc = byName.get(m[2]!);
              expect(svc, n).toBeDefined();
              const sel = svc!.spec.selector ?? {};
              expect(Object.keys(sel).length).toBeGreaterThan(0);
              for (const [k, v] of Object.entries(sel)) expect(p.metadata.labels?.[k]).toBe(v);
              expect(["ClusterIP", "NodePort", "LoadBalancer"]).toContain(svc!.spec.type ?? "ClusterIP");
              if (selection.kind === "named") expect(selection.names).toContain(m[2]);
              if (m[1] !== undefined) {
                // a per-pod name: the pod's hostname under the headless Service its subdomain names
                expect(m[1]).toBe(p.spec.hostname);
                expect(p.spec.subdomain).toBe(m[2]);
                expect(svc!.spec.clusterIP).toBe("None");
              }
            }
            // "waiting" is the only answer when a named Service cannot justify names, so a derived
            // list for a named selection covers every name.
            if (selection.kind === "named") {
              for (const name of selection.names) expect(d.dnsNames).toContain(`${name}.${NS}.svc`);
            }
          },
        ),
        { numRuns: 500 },
      );
      // The generators must reach the interesting branch often enough to mean something.
      expect(derivedRuns).toBeGreaterThan(25);
    });
  });
});

describe("decideSans: what derive-sans hands sign", () => {
  const ate = defaultSignerConfig().signers.get(ATESYSTEM_SIGNER)!;
  const workerpool = defaultSignerConfig().signers.get(WORKERPOOL_SIGNER)!;
  const SPIFFE = `spiffe://cluster.local/ns/${NS}/sa/${SA_NAME}`;
  const validated = (services: ServiceSelection, maxExpirationSeconds?: number): SansFacts["validated"] => ({
    podName: POD_NAME,
    podUID: POD_UID,
    serviceAccountName: SA_NAME,
    services,
    ...(maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds }),
  });
  const input = (o: Partial<SansFacts> & Pick<SansFacts, "validated">): SansFacts => ({
    profile: ate,
    clusterDomain: CD,
    namespace: NS,
    live: undefined,
    ...o,
  });
  /** The decision without the error object: outcome, and reason and message for a denial. */
  const summary = (d: SansDecision) => (d.outcome === "denied" ? { outcome: d.outcome, reason: d.error.reason, message: d.error.message } : d);

  it.each<{ case: string; facts: SansFacts; want: object }>([
    {
      case: "no Service names asked: the SPIFFE ID only, nothing read (the pod is not looked at)",
      facts: input({ validated: validated({ kind: "none" }) }),
      want: { outcome: "derived", uris: [SPIFFE], dnsNames: [], lifetimeSeconds: 86400 },
    },
    {
      case: "the request's maxExpirationSeconds caps the lifetime",
      facts: input({ validated: validated({ kind: "none" }, 7200) }),
      want: { outcome: "derived", uris: [SPIFFE], dnsNames: [], lifetimeSeconds: 7200 },
    },
    {
      case: "the profile's trust domain and maximum lifetime",
      facts: input({ profile: { ...workerpool, trustDomain: "example.org", maxLifetimeSeconds: 3600 }, validated: validated({ kind: "none" }) }),
      want: { outcome: "derived", uris: [`spiffe://example.org/ns/${NS}/sa/${SA_NAME}`], dnsNames: [], lifetimeSeconds: 3600 },
    },
    {
      case: "named Services that select the pod: their names",
      facts: input({ validated: validated({ kind: "named", names: ["api"] }), live: { pod: pod(), services: [service("api")] } }),
      want: { outcome: "derived", uris: [SPIFFE], dnsNames: svcNames("api"), lifetimeSeconds: 86400 },
    },
    {
      case: '"true": every eligible Service selecting the pod',
      facts: input({ validated: validated({ kind: "all" }), live: { pod: pod(), services: [service("b"), service("a"), service("other", { selector: { app: "x" } })] } }),
      want: { outcome: "derived", uris: [SPIFFE], dnsNames: [...svcNames("a"), ...svcNames("b")], lifetimeSeconds: 86400 },
    },
    {
      case: "the pod was deleted since validate: PodMismatch",
      facts: input({ validated: validated({ kind: "all" }), live: { pod: undefined, services: [service("api")] } }),
      want: { outcome: "denied", reason: "PodMismatch", message: `pod ${POD_NAME} was deleted after the request was validated` },
    },
    {
      case: "the pod was replaced (another UID) since validate: PodMismatch",
      facts: input({ validated: validated({ kind: "named", names: ["api"] }), live: { pod: pod({ uid: "another" }), services: [service("api")] } }),
      want: { outcome: "denied", reason: "PodMismatch", message: `pod ${POD_NAME} was replaced after the request was validated` },
    },
    {
      case: "a named Service that does not exist yet: wait",
      facts: input({ validated: validated({ kind: "named", names: ["api"] }), live: { pod: pod(), services: [] } }),
      want: { outcome: "waiting", message: `Service ${NS}/api does not exist` },
    },
    {
      case: "more names than the profile's maxNames: TooManyDNSNames",
      facts: input({ profile: { ...ate, dnsNames: { ...ate.dnsNames!, maxNames: 3 } }, validated: validated({ kind: "all" }), live: { pod: pod(), services: [service("a"), service("b")] } }),
      want: { outcome: "denied", reason: "TooManyDNSNames", message: expect.stringMatching(/give 4 DNS names; this signer puts at most 3/) },
    },
    {
      case: "a profile without a dnsNames configuration gives no names at all",
      facts: input({ profile: workerpool, validated: validated({ kind: "named", names: ["api"] }), live: { pod: pod(), services: [service("api")] } }),
      want: { outcome: "denied", reason: "TooManyDNSNames", message: expect.stringMatching(/at most 0/) },
    },
  ])("$case", ({ facts, want }) => {
    expect(summary(decideSans(facts))).toEqual(want);
  });

  it("a denial is a RequestDeniedError (bounded message), never permanent", () => {
    const d = decideSans(input({ validated: validated({ kind: "all" }), live: { pod: undefined, services: [] } }));
    expect(d.outcome).toBe("denied");
    if (d.outcome === "denied") {
      expect(d.error).toBeInstanceOf(RequestDeniedError);
      expect(d.error.permanent).toBe(false);
    }
  });

  it("refuses to decide names without the live pod and Services (a caller's mistake, never a certificate without them)", () => {
    expect(() => decideSans(input({ validated: validated({ kind: "named", names: ["api"] }) }))).toThrow(TypeError);
  });
});
