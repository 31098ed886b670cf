/**
 * `podcert status` (a cluster, through a kubeconfig, plus the files) and `podcert doctor` (the
 * files alone, before deploying): reads, then hands plain data to status.ts. Exit 0 when no
 * problem is found, 1 when one is (each named), 75 when the API server cannot be read, 78 when a
 * file is unusable.
 */
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import YAML from "yaml";
import { ConfigError } from "../shared/errors.js";
import { CA_POOL_KIND, caTrustDocument, parseCaPool, parseCaPoolDocument, parseCaTrust, type CaTrust } from "../shared/ca/pool.js";
import { MANAGED_BY, MANAGED_BY_LABEL } from "../shared/ca/publication.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import { PCR_KIND } from "../shared/pcr/model.js";
import { parseSignerConfig } from "../shared/profiles/config.js";
import { loadSignerConfig, readText } from "../shared/runtime/load.js";
import { DEFAULT_KNATIVE_DIR } from "../local-cluster/router.js";
import { EXIT, optional, parse, UsageError, type Options } from "./args.js";
import { namedGrants, renderStatus, statusReport, yamlDocuments, type StatusFacts, type StatusReport } from "./status.js";

/** Exit code when the report names a problem (0 and the sysexits codes keep their meaning). */
export const EXIT_PROBLEMS = 1;

/** Where the deployed configuration lives (knative/config.yaml). */
const CONFIG_NAMESPACE = "podcert";
const CONFIG_MAP = "podcert-config";

const COMMON_OPTIONS = `  --config <file>        the signer configuration (default: the built-in two signers)
  --ca-pool <file>       the CA pool, or its trust document (podcert ca trust); keys are never printed
  --manifests <dir>      where the RBAC manifests are (default: this checkout's knative/, when present)
  --output table|json    readable sections (default), or one JSON document on stdout`;

export const STATUS_USAGE = `podcert status [--kubeconfig <file>] [--config <file>] [--ca-pool <file>] [--manifests <dir>]
                      [--pending-after 5m] [--output table|json]`;

/** Its options, an example and its own exit codes (cli/main.ts adds the usage and the common codes). */
export const STATUS_HELP = `What podcert is doing in a cluster, and what disagrees.

Reads the cluster of the kubeconfig (default: $KUBECONFIG, else ~/.kube/config; the embedded API
server's too: podcert demo --keep-running prints its path) as the user it names, and reports:
  - pending PodCertificateRequests by signer and age, with when kube-controller-manager deletes
    each (15 minutes after creation) and podcert's latest Warning Event on it (why it waits);
  - denied and failed requests with their reasons;
  - each signer's CAs and their remaining lifetime (from --ca-pool, else the published bundles);
  - whether the published ClusterTrustBundles match the CA pool;
  - whether the configuration, the deployed one (ConfigMap podcert/podcert-config), the RBAC
    resourceNames and the CA pool agree (everything podcert doctor checks).

Options:
  --kubeconfig <file>    the cluster to read
  --pending-after <d>    a request pending this long is a problem (default 5m)
${COMMON_OPTIONS}

Exit codes: 0 no problem found, 1 a problem found (each named), 64 usage, 75 the API server could
not be read, 78 a file is unusable.

Example:
  KUBECONFIG=out/state/kubeconfig podcert status --ca-pool out/ca-pool.yaml`;

export const DOCTOR_USAGE = "podcert doctor [--config <file>] [--ca-pool <file>] [--manifests <dir>] [--output table|json]";

export const DOCTOR_HELP = `Checks the files before deploying.

Checks, without a cluster, that the signer configuration, the CA pool and the RBAC manifests agree:
every configured signer has a CA that can sign now and covers a full certificate lifetime, the
pool names no signer the configuration does not, and the sign/attest rules and the trust bundle
update rule name exactly the configured signers.

Options:
${COMMON_OPTIONS}

Exit codes: 0 no problem found, 1 a problem found (each named), 64 usage, 78 a file is unusable.

Example:
  podcert doctor --config examples/config/upstream-style.yaml --ca-pool ca-pool.yaml --manifests knative/`;

const OPTIONS = {
  "ca-pool": { type: "string" },
  manifests: { type: "string" },
  output: { type: "string" },
} as const;

/** The environment status reads, given by cli/main.ts (the CLI reads the environment only there). */
export interface StatusEnv {
  KUBECONFIG?: string | undefined;
  KUBERNETES_SERVICE_HOST?: string | undefined;
}

export async function runStatus(args: string[], env: StatusEnv = {}): Promise<number> {
  const { values, positionals } = parse(args, { ...OPTIONS, kubeconfig: { type: "string" }, "pending-after": { type: "string" } });
  if (values.help === true) return help(`Usage: ${STATUS_USAGE}\n\n${STATUS_HELP}`);
  if (positionals.length > 0) throw new UsageError(`podcert status: unexpected ${positionals.join(" ")}`);
  const output = outputOf(values);
  const pendingAfter = durationSeconds(optional(values, "pending-after") ?? "5m", "--pending-after");
  const facts = readFiles(values);
  const kubeconfigPath = optional(values, "kubeconfig");
  if (kubeconfigPath === undefined && !defaultKubeconfigExists(env)) {
    // client-node would fall back to http://localhost:8080, which only confuses.
    throw new ConfigError("no kubeconfig: give --kubeconfig <file> or set KUBECONFIG (podcert doctor checks the files without a cluster)");
  }
  const kc = loadKubeConfig(kubeconfigPath === undefined ? {} : { kubeconfigText: readText(kubeconfigPath, "kubeconfig") });
  const api = new KubeClusterApi(kc);
  const [pcrs, events, bundles, configMap] = await Promise.all([
    api.listPcrs(),
    api.listEvents({ involvedKind: PCR_KIND }),
    api.listTrustBundles(`${MANAGED_BY_LABEL}=${MANAGED_BY}`),
    api.readConfigMap(CONFIG_NAMESPACE, CONFIG_MAP),
  ]);
  const cluster: NonNullable<StatusFacts["cluster"]> = { server: kc.getCurrentCluster()?.server ?? "?", pcrs, events, bundles };
  const text = configMap?.data?.["config.yaml"];
  if (text !== undefined) {
    try {
      cluster.runningSigners = [...parseSignerConfig(text, `ConfigMap ${CONFIG_NAMESPACE}/${CONFIG_MAP}`).signers.keys()];
    } catch (e) {
      cluster.runningConfigError = (e as Error).message;
    }
  }
  return report(statusReport({ ...facts, cluster, pendingProblemSeconds: pendingAfter }), output, "podcert status");
}

export async function runDoctor(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, OPTIONS);
  if (values.help === true) return help(`Usage: ${DOCTOR_USAGE}\n\n${DOCTOR_HELP}`);
  if (positionals.length > 0) throw new UsageError(`podcert doctor: unexpected ${positionals.join(" ")}`);
  const output = outputOf(values);
  return report(statusReport(readFiles(values)), output, "podcert doctor");
}

/** What client-node's loadFromDefault would read: $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
function defaultKubeconfigExists(env: StatusEnv): boolean {
  const paths = env.KUBECONFIG;
  if (paths !== undefined && paths !== "") return paths.split(delimiter).some((p) => p !== "" && existsSync(p));
  return existsSync(join(homedir(), ".kube", "config")) || (env.KUBERNETES_SERVICE_HOST !== undefined && existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token"));
}

function help(text: string): number {
  process.stdout.write(`${text}\n`);
  return EXIT.ok;
}

function outputOf(values: Options): "table" | "json" {
  const output = optional(values, "output") ?? "table";
  if (output !== "table" && output !== "json") throw new UsageError("--output must be table or json");
  return output;
}

function durationSeconds(text: string, option: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === "") throw new UsageError(`${option} must be a duration like 5m, 90s or 1h (got ${JSON.stringify(text)})`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

function report(r: StatusReport, output: "table" | "json", title: string): number {
  process.stdout.write(output === "json" ? `${JSON.stringify(r, null, 2)}\n` : renderStatus(r, title));
  return r.problems.length === 0 ? EXIT.ok : EXIT_PROBLEMS;
}

/** The configuration, the pool (as its trust document) and the manifests' RBAC: ConfigError when unusable. */
function readFiles(values: Options): Omit<StatusFacts, "cluster"> {
  const configPath = optional(values, "config");
  const facts: Omit<StatusFacts, "cluster"> = {
    now: new Date(),
    config: { source: configPath ?? "(built-in)", config: loadSignerConfig(configPath) },
  };
  const poolPath = optional(values, "ca-pool");
  if (poolPath !== undefined) facts.trust = { source: poolPath, trust: readTrust(readText(poolPath, "CA pool")) };
  const manifests = optional(values, "manifests") ?? (existsSync(join(DEFAULT_KNATIVE_DIR, "rbac.yaml")) ? DEFAULT_KNATIVE_DIR : undefined);
  if (manifests !== undefined) facts.rbac = { source: manifests, grants: readRbac(manifests) };
  return facts;
}

/**
 * A pool is checked whole (keys included, as sign would load it) and then kept as its trust
 * document, so that nothing after this holds a private key.
 */
function readTrust(text: string): CaTrust {
  let kind: unknown;
  try {
    kind = (YAML.parse(text) as { kind?: unknown } | null)?.kind;
  } catch {
    kind = undefined; // parseCaTrust names the YAML problem
  }
  if (kind !== CA_POOL_KIND) return parseCaTrust(text);
  parseCaPool(text);
  return parseCaTrust(YAML.stringify(caTrustDocument(parseCaPoolDocument(text))));
}

/** The Roles and ClusterRoles of every YAML file in `dir` (not recursive), as named grants. */
function readRbac(dir: string): ReturnType<typeof namedGrants> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (e) {
    throw new ConfigError(`cannot read the manifests folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return files.flatMap((f) => {
    const path = join(dir, f);
    let docs: unknown[];
    try {
      docs = yamlDocuments(readText(path, "manifest"));
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError(`${path} is not valid YAML: ${(e as Error).message}`);
    }
    return namedGrants(docs, path);
  });
}
