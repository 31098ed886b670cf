/**
 * `podcert demo` (what `npm start` runs): the whole event flow on one machine. An example cluster
 * in the embedded API server; each function bundle as its own process; a local broker routing by
 * the Trigger manifests in knative/; an emulated ApiServerSource; an emulated kubelet creating PCRs
 * (fresh keys, real proofs) once the source is watching. Then a table of outcomes, the credential
 * bundles on disk, the trust bundles as a pod's clusterTrustBundle projection reads them from the
 * ClusterTrustBundles publish-trust wrote, and the example's mutual TLS checks run with those files.
 * With --rotate, a CA rotation of both signers follows in the running flow (demo-rotate.ts).
 */
import { throwawayCaPool } from "./ca-create.js";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { ConfigError } from "../shared/errors.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import { dirname, join, resolve } from "node:path";
import { serveKubectl } from "./kubectl-access.js";
import { namedGrants, yamlDocuments } from "./status.js";
import { describeRefusal, type RefusedRequest } from "../local-cluster/apiserver/server.js";
import { clusterTrustBundleName, publishedCas } from "../shared/ca/pool.js";
import { startLocalFlow } from "../local-cluster/flow.js";
import { startDemoPrometheus, type RunningPrometheus } from "../local-cluster/prometheus.js";
import { parseCredentialBundle, runSeedMtlsChecks, type HandshakeCheck } from "../local-cluster/mtls.js";
import { waitForPublishedTrust, writePodTrustFiles } from "../local-cluster/published-trust.js";
import { ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";
import { loadSignerConfig } from "../shared/runtime/load.js";
import { kubernetesVersionOption, loadClusterFile } from "./cluster.js";
import { requestPodCertificates } from "../local-cluster/kubelet/emulator.js";
import { EXIT, optional, parse, UsageError } from "./args.js";
import { collectOutcomes, outcomeTable, signerFileName, unmetExpectations, writeCredentials, type Row } from "./demo-requests.js";
import { ROTATION_PING_INTERVAL_MS, ROTATION_STEPS, runRotationDemo, type RotationCheck } from "./demo-rotate.js";

export { signerFileName };

export const DEMO_HELP = `podcert demo (npm start): run the whole event flow locally and prove the example's mutual TLS

Options:
  --cluster <file>     example cluster (Kubernetes List or multi-document YAML)   [the configuration's
                       example: examples/cluster-upstream-style.yaml for
                       examples/config/upstream-style.yaml, else examples/cluster.yaml]
  --config <file>      signer profiles                                           [built-in two signers]
  --out <dir>          where credential bundles, trust bundles and logs go; emptied first when
                       an earlier demo made it, refused when it holds anything else  [out]
  --port-base <n>      functions on n, n+1, ... (one each), then the broker ingress (0: any free)  [0]
  --knative <dir>      Trigger and Broker manifests to route by, and the RBAC enforced  [knative; when
                       --config names other signers than knative/rbac.yaml, a copy in
                       <out>/knative/ whose RBAC names the configured signers]
  --timeout <seconds>  give up waiting for outcomes, or for published bundles, after this long  [60]
  --kubernetes-version <v>  the control plane the embedded API server emulates: 1.35, 1.36 or 1.37;
                       each node's kubelet writes what its version writes (README "Kubernetes
                       versions")                          [$PODCERT_KUBERNETES_VERSION, else 1.36]
  --rotate             then rotate both signers' CAs in the running flow (prepare, publish,
                       activate, new certificates, retire), the rotation's waits skipped, and
                       prove mTLS with old and new certificates across it (the example cluster)
  --keep-running       keep the API server, broker and functions up until Ctrl-C; where prometheus
                       is installed, also a Prometheus scraping every function, with the alerts of
                       knative/monitoring/ (config and data in the --out folder)
  --no-prometheus      with --keep-running: no Prometheus
  --help               this text`;

const BASE_STEPS = 6;

export const DEFAULT_CLUSTER = "examples/cluster.yaml";

/**
 * The example cluster of each shipped configuration other than the built-in one: its pods ask
 * that configuration's signers. Any other configuration (the built-in one, examples/config/ate.yaml,
 * a file of your own) gets examples/cluster.yaml unless --cluster names one.
 */
export const EXAMPLE_CLUSTERS: Readonly<Record<string, string>> = {
  "examples/config/upstream-style.yaml": "examples/cluster-upstream-style.yaml",
};

/** The cluster file a demo without --cluster loads for this --config. */
export function defaultCluster(configPath: string | undefined): string {
  if (configPath === undefined) return DEFAULT_CLUSTER;
  const match = Object.entries(EXAMPLE_CLUSTERS).find(([config]) => resolve(config) === resolve(configPath));
  return match?.[1] ?? DEFAULT_CLUSTER;
}

/**
 * knative/rbac.yaml names the built-in signers (\`sign\`, \`attest\`, bundle \`update\`). For another
 * configuration the demo does what the README asks of an operator, on a copy: <out>/knative/ with
 * those resourceNames set to the configured signers, every other rule unchanged. Returns the
 * directory to use: knativeDir itself when its RBAC already names exactly the configured signers.
 */
export function knativeForSigners(knativeDir: string, signers: readonly string[], outDir: string, say: (m: string) => void): string {
  const rbacFile = join(knativeDir, "rbac.yaml");
  const bundles = signers.map(clusterTrustBundleName);
  const want = (resource: string) => (resource === "signers" ? signers : bundles);
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));
  const grants = namedGrants(yamlDocuments(readFileSync(rbacFile, "utf8")), rbacFile);
  if (grants.every((g) => same(g.names, want(g.resource)))) return knativeDir;
  // A textual edit of the resourceNames lines, so that the copy differs from the file only there.
  const oldNames = (resource: string) => new Set(grants.filter((g) => g.resource === resource).map((g) => JSON.stringify([...g.names].sort())));
  const oldSigners = oldNames("signers");
  const oldBundles = oldNames("clustertrustbundles");
  const flow = (names: readonly string[]) => `[${names.map((n) => JSON.stringify(n)).join(", ")}]`;
  const text = readFileSync(rbacFile, "utf8").replace(/^(\s*resourceNames: )\[([^\]\n]*)\]/gm, (line, head: string, list: string) => {
    const names = JSON.stringify(list.split(",").map((n) => n.trim().replace(/^["']|["']$/g, "")).filter((n) => n !== "").sort());
    if (oldSigners.has(names)) return `${head}${flow(signers)}`;
    if (oldBundles.has(names)) return `${head}${flow(bundles)}`;
    return line;
  });
  if (!namedGrants(yamlDocuments(text), rbacFile).every((g) => same(g.names, want(g.resource)))) {
    throw new ConfigError(`${rbacFile} names other signers than the configuration, and the demo could not fit a copy of it to them; pass --knative with manifests whose RBAC names ${signers.join(", ")}`);
  }
  const copy = join(outDir, "knative");
  cpSync(knativeDir, copy, { recursive: true });
  writeFileSync(join(copy, "rbac.yaml"), text);
  say(`${rbacFile} names other signers than the configuration: the run enforces ${join(copy, "rbac.yaml")}, a copy naming ${signers.join(", ")}`);
  say(`(and their bundles) instead, as an operator would change it for this configuration; its other rules are unchanged`);
  return copy;
}

/** In an --out folder the demo made: only such a folder is emptied by the next run. */
export const OUT_MARKER = ".podcert-demo-output";

/**
 * Each run starts from an empty --out: files of an earlier run chain to that run's throwaway CA.
 * A folder is emptied only when it holds the marker an earlier run wrote; anything else with
 * files in it is refused rather than deleted.
 */
export function prepareOutDir(outDir: string): void {
  const entries = existsSync(outDir) ? readdirSync(outDir) : [];
  if (entries.length > 0 && !entries.includes(OUT_MARKER)) {
    throw new ConfigError(`--out ${outDir} holds files podcert demo did not write (no ${OUT_MARKER} in it); remove it or choose another folder`);
  }
  for (const entry of entries) rmSync(join(outDir, entry), { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, OUT_MARKER), "made by podcert demo; the next run empties this folder\n");
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parse(args, {
    config: { type: "string" },
    cluster: { type: "string" },
    out: { type: "string" },
    "port-base": { type: "string" },
    knative: { type: "string" },
    timeout: { type: "string" },
    rotate: { type: "boolean" },
    "keep-running": { type: "boolean" },
    "no-prometheus": { type: "boolean" },
    "kubernetes-version": { type: "string" },
  });
  const kubernetesVersion = kubernetesVersionOption(optional(values, "kubernetes-version"));
  const configPath = optional(values, "config");
  const clusterPath = optional(values, "cluster") ?? defaultCluster(configPath);
  const outDir = optional(values, "out") ?? "out";
  const knativeOption = optional(values, "knative");
  const portBase = Number(optional(values, "port-base") ?? "0");
  const timeoutSeconds = Number(optional(values, "timeout") ?? "60");
  const rotate = values.rotate === true;
  if (!Number.isInteger(portBase) || portBase < 0 || portBase > 65530) throw new UsageError("--port-base must be a port number, or 0");
  if (!(timeoutSeconds > 0)) throw new UsageError("--timeout must be a positive number of seconds");
  const config = loadSignerConfig(configPath);
  const say = (m: string) => process.stderr.write(`${m}\n`);
  const totalSteps = BASE_STEPS + (rotate ? ROTATION_STEPS : 0);
  const step = (k: number, text: string) => say(`[${k}/${totalSteps}] ${text}`);
  const signers = [...config.signers.keys()];

  const objects = loadClusterFile(clusterPath, kubernetesVersion);
  prepareOutDir(outDir);
  if (optional(values, "cluster") === undefined && clusterPath !== DEFAULT_CLUSTER) say(`${configPath}: its example cluster is ${clusterPath} (--cluster to load another)`);
  // --knative is enforced as given; the default knative/ is fitted to the configuration's signers.
  const knativeDir = knativeOption ?? knativeForSigners("knative", signers, outDir, say);

  const flow = await startLocalFlow({
    objects,
    config,
    caPool: await throwawayCaPool(signers),
    ...(configPath === undefined ? {} : { configPath }),
    knativeDir,
    kubernetesVersion,
    portBase,
    logDir: join(outDir, "logs"),
    say,
    totalSteps,
    // The rotation pings publish-trust itself at each step; the short tick is the backstop.
    ...(rotate ? { pingIntervalMs: ROTATION_PING_INTERVAL_MS } : {}),
  });
  let prometheus: RunningPrometheus | undefined;
  try {
    const { api, processes, deadLetters, caPool } = flow;
    // Started now, so it scrapes the run itself, not only what follows it.
    if (values["keep-running"] && !values["no-prometheus"]) {
      prometheus = await startDemoPrometheus({ outDir, knativeDir, targets: processes, say });
    }
    const kc = flow.kubeconfig;
    // out/trust/ is what a pod would mount, read from the ClusterTrustBundles publish-trust wrote
    // (it publishes at start): once they hold the pool's CAs, each file is the signer's projection.
    await waitForPublishedTrust(kc, new Map(signers.map((s) => [s, { present: publishedCas(caPool, s).map((c) => c.rootDer) }])), { timeoutMs: timeoutSeconds * 1000 });
    await writePodTrustFiles(kc, signers, join(outDir, "trust"), signerFileName);
    mkdirSync(outDir, { recursive: true });
    copyFileSync(flow.caTrustPath, join(outDir, "ca-trust.yaml"));
    say(`      publish-trust published ClusterTrustBundles ${signers.map(clusterTrustBundleName).join(", ")}; ${join(outDir, "trust")}/ holds what a pod's`);
    say("      clusterTrustBundle projection (signerName, labelSelector app.kubernetes.io/managed-by: podcert) reads from them through the API");
    step(4, `emulated ApiServerSource watching ${flow.sourceApiVersion} PodCertificateRequests; kubelet creates the requests now`);
    const requests = await requestPodCertificates(kc, (m) => say(`      ${m}`));
    const rows = await collectOutcomes(flow, requests, timeoutSeconds * 1000, process.stderr);
    const issued = writeCredentials(outDir, rows);
    step(5, "outcomes");
    process.stdout.write(`${outcomeTable(rows)}\n`);
    const unmet = unmetExpectations(rows);
    for (const r of unmet) say(`      UNEXPECTED: ${describeUnmet(r, config)}`);
    if (rows.length === 0) say(`      NO REQUESTS: no pod in ${clusterPath} has a podCertificate projected volume`);
    if (deadLetters.length > 0) say(`      ${deadLetters.length} deliveries dead-lettered (see ${join(outDir, "logs", "dead-letter.jsonl")})`);
    say(`      credential bundles in ${outDir}/<namespace>/<pod>/<signer>.pem, trust bundles (from the ClusterTrustBundles) in ${outDir}/trust/`);

    // A function that exited on its own hit a bug, even if the broker's retries hid it from the
    // outcomes: the run says so and fails.
    const reportExits = (from: number) => {
      for (const e of flow.exits.slice(from)) say(`      FUNCTION EXITED: ${e.name} (${e.signal ?? `code ${e.code}`}), restarted ${e.restarted?.ok ? "and served again" : "without success"}; see ${join(outDir, "logs", `${e.name}.log`)}`);
    };
    reportExits(0);
    const exitsBefore = flow.exits.length;

    const checks = await exampleMtls(outDir, step, say);
    const runOk = rows.length > 0 && unmet.length === 0 && checks.every((c) => c.ok);
    let rotation: RotationCheck[] | undefined;
    if (rotate) {
      if (!runOk || checks.length === 0 || flow.exits.length > 0) {
        const why = checks.length === 0 ? "the run did not issue the credentials the example's mutual TLS checks use" : "the run before it did not pass";
        say(`\n--rotate: the CA rotation was not run: ${why}`);
        rotation = [{ name: "the run before the CA rotation", ok: false, detail: why }];
      } else {
        rotation = await runRotationDemo({ flow, config, outDir, timeoutMs: timeoutSeconds * 1000, firstStep: BASE_STEPS + 1, step, say, before: issued });
        reportExits(exitsBefore);
      }
    }
    if (values["keep-running"]) {
      const kubectlConfig = join(dirname(flow.kubeconfigPath), "kubectl.kubeconfig");
      const tlsUrl = await serveKubectl(api, kubectlConfig);
      say(`\nkeep running: broker ingress ${flow.brokerUrl}; functions ${processes.map((p) => `${p.name}=${p.url}`).join(" ")}; kubeconfig ${flow.kubeconfigPath} (cluster admin)${prometheus ? `; Prometheus ${prometheus.url} (try ${prometheus.url}/alerts, or a query such as sum by (function, status) (podcert_events_received_total))` : ""}.`);
      say(`kubectl: the API is also served at ${tlsUrl} (kubectl sends no credentials over plain HTTP):\n  KUBECONFIG=${kubectlConfig} kubectl get podcertificaterequests -A\nCtrl-C to stop.`);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
    }
    // Stopping drains each function, which sends the Kubernetes Events it queued in the
    // background: only then has every call of the run reached the API server. An exit while it
    // ran (--keep-running too) counts.
    await prometheus?.stop();
    await flow.stop();
    const refused = permissionProblems(api.refusedRequests(), knativeDir, say);
    const failedRotation = rotation?.filter((c) => !c.ok) ?? [];
    const ok = runOk && refused === 0 && flow.exits.length === 0 && failedRotation.length === 0;
    const problems = [
      ...(rows.length === 0 ? [`the run made no requests (no pod in ${clusterPath} has a podCertificate projected volume)`] : []),
      ...(unmet.length > 0 ? [`${unmet.length} of ${rows.length} requests did not end as their pod's podcert.ate.dev/expect annotation says (UNEXPECTED above)`] : []),
      ...(checks.some((c) => !c.ok) ? ["some mutual TLS handshakes were not as expected (FAIL above)"] : []),
      ...(refused > 0 ? ["some API permissions were not as expected"] : []),
      ...(flow.exits.length > 0 ? [`${flow.exits.length} function process exit${flow.exits.length === 1 ? "" : "s"} (a bug; see above)`] : []),
      ...(failedRotation.length > 0 ? [`the CA rotation failed ${failedRotation.length} check${failedRotation.length === 1 ? "" : "s"}: ${failedRotation.map((c) => c.name).join("; ")}`] : []),
    ];
    if (rotation !== undefined && failedRotation.length === 0) {
      say(`\nCA rotation of ${signers.join(" and ")}: all ${rotation.length} checks passed. Certificates from the old and the new CAs were issued and`);
      say("verified, mTLS held in both directions while the bundles had both CAs, and once the old CAs were retired only the new certificates were accepted");
    }
    const what = checks.length > 0 ? "all outcomes and handshakes as expected" : "all outcomes as expected (no mutual TLS checks: they need the example cluster's credentials)";
    say(ok ? `\n${what}, and every API call allowed by ${knativeDir}/'s RBAC${rotation ? "; the CA rotation passed every check" : ""}` : `\n${problems.join("; ")}`);
    return ok ? EXIT.ok : EXIT.software;
  } finally {
    await prometheus?.stop();
    await flow.stop();
  }
}

/**
 * Every call the API server refused, named: a function lacking a rule fails the run even when
 * nothing else shows it (Kubernetes Events are best effort, so a refused Event changes no outcome).
 */
function permissionProblems(refused: readonly RefusedRequest[], knativeDir: string, say: (m: string) => void): number {
  if (refused.length === 0) {
    say(`      every API call was allowed by the RBAC of ${knativeDir}/ (each function as its own ServiceAccount)`);
    return 0;
  }
  const seen = new Set<string>();
  for (const r of refused) {
    const line = describeRefusal(r);
    if (seen.has(line)) continue;
    seen.add(line);
    say(`      REFUSED: ${line}`);
  }
  say(`      ${refused.length} API calls refused; fix ${join(knativeDir, "rbac.yaml")} (or the call)`);
  return refused.length;
}

/** Why a request's outcome fails the run, with a likely cause where one is plain. */
function describeUnmet(r: Row, config: SignerConfig): string {
  const signer = r.request.pcr.spec.signerName;
  const what = `${r.request.pod.namespace}/${r.request.pod.name} → ${signer}: ${r.outcome}`;
  const hint = config.signers.has(signer) ? "" : `; no configured signer has this name (${[...config.signers.keys()].join(", ")})`;
  if (r.request.expected === undefined) return `${what}, and its pod's podcert.ate.dev/expect annotation names no outcome for this signer${hint}`;
  return `${what}, expected ${r.request.expected}${hint}`;
}

/** The example's handshakes, when the run issued the credentials they need (the example cluster). */
async function exampleMtls(outDir: string, step: (k: number, text: string) => void, say: (m: string) => void): Promise<HandshakeCheck[]> {
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
      step(6, "mutual TLS checks skipped: this cluster did not issue the credentials they use (ate-apiserver, atenet-router, valkey-0, worker-1)");
      return [];
    }
    throw e;
  }
  step(6, "the example's mutual TLS checks, with the issued files");
  for (const c of checks) say(`      ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.outcome} (expected ${c.expect}) — ${c.detail}`);
  return checks;
}
