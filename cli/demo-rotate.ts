/**
 * `podcert demo --rotate`: after the run, a CA rotation of every signer in the running local flow,
 * with the functions running and the CA pool file changing under `sign`, proving that no
 * handshake breaks on the way: prepare → publish → activate → new certificates → mixed mTLS
 * (old and new certificates against the bundles holding both CAs) → retire → publish → mTLS with
 * the new certificates, and an old one refused.
 *
 * The steps are the rotation rules `podcert ca rotate` applies (cli/ca-rotation.ts), with the real
 * clock. Their waits (the new CA's propagation to pods before it signs, the old CA's certificates
 * expiring before it is unpublished) are minutes to a day: they are forced here, and each is
 * printed as it would apply on a cluster. What the run waits for instead is what it can see: the
 * ClusterTrustBundles holding the expected CAs, and sign reporting the new CA active.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { requestPodCertificates } from "../local-cluster/kubelet/emulator.js";
import type { LocalFlow } from "../local-cluster/flow.js";
import { runHandshake, runSeedMtlsChecks, type Credential, type HandshakeCheck } from "../local-cluster/mtls.js";
import { waitForPublishedTrust, writePodTrustFiles, type TrustExpectation } from "../local-cluster/published-trust.js";
import { caTrustDocument, clusterTrustBundleName, parseCaPool, parseCaPoolDocument, serializeCaPool, type CaPoolDocument, type LoadedCa } from "../shared/ca/pool.js";
import { ConfigError } from "../shared/errors.js";
import type { SignerConfig } from "../shared/profiles/config.js";
import { ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../shared/profiles/defaults.js";
import { pemDecodeAll } from "../shared/x509/pem.js";
import { createCa } from "./ca-create.js";
import { rewriteFile } from "./ca-rotate.js";
import {
  activateCa,
  DEFAULT_PROPAGATION_SECONDS,
  PUBLICATION_DELAY_SECONDS,
  prepareCa,
  retireCa,
  RETIRE_MARGIN_SECONDS,
  RotationRefusedError,
  showDuration,
  type RotationFacts,
  type RotationOutcome,
} from "./ca-rotation.js";
import { collectOutcomes, credentialKey, outcomeTable, signerFileName, unmetExpectations, writeCredentials, type IssuedCredential } from "./demo-requests.js";

/** How many "[k/n]" step lines the rotation adds to the run's. */
export const ROTATION_STEPS = 7;
/** The PingSource's tick while rotating: the run also pings at once, this is the backstop. */
export const ROTATION_PING_INTERVAL_MS = 5_000;
/** The PCRs of the second round are named rotated-xxxxx (the first round's req-xxxxx). */
export const ROTATED_PCR_PREFIX = "rotated-";

export interface RotationCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface RotationDemo {
  flow: LocalFlow;
  config: SignerConfig;
  outDir: string;
  /** Bounds each wait (published bundles, sign's reload, the new requests' outcomes). */
  timeoutMs: number;
  /** The number of the rotation's first step line. */
  firstStep: number;
  /** Prints "[k/n] text". */
  step: (k: number, text: string) => void;
  say: (m: string) => void;
  /** The credentials the run issued before the rotation, by credentialKey. */
  before: ReadonlyMap<string, IssuedCredential>;
}

/** One signer's two CAs during the rotation. */
interface SignerCas {
  old: LoadedCa;
  new: LoadedCa;
}

/** The seed's four identities: the credentials the mTLS checks need. */
const SEED = {
  apiserver: credentialKey("ate-system", "ate-apiserver", ATESYSTEM_SIGNER),
  router: credentialKey("ate-system", "atenet-router", ATESYSTEM_SIGNER),
  otherControlPlane: credentialKey("ate-system", "valkey-0", ATESYSTEM_SIGNER),
  worker: credentialKey("workers-a", "worker-1", WORKERPOOL_SIGNER),
} as const;
const SERVER_NAME = "api.ate-system.svc";
const ROUTER_ID = "spiffe://cluster.local/ns/ate-system/sa/atenet-router";

/**
 * Runs the rotation and returns every check it made, in order. A step that cannot go on (a wait
 * that timed out, a refused rule) ends the rotation as a failed check naming the step; the
 * checks made before it are kept.
 */
export async function runRotationDemo(o: RotationDemo): Promise<RotationCheck[]> {
  const checks: RotationCheck[] = [];
  const record = (c: RotationCheck) => {
    checks.push(c);
    o.say(`      ${c.ok ? "ok  " : "FAIL"} ${c.name}${c.detail ? `: ${c.detail}` : ""}`);
  };
  const recordHandshakes = (prefix: string, hs: readonly HandshakeCheck[]) => {
    for (const h of hs) record({ name: `${prefix}${h.name}`, ok: h.ok, detail: `${h.outcome} (expected ${h.expect}) — ${h.detail}` });
  };
  let current = "";
  const step = (k: number, text: string) => {
    current = `[${o.firstStep + k}] ${text}`;
    o.step(o.firstStep + k, text);
  };
  try {
    await rotate(o, step, record, recordHandshakes);
  } catch (e) {
    const known = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    record({ name: `rotation step ${current}`, ok: false, detail: `could not go on (${known})` });
  }
  return checks;
}

async function rotate(
  o: RotationDemo,
  step: (k: number, text: string) => void,
  record: (c: RotationCheck) => void,
  recordHandshakes: (prefix: string, hs: readonly HandshakeCheck[]) => void,
): Promise<void> {
  const { flow, say } = o;
  const signers = [...o.config.signers.keys()];
  const facts = (signer: string): RotationFacts => ({
    now: new Date(),
    maxLifetimeSeconds: o.config.signers.get(signer)!.maxLifetimeSeconds,
    propagationSeconds: DEFAULT_PROPAGATION_SECONDS,
  });
  const trustDir = join(o.outDir, "trust");
  const readTrust = (signer: string) => readFileSync(join(trustDir, signerFileName(signer)), "utf8");
  const seed = (creds: ReadonlyMap<string, IssuedCredential>, which: keyof typeof SEED): Credential => {
    const c = creds.get(SEED[which])?.credential;
    if (c === undefined) throw new ConfigError(`no credential for ${SEED[which]}: the rotation's mutual TLS checks need the example's four identities (the example cluster, the built-in signers)`);
    return c;
  };
  for (const which of Object.keys(SEED) as (keyof typeof SEED)[]) seed(o.before, which);

  // ---- prepare
  step(0, "CA rotation: prepare a new CA for each signer (published, not signing yet)");
  const longest = Math.max(...signers.map((s) => o.config.signers.get(s)!.maxLifetimeSeconds));
  say("      the rules of `podcert ca rotate`, with the real clock; their WAITS ARE SKIPPED (forced), since a local run cannot wait them. On a cluster:");
  say(`      activate waits ${showDuration(PUBLICATION_DELAY_SECONDS + DEFAULT_PROPAGATION_SECONDS)} after prepare (the new CA published within ${showDuration(PUBLICATION_DELAY_SECONDS)}, then the propagation time, ${showDuration(DEFAULT_PROPAGATION_SECONDS)}),`);
  say(`      retire waits ${showDuration(longest + RETIRE_MARGIN_SECONDS)} after activate (the maximum certificate lifetime, ${showDuration(longest)}, + ${showDuration(RETIRE_MARGIN_SECONDS)}). Each skipped wait is printed`);
  say("      with its time; the run waits for what it can see instead: the bundles holding the CAs, and sign reporting the new CA active");
  let doc = readPoolDocument(flow);
  for (const signer of signers) {
    const now = new Date();
    const ca = await createCa({ signerName: signer, keyAlgorithm: "ECDSAP256", validityDays: 365, now });
    const outcome = prepareCa(doc, signer, ca, { ...facts(signer), now });
    doc = outcome.doc;
    say(`      ${outcome.changed}`);
  }
  writePool(o, doc);
  const cas = new Map<string, SignerCas>();
  const loaded = parseCaPool(serializeCaPool(doc));
  for (const signer of signers) {
    const list = loaded.signers.get(signer) ?? [];
    const old = list.find((c) => c.state === "active");
    const fresh = list.find((c) => c.state === "prepared");
    if (old === undefined || fresh === undefined) throw new ConfigError(`signer ${signer}: after prepare, expected an active and a prepared CA`);
    cas.set(signer, { old, new: fresh });
  }
  const serials = (pick: (c: SignerCas) => LoadedCa) => signers.map((s) => `${s}: ${pick(cas.get(s)!).serialHex}`).join(", ");
  say(`      old CAs ${serials((c) => c.old)}; new CAs ${serials((c) => c.new)}`);
  say(`      rewrote sign's CA pool file and publish-trust's CA trust document (temporary file renamed over each, mode 0600)`);

  // ---- publish both
  step(1, "CA rotation: publish-trust publishes the new CAs beside the old ones (a PingSource tick)");
  await publishAndWait(o, signers, (s) => ({ present: [cas.get(s)!.old.rootDer, cas.get(s)!.new.rootDer] }), record, "old and new CA");

  // ---- activate
  step(2, "CA rotation: activate the new CAs (sign picks up its changed pool file, no restart)");
  doc = readPoolDocument(flow);
  for (const signer of signers) {
    const outcome = forced(() => activateCa(doc, signer, { ...facts(signer), force: false }), () => activateCa(doc, signer, { ...facts(signer), force: true }), signer, say);
    doc = outcome.doc;
    say(`      ${outcome.changed}`);
  }
  say("      (here the run waited until the published bundles held the new CAs; kubelet's cache is not emulated)");
  writePool(o, doc);
  const reloaded = await signReportsActive(flow, new Map(signers.map((s) => [s, cas.get(s)!.new.serialHex])), o.timeoutMs);
  record({ name: "sign signs with the new CAs after its pool file changed, without a restart", ok: reloaded.ok, detail: reloaded.detail });

  // ---- new certificates
  step(3, "CA rotation: kubelet requests new certificates for the same pods");
  const requests = await requestPodCertificates(flow.kubeconfig, (m) => say(`      ${m}`), { generateName: ROTATED_PCR_PREFIX });
  // process.stderr, where the demo's say writes too: the progress reporter needs the stream (isTTY), not a line writer.
  const rows = await collectOutcomes(flow, requests, o.timeoutMs, process.stderr);
  process.stdout.write(`\n${outcomeTable(rows)}\n`);
  const unmet = unmetExpectations(rows);
  record({
    name: "the new requests ended as their pods expect",
    ok: unmet.length === 0,
    detail: unmet.length === 0 ? `${rows.filter((r) => r.outcome === "Issued").length} issued, ${rows.length} in all` : unmet.map((r) => `${r.request.pod.namespace}/${r.request.pod.name} → ${r.request.pcr.spec.signerName}: ${r.outcome}, expected ${r.request.expected}`).join("; "),
  });
  const after = writeCredentials(o.outDir, rows, { keepPrevious: true });
  say(`      new credential bundles in ${o.outDir}/<namespace>/<pod>/<signer>.pem; those from before the rotation renamed to <signer>.old-ca.pem`);

  // ---- both CAs at once
  step(4, "CA rotation: old and new certificates, with the bundles holding both CAs");
  for (const [key, was] of o.before) {
    const c = cas.get(was.signer);
    if (c === undefined) continue;
    const whose = `${was.namespace}/${was.pod} (${was.signer})`;
    record(chainCheck(`certificate of ${whose} from before`, was.credential, c.old, c.new, "old"));
    const renewed = after.get(key);
    if (renewed === undefined) record({ name: `a new certificate for ${whose}`, ok: false, detail: "none was issued" });
    else record(chainCheck(`certificate of ${whose} after activation`, renewed.credential, c.new, c.old, "new"));
  }
  const both = { ateTrustPem: readTrust(ATESYSTEM_SIGNER), workerTrustPem: readTrust(WORKERPOOL_SIGNER), serverName: SERVER_NAME, routerSpiffeId: ROUTER_ID };
  recordHandshakes(
    "[router old CA, apiserver new CA] ",
    await runSeedMtlsChecks({ ...both, apiserver: seed(after, "apiserver"), router: seed(o.before, "router"), otherControlPlane: seed(o.before, "otherControlPlane"), worker: seed(o.before, "worker") }),
  );
  recordHandshakes(
    "[router new CA, apiserver old CA] ",
    await runSeedMtlsChecks({ ...both, apiserver: seed(o.before, "apiserver"), router: seed(after, "router"), otherControlPlane: seed(after, "otherControlPlane"), worker: seed(after, "worker") }),
  );

  // ---- retire
  step(5, "CA rotation: retire the old CAs and publish (bundles keep only the new CAs)");
  doc = readPoolDocument(flow);
  for (const signer of signers) {
    const outcome = forced(() => retireCa(doc, signer, { ...facts(signer), force: false }), () => retireCa(doc, signer, { ...facts(signer), force: true }), signer, say);
    doc = outcome.doc;
    say(`      ${outcome.changed}`);
  }
  writePool(o, doc);
  await publishAndWait(o, signers, (s) => ({ present: [cas.get(s)!.new.rootDer], absent: [cas.get(s)!.old.rootDer] }), record, "only the new CA");

  // ---- after
  step(6, "CA rotation: the example's mutual TLS checks with the new certificates and bundles; an old certificate refused");
  const fresh = { ateTrustPem: readTrust(ATESYSTEM_SIGNER), workerTrustPem: readTrust(WORKERPOOL_SIGNER), serverName: SERVER_NAME, routerSpiffeId: ROUTER_ID };
  recordHandshakes(
    "[new CA] ",
    await runSeedMtlsChecks({ ...fresh, apiserver: seed(after, "apiserver"), router: seed(after, "router"), otherControlPlane: seed(after, "otherControlPlane"), worker: seed(after, "worker") }),
  );
  // Refused because the retired CA is gone from the bundles: the router is authorized, and the
  // same pairs were accepted while the bundles held both CAs.
  const retired: HandshakeCheck[] = [
    await runHandshake({
      name: `router with its old-CA certificate → apiserver (new CA) as ${SERVER_NAME}`,
      expect: "refused",
      server: seed(after, "apiserver"),
      serverTrustPem: fresh.ateTrustPem,
      authorized: [ROUTER_ID],
      client: seed(o.before, "router"),
      clientTrustPem: fresh.ateTrustPem,
      serverName: SERVER_NAME,
    }),
    await runHandshake({
      name: `router (new CA) → apiserver presenting its old-CA certificate as ${SERVER_NAME}`,
      expect: "refused",
      server: seed(o.before, "apiserver"),
      serverTrustPem: fresh.ateTrustPem,
      authorized: [ROUTER_ID],
      client: seed(after, "router"),
      clientTrustPem: fresh.ateTrustPem,
      serverName: SERVER_NAME,
    }),
  ];
  recordHandshakes("[retired CA] ", retired);
}

/** The pool sign follows, as a document (shape only; the rules check what they need). */
function readPoolDocument(flow: LocalFlow): CaPoolDocument {
  return parseCaPoolDocument(readFileSync(flow.caPoolPath, "utf8"));
}

/**
 * Replaces sign's pool file and publish-trust's trust document, as `podcert ca rotate` rewrites a
 * pool (a temporary file renamed over it, mode 0600) and `podcert ca trust` follows. A pool that
 * would not load is never written (sign would refuse it and keep signing with the old one).
 * out/ca-trust.yaml (certificates and states, no keys) follows too, for a look after the run.
 */
function writePool(o: RotationDemo, doc: CaPoolDocument): void {
  const text = serializeCaPool(doc);
  parseCaPool(text);
  rewriteFile(o.flow.caPoolPath, readFileSync(o.flow.caPoolPath, "utf8"), text);
  const trust = stringify(caTrustDocument(doc));
  rewriteFile(o.flow.caTrustPath, readFileSync(o.flow.caTrustPath, "utf8"), trust);
  writeFileSync(join(o.outDir, "ca-trust.yaml"), trust);
}

/**
 * A rotation step whose waiting rule refuses now: prints the refusal (what a cluster would wait
 * for, and until when) and applies the step forced. A structural refusal is thrown as it is.
 */
function forced(unforced: () => RotationOutcome, force: () => RotationOutcome, signer: string, say: (m: string) => void): RotationOutcome {
  try {
    return unforced();
  } catch (e) {
    if (!(e instanceof RotationRefusedError) || !e.forcible) throw e;
    say(`      ${signer}: WAIT SKIPPED here; on a cluster: ${e.message}`);
    return force();
  }
}

/** Ticks publish-trust now and waits for the bundles a pod would mount to hold what `want` says; then rewrites out/trust/ from them. */
async function publishAndWait(o: RotationDemo, signers: readonly string[], want: (signer: string) => TrustExpectation, record: (c: RotationCheck) => void, what: string): Promise<void> {
  const started = performance.now();
  o.flow.ping();
  await waitForPublishedTrust(o.flow.kubeconfig, new Map(signers.map((s) => [s, want(s)])), { timeoutMs: o.timeoutMs });
  const written = await writePodTrustFiles(o.flow.kubeconfig, signers, join(o.outDir, "trust"), signerFileName);
  for (const signer of signers) {
    const { present, absent = [] } = want(signer);
    const held = pemDecodeAll(written.get(signer) ?? "").map((b) => b.der);
    const exact = held.length === present.length && present.every((d) => held.some((h) => h.equals(d))) && !absent.some((d) => held.some((h) => h.equals(d)));
    record({
      name: `out/trust/${signerFileName(signer)} holds ${what} (the projection of ${clusterTrustBundleName(signer)})`,
      ok: exact,
      detail: `${held.map((d) => new X509Certificate(d).serialNumber).join(", ")}${exact ? `, published in ${Math.round(performance.now() - started)} ms` : ""}`,
    });
  }
}

/** Does the certificate chain to `want`'s root, and not to `other`'s? */
function chainCheck(name: string, cred: Credential, want: LoadedCa, other: LoadedCa, which: "old" | "new"): RotationCheck {
  const toWant = chainsTo(cred.chainPem, want.rootDer);
  const toOther = chainsTo(cred.chainPem, other.rootDer);
  const leaf = new X509Certificate(cred.chainPem);
  return {
    name: `${name} chains to the ${which} CA ${want.serialHex}`,
    ok: toWant && !toOther,
    detail: `serial ${leaf.serialNumber}, issuer ${leaf.issuer.replaceAll("\n", ", ")}${toOther ? `; it chains to the ${which === "old" ? "new" : "old"} CA ${other.serialHex} instead` : toWant ? "" : "; it chains to neither"}`,
  };
}

/** The chain links up (each certificate issued and signed by the next) to a certificate `root` issued and signed. */
function chainsTo(chainPem: string, root: Buffer): boolean {
  const chain = pemDecodeAll(chainPem).map((b) => new X509Certificate(b.der));
  const anchor = new X509Certificate(root);
  let current = chain[0];
  if (current === undefined) return false;
  for (const next of chain.slice(1)) {
    if (next.raw.equals(root)) break;
    if (!current.checkIssued(next) || !current.verify(next.publicKey)) return false;
    current = next;
  }
  return current.checkIssued(anchor) && current.verify(anchor.publicKey);
}

/**
 * Polls sign's /metrics until podcert_ca_state says each signer's `serial` is active: sign has
 * read the changed pool file (it stats it at most once a second, on a request or a scrape).
 */
async function signReportsActive(flow: LocalFlow, serials: ReadonlyMap<string, string>, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const sign = flow.processes.find((p) => p.name === "sign");
  if (sign === undefined) return { ok: false, detail: "no sign process" };
  const started = performance.now();
  let last = "";
  while (performance.now() - started < timeoutMs) {
    try {
      const body = await (await fetch(`${sign.url}/metrics`)).text();
      const active = activeSerials(body);
      const lagging = [...serials].filter(([signer, serial]) => active.get(signer) !== serial);
      if (lagging.length === 0) {
        return { ok: true, detail: `its /metrics reports ${[...serials.values()].join(", ")} active after ${Math.round(performance.now() - started)} ms` };
      }
      last = lagging.map(([signer]) => `${signer}: ${active.get(signer) ?? "none"} active`).join(", ");
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { ok: false, detail: `after ${Math.round(timeoutMs / 1000)} s sign still reports ${last}` };
}

/** podcert_ca_state{signer, serial, state="active"} 1 lines of a Prometheus text page: signer → serial. */
export function activeSerials(metrics: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of metrics.split("\n")) {
    const m = /^podcert_ca_state\{([^}]*)\}\s+1$/.exec(line.trim());
    if (!m) continue;
    const labels = new Map([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    const signer = labels.get("signer");
    const serial = labels.get("serial");
    if (labels.get("state") === "active" && signer !== undefined && serial !== undefined) out.set(signer, serial);
  }
  return out;
}
