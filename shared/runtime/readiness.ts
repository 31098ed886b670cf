/**
 * What GET /healthz (readiness) answers: whether this function can do its job now. Liveness
 * (/livez) stays trivial: a restart fixes none of what is checked here.
 *
 * - Kubernetes, for a function that uses it (shared/steps.ts usesKubernetes): the API server reached with the kubeconfig's credentials once (a kubeconfig without
 *   any is named as the likely cause). Checked at start and retried until it succeeds, then never
 *   again: one API blip must not take every pod out of its Service at once (the handlers answer
 *   503 for that, and the broker retries).
 * - What the step's own checks report (sign: a usable CA for every configured signer), evaluated
 *   at each probe, so a CA that expires or a pool that is fixed shows at the next probe.
 *
 * The verdict is logged when it changes ("ready", or "not ready" naming what is missing).
 */
import type { CaPool, CaTrust } from "../ca/pool.js";
import { isPodcertError } from "../errors.js";
import { signingCa } from "../policy/issuance.js";
import { certificateTimes, MIN_LIFETIME_SECONDS } from "../policy/lifetime.js";
import type { Logger } from "./log.js";

export interface Readiness {
  /** What is missing; empty when ready. */
  problems(): string[];
}

/** Retries of the start-up API check, doubling from the first to the last. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

export function createReadiness(o: {
  log: Logger;
  /** Absent for a function without Kubernetes access (the dead-letter sink): nothing to wait for. */
  kubernetes?: {
    /** Why no API call can authenticate (fixed at start), or undefined: named with the API check's failure. */
    credentials: string | undefined;
    /** undefined when the API server answered with these credentials, else why not. Never throws. */
    checkApi: () => Promise<string | undefined>;
  };
  /** The step's own checks, cheap enough for every probe. */
  checks?: () => string[];
}): Readiness {
  const kube = o.kubernetes;
  let api: string | undefined = kube === undefined ? undefined : (kube.credentials ?? "the Kubernetes API server has not been reached yet");
  let logged: string | undefined;
  // Probes during the first API check are answered (503) but not logged: it takes milliseconds.
  let settled = kube === undefined;

  const problems = (): string[] => {
    let own: string[];
    try {
      own = o.checks?.() ?? [];
    } catch (e) {
      own = [`readiness check failed: ${e instanceof Error ? e.message : String(e)}`];
    }
    const all = api === undefined ? own : [api, ...own];
    const key = all.join("\n");
    if (settled && key !== logged) {
      logged = key;
      if (all.length === 0) o.log.info("ready");
      else o.log.warn("not ready", { missing: all });
    }
    return all;
  };

  // Tried even without credentials: an API server may serve anonymous clients (kubectl proxy).
  if (kube === undefined) {
    problems();
    return { problems };
  }
  let delay = FIRST_RETRY_MS;
  const attempt = async () => {
    const problem = await kube.checkApi();
    api = problem === undefined ? undefined : kube.credentials === undefined ? problem : `${kube.credentials}; ${problem}`;
    settled = true;
    problems();
    if (api === undefined) return;
    setTimeout(() => void attempt(), delay).unref();
    delay = Math.min(delay * 2, MAX_RETRY_MS);
  };
  void attempt();
  return { problems };
}

/** sign: what keeps each configured signer from issuing now (no active CA valid now, or one that ends within the hour a certificate needs). */
export function caPoolProblems(pool: CaPool, signers: Iterable<string>, now: Date): string[] {
  const problems: string[] = [];
  for (const signerName of signers) {
    try {
      const ca = signingCa(pool, signerName, now);
      certificateTimes({ now, lifetimeSeconds: MIN_LIFETIME_SECONDS, ca, refreshFraction: 0.5 });
    } catch (e) {
      if (!isPodcertError(e)) throw e;
      // Without the clock in it, the message changes only when the pool does (it is logged on change).
      problems.push(e.message.replaceAll(` at ${now.toISOString()}`, " now").replace(/, -?\d+s from now/, ""));
    }
  }
  return problems;
}

/** publish-trust: the configured signers whose CAs it cannot publish (none in the trust document, or none valid now). */
export function caTrustProblems(trust: CaTrust, signers: Iterable<string>, now: Date): string[] {
  const t = now.getTime();
  const problems: string[] = [];
  for (const signerName of signers) {
    const cas = trust.signers.get(signerName) ?? [];
    if (cas.length === 0) problems.push(`the CA trust document has no CA for signer ${signerName}`);
    else if (!cas.some((c) => c.notBefore.getTime() <= t && t < c.notAfter.getTime())) problems.push(`no CA of signer ${signerName} in the CA trust document is valid now`);
  }
  return problems;
}
