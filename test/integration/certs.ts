// Checks on issued certificates with node:crypto and, where installed, openssl.
import { tempDir } from "../helpers/temp.js";
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate, createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PodCertificateRequest } from "../../shared/pcr/model.js";

export const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

export function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** The SubjectPublicKeyInfo the request names, from pkixPublicKey or the stub CSR. */
export function requestSpki(pcr: PodCertificateRequest): Buffer {
  if (pcr.spec.pkixPublicKey) return Buffer.from(pcr.spec.pkixPublicKey, "base64");
  if (!hasOpenssl) throw new Error("reading a stub CSR needs openssl: skip the test where it is missing (it.skipIf(!hasOpenssl))");
  const csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${pcr.spec.stubPKCS10Request}\n-----END CERTIFICATE REQUEST-----\n`;
  const dir = tempDir("podcert-csr-");
  writeFileSync(join(dir, "csr.pem"), csrPem);
  const pub = execFileSync("openssl", ["req", "-in", join(dir, "csr.pem"), "-noout", "-pubkey"], { encoding: "utf8" });
  return createPublicKey(pub).export({ type: "spki", format: "der" });
}

/** Does the chain verify up to one of the roots in `bundlePem`? */
export function verifiesAgainst(chainPem: string, bundlePem: string): boolean {
  const chain = splitPem(chainPem).map((p) => new X509Certificate(p));
  const roots = splitPem(bundlePem).map((p) => new X509Certificate(p));
  let current = chain[0];
  if (current === undefined) return false;
  for (const next of chain.slice(1)) {
    if (!current.checkIssued(next) || !current.verify(next.publicKey)) return false;
    current = next;
  }
  const last = current;
  return roots.some((root) => last.checkIssued(root) && last.verify(root.publicKey));
}

/** `openssl verify` with purpose checks; returns its exit status and output. */
export function opensslVerify(chainPem: string, bundlePem: string, purpose: "sslserver" | "sslclient"): { ok: boolean; output: string } {
  const dir = tempDir("podcert-verify-");
  const [leaf, ...rest] = splitPem(chainPem);
  writeFileSync(join(dir, "leaf.pem"), leaf ?? "");
  writeFileSync(join(dir, "untrusted.pem"), rest.join(""));
  writeFileSync(join(dir, "roots.pem"), bundlePem);
  const args = ["verify", "-purpose", purpose, "-CAfile", join(dir, "roots.pem")];
  if (rest.length > 0) args.push("-untrusted", join(dir, "untrusted.pem"));
  args.push(join(dir, "leaf.pem"));
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

// GnuTLS and NSS, the TLS stacks of many clients besides OpenSSL's: an issued chain must verify
// with them too. Each check is skipped where its tool is missing (.ci/run installs them).
export const hasCerttool = spawnSync("certtool", ["--version"]).status === 0;
export const hasNss = spawnSync("certutil", ["-H"]).error === undefined && spawnSync("vfychain", []).error === undefined;

/** GnuTLS `certtool --verify` of leaf + intermediates against `bundlePem`, for TLS server or client use. */
export function certtoolVerify(chainPem: string, bundlePem: string, purpose: "sslserver" | "sslclient"): { ok: boolean; output: string } {
  const dir = tempDir("podcert-gnutls-");
  writeFileSync(join(dir, "chain.pem"), splitPem(chainPem).join(""));
  writeFileSync(join(dir, "roots.pem"), bundlePem);
  const oid = purpose === "sslserver" ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2";
  const r = spawnSync("certtool", ["--verify", `--verify-purpose=${oid}`, "--load-ca-certificate", join(dir, "roots.pem"), "--infile", join(dir, "chain.pem")], { encoding: "utf8" });
  // certtool's exit status alone has varied across versions; its verdict line has not.
  const ok = r.status === 0 && /Chain verification output: Verified/.test(r.stdout);
  return { ok, output: `${r.stdout}${r.stderr}` };
}

/** NSS certificate databases trusting the roots of a bundle, one per bundle (made once: certutil is slow). */
const nssDbs = new Map<string, string>();
function nssDbTrusting(bundlePem: string): string {
  const made = nssDbs.get(bundlePem);
  if (made !== undefined) return made;
  const dir = tempDir("podcert-nss-");
  const db = `sql:${dir}`;
  const run = (args: string[]) => {
    const r = spawnSync("certutil", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`certutil ${args[0]}: ${r.stdout}${r.stderr}`);
  };
  run(["-N", "-d", db, "--empty-password"]);
  splitPem(bundlePem).forEach((pem, i) => {
    writeFileSync(join(dir, `root${i}.pem`), pem);
    // CT: a CA trusted to issue TLS server (C) and client (T) certificates.
    run(["-A", "-d", db, "-n", `root${i}`, "-t", "CT,,", "-a", "-i", join(dir, `root${i}.pem`)]);
  });
  nssDbs.set(bundlePem, db);
  return db;
}

/** NSS `vfychain` (libpkix, CERT_PKIXVerifyCert) of leaf + intermediates against `bundlePem`, for TLS server or client use. */
export function nssVerify(chainPem: string, bundlePem: string, purpose: "sslserver" | "sslclient"): { ok: boolean; output: string } {
  const db = nssDbTrusting(bundlePem);
  const dir = tempDir("podcert-nss-chain-");
  const certs = splitPem(chainPem).flatMap((pem, i) => {
    writeFileSync(join(dir, `chain${i}.pem`), pem);
    return ["-a", join(dir, `chain${i}.pem`)];
  });
  const r = spawnSync("vfychain", ["-d", db, "-pp", "-u", purpose === "sslserver" ? "1" : "0", ...certs], { encoding: "utf8" });
  // vfychain prints "Chain is good!" or "Chain is bad!" and exits non-zero when bad.
  return { ok: r.status === 0 && /Chain is good/.test(r.stdout + r.stderr), output: `${r.stdout}${r.stderr}` };
}
