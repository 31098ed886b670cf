/** `podcert issue`: the whole pipeline in one process over a cluster file; prints a List of PCRs. */
import { join } from "node:path";
import type { StepKeys } from "../shared/events/attestation.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import { KEYED_STEPS, type KeyedStep } from "../shared/steps.js";
import { terminalCondition } from "../shared/pcr/model.js";
import { loadCaPoolFile, loadSignerConfig, loadStepKeysDir } from "../shared/runtime/load.js";
import { createLogger, type LogLevel } from "../shared/runtime/log.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import { kubernetesVersionOption, startClusterThreadFromFile, stepContexts } from "./cluster.js";
import { issueAll, pendingRequests, type IssueResult } from "./issue.js";
import { EXIT, optional, parse, required } from "./args.js";
import { progressReporter } from "./progress.js";

/** `logLevel`: for the steps' logs on stderr (main.ts reads it from LOG_LEVEL). */
export async function runIssue(args: string[], o: { logLevel: LogLevel }): Promise<number> {
  const { values } = parse(args, { config: { type: "string" }, cluster: { type: "string" }, "ca-pool": { type: "string" }, keys: { type: "string" }, "kubernetes-version": { type: "string" } });
  const kubernetesVersion = kubernetesVersionOption(optional(values, "kubernetes-version"));
  const config = loadSignerConfig(optional(values, "config"));
  const caPool = loadCaPoolFile(required(values, "ca-pool"));
  const keysDir = optional(values, "keys");
  const keys: Record<KeyedStep, StepKeys> = keysDir === undefined
    ? ephemeralStepKeys()
    : (Object.fromEntries(KEYED_STEPS.map((s) => [s, loadStepKeysDir(s, join(keysDir, s))])) as Record<KeyedStep, StepKeys>);

  // The server on its own thread: this one runs every step of the pipeline.
  const server = await startClusterThreadFromFile(required(values, "cluster"), kubernetesVersion);
  try {
    const cluster = new KubeClusterApi(loadKubeConfig({ kubeconfigText: server.kubeconfig }));
    const log = createLogger({ level: o.logLevel });
    const clusterPath = required(values, "cluster");
    const pcrCount = (await cluster.listPcrs()).length;
    if (pcrCount === 0) process.stderr.write(`podcert: cluster file ${clusterPath} has no PodCertificateRequests; nothing to issue\n`);
    // One redrawn line on a terminal, a line every few seconds in a log (cli/progress.ts), ending with "processed N/N PCRs".
    const progress = progressReporter({ out: process.stderr, format: (done, total) => `processed ${done}/${total} PCRs` });
    // The total up front, so that a run that fails before its first PCR ends "processed 0/N"; an
    // empty cluster writes its final "processed 0/0 PCRs" here.
    progress.update(0, pcrCount);
    let result: IssueResult;
    try {
      result = await issueAll({ cluster, contexts: stepContexts({ config, cluster, keys, caPool, log }), onProgress: (done, total) => progress.update(done, total) });
    } finally {
      // Also when issueAll throws: the terminal line is ended before the error is printed.
      progress.finish();
    }
    process.stdout.write(`${JSON.stringify({ apiVersion: "v1", kind: "List", metadata: {}, items: result.pcrs }, null, 2)}\n`);
    const pending = pendingRequests(result, new Set(config.signers.keys()));
    const count = (type: string) => result.pcrs.filter((p) => terminalCondition(p)?.type === type).length;
    process.stderr.write(`${count("Issued")} issued, ${count("Denied") + count("Failed")} denied or failed, ${pending.length} pending\n`);
    for (const p of pending) process.stderr.write(`  pending ${p.pcr.metadata.namespace}/${p.pcr.metadata.name} (${p.pcr.spec.signerName}): ${p.why}\n`);
    const stuck = pending.filter((p) => p.operatorSide).length;
    if (stuck === 0) return EXIT.ok;
    process.stderr.write(`podcert: ${stuck} request${stuck === 1 ? " stays" : "s stay"} pending for a reason an operator must fix (above); exit 75\n`);
    return EXIT.tempFail;
  } finally {
    await server.stop();
  }
}
