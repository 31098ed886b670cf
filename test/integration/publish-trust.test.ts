// The trust publisher (dist/publish-trust.mjs) over HTTP against the embedded API server, with
// knative/'s RBAC enforced: it publishes at start, repairs drift on a PingSource tick, follows the
// CA trust document through a rotation, and never needs (or accepts) a private key.
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { createCa } from "../../cli/ca-create.js";
import { caTrustDocument, type CaPoolDocument, type CaState } from "../../shared/ca/pool.js";
import { spiffeBundleKey, type SpiffeBundle } from "../../shared/ca/publication.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { postEvent, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { podcert } from "./cli.js";
import { publishTrust } from "../../functions/publish-trust/handler.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { parseCaTrust } from "../../shared/ca/pool.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import { KubeClusterApi, loadKubeConfig } from "../../shared/kube/client-node.js";
import { defaultSignerConfig } from "../../shared/profiles/defaults.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { silentLogger } from "../../shared/runtime/log.js";

const A = "atesystem.podcert.ate.dev/identity";
const W = "workerpool.podcert.ate.dev/identity";
const ctbName = (signer: string) => `${signer.replaceAll("/", ":")}:bundle`;

let env: BundleEnv;
let fn: ServedBundle;
beforeAll(async () => {
  env = await startBundleEnv();
  fn = await env.serve("publish-trust");
}, 60_000);
afterAll(async () => env?.stop());

const ping = (): PodcertEvent => ({
  specversion: "1.0",
  id: `ping-${Math.random()}`,
  type: EVENT_TYPES.ping,
  source: "/apis/v1/namespaces/podcert/pingsources/podcert-publish-trust",
  datacontenttype: "application/json",
  data: {},
  extensions: {},
});
type Ctb = { metadata: { name: string; resourceVersion: string; labels?: Record<string, string> }; spec: { signerName: string; trustBundle: string } };
const ctb = (signer: string) => env.api.store.get("clustertrustbundles", undefined, ctbName(signer)) as unknown as Ctb | undefined;
const spiffe = (signer: string): SpiffeBundle => {
  const cm = env.api.store.get("configmaps", "podcert", "podcert-spiffe-bundles") as unknown as { data: Record<string, string> };
  return JSON.parse(cm.data[spiffeBundleKey(signer)]!) as SpiffeBundle;
};
const roots = (pem: string) => pemDecodeAll(pem).map((b) => b.der.toString("base64"));
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("publish-trust", () => {
  it("publishes at start: one signer-linked ClusterTrustBundle per signer, as `podcert ca bundle` gives, and its SPIFFE bundle", async () => {
    await until(() => ctb(A) !== undefined && ctb(W) !== undefined && env.api.store.get("configmaps", "podcert", "podcert-spiffe-bundles") !== undefined, "the first publication");
    for (const signer of [A, W]) {
      const want = (await podcert(["ca", "bundle", "--ca-pool", env.caPoolPath, "--signer", signer])).stdout;
      const b = ctb(signer)!;
      expect(b.spec.signerName).toBe(signer);
      expect(b.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "podcert" });
      expect(b.spec.trustBundle).toBe(want);
      const bundle = spiffe(signer);
      expect(bundle.spiffe_sequence).toBe(1);
      expect(bundle.keys.map((k) => k.x5c[0])).toEqual(roots(want));
      expect(bundle.keys.every((k) => k.use === "x509-svid" && k.d === undefined)).toBe(true);
      // Served as it was written.
      const res = await fetch(`${fn.url}/bundles/${signer}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(await res.json()).toEqual(bundle);
    }
    // Two signers, two bundles: never one merged.
    expect(roots(ctb(A)!.spec.trustBundle)).not.toEqual(roots(ctb(W)!.spec.trustBundle));
  });

  it("serves what the ConfigMap holds when its process has not published yet (scaled from zero)", async () => {
    const fresh: FunctionContext = {
      ...stepContexts({ config: defaultSignerConfig(), cluster: clusterApiFor(env.api), keys: ephemeralStepKeys(), log: silentLogger, events: false })["publish-trust"],
      trust: { read: () => parseCaTrust(readFileSync(env.caTrustPath, "utf8")), api: new KubeClusterApi(loadKubeConfig({ kubeconfigText: env.api.kubeconfig() })), namespace: "podcert", configMapName: "podcert-spiffe-bundles", refreshHintSeconds: 300 },
    };
    const r = await publishTrust.get!(`/bundles/${W}`, fresh);
    expect(r?.status).toBe(200);
    expect(JSON.parse(r!.body)).toEqual(spiffe(W));
    const none = await publishTrust.get!(`/bundles/${W}`, { ...fresh, trust: { ...fresh.trust!, configMapName: "absent" } });
    expect(none).toEqual({ status: 503, contentType: "text/plain; charset=utf-8", body: "not published yet\n" });
  });

  it("answers 404 for a signer it does not serve and for a malformed name", async () => {
    expect((await fetch(`${fn.url}/bundles/example.com/other`)).status).toBe(404);
    expect((await fetch(`${fn.url}/bundles/%E0%A4%A`)).status).toBe(404);
  });

  it("repairs drift on a tick and leaves what is right alone (no write)", async () => {
    const foreign = await createCa({ signerName: A, keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    const tampered = ctb(A)!;
    const good = tampered.spec.trustBundle;
    env.api.store.replace({ ...tampered, apiVersion: "certificates.k8s.io/v1beta1", kind: "ClusterTrustBundle", spec: { ...tampered.spec, trustBundle: foreign.certificate } });
    const untouched = ctb(W)!.metadata.resourceVersion;
    const before = spiffe(A).spiffe_sequence;

    const r = await postEvent(fn.url, ping());
    expect(r.status, r.text).toBe(204);
    expect(ctb(A)!.spec.trustBundle).toBe(good);
    expect(ctb(W)!.metadata.resourceVersion).toBe(untouched);
    expect(spiffe(A).spiffe_sequence).toBe(before);
  });

  it("deletes a managed bundle of a signer no longer configured, and never touches one it does not manage", async () => {
    const other = await createCa({ signerName: "example.com/other", keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    const mk = (name: string, labels?: Record<string, string>) =>
      env.api.store.create({ apiVersion: "certificates.k8s.io/v1beta1", kind: "ClusterTrustBundle", metadata: { name, ...(labels ? { labels } : {}) }, spec: { signerName: "example.com/other", trustBundle: other.certificate } } as never);
    mk("example.com:other:bundle", { "app.kubernetes.io/managed-by": "podcert" });
    mk("example.com:other:theirs");
    expect((await postEvent(fn.url, ping())).status).toBe(204);
    expect(env.api.store.get("clustertrustbundles", undefined, "example.com:other:bundle")).toBeUndefined();
    expect(env.api.store.get("clustertrustbundles", undefined, "example.com:other:theirs")).toBeDefined();
  });

  it("follows the CA trust document through a rotation: a prepared CA is published, a retired one is not", async () => {
    const pool = YAML.parse(readFileSync(env.caPoolPath, "utf8")) as CaPoolDocument;
    const next = await createCa({ signerName: A, keyAlgorithm: "ED25519", validityDays: 60, now: new Date() });
    const since = (state: CaState) => ({ state, since: { [state]: new Date().toISOString() } });
    const signerA = pool.signers.find((s) => s.signerName === A)!;
    const old = signerA.cas[0]!;
    signerA.cas = [{ ...old, ...since("active") }, { ...next, ...since("prepared") }];
    writeFileSync(env.caTrustPath, YAML.stringify(caTrustDocument(pool)));
    const seq = spiffe(A).spiffe_sequence;

    expect((await postEvent(fn.url, ping())).status).toBe(204);
    expect(roots(ctb(A)!.spec.trustBundle)).toEqual(roots(old.certificate + next.certificate));
    expect(spiffe(A).spiffe_sequence).toBe(seq + 1);
    expect(spiffe(A).keys.map((k) => k.x5c[0])).toEqual(roots(ctb(A)!.spec.trustBundle));

    signerA.cas = [{ ...old, ...since("retired") }, { ...next, ...since("active") }];
    writeFileSync(env.caTrustPath, YAML.stringify(caTrustDocument(pool)));
    expect((await postEvent(fn.url, ping())).status).toBe(204);
    expect(roots(ctb(A)!.spec.trustBundle)).toEqual(roots(next.certificate));
    expect(new X509Certificate(ctb(A)!.spec.trustBundle).ca).toBe(true);
    expect(spiffe(A).spiffe_sequence).toBe(seq + 2);
  });

  it("changes nothing while its CA trust document is broken, and says why (503: the broker retries)", async () => {
    const good = readFileSync(env.caTrustPath, "utf8");
    const rv = ctb(A)!.metadata.resourceVersion;
    writeFileSync(env.caTrustPath, good.slice(0, good.length / 2));
    try {
      const r = await postEvent(fn.url, ping());
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/CA trust document cannot be read/);
      expect(ctb(A)!.metadata.resourceVersion).toBe(rv);
    } finally {
      writeFileSync(env.caTrustPath, good);
    }
  });

  it("made every call as its own ServiceAccount, each allowed by knative/'s RBAC, and reports when it published", async () => {
    expect(env.api.refusedRequests()).toEqual([]);
    const metrics = await (await fetch(`${fn.url}/metrics`)).text();
    for (const signer of [A, W]) expect(metrics).toMatch(new RegExp(`podcert_trust_published_timestamp_seconds\\{signer="${signer.replaceAll(".", "\\.")}",function="publish-trust"\\} \\d`));
  });

  it("refuses to start with a CA pool (private keys) as its trust document", async () => {
    const wrong = await startBundleEnv();
    try {
      const child = wrong.serve("publish-trust", { PODCERT_CA_TRUST: wrong.caPoolPath });
      await expect(child).rejects.toThrow(/exited 78: .*this is a CA pool, with private keys/);
    } finally {
      await wrong.stop();
    }
  });
});
