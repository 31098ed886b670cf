import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { RequestDeniedError, type DenialReason } from "../../../shared/errors.js";
import { KEY_TYPES, type KeyType } from "../../../shared/pcr/model.js";
import { bitString, integer, nullValue, oid, sequence, set, tlv, utf8String } from "../../../shared/x509/der.js";
import {
  generateRequestKeyPair,
  proofOfPossession,
  stubCsr,
  type RequestKeyPair,
} from "../../../shared/x509/request-generator.js";
import {
  classifyPublicKey,
  readRequestKey,
  REQUEST_KEY_LIMITS,
  spkiSha256,
} from "../../../shared/x509/request-key.js";

const POD_UID = "6f1c2a3e-9d8b-4c7a-b5e4-0123456789ab";
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

const keys = {} as Record<KeyType, RequestKeyPair>;
const others = {} as Record<KeyType, RequestKeyPair>;

beforeAll(() => {
  for (const t of KEY_TYPES) {
    keys[t] = generateRequestKeyPair(t);
    others[t] = generateRequestKeyPair(t); // a second key of the same type

  }
}, 120_000);

function denied(fn: () => unknown, reason: DenialReason, message?: RegExp): RequestDeniedError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, "expected a RequestDeniedError").toBeInstanceOf(RequestDeniedError);
  const d = err as RequestDeniedError;
  expect(d.reason).toBe(reason);
  if (message) expect(d.message).toMatch(message);
  return d;
}

function pkixSpec(k: RequestKeyPair, uid = POD_UID, proof?: Buffer) {
  return {
    podUID: POD_UID,
    pkixPublicKey: b64(k.spkiDer),
    proofOfPossession: b64(proof ?? proofOfPossession(k.privateKey, uid)),
  };
}

function csrSpec(csr: Uint8Array) {
  return { podUID: POD_UID, stubPKCS10Request: b64(csr) };
}

/** A CSR assembled by hand: lets tests choose the algorithm, parameters, key and signer. */
function customCsr(o: {
  spkiDer: Buffer;
  signWith: KeyObject;
  algOid: string;
  params?: "null" | "absent";
  hash: string | null;
  ecdsa?: boolean;
}): Buffer {
  const cri = sequence(integer(0), sequence(), o.spkiDer, tlv(0xa0, Buffer.alloc(0)));
  const sig = o.ecdsa
    ? sign(o.hash, cri, { key: o.signWith, dsaEncoding: "der" })
    : sign(o.hash, cri, o.signWith);
  const alg = o.params === "null" ? sequence(oid(o.algOid), nullValue()) : sequence(oid(o.algOid));
  return sequence(cri, alg, bitString(sig));
}

describe("readRequestKey: pkixPublicKey + proofOfPossession", () => {
  it.each(KEY_TYPES)("accepts a kubelet-style %s request", (t) => {
    const k = keys[t];
    const r = readRequestKey(pkixSpec(k), KEY_TYPES);
    expect(r.keyType).toBe(t);
    expect(r.spkiDer.equals(k.spkiDer)).toBe(true);
    expect(r.spkiSha256).toBe(createHash("sha256").update(k.spkiDer).digest("base64url"));
    expect(r.publicKey.export({ type: "spki", format: "der" }).equals(k.spkiDer)).toBe(true);
  });

  it.each(KEY_TYPES)("rejects a %s proof over another pod UID", (t) => {
    denied(
      () => readRequestKey(pkixSpec(keys[t], "11111111-2222-3333-4444-555555555555"), KEY_TYPES),
      "InvalidProofOfPossession",
      new RegExp(`not a valid ${t} signature over the pod UID`),
    );
  });

  it.each(KEY_TYPES)("rejects a %s proof made with another key", (t) => {
    const proof = proofOfPossession(others[t].privateKey, POD_UID);
    denied(() => readRequestKey(pkixSpec(keys[t], POD_UID, proof), KEY_TYPES), "InvalidProofOfPossession");
  });

  it("accepts RSA-PSS proofs with the maximum salt and with a 32-byte salt", () => {
    for (const t of ["RSA3072", "RSA4096"] as const) {
      const k = keys[t];
      const data = Buffer.from(POD_UID);
      const maxSalt = proofOfPossession(k.privateKey, POD_UID);
      const bits = t === "RSA3072" ? 3072 : 4096;
      // the generator really uses the maximum salt: emLen - hLen - 2
      const pss = (saltLength: number) => ({ key: k.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
      expect(verify("sha256", data, pss(bits / 8 - 32 - 2), maxSalt)).toBe(true);
      expect(verify("sha256", data, pss(32), maxSalt)).toBe(false);
      const salt32 = sign("sha256", data, {
        key: k.privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
      expect(readRequestKey(pkixSpec(k, POD_UID, maxSalt), KEY_TYPES).keyType).toBe(t);
      expect(readRequestKey(pkixSpec(k, POD_UID, salt32), KEY_TYPES).keyType).toBe(t);
    }
  });

  it("rejects an RSA PKCS#1 v1.5 proof (kubelet uses PSS)", () => {
    const k = keys.RSA3072;
    const v15 = sign("sha256", Buffer.from(POD_UID), k.privateKey);
    denied(() => readRequestKey(pkixSpec(k, POD_UID, v15), KEY_TYPES), "InvalidProofOfPossession");
  });

  it("requires SHA-256 and DER for ECDSA proofs on every curve", () => {
    const k = keys.ECDSAP384;
    const data = Buffer.from(POD_UID);
    const sha384 = sign("sha384", data, { key: k.privateKey, dsaEncoding: "der" });
    denied(() => readRequestKey(pkixSpec(k, POD_UID, sha384), KEY_TYPES), "InvalidProofOfPossession");
    const p1363 = sign("sha256", data, { key: k.privateKey, dsaEncoding: "ieee-p1363" });
    denied(() => readRequestKey(pkixSpec(k, POD_UID, p1363), KEY_TYPES), "InvalidProofOfPossession");
    const p521 = keys.ECDSAP521;
    const ok = sign("sha256", data, { key: p521.privateKey, dsaEncoding: "der" });
    expect(readRequestKey(pkixSpec(p521, POD_UID, ok), KEY_TYPES).keyType).toBe("ECDSAP521");
  });

  it("denies missing or undecodable proofs", () => {
    const k = keys.ECDSAP256;
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(k.spkiDer) }, KEY_TYPES),
      "InvalidProofOfPossession",
      /missing/,
    );
    denied(
      () => readRequestKey({ ...pkixSpec(k), proofOfPossession: "not base64!" }, KEY_TYPES),
      "InvalidProofOfPossession",
      /not valid base64/,
    );
    denied(() => readRequestKey({ podUID: POD_UID }, KEY_TYPES), "InvalidProofOfPossession", /neither/);
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: "", proofOfPossession: "", stubPKCS10Request: "" }, KEY_TYPES),
      "InvalidProofOfPossession",
    );
    denied(() => readRequestKey({ ...pkixSpec(k), podUID: "" }, KEY_TYPES), "InvalidProofOfPossession", /podUID/);
  });
});

describe("readRequestKey: stubPKCS10Request", () => {
  it.each(KEY_TYPES)("accepts a Go-style %s stub CSR and returns the same key as pkixPublicKey would", (t) => {
    const k = keys[t];
    const r = readRequestKey(csrSpec(stubCsr(k.privateKey, k.spkiDer)), KEY_TYPES);
    expect(r.keyType).toBe(t);
    expect(r.spkiDer.equals(k.spkiDer)).toBe(true);
    expect(r.spkiSha256).toBe(spkiSha256(k.spkiDer));
  });

  it.each(KEY_TYPES)("rejects a %s CSR with a tampered signature", (t) => {
    const csr = Buffer.from(stubCsr(keys[t].privateKey, keys[t].spkiDer));
    csr[csr.length - 1] ^= 0x01;
    denied(() => readRequestKey(csrSpec(csr), KEY_TYPES), "InvalidProofOfPossession", /does not verify/);
  });

  it.each(KEY_TYPES)("rejects a %s CSR naming a key other than the one that signed it", (t) => {
    const csr = customCsr({
      spkiDer: keys[t].spkiDer,
      signWith: others[t].privateKey,
      ...goAlg(t),
    });
    denied(() => readRequestKey(csrSpec(csr), KEY_TYPES), "InvalidProofOfPossession", /does not verify/);
  });

  it.each(KEY_TYPES)("rejects a %s CSR whose signed content was altered", (t) => {
    const k = keys[t];
    const subject = sequence(set(sequence(oid("2.5.4.3"), utf8String("podcert-test"))));
    const cri = sequence(integer(0), subject, k.spkiDer, tlv(0xa0, Buffer.alloc(0)));
    const a = goAlg(t);
    const sig = a.ecdsa ? sign(a.hash, cri, { key: k.privateKey, dsaEncoding: "der" }) : sign(a.hash, cri, k.privateKey);
    const algId = a.params === "null" ? sequence(oid(a.algOid), nullValue()) : sequence(oid(a.algOid));
    const csr = sequence(cri, algId, bitString(sig));
    expect(readRequestKey(csrSpec(csr), KEY_TYPES).keyType).toBe(t); // intact: accepted
    const at = csr.indexOf("podcert-test");
    csr.write("podcert-TEST", at, "latin1");
    denied(() => readRequestKey(csrSpec(csr), KEY_TYPES), "InvalidProofOfPossession", /does not verify/);
  });

  it("rejects truncated and garbage CSRs", () => {
    const csr = stubCsr(keys.ECDSAP256.privateKey, keys.ECDSAP256.spkiDer);
    denied(() => readRequestKey(csrSpec(csr.subarray(0, csr.length - 3)), KEY_TYPES), "InvalidProofOfPossession", /not a valid DER PKCS#10/);
    denied(() => readRequestKey(csrSpec(Buffer.concat([csr, Buffer.from([0])])), KEY_TYPES), "InvalidProofOfPossession", /PKCS#10/);
    denied(() => readRequestKey(csrSpec(Buffer.from("hello world")), KEY_TYPES), "InvalidProofOfPossession");
    denied(() => readRequestKey({ podUID: POD_UID, stubPKCS10Request: "%%%" }, KEY_TYPES), "InvalidProofOfPossession", /base64/);
  });

  it("accepts every SHA-2 algorithm of the key's family and refuses other families", () => {
    const ec = keys.ECDSAP256;
    const rsa = keys.RSA3072;
    // accepted: ECDSA P-256 with SHA-384/512, RSA with SHA-512, RSA with absent parameters
    for (const [algOid, hash] of [
      ["1.2.840.10045.4.3.3", "sha384"],
      ["1.2.840.10045.4.3.4", "sha512"],
    ] as const) {
      const csr = customCsr({ spkiDer: ec.spkiDer, signWith: ec.privateKey, algOid, hash, ecdsa: true });
      expect(readRequestKey(csrSpec(csr), KEY_TYPES).keyType).toBe("ECDSAP256");
    }
    const rsa512 = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.13", params: "null", hash: "sha512" });
    expect(readRequestKey(csrSpec(rsa512), KEY_TYPES).keyType).toBe("RSA3072");
    const rsaNoParams = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.11", hash: "sha256" });
    expect(readRequestKey(csrSpec(rsaNoParams), KEY_TYPES).keyType).toBe("RSA3072");

    // refused: an RSA signature labelled ECDSA, an ECDSA key with an RSA OID, SHA-1, Ed25519 OID on EC
    const mislabeled = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.10045.4.3.2", hash: "sha256" });
    denied(() => readRequestKey(csrSpec(mislabeled), KEY_TYPES), "InvalidProofOfPossession", /not valid for a RSA3072 key/);
    const ecRsaOid = customCsr({ spkiDer: ec.spkiDer, signWith: ec.privateKey, algOid: "1.2.840.113549.1.1.11", params: "null", hash: "sha256", ecdsa: true });
    denied(() => readRequestKey(csrSpec(ecRsaOid), KEY_TYPES), "InvalidProofOfPossession", /not valid for a ECDSAP256 key/);
    const sha1 = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.5", params: "null", hash: "sha1" });
    denied(() => readRequestKey(csrSpec(sha1), KEY_TYPES), "InvalidProofOfPossession", /1\.2\.840\.113549\.1\.1\.5/);
    const ecdsaWithNull = customCsr({ spkiDer: ec.spkiDer, signWith: ec.privateKey, algOid: "1.2.840.10045.4.3.2", params: "null", hash: "sha256", ecdsa: true });
    denied(() => readRequestKey(csrSpec(ecdsaWithNull), KEY_TYPES), "InvalidProofOfPossession", /parameters/);
  });

  it("refuses a CSR combined with pkixPublicKey/proofOfPossession", () => {
    const k = keys.ECDSAP256;
    denied(
      () => readRequestKey({ ...pkixSpec(k), stubPKCS10Request: b64(stubCsr(k.privateKey, k.spkiDer)) }, KEY_TYPES),
      "InvalidProofOfPossession",
      /must not be combined/,
    );
  });
});

function goAlg(t: KeyType): { algOid: string; hash: string | null; params?: "null"; ecdsa?: boolean } {
  switch (t) {
    case "ECDSAP256":
      return { algOid: "1.2.840.10045.4.3.2", hash: "sha256", ecdsa: true };
    case "ECDSAP384":
      return { algOid: "1.2.840.10045.4.3.3", hash: "sha384", ecdsa: true };
    case "ECDSAP521":
      return { algOid: "1.2.840.10045.4.3.4", hash: "sha512", ecdsa: true };
    case "RSA3072":
    case "RSA4096":
      return { algOid: "1.2.840.113549.1.1.11", hash: "sha256", params: "null" };
    case "ED25519":
      return { algOid: "1.3.101.112", hash: null };
  }
}

describe("readRequestKey: key types", () => {
  it.each(KEY_TYPES)("denies %s when it is not in the allowed list, naming the supported types", (t) => {
    const allowed = KEY_TYPES.filter((x) => x !== t);
    const msg = new RegExp(`key type ${t} is not supported by this signer; use one of ${allowed.join(", ")}`);
    denied(() => readRequestKey(pkixSpec(keys[t]), allowed), "UnsupportedKeyType", msg);
    denied(() => readRequestKey(csrSpec(stubCsr(keys[t].privateKey, keys[t].spkiDer)), allowed), "UnsupportedKeyType", msg);
  });

  it("denies with an empty allowed list", () => {
    denied(() => readRequestKey(pkixSpec(keys.ED25519), []), "UnsupportedKeyType", /none configured/);
  });

  it("denies key types kubelet never uses, naming them", () => {
    const cases: [KeyObject, KeyObject, RegExp][] = [];
    const rsa2048 = generateKeyPairSync("rsa", { modulusLength: 2048 });
    cases.push([rsa2048.privateKey, rsa2048.publicKey, /key type RSA2048 is not supported by this signer; use one of ECDSAP256/]);
    const k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" });
    cases.push([k1.privateKey, k1.publicKey, /key type EC secp256k1 is not supported/]);
    const ed448 = generateKeyPairSync("ed448");
    cases.push([ed448.privateKey, ed448.publicKey, /key type ED448 is not supported/]);
    const pss = generateKeyPairSync("rsa-pss", { modulusLength: 3072 });
    cases.push([pss.privateKey, pss.publicKey, /key type RSA-PSS3072 is not supported/]);
    for (const [priv, pub, msg] of cases) {
      const spki = pub.export({ type: "spki", format: "der" });
      const proof = priv.asymmetricKeyType === "ed448" ? sign(null, Buffer.from(POD_UID), priv) : sign("sha256", Buffer.from(POD_UID), priv);
      denied(
        () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(proof) }, ["ECDSAP256", "ED25519"]),
        "UnsupportedKeyType",
        msg,
      );
    }
    const x25519 = generateKeyPairSync("x25519").publicKey.export({ type: "spki", format: "der" });
    denied(() => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(x25519), proofOfPossession: "AAAA" }, KEY_TYPES), "UnsupportedKeyType", /X25519/);
  });

  it("reports the key type before looking at the proof", () => {
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(keys.RSA3072.spkiDer), proofOfPossession: "bad!" }, ["ED25519"]),
      "UnsupportedKeyType",
    );
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(keys.RSA3072.spkiDer) }, ["ED25519"]),
      "UnsupportedKeyType",
    );
  });

  it("denies SPKIs that do not parse or are not canonical as UnsupportedKeyType", () => {
    const ec = keys.ECDSAP256;
    const proof = b64(proofOfPossession(ec.privateKey, POD_UID));
    const spec = (spki: string) => ({ podUID: POD_UID, pkixPublicKey: spki, proofOfPossession: proof });
    denied(() => readRequestKey(spec("!!!"), KEY_TYPES), "UnsupportedKeyType", /base64/);
    denied(() => readRequestKey(spec(b64(Buffer.from("garbage garbage"))), KEY_TYPES), "UnsupportedKeyType", /SubjectPublicKeyInfo/);
    denied(() => readRequestKey(spec(b64(Buffer.concat([ec.spkiDer, Buffer.from([0])]))), KEY_TYPES), "UnsupportedKeyType", /trailing/);
    // a compressed P-256 point (node accepts it; Go does not)
    const point = ec.spkiDer.subarray(ec.spkiDer.length - 65);
    const y = point.subarray(33);
    const compressed = Buffer.concat([Buffer.from([0x02 | (y[31]! & 1)]), point.subarray(1, 33)]);
    const cspki = Buffer.concat([Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex"), compressed]);
    expect(createPublicKey({ key: cspki, format: "der", type: "spki" }).asymmetricKeyType).toBe("ec");
    denied(() => readRequestKey(spec(b64(cspki)), KEY_TYPES), "UnsupportedKeyType", /compressed/);
    // RSA SPKI without the NULL parameters Go requires
    const rsa = keys.RSA3072;
    const noNull = Buffer.from(rsa.spkiDer);
    const rsaAlg = Buffer.from("300d06092a864886f70d0101010500", "hex");
    const at = noNull.indexOf(rsaAlg);
    expect(at).toBeGreaterThan(0);
    const bitStr = noNull.subarray(at + rsaAlg.length);
    const altered = sequence(sequence(oid("1.2.840.113549.1.1.1")), bitStr);
    const rsaProof = b64(proofOfPossession(rsa.privateKey, POD_UID));
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(altered), proofOfPossession: rsaProof }, KEY_TYPES),
      "UnsupportedKeyType",
      /canonical/,
    );
  });
});

describe("readRequestKey: size limits before decoding", () => {
  it("denies an oversize pkixPublicKey as UnsupportedKeyType", () => {
    const long = "A".repeat(REQUEST_KEY_LIMITS.pkixPublicKey + 4);
    denied(() => readRequestKey({ podUID: POD_UID, pkixPublicKey: long, proofOfPossession: "AAAA" }, KEY_TYPES), "UnsupportedKeyType", /more than the 4096/);
    // size is checked before anything else: an oversize non-base64 value reports the size
    denied(() => readRequestKey({ podUID: POD_UID, pkixPublicKey: "!".repeat(5000), proofOfPossession: "AAAA" }, KEY_TYPES), "UnsupportedKeyType", /4096/);
    expect(REQUEST_KEY_LIMITS.pkixPublicKey).toBe(4096);
    denied(() => readRequestKey({ podUID: POD_UID, pkixPublicKey: long, proofOfPossession: "AAAA" }, KEY_TYPES), "UnsupportedKeyType", /; no supported key type is that large$/);
  });

  it("names the field whose base64 does not decode, with its field's reason", () => {
    denied(() => readRequestKey({ podUID: POD_UID, pkixPublicKey: "not base64!", proofOfPossession: "AAAA" }, KEY_TYPES), "UnsupportedKeyType", /^pkixPublicKey is not valid base64$/);
    denied(() => readRequestKey({ podUID: POD_UID, stubPKCS10Request: "not base64!" }, KEY_TYPES), "InvalidProofOfPossession", /^stubPKCS10Request is not valid base64$/);
  });

  it("denies an oversize proofOfPossession", () => {
    const k = keys.ECDSAP256;
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(k.spkiDer), proofOfPossession: "!".repeat(2049) }, KEY_TYPES),
      "InvalidProofOfPossession",
      /more than the 2048/,
    );
    // exactly at the limit is decoded (and then fails as a signature)
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(k.spkiDer), proofOfPossession: "A".repeat(2048) }, KEY_TYPES),
      "InvalidProofOfPossession",
      /not a valid ECDSAP256 signature/,
    );
  });

  it("denies an oversize stubPKCS10Request", () => {
    denied(
      () => readRequestKey({ podUID: POD_UID, stubPKCS10Request: "!".repeat(16 * 1024 + 1) }, KEY_TYPES),
      "InvalidProofOfPossession",
      /more than the 16384/,
    );
    // the largest real CSR (RSA4096) fits comfortably
    expect(b64(stubCsr(keys.RSA4096.privateKey, keys.RSA4096.spkiDer)).length).toBeLessThan(2048);
  });
});

describe("classifyPublicKey and spkiSha256", () => {
  it("classifies exactly the six kubelet key types", () => {
    for (const t of KEY_TYPES) expect(classifyPublicKey(keys[t].publicKey)).toBe(t);
    expect(classifyPublicKey(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey)).toBeUndefined();
    expect(classifyPublicKey(generateKeyPairSync("rsa", { modulusLength: 3080 }).publicKey)).toBeUndefined();
    expect(classifyPublicKey(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey)).toBeUndefined();
    expect(classifyPublicKey(generateKeyPairSync("ed448").publicKey)).toBeUndefined();
    expect(classifyPublicKey(generateKeyPairSync("x25519").publicKey)).toBeUndefined();
  });

  it("hashes the SPKI to unpadded base64url", () => {
    expect(spkiSha256(Buffer.from("abc"))).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
  });
});

describe("readRequestKey with verify: false (for steps holding validate's attestation)", () => {
  it("reads the key of a request whose proof does not verify, and still refuses unsupported keys", async () => {
    const { generateRequestKeyPair: gen, proofOfPossession: prove } = await import("../../../shared/x509/request-generator.js");
    const { readRequestKey: read } = await import("../../../shared/x509/request-key.js");
    const k = gen("ECDSAP256");
    const other = gen("ECDSAP256");
    const spec = { podUID: "u1", pkixPublicKey: k.spkiDer.toString("base64"), proofOfPossession: prove(other.privateKey, "u1").toString("base64") };
    expect(() => read(spec, ["ECDSAP256"])).toThrow(/proofOfPossession is not a valid/);
    const key = read(spec, ["ECDSAP256"], { verify: false });
    expect(key.spkiDer.equals(k.spkiDer)).toBe(true);
    expect(() => read(spec, ["ED25519"], { verify: false })).toThrow(/not supported/);
  });
});
