/**
 * The chaos harness's exit criteria (issue 11), as pure checks over what one run observed:
 * - every PCR reached the state its pod expects, before kube-controller-manager's 15-minute
 *   cleaner would have deleted it;
 * - no Denied or Failed where the request deserved a certificate (a transient fault must never
 *   turn into a terminal refusal);
 * - no PCR got two different certificates (counted from the status writes the API server saw);
 * - every issued certificate carries exactly the SANs its request was entitled to, and the
 *   request's own public key;
 * - every dead-lettered event has an explanation (a retryable answer that says why, or a network
 *   failure the run injected).
 */
import { X509Certificate } from "node:crypto";
import type { Expected } from "./scenario.js";

/** kube-controller-manager's PodCertificateRequest cleaner deletes every PCR this long after creation. */
export const PCR_CLEANER_MS = 15 * 60 * 1000;

export interface ObservedRequest {
  name: string;
  kind: string;
  expected: Expected;
  /** The request key (SPKI DER), to check the certificate is for it. */
  spki: Buffer;
  createdAt: number;
  terminalAt?: number;
  /** The final status as stored. */
  terminal?: { type: string; reason?: string; message?: string };
  certificateChain?: string;
  /** Distinct certificate chains written to this PCR's status, in order. */
  chainsWritten: string[];
}

export interface ObservedDeadLetter {
  eventType: string;
  subscriber: string;
  subject?: string;
  lastStatus: number | "network-error";
  lastError: string;
  /** The last failure the subscriber logged for this event (its message), if it logged one. */
  logged?: string;
}

export interface Judgement {
  problems: string[];
  /** Dead letters grouped by the explanation found for each. */
  deadLetterReasons: Map<string, number>;
}

/** What explains a dead letter, or undefined when nothing does. */
export function explainDeadLetter(d: ObservedDeadLetter, injectedNetworkFaults: boolean): string | undefined {
  if (d.lastStatus === "network-error") {
    // Without an answer, the subscriber's own log says what it met (e.g. API calls timing out
    // until the broker's attempt timeout ended first)…
    if (d.logged !== undefined && d.logged.trim() !== "") return `network: ${firstWords(d.lastError)}, after the function logged: ${firstWords(d.logged)}`;
    // …or the run caused it: processes killed, answers held past the attempt timeout.
    return injectedNetworkFaults && d.lastError.trim() !== "" ? `network: ${firstWords(d.lastError)}` : undefined;
  }
  const retryableStatus = d.lastStatus === 404 || d.lastStatus === 408 || d.lastStatus === 409 || d.lastStatus === 429 || d.lastStatus >= 500;
  // A function's 500 "internal error" is a bug it did not classify; a 4xx refuses a legitimate event.
  if (!retryableStatus || d.lastError.trim() === "" || /^internal error$/i.test(d.lastError.trim())) return undefined;
  return `${d.lastStatus}: ${firstWords(d.lastError)}`;
}

function firstWords(text: string): string {
  // Names, uids and numbers vary per event; the kind of reason is what groups them.
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<uid>")
    .replace(/\b[\w.-]+\/req-\d+\b/g, "<pcr>")
    .replace(/\bpod-\d+\b/g, "<pod>")
    .replace(/\d+/g, "N")
    .slice(0, 90);
}

/** The SANs of a PEM certificate, as node:crypto prints them ("URI:…, DNS:…"). */
export function certificateSans(pem: string): { uris: string[]; dnsNames: string[]; other: string[]; spki: Buffer } {
  const cert = new X509Certificate(pem);
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const other: string[] = [];
  for (const entry of (cert.subjectAltName ?? "").split(", ").filter((s) => s !== "")) {
    if (entry.startsWith("URI:")) uris.push(entry.slice(4));
    else if (entry.startsWith("DNS:")) dnsNames.push(entry.slice(4));
    else other.push(entry);
  }
  return { uris, dnsNames, other, spki: cert.publicKey.export({ type: "spki", format: "der" }) };
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
const firstPem = (chain: string) => /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chain)?.[0];

export function judge(o: {
  requests: readonly ObservedRequest[];
  deadLetters: readonly ObservedDeadLetter[];
  injectedNetworkFaults: boolean;
}): Judgement {
  const problems: string[] = [];
  for (const r of o.requests) {
    const { expected, terminal } = r;
    if (terminal === undefined || r.terminalAt === undefined) {
      problems.push(`${r.name} (${r.kind}): still pending at the end, expected ${describe(expected)}`);
      continue;
    }
    if (r.terminalAt - r.createdAt >= PCR_CLEANER_MS) problems.push(`${r.name}: ended ${Math.round((r.terminalAt - r.createdAt) / 1000)} s after creation, after the 15-minute cleaner would have deleted it`);
    if (terminal.type !== expected.type || (expected.type === "Denied" && terminal.reason !== expected.reason)) {
      const transient = expected.type === "Issued" && (terminal.type === "Denied" || terminal.type === "Failed");
      problems.push(`${r.name} (${r.kind}): ${terminal.type}${terminal.reason ? ` ${terminal.reason}` : ""}${transient ? " where a certificate was due" : ""}, expected ${describe(expected)}${terminal.message ? ` — ${terminal.message.slice(0, 200)}` : ""}`);
    }
    if (r.chainsWritten.length > 1) problems.push(`${r.name}: ${r.chainsWritten.length} different certificates written to its status`);
    if (expected.type !== "Issued" || terminal.type !== "Issued") continue;
    const leaf = r.certificateChain === undefined ? undefined : firstPem(r.certificateChain);
    if (leaf === undefined) {
      problems.push(`${r.name}: Issued without a certificate in its status`);
      continue;
    }
    const got = certificateSans(leaf);
    if (!sameSet(got.uris, expected.uris) || !sameSet(got.dnsNames, expected.dnsNames) || got.other.length > 0) {
      problems.push(`${r.name} (${r.kind}): SANs ${JSON.stringify({ uris: got.uris, dnsNames: got.dnsNames, other: got.other })}, entitled to ${JSON.stringify({ uris: expected.uris, dnsNames: expected.dnsNames })}`);
    }
    if (!got.spki.equals(r.spki)) problems.push(`${r.name}: the certificate is for another public key than the request's`);
  }
  const deadLetterReasons = new Map<string, number>();
  for (const d of o.deadLetters) {
    const why = explainDeadLetter(d, o.injectedNetworkFaults);
    if (why === undefined) {
      problems.push(`dead letter without an explanation: ${d.eventType} to ${d.subscriber}${d.subject ? ` about ${d.subject}` : ""}: ${d.lastStatus} ${d.lastError.slice(0, 200) || "(no message)"}`);
      continue;
    }
    deadLetterReasons.set(why, (deadLetterReasons.get(why) ?? 0) + 1);
  }
  return { problems, deadLetterReasons };
}

function describe(e: Expected): string {
  return e.type === "Issued" ? `Issued with ${[...e.uris, ...e.dnsNames].join(", ")}` : `Denied ${e.reason}`;
}

/** `ns/name` of the PCR an event is about (source events name its path; podcert's own, ns/name). */
export function pcrKeyOfSubject(subject: string | undefined): string | undefined {
  if (subject === undefined) return undefined;
  const m = /\/namespaces\/([^/]+)\/podcertificaterequests\/([^/]+)$/.exec(subject);
  if (m) return `${m[1]}/${m[2]}`;
  return /^[^/]+\/[^/]+$/.test(subject) ? subject : undefined;
}
