/**
 * What the X.509 unit tests share: openssl as an independent verifier (skipped where it is not
 * installed) and a view of a certificate's tbsCertificate.
 */
import { tempDir } from "./temp.js";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CaKeyAlgorithm } from "../../cli/ca-create.js";
import { readChildren, readSingle } from "../../shared/x509/der.js";

/** The leaves' signature AlgorithmIdentifier, DER hex, per CA key (as Go's crypto/x509 picks it). */
export const SIG_ALG_HEX: Record<CaKeyAlgorithm, string> = {
  ECDSAP256: "300a06082a8648ce3d040302",
  ECDSAP384: "300a06082a8648ce3d040303",
  ECDSAP521: "300a06082a8648ce3d040304",
  RSA3072: "300d06092a864886f70d01010b0500",
  RSA4096: "300d06092a864886f70d01010b0500",
  ED25519: "300506032b6570",
};

export const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

/** Writes `files` into a new temporary folder; returns each one's path. */
export function tmp(files: Record<string, string>): Record<string, string> {
  const dir = tempDir("podcert-x509-");
  const out: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    out[name] = join(dir, name);
    writeFileSync(out[name]!, content);
  }
  return out;
}

/** `openssl verify -x509_strict` of a leaf against a root, with optional untrusted intermediates. */
export function opensslVerify(rootPem: string, leafPem: string, untrustedPem?: string, extra: string[] = []) {
  const f = tmp({ "root.pem": rootPem, "leaf.pem": leafPem, ...(untrustedPem ? { "untrusted.pem": untrustedPem } : {}) });
  const args = ["verify", "-x509_strict", ...extra, "-CAfile", f["root.pem"]!];
  if (untrustedPem) args.push("-untrusted", f["untrusted.pem"]!);
  args.push(f["leaf.pem"]!);
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

/** The TLVs of a certificate's tbsCertificate. */
export function tbsParts(der: Buffer): Buffer[] {
  const [tbs] = readChildren(der, readSingle(der, 0x30));
  return readChildren(der, tbs!).map((t) => der.subarray(t.start, t.end));
}
