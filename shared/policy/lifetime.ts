/**
 * Certificate lifetime and times. All values are whole seconds: certificates carry whole seconds
 * and kube-apiserver requires the status times to equal the certificate's.
 */
import { TransientError } from "../errors.js";

export const MIN_LIFETIME_SECONDS = 3600;
/** kubelet's refresh must start at least this long after notBefore and before notAfter. */
export const REFRESH_MARGIN_SECONDS = 600;
/** Backdating absorbs clock skew between podcert, kube-apiserver and TLS peers. */
export const BACKDATE_SECONDS = 120;

/** The lifetime the signer grants: the profile's maximum, capped by what the request allows. */
export function grantedLifetimeSeconds(profileMaxSeconds: number, requestMaxSeconds: number | undefined): number {
  return Math.max(MIN_LIFETIME_SECONDS, Math.min(profileMaxSeconds, requestMaxSeconds ?? 86400));
}

export interface CertificateTimes {
  notBefore: Date;
  notAfter: Date;
  beginRefreshAt: Date;
}

/**
 * notBefore = now (to the second) - 2 min; notAfter = notBefore + lifetime, never past the CA's
 * notAfter. A CA too close to its end to cover an hour is an operator problem that rotation fixes:
 * transient, never a terminal condition.
 */
export function certificateTimes(o: {
  now: Date;
  lifetimeSeconds: number;
  caNotAfter: Date;
  refreshFraction: number;
}): CertificateTimes {
  const nb = Math.floor(o.now.getTime() / 1000) - BACKDATE_SECONDS;
  const caEnd = Math.floor(o.caNotAfter.getTime() / 1000);
  const na = Math.min(nb + o.lifetimeSeconds, caEnd);
  const lifetime = na - nb;
  if (lifetime < MIN_LIFETIME_SECONDS) {
    throw new TransientError(
      `the active CA expires at ${new Date(caEnd * 1000).toISOString()}, too soon to cover a ${MIN_LIFETIME_SECONDS}s certificate; add a newer CA to the pool`,
    );
  }
  const refresh = Math.min(Math.max(nb + Math.floor(lifetime * o.refreshFraction), nb + REFRESH_MARGIN_SECONDS), na - REFRESH_MARGIN_SECONDS);
  return { notBefore: new Date(nb * 1000), notAfter: new Date(na * 1000), beginRefreshAt: new Date(refresh * 1000) };
}
