import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createHash, createPrivateKey, webcrypto, X509Certificate } from "node:crypto";
import { inspect } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { ConfigError, RequestDeniedError, TransientError } from "../../../shared/errors.js";
import { activeCa, caTrustDocument, clusterTrustBundleManifest, parseCaPool, parseCaTrust, publishedCas, serializeCaPool, trustBundlePem, type CaPoolDocument, type CaState } from "../../../shared/ca/pool.js";
import { CA_KEY_ALGORITHMS, createCa, createCaPool, type CaKeyAlgorithm } from "../../../cli/ca-create.js";
import { readChildren, readSingle } from "../../../shared/x509/der.js";
import { issueLeaf } from "../../../shared/x509/leaf.js";
import { pemDecodeAll, pemEncode } from "../../../shared/x509/pem.js";
import { generateRequestKeyPair } from "../../../local-cluster/kubelet/keys.js";

const T = new Date("2026-06-01T12:00:00.750Z");
const DAY = 86_400_000;
const SIGNER = "example.com/my-signer";

type Ca = { certificate: string; privateKey: string };
const byAlg = {} as Record<CaKeyAlgorithm, Ca>;

beforeAll(async () => {
  for (const alg of CA_KEY_ALGORITHMS) {
    byAlg[alg] = await createCa({ signerName: SIGNER, keyAlgorithm: alg, validityDays: 365, now: T });
  }
}, 180_000);

function doc(signers: CaPoolDocument["signers"]): CaPoolDocument {
  return { apiVersion: "podcert.ate.dev/v1alpha1", kind: "CAPool", signers };
}

/**
 * The private parts of a key (EC/Ed25519 scalar "d"; RSA d, p, q) in the encodings a leak would
 * use: base64url (JWK), base64 and hex. (The PKCS#8 text as a whole also holds the public key,
 * which legitimately appears in the certificate.)
 */
function privateParts(pem: string): string[] {
  const jwk = createPrivateKey(pem).export({ format: "jwk" }) as Record<string, string>;
  const out: string[] = [];
  for (const name of ["d", "p", "q"]) {
    if (!jwk[name]) continue;
    const raw = Buffer.from(jwk[name], "base64url");
    out.push(jwk[name], raw.toString("base64").replace(/=+$/, "").slice(0, 40), raw.toString("hex"));
  }
  expect(out.length).toBeGreaterThan(0);
  return out;
}

const keyBase64 = (pem: string) => pemDecodeAll(pem)[0]!.der.toString("base64");

/** Runs fn, expects a ConfigError, and checks that its message quotes no key material. */
function configError(fn: () => unknown, message: RegExp, secrets: string[] = []): ConfigError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const e = err as ConfigError;
  expect(e.message).toMatch(message);
  for (const s of secrets) {
    for (let i = 0; i + 24 <= s.length; i += 24) expect(e.message).not.toContain(s.slice(i, i + 24));
  }
  return e;
}

describe("createCa", () => {
  it.each(CA_KEY_ALGORITHMS)("makes a self-signed %s root with the required extensions", async (alg) => {
    const ca = byAlg[alg];
    const cert = new x509.X509Certificate(ca.certificate);
    expect(cert.subject).toContain(`CN=${SIGNER} CA`);
    expect(cert.subject).toContain("O=podcert");
    expect(cert.subject).toBe(cert.issuer);
    expect(await cert.verify({ signatureOnly: true })).toBe(true);
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    expect(bc.critical).toBe(true);
    expect(bc.ca).toBe(true);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
    );
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)!;
    const spki = Buffer.from(cert.publicKey.rawData);
    const [, bits] = readChildren(spki, readSingle(spki, 0x30));
    expect(ski.keyId).toBe(createHash("sha1").update(spki.subarray(bits!.valueStart + 1, bits!.end)).digest("hex"));
    expect(cert.notBefore.getTime()).toBe(Math.floor(T.getTime() / 1000) * 1000 - 60_000);
    expect(cert.notAfter.getTime()).toBe(Math.floor(T.getTime() / 1000) * 1000 + 365 * DAY);
    expect(cert.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/);

    // the key is PKCS#8 and belongs to the certificate
    expect(ca.privateKey).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(ca.privateKey);
    expect(new X509Certificate(ca.certificate).checkPrivateKey(key)).toBe(true);
    expect(new X509Certificate(ca.certificate).ca).toBe(true);
    const expectedKey: Record<CaKeyAlgorithm, [string, string | number]> = {
      ECDSAP256: ["ec", "prime256v1"],
      ECDSAP384: ["ec", "secp384r1"],
      ECDSAP521: ["ec", "secp521r1"],
      ED25519: ["ed25519", "-"],
      RSA3072: ["rsa", 3072],
      RSA4096: ["rsa", 4096],
    };
    const [type, detail] = expectedKey[alg];
    expect(key.asymmetricKeyType).toBe(type);
    const d = key.asymmetricKeyDetails ?? {};
    if (type === "ec") expect(d.namedCurve).toBe(detail);
    if (type === "rsa") expect(d.modulusLength).toBe(detail);
  });

  it("refuses nonsense parameters", async () => {
    await expect(createCa({ signerName: SIGNER, keyAlgorithm: "DSA" as CaKeyAlgorithm, validityDays: 1, now: T })).rejects.toThrow(
      ConfigError,
    );
    await expect(createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 0, now: T })).rejects.toThrow(/validityDays/);
  });
});

describe("CA pool documents", () => {
  it("serializes to YAML and parses back into signers", async () => {
    const d = await createCaPool(["example.com/a", "example.com/b"], { keyAlgorithm: "ECDSAP256", validityDays: 10, now: T });
    const text = serializeCaPool(d);
    expect(YAML.parse(text)).toEqual(d);
    expect(text).toMatch(/certificate: \|/); // readable block scalars
    const pool = parseCaPool(text);
    expect([...pool.signers.keys()]).toEqual(["example.com/a", "example.com/b"]);
    const a = pool.signers.get("example.com/a")![0]!;
    expect(a.signerName).toBe("example.com/a");
    expect(a.certificatePem).toBe(d.signers[0]!.cas[0]!.certificate);
    expect(a.rootPem).toBe(a.certificatePem);
    expect(a.notBefore.getTime()).toBe(Math.floor(T.getTime() / 1000) * 1000 - 60_000);
    expect(a.notAfter.getTime()).toBe(Math.floor(T.getTime() / 1000) * 1000 + 10 * DAY);
    expect(a.signer.keyAlgorithm).toBe("ECDSAP256");
    // JSON is YAML too
    expect(parseCaPool(JSON.stringify(d)).signers.size).toBe(2);
  });

  it("loads CAs of every algorithm and issues with them", () => {
    const pool = parseCaPool(
      serializeCaPool(doc(CA_KEY_ALGORITHMS.map((alg) => ({ signerName: `example.com/${alg}`, cas: [byAlg[alg]] })))),
    );
    const req = generateRequestKeyPair("ED25519");
    for (const alg of CA_KEY_ALGORITHMS) {
      const ca = activeCa(pool, `example.com/${alg}`, new Date(T.getTime() + DAY));
      const leaf = issueLeaf(ca.signer, {
        spkiDer: req.spkiDer,
        keyType: "ED25519",
        uris: ["spiffe://td/ns/a/sa/b"],
        dnsNames: [],
        notBefore: new Date(T.getTime() + DAY),
        notAfter: new Date(T.getTime() + 2 * DAY),
      });
      expect(new X509Certificate(leaf.der).verify(new X509Certificate(byAlg[alg].certificate).publicKey)).toBe(true);
    }
  });

  it("rejects documents that are not YAML without quoting them", () => {
    const key = byAlg.ECDSAP256.privateKey;
    const broken = `apiVersion: podcert.ate.dev/v1alpha1\nkind: CAPool\nsigners:\n  - signerName: x\n    cas: [ { privateKey: "${key.replace(/\n/g, "\\n")}"\n`;
    configError(() => parseCaPool(broken), /not valid YAML or JSON/, [keyBase64(key)]);
    configError(() => parseCaPool("a: [1\nb: }"), /not valid YAML/);
  });

  it("names missing and unexpected fields", () => {
    const ca = byAlg.ECDSAP256;
    configError(() => parseCaPool(JSON.stringify({ ...doc([]), apiVersion: "v1" })), /apiVersion/);
    configError(() => parseCaPool(JSON.stringify({ ...doc([]), kind: "Secret" })), /kind/);
    configError(() => parseCaPool(JSON.stringify(doc([]))), /signers/);
    configError(
      () => parseCaPool(JSON.stringify(doc([{ signerName: SIGNER, cas: [{ certificate: ca.certificate } as never] }]))),
      /signers\[0\]\.cas\[0\]\.privateKey/,
    );
    configError(() => parseCaPool(JSON.stringify(doc([{ signerName: SIGNER, cas: [] }]))), /signers\[0\]\.cas/);
    configError(
      () => parseCaPool(JSON.stringify(doc([{ signerName: SIGNER, cas: [{ ...ca, intermediate: "x" } as never] }]))),
      /intermediate/,
      [keyBase64(ca.privateKey)],
    );
    configError(() => parseCaPool("just a string"), /CA pool is invalid/);
    configError(
      () => parseCaPool(JSON.stringify(doc([{ signerName: SIGNER, cas: [ca] }, { signerName: SIGNER, cas: [ca] }]))),
      /more than once/,
    );
    configError(() => parseCaPool(JSON.stringify(doc([{ signerName: SIGNER, cas: [ca, ca] }]))), /listed twice/);
  });

  it("rejects a key that does not match its certificate", () => {
    const a = byAlg.ECDSAP256;
    const b = byAlg.ECDSAP384;
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ certificate: a.certificate, privateKey: b.privateKey }] }]))),
      /signers\[0\]\.cas\[0\].*private key does not match/,
      [keyBase64(a.privateKey), keyBase64(b.privateKey)],
    );
  });

  it("rejects a certificate that is not a CA", () => {
    const ca = byAlg.ECDSAP256;
    const pool = parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [ca] }])));
    const req = generateRequestKeyPair("ECDSAP256");
    const leaf = issueLeaf(activeCa(pool, SIGNER, T).signer, {
      spkiDer: req.spkiDer,
      keyType: "ECDSAP256",
      uris: [],
      dnsNames: ["leaf.example"],
      notBefore: T,
      notAfter: new Date(T.getTime() + DAY),
    });
    const leafKey = req.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ certificate: leaf.pem, privateKey: leafKey }] }]))),
      /not a CA certificate/,
      [keyBase64(leafKey)],
    );
  });

  it("rejects PEM garbage without quoting it", () => {
    const ca = byAlg.ECDSAP256;
    const secret = keyBase64(ca.privateKey);
    const garbledKey = ca.privateKey.replace(/\n(.)/, "\n$1$$"); // a '$' inside the key body
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, privateKey: garbledKey }] }]))),
      /signers\[0\]\.cas\[0\].*privateKey.*outside base64/,
      [secret],
    );
    const wrongBody = pemEncode("PRIVATE KEY", Buffer.from(secret.slice(0, 60)));
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, privateKey: wrongBody }] }]))),
      /not a usable PKCS#8 private key/,
      [secret.slice(0, 60)],
    );
    const sec1 = createPrivateKey(ca.privateKey).export({ type: "sec1", format: "pem" }) as string;
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, privateKey: sec1 }] }]))),
      /PKCS#8 "PRIVATE KEY"/,
      [keyBase64(sec1)],
    );
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, privateKey: "hello" }] }]))),
      /PRIVATE KEY/,
    );
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, certificate: "-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n" }] }]))),
      /CA certificate PEM is malformed/,
      [secret],
    );
    configError(
      () => parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [{ ...ca, certificate: pemEncode("CERTIFICATE", Buffer.from("nope")) }] }]))),
      /not a parsable X\.509 certificate/,
    );
  });
});

describe("activeCa", () => {
  let pool: ReturnType<typeof parseCaPool>;
  beforeAll(async () => {
    const old = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date(T.getTime() - 20 * DAY) });
    const current = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date(T.getTime() - DAY) });
    const future = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 60, now: new Date(T.getTime() + 5 * DAY) });
    pool = parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [old, future, current] }])));
  });

  const notAfterOf = (d: Date) => activeCa(pool, SIGNER, d).notAfter.getTime();
  const base = Math.floor(T.getTime() / 1000) * 1000;

  it("picks the valid CA with the latest notAfter", () => {
    expect(notAfterOf(T)).toBe(base - DAY + 30 * DAY); // "current", not "old", not the not-yet-valid "future"
    expect(notAfterOf(new Date(T.getTime() - 19 * DAY))).toBe(base - 20 * DAY + 30 * DAY); // only "old" is valid then
    expect(notAfterOf(new Date(T.getTime() + 6 * DAY))).toBe(base + 5 * DAY + 60 * DAY); // "future" has started
  });

  // Whether the CA it picks still covers a certificate is certificateTimes' (policy/lifetime.ts).
  it("throws TransientError, never a denial, when no CA is valid now", () => {
    const errs: unknown[] = [];
    for (const now of [new Date(T.getTime() + 100 * DAY), new Date(T.getTime() - 30 * DAY)]) {
      try {
        activeCa(pool, SIGNER, now);
      } catch (e) {
        errs.push(e);
      }
    }
    expect(errs).toHaveLength(2);
    for (const e of errs) {
      expect(e).toBeInstanceOf(TransientError);
      expect(e).not.toBeInstanceOf(RequestDeniedError);
      expect((e as Error).message).toContain(SIGNER);
      expect((e as Error).message).toMatch(/is valid at/);
    }
  });

  it("is a ConfigError when the pool has no CA for the signer", () => {
    configError(() => activeCa(pool, "example.com/other", T), /no CA for signer example\.com\/other in the CA pool/);
    configError(() => trustBundlePem(pool, "example.com/other"), /no CA for signer/);
  });
});

describe("CA states (rotation)", () => {
  let cas: Ca[];
  beforeAll(async () => {
    cas = [];
    for (let i = 0; i < 3; i++) cas.push(await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: new Date(T.getTime() - (3 - i) * DAY) }));
  });
  const at = (h: number) => new Date(T.getTime() - h * 3_600_000).toISOString();
  const stated = (...states: (CaState | undefined)[]) =>
    doc([{ signerName: SIGNER, cas: states.map((state, i) => ({ ...cas[i]!, ...(state ? { state, since: { [state]: at(10 - i) } } : {}) })) }]);
  const serialOf = (c: Ca) => new X509Certificate(c.certificate).serialNumber;

  it("signs with the active CA, whatever the others' validity", () => {
    // cas[2] has the latest notAfter: the pre-rotation rule would pick it; the state decides.
    const pool = parseCaPool(serializeCaPool(stated("superseded", "active", "prepared")));
    expect(activeCa(pool, SIGNER, T).serialHex).toBe(serialOf(cas[1]!));
    expect(activeCa(pool, SIGNER, T).state).toBe("active");
    expect(activeCa(pool, SIGNER, T).since.active?.toISOString()).toBe(at(9));
  });

  it("keeps the pre-rotation rule for a signer whose CAs carry no state", () => {
    const pool = parseCaPool(serializeCaPool(stated(undefined, undefined, undefined)));
    expect(activeCa(pool, SIGNER, T).serialHex).toBe(serialOf(cas[2]!));
    expect(activeCa(pool, SIGNER, T).state).toBeUndefined();
    expect(publishedCas(pool, SIGNER)).toHaveLength(3);
  });

  it("publishes every CA that is not retired, and only those", () => {
    const pool = parseCaPool(serializeCaPool(stated("retired", "superseded", "active")));
    expect(publishedCas(pool, SIGNER).map((c) => c.serialHex)).toEqual([serialOf(cas[1]!), serialOf(cas[2]!)]);
    const bundle = pemDecodeAll(trustBundlePem(pool, SIGNER)).map((b) => b.der.toString("base64"));
    expect(bundle).toEqual([cas[1]!, cas[2]!].map((c) => keyBase64(c.certificate)));
  });

  it("waits (transient) while a signer has no active CA, saying what to do", () => {
    const pool = parseCaPool(serializeCaPool(stated("prepared")));
    expect(() => activeCa(pool, SIGNER, T)).toThrow(TransientError);
    expect(() => activeCa(pool, SIGNER, T)).toThrow(/signer example.com\/my-signer has no active CA; activate its prepared CA \(podcert ca rotate --signer example.com\/my-signer activate\)/);
    expect(publishedCas(pool, SIGNER)).toHaveLength(1);
  });

  it("waits (transient) when the active CA is not valid now, naming it", () => {
    const pool = parseCaPool(serializeCaPool(stated("active")));
    const later = new Date(T.getTime() + 40 * DAY);
    expect(() => activeCa(pool, SIGNER, later)).toThrow(TransientError);
    expect(() => activeCa(pool, SIGNER, later)).toThrow(new RegExp(`active CA of signer ${SIGNER} \\(serial ${serialOf(cas[0]!)}\\) is not valid`));
  });

  it.each([
    { case: "two active CAs", d: () => stated("active", "active"), m: /2 CAs are active; exactly one signs/ },
    { case: "states on some CAs only", d: () => stated("active", undefined), m: /either every CA has a state or none has \(1 of 2 have\)/ },
    { case: "a state without its since", d: () => doc([{ signerName: SIGNER, cas: [{ ...cas[0]!, state: "active", since: { prepared: at(1) } }] }]), m: /state active needs since.active/ },
    { case: "since without a state", d: () => doc([{ signerName: SIGNER, cas: [{ ...cas[0]!, since: { prepared: at(1) } }] }]), m: /since is set but state is not/ },
    { case: "an unknown state", d: () => doc([{ signerName: SIGNER, cas: [{ ...cas[0]!, state: "resting" as CaState, since: {} }] }]), m: /state/ },
    { case: "a since that is not a time", d: () => doc([{ signerName: SIGNER, cas: [{ ...cas[0]!, state: "active", since: { active: "yesterday" } }] }]), m: /since.active: must be an RFC 3339 time/ },
  ])("refuses $case", ({ d, m }) => {
    configError(() => parseCaPool(serializeCaPool(d())), m);
  });
});

describe("CA trust documents (the publisher's view: certificates, no keys)", () => {
  let pool: CaPoolDocument;
  beforeAll(async () => {
    const a = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: T });
    const b = await createCa({ signerName: SIGNER, keyAlgorithm: "ED25519", validityDays: 30, now: T });
    const c = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: T });
    const since = (state: CaState) => ({ state, since: { [state]: T.toISOString() } });
    pool = doc([{ signerName: SIGNER, cas: [{ ...a, ...since("retired") }, { ...b, ...since("active") }, { ...c, ...since("prepared") }] }]);
  });

  it("hold every certificate and state of the pool and no private key", () => {
    const text = YAML.stringify(caTrustDocument(pool));
    for (const ca of pool.signers[0]!.cas) {
      expect(text).not.toContain(keyBase64(ca.privateKey).slice(0, 40));
      for (const secret of privateParts(ca.privateKey)) expect(text).not.toContain(secret);
    }
    const trust = parseCaTrust(text);
    const loaded = parseCaPool(serializeCaPool(pool));
    const view = (cas: readonly { serialHex: string; state: unknown; rootPem: string; fingerprintSha256: string }[]) =>
      cas.map((c) => [c.serialHex, c.state, c.rootPem, c.fingerprintSha256]);
    expect(view(trust.signers.get(SIGNER)!)).toEqual(view(loaded.signers.get(SIGNER)!));
    expect(trustBundlePem(trust, SIGNER)).toBe(trustBundlePem(loaded, SIGNER));
    expect(publishedCas(trust, SIGNER).map((c) => c.state)).toEqual(["active", "prepared"]);
  });

  it("refuse a CA pool (the publisher must never be given keys), without quoting it", () => {
    const text = serializeCaPool(pool);
    configError(() => parseCaTrust(text), /this is a CA pool, with private keys; give the trust publisher the output of `podcert ca trust` instead/, privateParts(pool.signers[0]!.cas[0]!.privateKey));
    const smuggled = YAML.stringify({ ...caTrustDocument(pool), signers: [{ signerName: SIGNER, cas: [pool.signers[0]!.cas[1]!] }] });
    configError(() => parseCaTrust(smuggled), /CA trust document is invalid: .*privateKey/, privateParts(pool.signers[0]!.cas[1]!.privateKey));
  });

  it("refuse a certificate that is not a CA, naming the place", () => {
    const leafLike = { apiVersion: "podcert.ate.dev/v1alpha1", kind: "CATrust", signers: [{ signerName: SIGNER, cas: [{ certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }] }] };
    configError(() => parseCaTrust(YAML.stringify(leafLike)), /signers\[0\]\.cas\[0\] \(signer example.com\/my-signer\): /);
  });
});

describe("trust bundles", () => {
  it("lists every CA's root once, as plain CERTIFICATE PEM", async () => {
    const a = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: T });
    const b = await createCa({ signerName: SIGNER, keyAlgorithm: "ED25519", validityDays: 60, now: T });
    const pool = parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [a, b] }])));
    const bundle = trustBundlePem(pool, SIGNER);
    const blocks = pemDecodeAll(bundle);
    expect(blocks.map((x) => x.label)).toEqual(["CERTIFICATE", "CERTIFICATE"]);
    expect(blocks.map((x) => x.der.toString("base64"))).toEqual([keyBase64(a.certificate), keyBase64(b.certificate)]);
    expect(bundle).not.toMatch(/:/); // no PEM headers
    for (const x of blocks) expect(new X509Certificate(x.der).ca).toBe(true);
  });

  it("deduplicates a root shared by two issuing CAs and leaves intermediates out", async () => {
    const root = await createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 365, now: T });
    const rootKey = await webcrypto.subtle.importKey(
      "pkcs8",
      pemDecodeAll(root.privateKey)[0]!.der,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["sign"],
    );
    const rootCert = new x509.X509Certificate(root.certificate);
    const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
    const makeIntermediate = async (n: number) => {
      const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: `0${n}0203`,
        subject: `CN=issuing ${n}`,
        issuer: rootCert.subject,
        notBefore: new Date(T.getTime() - DAY),
        notAfter: new Date(T.getTime() + 100 * DAY),
        signingAlgorithm: alg,
        publicKey: keys.publicKey,
        signingKey: rootKey,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(rootCert.publicKey),
        ],
      });
      const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
      return {
        certificate: pemEncode("CERTIFICATE", Buffer.from(cert.rawData)),
        privateKey: pemEncode("PRIVATE KEY", Buffer.from(pkcs8)),
        intermediates: root.certificate,
      };
    };
    const i1 = await makeIntermediate(1);
    const i2 = await makeIntermediate(2);
    const pool = parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [i1, i2] }])));
    const loaded = pool.signers.get(SIGNER)!;
    expect(loaded.map((c) => c.rootPem)).toEqual([root.certificate, root.certificate]);
    expect(loaded[0]!.certificatePem).toBe(i1.certificate);
    expect(trustBundlePem(pool, SIGNER)).toBe(root.certificate);
    expect(loaded[0]!.signer.intermediatesPem).toBe(i1.certificate); // chain tail: the issuing CA, not the root
  });

  it("builds a signer-linked ClusterTrustBundle, v1 unless asked for v1beta1", async () => {
    const a = byAlg.ECDSAP256;
    const pool = parseCaPool(serializeCaPool(doc([{ signerName: "podcert.ate.dev/sub/path", cas: [a] }])));
    const ctb = clusterTrustBundleManifest(pool, "podcert.ate.dev/sub/path") as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { signerName: string; trustBundle: string };
    };
    expect(ctb.apiVersion).toBe("certificates.k8s.io/v1");
    expect((clusterTrustBundleManifest(pool, "podcert.ate.dev/sub/path", "v1beta1") as { apiVersion: string }).apiVersion).toBe("certificates.k8s.io/v1beta1");
    expect(ctb.kind).toBe("ClusterTrustBundle");
    expect(ctb.metadata.name).toBe("podcert.ate.dev:sub:path:bundle");
    expect(ctb.metadata.name.startsWith("podcert.ate.dev/sub/path".replaceAll("/", ":") + ":")).toBe(true);
    expect(ctb.spec.signerName).toBe("podcert.ate.dev/sub/path");
    expect(ctb.spec.trustBundle).toBe(a.certificate);
    expect(JSON.stringify(ctb)).not.toContain(keyBase64(a.privateKey).slice(0, 40));
  });
});

describe("secrecy of loaded CAs", () => {
  it("never shows the private key in JSON or inspect output", () => {
    for (const alg of ["ECDSAP256", "ED25519", "RSA3072"] as const) {
      const ca = byAlg[alg];
      const pool = parseCaPool(serializeCaPool(doc([{ signerName: SIGNER, cas: [ca] }])));
      const loaded = pool.signers.get(SIGNER)![0]!;
      const secrets = privateParts(ca.privateKey);
      const views = [
        JSON.stringify(loaded),
        JSON.stringify(pool.signers.get(SIGNER)),
        inspect(loaded, { showHidden: true, depth: Infinity, getters: true }),
        inspect(pool, { showHidden: true, depth: Infinity, getters: true }),
        String(loaded.signer),
        `${JSON.stringify({ ...loaded, signer: { ...loaded.signer } })}`,
      ];
      for (const v of views) for (const secret of secrets) expect(v).not.toContain(secret);
      // the loaded CA still works
      expect(loaded.signer.privateKey.type).toBe("private");
      expect(JSON.parse(JSON.stringify(loaded)).certificatePem).toBe(ca.certificate);
    }
  });
});
