// sign follows its CA pool without a restart (issue 10): the bundle served over HTTP with the pool
// in a Secret volume as kubelet keeps it; the volume is updated under it (a new folder behind
// `..data`) and the next request signs with the new active CA. A broken file is refused, logged
// and counted while the last good pool signs; a CA too close to its end leaves the request
// pending with a Warning Event saying which CA and what to do. The metrics follow each change.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCa } from "../../cli/ca-create.js";
import { serializeCaPool, type CaState } from "../../shared/ca/pool.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { ATESYSTEM_SIGNER as ATE, WORKERPOOL_SIGNER as WORKER } from "../../shared/profiles/defaults.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { createPcr, postEvent, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { secretVolume, type SecretVolume } from "../helpers/secret-volume.js";

type Ca = { certificate: string; privateKey: string };
const now = new Date();
let env: BundleEnv;
let volume: SecretVolume;
let fns: Record<"validate" | "derive-sans" | "sign", ServedBundle>;
let A: Ca;
let B: Ca;
let W: Ca;
/** Expires 30 minutes from now: it cannot cover the hour a certificate needs. */
let C: Ca;
let counter = 0;

const stated = (ca: Ca, state: CaState) => ({ ...ca, state, since: { [state]: now.toISOString() } });
const pool = (ate: ReturnType<typeof stated>[]) =>
  serializeCaPool({
    apiVersion: "podcert.ate.dev/v1alpha1",
    kind: "CAPool",
    signers: [
      { signerName: ATE, cas: ate },
      { signerName: WORKER, cas: [stated(W, "active")] },
    ],
  });
const serial = (ca: Ca) => new X509Certificate(ca.certificate).serialNumber;

beforeAll(async () => {
  [A, B, W, C] = await Promise.all([
    createCa({ signerName: ATE, keyAlgorithm: "ECDSAP256", validityDays: 30, now }),
    createCa({ signerName: ATE, keyAlgorithm: "ECDSAP384", validityDays: 60, now }),
    createCa({ signerName: WORKER, keyAlgorithm: "ECDSAP256", validityDays: 30, now }),
    createCa({ signerName: ATE, keyAlgorithm: "ECDSAP256", validityDays: 1, now: new Date(now.getTime() - 86_400_000 + 30 * 60_000) }),
  ]);
  env = await startBundleEnv();
  // Inside the env's folder, which stop() removes (with every CA key written here).
  volume = secretVolume(join(env.dir, "ca-volume"), { "ca-pool.yaml": pool([stated(A, "active")]) });
  const [validate, deriveSans, sign] = await Promise.all([
    env.serve("validate"),
    env.serve("derive-sans"),
    env.serve("sign", { PODCERT_CA_POOL: volume.path("ca-pool.yaml") }),
  ]);
  fns = { validate: validate!, "derive-sans": deriveSans!, sign: sign! };
});

afterAll(async () => {
  await env?.stop();
});

/** A new PCR for the ate-system router, through validate and derive-sans: what sign is handed. */
async function toSign(): Promise<{ pcr: PodCertificateRequest; event: PodcertEvent }> {
  const { pcr, event } = createPcr(env.api, { namespace: "ate-system", pod: "router-ecdsap256", signerName: ATE, name: `req-reload-${++counter}` });
  const v = await postEvent(fns.validate.url, event);
  expect(v.reply?.type, v.text).toBe(EVENT_TYPES.validated);
  const d = await postEvent(fns["derive-sans"].url, v.reply!);
  expect(d.reply?.type, d.text).toBe(EVENT_TYPES.sansDerived);
  return { pcr, event: d.reply! };
}

const stored = (pcr: PodCertificateRequest) => env.api.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name) as unknown as PodCertificateRequest;

/** Issues a certificate through sign; returns the serial of the CA that signed it (the chain's issuer). */
async function issuedBy(): Promise<string> {
  const { pcr, event } = await toSign();
  const s = await postEvent(fns.sign.url, event);
  expect(s.status, s.text).toBe(200);
  const leaf = new X509Certificate(stored(pcr).status!.certificateChain!);
  const signer = [A, B, C].find((ca) => leaf.verify(new X509Certificate(ca.certificate).publicKey));
  expect(signer, "the leaf verifies against one of the CAs").toBeDefined();
  return serial(signer!);
}

/** The checks run at most once a second: a request after that sees the file as it is now. */
const afterCheckInterval = () => new Promise((r) => setTimeout(r, 1100));

const metrics = async () => (await fetch(`${fns.sign.url}/metrics`)).text();
const sample = (text: string, name: string, labels: Record<string, string> = {}): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
};

describe("sign follows its CA pool file", () => {
  it("signs with CA A, then, once the Secret volume is updated, with CA B, without a restart; the metrics show both CAs' states", async () => {
    expect(await issuedBy()).toBe(serial(A));
    const pid = fns.sign.child.pid;
    volume.update({ "ca-pool.yaml": pool([stated(A, "superseded"), stated(B, "active")]) });
    await afterCheckInterval();
    expect(await issuedBy()).toBe(serial(B));
    expect(fns.sign.child.pid).toBe(pid);
    expect(fns.sign.child.exitCode).toBeNull();
    expect(fns.sign.stderr()).toMatch(new RegExp(`"msg":"CA pool reloaded".*"signer":"${ATE.replaceAll(".", "\\.")}","signing":"${serial(B)}"`));

    const text = await metrics();
    expect(sample(text, "podcert_ca_state", { signer: ATE, serial: serial(A), state: "superseded" })).toBe(1);
    expect(sample(text, "podcert_ca_state", { signer: ATE, serial: serial(A), state: "active" })).toBe(0);
    expect(sample(text, "podcert_ca_state", { signer: ATE, serial: serial(B), state: "active" })).toBe(1);
    expect(sample(text, "podcert_ca_state", { signer: WORKER, serial: serial(W), state: "active" })).toBe(1);
    const untilA = sample(text, "podcert_ca_seconds_until_expiry", { signer: ATE, serial: serial(A) })!;
    const untilB = sample(text, "podcert_ca_seconds_until_expiry", { signer: ATE, serial: serial(B) })!;
    const expected = (ca: Ca) => (new Date(new X509Certificate(ca.certificate).validTo).getTime() - Date.now()) / 1000;
    expect(Math.abs(untilA - expected(A))).toBeLessThan(60);
    expect(Math.abs(untilB - expected(B))).toBeLessThan(60);
    expect(untilB).toBeGreaterThan(untilA + 29 * 86400);
    const reloadedAt = sample(text, "podcert_ca_pool_last_reload_timestamp_seconds")!;
    expect(Date.now() / 1000 - reloadedAt).toBeLessThan(30);
    expect(sample(text, "podcert_ca_pool_last_reload_successful")).toBe(1);
    expect(sample(text, "podcert_ca_pool_reload_failures_total")).toBe(0);
  });

  it("refuses a partial file, logged once and counted, and keeps signing with the last good pool", async () => {
    const good = pool([stated(A, "superseded"), stated(B, "active")]);
    const before = fns.sign.stderr().length;
    volume.update({ "ca-pool.yaml": good.slice(0, Math.floor(good.length * 0.6)) });
    await afterCheckInterval();
    expect(await issuedBy()).toBe(serial(B));
    expect(await issuedBy()).toBe(serial(B));
    const log = fns.sign.stderr().slice(before);
    expect(log.match(/"msg":"CA pool file refused; still signing with the last good pool"/g)).toHaveLength(1);
    // The cut leaves YAML that parses or not, depending on where it falls: either way it names a problem.
    expect(log).toMatch(/"level":"error","msg":"CA pool file refused; still signing with the last good pool".*"error":"[^"]+"/);
    const text = await metrics();
    expect(sample(text, "podcert_ca_pool_reload_failures_total")).toBe(1);
    expect(sample(text, "podcert_ca_pool_last_reload_successful")).toBe(0);
    expect(sample(text, "podcert_ca_state", { signer: ATE, serial: serial(B), state: "active" })).toBe(1);
  });

  it("leaves the request pending when the active CA expires within the hour: the log and a Warning Event name the CA and what to do", async () => {
    volume.update({ "ca-pool.yaml": pool([stated(A, "superseded"), stated(B, "superseded"), stated(C, "active")]) });
    await afterCheckInterval();
    const { pcr, event } = await toSign();
    const before = fns.sign.stderr().length;
    const s = await postEvent(fns.sign.url, event);
    expect(s.status, s.text).toBe(503);
    expect(terminalCondition(stored(pcr))).toBeUndefined();
    expect(stored(pcr).status?.certificateChain).toBeUndefined();

    const notAfter = new Date(new X509Certificate(C.certificate).validTo).toISOString();
    const says = new RegExp(
      `the CA signer ${ATE.replaceAll(".", "\\.")} signs with \\(serial ${serial(C)}\\) expires at ${notAfter}, \\d+s from now, less than the 3600s a certificate needs; ` +
        `requests stay pending until a new CA signs\\. Prepare and activate a new CA: podcert ca rotate --ca-pool <file> --signer ${ATE.replaceAll(".", "\\.")} prepare`,
    );
    let events: { type: string; reason: string; message: string; involvedObject: { uid: string } }[] = [];
    for (let i = 0; i < 100; i++) {
      events = (env.api.store.list("events", { namespace: "ate-system" }).items as unknown as typeof events).filter((e) => e.involvedObject.uid === pcr.metadata.uid);
      if (events.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "Warning", reason: "CAExpiring", message: expect.stringMatching(says) });
    const log = fns.sign.stderr().slice(before);
    expect(log).toMatch(new RegExp(`"msg":"decision".*"pcrName":"${pcr.metadata.name}".*"outcome":"waiting","reason":"CAExpiring","message":"${says.source}`));
    const text = await metrics();
    const untilC = sample(text, "podcert_ca_seconds_until_expiry", { signer: ATE, serial: serial(C) })!;
    expect(untilC).toBeGreaterThan(0);
    expect(untilC).toBeLessThan(1800);
  });

  it("never writes a CA key to its log", () => {
    const log = fns.sign.stderr();
    expect(log).toContain("CA pool reloaded");
    for (const ca of [A, B, C, W]) {
      const der = pemDecodeAll(ca.privateKey)[0]!.der.toString("base64");
      const d = (createPrivateKey(ca.privateKey).export({ format: "jwk" }) as { d: string }).d;
      expect(log).not.toContain(der.slice(-40));
      expect(log).not.toContain(d);
    }
  });

  it("still refuses to start on a pool file that does not load (exit 78, naming the problem)", async () => {
    const broken = secretVolume(join(env.dir, "broken-volume"), { "ca-pool.yaml": "apiVersion: [\n" });
    await expect(env.serve("sign", { PODCERT_CA_POOL: broken.path("ca-pool.yaml") })).rejects.toThrow(/exited 78.*cannot start.*CA pool is not valid YAML or JSON/s);
  });
});
