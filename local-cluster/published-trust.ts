/**
 * The trust bundles of the local run as a pod sees them: what a `clusterTrustBundle` projected
 * volume source with the README's selector (the signer's name, and the label
 * app.kubernetes.io/managed-by: podcert) holds, read through the API from the ClusterTrustBundles
 * publish-trust wrote. `podcert demo` writes out/trust/ from this, not from the CA pool, so the
 * files show what publishing actually did (an edited or missing bundle shows, too).
 */
import { X509Certificate } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../shared/ca/publication.js";
import { clusterTrustBundleName } from "../shared/ca/pool.js";
import { pemDecodeAll } from "../shared/x509/pem.js";
import { readClusterTrustBundleProjection, TrustProjectionError, type ClusterTrustBundleProjection } from "./kubelet/trust-projection.js";

/** The projection the README documents for pods: the signer's bundles that podcert manages. */
export function podTrustProjection(signerName: string, path = "ca.pem"): ClusterTrustBundleProjection {
  return { signerName, labelSelector: { matchLabels: { [MANAGED_BY_LABEL]: MANAGED_BY } }, path };
}

/**
 * The PEM each signer's projection holds now, certificates sorted by DER (kubelet shuffles them;
 * sorted keeps the files reproducible). TrustProjectionError (ERR_CTB_NONE_MATCHED) for a signer
 * with no bundle: the pod's mount would fail.
 */
export async function readPodTrust(kc: KubeConfig, signers: Iterable<string>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const signer of signers) out.set(signer, await readClusterTrustBundleProjection(kc, podTrustProjection(signer), { order: "sorted" }));
  return out;
}

/** What each signer's projection must hold before the run goes on (root certificates, DER). */
export interface TrustExpectation {
  /** Must all be in it. */
  present: readonly Buffer[];
  /** Must none be in it (a retired CA). */
  absent?: readonly Buffer[];
}

/** The bundles did not reach what was expected in time; `missing` says, per signer, what is not there. */
export class TrustNotPublishedError extends Error {
  override readonly name = "TrustNotPublishedError";
  readonly code = "ERR_TRUST_NOT_PUBLISHED";
  constructor(
    message: string,
    readonly missing: readonly string[],
  ) {
    super(message);
  }
}

const serialOf = (der: Buffer) => new X509Certificate(der).serialNumber;

/** What keeps `pem` (a projection) from meeting `want`, for people; undefined when nothing does. */
export function trustProblem(signer: string, pem: string, want: TrustExpectation): string | undefined {
  const have = new Set(pemDecodeAll(pem).map((b) => b.der.toString("base64")));
  const lacking = want.present.filter((d) => !have.has(d.toString("base64"))).map(serialOf);
  const extra = (want.absent ?? []).filter((d) => have.has(d.toString("base64"))).map(serialOf);
  if (lacking.length === 0 && extra.length === 0) return undefined;
  const parts = [
    ...(lacking.length > 0 ? [`lack CA ${lacking.join(", ")}`] : []),
    ...(extra.length > 0 ? [`still hold CA ${extra.join(", ")}`] : []),
  ];
  return `signer ${signer}: its ClusterTrustBundles (${clusterTrustBundleName(signer)}) ${parts.join(" and ")}`;
}

/**
 * Polls the projections until every signer's meets its expectation, or `timeoutMs` passes: then a
 * TrustNotPublishedError naming each signer whose bundles are missing or lacking, and why.
 * Returns the projections that met them. Errors reading the API count as "not yet" (the last one
 * is named if time runs out).
 */
export async function waitForPublishedTrust(
  kc: KubeConfig,
  want: ReadonlyMap<string, TrustExpectation>,
  o: { timeoutMs: number; intervalMs?: number },
): Promise<Map<string, string>> {
  const deadline = performance.now() + o.timeoutMs;
  for (;;) {
    const missing: string[] = [];
    const got = new Map<string, string>();
    for (const [signer, expectation] of want) {
      try {
        const pem = await readClusterTrustBundleProjection(kc, podTrustProjection(signer), { order: "sorted" });
        got.set(signer, pem);
        const problem = trustProblem(signer, pem, expectation);
        if (problem !== undefined) missing.push(problem);
      } catch (e) {
        if (e instanceof TrustProjectionError && e.code === "ERR_CTB_NONE_MATCHED") {
          missing.push(`signer ${signer}: no ClusterTrustBundle of the signer labelled ${MANAGED_BY_LABEL}=${MANAGED_BY} (publish-trust writes ${clusterTrustBundleName(signer)})`);
        } else {
          missing.push(`signer ${signer}: reading its ClusterTrustBundles failed (${e instanceof Error ? e.message : String(e)})`);
        }
      }
    }
    if (missing.length === 0) return got;
    if (performance.now() >= deadline) {
      throw new TrustNotPublishedError(`publish-trust did not publish the expected trust bundles within ${o.timeoutMs / 1000} s: ${missing.join("; ")}`, missing);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
  }
}

/**
 * Writes `<dir>/<fileName(signer)>` for each signer with what its projection holds now, read
 * afresh (not the CA pool, and not an earlier read): the file is what a pod would mount at this
 * moment. Returns what was written.
 */
export async function writePodTrustFiles(kc: KubeConfig, signers: Iterable<string>, dir: string, fileName: (signer: string) => string): Promise<Map<string, string>> {
  const trust = await readPodTrust(kc, signers);
  mkdirSync(dir, { recursive: true });
  for (const [signer, pem] of trust) writeFileSync(join(dir, fileName(signer)), pem);
  return trust;
}
