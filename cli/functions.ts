/** The four functions by step name, for the CLI's in-process runs. */
import { deny } from "../functions/deny/handler.js";
import { deriveSans } from "../functions/derive-sans/handler.js";
import { sign } from "../functions/sign/handler.js";
import { validate } from "../functions/validate/handler.js";
import type { StepName } from "../shared/events/types.js";
import type { FunctionDefinition } from "../shared/runtime/function.js";

export const FUNCTIONS: Readonly<Record<StepName, FunctionDefinition>> = {
  validate,
  "derive-sans": deriveSans,
  sign,
  deny,
};
