/**
 * The zod every schema in podcert uses: zod/mini, whose functions esbuild can tree-shake (about
 * 15 KiB bundled), not the classic API, whose methods pull in all of zod (about 450 KiB, ~35 ms of
 * every function's cold start). zod/mini installs no locale, so every message would read "Invalid
 * input"; the English one the classic API installs by itself is set here because ConfigError and
 * RejectedEventError texts quote the messages.
 *
 * Import it as `import * as z from "../zod.js"`, never zod or zod/mini directly. It re-exports the
 * functions one by one (`export *`): re-exporting zod/mini's namespace object instead would make
 * esbuild keep all of zod, every locale included.
 */
import { config } from "zod/mini";
import { en } from "zod/locales";

config(en());

export * from "zod/mini";
