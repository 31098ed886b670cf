import "reflect-metadata";

import { webcrypto } from "node:crypto";

import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";

import type { Condition, PcrStatus, PodCertificateRequest } from "../../../shared/pcr/model.js";
import { decodePemBlocks, formatTime, normalizeTime, parseTime, pcrStatusUpdateErrors } from "../../../shared/pcr/status-rules.js";

const subtle = webcrypto.subtle;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const at = (deltaSeconds: number) => new Date(NOW.getTime() + deltaSeconds * 1000);
const iso = (d: Date) => d.toISOString().replace(".000Z", "Z");
const HOUR = 3600;

let ca: webcrypto.CryptoKeyPair;
let leafKey: webcrypto.CryptoKeyPair;
let otherKey: webcrypto.CryptoKeyPair;
let spkiB64: string;

beforeAll(async () => {
  ca = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  leafKey = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  otherKey = (await subtle.generateKey(EC, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  spkiB64 = Buffer.from(await subtle.exportKey("spki", leafKey.publicKey)).toString("base64");
});

interface CertOptions {
  notBefore?: Date;
  notAfter?: Date;
  dns?: string[];
  publicKey?: webcrypto.CryptoKey;
  extensions?: x509.Extension[];
  serialNumber?: string;
  ca?: boolean;
}

async function cert(o: CertOptions = {}): Promise<string> {
  const extensions = [...(o.extensions ?? [])];
  if (o.dns) extensions.push(new x509.SubjectAlternativeNameExtension(o.dns.map((value) => ({ type: "dns" as const, value }))));
  if (o.ca) extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
  const c = await x509.X509CertificateGenerator.create({
    serialNumber: o.serialNumber ?? "01a2b3",
    subject: "CN=leaf",
    issuer: "CN=test ca",
    notBefore: o.notBefore ?? NOW,
    notAfter: o.notAfter ?? at(24 * HOUR),
    publicKey: o.publicKey ?? leafKey.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: SIGN,
    extensions,
  });
  return c.toString("pem");
}

function pcr(spec: Partial<PodCertificateRequest["spec"]> = {}, status?: PcrStatus): PodCertificateRequest {
  return {
    apiVersion: "certificates.k8s.io/v1beta1",
    kind: "PodCertificateRequest",
    metadata: { name: "req-abcde", namespace: "default", uid: "u1", resourceVersion: "5" },
    spec: {
      signerName: "example.com/signer",
      podName: "p",
      podUID: "pod-uid",
      serviceAccountName: "sa",
      serviceAccountUID: "sa-uid",
      nodeName: "n",
      nodeUID: "node-uid",
      maxExpirationSeconds: 86400,
      pkixPublicKey: spkiB64,
      proofOfPossession: "AA==",
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

function cond(type: string, extra: Partial<Condition> = {}): Condition {
  return { type, status: "True", reason: "Testing", message: "m", lastTransitionTime: iso(NOW), ...extra };
}

function issued(chain: string, o: { nb?: Date; na?: Date; bra?: Date } = {}): PcrStatus {
  const nb = o.nb ?? NOW;
  const na = o.na ?? at(24 * HOUR);
  return {
    conditions: [cond("Issued")],
    certificateChain: chain,
    notBefore: iso(nb),
    notAfter: iso(na),
    beginRefreshAt: iso(o.bra ?? new Date(na.getTime() - 2 * HOUR * 1000)),
  };
}

const errorsFor = (status: PcrStatus, old = pcr()) => pcrStatusUpdateErrors(old, status, NOW);

function expectOnly(errors: string[], pattern: RegExp) {
  expect(errors.length, errors.join("\n")).toBeGreaterThan(0);
  for (const e of errors) expect(e).toMatch(pattern);
}

describe("conditions", () => {
  it("accepts Denied and Failed with only a condition", () => {
    expect(errorsFor({ conditions: [cond("Denied", { reason: "UnsupportedKeyType" })] })).toEqual([]);
    expect(errorsFor({ conditions: [cond("Failed", { reason: "Some_Reason:x,y" })] })).toEqual([]);
  });
  it("allows only the types Issued, Denied, Failed", () => {
    expectOnly(errorsFor({ conditions: [cond("Approved")] }), /^status\.conditions\[0\]\.type: Unsupported value: "Approved"/);
  });
  it("allows at most one terminal condition", () => {
    expectOnly(errorsFor({ conditions: [cond("Denied"), cond("Failed")] }), /^status\.conditions\[1\]\.type: there may be at most one/);
  });
  it("requires status True", () => {
    expectOnly(errorsFor({ conditions: [cond("Denied", { status: "False" })] }), /^status\.conditions\[0\]\.status: Unsupported value: "False"/);
  });
  it("requires a reason", () => {
    expectOnly(errorsFor({ conditions: [cond("Denied", { reason: "" })] }), /^status\.conditions\[0\]\.reason: Required/);
  });
  it("checks the reason pattern", () => {
    for (const reason of ["1Bad", "bad reason", "Ends,", "Dash-ed"]) {
      expectOnly(errorsFor({ conditions: [cond("Denied", { reason })] }), /^status\.conditions\[0\]\.reason: a condition reason must/);
    }
    expect(errorsFor({ conditions: [cond("Denied", { reason: "A" })] })).toEqual([]);
    expect(errorsFor({ conditions: [cond("Denied", { reason: "Ends_" })] })).toEqual([]);
  });
  it("limits the reason to 1024 characters", () => {
    expect(errorsFor({ conditions: [cond("Denied", { reason: "A".repeat(1024) })] })).toEqual([]);
    expectOnly(errorsFor({ conditions: [cond("Denied", { reason: "A".repeat(1025) })] }), /reason: must have at most 1024/);
  });
  it("limits the message to 32 KiB (bytes)", () => {
    expect(errorsFor({ conditions: [cond("Denied", { message: "x".repeat(32768) })] })).toEqual([]);
    expectOnly(errorsFor({ conditions: [cond("Denied", { message: "é".repeat(16385) })] }), /message: may not be more than 32768 bytes/);
  });
  it("requires lastTransitionTime", () => {
    expectOnly(errorsFor({ conditions: [cond("Denied", { lastTransitionTime: "" })] }), /lastTransitionTime: Required value/);
    expectOnly(errorsFor({ conditions: [cond("Denied", { lastTransitionTime: "yesterday" })] }), /lastTransitionTime: must be an RFC 3339/);
  });
});

describe("what may change", () => {
  it("refuses any change without a terminal condition, allows a no-op", () => {
    expect(errorsFor({})).toEqual([]);
    expect(errorsFor({ conditions: [] })).toEqual([]);
    expectOnly(errorsFor({ certificateChain: "x" }), /^status: status is immutable unless transitioning/);
  });
  it("makes the whole status immutable once terminal; an identical write is allowed", () => {
    const denied: PcrStatus = { conditions: [cond("Denied", { reason: "PodMismatch" })] };
    const old = pcr({}, denied);
    expect(errorsFor(structuredClone(denied), old)).toEqual([]);
    // the same instant written with milliseconds (as client-node serializes Dates) is the same status
    expect(errorsFor({ conditions: [cond("Denied", { reason: "PodMismatch", lastTransitionTime: NOW.toISOString() })] }, old)).toEqual([]);
    expectOnly(errorsFor({ conditions: [cond("Denied", { reason: "Other" })] }, old), /^status: immutable after PodCertificateRequest is issued, denied, or failed/);
    expectOnly(errorsFor({ conditions: [cond("Failed")] }, old), /^status: immutable after/);
    expectOnly(errorsFor({}, old), /^status: immutable after/);
  });
  it("keeps non-condition fields empty on Denied and Failed", async () => {
    const chain = await cert({ dns: ["a.example"] });
    expectOnly(errorsFor({ conditions: [cond("Denied")], certificateChain: chain }), /^status\.certificateChain: non-condition status fields must be empty/);
    expectOnly(errorsFor({ conditions: [cond("Failed")], notAfter: iso(NOW) }), /^status\.notAfter: non-condition status fields must be empty/);
    expectOnly(errorsFor({ conditions: [cond("Failed")], notBefore: iso(NOW), beginRefreshAt: iso(NOW) }), /non-condition status fields must be empty/);
  });
});

describe("Issued", () => {
  it("accepts a valid issued status (with intermediates and milliseconds that are whole seconds)", async () => {
    const leaf = await cert({ dns: ["svc.ns.svc", "svc.ns.svc.cluster.local"] });
    const intermediate = await cert({ ca: true, publicKey: otherKey.publicKey });
    expect(errorsFor(issued(leaf + intermediate))).toEqual([]);
    const s = issued(leaf);
    s.notBefore = NOW.toISOString(); // ".000Z"
    expect(s.notBefore).toMatch(/\.000Z$/);
    expect(errorsFor(s)).toEqual([]);
    // the same instant with an offset
    expect(errorsFor({ ...issued(leaf), notBefore: new Date(NOW).toISOString().replace("Z", "+00:00") })).toEqual([]);
  });
  it("accepts a certificate whose lifetime equals maxExpirationSeconds and the bounds of beginRefreshAt", async () => {
    const leaf = await cert({ notAfter: at(2 * HOUR) });
    const old = pcr({ maxExpirationSeconds: 2 * HOUR });
    expect(errorsFor(issued(leaf, { na: at(2 * HOUR), bra: at(600) }), old)).toEqual([]);
    expect(errorsFor(issued(leaf, { na: at(2 * HOUR), bra: at(2 * HOUR - 600) }), old)).toEqual([]);
  });
  it("limits the chain to 100 KiB", async () => {
    const leaf = await cert();
    expectOnly(errorsFor(issued(leaf + "\n".repeat(100 * 1024))), /^status\.certificateChain: may not be more than 102400 bytes/);
  });
  it("needs at least one PEM block", () => {
    expect(errorsFor(issued("not pem"))).toContain("status.certificateChain: issued certificate chain must contain at least one certificate");
  });
  it("needs the first block to be a CERTIFICATE", async () => {
    const leaf = await cert();
    const key = leaf.replaceAll("CERTIFICATE", "PRIVATE KEY");
    expect(errorsFor(issued(key))).toContain("status.certificateChain: issued certificate chain must consist entirely of CERTIFICATE PEM blocks");
  });
  it("needs the leaf to parse", () => {
    const junk = `-----BEGIN CERTIFICATE-----\n${Buffer.from("not a certificate").toString("base64")}\n-----END CERTIFICATE-----\n`;
    expect(errorsFor(issued(junk)).some((e) => /leaf certificate does not parse as valid X\.509/.test(e))).toBe(true);
  });
  it("needs every later block to be a CERTIFICATE that parses", async () => {
    const leaf = await cert();
    const junk = `-----BEGIN CERTIFICATE-----\n${Buffer.from("junk").toString("base64")}\n-----END CERTIFICATE-----\n`;
    expectOnly(errorsFor(issued(leaf + junk)), /intermediate certificate 1 does not parse/);
    expectOnly(errorsFor(issued(leaf + leaf.replaceAll("CERTIFICATE", "X509 CRL"))), /must consist entirely of CERTIFICATE PEM blocks/);
  });
  it("judges each intermediate by its own bytes, also when the same ones come again", async () => {
    // The parse of an intermediate is remembered by its bytes: a CA certificate and the same bytes
    // but for its serial's first octet (negative: Go refuses it) must each keep their own verdict,
    // in any order and after more than the cache holds.
    const leaf = await cert();
    const good = await cert({ ca: true, publicKey: otherKey.publicKey, serialNumber: "01a2b3" });
    const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const serialAt = der.indexOf(Buffer.from([0x02, 0x03, 0x01, 0xa2, 0xb3]));
    expect(serialAt).toBeGreaterThan(0);
    der[serialAt + 2] = 0x81;
    const bad = `-----BEGIN CERTIFICATE-----\n${der.toString("base64")}\n-----END CERTIFICATE-----\n`;
    const others = await Promise.all(Array.from({ length: 20 }, (_, i) => cert({ ca: true, publicKey: otherKey.publicKey, serialNumber: (0x10 + i).toString(16) })));
    for (const round of [0, 1]) {
      expect(errorsFor(issued(leaf + good)), `round ${round}`).toEqual([]);
      expectOnly(errorsFor(issued(leaf + bad)), /intermediate certificate 1 does not parse.*negative serial number/);
      expect(errorsFor(issued(leaf + good + bad))).toEqual(["status.certificateChain: intermediate certificate 2 does not parse as valid X.509: negative serial number"]);
      for (const other of others) expect(errorsFor(issued(leaf + other))).toEqual([]);
    }
  });
  it("needs the leaf to certify the requested key", async () => {
    const leaf = await cert({ publicKey: otherKey.publicKey });
    expectOnly(errorsFor(issued(leaf)), /^status\.certificateChain: leaf certificate was not issued to the requested public key/);
  });
  it("takes the requested key from stubPKCS10Request when set", async () => {
    const keys = leafKey;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: SIGN });
    const stub = Buffer.from(csr.rawData).toString("base64");
    const old = pcr({ pkixPublicKey: "", proofOfPossession: "", stubPKCS10Request: stub });
    expect(errorsFor(issued(await cert()), old)).toEqual([]);
    expectOnly(errorsFor(issued(await cert({ publicKey: otherKey.publicKey })), old), /not issued to the requested public key/);
  });
  it("refuses a request whose key field is not a PKIX public key, whatever the leaf certifies", async () => {
    const leaf = await cert();
    expectOnly(errorsFor(issued(leaf), pcr({ pkixPublicKey: Buffer.from("not a key").toString("base64") })), /^spec\.pkixPublicKey: must be a valid PKIX-serialized public key/);
  });
  it("checks the leaf's DNS names", async () => {
    expectOnly(errorsFor(issued(await cert({ dns: ["a..example"] }))), /should not contain '\.\.'/);
    expectOnly(errorsFor(issued(await cert({ dns: [".a.example"] }))), /should not start or end with '\.'/);
    expectOnly(errorsFor(issued(await cert({ dns: ["a.example."] }))), /should not start or end with '\.'/);
    expectOnly(errorsFor(issued(await cert({ dns: [""] }))), /should not contain empty DNSName/);
  });
  it("requires notBefore, notAfter and beginRefreshAt", async () => {
    const s = issued(await cert());
    delete s.notBefore;
    delete s.beginRefreshAt;
    const errors = errorsFor(s);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^status\.notBefore: Required value/);
    expect(errors[1]).toMatch(/^status\.beginRefreshAt: Required value/);
    const t = issued(await cert());
    delete t.notAfter;
    expect(errorsFor(t)).toEqual([expect.stringMatching(/^status\.notAfter: Required value/)]);
  });
  it("requires notBefore to equal the leaf's, to the second", async () => {
    const leaf = await cert();
    expectOnly(errorsFor(issued(leaf, { nb: at(1) })), /^status\.notBefore: must be set to the NotBefore time encoded in the leaf certificate/);
    const fractional = { ...issued(leaf), notBefore: iso(NOW).replace("Z", ".500Z") };
    expectOnly(errorsFor(fractional), /^status\.notBefore: must be set to the NotBefore/);
    const tiny = { ...issued(leaf), notBefore: iso(NOW).replace("Z", ".000000001Z") };
    expectOnly(errorsFor(tiny), /^status\.notBefore: must be set to the NotBefore/);
  });
  it("requires notBefore within 5 minutes of now", async () => {
    const na = at(12 * HOUR);
    const early = await cert({ notBefore: at(-301), notAfter: na });
    expectOnly(errorsFor(issued(early, { nb: at(-301), na })), /^status\.notBefore: must be set to within 5 minutes/);
    const late = await cert({ notBefore: at(301), notAfter: na });
    expectOnly(errorsFor(issued(late, { nb: at(301), na })), /^status\.notBefore: must be set to within 5 minutes/);
    const backdated = await cert({ notBefore: at(-299), notAfter: na });
    expect(errorsFor(issued(backdated, { nb: at(-299), na }))).toEqual([]);
  });
  it("requires notAfter to equal the leaf's", async () => {
    expectOnly(errorsFor(issued(await cert(), { na: at(24 * HOUR - 1) })), /^status\.notAfter: must be set to the NotAfter time/);
  });
  it("requires a lifetime of at least one hour", async () => {
    const leaf = await cert({ notAfter: at(HOUR - 1) });
    const errors = errorsFor(issued(leaf, { na: at(HOUR - 1), bra: at(1200) }));
    expectOnly(errors, /leaf certificate lifetime must be >= 1 hour/);
  });
  it("requires a lifetime of at most spec.maxExpirationSeconds (default 86400)", async () => {
    const leaf = await cert({ notAfter: at(2 * HOUR + 1) });
    expectOnly(errorsFor(issued(leaf, { na: at(2 * HOUR + 1), bra: at(HOUR) }), pcr({ maxExpirationSeconds: 2 * HOUR })),
      /leaf certificate lifetime must be <= spec\.maxExpirationSeconds \(7200\)/);
    const long = await cert({ notAfter: at(24 * HOUR + 1) });
    const old = pcr();
    delete old.spec.maxExpirationSeconds;
    expectOnly(errorsFor(issued(long, { na: at(24 * HOUR + 1) }), old), /<= spec\.maxExpirationSeconds \(86400\)/);
  });
  it("requires beginRefreshAt within [notBefore+10min, notAfter-10min]", async () => {
    const leaf = await cert();
    expectOnly(errorsFor(issued(leaf, { bra: at(599) })), /^status\.beginRefreshAt: must be at least 10 minutes after status\.notBefore/);
    expectOnly(errorsFor(issued(leaf, { bra: at(24 * HOUR - 599) })), /^status\.beginRefreshAt: must be at least 10 minutes before status\.notAfter/);
  });
  it("refuses certificates Go's crypto/x509 cannot parse: OID arcs >= 2^31", async () => {
    const ext = new x509.Extension("1.3.6.1.4.1.2147483648", false, new Uint8Array([0x05, 0x00]));
    const leaf = await cert({ extensions: [ext] });
    expectOnly(errorsFor(issued(leaf)), /leaf certificate does not parse as valid X\.509: object identifier 1\.3\.6\.1\.4\.1\.2147483648 has an arc >= 2\^31/);
    const fine = new x509.Extension("1.3.6.1.4.1.2147483647", false, new Uint8Array([0x05, 0x00]));
    expect(errorsFor(issued(await cert({ extensions: [fine] })))).toEqual([]);
    // in an intermediate too
    const intermediate = await cert({ extensions: [ext], ca: true, publicKey: otherKey.publicKey });
    expectOnly(errorsFor(issued((await cert()) + intermediate)), /intermediate certificate 1 does not parse.*2\^31/);
  });
  it("refuses certificates Go's crypto/x509 cannot parse: duplicate extensions, negative serial", async () => {
    const ext = new x509.Extension("1.2.3.4", false, new Uint8Array([0x05, 0x00]));
    expectOnly(errorsFor(issued(await cert({ extensions: [ext, ext] }))), /duplicate extensions/);
    // The generator keeps serials positive (it prepends 00 to "ff01"); flip that byte to make the
    // INTEGER negative. The signature no longer verifies, which parsing does not check.
    const der = Buffer.from(new x509.X509Certificate(await cert({ serialNumber: "ff01" })).rawData);
    const at0 = der.indexOf(Buffer.from("020300ff01", "hex"));
    expect(at0).toBeGreaterThan(0);
    der[at0 + 2] = 0xff;
    const negative = new x509.X509Certificate(der).toString("pem");
    expectOnly(errorsFor(issued(negative)), /negative serial number/);
  });
});

describe("helpers", () => {
  it("parses RFC 3339 exactly", () => {
    expect(parseTime("2025-01-02T03:04:05Z")).toBe(BigInt(Date.UTC(2025, 0, 2, 3, 4, 5)) * 1_000_000n);
    expect(parseTime("2025-01-02T03:04:05.123456789Z")! % 1_000_000_000n).toBe(123456789n);
    expect(parseTime("2025-01-02T05:04:05+02:00")).toBe(parseTime("2025-01-02T03:04:05Z"));
    for (const bad of ["2025-01-02", "2025-02-30T00:00:00Z", "2025-01-02T03:04:05", "x"]) expect(parseTime(bad)).toBeUndefined();
  });
  it("round-trips whole seconds through JS Dates (which serialize with milliseconds)", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 4102444800 }), (secs) => {
      const d = new Date(secs * 1000);
      const t = parseTime(d.toISOString());
      return t === BigInt(secs) * 1_000_000_000n && formatTime(t) === d.toISOString().replace(".000Z", "Z");
    }));
  });
  it("normalizes to whole-second UTC like metav1.Time", () => {
    expect(normalizeTime("2025-01-02T03:04:05.999Z")).toBe("2025-01-02T03:04:05Z");
    expect(normalizeTime("2025-01-02T05:04:05+02:00")).toBe("2025-01-02T03:04:05Z");
  });
  it("decodes PEM blocks, skipping surrounding text", async () => {
    const leaf = await cert();
    const blocks = decodePemBlocks(`leading text\n${leaf}\nbetween\n${leaf}trailing`);
    expect(blocks.map((b) => b.type)).toEqual(["CERTIFICATE", "CERTIFICATE"]);
  });
});
