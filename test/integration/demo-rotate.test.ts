// `npm start -- --rotate`: a CA rotation of both signers in the running local flow, the built CLI
// run as a user would. What is left in out/ afterwards is checked against the CA trust document
// the run ends with (certificates and states, no keys).
import { X509Certificate } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { parseCredentialBundle } from "../../local-cluster/mtls.js";
import { parseCaTrust, type TrustedCa } from "../../shared/ca/pool.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { podcert, type CliResult } from "./cli.js";
import { verifiesAgainst } from "./certs.js";

const SIGNERS = ["atesystem.podcert.ate.dev/identity", "workerpool.podcert.ate.dev/identity"];
/** The pods issued a certificate in the example cluster, with their signer. */
const ISSUED = [
  ["ate-system", "ate-apiserver", SIGNERS[0]!],
  ["ate-system", "atenet-router", SIGNERS[0]!],
  ["ate-system", "valkey-0", SIGNERS[0]!],
  ["workers-a", "worker-1", SIGNERS[1]!],
  ["workers-a", "worker-2", SIGNERS[1]!],
] as const;
const file = (signer: string) => signer.replaceAll("/", ":");

let out: string;
let run: CliResult;
/** Folders to remove afterwards: the credential bundles in them hold private keys. */
const made: string[] = [];
const tempDir = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
};

beforeAll(async () => {
  out = tempDir("podcert-demo-rotate-");
  run = await podcert(["demo", "--rotate", "--out", out, "--timeout", "60"]);
}, 180_000);

afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** The signer's CAs in out/ca-trust.yaml by state. */
function casOf(signer: string): { active: TrustedCa; retired: TrustedCa } {
  const cas = parseCaTrust(readFileSync(join(out, "ca-trust.yaml"), "utf8")).signers.get(signer) ?? [];
  expect(cas.map((c) => c.state).sort()).toEqual(["active", "retired"]);
  return { active: cas.find((c) => c.state === "active")!, retired: cas.find((c) => c.state === "retired")! };
}

describe("podcert demo --rotate", () => {
  it("exits 0, every check of the run and of the rotation passed", () => {
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/UNEXPECTED|FAIL|REFUSED|EXITED/);
    expect(run.stderr).toMatch(/CA rotation of atesystem\.podcert\.ate\.dev\/identity and workerpool\.podcert\.ate\.dev\/identity: all \d+ checks passed/);
    expect(run.stderr).toMatch(/all outcomes and handshakes as expected, and every API call allowed by knative\/'s RBAC; the CA rotation passed every check\n$/);
  });

  it("prints its 13 steps in order, the rotation's after the run's six", () => {
    const steps = [...run.stderr.matchAll(/^\[(\d+)\/(\d+)\] (.*)$/gm)].map((m) => ({ k: Number(m[1]), n: Number(m[2]), text: m[3]! }));
    expect(steps.map((s) => s.k)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    expect(new Set(steps.map((s) => s.n))).toEqual(new Set([13]));
    expect(steps.slice(6).map((s) => s.text)).toEqual([
      "CA rotation: prepare a new CA for each signer (published, not signing yet)",
      "CA rotation: publish-trust publishes the new CAs beside the old ones (a PingSource tick)",
      "CA rotation: activate the new CAs (sign picks up its changed pool file, no restart)",
      "CA rotation: kubelet requests new certificates for the same pods",
      "CA rotation: old and new certificates, with the bundles holding both CAs",
      "CA rotation: retire the old CAs and publish (bundles keep only the new CAs)",
      "CA rotation: the example's mutual TLS checks with the new certificates and bundles; an old certificate refused",
    ]);
  });

  it("says the waits are skipped, and how long they are on a cluster", () => {
    expect(run.stderr).toMatch(/WAITS ARE SKIPPED/);
    expect(run.stderr).toMatch(/activate waits 16m after prepare/);
    expect(run.stderr).toMatch(/retire waits 24h10m after activate/);
    for (const signer of SIGNERS) {
      expect(run.stderr).toContain(`${signer}: WAIT SKIPPED here; on a cluster: the prepared CA`);
      expect(run.stderr).toMatch(new RegExp(`${signer.replaceAll(".", "\\.")}: WAIT SKIPPED here; on a cluster: certificates CA [0-9A-F]+ signed can be valid until`));
    }
  });

  it("shows out/trust/ coming from the ClusterTrustBundles, holding both CAs mid-way, and mixed old/new handshakes passing", () => {
    expect(run.stderr).toMatch(/publish-trust published ClusterTrustBundles atesystem\.podcert\.ate\.dev:identity:bundle, workerpool\.podcert\.ate\.dev:identity:bundle/);
    for (const signer of SIGNERS) {
      expect(run.stderr).toMatch(new RegExp(`ok {3}out/trust/${file(signer).replaceAll(".", "\\.")}\\.pem holds old and new CA .*: [0-9A-F]+, [0-9A-F]+, published in`));
      expect(run.stderr).toMatch(new RegExp(`ok {3}out/trust/${file(signer).replaceAll(".", "\\.")}\\.pem holds only the new CA .*: [0-9A-F]+, published in`));
    }
    expect(run.stderr).toMatch(/ok {3}sign signs with the new CAs after its pool file changed, without a restart/);
    expect(run.stderr).toMatch(/ok {3}\[router old CA, apiserver new CA\] router → apiserver as api\.ate-system\.svc: accepted/);
    expect(run.stderr).toMatch(/ok {3}\[router new CA, apiserver old CA\] router → apiserver as api\.ate-system\.svc: accepted/);
    expect(run.stderr).toMatch(/ok {3}\[new CA\] router → apiserver as api\.ate-system\.svc: accepted/);
    expect(run.stderr).toMatch(/ok {3}\[retired CA\] router with its old-CA certificate → apiserver \(new CA\) as api\.ate-system\.svc: refused \(expected refused\)/);
    expect(run.stderr).toMatch(/ok {3}\[retired CA\] router \(new CA\) → apiserver presenting its old-CA certificate as api\.ate-system\.svc: refused \(expected refused\)/);
  });

  it("leaves out/trust/ holding only the new CAs, as the pool ends", () => {
    for (const signer of SIGNERS) {
      const { active, retired } = casOf(signer);
      expect(active.fingerprintSha256).not.toBe(retired.fingerprintSha256);
      const trust = pemDecodeAll(readFileSync(join(out, "trust", `${file(signer)}.pem`), "utf8")).map((b) => b.der);
      expect(trust).toEqual([active.rootDer]);
    }
  });

  it("issued certificates from both CAs: the pods' current ones from the new, those from before from the old", () => {
    const serials = new Set<string>();
    for (const [ns, pod, signer] of ISSUED) {
      const { active, retired } = casOf(signer);
      const current = join(out, ns, pod, `${file(signer)}.pem`);
      const before = join(out, ns, pod, `${file(signer)}.old-ca.pem`);
      for (const path of [current, before]) expect(statSync(path).mode & 0o077, path).toBe(0);
      const now = parseCredentialBundle(readFileSync(current, "utf8")).chainPem;
      const was = parseCredentialBundle(readFileSync(before, "utf8")).chainPem;
      expect(verifiesAgainst(now, active.rootPem), `${current} → new CA`).toBe(true);
      expect(verifiesAgainst(now, retired.rootPem), `${current} → old CA`).toBe(false);
      expect(verifiesAgainst(was, retired.rootPem), `${before} → old CA`).toBe(true);
      expect(verifiesAgainst(was, active.rootPem), `${before} → new CA`).toBe(false);
      // Both CAs were made by this run (a throwaway pool, then prepare): both were issued in it.
      for (const chain of [now, was]) serials.add(new X509Certificate(chain).serialNumber);
    }
    expect(serials.size).toBe(2 * ISSUED.length);
  });

  it("prints the second round's outcomes as a second table (PCRs rotated-…), on stdout", () => {
    // Each request's row is followed by an indented line (its SANs or its denial message).
    const [first, second] = run.stdout.trim().split("\n\n").map((t) => t.split("\n").filter((l) => !l.startsWith("    ")));
    expect(first).toHaveLength(1 + 8);
    const rows = second!;
    expect(rows).toHaveLength(1 + 8);
    expect(rows.slice(1).every((r) => r.startsWith("rotated-"))).toBe(true);
    expect(rows.filter((r) => /\sIssued\s/.test(r))).toHaveLength(ISSUED.length);
  });

  it("keeps key material out of the logs and out of ca-trust.yaml", () => {
    for (const name of ["ca-trust.yaml", "logs/sign.log", "logs/publish-trust.log"]) {
      expect(readFileSync(join(out, name), "utf8"), name).not.toMatch(/PRIVATE KEY|"d":"/);
    }
    expect(run.stderr).not.toMatch(/PRIVATE KEY/);
    const sign = readFileSync(join(out, "logs", "sign.log"), "utf8");
    expect(sign).toMatch(/"msg":"CA pool reloaded"/);
    expect(sign.split("\n").filter((l) => l.includes('"outcome":"issued"'))).toHaveLength(2 * ISSUED.length);
  });
});

describe("podcert demo --rotate when publish-trust cannot update the bundles", () => {
  it("fails, naming the rotation step that could not go on", async () => {
    const knative = tempDir("podcert-knative-");
    cpSync("knative", knative, { recursive: true });
    const rbacPath = join(knative, "rbac.yaml");
    type Doc = { kind?: string; metadata?: { name?: string }; rules?: { resources?: string[]; verbs?: string[] }[] };
    const docs = parseAllDocuments(readFileSync(rbacPath, "utf8")).map((d) => d.toJSON() as Doc);
    const role = docs.find((d) => d.kind === "ClusterRole" && d.metadata?.name === "podcert-publish-trust")!;
    // It can still create the bundles at start; changing them for the rotation is refused.
    role.rules = role.rules!.filter((r) => !r.verbs?.includes("update"));
    writeFileSync(rbacPath, docs.map((d) => stringify(d)).join("---\n"));

    const r = await podcert(["demo", "--rotate", "--out", tempDir("podcert-demo-rotate-"), "--knative", knative, "--timeout", "8"]);
    expect(r.code, r.stderr).toBe(70);
    expect(r.stderr).toMatch(/\[7\/13\] CA rotation: prepare/);
    expect(r.stderr).toMatch(
      /FAIL rotation step \[8\] CA rotation: publish-trust publishes the new CAs beside the old ones \(a PingSource tick\): could not go on \(TrustNotPublishedError: publish-trust did not publish the expected trust bundles within 8 s: signer atesystem\.podcert\.ate\.dev\/identity: its ClusterTrustBundles \(atesystem\.podcert\.ate\.dev:identity:bundle\) lack CA [0-9A-F]+/,
    );
    expect(r.stderr).not.toMatch(/\[9\/13\]/);
    expect(r.stderr).toMatch(/the CA rotation failed 1 check: rotation step \[8\] CA rotation: publish-trust publishes/);
    expect(r.stderr).toMatch(/REFUSED: system:serviceaccount:podcert:podcert-publish-trust: update clustertrustbundles/);
  }, 180_000);
});
