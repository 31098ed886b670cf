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
import { keyProblemDenial } from "../../../shared/policy/validate.js";
import { bitString, integer, nullValue, oid, sequence, set, tlv, utf8String } from "../../../shared/x509/der.js";
import {
  generateRequestKeyPair,
  proofOfPossession,
  stubCsr,
  type RequestKeyPair,
} from "../../../local-cluster/kubelet/keys.js";
import {
  classifyPublicKey,
  isRequestKeyProblem,
  readRequestKey,
  REQUEST_KEY_LIMITS,
  spkiSha256,
  type RequestKey,
  type RequestKeyProblem,
} from "../../../shared/x509/request-key.js";
import { pssEncoded } from "../../helpers/forgeries.js";

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

/**
 * readRequestKey returns what is wrong as data; the denial it becomes (reason and message) is
 * policy/validate.ts's keyProblemDenial, which validate applies. Checked together here: this is
 * the reason and message the PCR's Denied condition gets.
 */
function denied(fn: () => RequestKey | RequestKeyProblem, reason: DenialReason, message?: RegExp): RequestDeniedError {
  const r = fn();
  if (!isRequestKeyProblem(r)) throw new Error(`expected a key problem (${reason}), read a ${r.keyType} key`);
  const d = keyProblemDenial(r);
  expect(d).toBeInstanceOf(RequestDeniedError);
  expect(d.reason).toBe(reason);
  expect(d.message).toBe(r.message);
  if (message) expect(d.message).toMatch(message);
  return d;
}

/** The key, read without a problem (a problem fails the test, saying what it was). */
function readKey(...args: Parameters<typeof readRequestKey>): RequestKey {
  const r = readRequestKey(...args);
  if (isRequestKeyProblem(r)) throw new Error(`expected a key, got ${r.problem}: ${r.message}`);
  return r;
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
    const r = readKey(pkixSpec(k), KEY_TYPES);
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
      expect(readKey(pkixSpec(k, POD_UID, maxSalt), KEY_TYPES).keyType).toBe(t);
      expect(readKey(pkixSpec(k, POD_UID, salt32), KEY_TYPES).keyType).toBe(t);
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
    expect(readKey(pkixSpec(p521, POD_UID, ok), KEY_TYPES).keyType).toBe("ECDSAP521");
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
    const r = readKey(csrSpec(stubCsr(k.privateKey, k.spkiDer)), KEY_TYPES);
    expect(r.keyType).toBe(t);
    expect(r.spkiDer.equals(k.spkiDer)).toBe(true);
    expect(r.spkiSha256).toBe(spkiSha256(k.spkiDer));
    expect(r.ignoredCsrContent).toEqual([]); // kubelet's CSRs are empty: nothing to report
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
    expect(readKey(csrSpec(csr), KEY_TYPES).keyType).toBe(t); // intact: accepted
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
      expect(readKey(csrSpec(csr), KEY_TYPES).keyType).toBe("ECDSAP256");
    }
    const rsa512 = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.13", params: "null", hash: "sha512" });
    expect(readKey(csrSpec(rsa512), KEY_TYPES).keyType).toBe("RSA3072");
    const rsaNoParams = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.11", hash: "sha256" });
    expect(readKey(csrSpec(rsaNoParams), KEY_TYPES).keyType).toBe("RSA3072");

    // refused: an RSA signature labelled ECDSA, an ECDSA key with an RSA OID, SHA-1, Ed25519 OID on EC
    const mislabeled = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.10045.4.3.2", hash: "sha256" });
    denied(() => readRequestKey(csrSpec(mislabeled), KEY_TYPES), "InvalidProofOfPossession", /not valid for an RSA3072 key/);
    const ecRsaOid = customCsr({ spkiDer: ec.spkiDer, signWith: ec.privateKey, algOid: "1.2.840.113549.1.1.11", params: "null", hash: "sha256", ecdsa: true });
    denied(() => readRequestKey(csrSpec(ecRsaOid), KEY_TYPES), "InvalidProofOfPossession", /not valid for an ECDSAP256 key/);
    const sha1 = customCsr({ spkiDer: rsa.spkiDer, signWith: rsa.privateKey, algOid: "1.2.840.113549.1.1.5", params: "null", hash: "sha1" });
    denied(() => readRequestKey(csrSpec(sha1), KEY_TYPES), "InvalidProofOfPossession", /1\.2\.840\.113549\.1\.1\.5/);
    const ecdsaWithNull = customCsr({ spkiDer: ec.spkiDer, signWith: ec.privateKey, algOid: "1.2.840.10045.4.3.2", params: "null", hash: "sha256", ecdsa: true });
    denied(() => readRequestKey(csrSpec(ecdsaWithNull), KEY_TYPES), "InvalidProofOfPossession", /parameters/);
  });

  describe("what a CSR asks for besides its key is returned as ignoredCsrContent (and not issued)", () => {
    const ext = (extOid: string, valueDer: Buffer, critical = false) =>
      sequence(oid(extOid), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, valueDer));
    const attribute = (typeOid: string, ...values: Buffer[]) => sequence(oid(typeOid), set(...values));
    const extensionRequest = (...exts: Buffer[]) => attribute("1.2.840.113549.1.9.14", sequence(...exts));
    const subject = (...atvs: [string, string][]) => sequence(...atvs.map(([o, v]) => set(sequence(oid(o), utf8String(v)))));
    /** A CSR signed by the ED25519 test key, with this subject and these attributes. */
    const csrWithContent = (subjectDer: Buffer, attributes: Buffer[]) => {
      const k = keys.ED25519;
      const cri = sequence(integer(0), subjectDer, k.spkiDer, tlv(0xa0, Buffer.concat(attributes)));
      return sequence(cri, sequence(oid("1.3.101.112")), bitString(sign(null, cri, k.privateKey)));
    };
    const SAN = sequence(tlv(0x82, Buffer.from("admin.example.com")), tlv(0x86, Buffer.from("spiffe://evil/admin")));

    it.each([
      { case: "an empty CSR", subject: sequence(), attributes: [], ignored: [] },
      {
        case: "a subject",
        subject: subject(["2.5.4.3", "admin"], ["2.5.4.10", "system:masters"], ["2.5.4.99", "x"]),
        attributes: [],
        ignored: ["subject (CN, O, 2.5.4.99)"],
      },
      {
        case: "requested SANs, CA:true and other extensions",
        subject: sequence(),
        attributes: [
          extensionRequest(
            ext("2.5.29.17", SAN),
            ext("2.5.29.19", sequence(tlv(0x01, Buffer.from([0xff]))), true),
            ext("2.5.29.15", bitString(Buffer.from([0x06]), 1), true),
            ext("1.2.3.4", sequence()),
          ),
        ],
        ignored: ["extension subjectAltName (2 names)", "extension basicConstraints (CA:true)", "extension keyUsage", "extension 1.2.3.4"],
      },
      {
        case: "basicConstraints without cA, a challengePassword and an unknown attribute",
        subject: sequence(),
        attributes: [extensionRequest(ext("2.5.29.19", sequence())), attribute("1.2.840.113549.1.9.7", utf8String("hunter2")), attribute("1.2.3.5", sequence())],
        ignored: ["extension basicConstraints (CA:false)", "attribute challengePassword", "attribute 1.2.3.5"],
      },
      {
        case: "an extension whose value is not DER, and an attribute that is not an Attribute",
        subject: sequence(),
        attributes: [extensionRequest(ext("2.5.29.17", Buffer.from("not der"))), sequence(utf8String("x"))],
        ignored: ["an unreadable extension", "an unreadable attribute"],
      },
    ])("$case", ({ subject: subjectDer, attributes, ignored }) => {
      const r = readKey(csrSpec(csrWithContent(subjectDer, attributes)), KEY_TYPES);
      expect(r.keyType).toBe("ED25519"); // described, never denied
      expect(r.ignoredCsrContent).toEqual(ignored);
      expect(readKey(csrSpec(csrWithContent(subjectDer, attributes)), KEY_TYPES, { verify: false }).ignoredCsrContent).toEqual(ignored);
    });

    it("lists at most 16 entries, then how many more", () => {
      const exts = Array.from({ length: 20 }, (_, i) => ext(`1.2.3.${i}`, sequence()));
      const r = readKey(csrSpec(csrWithContent(sequence(), [extensionRequest(...exts)])), KEY_TYPES);
      expect(r.ignoredCsrContent).toHaveLength(17);
      expect(r.ignoredCsrContent.at(-1)).toBe("4 more");
    });

    it("is empty for a pkixPublicKey request", () => {
      expect(readKey(pkixSpec(keys.ED25519), KEY_TYPES).ignoredCsrContent).toEqual([]);
    });
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

describe("readRequestKey: what is wrong is returned as data, never thrown", () => {
  const ec = () => keys.ECDSAP256;
  it.each<{ case: string; spec: () => Parameters<typeof readRequestKey>[0]; allowed?: KeyType[]; verify?: false; want: Partial<RequestKeyProblem> }>([
    { case: "a type the caller does not accept", spec: () => pkixSpec(ec()), allowed: ["ED25519"], want: { problem: "unsupportedType", keyType: "ECDSAP256" } },
    { case: "a type kubelet never uses", spec: () => ({ podUID: POD_UID, pkixPublicKey: b64(generateKeyPairSync("x25519").publicKey.export({ type: "spki", format: "der" })) }), want: { problem: "unsupportedType", keyType: "X25519" } },
    { case: "an SPKI that is not DER", spec: () => ({ podUID: POD_UID, pkixPublicKey: b64(Buffer.from("garbage")) }), want: { problem: "unusableKey" } },
    { case: "a small-order Ed25519 key, proof not checked", spec: () => ({ podUID: POD_UID, pkixPublicKey: b64(Buffer.from("302a300506032b6570032100" + "01" + "00".repeat(31), "hex")) }), verify: false, want: { problem: "unusableKey" } },
    { case: "a pkixPublicKey that is not base64", spec: () => ({ podUID: POD_UID, pkixPublicKey: "%%%" }), want: { problem: "malformed", field: "pkixPublicKey" } },
    { case: "a proofOfPossession that is not base64", spec: () => ({ ...pkixSpec(ec()), proofOfPossession: "%%%" }), want: { problem: "malformed", field: "proofOfPossession" } },
    { case: "a stub CSR that is not DER", spec: () => csrSpec(Buffer.from("hello")), want: { problem: "malformed", field: "stubPKCS10Request" } },
    { case: "both key forms", spec: () => ({ ...pkixSpec(ec()), stubPKCS10Request: b64(stubCsr(ec().privateKey, ec().spkiDer)) }), want: { problem: "malformed", field: "stubPKCS10Request" } },
    { case: "neither key form", spec: () => ({ podUID: POD_UID }), want: { problem: "badProof" } },
    { case: "no proofOfPossession", spec: () => ({ podUID: POD_UID, pkixPublicKey: b64(ec().spkiDer) }), want: { problem: "badProof" } },
    { case: "a proof by another key", spec: () => pkixSpec(ec(), POD_UID, proofOfPossession(others.ECDSAP256.privateKey, POD_UID)), want: { problem: "badProof" } },
  ])("$case: $want.problem", ({ spec, allowed, verify, want }) => {
    let r: RequestKey | RequestKeyProblem | undefined;
    expect(() => (r = readRequestKey(spec(), allowed ?? KEY_TYPES, verify === false ? { verify } : {}))).not.toThrow();
    expect(r).toMatchObject(want);
    expect((r as RequestKeyProblem).message).toEqual(expect.any(String));
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
    const { generateRequestKeyPair: gen, proofOfPossession: prove } = await import("../../../local-cluster/kubelet/keys.js");
    const { readRequestKey: read } = await import("../../../shared/x509/request-key.js");
    const k = gen("ECDSAP256");
    const other = gen("ECDSAP256");
    const spec = { podUID: "u1", pkixPublicKey: k.spkiDer.toString("base64"), proofOfPossession: prove(other.privateKey, "u1").toString("base64") };
    expect(read(spec, ["ECDSAP256"])).toMatchObject({ problem: "badProof", message: expect.stringMatching(/proofOfPossession is not a valid/) });
    const key = read(spec, ["ECDSAP256"], { verify: false });
    expect(isRequestKeyProblem(key) ? key.message : key.spkiDer.equals(k.spkiDer)).toBe(true);
    expect(read(spec, ["ED25519"], { verify: false })).toMatchObject({ problem: "unsupportedType", keyType: "ECDSAP256", message: expect.stringMatching(/not supported/) });
  });
});

// ---------------------------------------------------------------------------------------------
// Keys anyone can sign with, and keys Go would refuse: each denied as UnsupportedKeyType on every
// path (proof checked or not, pkixPublicKey or stub CSR), before any proof is looked at.
// ---------------------------------------------------------------------------------------------

const hex = (h: string) => Buffer.from(h, "hex");
const ED25519_SPKI_PREFIX = "302a300506032b6570032100";
const ed25519Spki = (point: string) => hex(ED25519_SPKI_PREFIX + point);
/** SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { SEQUENCE { INTEGER n, INTEGER e } } }, n and e as their INTEGER contents. */
const rsaSpki = (nContent: string, eContent: string) =>
  sequence(sequence(oid("1.2.840.113549.1.1.1"), nullValue()), bitString(sequence(tlv(0x02, hex(nContent)), tlv(0x02, hex(eContent)))));
/** A 3072-bit odd modulus (2^3072 - 3) and an even one (2^3072 - 2): the exponent or the parity is what each case is about. */
const N3072_ODD = "00" + "ff".repeat(383) + "fd";
const N3072_EVEN = "00" + "ff".repeat(383) + "fe";
const N4096_ODD = "00" + "ff".repeat(511) + "fd";

/** A stub CSR for `spki` whose signature field holds `sig` (signed or not, as the case needs). */
function csrWith(spki: Buffer, algOid: string, sig: Buffer, o: { nullParams?: boolean } = {}): Buffer {
  const cri = sequence(integer(0), sequence(), spki, tlv(0xa0, Buffer.alloc(0)));
  return sequence(cri, o.nullParams ? sequence(oid(algOid), nullValue()) : sequence(oid(algOid)), bitString(sig));
}

/** Denied as UnsupportedKeyType whether the proof is checked or not, and the same key in a stub CSR too. */
function deniedOnEveryPath(spki: Buffer, proof: Buffer, csrAlg: { oid: string; nullParams?: boolean }, message: RegExp): void {
  const pkix = { podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(proof) };
  const csr = csrSpec(csrWith(spki, csrAlg.oid, proof, csrAlg));
  for (const spec of [pkix, csr]) {
    denied(() => readRequestKey(spec, KEY_TYPES), "UnsupportedKeyType", message);
    denied(() => readRequestKey(spec, KEY_TYPES, { verify: false }), "UnsupportedKeyType", message);
  }
}

const ED25519_CSR = { oid: "1.3.101.112" };
const RSA_CSR = { oid: "1.2.840.113549.1.1.11", nullParams: true };
const P256_CSR = { oid: "1.2.840.10045.4.3.2" };

describe("readRequestKey: Ed25519 keys of small order (anyone can sign) and non-canonical encodings", () => {
  // Every encoding of the 8 points of order dividing 8, with a proof over POD_UID made without any
  // private key (R a small-order point, possibly plus [S]B; found by trying a few), which OpenSSL
  // accepts.
  const SMALL_ORDER = [
    { case: "the identity (order 1)", key: "0100000000000000000000000000000000000000000000000000000000000000", proof: "01" + "00".repeat(63) },
    { case: "the identity with the sign bit set", key: "0100000000000000000000000000000000000000000000000000000000000080", proof: "01" + "00".repeat(63) },
    { case: "(0, -1), order 2", key: "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", proof: "01" + "00".repeat(63) },
    { case: "(0, -1) with the sign bit set", key: "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", proof: "01" + "00".repeat(63) },
    { case: "y = 0, x positive (order 4)", key: "0000000000000000000000000000000000000000000000000000000000000000", proof: "95999999999999999999999999999999999999999999999999999999999999990100000000000000000000000000000000000000000000000000000000000000" },
    { case: "y = 0, x negative (order 4)", key: "0000000000000000000000000000000000000000000000000000000000000080", proof: "00".repeat(64) },
    { case: "order 8 (26e8…05)", key: "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", proof: "00".repeat(64) },
    { case: "order 8 (26e8…85)", key: "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", proof: "00".repeat(31) + "80" + "00".repeat(32) },
    { case: "order 8 (c717…7a)", key: "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", proof: "01" + "00".repeat(63) },
    { case: "order 8 (c717…fa)", key: "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", proof: "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85" + "00".repeat(32) },
  ];

  it.each(SMALL_ORDER)("denies $case, whose forged proof OpenSSL accepts", ({ key, proof }) => {
    const spki = ed25519Spki(key);
    // The danger is real: node:crypto (OpenSSL) verifies a proof made without a private key.
    expect(verify(null, Buffer.from(POD_UID), createPublicKey({ key: spki, format: "der", type: "spki" }), hex(proof))).toBe(true);
    deniedOnEveryPath(spki, hex(proof), ED25519_CSR, /is a point of small order: anyone can make signatures that verify with it/);
  });

  it("denies a stub CSR for the identity key signed without a private key (R = identity, S = 0 verifies for any content)", () => {
    const spki = ed25519Spki("01" + "00".repeat(31));
    const forged = hex("01" + "00".repeat(63));
    const csr = csrWith(spki, ED25519_CSR.oid, forged);
    const cri = sequence(integer(0), sequence(), spki, tlv(0xa0, Buffer.alloc(0)));
    expect(verify(null, cri, createPublicKey({ key: spki, format: "der", type: "spki" }), forged)).toBe(true);
    denied(() => readRequestKey(csrSpec(csr), KEY_TYPES), "UnsupportedKeyType", /small order/);
  });

  it("the table above is every encoding of the 8 points of order dividing 8", () => {
    const points = SMALL_ORDER.map((c) => ed25519Decode(hex(c.key)));
    for (const [i, pt] of points.entries()) {
      expect(pt, SMALL_ORDER[i]!.case).toBeDefined();
      expect(ed25519IsIdentity(ed25519Times8(pt!)), SMALL_ORDER[i]!.case).toBe(true);
    }
    // 8 distinct points: the whole torsion subgroup (it has exactly 8), each in its canonical
    // encoding, plus the two x = 0 points again with the sign bit set.
    const distinct = new Set(points.map((pt) => `${pt![0]},${pt![1]}`));
    expect(distinct.size).toBe(8);
    expect(SMALL_ORDER.filter((c) => ed25519Decode(hex(c.key))![0] === 0n && (hex(c.key)[31]! & 0x80) !== 0)).toHaveLength(2);
  });

  it.each([
    { case: "y = p + 1, the identity again", key: "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", proof: "01" + "00".repeat(63), forged: true },
    { case: "y = p with the sign bit set (an order-4 point)", key: "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", proof: "00".repeat(31) + "80" + "00".repeat(32), forged: true },
    { case: "y = 2^255 - 1, the largest encoding", key: "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", proof: "00".repeat(64), forged: false },
  ])("denies a non-canonical encoding (y ≥ p = 2^255 - 19): $case", ({ key, proof, forged }) => {
    const spki = ed25519Spki(key);
    // OpenSSL imports these (reducing y mod p); where the point is small-order a forgery verifies.
    const imported = createPublicKey({ key: spki, format: "der", type: "spki" });
    expect(verify(null, Buffer.from(POD_UID), imported, hex(proof))).toBe(forged);
    deniedOnEveryPath(spki, hex(proof), ED25519_CSR, /not canonically encoded: its y coordinate is not below 2\^255-19/);
  });

  it("reads y = p - 3, an ordinary point just below p (the y < p check is exact)", () => {
    // No private key is known for it, so only the key is read.
    const ordinary = ed25519Spki("eaffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    expect(ed25519Decode(ordinary.subarray(12))).toBeDefined();
    expect(ed25519IsIdentity(ed25519Times8(ed25519Decode(ordinary.subarray(12))!))).toBe(false);
    const r = readKey({ podUID: POD_UID, pkixPublicKey: b64(ordinary), proofOfPossession: b64(Buffer.alloc(64)) }, KEY_TYPES, { verify: false });
    expect(r.keyType).toBe("ED25519");
  });
});

describe("readRequestKey: RSA keys anyone can sign with or Go's crypto/rsa refuses", () => {
  it("denies public exponent 1, for which the padded message itself is a signature OpenSSL accepts (3072 and 4096)", () => {
    for (const [n, bits] of [[N3072_ODD, 3072], [N4096_ODD, 4096]] as const) {
      const spki = rsaSpki(n, "01");
      const forged = pssEncoded(Buffer.from(POD_UID), bits);
      const key = createPublicKey({ key: spki, format: "der", type: "spki" });
      const pss = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO };
      expect(verify("sha256", Buffer.from(POD_UID), pss, forged)).toBe(true);
      deniedOnEveryPath(spki, forged, RSA_CSR, new RegExp(`RSA${bits} public exponent is 1: a signature is then the padded message itself`));
    }
  });

  it.each([
    { case: "e = 2", e: "02", message: /public exponent 2 is even/ },
    { case: "e = 65536", e: "010000", message: /public exponent 65536 is even/ },
    { case: "e = 2^31 + 1", e: "0080000001", message: /public exponent 2147483649 is above 2\^31-1/ },
    { case: "e = 2^32 + 1", e: "0100000001", message: /public exponent 4294967297 is above 2\^31-1/ },
    { case: "e = 2^72 + 1", e: "01000000000000000001", message: /public exponent of 10 bytes is above 2\^31-1/ },
  ])("denies an exponent Go's crypto/rsa refuses: $case", ({ e, message }) => {
    // node:crypto imports each of these keys; only our check refuses them.
    expect(createPublicKey({ key: rsaSpki(N3072_ODD, e), format: "der", type: "spki" }).asymmetricKeyType).toBe("rsa");
    deniedOnEveryPath(rsaSpki(N3072_ODD, e), Buffer.alloc(384, 1), RSA_CSR, message);
  });

  it("denies an even modulus (Go's crypto/rsa refuses it; OpenSSL only fails later, when verifying)", () => {
    const spki = rsaSpki(N3072_EVEN, "010001");
    expect(createPublicKey({ key: spki, format: "der", type: "spki" }).asymmetricKeyDetails?.modulusLength).toBe(3072);
    deniedOnEveryPath(spki, Buffer.alloc(384, 1), RSA_CSR, /RSA3072 modulus is even/);
  });

  it.each([
    { case: "e = 3", e: "03" },
    { case: "e = 65537", e: "010001" },
    { case: "e = 2^31 - 1", e: "7fffffff" },
  ])("reads an odd modulus with an exponent Go accepts: $case", ({ e }) => {
    const spki = rsaSpki(N3072_ODD, e);
    const r = readKey({ podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(Buffer.alloc(384, 1)) }, KEY_TYPES, { verify: false });
    expect(r.keyType).toBe("RSA3072");
    expect(r.spkiDer.equals(spki)).toBe(true);
  });
});

describe("readRequestKey: ECDSA points off the curve, out of range or at infinity (what OpenSSL refuses is pinned)", () => {
  const P256 = "3059301306072a8648ce3d020106082a8648ce3d03010703420004";
  const P384 = "3076301006072a8648ce3d020106052b8104002203620004";
  const P521 = "30819b301006072a8648ce3d020106052b810400230381860004";
  // x = 0 is on all three curves; y = sqrt(b).
  const P256_Y = "66485c780e2f83d72433bd5d84a06bb6541c2af31dae871728bf856a174f93f4";
  const P384_Y = "c306610fb0ae5a159cf45c06069f22a6c5eb3641c602d42dea2c4b4f75550793406d80d2b91ad54f9048bd487af1ade1";
  const P521_Y = "012df13601594a883ef2d935e44bb90bf4d6619b74e52af7552f97769011c0719eb439cfab2a88d40fe59a2bed1f43557169a2d0a2ccd280c607b92bbf51ffe0b078";

  it.each([
    { case: "P-256 (0, sqrt(b))", spki: P256 + "00".repeat(32) + P256_Y, keyType: "ECDSAP256" },
    { case: "P-384 (0, sqrt(b))", spki: P384 + "00".repeat(48) + P384_Y, keyType: "ECDSAP384" },
    { case: "P-521 (0, sqrt(b))", spki: P521 + "00".repeat(66) + P521_Y, keyType: "ECDSAP521" },
  ])("reads a point on the curve (the control for the cases below): $case", ({ spki, keyType }) => {
    const r = readKey({ podUID: POD_UID, pkixPublicKey: b64(hex(spki)), proofOfPossession: "AAAA" }, KEY_TYPES, { verify: false });
    expect(r.keyType).toBe(keyType);
  });

  it.each([
    { case: "P-256 off the curve (y + 1)", spki: P256 + "00".repeat(32) + P256_Y.slice(0, -2) + "f5", message: /could not be parsed/ },
    { case: "P-256 (0, 0)", spki: P256 + "00".repeat(64), message: /could not be parsed/ },
    { case: "P-256 x = p (≡ 0, on the curve mod p)", spki: P256 + "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff" + P256_Y, message: /could not be parsed/ },
    { case: "P-384 x = p (≡ 0)", spki: P384 + "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff" + P384_Y, message: /could not be parsed/ },
    { case: "P-521 off the curve (y + 1)", spki: P521 + "00".repeat(66) + P521_Y.slice(0, -2) + "79", message: /could not be parsed/ },
    { case: "P-521 y + p (≡ y, on the curve mod p)", spki: P521 + "00".repeat(66) + "032df13601594a883ef2d935e44bb90bf4d6619b74e52af7552f97769011c0719eb439cfab2a88d40fe59a2bed1f43557169a2d0a2ccd280c607b92bbf51ffe0b077", message: /could not be parsed/ },
  ])("denies $case, which OpenSSL refuses to import", ({ spki, message }) => {
    expect(() => createPublicKey({ key: hex(spki), format: "der", type: "spki" })).toThrow();
    deniedOnEveryPath(hex(spki), Buffer.alloc(72, 1), P256_CSR, message);
  });

  it("denies the point at infinity (a single 00 octet), which OpenSSL imports and verifies forgeries with", () => {
    const spki = hex("3019301306072a8648ce3d020106082a8648ce3d03010703020000");
    // createPublicKey accepts it (and node aborts the process when asked for its
    // asymmetricKeyDetails), so the strict read must refuse it before any import.
    const key = createPublicKey({ key: spki, format: "der", type: "spki" });
    expect(key.asymmetricKeyType).toBe("ec");
    // With Q at infinity, verification computes u1·G only: for any k, (r, s) = (x(kG), z/k) verifies.
    const n = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    const kG = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "jwk" });
    const k = BigInt(`0x${Buffer.from(kG.d!, "base64url").toString("hex")}`);
    const r = BigInt(`0x${Buffer.from(kG.x!, "base64url").toString("hex")}`) % n;
    const z = BigInt(`0x${createHash("sha256").update(POD_UID).digest("hex")}`);
    let kInverse = 1n;
    for (let b = k, e = n - 2n; e > 0n; e >>= 1n, b = (b * b) % n) if (e & 1n) kInverse = (kInverse * b) % n;
    const forged = sequence(integer(r), integer((z * kInverse) % n));
    expect(verify("sha256", Buffer.from(POD_UID), { key, dsaEncoding: "der" }, forged)).toBe(true);
    deniedOnEveryPath(spki, forged, P256_CSR, /the EC public key is the point at infinity/);
  });
});

// ---------------------------------------------------------------------------------------------
// RSA SubjectPublicKeyInfos are recognised by their bytes (request-key.ts canonicalRsaKey), without
// the strict DER read: every SPKI below differs from a real key's canonical one in one thing, is
// refused by the strict read or by OpenSSL's re-encoding, and so must not be read by the bytes.
// ---------------------------------------------------------------------------------------------

describe("readRequestKey: RSA SPKIs read by their bytes are only the canonical ones", () => {
  const RSA_TYPES = ["RSA3072", "RSA4096"] as const;
  const rsaAlgorithm = () => sequence(oid("1.2.840.113549.1.1.1"), nullValue());
  /** The INTEGER contents of a real key's n (with its 00) and e. */
  function integers(t: (typeof RSA_TYPES)[number]): { n: Buffer; e: Buffer } {
    const jwk = keys[t].publicKey.export({ format: "jwk" });
    return { n: Buffer.concat([Buffer.from([0]), Buffer.from(jwk.n!, "base64url")]), e: Buffer.from(jwk.e!, "base64url") };
  }
  const rsaPublicKey = (n: Buffer, e: Buffer) => sequence(tlv(0x02, n), tlv(0x02, e));
  const spkiWith = (rsaPub: Buffer, alg = rsaAlgorithm()) => sequence(alg, bitString(rsaPub));
  /** A DER header with a long-form length of `octets` length octets, minimal or not. */
  const longHeader = (tag: number, length: number, octets: number) => {
    const h = Buffer.alloc(2 + octets);
    h[0] = tag;
    h[1] = 0x80 | octets;
    h.writeUIntBE(length, 2, octets);
    return h;
  };

  /** Refused whether or not the proof is checked, the key read first. */
  function refused(t: KeyType, spki: Buffer): void {
    const spec = { podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(proofOfPossession(keys[t].privateKey, POD_UID)) };
    for (const o of [{}, { verify: false }]) {
      const r = readRequestKey(spec, KEY_TYPES, o);
      if (!isRequestKeyProblem(r)) throw new Error(`read a ${r.keyType} key from ${spki.toString("hex").slice(0, 80)}…`);
      expect(["unusableKey", "unsupportedType"]).toContain(r.problem);
    }
  }

  it.each(RSA_TYPES)("the helpers rebuild %s's canonical SPKI, which is read", (t) => {
    const { n, e } = integers(t);
    expect(spkiWith(rsaPublicKey(n, e)).equals(keys[t].spkiDer)).toBe(true);
    expect(readKey(pkixSpec(keys[t]), KEY_TYPES).keyType).toBe(t);
  });

  const CASES: { case: string; spki: (n: Buffer, e: Buffer) => Buffer }[] = [
    { case: "a redundant 00 before the modulus", spki: (n, e) => spkiWith(rsaPublicKey(Buffer.concat([Buffer.from([0]), n]), e)) },
    { case: "the modulus without its 00 (negative)", spki: (n, e) => spkiWith(rsaPublicKey(n.subarray(1), e)) },
    { case: "a redundant 00 before the exponent", spki: (n, e) => spkiWith(rsaPublicKey(n, Buffer.concat([Buffer.from([0]), e]))) },
    { case: "a negative exponent", spki: (n, e) => spkiWith(rsaPublicKey(n, Buffer.concat([Buffer.from([e[0]! | 0x80]), e.subarray(1)]))) },
    { case: "exponent 0", spki: (n) => spkiWith(rsaPublicKey(n, Buffer.from([0]))) },
    { case: "an empty exponent", spki: (n) => spkiWith(rsaPublicKey(n, Buffer.alloc(0))) },
    { case: "the exponent as an OCTET STRING", spki: (n, e) => spkiWith(sequence(tlv(0x02, n), tlv(0x04, e))) },
    { case: "no exponent", spki: (n) => spkiWith(sequence(tlv(0x02, n))) },
    { case: "a third INTEGER in the RSAPublicKey", spki: (n, e) => spkiWith(sequence(tlv(0x02, n), tlv(0x02, e), integer(1))) },
    { case: "a SET for the RSAPublicKey", spki: (n, e) => spkiWith(tlv(0x31, Buffer.concat([tlv(0x02, n), tlv(0x02, e)]))) },
    { case: "a byte after the RSAPublicKey, inside the BIT STRING", spki: (n, e) => spkiWith(Buffer.concat([rsaPublicKey(n, e), Buffer.from([0])])) },
    { case: "a byte after the SubjectPublicKeyInfo", spki: (n, e) => Buffer.concat([spkiWith(rsaPublicKey(n, e)), Buffer.from([0])]) },
    { case: "an element after the BIT STRING", spki: (n, e) => sequence(rsaAlgorithm(), bitString(rsaPublicKey(n, e)), nullValue()) },
    { case: "a BIT STRING with an unused bit", spki: (n, e) => sequence(rsaAlgorithm(), bitString(rsaPublicKey(n, e), 1)) },
    { case: "an OCTET STRING for the BIT STRING", spki: (n, e) => sequence(rsaAlgorithm(), tlv(0x04, Buffer.concat([Buffer.from([0]), rsaPublicKey(n, e)]))) },
    { case: "no NULL parameters", spki: (n, e) => spkiWith(rsaPublicKey(n, e), sequence(oid("1.2.840.113549.1.1.1"))) },
    { case: "NULL parameters with content", spki: (n, e) => spkiWith(rsaPublicKey(n, e), sequence(oid("1.2.840.113549.1.1.1"), tlv(0x05, Buffer.from([0])))) },
    { case: "an empty OCTET STRING for the NULL parameters", spki: (n, e) => spkiWith(rsaPublicKey(n, e), sequence(oid("1.2.840.113549.1.1.1"), tlv(0x04, Buffer.alloc(0)))) },
    { case: "the rsassaPss OID", spki: (n, e) => spkiWith(rsaPublicKey(n, e), sequence(oid("1.2.840.113549.1.1.10"), nullValue())) },
    { case: "the exponent's length in long form (81 xx)", spki: (n, e) => spkiWith(sequence(tlv(0x02, n), Buffer.concat([longHeader(0x02, e.length, 1), e]))) },
    {
      case: "the RSAPublicKey's length in three octets (83 00 hi lo)",
      spki: (n, e) => {
        const body = Buffer.concat([tlv(0x02, n), tlv(0x02, e)]);
        return spkiWith(Buffer.concat([longHeader(0x30, body.length, 3), body]));
      },
    },
    {
      case: "the modulus' length in three octets",
      spki: (n, e) => spkiWith(sequence(Buffer.concat([longHeader(0x02, n.length, 3), n]), tlv(0x02, e))),
    },
    {
      case: "an indefinite length for the SubjectPublicKeyInfo",
      spki: (n, e) => Buffer.concat([Buffer.from([0x30, 0x80]), rsaAlgorithm(), bitString(rsaPublicKey(n, e)), Buffer.from([0, 0])]),
    },
  ];

  for (const t of RSA_TYPES) {
    it.each(CASES)(`refuses ${t} with $case`, ({ spki }) => {
      const { n, e } = integers(t);
      const altered = spki(n, e);
      expect(altered.equals(keys[t].spkiDer)).toBe(false);
      refused(t, altered);
    });
  }

  it.each(RSA_TYPES)("refuses %s with any header length one more or one less", (t) => {
    const spki = keys[t].spkiDer;
    // The low octet of the SPKI's, the BIT STRING's, the RSAPublicKey's, the modulus' and the exponent's length.
    const { n } = integers(t);
    for (const at of [3, 22, 27, 31, 32 + n.length + 1]) {
      for (const delta of [1, -1]) {
        const altered = Buffer.from(spki);
        altered[at] = (altered[at]! + delta) & 0xff;
        refused(t, altered);
      }
    }
  });

  it.each(RSA_TYPES)("refuses %s with any one header octet changed", (t) => {
    const spki = keys[t].spkiDer;
    const { n } = integers(t);
    const exponentHeader = 32 + n.length;
    // Every octet up to the modulus' first significant one, and the exponent's tag and length.
    const offsets = [...Array.from({ length: 34 }, (_, i) => i), exponentHeader, exponentHeader + 1];
    expect(spki[exponentHeader]).toBe(0x02);
    for (const at of offsets) {
      for (const flip of [0x01, 0x02, 0x80, 0xff]) {
        if (at === 33 && flip !== 0x80) continue; // the modulus' own bits: another key, still canonical
        const altered = Buffer.from(spki);
        altered[at]! ^= flip;
        refused(t, altered);
      }
    }
  });

  it("refuses moduli next to 3072 and 4096 bits (real keys of 3070 and 3074 bits), naming their size", () => {
    // OpenSSL makes odd sizes one bit short, so the real keys are the nearest even sizes.
    for (const bits of [3070, 3074]) {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
      expect(publicKey.asymmetricKeyDetails?.modulusLength).toBe(bits);
      const spki = publicKey.export({ type: "spki", format: "der" });
      denied(
        () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(proofOfPossession(privateKey, POD_UID)) }, KEY_TYPES),
        "UnsupportedKeyType",
        new RegExp(`key type RSA${bits} is not supported`),
      );
    }
  }, 60_000);

  it.each([
    // 384 octets with the top bit clear; 385 octets starting 01 (the length of a 3072-bit modulus' INTEGER).
    { bits: 3071, n: "7f" + "ff".repeat(382) + "fd" },
    { bits: 3073, n: "01" + "ff".repeat(383) + "fd" },
    { bits: 4095, n: "7f" + "ff".repeat(510) + "fd" },
    { bits: 4097, n: "01" + "ff".repeat(511) + "fd" },
  ])("refuses a $bits-bit modulus, naming its size", ({ bits, n }) => {
    const spki = rsaSpki(n, "010001");
    expect(createPublicKey({ key: spki, format: "der", type: "spki" }).asymmetricKeyDetails?.modulusLength).toBe(bits);
    denied(
      () => readRequestKey({ podUID: POD_UID, pkixPublicKey: b64(spki), proofOfPossession: b64(Buffer.alloc(384, 1)) }, KEY_TYPES, { verify: false }),
      "UnsupportedKeyType",
      new RegExp(`key type RSA${bits} is not supported`),
    );
  });

  it("judges long exponents (long-form lengths) as the general path does", () => {
    const long = (octets: number, last: string) => "01" + "00".repeat(octets - 2) + last;
    deniedOnEveryPath(rsaSpki(N3072_ODD, long(200, "01")), Buffer.alloc(384, 1), RSA_CSR, /RSA3072 public exponent of 200 bytes is above 2\^31-1/);
    deniedOnEveryPath(rsaSpki(N4096_ODD, long(300, "02")), Buffer.alloc(512, 1), RSA_CSR, /RSA4096 public exponent of 300 bytes is even/);
  });

  it("shows exponents beyond 2^53 exactly", () => {
    const above = 2n ** 53n + 1n;
    deniedOnEveryPath(rsaSpki(N3072_ODD, above.toString(16).padStart(14, "0")), Buffer.alloc(384, 1), RSA_CSR, new RegExp(`public exponent ${above} is above 2\\^31-1`));
    const even = 2n ** 64n - 2n;
    deniedOnEveryPath(rsaSpki(N3072_ODD, `00${even.toString(16)}`), Buffer.alloc(384, 1), RSA_CSR, new RegExp(`public exponent ${even} is even`));
  });
});

// ---------------------------------------------------------------------------------------------
// Test-only helper: Edwards25519 with BigInt (slow, exact), to check the table of small-order points.
// ---------------------------------------------------------------------------------------------

const ED_P = 2n ** 255n - 19n;
const edMod = (a: bigint) => ((a % ED_P) + ED_P) % ED_P;
function edPow(b: bigint, e: bigint): bigint {
  let r = 1n;
  b = edMod(b);
  for (; e > 0n; e >>= 1n, b = (b * b) % ED_P) if (e & 1n) r = (r * b) % ED_P;
  return r;
}
const ED_D = edMod(-121665n * edPow(121666n, ED_P - 2n));

/** RFC 8032 5.1.3 decoding, except that y ≥ p is reduced and x = 0 with the sign bit is kept (as OpenSSL does). */
function ed25519Decode(enc: Uint8Array): [bigint, bigint] | undefined {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? enc[i]! & 0x7f : enc[i]!);
  y = edMod(y);
  const u = edMod(y * y - 1n);
  const v = edMod(ED_D * y * y + 1n);
  const xx = (u * edPow(v, ED_P - 2n)) % ED_P;
  let x = edPow(xx, (ED_P + 3n) / 8n);
  if (edMod(x * x - xx) !== 0n) x = (x * edPow(2n, (ED_P - 1n) / 4n)) % ED_P;
  if (edMod(x * x - xx) !== 0n) return undefined;
  if ((x & 1n) !== BigInt(enc[31]! >> 7)) x = edMod(-x);
  return [x, y];
}

/** [8]P, by three doublings in projective coordinates (X : Y : Z). */
function ed25519Times8([x, y]: [bigint, bigint]): [bigint, bigint, bigint] {
  let [X, Y, Z] = [x, y, 1n];
  for (let i = 0; i < 3; i++) {
    const B = edMod((X + Y) ** 2n);
    const C = edMod(X * X);
    const D = edMod(Y * Y);
    const E = edMod(-C);
    const F = edMod(E + D);
    const J = edMod(F - 2n * Z * Z);
    [X, Y, Z] = [edMod((B - C - D) * J), edMod(F * (E - D)), edMod(F * J)];
  }
  return [X, Y, Z];
}

const ed25519IsIdentity = ([X, Y, Z]: [bigint, bigint, bigint]) => X === 0n && Y === Z;
