/**
 * The function bundles (dist/<function>.mjs) served over HTTP as Knative runs them, against an
 * embedded API server, with throwaway step keys and a CA pool: what attack and regression tests
 * drive over the network. Everything lives in one temp folder that `stop` removes.
 *
 * By default the API server enforces knative/'s RBAC and each function authenticates as the
 * ServiceAccount its Knative Service names, as in the cluster: a call a function has no rule for
 * fails here too (and is listed by `api.refusedRequests()`). `rbac: false` turns that off.
 */
import { fixture } from "./kubernetes.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { startApiServer, type EmbeddedApiServer } from "../../local-cluster/apiserver/server.js";
import { eventFromHttp, eventToBinaryHttp } from "../../shared/events/codec.js";
import { apiServerAddEvent } from "../../shared/events/pcr-event.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import type { StepName } from "../../shared/steps.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "../../local-cluster/identities.js";
import { isKeyedStep, serviceName, stepEntry } from "../../shared/steps.js";
import { buildPodCertificateRequest, type PodCertificateProjection } from "../../local-cluster/kubelet/request.js";
import type { KeyType, Node, Pod, PodCertificateRequest, ServiceAccount } from "../../shared/pcr/model.js";
import { podcert } from "../integration/cli.js";

export interface ServedBundle {
  fn: StepName;
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its JSON log). */
  stderr(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
}

export interface BundleEnv {
  dir: string;
  api: EmbeddedApiServer;
  /** The cluster administrator's kubeconfig (functions get their own ServiceAccount's). */
  kubeconfigPath: string;
  keysDir: string;
  caPoolPath: string;
  /** The CA pool's certificates without keys (`podcert ca trust`), what the trust publisher is given. */
  caTrustPath: string;
  /**
   * Starts `dist/<fn>.mjs` (or `bundle`, run as function `fn`) on a free port (sign gets the CA
   * pool, the trust publisher its certificates, resync a K_SINK that refuses connections) and
   * waits until it listens and has logged whether it is ready.
   */
  serve(fn: StepName, env?: Record<string, string>, bundle?: string): Promise<ServedBundle>;
  /** Kills every process started here, stops the API server and removes the folder. */
  stop(): Promise<void>;
}

export async function startBundleEnv(o: { clusterFile?: string; objects?: readonly unknown[]; rbac?: boolean; knativeDir?: string } = {}): Promise<BundleEnv> {
  const dir = mkdtempSync(join(tmpdir(), "podcert-bundles-"));
  const objects = o.objects ?? parseClusterFile(readFileSync(o.clusterFile ?? fixture("clusters/issued.yaml"), "utf8"));
  const ids = o.rbac === false ? undefined : loadKnativeIdentities(o.knativeDir ?? "knative");
  const api = await startApiServer({
    objects: ids ? [...objects, ...manifestNamespaces(ids, objects)] : objects,
    ...(ids ? { authorization: { rbac: ids.documents, users: [...ids.services.values(), ids.source] } } : {}),
  });
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, api.kubeconfig(), { mode: 0o600 });
  const kubeconfigOf = (fn: StepName): string => {
    if (!ids) return kubeconfigPath;
    const path = join(dir, `kubeconfig-${fn}`);
    writeFileSync(path, api.kubeconfig(userOfService(ids, serviceName(fn)).name), { mode: 0o600 });
    return path;
  };
  const keysDir = join(dir, "keys");
  const caPoolPath = join(dir, "ca.yaml");
  const caTrustPath = join(dir, "ca-trust.yaml");
  for (const args of [["keys", "init", "--out", keysDir], ["ca", "init", "--out", caPoolPath], ["ca", "trust", "--ca-pool", caPoolPath, "--out", caTrustPath]]) {
    const r = await podcert(args);
    if (r.code !== 0) throw new Error(`podcert ${args.join(" ")} failed: ${r.stderr}`);
  }
  const children: ChildProcess[] = [];

  const serve = async (fn: StepName, env: Record<string, string> = {}, bundle = `dist/${fn}.mjs`): Promise<ServedBundle> => {
    const child = spawn(process.execPath, [bundle], {
      env: {
        ...process.env,
        PORT: "0",
        // As in its pod: a step without Kubernetes access (the dead-letter sink) gets no
        // kubeconfig and, having no step keys, no keys folder.
        KUBECONFIG: stepEntry(fn).usesKubernetes ? kubeconfigOf(fn) : "",
        ...(isKeyedStep(fn) ? { PODCERT_KEYS_DIR: join(keysDir, fn) } : {}),
        ...(stepEntry(fn).holdsCaPool ? { PODCERT_CA_POOL: caPoolPath } : {}),
        ...(stepEntry(fn).publishesTrust ? { PODCERT_CA_TRUST: caTrustPath, POD_NAMESPACE: "podcert" } : {}),
        // Its SinkBinding's K_SINK: here an address nothing listens on, unless the test gives its own sink.
        ...(stepEntry(fn).postsToBroker ? { K_SINK: "http://127.0.0.1:9/" } : {}),
        ...env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      child.stderr!.on("data", (d: Buffer) => {
        stderr += d.toString();
        const m = /"msg":"listening".*"port":(\d+)/.exec(stderr);
        // And its first readiness verdict (the API check), so /healthz answers what it will.
        if (m && /"msg":"(not )?ready"/.test(stderr)) resolve(Number(m[1]));
      });
      void exited.then((code) => reject(new Error(`${fn} exited ${code}: ${stderr}`)));
    });
    return { fn, url: `http://127.0.0.1:${port}`, child, stderr: () => stderr, exited };
  };

  return {
    dir,
    api,
    kubeconfigPath,
    keysDir,
    caPoolPath,
    caTrustPath,
    serve,
    async stop() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      await api.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  status: number;
  /** The reply event, when the function answered 200 with one. */
  reply?: PodcertEvent;
  /** The body as text (the error message on 4xx/5xx). */
  text: string;
}

async function answer(res: Response): Promise<Answer> {
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, text };
  return { status: res.status, text, reply: eventFromHttp(Object.fromEntries(res.headers), text) };
}

/** POSTs an event in binary mode, as the broker delivers. */
export async function postEvent(url: string, event: PodcertEvent): Promise<Answer> {
  const { headers, body } = eventToBinaryHttp(event);
  return answer(await fetch(url, { method: "POST", headers, body }));
}

/** POSTs a structured-mode event: any JSON, as an attacker on the network could. */
export async function postStructured(url: string, json: Record<string, unknown>): Promise<Answer> {
  return answer(await fetch(url, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(json) }));
}

/**
 * A new PCR for a pod of the embedded API server, made as kubelet makes it (real key, real proof),
 * created in the store; returns it as stored (uid, resourceVersion) and the ApiServerSource event for it.
 */
export function createPcr(
  api: EmbeddedApiServer,
  o: { namespace: string; pod: string; signerName: string; name: string; userAnnotations?: Record<string, string>; keyType?: KeyType },
): { pcr: PodCertificateRequest; event: PodcertEvent } {
  const pod = api.store.get("pods", o.namespace, o.pod) as unknown as Pod;
  const node = api.store.get("nodes", undefined, pod.spec.nodeName!) as unknown as Node;
  const sa = api.store.get("serviceaccounts", o.namespace, pod.spec.serviceAccountName ?? "default") as unknown as ServiceAccount;
  const projection: PodCertificateProjection = { signerName: o.signerName, keyType: o.keyType ?? "ECDSAP256", publicKeyForm: "pkix" };
  if (o.userAnnotations !== undefined) projection.userAnnotations = o.userAnnotations;
  const { pcr } = buildPodCertificateRequest(pod, projection, { nodeUID: node.metadata.uid!, serviceAccountUID: sa.metadata.uid!, name: o.name });
  const stored = api.store.create(pcr) as unknown as PodCertificateRequest;
  return { pcr: stored, event: apiServerAddEvent(stored) };
}
