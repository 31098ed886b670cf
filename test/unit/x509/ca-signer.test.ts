import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createPrivateKey, KeyObject, webcrypto } from "node:crypto";
import { inspect } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { CA_KEY_ALGORITHMS, createCa } from "../../../cli/ca-create.js";
import { ConfigError } from "../../../shared/errors.js";
import type { KeyType } from "../../../shared/pcr/model.js";
import { prepareCaSigner, type CaSigner } from "../../../shared/x509/ca-signer.js";
import { issueLeaf, type LeafTemplate } from "../../../shared/x509/leaf.js";
import { pemDecodeAll } from "../../../shared/x509/pem.js";
import { generateRequestKeyPair, type RequestKeyPair } from "../../../local-cluster/kubelet/keys.js";
import { hasOpenssl, opensslVerify, SIG_ALG_HEX, tbsParts } from "../../helpers/x509.js";

const subtle = webcrypto.subtle;
const reqKeys = {} as Record<"ECDSAP256" | "ECDSAP384" | "RSA3072", RequestKeyPair>;

beforeAll(() => {
  for (const t of ["ECDSAP256", "ECDSAP384", "RSA3072"] as const) reqKeys[t] = generateRequestKeyPair(t);
}, 60_000);

function template(t: keyof typeof reqKeys, over: Partial<LeafTemplate> = {}): LeafTemplate {
  return {
    spkiDer: reqKeys[t].spkiDer,
    keyType: t satisfies KeyType,
    uris: ["spiffe://cluster.local/ns/default/sa/web"],
    dnsNames: ["web.default.svc"],
    notBefore: new Date(Date.now() - 30_000),
    notAfter: new Date(Date.now() + 3_600_000),
    ...over,
  };
}

describe.each(CA_KEY_ALGORITHMS)("prepareCaSigner with a %s CA", (alg) => {
  let ca: { certificate: string; privateKey: string };
  let signer: CaSigner;
  beforeAll(async () => {
    ca = await createCa({ signerName: `example.com/${alg.toLowerCase()}`, keyAlgorithm: alg, validityDays: 30, now: new Date() });
    signer = prepareCaSigner(ca.certificate, createPrivateKey(ca.privateKey));
  }, 60_000);

  it("reads the issuer name, key identifier, algorithm and validity the leaves are made from", () => {
    const p = new x509.X509Certificate(ca.certificate);
    expect(signer.keyAlgorithm).toBe(alg);
    expect(signer.signatureAlgorithmDer.toString("hex")).toBe(SIG_ALG_HEX[alg]);
    expect(signer.issuerNameDer.equals(tbsParts(signer.certDer)[5]!)).toBe(true); // the CA's subject, byte for byte
    expect(signer.subjectKeyId.toString("hex")).toBe(p.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    expect(signer.notBefore.getTime()).toBe(p.notBefore.getTime());
    expect(signer.notAfter.getTime()).toBe(p.notAfter.getTime());
    expect(signer.intermediatesPem).toBe(""); // a root: leaves are sent alone
    expect(signer.rootPem).toBe(signer.certPem);
  });
});

// ---------------------------------------------------------------------------------------------
// Chains with intermediates
// ---------------------------------------------------------------------------------------------

interface PCa {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  pem: string;
  privateKey: KeyObject;
}

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function peculiarCa(name: string, issuer?: PCa, opts: { ca?: boolean } = {}): Promise<PCa> {
  const keys = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const isCa = opts.ca ?? true;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(isCa, undefined, true),
    new x509.KeyUsagesExtension(
      isCa ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const notBefore = new Date(Date.now() - 3_600_000);
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  let cert: x509.X509Certificate;
  if (issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
    cert = await x509.X509CertificateGenerator.create({
      serialNumber: "01" + Buffer.from(name).toString("hex").slice(0, 20),
      subject: `CN=${name}`,
      issuer: issuer.cert.subject,
      notBefore,
      notAfter,
      signingAlgorithm: EC,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      extensions,
    });
  } else {
    cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "02" + Buffer.from(name).toString("hex").slice(0, 20),
      name: `CN=${name}`,
      notBefore,
      notAfter,
      signingAlgorithm: EC,
      keys,
      extensions,
    });
  }
  return { cert, keys, pem: cert.toString("pem") + "\n", privateKey: KeyObject.from(keys.privateKey) };
}

const norm = (pem: string) => pemDecodeAll(pem).map((b) => b.der.toString("base64"));

describe("CAs with intermediates", () => {
  let root: PCa, int1: PCa, int2: PCa, stranger: PCa;
  beforeAll(async () => {
    root = await peculiarCa("Test Root");
    int1 = await peculiarCa("Intermediate 1", root);
    int2 = await peculiarCa("Issuing CA", int1);
    stranger = await peculiarCa("Stranger Root");
  });

  it("sends the issuing CA and intermediates, never the root (root given last)", () => {
    const signer = prepareCaSigner(int2.pem, int2.privateKey, int1.pem + root.pem);
    expect(norm(signer.intermediatesPem)).toEqual(norm(int2.pem + int1.pem));
    expect(norm(signer.rootPem)).toEqual(norm(root.pem));
    const leaf = issueLeaf(signer, template("ECDSAP384", { notBefore: new Date(Date.now() - 1000) }));
    expect(norm(leaf.chainPem)).toEqual(norm(leaf.pem + int2.pem + int1.pem));
    if (hasOpenssl) {
      const r = opensslVerify(root.pem, leaf.pem, int2.pem + int1.pem);
      expect(r.ok, r.out).toBe(true);
      // and the chain as issued is exactly what a client needs
      const tail = leaf.chainPem.slice(leaf.pem.length);
      expect(opensslVerify(root.pem, leaf.pem, tail).ok).toBe(true);
      expect(opensslVerify(root.pem, leaf.pem).ok).toBe(false); // without the intermediates it cannot chain
    }
  });

  it("handles a two-level chain and intermediates without the root", () => {
    const two = prepareCaSigner(int1.pem, int1.privateKey, root.pem);
    expect(norm(two.intermediatesPem)).toEqual(norm(int1.pem));
    expect(norm(two.rootPem)).toEqual(norm(root.pem));
    const noRoot = prepareCaSigner(int2.pem, int2.privateKey, int1.pem);
    expect(norm(noRoot.intermediatesPem)).toEqual(norm(int2.pem + int1.pem));
    expect(norm(noRoot.rootPem)).toEqual(norm(int1.pem));
    const leaf = issueLeaf(noRoot, template("RSA3072", { notBefore: new Date(Date.now() - 1000) }));
    if (hasOpenssl) {
      const r = opensslVerify(int1.pem, leaf.pem, int2.pem, ["-partial_chain"]);
      expect(r.ok, r.out).toBe(true);
    }
    const alone = prepareCaSigner(int2.pem, int2.privateKey);
    expect(alone.intermediatesPem).toBe("");
    expect(norm(alone.rootPem)).toEqual(norm(int2.pem));
  });

  it("refuses broken chains, non-CA certificates and mismatched keys with ConfigError", () => {
    expect(() => prepareCaSigner(int2.pem, int2.privateKey, stranger.pem)).toThrow(ConfigError);
    expect(() => prepareCaSigner(int2.pem, int2.privateKey, root.pem + int1.pem)).toThrow(/self-signed|not issued/);
    expect(() => prepareCaSigner(root.pem, root.privateKey, int1.pem)).toThrow(/self-signed, so it cannot have intermediates/);
    expect(() => prepareCaSigner(int2.pem, int1.privateKey)).toThrow(/does not match/);
    const leafCa = issueLeaf(prepareCaSigner(root.pem, root.privateKey), template("ECDSAP256"));
    expect(() => prepareCaSigner(leafCa.pem, createPrivateKey({ key: reqKeys.ECDSAP256.privateKey.export({ type: "pkcs8", format: "pem" }) }))).toThrow(
      /not a CA certificate/,
    );
    expect(() => prepareCaSigner(root.pem + int1.pem, root.privateKey)).toThrow(/exactly one CERTIFICATE/);
    expect(() => prepareCaSigner(root.pem, root.privateKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")).toThrow(
      /only CERTIFICATE/,
    );
    expect(() => prepareCaSigner(root.pem, root.cert.publicKey as unknown as KeyObject)).toThrow(ConfigError);
  });

  it("accepts DER and PEM for the CA certificate", () => {
    const a = prepareCaSigner(Buffer.from(root.cert.rawData), root.privateKey);
    const b = prepareCaSigner(root.pem, root.privateKey);
    expect(a.certDer.equals(b.certDer)).toBe(true);
    expect(a.issuerNameDer.equals(b.issuerNameDer)).toBe(true);
  });
});

describe("CaSigner secrecy", () => {
  it("keeps the private key out of JSON, inspect and own properties", async () => {
    const ca = await createCa({ signerName: "example.com/secrecy", keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date() });
    const signer = prepareCaSigner(ca.certificate, createPrivateKey(ca.privateKey));
    const jwkD = (signer.privateKey.export({ format: "jwk" }) as { d: string }).d;
    const raw = Buffer.from(jwkD, "base64url");
    const secrets = [jwkD, raw.toString("base64").replace(/=+$/, ""), raw.toString("hex")];
    const views = [
      JSON.stringify(signer),
      JSON.stringify({ ...signer }),
      inspect(signer, { showHidden: true, depth: Infinity, getters: true }),
      inspect({ ...signer }, { showHidden: true, depth: Infinity }),
      String(signer),
    ];
    for (const v of views) for (const secret of secrets) expect(v).not.toContain(secret);
    expect(Object.keys(signer)).not.toContain("privateKey");
    expect(signer.privateKey.type).toBe("private");
  });
});
