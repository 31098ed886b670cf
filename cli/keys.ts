/** `podcert keys init`: one folder per function, holding what that function's Secret holds. */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.js";
import { generateStepSecrets } from "../shared/events/step-keys.js";
import { STEPS } from "../shared/steps.js";
import { EXIT, parse, required } from "./args.js";

export async function runKeysInit(args: string[]): Promise<number> {
  const { values } = parse(args, { out: { type: "string" } });
  const out = required(values, "out");
  const secrets = generateStepSecrets();
  for (const step of STEPS) {
    if (existsSync(join(out, step))) throw new ConfigError(`${join(out, step)} already exists; podcert keys init never overwrites keys`);
  }
  for (const step of STEPS) {
    const dir = join(out, step);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const [file, content] of Object.entries(secrets[step])) writeFileSync(join(dir, file), content, { flag: "wx", mode: 0o600 });
  }
  process.stderr.write(`wrote step keys for ${STEPS.join(", ")} under ${out}/<function>/\n`);
  return EXIT.ok;
}
