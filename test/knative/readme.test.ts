// The README's "Deploying on Knative" section matches the manifests and the CLI: its pod
// manifests validate and ask the configured signers, its trust-bundle selectors match what
// publish-trust writes (and `podcert ca bundle --format clustertrustbundle` prints), and its
// install commands create the Secrets the Services mount. Where kubectl is installed, kustomize
// renders knative/ and the README's overlay offline, and the README's own `kubectl create secret`
// lines build the Secrets (with --dry-run=client) from files made by the library.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { caTrustDocument, clusterTrustBundleManifest, parseCaPool, parseCaTrust, serializeCaPool } from "../../shared/ca/pool.js";
import { desiredTrustBundle } from "../../shared/ca/publication.js";
import { createCaPool } from "../../cli/ca-create.js";
import { KEYED_STEPS, STEPS } from "../../shared/steps.js";
import { EDGE_KEYS_FILE } from "../../shared/events/step-keys.js";
import { parseSignerConfig } from "../../shared/profiles/config.js";
import { CONTRACT, find, isKustomization, KNATIVE_DIR, loadDir, type Obj, parseYaml, ROOT, schemaProblems, selects, serviceName } from "./manifests.js";
import { hasKubectl } from "../helpers/tools.js";

const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const start = readme.indexOf("\n## Deploying on Knative\n");
const section = readme.slice(start, readme.indexOf("\n## ", start + 5));
const blocks = [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, text: m[2]! }));
const { docs } = loadDir();
const config = parseSignerConfig(find(docs, "ConfigMap", "podcert-config").data["config.yaml"] as string);
const SIGNERS = [...config.signers.keys()];
const FNS = STEPS;

const tmp = mkdtempSync(join(tmpdir(), "podcert-readme-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('README "Deploying on Knative"', () => {
  it("exists, after the HTTP section", () => {
    expect(start).toBeGreaterThan(readme.indexOf("## Running a function over HTTP"));
    expect(readme.indexOf("## Running a function over HTTP")).toBeGreaterThan(0);
  });

  const podBlock = blocks.find((b) => b.lang === "yaml" && /kind: Pod\b/.test(b.text));
  const pods: Obj[] = podBlock === undefined ? [] : parseYaml(podBlock.text, "README pods").objects;

  it("its pod manifests validate as Pods and ask the configured signers", () => {
    expect(pods.length).toBeGreaterThanOrEqual(2);
    for (const pod of pods) {
      expect(schemaProblems(pod, pod.metadata.name)).toEqual([]);
      const sources: Obj[] = pod.spec.volumes.flatMap((v: Obj) => v.projected?.sources ?? []);
      const certs = sources.filter((s) => s.podCertificate).map((s) => s.podCertificate);
      expect(certs.length, pod.metadata.name).toBeGreaterThan(0);
      for (const c of certs) {
        const profile = config.signers.get(c.signerName);
        expect(profile, c.signerName).toBeDefined();
        expect(profile!.allowedKeyTypes).toContain(c.keyType);
        expect(c.credentialBundlePath).toBeTruthy();
        for (const key of Object.keys(c.userAnnotations ?? {})) expect(key).toBe(profile!.dnsNames?.optInAnnotation);
      }
      expect(sources.some((s) => s.clusterTrustBundle), pod.metadata.name).toBe(true);
    }
    // Every signer appears, and the opt-in annotation is shown.
    expect(new Set(pods.flatMap((p) => p.spec.volumes.flatMap((v: Obj) => v.projected.sources.filter((s: Obj) => s.podCertificate).map((s: Obj) => s.podCertificate.signerName))))).toEqual(new Set(SIGNERS));
    expect(podBlock!.text).toContain("atesystem.podcert.ate.dev/expects-service:");
  });

  it("its trust-bundle selectors select the ClusterTrustBundles publish-trust writes (and `podcert ca bundle` prints)", async () => {
    // kubernetes-models has no ClusterTrustBundle model (certificates.k8s.io/v1beta1 is off by
    // default in the OpenAPI it is generated from): the fields are checked here by hand.
    const doc = await createCaPool(SIGNERS, { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    const pool = parseCaPool(serializeCaPool(doc));
    const trust = parseCaTrust(stringify(caTrustDocument(doc)));
    const bundles = new Map(SIGNERS.map((s) => [s, desiredTrustBundle(trust, s) as unknown as Obj]));
    for (const s of SIGNERS) expect(clusterTrustBundleManifest(pool, s), s).toEqual(bundles.get(s));
    for (const [signer, ctb] of bundles) {
      expect(ctb.apiVersion).toBe("certificates.k8s.io/v1");
      expect(ctb.kind).toBe("ClusterTrustBundle");
      expect(ctb.metadata.name.startsWith(`${signer.replaceAll("/", ":")}:`)).toBe(true);
      expect(ctb.spec.signerName).toBe(signer);
      expect(ctb.spec.trustBundle).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    }
    expect(section).toContain(`\`${(bundles.get("atesystem.podcert.ate.dev/identity") as Obj).metadata.name}\``);
    for (const pod of pods) {
      for (const v of pod.spec.volumes) {
        for (const s of v.projected?.sources ?? []) {
          if (!s.clusterTrustBundle) continue;
          const ctb = bundles.get(s.clusterTrustBundle.signerName);
          expect(ctb, s.clusterTrustBundle.signerName).toBeDefined();
          expect(s.clusterTrustBundle.labelSelector, "an unset selector matches nothing").toBeDefined();
          expect(selects(s.clusterTrustBundle.labelSelector, ctb!.metadata.labels ?? {})).toBe(true);
        }
      }
    }
  });

  it("its install commands create the Secrets, with the keys, that the Services mount", () => {
    const sh = blocks
      .filter((b) => b.lang === "sh")
      .map((b) => b.text)
      .join("\n");
    expect(sh).toContain("npx podcert ca init --out ca-pool.yaml");
    expect(sh).toContain("npx podcert keys init --out keys");
    expect(sh).toContain(`kubectl -n podcert create secret generic ${CONTRACT.caSecret} --from-file=${CONTRACT.caKey}=ca-pool.yaml`);
    // Every function but the dead-letter sink has step keys.
    expect(sh).toContain(`for fn in ${KEYED_STEPS.join(" ")}; do\n  kubectl -n podcert create secret generic podcert-step-$fn --from-file=keys/$fn/`);
    expect(sh).toContain(`for fn in ${FNS.join(" ")}; do\n  docker build --build-arg FUNCTION=$fn -t <registry>/podcert-$fn:$version .`);
    // `podcert ca trust` is not run here: the CLI command is another change's (the kubectl test
    // below builds the Secret from a trust document made by the library instead).
    expect(sh).toContain("npx podcert ca trust --ca-pool ca-pool.yaml --out ca-trust.yaml");
    expect(sh).toContain(`kubectl -n podcert create secret generic ${CONTRACT.caTrustSecret} --from-file=${CONTRACT.caTrustKey}=ca-trust.yaml`);
    // publish-trust publishes the bundles: no step publishes them by hand any more.
    expect(sh).not.toMatch(/podcert ca bundle[^\n]*\| *kubectl apply/);
    expect(sh).toContain("npm run build");
    expect(section).toContain("kubectl apply -k knative/");
    // The Secret names those commands create are the ones the Services mount.
    for (const fn of FNS) {
      const volumes: Obj[] = find(docs, "Service", serviceName(fn)).spec.template.spec.volumes ?? [];
      for (const v of volumes) if (v.secret) expect([CONTRACT.caSecret, CONTRACT.caTrustSecret, `podcert-step-${fn}`]).toContain(v.secret.secretName);
    }
  });

  /** The README must say the overlay is required as long as the base's images name no registry. */
  function overlayProblems(text: string, all: readonly Obj[]): string[] {
    const problems: string[] = [];
    // In registry order, whichever file each Service is in.
    const images = FNS.flatMap((fn) => all.filter((o) => o.kind === "Service" && o.metadata.name === serviceName(fn))).map((o) => String(o.spec.template.spec.containers[0].image));
    const unpullable = images.filter((i) => !i.includes("/"));
    if (unpullable.length > 0 && !/overlay is required/.test(text)) problems.push(`images ${unpullable.join(", ")} name no registry, and the README does not say the overlay is required`);
    if (/applies the base as it is/.test(text)) problems.push("the README offers applying the base as it is");
    return problems;
  }

  it("says the overlay is required, since the base's images name no registry", () => {
    expect(overlayProblems(section, docs.map((d) => d.obj))).toEqual([]);
    // The sentence before: the base offered as something to apply.
    const before = "Point them at your registry with an overlay,\nthen apply it (`kubectl apply -k knative/` applies the base as it is):";
    expect(overlayProblems(before, docs.map((d) => d.obj))).toEqual([
      `images ${FNS.map((fn) => `podcert-${fn}:${VERSION}`).join(", ")} name no registry, and the README does not say the overlay is required`,
      "the README offers applying the base as it is",
    ]);
  });

  it("names the prerequisites", () => {
    for (const s of ["1.35", "PodCertificateRequest", "ClusterTrustBundle", "ClusterTrustBundleProjection", "certificates.k8s.io/v1beta1=true", "Knative Serving", "Knative Eventing", "Broker"]) {
      expect(section).toContain(s);
    }
    expect(section).toMatch(/Not verified on a cluster/);
  });
});

const run = promisify(execFile);
const canonical = (o: unknown): string =>
  JSON.stringify(o, (_k, v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));

describe.skipIf(!hasKubectl)("with kubectl (offline)", () => {
  it("kustomize renders knative/ into exactly its documents", async () => {
    const { stdout } = await run("kubectl", ["kustomize", KNATIVE_DIR], { timeout: 30_000 });
    const rendered = parseYaml(stdout, "kubectl kustomize").objects.map(canonical).sort();
    const ours = docs.filter((d) => !isKustomization(d.obj)).map((d) => canonical(d.obj)).sort();
    expect(rendered).toEqual(ours);
  });

  it("the README's overlay points every function's image at the registry", async () => {
    const overlay = /cat > podcert-deploy\/kustomization.yaml <<EOF\n([\s\S]*?)\nEOF/.exec(section)?.[1];
    expect(overlay).toBeDefined();
    const dir = join(tmp, "overlay");
    cpSync(KNATIVE_DIR, join(dir, "knative"), { recursive: true });
    mkdirSync(join(dir, "podcert-deploy"));
    writeFileSync(join(dir, "podcert-deploy", "kustomization.yaml"), overlay!.replaceAll("<registry>", "registry.example/team"));
    const { stdout } = await run("kubectl", ["kustomize", join(dir, "podcert-deploy")], { timeout: 30_000 });
    const out = parseYaml(stdout, "overlay").objects;
    for (const fn of FNS) {
      const svc = out.find((o) => o.kind === "Service" && o.metadata.name === serviceName(fn))!;
      expect(svc.spec.template.spec.containers[0].image).toBe(`registry.example/team/podcert-${fn}:${VERSION}`);
    }
  });

  it("`kubectl create secret --from-file=keys/<fn>/` gives the keys the Services project", async () => {
    const dir = join(tmp, "keys-run");
    mkdirSync(dir);
    await run(process.execPath, [join(ROOT, "bin", "podcert.mjs"), "keys", "init", "--out", join(dir, "keys")], { cwd: dir, timeout: 30_000 });
    for (const fn of KEYED_STEPS) {
      const { stdout } = await run("kubectl", ["-n", "podcert", "create", "secret", "generic", `podcert-step-${fn}`, `--from-file=keys/${fn}/`, "--dry-run=client", "-o", "json"], {
        cwd: dir,
        timeout: 30_000,
      });
      const secret = parse(stdout) as Obj;
      expect(Object.keys(secret.data).sort()).toEqual([EDGE_KEYS_FILE]);
      const projected = find(docs, "Service", serviceName(fn)).spec.template.spec.volumes.find((v: Obj) => v.secret?.secretName === `podcert-step-${fn}`).secret.items.map((i: Obj) => i.key);
      expect(projected.sort()).toEqual(Object.keys(secret.data).sort());
    }
  });

  it("the README's `kubectl create secret` lines for the CA pool and the CA trust give the keys the Services project", async () => {
    const dir = join(tmp, "ca-run");
    mkdirSync(dir);
    // The files those commands read, made by the library: ca-trust.yaml as `podcert ca trust`
    // is to write it (that command is not run here).
    const doc = await createCaPool(SIGNERS, { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    writeFileSync(join(dir, "ca-pool.yaml"), serializeCaPool(doc));
    writeFileSync(join(dir, "ca-trust.yaml"), stringify(caTrustDocument(doc)));
    const lines = [...section.matchAll(/^kubectl -n podcert create secret generic (podcert-ca-pool|podcert-ca-trust) (.*)$/gm)];
    expect(lines.map((m) => m[1]).sort()).toEqual([CONTRACT.caSecret, CONTRACT.caTrustSecret]);
    for (const m of lines) {
      const args = m[0].replace(/#.*$/, "").trim().split(/\s+/).slice(1);
      const { stdout } = await run("kubectl", [...args, "--dry-run=client", "-o", "json"], { cwd: dir, timeout: 30_000 });
      const secret = parse(stdout) as Obj;
      const users = FNS.map((fn) => (find(docs, "Service", serviceName(fn)).spec.template.spec.volumes ?? []).find((v: Obj) => v.secret?.secretName === m[1]))
        .filter((v): v is Obj => v !== undefined);
      expect(users, m[1]).toHaveLength(1);
      expect(users[0]!.secret.items.map((i: Obj) => i.key)).toEqual(Object.keys(secret.data));
      const text = Buffer.from(secret.data[Object.keys(secret.data)[0]!] as string, "base64").toString("utf8");
      if (m[1] === CONTRACT.caTrustSecret) {
        // What publish-trust reads: the certificates, and no private key anywhere in it.
        expect([...parseCaTrust(text).signers.keys()].sort()).toEqual([...SIGNERS].sort());
        expect(text).not.toMatch(/PRIVATE KEY|privateKey/);
      } else {
        expect([...parseCaPool(text).signers.keys()].sort()).toEqual([...SIGNERS].sort());
      }
    }
  });
});
