// `npm start`'s job end to end: processes, broker, emulated source and kubelet, files, mTLS.
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tempDir } from "../helpers/temp.js";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { parseCredentialBundle } from "../../local-cluster/mtls.js";
import { parseCaTrust } from "../../shared/ca/pool.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { podcert, type CliResult } from "./cli.js";
import { OUT_MARKER, prepareOutDir } from "../../cli/demo.js";
import { verifiesAgainst } from "./certs.js";

let out: string;
let run: CliResult;

beforeAll(async () => {
  out = tempDir("podcert-demo-");
  run = await podcert(["demo", "--out", out, "--timeout", "60"]);
}, 120_000);

describe("podcert demo (npm start)", () => {
  it("exits 0 with every expected outcome and handshake", () => {
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/all outcomes and handshakes as expected/);
    expect(run.stderr).not.toMatch(/UNEXPECTED|FAIL|REFUSED/);
  });

  it("prints its six steps, and says the trust bundles come from the published ClusterTrustBundles", () => {
    expect([...run.stderr.matchAll(/^\[(\d)\/6\] /gm)].map((m) => Number(m[1]))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(run.stderr).toMatch(/publish-trust published ClusterTrustBundles atesystem\.podcert\.ate\.dev:identity:bundle, workerpool\.podcert\.ate\.dev:identity:bundle; \S+\/trust\/ holds what a pod's\n\s+clusterTrustBundle projection \(signerName, labelSelector app\.kubernetes\.io\/managed-by: podcert\) reads from them through the API/);
    // Each file: the signer's one CA, the one in the trust document publish-trust was given.
    const trust = parseCaTrust(readFileSync(join(out, "ca-trust.yaml"), "utf8"));
    for (const [signer, cas] of trust.signers) {
      const file = readFileSync(join(out, "trust", `${signer.replaceAll("/", ":")}.pem`), "utf8");
      expect(pemDecodeAll(file).map((b) => b.der)).toEqual(cas.map((c) => c.rootDer));
    }
    expect(trust.signers.size).toBe(2);
  });

  it("runs each function as its own ServiceAccount against knative/'s RBAC, and no call was refused", () => {
    for (const fn of ["validate", "derive-sans", "sign", "deny"]) {
      expect(run.stderr).toMatch(new RegExp(`${fn} +http://\\S+ +ready in \\d+ ms, as system:serviceaccount:podcert:podcert-${fn}\\n`));
    }
    expect(run.stderr).toMatch(/every API call was allowed by the RBAC of knative\//);
  });

  it("prints one table row per request with its outcome, then its SANs or its denial message, on stdout", () => {
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^PCR\s+POD\s+SIGNER\s+OUTCOME\s+TIME TO ISSUE$/);
    expect(lines.filter((l) => /^req-/.test(l))).toHaveLength(8);
    expect(lines.filter((l) => /^ {4}(SANs|denied): /.test(l))).toHaveLength(8);
    for (const l of lines) {
      expect(l).not.toMatch(/ $/);
      if (l.startsWith("req-") || l.startsWith("PCR")) expect(l.length).toBeLessThanOrEqual(130);
    }
    expect(run.stdout).toMatch(/ate-system\/ate-apiserver\s+atesystem\.podcert\.ate\.dev\/identity\s+Issued\s+\d+ ms\n {4}SANs: spiffe:\/\/cluster\.local\/ns\/ate-system\/sa\/ate-apiserver, api\.ate-system\.svc, api\.ate-system\.svc\.cluster\.local\n/);
    // A denied row has no time to issue, and says why it was denied.
    expect(run.stdout).toMatch(/workers-a\/worker-2\s+atesystem\.podcert\.ate\.dev\/identity\s+Denied:NamespaceNotAllowed\s+-\n {4}denied: signer atesystem\.podcert\.ate\.dev\/identity issues only to namespaces ate-system; namespace workers-a is not one of them\n/);
  });

  it("marks its output folder as its own, and says nothing of a seed", () => {
    expect(readdirSync(out)).toContain(OUT_MARKER);
    expect(run.stdout + run.stderr).not.toMatch(/\bseed/i);
    expect(run.stderr).toMatch(/the example's mutual TLS checks/);
  });

  it("writes each credential bundle as kubelet would: PKCS#8 key, then a chain for that key", () => {
    const path = join(out, "ate-system", "valkey-0", "atesystem.podcert.ate.dev:identity.pem");
    expect(statSync(path).mode & 0o077).toBe(0);
    const bundle = readFileSync(path, "utf8");
    expect(bundle.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    const { keyPem, chainPem } = parseCredentialBundle(bundle);
    const leaf = new X509Certificate(chainPem);
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(createPublicKey(createPrivateKey(keyPem)).export({ format: "jwk" }).kty).toBe("RSA");
    const trust = readFileSync(join(out, "trust", "atesystem.podcert.ate.dev:identity.pem"), "utf8");
    expect(verifiesAgainst(chainPem, trust)).toBe(true);
    expect(verifiesAgainst(chainPem, readFileSync(join(out, "trust", "workerpool.podcert.ate.dev:identity.pem"), "utf8"))).toBe(false);
  });

  it("reports each handshake of the seed's mTLS", () => {
    expect(run.stderr).toMatch(/ok {3}router → apiserver as api\.ate-system\.svc: accepted/);
    expect(run.stderr).toMatch(/ok {3}worker pod certificate → apiserver: refused/);
    expect(run.stderr).toMatch(/ok {3}router → a server whose certificate lacks api\.ate-system\.svc: refused/);
  });

  it("keeps each function's structured log, one decision line per step, and no key material", () => {
    const sign = readFileSync(join(out, "logs", "sign.log"), "utf8");
    const issued = sign.split("\n").filter((l) => l.includes('"outcome":"issued"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(issued).toHaveLength(5);
    for (const line of issued) {
      expect(line).toMatchObject({ level: "info", msg: "decision", step: "sign" });
      expect(line.pcrUid).toEqual(expect.any(String));
      expect(line.serialNumber).toMatch(/^[0-9a-f]+$/);
    }
    for (const fn of ["validate", "derive-sans", "sign", "deny"]) {
      expect(readFileSync(join(out, "logs", `${fn}.log`), "utf8")).not.toMatch(/PRIVATE KEY|"d":"/);
    }
  });
});

describe("podcert demo --config examples/config/upstream-style.yaml", () => {
  it("loads the configuration's example cluster, and every request ends as its pod says", async () => {
    const dir = tempDir("podcert-demo-upstream-");
    const r = await podcert(["demo", "--config", "examples/config/upstream-style.yaml", "--out", dir, "--timeout", "60"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/its example cluster is examples\/cluster-upstream-style\.yaml/);
    expect(r.stderr).not.toMatch(/UNEXPECTED|FAIL|REFUSED/);
    // knative/rbac.yaml names the built-in signers: the run enforces a copy naming these.
    const rbac = readFileSync(join(dir, "knative", "rbac.yaml"), "utf8");
    expect(rbac).toContain('resourceNames: ["servicedns.podcert.ate.dev/serving", "spiffe.podcert.ate.dev/service-account"]');
    expect(rbac).not.toContain("atesystem.podcert.ate.dev");
    expect(r.stderr).toMatch(/mutual TLS checks skipped: this cluster did not issue the credentials they use/);
    expect(r.stderr).toMatch(/all outcomes as expected \(no mutual TLS checks/);
    const rows = r.stdout.split("\n").filter((l) => /^req-/.test(l));
    const expected = [
      /kube-system\/coredns\s+spiffe\.podcert\.ate\.dev\/service-account\s+Denied:NamespaceNotAllowed/,
      /shop\/batch\s+spiffe\.podcert\.ate\.dev\/service-account\s+Issued/,
      /shop\/batch\s+servicedns\.podcert\.ate\.dev\/serving\s+Denied:InvalidUnverifiedUserAnnotations/,
      /shop\/db-0\s+servicedns\.podcert\.ate\.dev\/serving\s+Issued/,
      /shop\/web\s+servicedns\.podcert\.ate\.dev\/serving\s+Issued/,
      /shop\/web\s+spiffe\.podcert\.ate\.dev\/service-account\s+Issued/,
    ];
    expect(rows).toHaveLength(expected.length);
    for (const e of expected) expect(rows.some((l) => e.test(l)), `${e}`).toBe(true);
    expect(r.stdout).toMatch(/SANs: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/db, db\.shop\.svc, db\.shop\.svc\.cluster\.local, db-0\.db\.shop\.svc, db-0\.db\.shop\.svc\.cluster\.local\n/);
    const web = parseCredentialBundle(readFileSync(join(dir, "shop", "web", "servicedns.podcert.ate.dev:serving.pem"), "utf8"));
    expect(verifiesAgainst(web.chainPem, readFileSync(join(dir, "trust", "servicedns.podcert.ate.dev:serving.pem"), "utf8"))).toBe(true);
  }, 120_000);
});

describe("podcert demo with a function lacking a permission", () => {
  it("fails, naming the refused call, even when no outcome shows it (sign's Events are best effort)", async () => {
    const knative = tempDir("podcert-knative-");
    cpSync("knative", knative, { recursive: true });
    const rbacPath = join(knative, "rbac.yaml");
    const docs = parseAllDocuments(readFileSync(rbacPath, "utf8")).map((d) => d.toJSON() as { kind?: string; metadata?: { name?: string }; rules?: { resources?: string[] }[] });
    const sign = docs.find((d) => d.kind === "ClusterRole" && d.metadata?.name === "podcert-sign")!;
    sign.rules = sign.rules!.filter((r) => !r.resources?.includes("events"));
    writeFileSync(rbacPath, docs.map((d) => stringify(d)).join("---\n"));

    const r = await podcert(["demo", "--out", tempDir("podcert-demo-"), "--knative", knative, "--timeout", "60"]);
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).not.toMatch(/UNEXPECTED/);
    expect(r.stderr).toMatch(/REFUSED: system:serviceaccount:podcert:podcert-sign: create events in namespace ate-system \(POST \/api\/v1\/namespaces\/ate-system\/events → 403\)/);
    expect(r.stderr).toMatch(/API permissions were not as expected/);
  }, 120_000);
});

describe("podcert demo --help", () => {
  it("lists the options", async () => {
    const r = await podcert(["demo", "--help"]);
    expect(r.code).toBe(0);
    for (const option of ["--cluster", "--out", "--port-base", "--keep-running", "--timeout", "--config", "--rotate", "--no-prometheus"]) expect(r.stdout).toContain(option);
  });

  it("says what to do with a cluster file that is missing", async () => {
    const r = await podcert(["demo", "--cluster", "/nonexistent.yaml"]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/cannot read cluster file \/nonexistent\.yaml: ENOENT/);
  });
});

describe("podcert demo's exit code says whether every request ended as expected", () => {
  const example = readFileSync("examples/cluster.yaml", "utf8");

  it("fails (70) when a request does not end as its pod says, naming it and the likely cause", async () => {
    const dir = tempDir("podcert-demo-typo-");
    const cluster = join(dir, "cluster.yaml");
    // The ate-apiserver pod's projection only: its expect annotation still names the right signer.
    writeFileSync(cluster, example.replace(/(name: ate-apiserver\n[\s\S]*?signerName: )atesystem\.podcert/, "$1atesytem.podcert"));
    const r = await podcert(["demo", "--cluster", cluster, "--out", join(dir, "out"), "--timeout", "60"]);
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).toMatch(/UNEXPECTED: ate-system\/ate-apiserver → atesytem\.podcert\.ate\.dev\/identity: Pending, and its pod's podcert\.ate\.dev\/expect annotation names no outcome for this signer; no configured signer has this name/);
    expect(r.stderr).toMatch(/1 of 8 requests did not end as their pod's podcert\.ate\.dev\/expect annotation says/);
    expect(r.stderr).not.toMatch(/all outcomes and handshakes as expected/);
  }, 120_000);

  it("fails (70) when the cluster file makes no requests, and names the kind it ignored", async () => {
    const dir = tempDir("podcert-demo-empty-");
    const cluster = join(dir, "cluster.yaml");
    writeFileSync(cluster, example.replaceAll(/^kind: Pod$/gm, "kind: Pd"));
    const r = await podcert(["demo", "--cluster", cluster, "--out", join(dir, "out"), "--timeout", "60"]);
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).toMatch(/Pd ate-system\/ate-apiserver: v1 Pd is not a kind the embedded API server serves; ignored/);
    expect(r.stderr).toMatch(/the run made no requests/);
  }, 120_000);

  it("refuses an output folder it did not make (78), before starting anything", async () => {
    const dir = tempDir("podcert-demo-foreign-");
    writeFileSync(join(dir, "notes.txt"), "mine");
    const r = await podcert(["demo", "--out", dir]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/holds files podcert demo did not write/);
    expect(r.stderr).not.toMatch(/\[1\/6\]/);
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
  });

  it("empties a folder an earlier run made", () => {
    const dir = join(tempDir("podcert-demo-again-"), "out");
    prepareOutDir(dir);
    mkdirSync(join(dir, "ate-system"));
    writeFileSync(join(dir, "ate-system", "old.pem"), "from an earlier run's CA");
    prepareOutDir(dir);
    expect(existsSync(join(dir, "ate-system"))).toBe(false);
    expect(readdirSync(dir)).toEqual([OUT_MARKER]);
  });
});
