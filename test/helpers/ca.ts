/**
 * CAs with chosen validity, roots or intermediates, for the CA pool and rotation tests (podcert's
 * own createCa makes only roots valid from now).
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { KeyObject, webcrypto } from "node:crypto";

export interface TestCa {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  /** PEM, one CERTIFICATE. */
  certificate: string;
  /** PKCS#8 PEM. */
  privateKey: string;
}

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** A P-256 CA valid from `notBefore` to `notAfter`, self-signed or issued by `issuer`. */
export async function testCa(o: { name: string; notBefore: Date; notAfter: Date; issuer?: TestCa }): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const serialNumber = "01" + Buffer.from(o.name).toString("hex").slice(0, 30);
  let cert: x509.X509Certificate;
  if (o.issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(o.issuer.keys.publicKey));
    cert = await x509.X509CertificateGenerator.create({
      serialNumber,
      subject: `CN=${o.name}`,
      issuer: o.issuer.cert.subject,
      notBefore: o.notBefore,
      notAfter: o.notAfter,
      signingAlgorithm: EC,
      publicKey: keys.publicKey,
      signingKey: o.issuer.keys.privateKey,
      extensions,
    });
  } else {
    cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber,
      name: `CN=${o.name}`,
      notBefore: o.notBefore,
      notAfter: o.notAfter,
      signingAlgorithm: EC,
      keys,
      extensions,
    });
  }
  return {
    cert,
    keys,
    certificate: cert.toString("pem") + "\n",
    privateKey: KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }) as string,
  };
}
