/**
 * Certificate lifetime and times. All values are whole seconds: certificates carry whole seconds
 * and kube-apiserver requires the status times to equal the certificate's.
 */
import { WaitingError } from "../errors.js";

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
 * notAfter. The CA must have at least MIN_LIFETIME_SECONDS left from now (this is the one check of
 * the CA's end; ca/pool.ts's activeCa only picks the CA): one closer to its end is an operator
 * problem that rotation fixes, a WaitingError (transient, never a terminal condition; the PCR gets
 * a Warning Event saying which CA and what to do). (Judged from now, not from the backdated
 * notBefore, so every certificate also has at least an hour from notBefore.)
 */
export function certificateTimes(o: {
  now: Date;
  lifetimeSeconds: number;
  /** The CA that would sign: serialHex names it in the error. */
  ca: { signerName: string; notAfter: Date; serialHex?: string };
  refreshFraction: number;
}): CertificateTimes {
  const remaining = (o.ca.notAfter.getTime() - o.now.getTime()) / 1000;
  if (remaining < MIN_LIFETIME_SECONDS) {
    const signer = o.ca.signerName;
    throw new WaitingError(
      "a CA that covers a certificate",
      "CAExpiring",
      `the CA signer ${signer} signs with${o.ca.serialHex === undefined ? "" : ` (serial ${o.ca.serialHex})`} expires at ${o.ca.notAfter.toISOString()}, ` +
        `${Math.floor(remaining)}s from now, less than the ${MIN_LIFETIME_SECONDS}s a certificate needs; requests stay pending until a new CA signs. ` +
        `Prepare and activate a new CA: podcert ca rotate --ca-pool <file> --signer ${signer} prepare, then activate (podcert ca status says when)`,
    );
  }
  const nb = Math.floor(o.now.getTime() / 1000) - BACKDATE_SECONDS;
  const na = Math.min(nb + o.lifetimeSeconds, Math.floor(o.ca.notAfter.getTime() / 1000));
  const lifetime = na - nb;
  const refresh = Math.min(Math.max(nb + Math.floor(lifetime * o.refreshFraction), nb + REFRESH_MARGIN_SECONDS), na - REFRESH_MARGIN_SECONDS);
  return { notBefore: new Date(nb * 1000), notAfter: new Date(na * 1000), beginRefreshAt: new Date(refresh * 1000) };
}
