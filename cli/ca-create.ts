/**
 * Creating CAs, a job of the CLI (`podcert ca init`) and of the local run's throwaway pool, never
 * of a function: @peculiar/x509 and its reflect-metadata stay out of the function bundles
 * (test/unit/bundle-contents.test.ts).
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { randomBytes, webcrypto } from "node:crypto";
import { ConfigError } from "../shared/errors.js";
import { CA_POOL_API_VERSION, CA_POOL_KIND, type CaPoolDocument } from "../shared/ca/pool.js";
import { pemEncode } from "../shared/x509/pem.js";

export type CaKeyAlgorithm = "ECDSAP256" | "ECDSAP384" | "ECDSAP521" | "ED25519" | "RSA3072" | "RSA4096";
export const CA_KEY_ALGORITHMS: readonly CaKeyAlgorithm[] = [
  "ECDSAP256",
  "ECDSAP384",
  "ECDSAP521",
  "ED25519",
  "RSA3072",
  "RSA4096",
];

// ---------------------------------------------------------------------------------------------

type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;

const subtle = webcrypto.subtle;

function keyParams(alg: CaKeyAlgorithm): {
  generate: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm;
  signing: Algorithm | EcdsaParams;
} {
  switch (alg) {
    case "ECDSAP256":
      return { generate: { name: "ECDSA", namedCurve: "P-256" }, signing: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams };
    case "ECDSAP384":
      return { generate: { name: "ECDSA", namedCurve: "P-384" }, signing: { name: "ECDSA", hash: "SHA-384" } as EcdsaParams };
    case "ECDSAP521":
      return { generate: { name: "ECDSA", namedCurve: "P-521" }, signing: { name: "ECDSA", hash: "SHA-512" } as EcdsaParams };
    case "ED25519":
      return { generate: { name: "Ed25519" }, signing: { name: "Ed25519" } };
    case "RSA3072":
    case "RSA4096":
      return {
        generate: {
          name: "RSASSA-PKCS1-v1_5",
          modulusLength: alg === "RSA3072" ? 3072 : 4096,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: "SHA-256",
        } as RsaHashedKeyGenParams,
        signing: { name: "RSASSA-PKCS1-v1_5" },
      };
    default:
      throw new ConfigError(`unknown CA key algorithm ${String(alg)}; use one of ${CA_KEY_ALGORITHMS.join(", ")}`);
  }
}

/**
 * A self-signed root CA for `signerName`: subject CN "<signerName> CA", O "podcert";
 * basicConstraints cA=true (critical); keyUsage keyCertSign, cRLSign, digitalSignature
 * (critical); subjectKeyIdentifier. Valid from one minute before `now` for `validityDays`.
 */
export async function createCa(o: {
  signerName: string;
  keyAlgorithm: CaKeyAlgorithm;
  validityDays: number;
  now: Date;
}): Promise<{ certificate: string; privateKey: string }> {
  if (!o.signerName) throw new ConfigError("createCa: signerName is empty");
  if (!Number.isFinite(o.validityDays) || o.validityDays <= 0) {
    throw new ConfigError("createCa: validityDays must be a positive number");
  }
  const nowMs = o.now.getTime();
  if (!Number.isFinite(nowMs)) throw new ConfigError("createCa: now is not a valid Date");
  const { generate, signing } = keyParams(o.keyAlgorithm);
  const keys = (await subtle.generateKey(generate, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(Math.floor(nowMs / 1000) * 1000 - 60_000);
  const notAfter = new Date(Math.floor(nowMs / 1000) * 1000 + Math.round(o.validityDays * 86_400) * 1000);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString("hex"),
      name: [{ O: ["podcert"] }, { CN: [`${o.signerName} CA`] }],
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: signing,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  const pkcs8 = await subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certificate: pemEncode("CERTIFICATE", Buffer.from(cert.rawData)),
    privateKey: pemEncode("PRIVATE KEY", Buffer.from(pkcs8)),
  };
}

/** A pool with one new root CA per signer name. */
export async function createCaPool(
  signerNames: readonly string[],
  o: { keyAlgorithm: CaKeyAlgorithm; validityDays: number; now: Date },
): Promise<CaPoolDocument> {
  const unique = new Set(signerNames);
  if (unique.size !== signerNames.length) throw new ConfigError("createCaPool: duplicate signer names");
  const signers: CaPoolDocument["signers"] = [];
  for (const signerName of signerNames) {
    signers.push({ signerName, cas: [await createCa({ signerName, ...o })] });
  }
  return { apiVersion: CA_POOL_API_VERSION, kind: CA_POOL_KIND, signers };
}

/** A pool for one local run (`npm start`, the tests, the benchmark): one P-256 root per signer. */
export function throwawayCaPool(signerNames: Iterable<string>, now = new Date()): Promise<CaPoolDocument> {
  return createCaPool([...signerNames], { keyAlgorithm: "ECDSAP256", validityDays: 365, now });
}
