/**
 * `podcert status` and `podcert doctor`, decided as pure functions over plain data: what the
 * signer configuration, the CA pool (or its trust document), the RBAC manifests and, when a
 * cluster is read, its PodCertificateRequests, Events and published ClusterTrustBundles say, and
 * every way they disagree. The I/O is status-command.ts. Private keys never reach this module:
 * the pool is read as its trust document.
 */
import { X509Certificate } from "node:crypto";
import YAML from "yaml";
import { clusterTrustBundleName, publishedCas, type CaTrust, type TrustedCa } from "../shared/ca/pool.js";
import { desiredTrustBundle, planTrustBundles } from "../shared/ca/publication.js";
import type { ClusterTrustBundle, CoreV1Event } from "../shared/kube/cluster.js";
import { terminalCondition, type PodCertificateRequest } from "../shared/pcr/model.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import { MIN_LIFETIME_SECONDS } from "../shared/policy/lifetime.js";
import { pemDecodeAll } from "../shared/x509/pem.js";

/** kube-controller-manager's PodCertificateRequest cleaner deletes every PCR this long after creation. */
export const PCR_CLEANUP_SECONDS = 15 * 60;
/** Pending longer than this is a problem by default (`--pending-after`). */
export const DEFAULT_PENDING_PROBLEM_SECONDS = 5 * 60;

/** An RBAC rule naming signers (`sign`, `attest`) or trust bundles (`update`), as the manifests hold it. */
export interface NamedGrant {
  /** "ClusterRole podcert-sign (knative/rbac.yaml)". */
  role: string;
  verb: "sign" | "attest" | "update";
  resource: "signers" | "clustertrustbundles";
  names: readonly string[];
}

/** A Kubernetes Event about a PCR (core/v1 wire form). */
export type PcrEvent = CoreV1Event;

export interface StatusFacts {
  now: Date;
  config: { source: string; config: SignerConfig };
  /** The CA pool or trust document: without it, the CAs are those of the published bundles. */
  trust?: { source: string; trust: CaTrust };
  /** RBAC from the manifests; undefined: not checked. */
  rbac?: { source: string; grants: readonly NamedGrant[] };
  cluster?: {
    server: string;
    pcrs: readonly PodCertificateRequest[];
    events: readonly PcrEvent[];
    /** The ClusterTrustBundles labelled managed-by podcert. */
    bundles: readonly ClusterTrustBundle[];
    /** The signer names of the deployed configuration (ConfigMap podcert/podcert-config); undefined when absent. */
    runningSigners?: readonly string[];
    /** Why the deployed configuration could not be read, when it exists but is unusable. */
    runningConfigError?: string;
  };
  pendingProblemSeconds?: number;
}

export interface CaLine {
  serialHex: string;
  state: string;
  notBefore: string;
  notAfter: string;
  remainingSeconds: number;
  signs: boolean;
}

export interface SignerLine {
  signerName: string;
  configured: boolean;
  maxLifetimeSeconds: number | null;
  /** Where the CAs were read from: "pool" or "published bundle". */
  casFrom: string | null;
  cas: CaLine[];
}

export interface PendingLine {
  namespace: string;
  name: string;
  signerName: string;
  ageSeconds: number;
  /** Until kube-controller-manager deletes it (0: due now). */
  deletedInSeconds: number;
  /** podcert's latest Warning Event on it: why it waits. */
  waiting?: string;
}

export interface DenialLine {
  namespace: string;
  name: string;
  signerName: string;
  type: string;
  reason: string;
  message: string;
  at: string;
}

export interface BundleLine {
  name: string;
  signerName: string;
  /** Against the pool; "not compared" without one. */
  state: "matches" | "missing" | "differs" | "not configured" | "not compared";
}

export interface StatusReport {
  now: string;
  /** What was read: configuration, pool, manifests, cluster. */
  sources: string[];
  signers: SignerLine[];
  pending: PendingLine[] | null;
  denials: DenialLine[] | null;
  bundles: BundleLine[] | null;
  problems: string[];
}

const seconds = (ms: number) => Math.floor(ms / 1000);

/** "3d4h", "12m", "45s": for reading, not parsing. */
export function showSeconds(s: number): string {
  if (s < 0) return `-${showSeconds(-s)}`;
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d}d${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));
function setDifference(label: string, have: readonly string[], want: readonly string[]): string {
  const missing = want.filter((x) => !have.includes(x));
  const extra = have.filter((x) => !want.includes(x));
  return [missing.length ? `${label} lacks ${missing.join(", ")}` : "", extra.length ? `${label} has extra ${extra.join(", ")}` : ""].filter((s) => s !== "").join("; ");
}

/** The CA that signs now, by pool.ts's activeCa rule, over certificates only. */
function signingCa(cas: readonly TrustedCa[], now: Date): TrustedCa | undefined {
  const t = now.getTime();
  const valid = (c: TrustedCa) => c.notBefore.getTime() <= t && t < c.notAfter.getTime();
  if (cas[0]?.state !== undefined) return cas.find((c) => c.state === "active" && valid(c));
  return cas.filter(valid).sort((a, b) => b.notAfter.getTime() - a.notAfter.getTime())[0];
}

function caLine(ca: { serialHex: string; state: string; notBefore: Date; notAfter: Date }, now: Date, signs: boolean): CaLine {
  return {
    serialHex: ca.serialHex,
    state: ca.state,
    notBefore: ca.notBefore.toISOString(),
    notAfter: ca.notAfter.toISOString(),
    remainingSeconds: seconds(ca.notAfter.getTime() - now.getTime()),
    signs,
  };
}

/** The certificates of a published bundle, as CA lines (what signs cannot be told from a bundle). */
function bundleCas(bundle: ClusterTrustBundle, now: Date): CaLine[] {
  try {
    return pemDecodeAll(bundle.spec.trustBundle).map((b) => {
      const cert = new X509Certificate(b.der);
      return caLine({ serialHex: cert.serialNumber, state: "published", notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) }, now, false);
    });
  } catch {
    return [];
  }
}

export function statusReport(f: StatusFacts): StatusReport {
  const now = f.now;
  const problems: string[] = [];
  const configured = [...f.config.config.signers.keys()];
  const sources = [`configuration ${f.config.source}`];
  const pool = f.trust?.trust;
  if (f.trust) sources.push(`CA pool ${f.trust.source}`);
  if (f.rbac) sources.push(`RBAC ${f.rbac.source}`);
  if (f.cluster) sources.push(`cluster ${f.cluster.server}`);

  // Signers and their CAs.
  const poolSigners = pool ? [...pool.signers.keys()] : [];
  const names = [...configured, ...poolSigners.filter((s) => !configured.includes(s))];
  const signers: SignerLine[] = names.map((signerName) => {
    const profile = f.config.config.signers.get(signerName);
    const cas = pool?.signers.get(signerName);
    const line: SignerLine = { signerName, configured: profile !== undefined, maxLifetimeSeconds: profile?.maxLifetimeSeconds ?? null, casFrom: null, cas: [] };
    if (cas !== undefined) {
      const signing = signingCa(cas, now);
      line.casFrom = "pool";
      line.cas = cas.map((ca) => caLine({ ...ca, state: ca.state ?? "(no state)" }, now, ca === signing));
      if (profile === undefined) {
        problems.push(`the CA pool has signer ${signerName}, which the configuration does not name`);
        return line;
      }
      if (signing === undefined) {
        problems.push(`signer ${signerName} has no CA that can sign now: every request waits (podcert ca status --ca-pool … says what to do)`);
      } else {
        const left = seconds(signing.notAfter.getTime() - now.getTime());
        if (left < MIN_LIFETIME_SECONDS) {
          problems.push(`the signing CA of ${signerName} (serial ${signing.serialHex}) ends in ${showSeconds(left)}, less than the ${showSeconds(MIN_LIFETIME_SECONDS)} a certificate needs: requests wait; rotate it (podcert ca rotate)`);
        } else if (left < profile.maxLifetimeSeconds) {
          problems.push(`the signing CA of ${signerName} (serial ${signing.serialHex}) ends in ${showSeconds(left)}, within the signer's maximum certificate lifetime (${showSeconds(profile.maxLifetimeSeconds)}): certificates are cut short; rotate it (podcert ca rotate)`);
        }
      }
    } else if (profile !== undefined && pool !== undefined) {
      problems.push(`signer ${signerName} is configured but the CA pool has no CA for it`);
    } else if (profile !== undefined && f.cluster) {
      const bundle = f.cluster.bundles.find((b) => b.spec.signerName === signerName);
      if (bundle) {
        line.casFrom = "published bundle";
        line.cas = bundleCas(bundle, now);
        if (line.cas.every((c) => c.remainingSeconds <= 0)) problems.push(`every CA published for ${signerName} has expired`);
      }
    }
    return line;
  });

  // RBAC resourceNames against the configuration.
  if (f.rbac) {
    const check = (verb: NamedGrant["verb"], resource: NamedGrant["resource"], want: readonly string[], what: string) => {
      const grants = f.rbac!.grants.filter((g) => g.verb === verb && g.resource === resource);
      if (grants.length === 0) problems.push(`${f.rbac!.source}: no rule grants ${verb} on ${resource} by name (${what})`);
      for (const g of grants) if (!sameSet(g.names, want)) problems.push(`${g.role}: ${verb} on ${resource} ${setDifference("resourceNames", g.names, want)} (the configuration's ${what})`);
    };
    check("sign", "signers", configured, "signer names");
    check("attest", "signers", configured, "signer names");
    check("update", "clustertrustbundles", configured.map(clusterTrustBundleName), "trust bundle names");
  }

  let pending: PendingLine[] | null = null;
  let denials: DenialLine[] | null = null;
  let bundles: BundleLine[] | null = null;
  if (f.cluster) {
    const c = f.cluster;
    // podcert's latest Warning on each PCR (by uid, else namespace/name): why it waits.
    const latestWarning = new Map<string, { at: number; text: string }>();
    for (const e of c.events) {
      const component = e.reportingComponent ?? e.source?.component ?? "";
      if (e.type !== "Warning" || !component.startsWith("podcert") || e.involvedObject?.kind !== "PodCertificateRequest") continue;
      const at = Date.parse(e.lastTimestamp ?? e.eventTime ?? "") || 0;
      const keys = [e.involvedObject.uid, `${e.involvedObject.namespace}/${e.involvedObject.name}`].filter((k): k is string => !!k);
      for (const k of keys) {
        if ((latestWarning.get(k)?.at ?? -1) <= at) latestWarning.set(k, { at, text: `${e.reason ?? "?"}: ${e.message ?? ""}` });
      }
    }
    pending = [];
    denials = [];
    for (const p of c.pcrs) {
      const created = Date.parse(p.metadata.creationTimestamp ?? "");
      const age = Number.isFinite(created) ? seconds(now.getTime() - created) : 0;
      const done = terminalCondition(p);
      if (done === undefined) {
        const warning = latestWarning.get(p.metadata.uid ?? "") ?? latestWarning.get(`${p.metadata.namespace}/${p.metadata.name}`);
        pending.push({
          namespace: p.metadata.namespace, name: p.metadata.name, signerName: p.spec.signerName, ageSeconds: age,
          deletedInSeconds: Math.max(0, PCR_CLEANUP_SECONDS - age), ...(warning ? { waiting: warning.text } : {}),
        });
      } else if (done.type !== "Issued") {
        denials.push({ namespace: p.metadata.namespace, name: p.metadata.name, signerName: p.spec.signerName, type: done.type, reason: done.reason, message: done.message, at: done.lastTransitionTime });
      }
    }
    pending.sort((a, b) => b.ageSeconds - a.ageSeconds);
    denials.sort((a, b) => b.at.localeCompare(a.at));
    const threshold = f.pendingProblemSeconds ?? DEFAULT_PENDING_PROBLEM_SECONDS;
    for (const signerName of configured) {
      const late = pending.filter((p) => p.signerName === signerName && p.ageSeconds >= threshold);
      if (late.length === 0) continue;
      const oldest = late[0]!;
      problems.push(`${late.length} request${late.length === 1 ? "" : "s"} for ${signerName} pending longer than ${showSeconds(threshold)} (oldest ${oldest.namespace}/${oldest.name}, ${showSeconds(oldest.ageSeconds)}${oldest.waiting ? `, ${oldest.waiting}` : ""})`);
    }

    // Published bundles against the pool, as the trust publisher would change them.
    if (pool) {
      const desired = configured.filter((s) => pool.signers.has(s) && publishedCas(pool, s).length > 0).map((s) => desiredTrustBundle(pool, s));
      const actions = planTrustBundles(desired, c.bundles);
      bundles = [
        ...desired.map((d): BundleLine => {
          const a = actions.find((x) => x.kind !== "delete" && x.bundle.metadata.name === d.metadata.name);
          return { name: d.metadata.name, signerName: d.spec.signerName ?? "", state: a === undefined ? "matches" : a.kind === "create" ? "missing" : "differs" };
        }),
        ...actions.flatMap((a): BundleLine[] => (a.kind === "delete" ? [{ name: a.name, signerName: a.signerName ?? "", state: "not configured" }] : [])),
      ];
      for (const b of bundles) {
        if (b.state === "missing") problems.push(`ClusterTrustBundle ${b.name} (${b.signerName}) is not published: pods cannot trust its CAs`);
        if (b.state === "differs") problems.push(`ClusterTrustBundle ${b.name} (${b.signerName}) differs from the CA pool: the trust publisher has not caught up, or reads another pool`);
      }
    } else {
      bundles = c.bundles.map((b) => ({ name: b.metadata.name, signerName: b.spec.signerName ?? "", state: configured.includes(b.spec.signerName ?? "") ? "not compared" : "not configured" }));
    }
    for (const b of bundles) {
      if (b.state === "not configured") problems.push(`ClusterTrustBundle ${b.name} is managed by podcert for ${b.signerName || "no signer"}, which the configuration does not name`);
    }

    if (c.runningConfigError !== undefined) problems.push(`the deployed configuration (ConfigMap podcert/podcert-config) is unusable: ${c.runningConfigError}`);
    if (c.runningSigners !== undefined && !sameSet(c.runningSigners, configured)) {
      problems.push(`the deployed configuration (ConfigMap podcert/podcert-config) differs from ${f.config.source}: ${setDifference("it", c.runningSigners, configured)}`);
    }
  }
  return { now: now.toISOString(), sources, signers, pending, denials, bundles, problems };
}

/**
 * The rules of RBAC documents that name signers (`sign`, `attest`) or ClusterTrustBundles
 * (`update`) by resourceNames: what has to agree with the configuration.
 */
export function namedGrants(docs: readonly unknown[], source: string): NamedGrant[] {
  const out: NamedGrant[] = [];
  for (const doc of docs) {
    const d = doc as { kind?: unknown; metadata?: { name?: unknown }; rules?: unknown } | null;
    if (d === null || typeof d !== "object" || (d.kind !== "ClusterRole" && d.kind !== "Role") || !Array.isArray(d.rules)) continue;
    const role = `${String(d.kind)} ${String(d.metadata?.name ?? "?")} (${source})`;
    for (const r of d.rules as { apiGroups?: unknown; resources?: unknown; verbs?: unknown; resourceNames?: unknown }[]) {
      if (!Array.isArray(r.apiGroups) || !r.apiGroups.includes("certificates.k8s.io") || !Array.isArray(r.resources) || !Array.isArray(r.verbs)) continue;
      const names = Array.isArray(r.resourceNames) ? r.resourceNames.map(String) : [];
      for (const resource of ["signers", "clustertrustbundles"] as const) {
        if (!r.resources.includes(resource)) continue;
        for (const verb of ["sign", "attest", "update"] as const) {
          if (!r.verbs.includes(verb) || (verb === "update") !== (resource === "clustertrustbundles")) continue;
          out.push({ role, verb, resource, names });
        }
      }
    }
  }
  return out;
}

/** Every document of a multi-document YAML text (empty ones dropped). */
export function yamlDocuments(text: string): unknown[] {
  const docs = YAML.parseAllDocuments(text);
  const broken = docs.find((d) => d.errors.length > 0);
  if (broken) throw new Error(broken.errors[0]!.message);
  return docs.map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

/** The report as sections for a reader. */
export function renderStatus(r: StatusReport, title = "podcert status"): string {
  const out: string[] = [`${title} at ${r.now}`, `read: ${r.sources.join("; ")}`, ""];
  out.push("Signers and CAs");
  const caRows = [["SIGNER", "CONFIGURED", "FROM", "SERIAL", "STATE", "SIGNS", "NOT AFTER", "LEFT"]];
  for (const s of r.signers) {
    if (s.cas.length === 0) caRows.push([s.signerName, s.configured ? "yes" : "no", "-", "-", "-", "-", "-", "-"]);
    for (const ca of s.cas) caRows.push([s.signerName, s.configured ? "yes" : "no", s.casFrom ?? "-", ca.serialHex, ca.state, ca.signs ? "yes" : "", ca.notAfter, ca.remainingSeconds > 0 ? showSeconds(ca.remainingSeconds) : "expired"]);
  }
  out.push(table(caRows), "");
  if (r.pending !== null) {
    out.push(`Pending requests: ${r.pending.length}`);
    const bySigner = new Map<string, number>();
    for (const p of r.pending) bySigner.set(p.signerName, (bySigner.get(p.signerName) ?? 0) + 1);
    for (const [signer, n] of bySigner) out.push(`  ${signer}: ${n}`);
    if (r.pending.length > 0) {
      out.push(table([["NAMESPACE", "NAME", "SIGNER", "AGE", "DELETED IN", "WAITING"],
        ...r.pending.map((p) => [p.namespace, p.name, p.signerName, showSeconds(p.ageSeconds), p.deletedInSeconds === 0 ? "due" : showSeconds(p.deletedInSeconds), p.waiting ?? ""])]));
    }
    out.push("");
  }
  if (r.denials !== null) {
    out.push(`Denied or failed requests (still in the cluster, at most ${showSeconds(PCR_CLEANUP_SECONDS)} old): ${r.denials.length}`);
    if (r.denials.length > 0) {
      out.push(table([["NAMESPACE", "NAME", "SIGNER", "CONDITION", "REASON", "MESSAGE"],
        ...r.denials.map((d) => [d.namespace, d.name, d.signerName, d.type, d.reason, d.message])]));
    }
    out.push("");
  }
  if (r.bundles !== null) {
    out.push("Published trust bundles (ClusterTrustBundles managed by podcert)");
    out.push(r.bundles.length === 0 ? "  none" : table([["NAME", "SIGNER", "AGAINST THE POOL"], ...r.bundles.map((b) => [b.name, b.signerName, b.state])]));
    out.push("");
  }
  if (r.problems.length === 0) out.push("No problems found.");
  else out.push(`Problems (${r.problems.length}):`, ...r.problems.map((p) => `  - ${p}`));
  return `${out.join("\n")}\n`;
}
