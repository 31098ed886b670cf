import "reflect-metadata";
// Go's x509.CreateCertificateRequest picks the same AlgorithmIdentifier per key as its CA signing does.
import { SIG_ALG_HEX } from "../../../helpers/x509.js";
import { tempDir } from "../../../helpers/temp.js";
import * as x509 from "@peculiar/x509";
import { execFileSync, spawnSync } from "node:child_process";
import { constants, createPublicKey, verify } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { KEY_TYPES, type KeyType } from "../../../../shared/pcr/model.js";
import { readChildren, readSingle } from "../../../../shared/x509/der.js";
import {
  generateRequestKeyPair,
  proofOfPossession,
  stubCsr,
  type RequestKeyPair,
} from "../../../../local-cluster/kubelet/keys.js";
import { classifyPublicKey } from "../../../../shared/x509/request-key.js";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;
const POD_UID = "0b7e4c1d-1111-2222-3333-444455556666";
const keys = {} as Record<KeyType, RequestKeyPair>;

beforeAll(() => {
  for (const t of KEY_TYPES) keys[t] = generateRequestKeyPair(t);
}, 120_000);


describe("generateRequestKeyPair", () => {
  it.each(KEY_TYPES)("makes a %s key pair with a matching DER SPKI", (t) => {
    const k = keys[t];
    expect(classifyPublicKey(k.publicKey)).toBe(t);
    expect(k.spkiDer.equals(k.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
    expect(createPublicKey(k.privateKey).export({ type: "spki", format: "der" }).equals(k.spkiDer)).toBe(true);
  });
});

describe("proofOfPossession", () => {
  it.each(KEY_TYPES)("signs the pod UID the way kubelet does (%s)", (t) => {
    const k = keys[t];
    const data = Buffer.from(POD_UID);
    const proof = proofOfPossession(k.privateKey, POD_UID);
    if (t.startsWith("ECDSA")) {
      expect(proof[0]).toBe(0x30); // DER, not IEEE P1363
      expect(verify("sha256", data, { key: k.publicKey, dsaEncoding: "der" }, proof)).toBe(true);
    } else if (t.startsWith("RSA")) {
      const maxSalt = (t === "RSA3072" ? 384 : 512) - 32 - 2;
      const opts = (saltLength: number) => ({ key: k.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
      expect(verify("sha256", data, opts(maxSalt), proof)).toBe(true);
      expect(verify("sha256", data, opts(32), proof)).toBe(false);
    } else {
      expect(verify(null, data, k.publicKey, proof)).toBe(true);
    }
    expect(verify(t === "ED25519" ? null : "sha256", Buffer.from("other"), k.publicKey, proof)).toBe(false);
  });
});

describe("stubCsr", () => {
  it.each(KEY_TYPES)("builds an empty, self-signed PKCS#10 request with Go's algorithm (%s)", async (t) => {
    const k = keys[t];
    const der = stubCsr(k.privateKey, k.spkiDer);
    // structure: SEQUENCE { cri SEQUENCE { INTEGER 0, SEQUENCE {}, spki, [0] {} }, alg, BIT STRING }
    const top = readSingle(der, 0x30);
    const [cri, alg] = readChildren(der, top);
    const criParts = readChildren(der, cri!);
    expect(criParts.map((p) => p.tag)).toEqual([0x02, 0x30, 0x30, 0xa0]);
    expect(der.subarray(criParts[0]!.start, criParts[0]!.end).toString("hex")).toBe("020100");
    expect(der.subarray(criParts[1]!.start, criParts[1]!.end).toString("hex")).toBe("3000");
    expect(der.subarray(criParts[2]!.start, criParts[2]!.end).equals(k.spkiDer)).toBe(true);
    expect(der.subarray(criParts[3]!.start, criParts[3]!.end).toString("hex")).toBe("a000");
    expect(der.subarray(alg!.start, alg!.end).toString("hex")).toBe(SIG_ALG_HEX[t]);

    const csr = new x509.Pkcs10CertificateRequest(der);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe("");
    expect(csr.attributes).toHaveLength(0);
    expect(Buffer.from(csr.publicKey.rawData).equals(k.spkiDer)).toBe(true);
  });

  it("accepts a KeyObject public key and refuses one that does not match", () => {
    const k = keys.ECDSAP256;
    const cri = (der: Buffer) => {
      const [c] = readChildren(der, readSingle(der, 0x30));
      return der.subarray(c!.start, c!.end);
    };
    expect(cri(stubCsr(k.privateKey, k.publicKey)).equals(cri(stubCsr(k.privateKey, k.spkiDer)))).toBe(true);
    expect(() => stubCsr(k.privateKey, keys.ECDSAP384.spkiDer)).toThrow(/does not match/);
  });

  it.skipIf(!hasOpenssl).each(KEY_TYPES)("openssl verifies the %s CSR signature", (t) => {
    const dir = tempDir("podcert-csr-");
    const file = join(dir, "req.der");
    writeFileSync(file, stubCsr(keys[t].privateKey, keys[t].spkiDer));
    const out = execFileSync("openssl", ["req", "-inform", "DER", "-in", file, "-noout", "-verify", "-text"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out).toMatch(/Version: 1 \(0x0\)/);
    expect(out).toMatch(/Subject: *\n/);
    const spawned = spawnSync("openssl", ["req", "-inform", "DER", "-in", file, "-noout", "-verify"], { encoding: "utf8" });
    expect(spawned.status).toBe(0);
    expect(spawned.stdout + spawned.stderr).toMatch(/verify OK/i);
  });
});
