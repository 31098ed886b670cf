// knative/oidc/: the optional Component for Knative Eventing's OIDC (issue 11). Its patches, applied
// to the base, give each function's Service a delivery-auth configuration the runtime accepts,
// with the audience its Triggers request tokens for and exactly the subjects of those Triggers;
// its EventPolicy (no schema model exists for it: checked by hand) admits only podcert's sources,
// resync's SinkBinding and the Triggers' identities (replies) to the Broker. The base is unchanged.
// Where kubectl is installed, kustomize renders base + Component into what these checks model.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { deliveryAuthConfigFromEnv, subjectAllowed } from "../../shared/runtime/delivery-auth.js";
import { STEP_REGISTRY } from "../../shared/steps.js";
import { BROKER, isKustomization, KNATIVE_DIR, knativeServices, loadDir, NAMESPACE, type Obj, parseYaml, serviceName, triggers } from "./manifests.js";
import { hasKubectl } from "../helpers/tools.js";

const OIDC_DIR = join(KNATIVE_DIR, "oidc");
const base = loadDir();
const component = loadDir(OIDC_DIR);
const kust = component.docs.find((d) => d.file === "kustomization.yaml")!.obj;
const audienceOf = (service: string) => `serving.knative.dev/service/${NAMESPACE}/${service}`;
/** The two names Eventing releases have given a Trigger's OIDC ServiceAccount. */
const subjectsOf = (trigger: string) => [
  `system:serviceaccount:${NAMESPACE}:${trigger}-oidc-eventing.knative.dev-trigger`,
  `system:serviceaccount:${NAMESPACE}:oidc-eventing.knative.dev-trigger-${trigger}`,
];

/** The Component's JSON patches (add operations only) applied to a copy of the base's objects. */
function applyComponent(objs: readonly Obj[], k: Obj, resources: readonly Obj[]): { objs: Obj[]; problems: string[] } {
  const out = structuredClone(objs.filter((o) => !isKustomization(o)));
  const problems: string[] = [];
  for (const p of (k.patches ?? []) as Obj[]) {
    const target = out.filter((o) => o.kind === p.target.kind && o.metadata.name === p.target.name && o.apiVersion === `${p.target.group}/${p.target.version}`);
    if (target.length !== 1) {
      problems.push(`patch target ${p.target.kind} ${p.target.name} matches ${target.length} objects`);
      continue;
    }
    for (const op of parse(p.patch as string) as Obj[]) {
      if (op.op !== "add") problems.push(`${p.target.name}: only add operations, not ${op.op}`);
      const path = (op.path as string).split("/").slice(1);
      let at: Obj = target[0]!;
      for (const seg of path.slice(0, -1)) at = at?.[/^\d+$/.test(seg) ? Number(seg) : seg];
      const last = path[path.length - 1]!;
      if (at === undefined) problems.push(`${p.target.name}: ${op.path} does not exist`);
      else if (last === "-") (at as unknown as unknown[]).push(op.value);
      else at[last] = op.value;
    }
  }
  return { objs: [...out, ...structuredClone(resources)], problems };
}

const envOf = (svc: Obj): Record<string, string> => Object.fromEntries((svc.spec.template.spec.containers[0].env ?? []).map((e: Obj) => [e.name, e.value]));

/** What is wrong with the base + Component. */
function overlayProblems(objs: readonly Obj[]): string[] {
  const problems: string[] = [];
  const trigs = objs.filter((o) => o.kind === "Trigger");
  for (const step of STEP_REGISTRY) {
    const name = serviceName(step.name);
    const svc = objs.find((o) => o.kind === "Service" && o.apiVersion === "serving.knative.dev/v1" && o.metadata.name === name);
    if (svc === undefined) {
      problems.push(`no Service ${name}`);
      continue;
    }
    const env = envOf(svc);
    // A function without Kubernetes access (the dead-letter sink) has no ServiceAccount token to
    // read the API server's JWKS with, so it verifies no delivery token: it holds nothing a forged
    // dead letter could reach (it logs and counts), and the NetworkPolicy still admits only Knative.
    if (!step.usesKubernetes) {
      if (Object.keys(env).some((k) => k.startsWith("PODCERT_OIDC_"))) problems.push(`${name}: OIDC configured without a token to read the JWKS with`);
      continue;
    }
    let config: ReturnType<typeof deliveryAuthConfigFromEnv>;
    try {
      config = deliveryAuthConfigFromEnv(env);
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`);
      continue;
    }
    if (config === undefined) {
      problems.push(`${name}: OIDC not configured`);
      continue;
    }
    if (config.audience !== audienceOf(name)) problems.push(`${name}: audience ${config.audience}`);
    if (!config.issuer.startsWith("https://")) problems.push(`${name}: issuer ${config.issuer}`);
    if (config.jwks.kind !== "url" || config.jwks.caFile === undefined || config.jwks.tokenFile === undefined) problems.push(`${name}: JWKS not read from the API server with the pod's CA and token`);
    for (const t of trigs) {
      const feeds = t.spec.subscriber.ref.name === name;
      for (const sub of subjectsOf(t.metadata.name)) {
        if (subjectAllowed(sub, config.allowedSubjects) !== feeds) problems.push(`${name}: ${sub} ${feeds ? "not allowed" : "allowed"}`);
      }
    }
    if (step.postsToBroker && env.PODCERT_SINK_TOKEN_FILE !== "/oidc/token") problems.push(`${name}: posts to the Broker without the SinkBinding's token`);
  }
  for (const t of trigs) {
    if (t.spec.subscriber.audience !== audienceOf(t.spec.subscriber.ref.name)) problems.push(`Trigger ${t.metadata.name}: subscriber audience ${t.spec.subscriber.audience}`);
  }
  const policies = objs.filter((o) => o.kind === "EventPolicy");
  if (policies.length !== 1) problems.push(`${policies.length} EventPolicies`);
  for (const p of policies) problems.push(...eventPolicyProblems(p, objs));
  return problems;
}

/** The EventPolicy's shape (eventing.knative.dev/v1alpha1, no schema model) and whom it admits. */
function eventPolicyProblems(p: Obj, objs: readonly Obj[]): string[] {
  const problems: string[] = [];
  if (p.apiVersion !== "eventing.knative.dev/v1alpha1") problems.push(`EventPolicy apiVersion ${p.apiVersion}`);
  if (p.metadata?.namespace !== NAMESPACE) problems.push("EventPolicy not in namespace podcert");
  const to = p.spec?.to;
  if (!Array.isArray(to) || to.length !== 1 || JSON.stringify(to[0]) !== JSON.stringify({ ref: { apiVersion: "eventing.knative.dev/v1", kind: "Broker", name: BROKER } })) {
    problems.push(`EventPolicy applies to ${JSON.stringify(to)}, not the Broker alone`);
  }
  const from: Obj[] = Array.isArray(p.spec?.from) ? p.spec.from : [];
  const refs = new Set<string>();
  const subs = new Set<string>();
  for (const f of from) {
    const keys = Object.keys(f);
    if (keys.length !== 1 || !["ref", "sub"].includes(keys[0]!)) problems.push(`EventPolicy from entry ${JSON.stringify(f)}: one of ref, sub`);
    if (f.ref !== undefined) {
      const r = f.ref;
      const known = objs.some((o) => o.apiVersion === r.apiVersion && o.kind === r.kind && o.metadata.name === r.name && o.metadata.namespace === r.namespace);
      if (!known) problems.push(`EventPolicy admits ${r.kind} ${r.namespace}/${r.name}, which knative/ does not define`);
      refs.add(`${r.kind}/${r.name}`);
    }
    if (f.sub !== undefined) {
      if (typeof f.sub !== "string" || f.sub.includes("*")) problems.push(`EventPolicy admits the pattern ${f.sub}: name each subject`);
      subs.add(f.sub);
    }
  }
  for (const o of objs.filter((o) => ["ApiServerSource", "PingSource", "SinkBinding"].includes(o.kind))) {
    if (!refs.has(`${o.kind}/${o.metadata.name}`)) problems.push(`EventPolicy does not admit ${o.kind} ${o.metadata.name}`);
  }
  const triggerSubjects = objs.filter((o) => o.kind === "Trigger").flatMap((t) => subjectsOf(t.metadata.name));
  for (const s of triggerSubjects) if (!subs.has(s)) problems.push(`EventPolicy does not admit ${s} (replies)`);
  for (const s of subs) if (!triggerSubjects.includes(s)) problems.push(`EventPolicy admits ${s}, no Trigger's identity`);
  return problems;
}

const resources = component.docs.filter((d) => d.file !== "kustomization.yaml").map((d) => d.obj);
const applied = applyComponent(
  base.docs.map((d) => d.obj),
  kust,
  resources,
);

describe("knative/oidc/", () => {
  it("parses, and is a Component listing its one resource", () => {
    expect(component.problems).toEqual([]);
    expect(kust.apiVersion).toBe("kustomize.config.k8s.io/v1alpha1");
    expect(kust.kind).toBe("Component");
    expect(kust.resources).toEqual(component.files.filter((f) => f !== "kustomization.yaml"));
    expect(applied.problems).toEqual([]);
  });

  it("configures every function, every Trigger's audience and the EventPolicy consistently", () => {
    expect(overlayProblems(applied.objs)).toEqual([]);
  });

  it("detects what would break delivery or admit too much", () => {
    const a = structuredClone(applied.objs);
    a.find((o) => o.kind === "Trigger" && o.metadata.name === "podcert-sign-sans-derived")!.spec.subscriber.audience = audienceOf("podcert-deny");
    const validate = a.find((o) => o.kind === "Service" && o.metadata.name === "podcert-validate")!;
    const allowed = validate.spec.template.spec.containers[0].env.find((e: Obj) => e.name === "PODCERT_OIDC_ALLOWED_SUBJECTS");
    allowed.value = `${allowed.value},${subjectsOf("podcert-deny-denied")[0]}`;
    const resync = a.find((o) => o.kind === "Service" && o.metadata.name === "podcert-resync")!;
    resync.spec.template.spec.containers[0].env = resync.spec.template.spec.containers[0].env.filter((e: Obj) => e.name !== "PODCERT_SINK_TOKEN_FILE");
    const policy = a.find((o) => o.kind === "EventPolicy")!;
    policy.spec.from = [...policy.spec.from.filter((f: Obj) => f.ref?.kind !== "ApiServerSource"), { sub: "system:serviceaccount:podcert:*" }];
    const p = overlayProblems(a);
    expect(p).toContain(`Trigger podcert-sign-sans-derived: subscriber audience ${audienceOf("podcert-deny")}`);
    expect(p).toContain(`podcert-validate: ${subjectsOf("podcert-deny-denied")[0]} allowed`);
    expect(p).toContain("podcert-resync: posts to the Broker without the SinkBinding's token");
    expect(p).toContain("EventPolicy does not admit ApiServerSource podcert-pcrs");
    expect(p).toContain("EventPolicy admits the pattern system:serviceaccount:podcert:*: name each subject");
    const unpatched = applyComponent(base.docs.map((d) => d.obj), { patches: [] }, []);
    expect(overlayProblems(unpatched.objs)).toEqual(expect.arrayContaining(["podcert-sign: OIDC not configured", "0 EventPolicies"]));
  });

  it("leaves the base as it is: no OIDC setting, audience or EventPolicy in knative/", () => {
    expect(base.docs.filter((d) => d.obj.kind === "EventPolicy")).toEqual([]);
    for (const s of knativeServices(base.docs)) expect(Object.keys(envOf(s.obj)).filter((k) => k.startsWith("PODCERT_OIDC_") || k === "PODCERT_SINK_TOKEN_FILE")).toEqual([]);
    for (const t of triggers(base.docs)) expect(t.obj.spec.subscriber.audience).toBeUndefined();
  });
});

const tmp = mkdtempSync(join(tmpdir(), "podcert-oidc-overlay-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const canonical = (o: unknown): string =>
  JSON.stringify(o, (_k, v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));

describe.skipIf(!hasKubectl)("with kubectl (offline)", () => {
  it("kustomize renders base + Component into exactly what the checks above model", async () => {
    cpSync(KNATIVE_DIR, join(tmp, "knative"), { recursive: true });
    mkdirSync(join(tmp, "deploy"));
    writeFileSync(join(tmp, "deploy", "kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../knative\ncomponents:\n  - ../knative/oidc\n");
    const { stdout } = await promisify(execFile)("kubectl", ["kustomize", join(tmp, "deploy")], { timeout: 30_000 });
    const rendered = parseYaml(stdout, "kubectl kustomize").objects;
    expect(rendered.map(canonical).sort()).toEqual(applied.objs.map(canonical).sort());
    expect(overlayProblems(rendered)).toEqual([]);
  });
});
