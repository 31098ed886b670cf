/**
 * Key and signature algorithm facts shared by request verification, the request generator and
 * leaf issuance: OIDs, how to describe a key in a message, and the signature algorithm Go's
 * crypto/x509 picks for a key (which is what kubelet's CSRs and our certificates use).
 */
import type { KeyObject } from "node:crypto";
import type { KeyType } from "../pcr/model.js";
import { nullValue, oid, sequence } from "./der.js";

export const OID = {
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsassaPss: "1.2.840.113549.1.1.10",
  sha256WithRSAEncryption: "1.2.840.113549.1.1.11",
  sha384WithRSAEncryption: "1.2.840.113549.1.1.12",
  sha512WithRSAEncryption: "1.2.840.113549.1.1.13",
  ecPublicKey: "1.2.840.10045.2.1",
  ecdsaWithSHA256: "1.2.840.10045.4.3.2",
  ecdsaWithSHA384: "1.2.840.10045.4.3.3",
  ecdsaWithSHA512: "1.2.840.10045.4.3.4",
  ed25519: "1.3.101.112",
  prime256v1: "1.2.840.10045.3.1.7",
  secp384r1: "1.3.132.0.34",
  secp521r1: "1.3.132.0.35",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** node:crypto's curve names for the three curves kubelet uses. */
const EC_CURVES: Record<string, { keyType: KeyType; hash: "sha256" | "sha384" | "sha512"; sigOid: string }> = {
  prime256v1: { keyType: "ECDSAP256", hash: "sha256", sigOid: OID.ecdsaWithSHA256 },
  secp384r1: { keyType: "ECDSAP384", hash: "sha384", sigOid: OID.ecdsaWithSHA384 },
  secp521r1: { keyType: "ECDSAP521", hash: "sha512", sigOid: OID.ecdsaWithSHA512 },
};

/** A short human name for any public or private key, for messages ("RSA2048", "EC secp256k1"). */
export function describeKey(key: KeyObject): string {
  const t = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  switch (t) {
    case "rsa":
      return `RSA${d.modulusLength ?? "?"}`;
    case "rsa-pss":
      return `RSA-PSS${d.modulusLength ?? "?"}`;
    case "ec": {
      const c = d.namedCurve ?? "unknown curve";
      const known = EC_CURVES[c];
      return known ? known.keyType : `EC ${c}`;
    }
    case "ed25519":
      return "ED25519";
    case undefined:
      return "unknown";
    default:
      return t.toUpperCase();
  }
}

/**
 * The signature algorithm Go's x509.CreateCertificate / CreateCertificateRequest picks for a
 * signing key: ECDSA with SHA-256/384/512 by curve (P-256/384/521), RSA PKCS#1 v1.5 with
 * SHA-256 (any modulus), Ed25519. `hash` is the node:crypto digest name (null for Ed25519);
 * `algorithmIdentifier` is the DER AlgorithmIdentifier (NULL parameters for RSA, none otherwise).
 */
export interface SignatureAlgorithm {
  name: string;
  oid: string;
  hash: "sha256" | "sha384" | "sha512" | null;
  algorithmIdentifier: Buffer;
  kind: "ecdsa" | "rsa" | "ed25519";
}

export function goSignatureAlgorithm(key: KeyObject): SignatureAlgorithm | undefined {
  switch (key.asymmetricKeyType) {
    case "ec": {
      const c = EC_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ""];
      if (!c) return undefined;
      return {
        name: `ecdsa-with-${c.hash.toUpperCase()}`,
        oid: c.sigOid,
        hash: c.hash,
        algorithmIdentifier: sequence(oid(c.sigOid)),
        kind: "ecdsa",
      };
    }
    case "rsa":
      return {
        name: "sha256WithRSAEncryption",
        oid: OID.sha256WithRSAEncryption,
        hash: "sha256",
        algorithmIdentifier: sequence(oid(OID.sha256WithRSAEncryption), nullValue()),
        kind: "rsa",
      };
    case "ed25519":
      return {
        name: "Ed25519",
        oid: OID.ed25519,
        hash: null,
        algorithmIdentifier: sequence(oid(OID.ed25519)),
        kind: "ed25519",
      };
    default:
      return undefined;
  }
}

/**
 * Signature algorithms accepted on a CSR, by key family: what Go's CheckSignature accepts for
 * that key (SHA-1 and MD5 variants are refused as insecure, RSA-PSS is not produced by Go's
 * CreateCertificateRequest for RSA keys and is not accepted here).
 */
export const CSR_SIGNATURE_ALGORITHMS: Record<
  "ecdsa" | "rsa" | "ed25519",
  Record<string, { hash: "sha256" | "sha384" | "sha512" | null; params: "absent" | "null-or-absent" }>
> = {
  ecdsa: {
    [OID.ecdsaWithSHA256]: { hash: "sha256", params: "absent" },
    [OID.ecdsaWithSHA384]: { hash: "sha384", params: "absent" },
    [OID.ecdsaWithSHA512]: { hash: "sha512", params: "absent" },
  },
  rsa: {
    [OID.sha256WithRSAEncryption]: { hash: "sha256", params: "null-or-absent" },
    [OID.sha384WithRSAEncryption]: { hash: "sha384", params: "null-or-absent" },
    [OID.sha512WithRSAEncryption]: { hash: "sha512", params: "null-or-absent" },
  },
  ed25519: {
    [OID.ed25519]: { hash: null, params: "absent" },
  },
};
