/**
 * What the trust publisher (functions/publish-trust) keeps in the cluster, decided as pure
 * functions over plain data: for each configured signer one signer-linked ClusterTrustBundle
 * holding the roots of its published CAs (every CA that is not retired), and one SPIFFE trust
 * bundle (a JWK Set, SPIFFE Trust Domain and Bundle §4) in a ConfigMap. Two signers' CAs are never
 * merged into one bundle, even when they share a trust domain: that is the separation between the
 * control plane and the workers.
 */
import { X509Certificate } from "node:crypto";
import { exportJWK, type JWK } from "jose";
import { ConfigError } from "../errors.js";
import { certificatesApiVersion } from "../kube/api-versions.js";
import type { ClusterTrustBundle } from "../kube/cluster.js";
import { pemDecodeAll } from "../x509/pem.js";
import { clusterTrustBundleName, publishedCas, trustBundlePem, type CaSet, type TrustedCa } from "./pool.js";

/** The label every object the publisher manages carries, and the one pods select bundles by. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "podcert";

/** The bundle a signer should have: the roots of its published CAs. */
export function desiredTrustBundle(trust: CaSet<TrustedCa>, signerName: string): ClusterTrustBundle {
  return {
    // The client writes it in the version the API server serves (kube/client-node.ts).
    apiVersion: certificatesApiVersion("v1"),
    kind: "ClusterTrustBundle",
    metadata: { name: clusterTrustBundleName(signerName), labels: { [MANAGED_BY_LABEL]: MANAGED_BY } },
    spec: { signerName, trustBundle: trustBundlePem(trust, signerName) },
  };
}

export type TrustBundleAction =
  | { kind: "create"; bundle: ClusterTrustBundle }
  | { kind: "update"; bundle: ClusterTrustBundle; why: string }
  | { kind: "delete"; name: string; signerName: string | undefined };

/**
 * What to change so that the cluster holds exactly `desired` among the bundles podcert manages
 * (`existing`: those labelled managed-by podcert). Unchanged bundles are left alone (no write, no
 * resourceVersion churn for kubelets watching them); a managed bundle of a signer that is no
 * longer configured, or under a name podcert no longer uses, is deleted. Bundles without the
 * label are never touched.
 */
export function planTrustBundles(desired: readonly ClusterTrustBundle[], existing: readonly ClusterTrustBundle[]): TrustBundleAction[] {
  const actions: TrustBundleAction[] = [];
  const byName = new Map(existing.map((b) => [b.metadata.name, b]));
  for (const want of desired) {
    const have = byName.get(want.metadata.name);
    if (have === undefined) {
      actions.push({ kind: "create", bundle: want });
      continue;
    }
    const why = have.spec.trustBundle !== want.spec.trustBundle ? "its certificates differ" : have.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY ? "its label differs" : undefined;
    if (why !== undefined) {
      actions.push({ kind: "update", why, bundle: { ...want, metadata: { ...want.metadata, ...(have.metadata.resourceVersion === undefined ? {} : { resourceVersion: have.metadata.resourceVersion }) } } });
    }
  }
  const wanted = new Set(desired.map((b) => b.metadata.name));
  for (const have of existing) {
    if (have.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY || wanted.has(have.metadata.name)) continue;
    actions.push({ kind: "delete", name: have.metadata.name, signerName: have.spec.signerName });
  }
  return actions;
}

/** A SPIFFE trust bundle: one X.509 authority per published CA root. */
export interface SpiffeBundle {
  keys: (JWK & { use: "x509-svid"; x5c: [string] })[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

/** The JWK of each published root, in bundle order (jose builds the key members). */
export async function spiffeKeys(trust: CaSet<TrustedCa>, signerName: string): Promise<SpiffeBundle["keys"]> {
  const keys: SpiffeBundle["keys"] = [];
  for (const block of pemDecodeAll(trustBundlePem(trust, signerName))) {
    const jwk = await exportJWK(new X509Certificate(block.der).publicKey);
    keys.push({ ...jwk, use: "x509-svid", x5c: [block.der.toString("base64")] });
  }
  return keys;
}

/**
 * The bundle to publish: the previous one unchanged when its keys are the same, else the new
 * keys with spiffe_sequence one higher (SPIFFE: it grows on every change of content).
 */
export function nextSpiffeBundle(previous: SpiffeBundle | undefined, keys: SpiffeBundle["keys"], refreshHintSeconds: number): { bundle: SpiffeBundle; changed: boolean } {
  const same = previous !== undefined && JSON.stringify(previous.keys) === JSON.stringify(keys) && previous.spiffe_refresh_hint === refreshHintSeconds;
  if (same) return { bundle: previous, changed: false };
  return { bundle: { keys, spiffe_sequence: (previous?.spiffe_sequence ?? 0) + 1, spiffe_refresh_hint: refreshHintSeconds }, changed: true };
}

/** Reads a bundle this publisher wrote; anything else counts as absent (it is rewritten). */
export function readSpiffeBundle(text: string | undefined): SpiffeBundle | undefined {
  if (text === undefined) return undefined;
  try {
    const b = JSON.parse(text) as Partial<SpiffeBundle>;
    if (!Array.isArray(b.keys) || !Number.isSafeInteger(b.spiffe_sequence) || typeof b.spiffe_refresh_hint !== "number") return undefined;
    return b as SpiffeBundle;
  } catch {
    return undefined;
  }
}

/**
 * The ConfigMap key of a signer's SPIFFE bundle: the signer name with "/" as "_" plus ".json"
 * (ConfigMap keys allow [-._a-zA-Z0-9]). Two signers that would share a key are a configuration
 * error, refused rather than merged.
 */
export function spiffeBundleKey(signerName: string): string {
  return `${signerName.replaceAll("/", "_")}.json`;
}

export function spiffeBundleKeys(signerNames: readonly string[]): Map<string, string> {
  const keys = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const signer of signerNames) {
    const key = spiffeBundleKey(signer);
    const other = owners.get(key);
    if (other !== undefined) throw new ConfigError(`signers ${other} and ${signer} would share the SPIFFE bundle key ${key}`);
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) throw new ConfigError(`signer ${signer} has no valid SPIFFE bundle key (${key})`);
    owners.set(key, signer);
    keys.set(signer, key);
  }
  return keys;
}

/** Whether every published CA of the signer is in the bundle as pods get it (for checks and tests). */
export function bundleCoversPublished(trust: CaSet<TrustedCa>, signerName: string, bundlePem: string): boolean {
  const have = new Set(pemDecodeAll(bundlePem).map((b) => b.der.toString("base64")));
  return publishedCas(trust, signerName).every((ca) => have.has(ca.rootDer.toString("base64")));
}
