/**
 * The functions' definitions, loaded from the registry (shared/steps.ts) for the runs that host
 * them in this process: `podcert issue`/`invoke`, the in-process pipeline, the tests and the
 * benchmark. The import pattern makes esbuild bundle every functions/<name>/handler.ts into the
 * CLI; the loaded module must export the registry's `handlerExport`, defining that same step.
 */
import { ConfigError } from "../shared/errors.js";
import type { FunctionDefinition } from "../shared/runtime/function.js";
import { STEPS, stepEntry, type StepName } from "../shared/steps.js";

export type Functions = Readonly<Record<StepName, FunctionDefinition>>;

let loaded: Promise<Functions> | undefined;

/** Every registered step's definition (loaded once). */
export function loadFunctions(): Promise<Functions> {
  loaded ??= (async () => {
    const defs = await Promise.all(STEPS.map(loadFunction));
    return Object.fromEntries(defs.map((d) => [d.step, d])) as Functions;
  })();
  return loaded;
}

async function loadFunction(step: StepName): Promise<FunctionDefinition> {
  const { handlerExport, consumes, emits } = stepEntry(step);
  const module = (await import(`../functions/${step}/handler.ts`)) as Record<string, FunctionDefinition | undefined>;
  const def = module[handlerExport];
  if (def === undefined || def.step !== step || def.consumes !== consumes || def.emits !== emits) {
    throw new ConfigError(`functions/${step}/handler.ts must export ${handlerExport}, the definition of step ${step} (see shared/steps.ts)`);
  }
  return def;
}
