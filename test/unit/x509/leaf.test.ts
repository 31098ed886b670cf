import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { spawnSync } from "node:child_process";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { CA_KEY_ALGORITHMS, createCa, type CaKeyAlgorithm } from "../../../cli/ca-create.js";
import { KEY_TYPES, type KeyType } from "../../../shared/pcr/model.js";
import { prepareCaSigner, type CaSigner } from "../../../shared/x509/ca-signer.js";
import {
  podIdentityExtensionValue,
  readChildren,
  readSingle,
  sequence,
  utf8String,
} from "../../../shared/x509/der.js";
import { issueLeaf, type LeafTemplate } from "../../../shared/x509/leaf.js";
import { generateRequestKeyPair, type RequestKeyPair } from "../../../local-cluster/kubelet/keys.js";
import { hasOpenssl, opensslVerify, SIG_ALG_HEX, tbsParts, tmp } from "../../helpers/x509.js";

interface TestCa {
  alg: CaKeyAlgorithm;
  certificatePem: string;
  privateKeyPem: string;
  signer: CaSigner;
}

const cas = {} as Record<CaKeyAlgorithm, TestCa>;
const reqKeys = {} as Record<KeyType, RequestKeyPair>;
const NOW = new Date();

beforeAll(async () => {
  for (const alg of CA_KEY_ALGORITHMS) {
    const ca = await createCa({ signerName: `example.com/${alg.toLowerCase()}`, keyAlgorithm: alg, validityDays: 30, now: NOW });
    cas[alg] = {
      alg,
      certificatePem: ca.certificate,
      privateKeyPem: ca.privateKey,
      signer: prepareCaSigner(ca.certificate, createPrivateKey(ca.privateKey)),
    };
  }
  for (const t of KEY_TYPES) reqKeys[t] = generateRequestKeyPair(t);
}, 180_000);

function template(t: KeyType, over: Partial<LeafTemplate> = {}): LeafTemplate {
  return {
    spkiDer: reqKeys[t].spkiDer,
    keyType: t,
    uris: ["spiffe://cluster.local/ns/default/sa/web"],
    dnsNames: ["web.default.svc", "web.default.svc.cluster.local"],
    notBefore: new Date(NOW.getTime() - 30_000 + 123),
    notAfter: new Date(NOW.getTime() + 3_600_000 + 789),
    ...over,
  };
}

const trunc = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);

/** The subjectPublicKey BIT STRING content (without the unused-bits octet). */
function subjectPublicKeyBits(spki: Buffer): Buffer {
  const [, bits] = readChildren(spki, readSingle(spki, 0x30));
  expect(spki[bits!.valueStart]).toBe(0);
  return spki.subarray(bits!.valueStart + 1, bits!.end);
}

describe.each(CA_KEY_ALGORITHMS)("issueLeaf with a %s CA", (caAlg) => {
  it.each(KEY_TYPES)("issues a valid leaf for a %s request key", (t) => {
    const ca = cas[caAlg];
    const tpl = template(t);
    const leaf = issueLeaf(ca.signer, tpl);

    // node:crypto (OpenSSL) view
    const cert = new X509Certificate(leaf.der);
    const caCert = new X509Certificate(ca.certificatePem);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.subject ?? "").toBe(""); // node reports an empty subject as undefined
    expect(cert.issuer).toBe(caCert.subject);
    expect(cert.ca).toBe(false);
    expect(cert.subjectAltName).toBe(
      "URI:spiffe://cluster.local/ns/default/sa/web, DNS:web.default.svc, DNS:web.default.svc.cluster.local",
    );
    expect(cert.publicKey.export({ type: "spki", format: "der" }).equals(reqKeys[t].spkiDer)).toBe(true);
    expect(cert.validFromDate.getTime()).toBe(trunc(tpl.notBefore).getTime());
    expect(cert.validToDate.getTime()).toBe(trunc(tpl.notAfter).getTime());
    expect(cert.serialNumber.toLowerCase()).toBe(leaf.serialHex);
    expect(cert.fingerprint256.replace(/:/g, "").toLowerCase()).toBe(leaf.fingerprintSha256);
    expect(leaf.pem).toBe(cert.toString());
    expect(leaf.chainPem).toBe(leaf.pem); // a root CA: the chain is the leaf alone

    // exact bytes: v3, issuer = CA subject bytes, empty subject, SPKI copied, signature algorithm
    const parts = tbsParts(leaf.der);
    expect(parts[0]!.toString("hex")).toBe("a003020102");
    const caParts = tbsParts(ca.signer.certDer);
    expect(parts[3]!.equals(caParts[5]!)).toBe(true);
    expect(parts[5]!.toString("hex")).toBe("3000");
    expect(parts[6]!.equals(reqKeys[t].spkiDer)).toBe(true);
    expect(parts[2]!.toString("hex")).toBe(SIG_ALG_HEX[caAlg]);

    // @peculiar/x509 view
    const p = new x509.X509Certificate(leaf.der);
    const san = p.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.critical).toBe(true);
    expect(san.names.items.map((n) => `${n.type}:${n.value}`)).toEqual([
      "url:spiffe://cluster.local/ns/default/sa/web",
      "dns:web.default.svc",
      "dns:web.default.svc.cluster.local",
    ]);
    const bc = p.getExtension(x509.BasicConstraintsExtension)!;
    expect(bc.critical).toBe(true);
    expect(bc.ca).toBe(false);
    const ku = p.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    const rsa = t === "RSA3072" || t === "RSA4096";
    expect(ku.usages).toBe(
      rsa ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature,
    );
    const eku = p.getExtension(x509.ExtendedKeyUsageExtension)!;
    expect(eku.critical).toBe(false);
    expect(eku.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const caP = new x509.X509Certificate(ca.certificatePem);
    const caSki = caP.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
    const aki = p.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    expect(aki.critical).toBe(false);
    expect(aki.keyId).toBe(caSki);
    expect(ca.signer.subjectKeyId.toString("hex")).toBe(caSki);
    const ski = p.getExtension(x509.SubjectKeyIdentifierExtension)!;
    expect(ski.critical).toBe(false);
    expect(ski.keyId).toBe(createHash("sha1").update(subjectPublicKeyBits(reqKeys[t].spkiDer)).digest("hex"));
    expect(p.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(p.serialNumber).not.toMatch(/^0{32}$/);
    expect(p.extensions.map((e) => e.type).sort()).toEqual(
      ["2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.35", "2.5.29.37"].sort(),
    );
  });

  it.skipIf(!hasOpenssl)("openssl verifies leaves for every request key type (strict, TLS client and server)", () => {
    const ca = cas[caAlg];
    for (const t of KEY_TYPES) {
      const leaf = issueLeaf(ca.signer, template(t, { notBefore: new Date(Date.now() - 60_000) }));
      for (const purpose of ["sslclient", "sslserver"]) {
        const r = opensslVerify(ca.signer.rootPem, leaf.pem, undefined, ["-purpose", purpose]);
        expect(r.ok, `${t} ${purpose}: ${r.out}`).toBe(true);
      }
      const f = tmp({ "leaf.pem": leaf.pem });
      const text = spawnSync("openssl", ["x509", "-noout", "-text", "-in", f["leaf.pem"]!], { encoding: "utf8" }).stdout;
      expect(text).toMatch(/Version: 3 \(0x2\)/);
      expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/web, DNS:web\.default\.svc/);
      expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
      expect(text).toMatch(
        t.startsWith("RSA")
          ? /X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/
          : /X509v3 Key Usage: critical\n\s+Digital Signature\n/,
      );
      expect(text).toMatch(/X509v3 Extended Key Usage: *\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
      expect(text).toMatch(/Subject: *\n/);
    }
  });
});

describe("issueLeaf details", () => {
  it("computes the subjectKeyIdentifier as SHA-1 of the subjectPublicKey bits", () => {
    const t = "ECDSAP256";
    const leaf = issueLeaf(cas.ECDSAP256.signer, template(t));
    const ski = new x509.X509Certificate(leaf.der).getExtension(x509.SubjectKeyIdentifierExtension)!;
    const spki = reqKeys[t].spkiDer;
    const point = spki.subarray(spki.length - 65); // uncompressed P-256 point: the BIT STRING content
    expect(point[0]).toBe(0x04);
    expect(ski.keyId).toBe(createHash("sha1").update(point).digest("hex"));
  });

  it("uses GeneralizedTime from 2050 and truncates milliseconds", () => {
    const notBefore = new Date("2049-12-31T23:59:59.999Z");
    const notAfter = new Date("2050-01-01T01:00:00.500Z");
    const leaf = issueLeaf(cas.ECDSAP256.signer, template("ED25519", { notBefore, notAfter }));
    const validity = tbsParts(leaf.der)[4]!;
    expect(validity.toString("hex")).toBe(
      "3020" + "170d" + Buffer.from("491231235959Z").toString("hex") + "180f" + Buffer.from("20500101010000Z").toString("hex"),
    );
    const cert = new X509Certificate(leaf.der);
    expect(cert.validFromDate.toISOString()).toBe("2049-12-31T23:59:59.000Z");
    expect(cert.validToDate.toISOString()).toBe("2050-01-01T01:00:00.000Z");
  });

  it("makes random, positive, 16-byte, unique serial numbers", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const leaf = issueLeaf(cas.ED25519.signer, template("ED25519"));
      const serialTlv = tbsParts(leaf.der)[1]!;
      expect(serialTlv[0]).toBe(0x02);
      expect(serialTlv[1]).toBe(16);
      expect(serialTlv[2]! & 0x80).toBe(0);
      expect(serialTlv[2]).not.toBe(0);
      expect(serialTlv.subarray(2).toString("hex")).toBe(leaf.serialHex);
      seen.add(leaf.serialHex);
    }
    expect(seen.size).toBe(600);
  });

  it("adds extra extensions with their criticality and exact value", () => {
    const value = podIdentityExtensionValue(["pod", "uid", "node", "nodeuid", "sauid"]);
    const leaf = issueLeaf(
      cas.ECDSAP384.signer,
      template("ECDSAP256", {
        extensions: [
          { oid: "1.3.6.1.4.1.32473.1.1", critical: false, valueDer: value },
          { oid: "1.3.6.1.4.1.32473.1.2", critical: true, valueDer: sequence(utf8String("x")) },
        ],
      }),
    );
    const p = new x509.X509Certificate(leaf.der);
    const e1 = p.getExtension("1.3.6.1.4.1.32473.1.1")!;
    expect(e1.critical).toBe(false);
    expect(Buffer.from(e1.value).equals(value)).toBe(true);
    expect(p.getExtension("1.3.6.1.4.1.32473.1.2")!.critical).toBe(true);
    expect(new X509Certificate(leaf.der).verify(cas.ECDSAP384.signer.publicKey)).toBe(true);
  });

  it("refuses extension OIDs Go cannot parse, duplicates and non-DER values", () => {
    const uuidOid = "2.25." + BigInt("0xf81d4fae7dec11d0a76500a0c91e6bf6").toString();
    const ok = sequence();
    const issue = (extensions: LeafTemplate["extensions"]) =>
      issueLeaf(cas.ECDSAP256.signer, template("ECDSAP256", { extensions }));
    expect(() => issue([{ oid: uuidOid, critical: false, valueDer: ok }])).toThrow(/2\^31/);
    expect(() => issue([{ oid: "1.2..3", critical: false, valueDer: ok }])).toThrow(/dotted-decimal/);
    expect(() => issue([{ oid: "2.5.29.17", critical: false, valueDer: ok }])).toThrow(/duplicates/);
    expect(() =>
      issue([
        { oid: "1.3.6.1.4.1.32473.1.1", critical: false, valueDer: ok },
        { oid: "1.3.6.1.4.1.32473.1.1", critical: false, valueDer: ok },
      ]),
    ).toThrow(/duplicates/);
    expect(() => issue([{ oid: "1.3.6.1.4.1.32473.1.1", critical: false, valueDer: Buffer.from("3000ff", "hex") }])).toThrow(
      /not one DER element/,
    );
  });

  it("takes only a CaSigner made by prepareCaSigner (whose issuer name, key id and algorithm are checked)", () => {
    const s = cas.ECDSAP256.signer;
    const lookalike: CaSigner = { ...s, privateKey: s.privateKey, sign: (tbs) => s.sign(tbs) };
    expect(() => issueLeaf(lookalike, template("ECDSAP256"))).toThrow(/needs a CaSigner from prepareCaSigner/);
  });

  it("keeps each CA's issuer and authorityKeyIdentifier apart, whichever CA issued last", () => {
    const [a, b] = [cas.ECDSAP256.signer, cas.ED25519.signer];
    for (const s of [a, b, a, b]) {
      const leaf = issueLeaf(s, template("ED25519"));
      expect(tbsParts(leaf.der)[3]!.equals(s.issuerNameDer)).toBe(true);
      const aki = new x509.X509Certificate(leaf.der).getExtension(x509.AuthorityKeyIdentifierExtension)!;
      expect(aki.keyId).toBe(s.subjectKeyId.toString("hex"));
      expect(new X509Certificate(leaf.der).verify(s.publicKey)).toBe(true);
    }
  });

  it("refuses templates that cannot make a valid leaf", () => {
    const s = cas.ECDSAP256.signer;
    expect(() => issueLeaf(s, template("ECDSAP256", { uris: [], dnsNames: [] }))).toThrow(/at least one/);
    expect(() => issueLeaf(s, template("ECDSAP256", { dnsNames: ["bücher.example"] }))).toThrow(/non-ASCII/);
    expect(() => issueLeaf(s, template("ECDSAP256", { dnsNames: [""] }))).toThrow(/empty/);
    const at = new Date("2030-01-01T00:00:00.100Z");
    expect(() => issueLeaf(s, template("ECDSAP256", { notBefore: at, notAfter: new Date("2030-01-01T00:00:00.900Z") }))).toThrow(
      /after notBefore/, // equal once truncated to whole seconds
    );
    expect(() => issueLeaf(s, template("ECDSAP256", { notBefore: at, notAfter: new Date("2029-01-01T00:00:00Z") }))).toThrow(
      /after notBefore/,
    );
    expect(() => issueLeaf(s, template("ECDSAP256", { notBefore: new Date(NaN) }))).toThrow(/valid Date/);
    expect(() => issueLeaf(s, template("ECDSAP256", { spkiDer: Buffer.from("3000ff", "hex") }))).toThrow(/SubjectPublicKeyInfo/);
  });

  it("writes each leaf's own validity when consecutive leaves share one date and not the other", () => {
    const nb = new Date(NOW.getTime() - 60_000);
    const validities = [
      [nb, new Date(NOW.getTime() + 3_600_000)],
      [nb, new Date(NOW.getTime() + 7_200_000)], // same notBefore, another lifetime
      [new Date(NOW.getTime() - 120_000), new Date(NOW.getTime() + 7_200_000)], // same notAfter
      [nb, new Date(NOW.getTime() + 3_600_000)], // the first again
    ] as const;
    for (const [notBefore, notAfter] of validities) {
      const cert = new X509Certificate(issueLeaf(cas.ECDSAP256.signer, template("ECDSAP256", { notBefore, notAfter })).der);
      expect([cert.validFromDate.getTime(), cert.validToDate.getTime()]).toEqual([trunc(notBefore).getTime(), trunc(notAfter).getTime()]);
    }
  });

  it("round-trips random validity periods and names through node's X.509 parser (property)", () => {
    const date = fc.date({ min: new Date("1950-01-01T00:00:00Z"), max: new Date("9999-12-31T00:00:00Z"), noInvalidDate: true });
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
    fc.assert(
      fc.property(date, fc.integer({ min: 1, max: 10 ** 9 }), fc.array(label, { minLength: 1, maxLength: 12 }), (nb, lifeSec, names) => {
        const notBefore = nb;
        const notAfter = new Date(Math.floor(nb.getTime() / 1000) * 1000 + lifeSec * 1000);
        fc.pre(notAfter.getUTCFullYear() <= 9999);
        const dnsNames = names.map((n, i) => `${n}.n${i}.example`);
        const leaf = issueLeaf(cas.ECDSAP256.signer, template("ECDSAP256", { notBefore, notAfter, dnsNames }));
        const cert = new X509Certificate(leaf.der);
        expect(cert.validFromDate.getTime()).toBe(trunc(notBefore).getTime());
        expect(cert.validToDate.getTime()).toBe(notAfter.getTime());
        expect(cert.subjectAltName).toBe(
          ["URI:spiffe://cluster.local/ns/default/sa/web", ...dnsNames.map((d) => `DNS:${d}`)].join(", "),
        );
        expect(cert.verify(cas.ECDSAP256.signer.publicKey)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });
});
