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
