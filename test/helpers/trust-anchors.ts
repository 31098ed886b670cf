/**
 * Throwaway certificates for trust bundle tests: self-signed CAs (basicConstraints cA=true) and
 * leaves they sign (cA=false), as PEM. Keys are P-256 and made fresh per certificate.
 */
import "reflect-metadata";

import { webcrypto } from "node:crypto";

import * as x509 from "@peculiar/x509";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

/** PEM with a final newline, as files and Go's pem.Encode have it (@peculiar/x509 leaves it out). */
const pemOf = (c: x509.X509Certificate) => `${c.toString("pem").trimEnd()}\n`;

export interface TestCa {
  pem: string;
  der: Buffer;
  keys: webcrypto.CryptoKeyPair;
  name: string;
}

let serial = 1;
const nextSerial = () => (serial++).toString(16).padStart(4, "0");

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
}

export async function makeCa(cn = "test ca"): Promise<TestCa> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: SIGN,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return { pem: pemOf(cert), der: Buffer.from(cert.rawData), keys, name: `CN=${cn}` };
}

/** A leaf signed by `ca`; `basicConstraints: false` leaves the extension out altogether. */
export async function makeLeaf(ca: TestCa, o: { basicConstraints?: boolean } = {}): Promise<string> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: "CN=leaf",
    issuer: ca.name,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    extensions: o.basicConstraints === false ? [] : [new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  return pemOf(cert);
}
