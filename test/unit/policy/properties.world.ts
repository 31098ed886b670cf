/**
 * For properties.test.ts: random clusters (pods, Services, namespaces), requests, the request's path
 * through the pure decisions as the handlers call them (validate, derive-sans, sign), and an
 * oracle computed from Kubernetes semantics, independently of the code under test.
 */
import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { proofOfPossession, stubCsr } from "../../../local-cluster/kubelet/keys.js";
import { RequestDeniedError, WaitingError } from "../../../shared/errors.js";
import type { Namespace, Node, PodCertificateRequest, Pod, Service, ServiceAccount } from "../../../shared/pcr/model.js";
import { PCR_KIND } from "../../../shared/pcr/model.js";
import { certificatesApiVersion } from "../../../shared/kube/api-versions.js";
import { decideSans, type LivePodServices } from "../../../shared/policy/sans.js";
import { attestedIdentityProblem, planIssuance, podChangedSinceValidation } from "../../../shared/policy/issuance.js";
import { decideValidation } from "../../../shared/policy/validate.js";
import { parseSignerConfig, type SignerConfig, type SignerProfile } from "../../../shared/profiles/config.js";
import { ATESYSTEM_SIGNER, defaultSignerConfig, EXPECTS_SERVICE_ANNOTATION, WORKERPOOL_NAMESPACE_LABEL, WORKERPOOL_SIGNER } from "../../../shared/profiles/defaults.js";

// ---------------------------------------------------------------------------------------------
// Configurations, and what each signer should do, written out here (not read from the code).

export const ANY_SIGNER = "anyns.example.com/serving";
const ANY_OPT_IN = "example.com/expects-service";
/** The longest cluster domain a configuration accepts (57), so derived names are at their longest. */
const LONG_CLUSTER_DOMAIN = `${"c".repeat(28)}.${"d".repeat(28)}`;

const WIDE_CONFIG = parseSignerConfig(`\
apiVersion: podcert.ate.dev/v1alpha1
kind: SignerConfig
trustDomain: example.org
clusterDomain: ${LONG_CLUSTER_DOMAIN}
signers:
  - name: ${ATESYSTEM_SIGNER}
    namespaces: { names: [ate-system] }
    dnsNames: { optInAnnotation: ${EXPECTS_SERVICE_ANNOTATION}, maxNames: 2 }
  - name: ${ANY_SIGNER}
    trustDomain: td.example
    namespaces: { any: true, exclude: [kube-system] }
    dnsNames: { optInAnnotation: ${ANY_OPT_IN}, maxNames: 1000 }
    maxLifetimeSeconds: 7862400
`);

interface SignerOracle {
  trustDomain: string;
  optIn: string | undefined;
  maxNames: number;
  maxLifetime: number;
  inScope(ns: string, labels: Readonly<Record<string, string>> | undefined): boolean;
}
export interface ConfigCase {
  label: string;
  config: SignerConfig;
  clusterDomain: string;
  signers: Readonly<Record<string, SignerOracle>>;
}

const ateOracle = (trustDomain: string, maxNames: number): SignerOracle => ({
  trustDomain,
  optIn: EXPECTS_SERVICE_ANNOTATION,
  maxNames,
  maxLifetime: 86400,
  inScope: (ns) => ns === "ate-system",
});

export const CONFIGS: readonly ConfigCase[] = [
  {
    label: "built-in",
    config: defaultSignerConfig(),
    clusterDomain: "cluster.local",
    signers: {
      [ATESYSTEM_SIGNER]: ateOracle("cluster.local", 100),
      [WORKERPOOL_SIGNER]: {
        trustDomain: "cluster.local",
        optIn: undefined,
        maxNames: 0,
        maxLifetime: 86400,
        inScope: (ns, labels) => ns !== "ate-system" && labels !== undefined && Object.hasOwn(labels, WORKERPOOL_NAMESPACE_LABEL) && labels[WORKERPOOL_NAMESPACE_LABEL] === "true",
      },
    },
  },
  {
    label: "wide",
    config: WIDE_CONFIG,
    clusterDomain: LONG_CLUSTER_DOMAIN,
    signers: {
      [ATESYSTEM_SIGNER]: ateOracle("example.org", 2),
      [ANY_SIGNER]: { trustDomain: "td.example", optIn: ANY_OPT_IN, maxNames: 1000, maxLifetime: 7862400, inScope: (ns) => ns !== "kube-system" },
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Generators

const POD_UIDS = ["0b6f7c1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b", "7a7a7a7a-0000-4000-8000-000000000001"];
const NODE_UID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";
const SA_UID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const LONG_NS = "n".repeat(63);
export const NAMESPACES = ["ate-system", "workers", "tenant", "kube-system", LONG_NS] as const;

/** Mostly a few short values (so selectors often match), sometimes an edge case. */
/** rec[key] when rec has it as its own property (signer names from a request may be "constructor"). */
export const own = <T>(rec: Readonly<Record<string, T>>, key: string): T | undefined => (Object.hasOwn(rec, key) ? rec[key] : undefined);

const often = <T>(common: fc.Arbitrary<T>, rare: fc.Arbitrary<T>, weight = 6) => fc.oneof({ arbitrary: common, weight }, { arbitrary: rare, weight: 1 });

const labelKey = often(
  fc.constantFrom("app", "tier", "zone"),
  fc.oneof(fc.constantFrom("", "ключ", "🔑/x", "k".repeat(317), "constructor", "__proto__", "toString", "example.com/role"), fc.string({ unit: "grapheme", maxLength: 8 })),
);
const labelValue = often(fc.constantFrom("a", "b"), fc.oneof(fc.constantFrom("", "значение", "v".repeat(64), "*"), fc.string({ unit: "grapheme", maxLength: 8 })));
/** As JSON.parse would make it: own properties only, `__proto__` included. */
const labelMap = (maxKeys: number) => fc.array(fc.tuple(labelKey, labelValue), { maxLength: maxKeys }).map((e) => Object.fromEntries(e));

export const SERVICE_NAMES = ["web", "api", "db", "hl", "metrics"];
const EDGE_SERVICE_NAMES = ["s".repeat(63), "s".repeat(64), "Web", "wéb", "*", "*.web", "a.b", "true", "false", "1abc", "", "web-"];
const serviceName = often(fc.constantFrom(...SERVICE_NAMES), fc.oneof(fc.constantFrom(...EDGE_SERVICE_NAMES), fc.string({ unit: "grapheme", maxLength: 6 })));

export interface PodCase {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  serviceAccountName: string | undefined;
  hostname: string | undefined;
  subdomain: string | undefined;
  phase: string;
  terminating: boolean;
}

/** A pod, mostly in one of `home` (the namespaces its request's signer serves). */
const arbPod = (home: readonly string[]): fc.Arbitrary<PodCase> => fc.record({
  namespace: often(fc.constantFrom(...home), fc.constantFrom(...NAMESPACES)),
  name: often(fc.constant("web-0"), fc.constantFrom("api-7f9c", `${"p".repeat(63)}.${"q".repeat(63)}.${"r".repeat(63)}.${"s".repeat(61)}`)),
  uid: fc.constantFrom(...POD_UIDS),
  labels: often(labelMap(4).filter((l) => Object.keys(l).length > 0), labelMap(4)),
  serviceAccountName: fc.option(often(fc.constant("web"), fc.constantFrom("default", "a.b.c", "x".repeat(253))), { nil: undefined, freq: 5 }),
  hostname: fc.option(often(fc.constantFrom("h0", "web-0"), fc.constantFrom("H0", "h".repeat(63), "h".repeat(64), "hö", "*", "a.b", "-h")), { nil: undefined, freq: 2 }),
  subdomain: fc.option(serviceName, { nil: undefined, freq: 2 }),
  phase: often(fc.constant("Running"), fc.constantFrom("Pending", "Succeeded", "Failed"), 20),
  terminating: often(fc.constant(false), fc.constant(true), 30),
});

/** A selector: absent, empty, matching the pod (a non-empty subset of its labels), partly matching, or random. */
function arbSelector(p: PodCase): fc.Arbitrary<Record<string, string> | null> {
  const own = Object.entries(p.labels);
  const matching = own.length === 0 ? labelMap(2) : fc.subarray(own, { minLength: 1 }).map((e) => Object.fromEntries(e));
  const partly = matching.chain((sel) => fc.tuple(labelKey, labelValue).map(([k, v]) => ({ ...sel, [k]: v })));
  return fc.oneof(
    { arbitrary: fc.constant(null), weight: 1 },
    { arbitrary: fc.constant({}), weight: 1 },
    { arbitrary: matching, weight: 5 },
    { arbitrary: partly, weight: 2 },
    { arbitrary: labelMap(3), weight: 2 },
  );
}

function arbService(p: PodCase): fc.Arbitrary<Service> {
  return fc
    .record({
      namespace: often(fc.constant(p.namespace), fc.constantFrom(...NAMESPACES)),
      name: serviceName,
      type: often(fc.constantFrom<string | null>(null, "ClusterIP", "NodePort", "LoadBalancer"), fc.constantFrom<string | null>("ExternalName", "clusterip", "")),
      clusterIP: fc.constantFrom<string | null>(null, "None", "10.96.0.10", "none"),
      selector: arbSelector(p),
    })
    .map(({ namespace, name, type, clusterIP, selector }) => {
      const s: Service = { metadata: { name, namespace, uid: `svc-${namespace}-${name}` }, spec: {} };
      if (type !== null) s.spec.type = type;
      if (clusterIP !== null) s.spec.clusterIP = clusterIP;
      if (selector !== null) s.spec.selector = selector;
      return s;
    });
}

/** Services of a cluster: at most one per namespace and name, as the API server keeps them. */
export const uniqueServices = (p: PodCase, maxLength = 10) =>
  fc.uniqueArray(arbService(p), { selector: (s) => `${s.metadata.namespace}/${s.metadata.name}`, minLength: Math.min(3, maxLength), maxLength });

/** An expects-service value: the keyword, its near misses, lists of names (clean, or with bad items, separators, repeats), huge. */
export const expectsValue: fc.Arbitrary<string> = (() => {
  const badItem = fc.oneof(fc.constantFrom(...EDGE_SERVICE_NAMES, " web", "web.ate-system.svc", "*.ate-system.svc"), fc.string({ unit: "grapheme", maxLength: 6 }));
  const item = often(fc.constantFrom(...SERVICE_NAMES), badItem);
  const goodSep = fc.constantFrom(",", ", ", " ,", " , ");
  const sep = often(goodSep, fc.constantFrom(",,", "\t,", ",\u00a0", ";", " "));
  const join = (items: fc.Arbitrary<string[]>, seps: fc.Arbitrary<string>) =>
    fc.tuple(items, fc.array(seps, { minLength: 6, maxLength: 6 })).map(([its, ss]) => its.reduce((acc, it, i) => (i === 0 ? it : `${acc}${ss[i - 1]}${it}`), ""));
  const clean = join(fc.uniqueArray(fc.constantFrom(...SERVICE_NAMES), { minLength: 1, maxLength: 3 }), goodSep);
  const dirty = join(fc.array(item, { minLength: 1, maxLength: 6 }), sep);
  const many = fc.integer({ min: 2, max: 600 }).map((n) => Array.from({ length: n }, (_, i) => `s${i}`).join(","));
  const huge = fc.constantFrom(4095, 4096, 4097, 10_000).map((n) => `web,${"x".repeat(n)}`.slice(0, n));
  return fc.oneof(
    { arbitrary: fc.constant("true"), weight: 5 },
    { arbitrary: clean, weight: 6 },
    { arbitrary: fc.constantFrom("True", "TRUE", " true", "true ", "false", " false", "", ","), weight: 1 },
    { arbitrary: dirty, weight: 3 },
    { arbitrary: many, weight: 4 },
    { arbitrary: huge, weight: 1 },
    { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 1 },
  );
})();

const OPT_IN_KEYS = [EXPECTS_SERVICE_ANNOTATION, ANY_OPT_IN];
const annotationKey = often(fc.constantFrom(...OPT_IN_KEYS), fc.oneof(fc.constantFrom("Atesystem.podcert.ate.dev/expects-service", "", "__proto__", "x".repeat(400)), fc.string({ maxLength: 12 })));

/** unverifiedUserAnnotations: none, the opt-in alone (mostly the signer's own key), the opt-in with other keys, random maps, too many. */
const userAnnotations = (optIn: string | undefined): fc.Arbitrary<Record<string, string> | undefined> => fc.oneof(
  { arbitrary: fc.constant(undefined), weight: optIn === undefined ? 16 : 2 },
  { arbitrary: fc.constant({}), weight: 1 },
  { arbitrary: fc.tuple(often(fc.constant(optIn ?? EXPECTS_SERVICE_ANNOTATION), fc.constantFrom(...OPT_IN_KEYS)), expectsValue).map(([k, v]) => ({ [k]: v })), weight: optIn === undefined ? 2 : 14 },
  { arbitrary: fc.array(fc.tuple(annotationKey, expectsValue), { maxLength: 4 }).map((e) => Object.fromEntries(e)), weight: 1 },
  { arbitrary: fc.integer({ min: 31, max: 40 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]))), weight: 1 },
);

export type KeyForm = "pkix" | "csr" | "wrongProof" | "garbage" | "none" | "both";

export interface RequestCase {
  signerName: string;
  /** Where the request differs from its pod (nothing, mostly). */
  namespace: string | undefined;
  podName: string | undefined;
  podUID: string | undefined;
  serviceAccountName: string | undefined;
  nodeName: string | undefined;
  nodeUID: string | undefined;
  serviceAccountUID: string | undefined;
  maxExpirationSeconds: number | undefined;
  keyForm: KeyForm;
  keyType: "ED25519" | "ECDSAP256";
  userAnnotations: Record<string, string> | undefined;
}

/** Mostly undefined (the request agrees with the pod), sometimes another value. */
const differs = (other: fc.Arbitrary<string>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 40 }, { arbitrary: other, weight: 1 });

/** A request: mostly for a signer the configuration serves (the other configuration's, or garbage, sometimes). */
const arbSignerName = (cfg: ConfigCase): fc.Arbitrary<string> =>
  often(
    fc.constantFrom(...Object.keys(cfg.signers)),
    fc.oneof(fc.constantFrom(ATESYSTEM_SIGNER, WORKERPOOL_SIGNER, ANY_SIGNER, "atesystem.podcert.ate.dev/Identity", "", "kubernetes.io/kube-apiserver-client-pod"), fc.string({ maxLength: 20 })),
  );

const arbRequest = (cfg: ConfigCase, signerName: string): fc.Arbitrary<RequestCase> => fc.record({
  signerName: fc.constant(signerName),
  namespace: differs(fc.constantFrom(...NAMESPACES)),
  podName: differs(fc.constantFrom("web-1", "api-7f9c")),
  podUID: differs(fc.constantFrom(...POD_UIDS, "")),
  serviceAccountName: differs(fc.constantFrom("default", "web", "other")),
  nodeName: differs(fc.constant("node-b")),
  nodeUID: differs(fc.constant("another-node-uid")),
  serviceAccountUID: differs(fc.constant("another-sa-uid")),
  maxExpirationSeconds: fc.option(
    fc.oneof(fc.constantFrom(-1, 0, 1, 599, 3599, 3600, 3601, 86399, 86400, 86401, 7862400, 7862401, 2 ** 31 - 1), fc.integer()),
    { nil: undefined, freq: 2 },
  ),
  keyForm: often(fc.constantFrom<KeyForm>("pkix", "csr"), fc.constantFrom<KeyForm>("wrongProof", "garbage", "garbage", "none", "both"), 6),
  keyType: fc.constantFrom("ED25519", "ECDSAP256"),
  userAnnotations: userAnnotations(own(cfg.signers, signerName)?.optIn),
});

export interface WorldCase {
  cfg: ConfigCase;
  pod: PodCase;
  services: Service[];
  /** The workerpool label on each namespace (absent when undefined); `missing` namespaces have no object. */
  namespaceLabels: Record<string, string | undefined | "missing">;
  serviceAccount: "ok" | "missing" | "otherUid";
  node: "ok" | "missing";
  request: RequestCase;
  /** How long the signing CA still has, from now. */
  caSecondsLeft: number;
  /** What happens to the pod after validate read it, and before which step. */
  podLater: { change: "none" | "deleted" | "replaced" | "terminating"; before: "derive-sans" | "sign" };
}

/** Where a signer's pods mostly are: namespaces it serves. */
const HOME: Readonly<Record<string, readonly string[]>> = {
  [ATESYSTEM_SIGNER]: ["ate-system"],
  [WORKERPOOL_SIGNER]: ["workers", LONG_NS],
  [ANY_SIGNER]: ["ate-system", "workers", "tenant", LONG_NS],
};

export const arbWorld: fc.Arbitrary<WorldCase> = fc
  .constantFrom(...CONFIGS)
  .chain((cfg) => arbSignerName(cfg).map((signerName) => ({ cfg, signerName })))
  .chain(({ cfg, signerName }) => arbPod(own(HOME, signerName) ?? NAMESPACES).map((pod) => ({ cfg, signerName, pod })))
  .chain(({ cfg, signerName, pod }) =>
  fc.record({
    cfg: fc.constant(cfg),
    pod: fc.constant(pod),
    services: uniqueServices(pod),
    namespaceLabels: fc.record(
      Object.fromEntries(NAMESPACES.map((n) => [n, often(fc.constant<string | undefined | "missing">("true"), fc.constantFrom<string | undefined | "missing">(undefined, "True", "false", "missing"))])),
    ) as fc.Arbitrary<Record<string, string | undefined | "missing">>,
    serviceAccount: often(fc.constant<"ok">("ok"), fc.constantFrom<"missing" | "otherUid">("missing", "otherUid"), 20),
    node: often(fc.constant<"ok">("ok"), fc.constant<"missing">("missing"), 20),
    request: arbRequest(cfg, signerName),
    caSecondsLeft: often(fc.constant(10 * 365 * 86400), fc.constantFrom(-1, 0, 3599, 3600, 7200)),
    podLater: fc.record({
      change: often(fc.constant<"none">("none"), fc.constantFrom<"deleted" | "replaced" | "terminating">("deleted", "replaced", "terminating"), 6),
      before: fc.constantFrom<"derive-sans" | "sign">("derive-sans", "sign"),
    }),
  }),
);

// ---------------------------------------------------------------------------------------------
// Building the objects

const KEYS = {
  ED25519: generateKeyPairSync("ed25519"),
  ECDSAP256: generateKeyPairSync("ec", { namedCurve: "P-256" }),
};
const spki = (t: keyof typeof KEYS) => KEYS[t].publicKey.export({ type: "spki", format: "der" });
const CSRS = { ED25519: stubCsr(KEYS.ED25519.privateKey, spki("ED25519")), ECDSAP256: stubCsr(KEYS.ECDSAP256.privateKey, spki("ECDSAP256")) };

export interface Cluster {
  pods: Pod[];
  services: Service[];
  namespaces: Namespace[];
  serviceAccounts: ServiceAccount[];
  nodes: Node[];
}

export const podServiceAccount = (p: PodCase) => p.serviceAccountName ?? "default";

export function buildPod(p: PodCase): Pod {
  const pod: Pod = {
    metadata: { name: p.name, namespace: p.namespace, uid: p.uid, labels: p.labels },
    spec: { nodeName: "node-a" },
    status: { phase: p.phase },
  };
  if (p.serviceAccountName !== undefined) pod.spec.serviceAccountName = p.serviceAccountName;
  if (p.hostname !== undefined) pod.spec.hostname = p.hostname;
  if (p.subdomain !== undefined) pod.spec.subdomain = p.subdomain;
  if (p.terminating) pod.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
  return pod;
}

export function buildCluster(w: WorldCase): Cluster {
  const namespaces = NAMESPACES.flatMap((name): Namespace[] => {
    const l = w.namespaceLabels[name];
    if (l === "missing") return [];
    return [{ metadata: { name, uid: `ns-${name}`, labels: l === undefined ? {} : { [WORKERPOOL_NAMESPACE_LABEL]: l } } }];
  });
  const sa = podServiceAccount(w.pod);
  return {
    pods: [buildPod(w.pod)],
    services: w.services,
    namespaces,
    serviceAccounts: w.serviceAccount === "missing" ? [] : [{ metadata: { name: sa, namespace: w.pod.namespace, uid: w.serviceAccount === "ok" ? SA_UID : "other" } }],
    nodes: w.node === "missing" ? [] : [{ metadata: { name: "node-a", uid: NODE_UID } }],
  };
}

export function buildPcr(w: WorldCase): PodCertificateRequest {
  const r = w.request;
  const podUID = r.podUID ?? w.pod.uid;
  const spec: PodCertificateRequest["spec"] = {
    signerName: r.signerName,
    podName: r.podName ?? w.pod.name,
    podUID,
    serviceAccountName: r.serviceAccountName ?? podServiceAccount(w.pod),
    serviceAccountUID: r.serviceAccountUID ?? SA_UID,
    nodeName: r.nodeName ?? "node-a",
    nodeUID: r.nodeUID ?? NODE_UID,
  };
  if (r.maxExpirationSeconds !== undefined) spec.maxExpirationSeconds = r.maxExpirationSeconds;
  if (r.userAnnotations !== undefined) spec.unverifiedUserAnnotations = r.userAnnotations;
  const key = KEYS[r.keyType];
  const pkix = spki(r.keyType).toString("base64");
  switch (r.keyForm) {
    case "pkix":
    case "both":
      spec.pkixPublicKey = pkix;
      spec.proofOfPossession = proofOfPossession(key.privateKey, podUID).toString("base64");
      if (r.keyForm === "both") spec.stubPKCS10Request = CSRS[r.keyType].toString("base64");
      break;
    case "csr":
      spec.stubPKCS10Request = CSRS[r.keyType].toString("base64");
      break;
    case "wrongProof":
      spec.pkixPublicKey = pkix;
      spec.proofOfPossession = proofOfPossession(key.privateKey, `${podUID}x`).toString("base64");
      break;
    case "garbage":
      spec.pkixPublicKey = "bm90IGEga2V5";
      spec.proofOfPossession = "@@@";
      break;
    case "none":
      break;
  }
  return {
    apiVersion: certificatesApiVersion("v1beta1"),
    kind: PCR_KIND,
    metadata: { name: "req-abcde", namespace: r.namespace ?? w.pod.namespace, uid: "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716" },
    spec,
  };
}

// ---------------------------------------------------------------------------------------------
// The request's path through the decisions, as functions/*/handler.ts and the runner call them

export const NOW = new Date("2026-06-01T12:00:00Z");

export type Outcome =
  | { kind: "ignored" }
  | { kind: "denied"; step: "validate" | "derive-sans" | "sign"; error: RequestDeniedError }
  | { kind: "waiting"; step: "derive-sans" | "sign"; message: string }
  | { kind: "issued"; profile: SignerProfile; uris: string[]; dnsNames: string[]; lifetimeSeconds: number };

export function runPipeline(cfg: ConfigCase, cluster: Cluster, pcr: PodCertificateRequest, caSecondsLeft: number, podLater: WorldCase["podLater"]): Outcome {
  // The runner: a signer this deployment does not serve is ignored.
  const profile = cfg.config.signers.get(pcr.spec.signerName);
  if (profile === undefined) return { kind: "ignored" };
  const ns = pcr.metadata.namespace;
  const { spec } = pcr;
  const podNow = () => cluster.pods.find((p) => p.metadata.namespace === ns && p.metadata.name === spec.podName);
  let step: "validate" | "derive-sans" | "sign" = "validate";
  const order = ["validate", "derive-sans", "sign"];
  // The pod as the current step reads it: changed from podLater.before on.
  const readPod = (): Pod | undefined => {
    const p = podNow();
    if (p === undefined || podLater.change === "none" || order.indexOf(step) < order.indexOf(podLater.before)) return p;
    if (podLater.change === "deleted") return undefined;
    if (podLater.change === "replaced") return { ...p, metadata: { ...p.metadata, uid: "replaced-uid" } };
    return { ...p, metadata: { ...p.metadata, deletionTimestamp: "2026-06-01T12:00:00Z" } };
  };

  // validate
  const v = decideValidation({
    pcr,
    profile,
    pod: readPod(),
    namespace: profile.namespaces.matchLabels ? cluster.namespaces.find((n) => n.metadata.name === ns) : undefined,
    serviceAccount: cluster.serviceAccounts.find((s) => s.metadata.namespace === ns && s.metadata.name === spec.serviceAccountName),
    node: cluster.nodes.find((n) => n.metadata.name === spec.nodeName),
  });
  if (v.outcome === "denied") return { kind: "denied", step: "validate", error: v.error };

  step = "derive-sans";
  // derive-sans: Services are read in the PCR's namespace (one by one when named, else listed).
  const inNs = cluster.services.filter((s) => s.metadata.namespace === ns);
  let live: LivePodServices | undefined;
  if (v.services.kind !== "none") {
    const named = v.services.kind === "named" ? v.services.names : undefined;
    live = { pod: readPod(), services: named ? named.flatMap((n) => inNs.filter((s) => s.metadata.name === n)) : inNs };
  }
  const validated = {
    podName: spec.podName,
    podUID: spec.podUID,
    serviceAccountName: spec.serviceAccountName,
    ...(spec.maxExpirationSeconds === undefined ? {} : { maxExpirationSeconds: spec.maxExpirationSeconds }),
    services: v.services,
  };
  const s = decideSans({ profile, clusterDomain: cfg.config.clusterDomain, namespace: ns, validated, live });
  if (s.outcome === "denied") return { kind: "denied", step: "derive-sans", error: s.error };
  if (s.outcome === "waiting") return { kind: "waiting", step: "derive-sans", message: s.message };

  // sign
  step = "sign";
  const changed = podChangedSinceValidation(spec, readPod());
  if (changed) return { kind: "denied", step: "sign", error: changed };
  const identity = attestedIdentityProblem({ profile, namespace: ns, spec, uris: s.uris });
  if (identity !== undefined) throw new Error(`sign would refuse derive-sans' SANs: ${identity}`);
  try {
    const plan = planIssuance({
      now: NOW,
      profile,
      ca: { signerName: profile.name, notAfter: new Date(NOW.getTime() + caSecondsLeft * 1000) },
      spec,
      key: { spkiDer: v.key.spkiDer, keyType: v.key.keyType },
      sans: s,
    });
    // The template carries exactly the attested SANs.
    if (JSON.stringify([plan.template.uris, plan.template.dnsNames]) !== JSON.stringify([s.uris, s.dnsNames])) throw new Error("template SANs differ");
  } catch (e) {
    // Documented: a CA too close to its end is a WaitingError (CAExpiring), never a denial.
    if (e instanceof WaitingError && e.reason === "CAExpiring") return { kind: "waiting", step: "sign", message: e.message };
    throw e;
  }
  return { kind: "issued", profile, uris: s.uris, dnsNames: s.dnsNames, lifetimeSeconds: s.lifetimeSeconds };
}

export function run(w: WorldCase): Outcome {
  return runPipeline(w.cfg, buildCluster(w), buildPcr(w), w.caSecondsLeft, w.podLater);
}

/** An outcome without its objects, for comparing two runs. */
export function summary(o: Outcome): unknown {
  switch (o.kind) {
    case "ignored":
      return o;
    case "denied":
      return { kind: o.kind, step: o.step, reason: o.error.reason, message: o.error.message };
    case "waiting":
      return o;
    case "issued":
      return { kind: o.kind, uris: o.uris, dnsNames: [...o.dnsNames].sort(), lifetimeSeconds: o.lifetimeSeconds };
  }
}

// ---------------------------------------------------------------------------------------------
// The oracle: Kubernetes semantics, written simply

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SERVICE_NAME = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/** Whether a Service in the cluster selects the pod and may name it (a real, eligible Service). */
export function selectsPod(s: Service, p: PodCase): boolean {
  if (s.metadata.namespace !== p.namespace) return false;
  if (!(s.metadata.name.length <= 63 && SERVICE_NAME.test(s.metadata.name))) return false; // no such Service can exist
  if (!["ClusterIP", "NodePort", "LoadBalancer"].includes(s.spec.type ?? "ClusterIP")) return false;
  const sel = Object.entries(s.spec.selector ?? {});
  return sel.length > 0 && sel.every(([k, v]) => Object.hasOwn(p.labels, k) && p.labels[k] === v);
}

/** The DNS names a selecting Service gives the pod (kube-dns: the Service's, and the pod's under a headless one). */
export function namesFrom(s: Service, p: PodCase, clusterDomain: string): string[] {
  const base = `${s.metadata.name}.${p.namespace}.svc`;
  const out = [base, `${base}.${clusterDomain}`];
  const h = p.hostname;
  if (s.spec.clusterIP === "None" && p.subdomain === s.metadata.name && h !== undefined && h.length <= 63 && DNS_LABEL.test(h)) {
    out.push(`${h}.${base}`, `${h}.${base}.${clusterDomain}`);
  }
  return out;
}

export function isDnsName(n: string): boolean {
  return n.length <= 253 && n.split(".").every((l) => l.length >= 1 && l.length <= 63 && DNS_LABEL.test(l));
}
