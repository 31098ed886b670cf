/**
 * `podcert demo` (what `npm start` runs): the whole event flow on one machine. An example cluster
 * in the embedded API server; each function bundle as its own process; a local broker routing by
 * the Trigger manifests in knative/; an emulated ApiServerSource; an emulated kubelet creating PCRs
 * (fresh keys, real proofs) once the source is watching. Then a table of outcomes, the credential
 * bundles and trust bundles on disk, and the seed's mutual TLS proven with those files.
 */
import { throwawayCaPool } from "./ca-create.js";
import { X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeRefusal, type RefusedRequest } from "../local-cluster/apiserver/server.js";
import { trustBundlePem } from "../shared/ca/pool.js";
import { startLocalFlow } from "../local-cluster/flow.js";
import { parseCredentialBundle, runSeedMtlsChecks, type HandshakeCheck } from "../local-cluster/mtls.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import { ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";
import { loadSignerConfig } from "../shared/runtime/load.js";
import { pemEncode } from "../shared/x509/pem.js";
import { loadClusterFile } from "./cluster.js";
import { requestPodCertificates, type EmulatedRequest } from "../local-cluster/kubelet/emulator.js";
import { EXIT, optional, parse, UsageError } from "./args.js";

export const DEMO_HELP = `podcert demo (npm start): run the whole event flow locally and prove the seed's mTLS

Options:
  --cluster <file>     example cluster (Kubernetes List or multi-document YAML)   [examples/cluster.yaml]
  --config <file>      signer profiles                                           [built-in two signers]
  --out <dir>          where credential bundles, trust bundles and logs go       [out]
  --port-base <n>      functions on n, n+1, ... (one each), then the broker ingress (0: any free)  [0]
  --knative <dir>      Trigger and Broker manifests to route by                  [knative]
  --timeout <seconds>  give up waiting for outcomes after this long              [60]
  --keep-running       keep the API server, broker and functions up until Ctrl-C
  --help               this text`;


export function signerFileName(signerName: string): string {
  return `${signerName.replaceAll("/", ":")}.pem`;
}

interface Row {
  request: EmulatedRequest;
  pcr?: PodCertificateRequest;
  outcome: string;
  issuedMs?: number;
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parse(args, {
    cluster: { type: "string" },
    out: { type: "string" },
    "port-base": { type: "string" },
    knative: { type: "string" },
    timeout: { type: "string" },
    "keep-running": { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${DEMO_HELP}\n`);
    return EXIT.ok;
  }
  const clusterPath = optional(values, "cluster") ?? "examples/cluster.yaml";
  const outDir = optional(values, "out") ?? "out";
  const knativeDir = optional(values, "knative") ?? "knative";
  const portBase = Number(optional(values, "port-base") ?? "0");
  const timeoutSeconds = Number(optional(values, "timeout") ?? "60");
  if (!Number.isInteger(portBase) || portBase < 0 || portBase > 65530) throw new UsageError("--port-base must be a port number, or 0");
  if (!(timeoutSeconds > 0)) throw new UsageError("--timeout must be a positive number of seconds");
  const configPath = optional(values, "config");
  const config = loadSignerConfig(configPath);
  const say = (m: string) => process.stderr.write(`${m}\n`);

  const objects = loadClusterFile(clusterPath);

  const flow = await startLocalFlow({
    objects,
    config,
    caPool: await throwawayCaPool(config.signers.keys()),
    ...(configPath === undefined ? {} : { configPath }),
    knativeDir,
    portBase,
    logDir: join(outDir, "logs"),
    say,
  });
  try {
    const { api, broker, processes, finishedAt, deadLetters, caPool } = flow;
    mkdirSync(join(outDir, "trust"), { recursive: true });
    for (const signer of config.signers.keys()) writeFileSync(join(outDir, "trust", signerFileName(signer)), trustBundlePem(caPool, signer));
    say("[4/6] emulated ApiServerSource watching PodCertificateRequests; kubelet creates the requests now");
    const kc = flow.kubeconfig;
    const requests = await requestPodCertificates(kc, (m) => say(`      ${m}`));
    const deadline = performance.now() + timeoutSeconds * 1000;
    let quietSince = performance.now();
    let reported = -1;
    for (;;) {
      const done = requests.filter((r) => finishedAt.has(r.pcr.metadata.uid ?? "")).length;
      if (done !== reported) say(`      ${done}/${requests.length} requests finished`);
      reported = done;
      if (done === requests.length) break;
      if (broker.pending > 0) quietSince = performance.now();
      // Nothing in flight for a while: the rest stay pending (their retries went to the dead letter).
      if (performance.now() - quietSince > 1000 || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }

    const rows: Row[] = [];
    for (const request of requests) {
      const p = api.store.get("podcertificaterequests", request.pcr.metadata.namespace, request.pcr.metadata.name) as unknown as PodCertificateRequest | undefined;
      const c = p ? terminalCondition(p) : undefined;
      const row: Row = { request, outcome: c === undefined ? "Pending" : c.type === "Issued" ? "Issued" : `${c.type}:${c.reason}` };
      if (p) row.pcr = p;
      const end = finishedAt.get(request.pcr.metadata.uid ?? "");
      if (end !== undefined) row.issuedMs = end - request.createdAt;
      rows.push(row);
      if (c?.type === "Issued" && p?.status?.certificateChain) {
        const dir = join(outDir, request.pod.namespace, request.pod.name);
        mkdirSync(dir, { recursive: true });
        const key = pemEncode("PRIVATE KEY", request.privateKey.export({ type: "pkcs8", format: "der" }));
        writeFileSync(join(dir, signerFileName(p.spec.signerName)), key + p.status.certificateChain, { mode: 0o600 });
      }
    }
    say("[5/6] outcomes");
    process.stdout.write(`${outcomeTable(rows)}\n`);
    const unmet = rows.filter((r) => r.request.expected !== undefined && r.request.expected !== r.outcome);
    for (const r of unmet) say(`      UNEXPECTED: ${r.request.pod.namespace}/${r.request.pod.name} → ${r.request.pcr.spec.signerName}: ${r.outcome}, expected ${r.request.expected}`);
    if (deadLetters.length > 0) say(`      ${deadLetters.length} deliveries dead-lettered (see ${join(outDir, "logs", "dead-letter.jsonl")})`);
    say(`      credential bundles in ${outDir}/<namespace>/<pod>/<signer>.pem, trust bundles in ${outDir}/trust/`);

    // A function that exited on its own hit a bug, even if the broker's retries hid it from the
    // outcomes: the run says so and fails.
    for (const e of flow.exits) say(`      FUNCTION EXITED: ${e.name} (${e.signal ?? `code ${e.code}`}), restarted ${e.restarted?.ok ? "and served again" : "without success"}; see ${join(outDir, "logs", `${e.name}.log`)}`);

    const checks = await seedMtls(outDir, say);
    if (values["keep-running"]) {
      say(`\nkeep running: broker ingress ${flow.brokerUrl}; functions ${processes.map((p) => `${p.name}=${p.url}`).join(" ")}; kubeconfig ${flow.kubeconfigPath} (cluster admin). Ctrl-C to stop.`);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    }
    // Stopping drains each function, which sends the Kubernetes Events it queued in the
    // background: only then has every call of the run reached the API server. An exit while it
    // ran (--keep-running too) counts.
    await flow.stop();
    const refused = permissionProblems(api.refusedRequests(), say);
    const outcomesOk = unmet.length === 0 && checks.every((c) => c.ok);
    const ok = outcomesOk && refused === 0 && flow.exits.length === 0;
    const problems = [
      ...(outcomesOk ? [] : ["some outcomes or handshakes were not as expected"]),
      ...(refused > 0 ? ["some API permissions were not as expected"] : []),
      ...(flow.exits.length > 0 ? [`${flow.exits.length} function process exit${flow.exits.length === 1 ? "" : "s"} (a bug; see above)`] : []),
    ];
    say(ok ? "\nall outcomes and handshakes as expected, and every API call allowed by knative/'s RBAC" : `\n${problems.join("; ")}`);
    return ok ? EXIT.ok : EXIT.software;
  } finally {
    await flow.stop();
  }
}

/**
 * Every call the API server refused, named: a function lacking a rule fails the run even when
 * nothing else shows it (Kubernetes Events are best effort, so a refused Event changes no outcome).
 */
function permissionProblems(refused: readonly RefusedRequest[], say: (m: string) => void): number {
  if (refused.length === 0) {
    say("      every API call was allowed by the RBAC of knative/ (each function as its own ServiceAccount)");
    return 0;
  }
  const seen = new Set<string>();
  for (const r of refused) {
    const line = describeRefusal(r);
    if (seen.has(line)) continue;
    seen.add(line);
    say(`      REFUSED: ${line}`);
  }
  say(`      ${refused.length} API calls refused; fix knative/rbac.yaml (or the call)`);
  return refused.length;
}

function sanList(pcr: PodCertificateRequest | undefined): string {
  const chain = pcr?.status?.certificateChain;
  if (!chain) return "";
  return (new X509Certificate(chain).subjectAltName ?? "").replaceAll("URI:", "").replaceAll("DNS:", "");
}

function outcomeTable(rows: readonly Row[]): string {
  const lines = [["PCR", "POD", "SIGNER", "OUTCOME", "TIME TO ISSUE", "SANS"]];
  for (const r of rows) {
    lines.push([
      r.request.pcr.metadata.name,
      `${r.request.pod.namespace}/${r.request.pod.name}`,
      r.request.pcr.spec.signerName,
      r.outcome,
      r.issuedMs === undefined ? "-" : `${Math.round(r.issuedMs)} ms`,
      sanList(r.pcr),
    ]);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? "").length)));
  return lines.map((l) => l.map((cell, i) => (i === l.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ")).join("\n");
}

/** The seed's handshakes, when the run issued the credentials they need (the example cluster). */
async function seedMtls(outDir: string, say: (m: string) => void): Promise<HandshakeCheck[]> {
  const file = (ns: string, pod: string, signer: string) => join(outDir, ns, pod, signerFileName(signer));
  let checks: HandshakeCheck[];
  try {
    const read = (path: string) => readFileSync(path, "utf8");
    checks = await runSeedMtlsChecks({
      apiserver: parseCredentialBundle(read(file("ate-system", "ate-apiserver", ATESYSTEM_SIGNER))),
      router: parseCredentialBundle(read(file("ate-system", "atenet-router", ATESYSTEM_SIGNER))),
      otherControlPlane: parseCredentialBundle(read(file("ate-system", "valkey-0", ATESYSTEM_SIGNER))),
      worker: parseCredentialBundle(read(file("workers-a", "worker-1", WORKERPOOL_SIGNER))),
      ateTrustPem: read(join(outDir, "trust", signerFileName(ATESYSTEM_SIGNER))),
      workerTrustPem: read(join(outDir, "trust", signerFileName(WORKERPOOL_SIGNER))),
      serverName: "api.ate-system.svc",
      routerSpiffeId: "spiffe://cluster.local/ns/ate-system/sa/atenet-router",
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      say("[6/6] mTLS checks skipped: this cluster did not issue the seed's credentials (ate-apiserver, atenet-router, valkey-0, worker-1)");
      return [];
    }
    throw e;
  }
  say("[6/6] the seed's mutual TLS, with the issued files");
  for (const c of checks) say(`      ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.outcome} (expected ${c.expect}) — ${c.detail}`);
  return checks;
}
