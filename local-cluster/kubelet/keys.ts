/**
 * The kubelet side of a PodCertificateRequest: key pairs, proofs of possession and stub CSRs made
 * exactly the way kubelet (Go) makes them. Used by fixtures, demos, tests and the CLI.
 */
import {
  constants,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from "node:crypto";
import type { KeyType } from "../../shared/pcr/model.js";
import { describeKey, goSignatureAlgorithm } from "../../shared/x509/algorithms.js";
import { bitString, integer, readSingle, sequence, TAG, tlv } from "../../shared/x509/der.js";
import { withArticle } from "../../shared/words.js";

export interface RequestKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo, as kubelet puts it (base64) in spec.pkixPublicKey. */
  spkiDer: Buffer;
}

export function generateRequestKeyPair(keyType: KeyType): RequestKeyPair {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  switch (keyType) {
    case "RSA3072":
    case "RSA4096":
      pair = generateKeyPairSync("rsa", {
        modulusLength: keyType === "RSA3072" ? 3072 : 4096,
        publicExponent: 65537,
      });
      break;
    case "ECDSAP256":
      pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
      break;
    case "ECDSAP384":
      pair = generateKeyPairSync("ec", { namedCurve: "P-384" });
      break;
    case "ECDSAP521":
      pair = generateKeyPairSync("ec", { namedCurve: "P-521" });
      break;
    case "ED25519":
      pair = generateKeyPairSync("ed25519");
      break;
    default:
      throw new Error(`unknown key type ${String(keyType)}`);
  }
  return { ...pair, spkiDer: pair.publicKey.export({ type: "spki", format: "der" }) };
}

/**
 * kubelet's proof of possession: a signature over the ASCII bytes of the pod UID.
 * ECDSA: SHA-256, DER (Go ecdsa.SignASN1) on every curve. RSA: RSASSA-PSS, SHA-256, MGF1-SHA-256,
 * maximum salt length (Go rsa.SignPSS with nil options). Ed25519: plain.
 */
export function proofOfPossession(privateKey: KeyObject, podUID: string): Buffer {
  const data = Buffer.from(podUID, "utf8");
  switch (privateKey.asymmetricKeyType) {
    case "ec":
      return sign("sha256", data, { key: privateKey, dsaEncoding: "der" });
    case "rsa":
      return sign("sha256", data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN,
      });
    case "ed25519":
      return sign(null, data, privateKey);
    default:
      throw new Error(`cannot make a proof of possession with ${withArticle(describeKey(privateKey))} key`);
  }
}

/**
 * A stub PKCS#10 request as kubelet builds it with Go's x509.CreateCertificateRequest and an
 * empty template: version 0, empty subject, the key, an empty attribute set, signed with the
 * algorithm Go picks for the key (ECDSA SHA-256/384/512 by curve, RSA PKCS#1 v1.5 SHA-256,
 * Ed25519). Returns DER.
 */
export function stubCsr(privateKey: KeyObject, spkiDerOrPublicKey: Uint8Array | KeyObject): Buffer {
  const spkiDer =
    spkiDerOrPublicKey instanceof Uint8Array
      ? Buffer.from(spkiDerOrPublicKey)
      : spkiDerOrPublicKey.export({ type: "spki", format: "der" });
  readSingle(spkiDer, TAG.SEQUENCE);
  const alg = goSignatureAlgorithm(privateKey);
  if (!alg) throw new Error(`cannot sign a CSR with ${withArticle(describeKey(privateKey))} key`);
  // The given public key must belong to the private key, or the CSR would never verify.
  const derived = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  if (!derived.equals(spkiDer)) throw new Error("the public key does not match the private key");
  const cri = sequence(
    integer(0),
    sequence(), // empty Name
    spkiDer,
    tlv(0xa0, Buffer.alloc(0)), // attributes [0] IMPLICIT SET OF Attribute: empty
  );
  const signature =
    alg.kind === "ecdsa"
      ? sign(alg.hash, cri, { key: privateKey, dsaEncoding: "der" })
      : sign(alg.hash, cri, privateKey);
  return sequence(cri, alg.algorithmIdentifier, bitString(signature));
}
