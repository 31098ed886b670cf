/**
 * The `podcert` command. Machine-readable output goes to stdout and nothing else does; progress
 * and logs go to stderr. Exit codes follow sysexits: 64 usage, 65 rejected input, 75 transient,
 * 78 configuration.
 */
import "reflect-metadata";
import { ConfigError, isPodcertError, RejectedEventError, TransientError } from "../shared/errors.js";
import { envChoice } from "../shared/runtime/env.js";
import { LOG_LEVELS } from "../shared/runtime/log.js";
import { STEPS } from "../shared/steps.js";
import { EXIT, UsageError } from "./args.js";
import { runCaBundle, runCaInit, runCaTrust } from "./ca.js";
import { runCaRotate, runCaStatus } from "./ca-rotate.js";
import { RotationRefusedError } from "./ca-rotation.js";
import { runDemo } from "./demo.js";
import { runFixtures } from "./fixtures.js";
import { runInvoke } from "./invoke.js";
import { runIssue } from "./issue-command.js";
import { runKeysInit } from "./keys.js";
import { runDoctor, runStatus } from "./status-command.js";

const USAGE = `podcert: a PodCertificateRequest signer (validate → derive-sans → sign, as CloudEvent functions)

Usage:
  podcert ca init --out <file> [--key-algorithm ECDSAP256] [--validity-days 365]
  podcert ca bundle --ca-pool <file> --signer <name> [--format pem|clustertrustbundle]
  podcert ca rotate --ca-pool <file> --signer <name> [--propagation 10m] <step>, the step one of
      prepare [--key-algorithm ECDSAP256] [--validity-days 365]
      prepare --certificate <pem> --private-key <pem> [--chain <pem>]
      activate [--force]
      retire [--serial <hex>] [--force]
  podcert ca status --ca-pool <file> [--propagation 10m] [--output table|json]
  podcert ca trust --ca-pool <file> --out <file>
  podcert keys init --out <dir>
  podcert invoke <${STEPS.join("|")}> --event <file> --cluster <file> --keys <dir> [--ca-pool <file>]
  podcert issue --cluster <file> --ca-pool <file> [--keys <dir>]
  podcert demo [--cluster <file>] [--out <dir>]
  podcert fixtures --out <dir>
  podcert status [--kubeconfig <file>] [--ca-pool <file>] [--output table|json]  (status --help; doctor: the files alone)

Every command takes --config <file> (signer profiles; default: the built-in two signers).
Exit codes: 0 ok, 64 usage, 65 rejected event or refused CA step, 75 transient (retry; a CA step
that is not safe yet), 78 configuration.`;

export async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? EXIT.usage : EXIT.ok;
  }
  try {
    switch (command) {
      case "ca":
        if (sub === "init") return await runCaInit(rest);
        if (sub === "bundle") return await runCaBundle(rest);
        if (sub === "trust") return await runCaTrust(rest);
        if (sub === "rotate") return await runCaRotate(rest);
        if (sub === "status") return await runCaStatus(rest);
        throw new UsageError("podcert ca: expected init, bundle, trust, rotate or status");
      case "keys":
        if (sub === "init") return await runKeysInit(rest);
        throw new UsageError("podcert keys: expected init");
      case "invoke":
        return await runInvoke(sub === undefined ? [] : [sub, ...rest]);
      case "issue":
        // The environment is read here, at the command's edge; the subcommand is given what it needs.
        return await runIssue(sub === undefined ? [] : [sub, ...rest], { logLevel: envChoice("LOG_LEVEL", LOG_LEVELS, "warn") });
      case "demo":
        return await runDemo(sub === undefined ? [] : [sub, ...rest]);
      case "status": return await runStatus(sub === undefined ? [] : [sub, ...rest]);
      case "doctor": return await runDoctor(sub === undefined ? [] : [sub, ...rest]);
      case "fixtures":
        return await runFixtures(sub === undefined ? [] : [sub, ...rest]);
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`podcert: ${e.message}\n\n${USAGE}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`podcert: ${isPodcertError(e) || e instanceof Error ? e.message : String(e)}\n`);
    if (e instanceof RejectedEventError) return EXIT.dataErr;
    // A CA step not safe yet is retried later (75); one that never will be is refused input (65).
    if (e instanceof RotationRefusedError) return e.possibleFrom === undefined ? EXIT.dataErr : EXIT.tempFail;
    if (e instanceof TransientError) return EXIT.tempFail;
    if (e instanceof ConfigError) return EXIT.config;
    return EXIT.software;
  }
}
