/** `podcert keys init`: one folder per function with step keys (all but the dead-letter sink), holding what that function's Secret holds: its edge keys (shared/events/step-keys.ts). */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.js";
import { generateStepSecrets } from "../shared/events/step-keys.js";
import { KEYED_STEPS } from "../shared/steps.js";
import { EXIT, parse, required } from "./args.js";

export async function runKeysInit(args: string[]): Promise<number> {
  const { values } = parse(args, { out: { type: "string" } });
  const out = required(values, "out");
  const secrets = generateStepSecrets();
  for (const step of KEYED_STEPS) {
    if (existsSync(join(out, step))) throw new ConfigError(`${join(out, step)} already exists; podcert keys init never overwrites keys`);
  }
  for (const step of KEYED_STEPS) {
    const dir = join(out, step);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const [file, content] of Object.entries(secrets[step])) writeFileSync(join(dir, file), content, { flag: "wx", mode: 0o600 });
  }
  process.stderr.write(`wrote edge keys for ${KEYED_STEPS.join(", ")} under ${out}/<function>/\n`);
  return EXIT.ok;
}
