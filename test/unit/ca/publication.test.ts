// What the trust publisher writes, decided from plain data (shared/ca/publication.ts).
import { X509Certificate } from "node:crypto";
import { importJWK, exportJWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { createCa } from "../../../cli/ca-create.js";
import { caTrustDocument, parseCaTrust, type CaPoolDocument, type CaState, type CaTrust } from "../../../shared/ca/pool.js";
import {
  desiredTrustBundle,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  nextSpiffeBundle,
  planTrustBundles,
  readSpiffeBundle,
  spiffeBundleKeys,
  spiffeKeys,
} from "../../../shared/ca/publication.js";
import type { ClusterTrustBundle } from "../../../shared/kube/cluster.js";
import { pemDecodeAll } from "../../../shared/x509/pem.js";
import YAML from "yaml";

const T = new Date("2026-06-01T12:00:00Z");
const A = "atesystem.podcert.ate.dev/identity";
const W = "workerpool.podcert.ate.dev/identity";

let trust: CaTrust;
let certs: Record<string, string[]>;
beforeAll(async () => {
  const ca = (signerName: string, keyAlgorithm: "ECDSAP256" | "ED25519" | "RSA3072") => createCa({ signerName, keyAlgorithm, validityDays: 30, now: T });
  const since = (state: CaState) => ({ state, since: { [state]: T.toISOString() } });
  const [a1, a2, a3, w1] = await Promise.all([ca(A, "ECDSAP256"), ca(A, "RSA3072"), ca(A, "ED25519"), ca(W, "ECDSAP256")]);
  const pool: CaPoolDocument = {
    apiVersion: "podcert.ate.dev/v1alpha1",
    kind: "CAPool",
    signers: [
      { signerName: A, cas: [{ ...a1!, ...since("retired") }, { ...a2!, ...since("superseded") }, { ...a3!, ...since("active") }] },
      { signerName: W, cas: [w1!] },
    ],
  };
  trust = parseCaTrust(YAML.stringify(caTrustDocument(pool)));
  certs = { [A]: [a1!.certificate, a2!.certificate, a3!.certificate], [W]: [w1!.certificate] };
}, 60_000);

const der = (pem: string) => pemDecodeAll(pem)[0]!.der.toString("base64");

describe("ClusterTrustBundles", () => {
  it("hold each signer's published roots only, signer-linked and labelled as pods select them", () => {
    const b = desiredTrustBundle(trust, A);
    expect(b.metadata.name).toBe("atesystem.podcert.ate.dev:identity:bundle");
    expect(b.metadata.labels).toEqual({ [MANAGED_BY_LABEL]: MANAGED_BY });
    expect(b.spec.signerName).toBe(A);
    // Not the retired one; never the other signer's, although both are podcert's.
    expect(pemDecodeAll(b.spec.trustBundle).map((x) => x.der.toString("base64"))).toEqual([der(certs[A]![1]!), der(certs[A]![2]!)]);
    expect(b.spec.trustBundle).not.toContain(der(certs[W]![0]!).slice(0, 60));
  });

  const bundle = (name: string, o: { signer?: string; pem?: string; managed?: boolean; rv?: string } = {}): ClusterTrustBundle => ({
    apiVersion: "certificates.k8s.io/v1beta1",
    kind: "ClusterTrustBundle",
    metadata: { name, ...(o.managed === false ? {} : { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } }), ...(o.rv ? { resourceVersion: o.rv } : {}) },
    spec: { ...(o.signer ? { signerName: o.signer } : {}), trustBundle: o.pem ?? "x" },
  });

  it.each([
    { case: "creates what is missing", desired: [bundle("a:b:bundle", { signer: "a/b" })], existing: [], want: [["create", "a:b:bundle"]] },
    { case: "leaves an equal bundle alone (no write)", desired: [bundle("a:b:bundle", { signer: "a/b", pem: "P" })], existing: [bundle("a:b:bundle", { signer: "a/b", pem: "P", rv: "7" })], want: [] },
    { case: "updates a bundle whose certificates drifted, at the resourceVersion read", desired: [bundle("a:b:bundle", { signer: "a/b", pem: "P" })], existing: [bundle("a:b:bundle", { signer: "a/b", pem: "Q", rv: "7" })], want: [["update", "a:b:bundle", "7"]] },
    { case: "deletes a managed bundle nobody wants", desired: [], existing: [bundle("old:x:bundle", { signer: "old/x" })], want: [["delete", "old:x:bundle"]] },
    { case: "never touches a bundle it does not manage", desired: [], existing: [bundle("theirs:x:b", { signer: "theirs/x", managed: false })], want: [] },
  ])("$case", ({ desired, existing, want }) => {
    const got = planTrustBundles(desired, existing).map((a) => (a.kind === "delete" ? [a.kind, a.name] : a.kind === "update" ? [a.kind, a.bundle.metadata.name, a.bundle.metadata.resourceVersion] : [a.kind, a.bundle.metadata.name]));
    expect(got).toEqual(want);
  });
});

describe("SPIFFE bundles", () => {
  it("have one x509-svid key per published root, its x5c exactly that certificate, as the ClusterTrustBundle", async () => {
    const keys = await spiffeKeys(trust, A);
    const ctbRoots = pemDecodeAll(desiredTrustBundle(trust, A).spec.trustBundle).map((b) => b.der.toString("base64"));
    expect(keys.map((k) => k.x5c)).toEqual(ctbRoots.map((r) => [r]));
    for (const k of keys) {
      expect(k.use).toBe("x509-svid");
      expect(k.d).toBeUndefined(); // a public key only
      // The JWK is the certificate's own key.
      const cert = new X509Certificate(Buffer.from(k.x5c[0], "base64"));
      expect(await exportJWK(cert.publicKey)).toEqual(expect.objectContaining({ kty: k.kty }));
      await expect(importJWK(k, k.kty === "RSA" ? "RS256" : k.kty === "OKP" ? "EdDSA" : "ES256")).resolves.toBeDefined();
    }
    expect(keys.map((k) => k.kty).sort()).toEqual(["OKP", "RSA"]);
  });

  it("grow spiffe_sequence on every change of content, and only then", async () => {
    const keys = await spiffeKeys(trust, A);
    const first = nextSpiffeBundle(undefined, keys, 300);
    expect(first).toEqual({ changed: true, bundle: { keys, spiffe_sequence: 1, spiffe_refresh_hint: 300 } });
    const stored = readSpiffeBundle(JSON.stringify(first.bundle));
    expect(nextSpiffeBundle(stored, keys, 300)).toEqual({ changed: false, bundle: first.bundle });
    expect(nextSpiffeBundle(stored, keys.slice(1), 300).bundle.spiffe_sequence).toBe(2);
    expect(nextSpiffeBundle(stored, keys, 60).bundle.spiffe_sequence).toBe(2);
  });

  it("start over from anything that is not a bundle this publisher wrote", () => {
    for (const text of [undefined, "", "{", "[]", '{"keys":[]}', '{"keys":[],"spiffe_sequence":"1","spiffe_refresh_hint":1}']) expect(readSpiffeBundle(text)).toBeUndefined();
  });

  it("live under one ConfigMap key per signer, and refuse two signers sharing one", () => {
    expect([...spiffeBundleKeys([A, W]).values()]).toEqual(["atesystem.podcert.ate.dev_identity.json", "workerpool.podcert.ate.dev_identity.json"]);
    expect(() => spiffeBundleKeys(["a.dev/x_y", "a.dev_x/y"])).toThrow(/would share the SPIFFE bundle key a.dev_x_y.json/);
  });
});
