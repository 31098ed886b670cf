// Types of esbuild.config.mjs's exports, for the TypeScript that imports them (bench/).
import type { BuildOptions, Plugin } from "esbuild";

export const FUNCTIONS: Readonly<Record<string, string>>;
export const sideEffectFree: Plugin;
export const builtinsByRequire: Plugin;
export const undiciSlim: Plugin;
/** The namespace of the stand-ins that load each Node.js built-in with require (they show in the metafiles). */
export const BUILTIN_NS: string;
export const common: BuildOptions;
export function buildAll(o?: { force?: boolean }): Promise<{ built: boolean }>;
