// The podcert command's set-up subcommands, as an operator runs them.
import { tempDir } from "../helpers/temp.js";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { EDGE_KEYS_FILE } from "../../shared/events/step-keys.js";
import { attestationEdges, edgeKid, edgesOf, KEYED_STEPS } from "../../shared/steps.js";
import { parseCaTrust, trustBundlePem } from "../../shared/ca/pool.js";
import { podcert } from "./cli.js";
import { COMMANDS } from "../../cli/main.js";
import { EXIT } from "../../cli/args.js";

let dir: string;
beforeAll(() => {
  dir = tempDir("podcert-cli-");
});

describe("podcert ca", () => {
  it("init writes a pool readable by the owner only, with one CA per configured signer", async () => {
    const path = join(dir, "ca.yaml");
    const r = await podcert(["ca", "init", "--out", path, "--key-algorithm", "ED25519", "--validity-days", "30"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const doc = parse(readFileSync(path, "utf8")) as { signers: { signerName: string; cas: { certificate: string }[] }[] };
    expect(doc.signers.map((s) => s.signerName).sort()).toEqual(["atesystem.podcert.ate.dev/identity", "workerpool.podcert.ate.dev/identity"]);
    const cert = new X509Certificate(doc.signers[0]!.cas[0]!.certificate);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe("ed25519");
    expect(new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(31 * 86400_000);
  });

  it("init never overwrites an existing pool", async () => {
    const path = join(dir, "existing.yaml");
    writeFileSync(path, "precious");
    const r = await podcert(["ca", "init", "--out", path]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/already exists/);
    expect(readFileSync(path, "utf8")).toBe("precious");
  });

  it("init uses the signers of --config", async () => {
    const path = join(dir, "upstream.yaml");
    expect((await podcert(["ca", "init", "--out", path, "--config", "examples/config/upstream-style.yaml"])).code).toBe(0);
    expect(readFileSync(path, "utf8")).toMatch(/spiffe\.podcert\.ate\.dev\/service-account/);
  });

  it("bundle prints PEM, or a ClusterTrustBundle named after the signer", async () => {
    const path = join(dir, "ca.yaml");
    const pem = await podcert(["ca", "bundle", "--ca-pool", path, "--signer", "workerpool.podcert.ate.dev/identity"]);
    expect(pem.code, pem.stderr).toBe(0);
    expect(new X509Certificate(pem.stdout).ca).toBe(true);
    expect(pem.stdout).not.toMatch(/PRIVATE/);
    const ctb = await podcert(["ca", "bundle", "--ca-pool", path, "--signer", "workerpool.podcert.ate.dev/identity", "--format", "clustertrustbundle"]);
    const manifest = parse(ctb.stdout) as { kind: string; metadata: { name: string }; spec: { signerName: string; trustBundle: string } };
    expect(manifest.kind).toBe("ClusterTrustBundle");
    expect(manifest.metadata.name.startsWith("workerpool.podcert.ate.dev:identity:")).toBe(true);
    expect(manifest.spec.signerName).toBe("workerpool.podcert.ate.dev/identity");
    expect(manifest.spec.trustBundle).toBe(pem.stdout);
    expect((manifest as { apiVersion?: string }).apiVersion).toBe("certificates.k8s.io/v1");
  });

  it("bundle writes a v1beta1 ClusterTrustBundle for Kubernetes 1.35 and 1.36 when asked, and refuses other versions", async () => {
    const path = join(dir, "ca.yaml");
    const args = ["ca", "bundle", "--ca-pool", path, "--signer", "workerpool.podcert.ate.dev/identity", "--format", "clustertrustbundle"];
    const v1 = parse((await podcert(args)).stdout) as Record<string, unknown>;
    const beta = await podcert([...args, "--api-version", "certificates.k8s.io/v1beta1"]);
    expect(beta.code, beta.stderr).toBe(0);
    const manifest = parse(beta.stdout) as Record<string, unknown>;
    expect(manifest.apiVersion).toBe("certificates.k8s.io/v1beta1");
    // The same object otherwise: the spec is identical in both versions.
    expect({ ...manifest, apiVersion: "" }).toEqual({ ...v1, apiVersion: "" });
    const wrong = await podcert([...args, "--api-version", "certificates.k8s.io/v1alpha1"]);
    expect(wrong.code).toBe(EXIT.usage);
    expect(wrong.stderr).toMatch(/--api-version must be certificates\.k8s\.io\/v1 \(Kubernetes 1\.37\+\) or certificates\.k8s\.io\/v1beta1 \(1\.35, 1\.36\); got "certificates\.k8s\.io\/v1alpha1"/);
    const pemWithVersion = await podcert(["ca", "bundle", "--ca-pool", path, "--signer", "workerpool.podcert.ate.dev/identity", "--api-version", "certificates.k8s.io/v1"]);
    expect(pemWithVersion.code).toBe(EXIT.usage);
    expect(pemWithVersion.stderr).toMatch(/--api-version applies to --format clustertrustbundle only/);
  });

  it("trust writes the pool's certificates without a key, which the trust publisher loads", async () => {
    const pool = join(dir, "ca.yaml");
    const out = join(dir, "ca-trust.yaml");
    const r = await podcert(["ca", "trust", "--ca-pool", pool, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(out, "utf8");
    expect(text).not.toMatch(/PRIVATE KEY|privateKey/);
    const trust = parseCaTrust(text);
    const signer = "workerpool.podcert.ate.dev/identity";
    expect(trustBundlePem(trust, signer)).toBe((await podcert(["ca", "bundle", "--ca-pool", pool, "--signer", signer])).stdout);
    // Given to the publisher by mistake, the pool itself is refused.
    expect(() => parseCaTrust(readFileSync(pool, "utf8"))).toThrow(/this is a CA pool, with private keys/);
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, "apiVersion: podcert.ate.dev/v1alpha1\nkind: CAPool\nsigners: []\n");
    const refused = await podcert(["ca", "trust", "--ca-pool", broken, "--out", join(dir, "never.yaml")]);
    expect(refused.code).toBe(78);
    expect(() => statSync(join(dir, "never.yaml"))).toThrow();
  });

  it("bundle says which signers the pool has when asked for another", async () => {
    const r = await podcert(["ca", "bundle", "--ca-pool", join(dir, "ca.yaml"), "--signer", "example.com/x"]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/no CA for signer example\.com\/x.*atesystem/);
  });
});

describe("podcert keys init", () => {
  it("writes each function the keys of exactly the edges it is an end of, both ends the same key; the dead-letter sink none", async () => {
    const out = join(dir, "keys");
    expect((await podcert(["keys", "init", "--out", out])).code).toBe(0);
    expect(existsSync(join(out, "dead-letter"))).toBe(false);
    const byKid = new Map<string, string[]>();
    for (const step of KEYED_STEPS) {
      expect(statSync(join(out, step, EDGE_KEYS_FILE)).mode & 0o077).toBe(0);
      const set = JSON.parse(readFileSync(join(out, step, EDGE_KEYS_FILE), "utf8")) as { keys: { kty: string; kid: string; k: string }[] };
      expect(set.keys.map((k) => k.kid)).toEqual(edgesOf(step).map(edgeKid));
      for (const k of set.keys) {
        expect(k.kty).toBe("oct");
        byKid.set(k.kid, [...(byKid.get(k.kid) ?? []), k.k]);
      }
    }
    // Every edge's key is in exactly its two ends' files, the same there, and no two edges share one.
    expect([...byKid.keys()].sort()).toEqual(attestationEdges().map(edgeKid).sort());
    for (const [kid, ks] of byKid) expect(ks.length === 2 && ks[0] === ks[1], kid).toBe(true);
    expect(new Set([...byKid.values()].map((ks) => ks[0])).size).toBe(byKid.size);
    expect((await podcert(["keys", "init", "--out", out])).code).toBe(78);
  });
});

describe("podcert invoke dead-letter", () => {
  it("needs no --keys or --cluster (it has neither), logs the dead letter and exits 0", async () => {
    const event = join(dir, "dead-letter.json");
    writeFileSync(event, JSON.stringify({ specversion: "1.0", id: "dl-cli", source: "/s", type: "anything", subject: "team-a/pcr-1", knativeerrorcode: "503", data: { secret: "never-logged" } }));
    const r = await podcert(["invoke", "dead-letter", "--event", event]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('"msg":"event dead-lettered"');
    expect(r.stderr).toContain('"pcrName":"pcr-1"');
    expect(r.stderr).not.toContain("never-logged");
  });
});

describe("usage", () => {
  it.each([
    { args: [], code: 64 },
    { args: ["frobnicate"], code: 64 },
    { args: ["ca"], code: 64 },
    { args: ["ca", "init"], code: 64 },
    { args: ["invoke", "nope"], code: 64 },
    { args: ["issue", "--cluster"], code: 64 },
  ])("podcert $args exits $code with the usage on stderr or stdout", async ({ args, code }) => {
    const r = await podcert(args);
    expect(r.code).toBe(code);
    expect(r.stdout + r.stderr).toMatch(/Usage:/);
  });

  it("names a bad configuration file's problems", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "apiVersion: podcert.ate.dev/v1alpha1\nkind: SignerConfig\nsigners:\n  - name: nope\n    namespaces: {any: true}\n");
    const r = await podcert(["ca", "init", "--out", join(dir, "x.yaml"), "--config", bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/signers\[0\]\.name: must be '<domain>\/<name>'/);
  });
});

describe("help, version and errors in podcert's words", () => {
  it.each(COMMANDS.map((c) => ({ name: c.name })))("podcert $name --help: exit 0, its own options and an example", async ({ name }) => {
    const r = await podcert([...name.split(" "), "--help"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: podcert ${name} `));
    expect(r.stdout).toMatch(/\nOptions:\n/);
    expect(r.stdout).toMatch(/\nExamples?:\n {2}\S/);
    expect(r.stdout).toMatch(/\n {2}75 {2}/);
  });

  it.each([["--version"], ["version"]])("podcert %s prints package.json's version", async (arg) => {
    const r = await podcert([arg]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`podcert ${(JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version}\n`);
  });

  it("names the nearest option for an unknown one, not node's parser's prose", async () => {
    const r = await podcert(["ca", "init", "--out", join(dir, "never.yaml"), "--validity", "30"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^podcert: unknown option --validity; did you mean --validity-days\?\n/);
    expect(r.stderr).not.toMatch(/positional|parseArgs/);
    expect(r.stderr).toMatch(/podcert ca init --help/);
  });

  it.each([["-5"], ["0"], ["3651"], ["1.5"], ["ten"]])("checks --validity-days %s against its range", async (days) => {
    const r = await podcert(["ca", "init", "--out", join(dir, "never.yaml"), "--validity-days", days]);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain(`--validity-days must be an integer from 1 to 3650 (got "${days}")`);
  });

  it("says which option lacks its value", async () => {
    const r = await podcert(["issue", "--cluster", "--ca-pool", "x"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^podcert: --cluster needs a value\n/);
  });

  it("ca init checks --out's folder before making any key", async () => {
    const r = await podcert(["ca", "init", "--out", "/nonexistent-podcert-dir/ca.yaml"]);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe("podcert: --out /nonexistent-podcert-dir/ca.yaml: folder /nonexistent-podcert-dir does not exist\n");
  });

  it("refuses --config where a command would not use it, rather than ignoring it", async () => {
    const r = await podcert(["keys", "init", "--out", join(dir, "k"), "--config", "examples/config/ate.yaml"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/unknown option --config/);
  });

  it.each([["ca", "status", "--ca-pool", "x"], ["issue", "--cluster", "x", "--ca-pool", "x"], ["invoke", "validate", "--event", "x", "--cluster", "x", "--keys", "x"], ["demo"]])(
    "podcert %s … validates --config before anything else",
    async (...args) => {
      const bad = join(dir, "bad-kind.yaml");
      writeFileSync(bad, "apiVersion: podcert.ate.dev/v1alpha1\nkind: Nope\nsigners:\n  - name: example.com/a\n    namespaces: {any: true}\n");
      const r = await podcert([...args, "--config", bad]);
      expect(r.code, r.stderr).toBe(78);
      expect(r.stderr).toMatch(/bad-kind\.yaml is invalid:\n {2}- kind: /);
    },
  );

  it("names a missing cluster object in its own words, not the Kubernetes client's dump", async () => {
    const cluster = join(dir, "no-node.yaml");
    writeFileSync(cluster, readFileSync("examples/cluster.yaml", "utf8").replace("nodeName: node-1", "nodeName: node-9"));
    const r = await podcert(["demo", "--cluster", cluster, "--out", join(dir, "demo-out"), "--timeout", "30"]);
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr).toMatch(/podcert: pod ate-system\/ate-apiserver runs on node "node-9", which the cluster file does not have/);
    expect(r.stderr).not.toMatch(/HTTP-Code|Unknown API Status Code/);
  }, 120_000);
});
