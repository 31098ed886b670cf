/**
 * Part 2: the whole in-process pipeline (`podcert issue`): validate → derive-sans → sign, with
 * the step attestations and every Kubernetes API call going to the embedded API server over HTTP.
 * The server runs on its own thread (as kube-apiserver runs elsewhere in a cluster); the pipeline
 * runs on the harness's one thread.
 */
import { parseCaPool, serializeCaPool } from "../shared/ca/pool.js";
import { createCaPool } from "../cli/ca-create.js";
import { stepContexts } from "../cli/cluster.js";
import { issueAll } from "../cli/issue.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import { KEY_TYPES, terminalCondition, type KeyType } from "../shared/pcr/model.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { silentLogger } from "../shared/runtime/log.js";
import { startApiServerThread } from "./apiserver-thread.js";
import { syntheticCluster } from "./cluster.js";
import { target, type BenchPart } from "./report.js";

export async function measurePipeline(o: { pods: number; keyType: KeyType; signer: "atesystem" | "workerpool"; concurrency?: number }) {
  const { objects } = syntheticCluster(o);
  // dist/bench-apiserver.mjs sits next to the bundled harness (bench/build.mjs).
  const api = await startApiServerThread(new URL("./bench-apiserver.mjs", import.meta.url), objects);
  try {
    const config = defaultSignerConfig();
    const caPool = parseCaPool(serializeCaPool(await createCaPool([...config.signers.keys()], { keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() })));
    const cluster = new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig }));
    const contexts = stepContexts({ config, cluster, keys: ephemeralStepKeys(), caPool, log: silentLogger });
    const result = await issueAll({ cluster, contexts, concurrency: o.concurrency ?? 64 });
    const issued = result.pcrs.filter((p) => terminalCondition(p)?.type === "Issued").length;
    const t = [...result.timings.values()];
    // Until the last PCR is done and the Kubernetes Events recorded in the background are sent.
    const seconds = (Math.max(result.eventsFlushedAt, ...t.map((x) => x.end)) - Math.min(...t.map((x) => x.start))) / 1000;
    return { issued, total: result.pcrs.length, perSecond: issued / seconds, seconds };
  } finally {
    await api.stop();
  }
}

export async function runPipeline(o: { pods?: number } = {}): Promise<BenchPart> {
  const pods = o.pods ?? 1000;
  const rows: BenchPart["rows"] = [];
  const targets = [];
  for (const keyType of KEY_TYPES) {
    // RSA keys take long to generate: fewer of them, same rate measure.
    const n = keyType.startsWith("RSA") ? Math.min(pods, 100) : pods;
    for (const signer of ["atesystem", "workerpool"] as const) {
      const r = await measurePipeline({ pods: n, keyType, signer });
      rows.push({ "request key": keyType, signer, PCRs: r.total, issued: r.issued, seconds: r.seconds, "PCRs/s": Math.round(r.perSecond) });
      if (keyType === "ECDSAP256") targets.push(target(`in-process pipeline, P-256 requests, ${signer}`, r.perSecond, "min", 1000, "PCRs/s"));
    }
  }
  return {
    title: "2. in-process issuance (validate → derive-sans → sign, embedded API server)",
    rows,
    targets,
    notes: [
      "Measured from the first PCR processed to the last (and its Kubernetes Events sent); the pipeline on one thread, the embedded API server on a second thread of the same process; includes attestations and every API call over HTTP.",
    ],
  };
}
