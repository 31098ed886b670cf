/**
 * What `podcert demo` does with the emulated kubelet's requests, once for the run and once more
 * after a CA rotation (--rotate): wait for their outcomes, tabulate them, write the credential
 * bundles kubelet would project. Its own module so that demo.ts and demo-rotate.ts share it
 * without importing each other.
 */
import { X509Certificate } from "node:crypto";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EmulatedRequest } from "../local-cluster/kubelet/emulator.js";
import type { LocalFlow } from "../local-cluster/flow.js";
import type { Credential } from "../local-cluster/mtls.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { pemEncode } from "../shared/x509/pem.js";
import { progressReporter, type ProgressOutput } from "./progress.js";

/** A signer's file name in out/trust/ and out/<namespace>/<pod>/: "<signer with / as :>.pem". */
export function signerFileName(signerName: string): string {
  return `${signerName.replaceAll("/", ":")}.pem`;
}

/** Where a credential bundle from before a CA rotation is kept, beside the pod's current one. */
export function oldCaFileName(signerName: string): string {
  return signerFileName(signerName).replace(/\.pem$/, ".old-ca.pem");
}

export interface Row {
  request: EmulatedRequest;
  pcr?: PodCertificateRequest;
  outcome: string;
  issuedMs?: number;
  /** The key and the issued chain, when issued. */
  credential?: Credential;
}

/** "<namespace>/<pod>/<signer>": one credential of one pod. */
export const credentialKey = (namespace: string, pod: string, signer: string) => `${namespace}/${pod}/${signer}`;

/** A credential the run issued, and whose it is. */
export interface IssuedCredential {
  namespace: string;
  pod: string;
  signer: string;
  credential: Credential;
}

/**
 * Waits until every request has finished, or nothing has been in flight for a second (the rest
 * stay pending: their retries went to the dead letter), or `timeoutMs` has passed; then reads
 * each request's outcome from the API server. The count goes to `progressOut` (the demo's
 * stderr) through the progress reporter: polled every 50 ms, a line per change would fill a log
 * over a large cluster file.
 */
export async function collectOutcomes(flow: LocalFlow, requests: readonly EmulatedRequest[], timeoutMs: number, progressOut: ProgressOutput): Promise<Row[]> {
  const deadline = performance.now() + timeoutMs;
  let quietSince = performance.now();
  const progress = progressReporter({ out: progressOut, format: (done, total) => `      ${done}/${total} requests finished` });
  for (;;) {
    const done = requests.filter((r) => flow.finishedAt.has(r.pcr.metadata.uid ?? "")).length;
    progress.update(done, requests.length);
    if (done === requests.length) break;
    if (flow.broker.pending > 0) quietSince = performance.now();
    if (performance.now() - quietSince > 1000 || performance.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // The count where the wait stopped, when that was before every request finished.
  progress.finish();
  return requests.map((request) => {
    const p = flow.api.store.get("podcertificaterequests", request.pcr.metadata.namespace, request.pcr.metadata.name) as unknown as PodCertificateRequest | undefined;
    const c = p ? terminalCondition(p) : undefined;
    const row: Row = { request, outcome: c === undefined ? "Pending" : c.type === "Issued" ? "Issued" : `${c.type}:${c.reason}` };
    if (p) row.pcr = p;
    const end = flow.finishedAt.get(request.pcr.metadata.uid ?? "");
    if (end !== undefined) row.issuedMs = end - request.createdAt;
    if (c?.type === "Issued" && p?.status?.certificateChain) {
      row.credential = { keyPem: pemEncode("PRIVATE KEY", request.privateKey.export({ type: "pkcs8", format: "der" })), chainPem: p.status.certificateChain };
    }
    return row;
  });
}

/** The rows whose outcome is not what their pod's `podcert.ate.dev/expect` annotation says, or that it says nothing about. */
export function unmetExpectations(rows: readonly Row[]): Row[] {
  return rows.filter((r) => r.request.expected === undefined || r.request.expected !== r.outcome);
}

/**
 * Writes each issued credential bundle (PKCS#8 key, then the chain, as kubelet projects it) to
 * out/<namespace>/<pod>/<signer>.pem, mode 0600. With `keepPrevious`, a file already there (the
 * credential from before a CA rotation) is first renamed to <signer>.old-ca.pem; without, a
 * <signer>.old-ca.pem there is removed. Returns the credentials by credentialKey.
 */
export function writeCredentials(outDir: string, rows: readonly Row[], o: { keepPrevious?: boolean } = {}): Map<string, IssuedCredential> {
  const out = new Map<string, IssuedCredential>();
  for (const r of rows) {
    if (r.credential === undefined || r.pcr === undefined) continue;
    const signer = r.pcr.spec.signerName;
    const dir = join(outDir, r.request.pod.namespace, r.request.pod.name);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, signerFileName(signer));
    if (o.keepPrevious) {
      try {
        renameSync(path, join(dir, oldCaFileName(signer)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    } else {
      // One left by an earlier --rotate run into the same folder chains to a CA of that run only.
      rmSync(join(dir, oldCaFileName(signer)), { force: true });
    }
    writeFileSync(path, r.credential.keyPem + r.credential.chainPem, { mode: 0o600 });
    const { namespace, name: pod } = r.request.pod;
    out.set(credentialKey(namespace, pod, signer), { namespace, pod, signer, credential: r.credential });
  }
  return out;
}

function sanList(pcr: PodCertificateRequest | undefined): string {
  const chain = pcr?.status?.certificateChain;
  if (!chain) return "";
  return (new X509Certificate(chain).subjectAltName ?? "").replaceAll("URI:", "").replaceAll("DNS:", "");
}

/**
 * One row per request, then, indented below it, its SANs (issued) or its denial message: the
 * table stays about 130 columns wide for the example (it was 230), and no line ends in spaces.
 */
export function outcomeTable(rows: readonly Row[]): string {
  const lines = [["PCR", "POD", "SIGNER", "OUTCOME", "TIME TO ISSUE"]];
  const details: (string | undefined)[] = [undefined];
  for (const r of rows) {
    const issued = r.outcome === "Issued";
    lines.push([
      r.request.pcr.metadata.name,
      `${r.request.pod.namespace}/${r.request.pod.name}`,
      r.request.pcr.spec.signerName,
      r.outcome,
      issued && r.issuedMs !== undefined ? `${Math.round(r.issuedMs)} ms` : "-",
    ]);
    const condition = r.pcr === undefined ? undefined : terminalCondition(r.pcr);
    details.push(issued ? `SANs: ${sanList(r.pcr)}` : condition?.message ? `${condition.type.toLowerCase()}: ${condition.message}` : undefined);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? "").length)));
  return lines
    .flatMap((l, k) => {
      const row = l.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
      const detail = details[k];
      return detail === undefined ? [row] : [row, `    ${detail}`.trimEnd()];
    })
    .join("\n");
}
