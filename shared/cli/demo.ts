/**
 * `podcert demo` (what `npm start` runs): an example cluster in the embedded API server, an
 * emulated kubelet creating PCRs with fresh keys and real proofs, the whole pipeline in-process
 * with fresh CAs and step keys, then a summary line per PCR. Issued credential bundles (PKCS#8 key
 * then chain, as kubelet projects them) and each signer's trust bundle are written under --out.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseClusterFile } from "../apiserver/cluster-file.js";
import { startApiServer } from "../apiserver/server.js";
import { createCaPool, parseCaPool, serializeCaPool, trustBundlePem } from "../ca/pool.js";
import { ConfigError } from "../errors.js";
import { ephemeralStepKeys } from "../events/step-keys.js";
import { loadKubeConfig, KubeClusterApi } from "../kube/client-node.js";
import { terminalCondition, type PodCertificateRequest } from "../pcr/model.js";
import { loadSignerConfig } from "../runtime/load.js";
import { createLogger, type LogLevel } from "../runtime/log.js";
import { stepContexts } from "./cluster.js";
import { issueAll } from "./issue.js";
import { requestPodCertificates } from "./kubelet-emulator.js";
import { EXIT, optional, parse } from "./main.js";
import { pemEncode } from "../x509/pem.js";
import { X509Certificate } from "node:crypto";

export function signerFileName(signerName: string): string {
  return `${signerName.replaceAll("/", ":")}.pem`;
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parse(args, { cluster: { type: "string" }, out: { type: "string" } });
  const clusterPath = optional(values, "cluster") ?? "examples/cluster.yaml";
  const outDir = optional(values, "out") ?? "out";
  const config = loadSignerConfig(optional(values, "config"));
  const say = (m: string) => process.stderr.write(`${m}\n`);

  let text: string;
  try {
    text = readFileSync(clusterPath, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read cluster file ${clusterPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const server = await startApiServer({ objects: parseClusterFile(text) });
  try {
    say(`embedded API server at ${server.url} with ${clusterPath}`);
    say(`creating ECDSA P-256 CAs for ${[...config.signers.keys()].join(", ")}`);
    const caPool = parseCaPool(serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 365, now: new Date() })));
    const kc = loadKubeConfig({ kubeconfigText: server.kubeconfig() });
    const requests = await requestPodCertificates(kc, say);
    const cluster = new KubeClusterApi(kc);
    const log = createLogger({ level: (process.env.LOG_LEVEL ?? "warn") as LogLevel });
    const result = await issueAll({ cluster, contexts: stepContexts({ config, cluster, keys: ephemeralStepKeys(), caPool, log }) });

    const byUid = new Map(result.pcrs.map((p) => [p.metadata.uid ?? "", p]));
    const rows: string[][] = [["PCR", "POD", "SIGNER", "OUTCOME", "SANS", "MS"]];
    for (const req of requests) {
      const pcr = byUid.get(req.pcr.metadata.uid ?? "");
      if (pcr === undefined) continue;
      const c = terminalCondition(pcr);
      const outcome = c === undefined ? "Pending" : c.type === "Issued" ? "Issued" : `${c.type}: ${c.reason}`;
      rows.push([
        pcr.metadata.name,
        `${req.pod.namespace}/${req.pod.name}`,
        pcr.spec.signerName,
        outcome,
        c?.type === "Issued" ? sans(pcr) : c?.message ?? "",
        String(Math.round(result.elapsedMs.get(pcr.metadata.uid ?? "") ?? 0)),
      ]);
      if (c?.type === "Issued" && pcr.status?.certificateChain) {
        const dir = join(outDir, req.pod.namespace, req.pod.name);
        mkdirSync(dir, { recursive: true });
        const key = pemEncode("PRIVATE KEY", req.privateKey.export({ type: "pkcs8", format: "der" }));
        writeFileSync(join(dir, signerFileName(pcr.spec.signerName)), key + pcr.status.certificateChain, { mode: 0o600 });
      }
    }
    mkdirSync(join(outDir, "trust"), { recursive: true });
    for (const signer of config.signers.keys()) writeFileSync(join(outDir, "trust", signerFileName(signer)), trustBundlePem(caPool, signer));
    process.stdout.write(`${table(rows)}\n`);
    say(`credential bundles under ${outDir}/<namespace>/<pod>/, trust bundles under ${outDir}/trust/`);
    return EXIT.ok;
  } finally {
    await server.stop();
  }
}

function sans(pcr: PodCertificateRequest): string {
  const chain = pcr.status?.certificateChain ?? "";
  return new X509Certificate(chain).subjectAltName ?? "";
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.min(60, Math.max(...rows.map((r) => (r[i] ?? "").length))));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ")).join("\n");
}
