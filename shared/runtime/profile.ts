import { RejectedEventError } from "../errors.js";
import type { SignerProfile } from "../profiles/config.js";
import { stepKeys, type FunctionContext } from "./function.js";

/** The profile an inter-step event names; a signer this deployment does not serve is a bad event. */
export function profileFor(ctx: FunctionContext, signerName: string): SignerProfile {
  const profile = ctx.config.signers.get(signerName);
  if (profile === undefined) {
    throw new RejectedEventError(`signer ${signerName.slice(0, 100)} is not configured for step ${stepKeys(ctx).step}`);
  }
  return profile;
}
