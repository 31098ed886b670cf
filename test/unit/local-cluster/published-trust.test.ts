// out/trust/ as a pod sees it: the files `podcert demo` writes are the clusterTrustBundle
// projection (README's selector) read through the API, not the CA pool; the wait before them
// names what is missing.
import { CTB_VERSION } from "../../helpers/kubernetes.js";
import { certificatesApiVersion } from "../../../shared/kube/api-versions.js";
import "reflect-metadata";

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { afterEach, beforeAll, describe, expect, it } from "vitest";

import { createCaPool } from "../../../cli/ca-create.js";
import { signerFileName } from "../../../cli/demo-requests.js";
import { startApiServer, type EmbeddedApiServer } from "../../../local-cluster/apiserver/server.js";
import { readClusterTrustBundleProjection } from "../../../local-cluster/kubelet/trust-projection.js";
import { podTrustProjection, TrustNotPublishedError, waitForPublishedTrust, writePodTrustFiles, type TrustExpectation } from "../../../local-cluster/published-trust.js";
import { parseCaPool, serializeCaPool, trustBundlePem, type CaPool } from "../../../shared/ca/pool.js";
import { desiredTrustBundle } from "../../../shared/ca/publication.js";
import { loadKubeConfig } from "../../../shared/kube/client-node.js";
import { pemDecodeAll } from "../../../shared/x509/pem.js";
import { makeCa, type TestCa } from "../../helpers/trust-anchors.js";

const A = "atesystem.podcert.ate.dev/identity";
const B = "workerpool.podcert.ate.dev/identity";
// In the version this run's control plane serves them in.
const CTB = { apiVersion: certificatesApiVersion(CTB_VERSION), kind: "ClusterTrustBundle" } as const;

let pool: CaPool;
let extra: TestCa;
let stranger: TestCa;
let api: EmbeddedApiServer | undefined;
const dirs: string[] = [];

beforeAll(async () => {
  pool = parseCaPool(serializeCaPool(await createCaPool([A, B], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
  extra = await makeCa("an extra CA someone added");
  stranger = await makeCa("a bundle podcert does not manage");
});

afterEach(async () => {
  await api?.stop();
  api = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The bundles publish-trust writes for `signers`, from the pool. */
const published = (...signers: string[]) => signers.map((s) => ({ ...desiredTrustBundle(pool, s), ...CTB }));
const rootOf = (signer: string) => pool.signers.get(signer)![0]!.rootDer;
const expectPool = (...signers: string[]) => new Map<string, TrustExpectation>(signers.map((s) => [s, { present: [rootOf(s)] }]));
const ders = (pem: string) => pemDecodeAll(pem).map((b) => b.der);

async function serve(objects: unknown[]) {
  api = await startApiServer({ objects });
  return loadKubeConfig({ kubeconfigText: api.kubeconfig() });
}

describe("out/trust/ files", () => {
  it("hold the projection read after the wait: a bundle edited in the API server in between shows, an unmanaged one does not", async () => {
    const kc = await serve([
      ...published(A, B),
      // The signer's, but without the managed-by label: the documented selector leaves it out.
      { ...CTB, metadata: { name: "atesystem.podcert.ate.dev:identity:manual" }, spec: { signerName: A, trustBundle: stranger.pem } },
    ]);
    await waitForPublishedTrust(kc, expectPool(A, B), { timeoutMs: 5_000 });

    // Edited after publication, before the files are written.
    const live = api!.store.get("clustertrustbundles", undefined, "atesystem.podcert.ate.dev:identity:bundle")! as unknown as { spec: { trustBundle: string } };
    api!.store.replace({ ...live, spec: { ...live.spec, trustBundle: live.spec.trustBundle + extra.pem } });

    const dir = mkdtempSync(join(tmpdir(), "podcert-trust-"));
    dirs.push(dir);
    const written = await writePodTrustFiles(kc, [A, B], dir, signerFileName);
    const fileA = readFileSync(join(dir, "atesystem.podcert.ate.dev:identity.pem"), "utf8");
    const fileB = readFileSync(join(dir, "workerpool.podcert.ate.dev:identity.pem"), "utf8");

    // The edit is there, and the file is not what the pool says.
    expect(ders(fileA)).toEqual([rootOf(A), extra.der].sort(Buffer.compare));
    expect(fileA).not.toBe(trustBundlePem(pool, A));
    expect(ders(fileA).some((d) => d.equals(stranger.der))).toBe(false);
    // Byte for byte what a pod's projection holds (sorted), read through the API.
    expect(fileA).toBe(await readClusterTrustBundleProjection(kc, podTrustProjection(A), { order: "sorted" }));
    expect(written.get(A)).toBe(fileA);
    expect(ders(fileB)).toEqual([rootOf(B)]);
  });

  it("follow a bundle publish-trust has not written: the pod's mount would fail, so writing fails too", async () => {
    const kc = await serve(published(A));
    const dir = mkdtempSync(join(tmpdir(), "podcert-trust-"));
    dirs.push(dir);
    await expect(writePodTrustFiles(kc, [A, B], dir, signerFileName)).rejects.toMatchObject({ code: "ERR_CTB_NONE_MATCHED" });
  });
});

describe("waiting for publish-trust", () => {
  it("returns once the bundles appear (created while it waits)", async () => {
    const kc = await serve(published(A));
    const later = setTimeout(() => {
      for (const b of published(B)) api!.store.create(b);
    }, 300);
    try {
      const got = await waitForPublishedTrust(kc, expectPool(A, B), { timeoutMs: 10_000, intervalMs: 50 });
      expect(ders(got.get(B)!)).toEqual([rootOf(B)]);
    } finally {
      clearTimeout(later);
    }
  });

  it("gives up after the timeout, naming the signer whose bundle is missing and the bundle it expected", async () => {
    const kc = await serve(published(A));
    const started = performance.now();
    const e = await waitForPublishedTrust(kc, expectPool(A, B), { timeoutMs: 400, intervalMs: 50 }).catch((x: unknown) => x);
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    expect(e).toBeInstanceOf(TrustNotPublishedError);
    const err = e as TrustNotPublishedError;
    expect(err.code).toBe("ERR_TRUST_NOT_PUBLISHED");
    expect(err.missing).toEqual([
      "signer workerpool.podcert.ate.dev/identity: no ClusterTrustBundle of the signer labelled app.kubernetes.io/managed-by=podcert (publish-trust writes workerpool.podcert.ate.dev:identity:bundle)",
    ]);
    expect(err.message).toMatch(/^publish-trust did not publish the expected trust bundles within 0\.4 s: signer workerpool/);
  });

  it("names a CA the bundles lack, and one they still hold that should be gone", async () => {
    const kc = await serve(published(A, B));
    const want = new Map<string, TrustExpectation>([
      [A, { present: [rootOf(A), extra.der] }],
      [B, { present: [], absent: [rootOf(B)] }],
    ]);
    const err = (await waitForPublishedTrust(kc, want, { timeoutMs: 200, intervalMs: 50 }).catch((x: unknown) => x)) as TrustNotPublishedError;
    expect(err).toBeInstanceOf(TrustNotPublishedError);
    expect(err.missing).toEqual([
      `signer ${A}: its ClusterTrustBundles (atesystem.podcert.ate.dev:identity:bundle) lack CA ${new X509Certificate(extra.der).serialNumber}`,
      `signer ${B}: its ClusterTrustBundles (workerpool.podcert.ate.dev:identity:bundle) still hold CA ${new X509Certificate(rootOf(B)).serialNumber}`,
    ]);
  });
});
