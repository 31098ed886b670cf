// Readiness (issue 12): GET /healthz answers whether the function can do its job (credentials the
// API server accepts, and for sign a usable CA for every configured signer; for publish-trust CAs
// to publish), with a 503 naming what is missing and a "not ready" log line saying the same at
// start; GET /livez stays trivial. The bundles are served as Knative runs them.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { createCa } from "../../cli/ca-create.js";
import { caTrustDocument, serializeCaPool, type CaPoolDocument } from "../../shared/ca/pool.js";
import { ATESYSTEM_SIGNER as ATE, WORKERPOOL_SIGNER as WORKER } from "../../shared/profiles/defaults.js";
import { startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { tempDir } from "../helpers/temp.js";

type Ca = Awaited<ReturnType<typeof createCa>>;
const now = new Date();
let env: BundleEnv;
let valid: Record<typeof ATE | typeof WORKER, Ca>;
let expired: Ca;

const active = (ca: Ca) => ({ ...ca, state: "active" as const, since: { active: now.toISOString() } });
const poolDoc = (signers: { signerName: string; cas: ReturnType<typeof active>[] }[]): CaPoolDocument => ({ apiVersion: "podcert.ate.dev/v1alpha1", kind: "CAPool", signers });

beforeAll(async () => {
  const [a, w, e] = await Promise.all([
    createCa({ signerName: ATE, keyAlgorithm: "ECDSAP256", validityDays: 30, now }),
    createCa({ signerName: WORKER, keyAlgorithm: "ECDSAP256", validityDays: 30, now }),
    createCa({ signerName: ATE, keyAlgorithm: "ECDSAP256", validityDays: 1, now: new Date(now.getTime() - 2 * 86_400_000) }),
  ]);
  valid = { [ATE]: a, [WORKER]: w } as typeof valid;
  expired = e;
  env = await startBundleEnv();
});

afterAll(async () => {
  await env?.stop();
});

/** Written inside the env's folder, which stop() removes with the keys. */
function file(name: string, text: string): string {
  const path = join(env.dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

async function get(b: ServedBundle, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${b.url}${path}`);
  return { status: res.status, text: await res.text() };
}

/** What the function logged as missing ("not ready" lines). */
function loggedMissing(b: ServedBundle): string[] {
  return b
    .stderr()
    .split("\n")
    .filter((l) => l.includes('"msg":"not ready"'))
    .flatMap((l) => (JSON.parse(l) as { missing: string[] }).missing);
}

describe("GET /healthz (readiness) and /livez", () => {
  it("answers 200 when the function can do its job, and says so in the log", async () => {
    const bundles = await Promise.all([env.serve("validate"), env.serve("sign"), env.serve("publish-trust")]);
    for (const b of bundles) {
      expect(await get(b, "/healthz"), b.fn).toEqual({ status: 200, text: "ok\n" });
      expect((await get(b, "/readyz")).status).toBe(200);
      expect((await get(b, "/livez")).status).toBe(200);
      expect(b.stderr()).toMatch(/"msg":"ready"/);
      expect(loggedMissing(b)).toEqual([]);
    }
    // sign's /metrics: the version it was built from, and what its CAs must outlive.
    const version = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version;
    const metrics = await (await fetch(`${bundles[1]!.url}/metrics`)).text();
    expect(metrics).toContain(`podcert_build_info{version="${version}",function="sign"} 1\n`);
    expect(metrics).toContain(`podcert_signer_max_lifetime_seconds{signer="${ATE}",function="sign"} `);
    expect(metrics).toContain(`podcert_signer_max_lifetime_seconds{signer="${WORKER}",function="sign"} `);
  });

  it("without any Kubernetes credentials: 503 naming them (liveness stays 200), logged at start", async () => {
    // KUBECONFIG empty, no ~/.kube/config, not in a pod: client-node falls back to localhost:8080 without a user.
    const b = await env.serve("validate", { KUBECONFIG: "", HOME: tempDir("podcert-home-"), KUBERNETES_SERVICE_HOST: "" });
    const r = await get(b, "/healthz");
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/^not ready:\n- no Kubernetes credentials/);
    expect((await get(b, "/livez")).status).toBe(200);
    expect(loggedMissing(b)).toEqual([expect.stringMatching(/^no Kubernetes credentials/)]);
  });

  it("with KUBECONFIG naming a file that does not exist: does not start, naming the file", async () => {
    const nowhere = join(tempDir("podcert-home-"), "no-such-kubeconfig");
    await expect(env.serve("validate", { KUBECONFIG: nowhere })).rejects.toThrow(/exited 78[\s\S]*"msg":"cannot start".*no-such-kubeconfig/);
  });

  it("with credentials the API server refuses: 503 naming the server's answer", async () => {
    const kubeconfig = YAML.parse(env.api.kubeconfig()) as { users: { user: { token?: string } }[] };
    for (const u of kubeconfig.users) u.user.token = "not-a-token-the-server-knows";
    const b = await env.serve("validate", { KUBECONFIG: file("kubeconfig-wrong-token", YAML.stringify(kubeconfig)) });
    const r = await get(b, "/healthz");
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/refused the credentials \(HTTP 401\)/);
    expect(loggedMissing(b)).toEqual([expect.stringMatching(/refused the credentials/)]);
  });

  it("sign with an expired CA: 503 naming the signer and the CA, logged at start", async () => {
    const path = file("ca-expired.yaml", serializeCaPool(poolDoc([{ signerName: ATE, cas: [active(expired)] }, { signerName: WORKER, cas: [active(valid[WORKER])] }])));
    const b = await env.serve("sign", { PODCERT_CA_POOL: path });
    const r = await get(b, "/healthz");
    expect(r.status).toBe(503);
    const lines = r.text.split("\n").filter((l) => l.startsWith("- "));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`active CA of signer ${ATE}`);
    expect(lines[0]).toContain("is not valid now");
    expect(loggedMissing(b)).toEqual([expect.stringContaining(`active CA of signer ${ATE}`)]);
  });

  it("sign with a pool that lacks a configured signer: does not start, naming the signer", async () => {
    const path = file("ca-one-signer.yaml", serializeCaPool(poolDoc([{ signerName: ATE, cas: [active(valid[ATE])] }])));
    await expect(env.serve("sign", { PODCERT_CA_POOL: path })).rejects.toThrow(new RegExp(`exited 78[\\s\\S]*"msg":"cannot start".*no CA for signer ${WORKER.replaceAll(".", "\\.")}`));
  });

  it("publish-trust with a trust document that lacks a configured signer, or only expired CAs: 503 naming each", async () => {
    const path = file("trust-partial.yaml", YAML.stringify(caTrustDocument(poolDoc([{ signerName: ATE, cas: [active(expired)] }]))));
    const b = await env.serve("publish-trust", { PODCERT_CA_TRUST: path });
    const r = await get(b, "/healthz");
    expect(r.status).toBe(503);
    expect(r.text).toContain(`- no CA of signer ${ATE} in the CA trust document is valid now\n`);
    expect(r.text).toContain(`- the CA trust document has no CA for signer ${WORKER}\n`);
    expect(loggedMissing(b)).toHaveLength(2);
  });
});
