/**
 * The `podcert` command. Machine-readable output goes to stdout and nothing else does; progress
 * and logs go to stderr. Exit codes follow sysexits (EXIT_CODES below).
 */
import "reflect-metadata";
import { ApiException } from "@kubernetes/client-node";
import pkg from "../package.json" with { type: "json" };
import { ConfigError, isPodcertError, RejectedEventError, TransientError } from "../shared/errors.js";
import { envChoice } from "../shared/runtime/env.js";
import { LOG_LEVELS } from "../shared/runtime/log.js";
import { STEPS } from "../shared/steps.js";
import { EXIT, UsageError } from "./args.js";
import { runCaBundle, runCaInit, runCaTrust } from "./ca.js";
import { runCaRotate, runCaStatus } from "./ca-rotate.js";
import { RotationRefusedError } from "./ca-rotation.js";
import { DEMO_HELP, runDemo } from "./demo.js";
import { KUBERNETES_VERSION_OPTION } from "./cluster.js";
import { runFixtures } from "./fixtures.js";
import { runInvoke } from "./invoke.js";
import { runIssue } from "./issue-command.js";
import { runKeysInit } from "./keys.js";
import { DOCTOR_HELP, DOCTOR_USAGE, runDoctor, runStatus, STATUS_HELP, STATUS_USAGE } from "./status-command.js";

/** Bundled from package.json at build time (esbuild inlines the JSON). */
export const VERSION: string = pkg.version;

const CONFIG_OPTION = "  --config <file>          signer profiles, checked before anything else    [built-in two signers]";

interface Command {
  /** "ca init": the words that select it. */
  name: string;
  /** One line for `podcert --help`. */
  usage: string;
  /** `podcert <name> --help`: what it does, its options, an example. */
  help: string;
  run: (args: string[]) => Promise<number>;
}

/** Every subcommand. A new one is one entry here (and its usage line appears in `podcert --help`). */
export const COMMANDS: readonly Command[] = [
  {
    name: "ca init",
    usage: "podcert ca init --out <file> [--key-algorithm ECDSAP256] [--validity-days 365]",
    help: `Creates a CA pool with one new root CA per configured signer; never overwrites; mode 0600.

Options:
  --out <file>             the pool file to create (its folder must exist)   (required)
  --key-algorithm <name>   ECDSAP256, ECDSAP384, ECDSAP521, ED25519, RSA3072 or RSA4096  [ECDSAP256]
  --validity-days <n>      1 to 3650                                          [365]
${CONFIG_OPTION}

Example:
  podcert ca init --out ca-pool.yaml`,
    run: runCaInit,
  },
  {
    name: "ca bundle",
    usage: "podcert ca bundle --ca-pool <file> --signer <name> [--format pem|clustertrustbundle] [--api-version certificates.k8s.io/v1]",
    help: `Prints one signer's trust bundle: its published CA certificates.

Options:
  --ca-pool <file>         the CA pool                                        (required)
  --signer <name>          the signer                                         (required)
  --format <f>             pem, or clustertrustbundle (a manifest)           [pem]
  --api-version <v>        the manifest's: certificates.k8s.io/v1 (Kubernetes
                           1.37+) or certificates.k8s.io/v1beta1 (1.35, 1.36)  [certificates.k8s.io/v1]

Examples:
  podcert ca bundle --ca-pool ca-pool.yaml --signer workerpool.podcert.ate.dev/identity
  podcert ca bundle --ca-pool ca-pool.yaml --signer workerpool.podcert.ate.dev/identity \\
    --format clustertrustbundle --api-version certificates.k8s.io/v1beta1`,
    run: runCaBundle,
  },
  {
    name: "ca rotate",
    usage: "podcert ca rotate --ca-pool <file> --signer <name> [--propagation 10m] prepare|activate|retire [...]",
    help: `One step of a CA rotation; rewrites the pool in place. Steps:
  prepare [--key-algorithm ECDSAP256] [--validity-days 365]   a new CA, published, not signing yet
  prepare --certificate <pem> --private-key <pem> [--chain <pem>]   the same with a CA made elsewhere
  activate [--force]                                          the prepared CA signs from now on
  retire [--serial <hex>] [--force]                           the old CA leaves the trust bundle

Options:
  --ca-pool <file>         the CA pool to rewrite                             (required)
  --signer <name>          the signer whose CA rotates                        (required)
  --propagation <d>        how long a trust bundle change takes to reach pods [10m]
${CONFIG_OPTION}

Example:
  podcert ca rotate --ca-pool ca-pool.yaml --signer workerpool.podcert.ate.dev/identity prepare`,
    run: runCaRotate,
  },
  {
    name: "ca status",
    usage: "podcert ca status --ca-pool <file> [--propagation 10m] [--output table|json]",
    help: `Each signer's CAs: serial, SHA-256, state, since, not after, the next safe step and from when.

Options:
  --ca-pool <file>         the CA pool                                        (required)
  --propagation <d>        as for ca rotate                                   [10m]
  --output <o>             table or json                                      [table]
${CONFIG_OPTION}

Example:
  podcert ca status --ca-pool ca-pool.yaml`,
    run: runCaStatus,
  },
  {
    name: "ca trust",
    usage: "podcert ca trust --ca-pool <file> --out <file>",
    help: `Writes the pool's certificates and states without its private keys (for publish-trust's Secret).

Options:
  --ca-pool <file>         the CA pool                                        (required)
  --out <file>             the trust document to write                        (required)

Example:
  podcert ca trust --ca-pool ca-pool.yaml --out ca-trust.yaml`,
    run: runCaTrust,
  },
  {
    name: "keys init",
    usage: "podcert keys init --out <dir>",
    help: `Writes each function's edge keys: <dir>/<function>/edge-keys.jwks, the HS256 keys of
exactly the attestation edges it is an end of (each edge's key in its two ends' files only).

Options:
  --out <dir>              where the folders go; never overwrites             (required)

Example:
  podcert keys init --out keys`,
    run: runKeysInit,
  },
  {
    name: "invoke",
    usage: `podcert invoke <function> --event <file> --cluster <file> --keys <dir> [--ca-pool <file>] [--out <file>]`,
    help: `Runs one function on one event against a cluster file; prints the reply event (JSON) on stdout.
Exit 75 when the function asks for a retry, 65 when it rejects the event.

Options:
  <function>               ${STEPS.join(", ")}
  --event <file>           a structured-mode CloudEvent (JSON)                (required)
  --cluster <file>         the objects of the embedded API server   (required; not for dead-letter)
  --keys <dir>             from podcert keys init                   (required; not for dead-letter)
  --ca-pool <file>         the CA pool                                        (sign only, required)
  --out <file>             sign only: write the issued chain there (else it is printed on stderr)
${KUBERNETES_VERSION_OPTION}
${CONFIG_OPTION}

Example:
  podcert invoke validate --event test/fixtures/events/issued/valkey-0.json \\
    --cluster test/fixtures/clusters/issued.yaml --keys keys > validated.json`,
    run: runInvoke,
  },
  {
    name: "issue",
    usage: "podcert issue --cluster <file> --ca-pool <file> [--keys <dir>]",
    help: `Runs every PCR of a cluster file through the whole pipeline in one process; prints a List of
the PCRs afterwards on stdout, and on stderr every request left pending and why. The steps log
at LOG_LEVEL (default warn). Exit 75 when a request stayed pending for a reason an operator must
fix (no usable CA, API errors); 0 when requests only wait (for a Service that does not exist yet).

Options:
  --cluster <file>         the objects of the embedded API server             (required)
  --ca-pool <file>         the CA pool                                        (required)
  --keys <dir>             step keys from podcert keys init                   [fresh ones]
${KUBERNETES_VERSION_OPTION}
${CONFIG_OPTION}

Example:
  podcert issue --cluster test/fixtures/clusters/issued.yaml --ca-pool ca-pool.yaml`,
    run: (args) => runIssue(args, { logLevel: envChoice("LOG_LEVEL", LOG_LEVELS, "warn") }),
  },
  {
    name: "demo",
    usage: "podcert demo [--cluster <file>] [--out <dir>] [--kubernetes-version 1.36] [--rotate] [--keep-running]",
    help: `${DEMO_HELP}

Examples:
  npm start -- --rotate                     (podcert demo --rotate)
  npm start -- --kubernetes-version 1.37    (a 1.37 control plane: PCRs in certificates.k8s.io/v1)`,
    run: runDemo,
  },
  {
    name: "fixtures",
    usage: "podcert fixtures --out <dir> [--kubernetes-version 1.36]",
    help: `Regenerates the test fixtures (cluster files and events) with fresh keys and real proofs, as the
kubelets and the ApiServerSource of one control-plane version write them.

Options:
  --out <dir>              where clusters/ and events/ go                     (required)
${KUBERNETES_VERSION_OPTION}

Examples:
  podcert fixtures --out test/fixtures
  podcert fixtures --kubernetes-version 1.37 --out test/fixtures/kubernetes-1.37
  (npm run fixtures writes all three sets)`,
    run: runFixtures,
  },
  {
    name: "status",
    usage: STATUS_USAGE,
    help: STATUS_HELP,
    // client-node reads KUBECONFIG itself; status checks first that it names something.
    run: (args) => runStatus(args, { KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST }),
  },
  {
    name: "doctor",
    usage: DOCTOR_USAGE,
    help: DOCTOR_HELP,
    run: runDoctor,
  },
];

/** sysexits(3), as podcert uses them. */
const EXIT_CODES = `Exit codes:
  0   done (demo: every request ended as its pod's podcert.ate.dev/expect annotation says)
  64  usage: an unknown command or option, a missing or out-of-range value
  65  refused input: a rejected event, a CA step that is never safe
  70  failed: a demo whose outcomes or checks were not as expected, or a bug
  75  try again later: a CA step not safe yet, a request pending on an operator's fix, an API error
  78  configuration: an unreadable or invalid file, or a folder that cannot be used`;

const USAGE = `podcert ${VERSION}: a PodCertificateRequest signer (validate → derive-sans → sign, as CloudEvent functions)

Usage:
${COMMANDS.map((c) => `  ${c.usage}`).join("\n")}
  podcert version

\`podcert <command> --help\` shows a command's options and an example.

${EXIT_CODES}`;

const isHelp = (a: string) => a === "--help" || a === "-h";

/** The command `argv` names, the longest name first ("ca init" before a hypothetical "ca"). */
function findCommand(argv: readonly string[]): { command: Command; rest: string[] } | undefined {
  for (const command of COMMANDS) {
    const words = command.name.split(" ");
    if (words.every((w, i) => argv[i] === w)) return { command, rest: argv.slice(words.length) };
  }
  return undefined;
}

/** A usage error for words that name no command: the group's commands, or all of them. */
function unknownCommand(argv: readonly string[]): UsageError {
  const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `));
  if (group.length > 0) {
    const subs = group.map((c) => c.name.split(" ")[1]).join(", ");
    return new UsageError(argv[1] === undefined ? `podcert ${argv[0]}: expected one of ${subs}` : `podcert ${argv[0]}: unknown command ${argv[1]} (expected one of ${subs})`);
  }
  return new UsageError(`unknown command ${argv[0]}`);
}

export async function main(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first === undefined || first === "help" || isHelp(first)) {
    process.stdout.write(`${USAGE}\n`);
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === "version" || first === "--version" || first === "-V") {
    process.stdout.write(`podcert ${VERSION}\n`);
    return EXIT.ok;
  }
  const found = findCommand(argv);
  try {
    if (found === undefined) throw unknownCommand(argv);
    if (found.rest.some(isHelp)) {
      process.stdout.write(`Usage: ${found.command.usage}\n\n${found.command.help}\n\n${EXIT_CODES}\n`);
      return EXIT.ok;
    }
    return await found.command.run(found.rest);
  } catch (e) {
    if (e instanceof UsageError) {
      const usage = found === undefined ? USAGE : `Usage: ${found.command.usage}\n(podcert ${found.command.name} --help for its options and an example)`;
      process.stderr.write(`podcert: ${e.message}\n\n${usage}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`podcert: ${describeError(e)}\n`);
    if (e instanceof RejectedEventError) return EXIT.dataErr;
    // A CA step not safe yet is retried later (75); one that never will be is refused input (65).
    if (e instanceof RotationRefusedError) return e.possibleFrom === undefined ? EXIT.dataErr : EXIT.tempFail;
    if (e instanceof TransientError) return EXIT.tempFail;
    if (e instanceof ConfigError) return EXIT.config;
    return EXIT.software;
  }
}

/** An error in podcert's words; the Kubernetes client's own message is a dump of the response. */
function describeError(e: unknown): string {
  if (e instanceof ApiException) {
    const body: unknown = typeof e.body === "string" ? (() => { try { return JSON.parse(e.body as string); } catch { return undefined; } })() : e.body;
    const message = (body as { message?: unknown } | undefined)?.message;
    return `the Kubernetes API server answered HTTP ${e.code}${typeof message === "string" ? `: ${message}` : ""}`;
  }
  return isPodcertError(e) || e instanceof Error ? e.message : String(e);
}
