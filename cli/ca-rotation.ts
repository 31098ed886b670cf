/**
 * The rules of CA rotation (`podcert ca rotate`, `podcert ca status`), as pure functions over a
 * CA pool document and the facts they need: the time, the signer's maximum certificate lifetime,
 * the propagation time. No I/O: cli/ca-rotate.ts reads and writes the pool file.
 *
 * A CA goes prepared (published, not signing) → active (the one that signs) → superseded (stopped
 * signing, published while certificates it signed can be valid) → retired (neither); a prepared CA
 * that never signed may go straight to retired. Two kinds of refusal (RotationRefusedError):
 * waiting rules (not yet: `possibleFrom` says when; `--force` skips the ones marked forcible, with
 * what that risks) and structural ones (never forced).
 */
import { X509Certificate } from "node:crypto";
import { ConfigError } from "../shared/errors.js";
import { certificateIds, type CaPoolDocument, type CaState } from "../shared/ca/pool.js";
import { MIN_LIFETIME_SECONDS } from "../shared/policy/lifetime.js";
import { pemDecodeAll } from "../shared/x509/pem.js";

type SignerEntry = CaPoolDocument["signers"][number];
type CaEntry = SignerEntry["cas"][number];
/** A CA to add: what the pool holds of it, without a state. */
export type NewCa = Pick<CaEntry, "certificate" | "privateKey" | "intermediates">;

/** kubelet refreshes projected trust bundles within about 5 minutes (SPEC §3); twice that by default. */
export const DEFAULT_PROPAGATION_SECONDS = 600;
/**
 * How long after `prepare` the new CA is in the published bundles at the latest: kubelet brings
 * the rewritten podcert-ca-trust Secret to the trust publisher within its sync period (about a
 * minute), and the publisher's PingSource ticks every 5 minutes (knative/publish-trust.yaml). The
 * pool file cannot tell when the publisher actually wrote the bundles, so the propagation time
 * is counted from this bound.
 */
export const PUBLICATION_DELAY_SECONDS = 360;
/**
 * Waited past a superseded CA's last possible certificate before retiring it. `since.superseded`
 * is when the pool file was rewritten; `sign` keeps signing with the old CA until it reads the new
 * pool (kubelet refreshes a mounted Secret within its sync period, about a minute, plus its cache
 * TTL), and verifiers' clocks may run behind (podcert's backdating, BACKDATE_SECONDS, covers only
 * 2 minutes of skew the other way).
 */
export const RETIRE_MARGIN_SECONDS = 600;
/** `prepare` refuses a CA that cannot cover a full certificate for at least this long after now. */
export const PREPARE_HEADROOM_SECONDS = 3600;

export interface RotationFacts {
  now: Date;
  /** The signer's maxLifetimeSeconds (its profile in the signer configuration). */
  maxLifetimeSeconds: number;
  propagationSeconds: number;
}

/** A rule refused the change. `possibleFrom`: a waiting rule, possible from then; else structural. */
export class RotationRefusedError extends Error {
  override readonly name = "RotationRefusedError";
  readonly code: "ERR_ROTATION_NOT_YET" | "ERR_ROTATION_REFUSED";
  constructor(
    message: string,
    readonly possibleFrom?: Date,
    /** `--force` skips it (only waiting rules whose risk is the operator's to take). */
    readonly forcible = false,
  ) {
    super(message);
    this.code = possibleFrom === undefined ? "ERR_ROTATION_REFUSED" : "ERR_ROTATION_NOT_YET";
  }
}

export interface NextStep {
  /** prepare: rotate to a new CA (by `by`); activate, retire: this CA, from `from`; none. */
  step: "prepare" | "activate" | "retire" | "none";
  /** CA the step applies to (activate, retire), as `--serial` takes it. */
  serialHex?: string;
  from?: Date;
  by?: Date;
  /** For people, e.g. "activate from 2026-11-30T07:40:00Z", "rotate before …", "—". */
  text: string;
}

export interface RotationOutcome {
  /** The new document (the input is not changed). */
  doc: CaPoolDocument;
  /** One sentence: what changed. */
  changed: string;
  /** The signer's next step afterwards. */
  next: NextStep;
  /** What `--force` skipped, each with what it risks (empty when nothing was skipped). */
  risks: string[];
}

// ---------------------------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------------------------

interface CaFacts {
  serialHex: string;
  fingerprintSha256: string;
  /** Latest notBefore and earliest notAfter over the CA certificate and its chain. */
  validFrom: Date;
  validUntil: Date;
}

function caFacts(ca: NewCa, signerName: string): CaFacts {
  let chain: X509Certificate[];
  try {
    const above = ca.intermediates?.trim() ? pemDecodeAll(ca.intermediates).map((b) => new X509Certificate(b.der)) : [];
    chain = [new X509Certificate(ca.certificate), ...above];
  } catch {
    // The CLI loads the pool (parseCaPool) before and after a rule; this is a last guard.
    throw new ConfigError(`a CA of signer ${signerName} has a certificate that cannot be read`);
  }
  const times = (f: (x: X509Certificate) => Date) => chain.map((x) => f(x).getTime());
  return {
    ...certificateIds(chain[0]!.raw),
    validFrom: new Date(Math.max(...times((x) => x.validFromDate))),
    validUntil: new Date(Math.min(...times((x) => x.validToDate))),
  };
}

const ms = (seconds: number) => seconds * 1000;
const after = (d: Date, seconds: number) => new Date(d.getTime() + ms(seconds));
const earliest = (a: Date, b: Date) => (a.getTime() <= b.getTime() ? a : b);
const latest = (a: Date, b: Date) => (a.getTime() >= b.getTime() ? a : b);

/** A time for people, to the second: a "from" time rounded up, never shown early; others ("before", "since") down. */
export function showTime(d: Date, round: "up" | "down" = "up"): string {
  const s = (round === "up" ? Math.ceil : Math.floor)(d.getTime() / 1000);
  return new Date(s * 1000).toISOString().replace(".000Z", "Z");
}

/** 600 → "10m", 5400 → "1h30m", 90 → "1m30s". */
export function showDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s || (!h && !m) ? `${s}s` : ""}`;
}

function sinceOf(ca: CaEntry, state: CaState): Date {
  const t = ca.since?.[state];
  if (t === undefined) throw new ConfigError(`a CA in state ${state} has no since.${state}`); // parseCaPool refuses this
  return new Date(t);
}

/** Serials as people type them: any case, with or without 0x, colons or leading zeros. */
function normalSerial(hex: string): string {
  return hex.replace(/^0x/i, "").replace(/[:\s]/g, "").toUpperCase().replace(/^0+(?=.)/, "");
}

const isLegacy = (s: SignerEntry) => s.cas.every((c) => c.state === undefined);
const validAt = (f: CaFacts, now: Date) => f.validFrom.getTime() <= now.getTime() && now.getTime() < f.validUntil.getTime();

/** The pre-rotation rule (pool.ts activeCa): the CA valid now with the latest notAfter. */
function legacySigner(s: SignerEntry, now: Date, signerName: string): CaEntry | undefined {
  let best: { ca: CaEntry; f: CaFacts } | undefined;
  for (const ca of s.cas) {
    const f = caFacts(ca, signerName);
    if (validAt(f, now) && (!best || f.validUntil.getTime() > best.f.validUntil.getTime())) best = { ca, f };
  }
  return best?.ca;
}

// ---------------------------------------------------------------------------------------------
// When each step becomes safe
// ---------------------------------------------------------------------------------------------

/** Certificates a superseded CA signed can be valid until then (never past the CA's own end). */
function retireSafeFrom(ca: CaEntry, signerName: string, maxLifetimeSeconds: number): Date {
  const until = caFacts(ca, signerName).validUntil;
  return earliest(until, after(sinceOf(ca, "superseded"), maxLifetimeSeconds + RETIRE_MARGIN_SECONDS));
}

/** The prepared CA has been published long enough, and is valid. */
function activateSafeFrom(ca: CaEntry, f: CaFacts, propagationSeconds: number): Date {
  return latest(after(sinceOf(ca, "prepared"), PUBLICATION_DELAY_SECONDS + propagationSeconds), f.validFrom);
}

/** After this a CA cannot cover a certificate of the signer's full maximum lifetime. */
const coversUntil = (f: CaFacts, maxLifetimeSeconds: number) => after(f.validUntil, -maxLifetimeSeconds);

function nextStepOfCa(s: SignerEntry, ca: CaEntry, facts: RotationFacts): NextStep {
  const none: NextStep = { step: "none", text: "—" };
  const f = caFacts(ca, s.signerName);
  const { now } = facts;
  const legacy = isLegacy(s);
  const signs = legacy ? legacySigner(s, now, s.signerName) === ca : ca.state === "active";
  const serial = { serialHex: f.serialHex };
  if (ca.state === "prepared") {
    const from = activateSafeFrom(ca, f, facts.propagationSeconds);
    if (latest(from, now).getTime() > coversUntil(f, facts.maxLifetimeSeconds).getTime()) {
      return { step: "retire", ...serial, from: now, text: "retire now: it cannot cover a full certificate when it could be activated; prepare another" };
    }
    return { step: "activate", ...serial, from, text: from.getTime() <= now.getTime() ? "activate now" : `activate from ${showTime(from)}` };
  }
  if (ca.state === "superseded") {
    const from = retireSafeFrom(ca, s.signerName, facts.maxLifetimeSeconds);
    return { step: "retire", ...serial, from, text: from.getTime() <= now.getTime() ? "retire now" : `retire from ${showTime(from)}` };
  }
  if (!signs || s.cas.some((c) => c.state === "prepared")) return none;
  // The signing CA, with no rotation under way: when the next one must start.
  const cover = coversUntil(f, facts.maxLifetimeSeconds);
  const by = after(cover, -(PUBLICATION_DELAY_SECONDS + facts.propagationSeconds));
  if (now.getTime() < by.getTime()) return { step: "prepare", by, text: `rotate before ${showTime(by, "down")}` };
  if (now.getTime() < cover.getTime()) return { step: "prepare", by, text: `rotate now: from ${showTime(cover, "down")} it cannot cover a full certificate` };
  const stops = after(f.validUntil, -MIN_LIFETIME_SECONDS);
  if (now.getTime() < stops.getTime()) return { step: "prepare", by, text: `rotate now: certificates are shortened; signing stops at ${showTime(stops, "down")}` };
  return { step: "prepare", by, text: "rotate now: it can no longer sign" };
}

/** The signer's most pressing step: activate, else the earliest retire, else rotate, else none. */
function nextStepOfSigner(s: SignerEntry, facts: RotationFacts): NextStep {
  const steps = s.cas.map((ca) => nextStepOfCa(s, ca, facts));
  const named = (st: NextStep): NextStep => (st.serialHex ? { ...st, text: st.text.replace(/^(activate|retire)/, `$1 CA ${st.serialHex}`) } : st);
  const pick = (step: NextStep["step"]) =>
    steps.filter((st) => st.step === step).sort((a, b) => (a.from?.getTime() ?? 0) - (b.from?.getTime() ?? 0))[0];
  const first = pick("activate") ?? pick("retire") ?? pick("prepare");
  return first ? named(first) : { step: "none", text: "—" };
}

// ---------------------------------------------------------------------------------------------
// The steps
// ---------------------------------------------------------------------------------------------

function signerIn(doc: CaPoolDocument, signerName: string): SignerEntry {
  const s = doc.signers.find((x) => x.signerName === signerName);
  if (!s) {
    throw new RotationRefusedError(
      `the CA pool has no CA for signer ${signerName} (it has: ${doc.signers.map((x) => x.signerName).join(", ")}); \`prepare\` adds one`,
    );
  }
  if (isLegacy(s)) {
    throw new RotationRefusedError(`the CAs of signer ${signerName} carry no rotation state yet (a pool from \`ca init\`); a rotation starts with \`prepare\``);
  }
  return s;
}

/** Skips a forcible waiting refusal when forced, saying what that risks; throws it otherwise. */
function unlessForced(force: boolean, refusal: RotationRefusedError, risk: string, risks: string[]): void {
  if (!force || !refusal.forcible) throw refusal;
  risks.push(risk);
}

/**
 * Gives a signer's CAs states when they carry none: the CA the pre-rotation rule picks now is
 * active (since its notBefore); the others that have not expired are superseded from now (they may
 * have signed certificates that are still valid: they stay published for a full lifetime), the
 * expired ones retired. Returns what it did, for people.
 */
function adoptStates(s: SignerEntry, now: Date): string {
  const signing = legacySigner(s, now, s.signerName);
  const done: string[] = [];
  for (const ca of s.cas) {
    const f = caFacts(ca, s.signerName);
    const state: CaState = ca === signing ? "active" : now.getTime() < f.validUntil.getTime() ? "superseded" : "retired";
    ca.state = state;
    ca.since = { [state]: (state === "active" ? f.validFrom : now).toISOString() };
    done.push(`${f.serialHex} ${state}`);
  }
  return `gave its CAs rotation states (${done.join(", ")})`;
}

/** What prepareCa refuses whatever the new CA: checked before creating one. */
export function checkCanPrepare(doc: CaPoolDocument, signerName: string): void {
  const prepared = doc.signers.find((x) => x.signerName === signerName)?.cas.find((c) => c.state === "prepared");
  if (prepared) {
    throw new RotationRefusedError(
      `signer ${signerName} already has a prepared CA (${caFacts(prepared, signerName).serialHex}, prepared at ${showTime(sinceOf(prepared, "prepared"), "down")}): activate it, or retire it to abort that rotation, first`,
    );
  }
}

/**
 * Adds `newCa` to the signer as prepared (published from now, not signing). Adopts states for a
 * signer from before rotation; adds the signer when the pool has none. Refuses a second prepared
 * CA, a CA already in the pool, and one that expires before now + maxLifetime + an hour.
 */
export function prepareCa(doc: CaPoolDocument, signerName: string, newCa: NewCa, facts: RotationFacts): RotationOutcome {
  checkCanPrepare(doc, signerName);
  const out = structuredClone(doc);
  const { now } = facts;
  const f = caFacts(newCa, signerName);
  let s = out.signers.find((x) => x.signerName === signerName);
  const parts: string[] = [];
  if (!s) {
    s = { signerName, cas: [] };
    out.signers.push(s);
    parts.push("added the signer to the pool");
  }
  const same = s.cas.find((c) => caFacts(c, signerName).fingerprintSha256 === f.fingerprintSha256);
  if (same) throw new RotationRefusedError(`CA ${f.serialHex} is already in the pool for signer ${signerName} (state ${same.state ?? "none"})`);
  const needed = after(now, facts.maxLifetimeSeconds + PREPARE_HEADROOM_SECONDS);
  if (f.validUntil.getTime() < needed.getTime()) {
    throw new RotationRefusedError(
      `CA ${f.serialHex} (or its chain) ends at ${showTime(f.validUntil)}, before ${showTime(needed)}: it must cover a full certificate (${showDuration(facts.maxLifetimeSeconds)}) for at least ${showDuration(PREPARE_HEADROOM_SECONDS)} after now`,
    );
  }
  if (s.cas.length > 0 && isLegacy(s)) parts.push(adoptStates(s, now));
  s.cas.push({ ...newCa, state: "prepared", since: { prepared: now.toISOString() } });
  parts.push(`prepared CA ${f.serialHex} (published, not signing, once this pool is applied; the propagation time counts from now)`);
  return { doc: out, changed: `signer ${signerName}: ${parts.join("; ")}`, next: nextStepOfSigner(s, facts), risks: [] };
}

/**
 * The signer's prepared CA becomes active, its active CA superseded. Waits (forcible) until the
 * prepared CA has been published for the propagation time; refuses (never forced) when there is no
 * prepared CA, or it is not valid yet, or it cannot cover a full certificate.
 */
export function activateCa(doc: CaPoolDocument, signerName: string, facts: RotationFacts & { force: boolean }): RotationOutcome {
  const out = structuredClone(doc);
  const { now } = facts;
  const s = signerIn(out, signerName);
  const p = s.cas.find((c) => c.state === "prepared");
  if (!p) throw new RotationRefusedError(`signer ${signerName} has no prepared CA: \`prepare\` one first`);
  const f = caFacts(p, signerName);
  if (now.getTime() < f.validFrom.getTime()) {
    // Signing with it would fail (activeCa: not valid now): a wait, but never forced.
    throw new RotationRefusedError(`the prepared CA ${f.serialHex} is not valid before ${showTime(f.validFrom)}; activate from then`, f.validFrom);
  }
  const cover = after(now, facts.maxLifetimeSeconds);
  if (f.validUntil.getTime() < cover.getTime()) {
    throw new RotationRefusedError(
      `the prepared CA ${f.serialHex} ends at ${showTime(f.validUntil)}: it cannot cover a full certificate (${showDuration(facts.maxLifetimeSeconds)}); retire it and prepare another`,
    );
  }
  const risks: string[] = [];
  const preparedAt = sinceOf(p, "prepared");
  const publishedBy = after(preparedAt, PUBLICATION_DELAY_SECONDS);
  const from = after(publishedBy, facts.propagationSeconds);
  if (now.getTime() < from.getTime()) {
    unlessForced(
      facts.force,
      new RotationRefusedError(
        `the prepared CA ${f.serialHex} was prepared at ${showTime(preparedAt, "down")} and is in the published bundles by ${showTime(publishedBy)} at the latest; pods may not trust it yet. Activate from ${showTime(from)} (published for at least the propagation time, ${showDuration(facts.propagationSeconds)})`,
        from,
        true,
      ),
      `activated CA ${f.serialHex} before it was published for ${showDuration(facts.propagationSeconds)}: pods that have not received it yet will fail handshakes with certificates it signs`,
      risks,
    );
  }
  const parts = [`CA ${f.serialHex} is active (signs from the next request once sign reads this pool)`];
  const old = s.cas.find((c) => c.state === "active");
  if (old) {
    old.state = "superseded";
    old.since = { ...old.since, superseded: now.toISOString() };
    parts.push(`CA ${caFacts(old, signerName).serialHex} superseded (still published)`);
  }
  p.state = "active";
  p.since = { ...p.since, active: now.toISOString() };
  return { doc: out, changed: `signer ${signerName}: ${parts.join("; ")}`, next: nextStepOfSigner(s, facts), risks };
}

/**
 * Retires the signer's superseded CA, or the prepared or superseded CA `serialHex` names. A
 * superseded CA waits (forcible) until no certificate it signed can be valid; a prepared one never
 * signed and goes at once; the active one never goes.
 */
export function retireCa(doc: CaPoolDocument, signerName: string, facts: RotationFacts & { force: boolean; serialHex?: string }): RotationOutcome {
  const out = structuredClone(doc);
  const { now } = facts;
  const s = signerIn(out, signerName);
  const withFacts = s.cas.map((ca) => ({ ca, f: caFacts(ca, signerName) }));
  let target: { ca: CaEntry; f: CaFacts } | undefined;
  if (facts.serialHex !== undefined) {
    const want = normalSerial(facts.serialHex);
    target = withFacts.find((x) => normalSerial(x.f.serialHex) === want);
    if (!target) {
      throw new RotationRefusedError(`signer ${signerName} has no CA with serial ${facts.serialHex} (it has: ${withFacts.map((x) => `${x.f.serialHex} ${x.ca.state}`).join(", ")})`);
    }
  } else {
    const superseded = withFacts.filter((x) => x.ca.state === "superseded");
    if (superseded.length === 0) {
      const p = withFacts.find((x) => x.ca.state === "prepared");
      throw new RotationRefusedError(
        `signer ${signerName} has no superseded CA to retire${p ? `; to abort the rotation, retire the prepared CA with --serial ${p.f.serialHex}` : ""}`,
      );
    }
    if (superseded.length > 1) {
      const list = superseded.map((x) => `${x.f.serialHex} (retire from ${showTime(retireSafeFrom(x.ca, signerName, facts.maxLifetimeSeconds))})`);
      throw new RotationRefusedError(`signer ${signerName} has ${superseded.length} superseded CAs: name one with --serial (${list.join(", ")})`);
    }
    target = superseded[0]!;
  }
  const { ca, f } = target;
  const risks: string[] = [];
  switch (ca.state) {
    case "active":
      throw new RotationRefusedError(`CA ${f.serialHex} is the active CA of signer ${signerName} and is never retired: activate another first`);
    case "retired":
      throw new RotationRefusedError(`CA ${f.serialHex} of signer ${signerName} is already retired (since ${showTime(sinceOf(ca, "retired"), "down")})`);
    case "prepared":
      break; // never signed anything: nothing to wait for
    case "superseded": {
      const from = retireSafeFrom(ca, signerName, facts.maxLifetimeSeconds);
      if (now.getTime() < from.getTime()) {
        unlessForced(
          facts.force,
          new RotationRefusedError(
            `certificates CA ${f.serialHex} signed can be valid until ${showTime(from)} (superseded at ${showTime(sinceOf(ca, "superseded"), "down")}, maximum lifetime ${showDuration(facts.maxLifetimeSeconds)}, margin ${showDuration(RETIRE_MARGIN_SECONDS)}); retire from then`,
            from,
            true,
          ),
          `retired CA ${f.serialHex} early: certificates signed by CA ${f.serialHex} until ${showTime(from)} will no longer verify once pods receive the new bundle`,
          risks,
        );
      }
      break;
    }
    default:
      throw new RotationRefusedError(`CA ${f.serialHex} of signer ${signerName} has no state`); // signerIn refused legacy signers
  }
  const was = ca.state;
  ca.state = "retired";
  ca.since = { ...ca.since, retired: now.toISOString() };
  return {
    doc: out,
    changed: `signer ${signerName}: retired ${was} CA ${f.serialHex} (no longer published)`,
    next: nextStepOfSigner(s, facts),
    risks,
  };
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

export interface CaStatus {
  serialHex: string;
  fingerprintSha256: string;
  /** null: the signer's CAs carry no state (the pre-rotation rule). */
  state: CaState | null;
  /** Whether it is the CA that signs now. */
  signs: boolean;
  /** When it entered its state. */
  since: Date | null;
  notBefore: Date;
  notAfter: Date;
  next: NextStep;
}

export interface SignerStatus {
  signerName: string;
  /** undefined: the signer is not in the signer configuration (no next steps). */
  maxLifetimeSeconds: number | undefined;
  cas: CaStatus[];
  next: NextStep;
}

/** Every signer and CA of the pool, with its next safe step and from when. */
export function poolStatus(
  doc: CaPoolDocument,
  o: { now: Date; propagationSeconds: number; maxLifetimeSeconds: (signerName: string) => number | undefined },
): SignerStatus[] {
  return doc.signers.map((s) => {
    const maxLifetimeSeconds = o.maxLifetimeSeconds(s.signerName);
    const facts = maxLifetimeSeconds === undefined ? undefined : { now: o.now, maxLifetimeSeconds, propagationSeconds: o.propagationSeconds };
    const unknown: NextStep = { step: "none", text: "? not in the signer configuration (--config)" };
    const signing = isLegacy(s) ? legacySigner(s, o.now, s.signerName) : s.cas.find((c) => c.state === "active");
    return {
      signerName: s.signerName,
      maxLifetimeSeconds,
      cas: s.cas.map((ca) => {
        const f = caFacts(ca, s.signerName);
        return {
          serialHex: f.serialHex,
          fingerprintSha256: f.fingerprintSha256,
          state: ca.state ?? null,
          signs: ca === signing && validAt(f, o.now),
          since: ca.state === undefined ? null : sinceOf(ca, ca.state),
          notBefore: f.validFrom,
          notAfter: f.validUntil,
          next: facts ? nextStepOfCa(s, ca, facts) : unknown,
        };
      }),
      next: facts ? nextStepOfSigner(s, facts) : unknown,
    };
  });
}
