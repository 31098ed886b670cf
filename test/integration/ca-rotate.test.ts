// `podcert ca rotate` and `podcert ca status` as an operator runs them, on a pool from `ca init`.
// The timing rules are tested with a fixed clock in test/unit/cli/ca-rotation.test.ts; here time
// "passes" by moving the recorded since-times back, as if the commands had run that much earlier.
import { tempDir } from "../helpers/temp.js";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, realpathSync, lstatSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseCaPool, parseCaPoolDocument, serializeCaPool, type CaPoolDocument } from "../../shared/ca/pool.js";
import { ATESYSTEM_SIGNER, WORKERPOOL_SIGNER } from "../../shared/profiles/defaults.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { testCa } from "../helpers/ca.js";
import { podcert, type CliResult } from "./cli.js";
import { PUBLICATION_DELAY_SECONDS } from "../../cli/ca-rotation.js";

const HOUR = 3_600_000;
let dir: string;
let n = 0;
let usagePool: Promise<string> | undefined;

beforeAll(() => {
  dir = tempDir("podcert-rotate-");
});

/** A fresh pool from `ca init`, in a folder of its own. */
async function initPool(): Promise<string> {
  const d = mkdtempSync(join(dir, `p${n++}-`));
  const path = join(d, "ca-pool.yaml");
  const r = await podcert(["ca", "init", "--out", path]);
  expect(r.code, r.stderr).toBe(0);
  return path;
}

const rotate = (path: string, ...args: string[]) => podcert(["ca", "rotate", "--ca-pool", path, "--signer", WORKERPOOL_SIGNER, ...args]);

/** Every private key's body in the pool, for checking that no output quotes one. */
function keyBodies(path: string): string[] {
  return parseCaPoolDocument(readFileSync(path, "utf8")).signers.flatMap((s) => s.cas.map((c) => pemDecodeAll(c.privateKey)[0]!.der.toString("base64")));
}

function quotesNoKey(r: CliResult, keys: string[]): void {
  const out = r.stdout + r.stderr;
  expect(out).not.toMatch(/PRIVATE KEY/);
  for (const k of keys) for (let i = 0; i + 24 <= k.length; i += 24) expect(out).not.toContain(k.slice(i, i + 24));
}

/** As if every since-time of the signer were `hours` earlier (the file keeps its mode). */
function movePast(path: string, hours: number): void {
  const doc = parseCaPoolDocument(readFileSync(path, "utf8"));
  for (const ca of doc.signers.find((s) => s.signerName === WORKERPOOL_SIGNER)!.cas) {
    ca.since = Object.fromEntries(Object.entries(ca.since ?? {}).map(([state, t]) => [state, new Date(Date.parse(t) - hours * HOUR).toISOString()]));
  }
  writeFileSync(path, serializeCaPool(doc));
}

const statesOf = (path: string, signer = WORKERPOOL_SIGNER) =>
  [...parseCaPool(readFileSync(path, "utf8")).signers.get(signer)!].map((c) => ({ serial: c.serialHex, state: c.state }));

/** The file is as it was, and no temporary file is left beside it. */
function unchanged(path: string, before: string): void {
  expect(readFileSync(path, "utf8")).toBe(before);
  expect(readdirSync(join(path, ".."))).toEqual(["ca-pool.yaml"]);
}

describe("podcert ca rotate", () => {
  it("runs a whole rotation on a pool from ca init: prepare, activate, retire, each rewriting the pool (mode 0600) and saying what comes next", async () => {
    const path = await initPool();
    const [initial] = statesOf(path);

    const prep = await rotate(path, "prepare");
    expect(prep.code, prep.stderr).toBe(0);
    expect(prep.stdout).toBe("");
    expect(prep.stderr).toMatch(new RegExp(`^creating a new CA \\(ECDSAP256\\) for ${WORKERPOOL_SIGNER}\\nsigner ${WORKERPOOL_SIGNER}: gave its CAs rotation states \\(${initial!.serial} active\\); prepared CA (\\w+) \\(published, not signing, once this pool is applied; the propagation time counts from now\\)\\. Next: activate CA \\1 from \\S+Z\\n$`));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const [, prepared] = statesOf(path);
    expect(statesOf(path)).toEqual([{ serial: initial!.serial, state: "active" }, { serial: prepared!.serial, state: "prepared" }]);
    expect(statesOf(path, ATESYSTEM_SIGNER)).toEqual([{ serial: expect.any(String), state: undefined }]); // other signers untouched
    quotesNoKey(prep, keyBodies(path));

    movePast(path, 1); // the prepared CA has been published for an hour
    const act = await rotate(path, "activate");
    expect(act.code, act.stderr).toBe(0);
    expect(act.stderr).toMatch(new RegExp(`^signer ${WORKERPOOL_SIGNER}: CA ${prepared!.serial} is active .*; CA ${initial!.serial} superseded \\(still published\\)\\. Next: retire CA ${initial!.serial} from \\S+Z\\n$`));
    expect(statesOf(path)).toEqual([{ serial: initial!.serial, state: "superseded" }, { serial: prepared!.serial, state: "active" }]);
    expect(statSync(path).mode & 0o777).toBe(0o600);

    movePast(path, 25); // longer than the signer's maximum lifetime (24h) and the margin
    const ret = await rotate(path, "retire");
    expect(ret.code, ret.stderr).toBe(0);
    expect(ret.stderr).toMatch(new RegExp(`^signer ${WORKERPOOL_SIGNER}: retired superseded CA ${initial!.serial} \\(no longer published\\)\\. Next: rotate before \\S+Z\\n$`));
    expect(statesOf(path)).toEqual([{ serial: initial!.serial, state: "retired" }, { serial: prepared!.serial, state: "active" }]);
    const bundle = await podcert(["ca", "bundle", "--ca-pool", path, "--signer", WORKERPOOL_SIGNER]);
    expect(new X509Certificate(bundle.stdout).serialNumber).toBe(prepared!.serial);
    expect(readdirSync(join(path, ".."))).toEqual(["ca-pool.yaml"]);
  });

  it("refuses a step that is not safe yet with 75 and says from when; a structural refusal with 65; the file stays byte for byte", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    const before = readFileSync(path, "utf8");
    const keys = keyBodies(path);

    const early = await rotate(path, "activate");
    expect(early.code).toBe(75);
    expect(early.stderr).toMatch(/^podcert: the prepared CA \w+ was prepared at \S+ and is in the published bundles by \S+ at the latest; pods may not trust it yet\. Activate from \S+Z \(published for at least the propagation time, 10m\)\n$/);
    unchanged(path, before);

    const second = await rotate(path, "prepare");
    expect(second.code).toBe(65);
    expect(second.stderr).toMatch(/already has a prepared CA/);
    unchanged(path, before);

    const noSuperseded = await rotate(path, "retire");
    expect(noSuperseded.code).toBe(65);
    expect(noSuperseded.stderr).toMatch(/no superseded CA to retire; to abort the rotation, retire the prepared CA with --serial \w+/);
    unchanged(path, before);

    const active = statesOf(path)[0]!.serial;
    const activeRetire = await rotate(path, "retire", "--serial", active, "--force");
    expect(activeRetire.code).toBe(65);
    expect(activeRetire.stderr).toMatch(/is the active CA .* never retired: activate another first/);
    unchanged(path, before);
    for (const r of [early, second, noSuperseded, activeRetire]) quotesNoKey(r, keys);
  });

  it("--force skips a waiting rule, saying on stderr what it risks", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    const act = await rotate(path, "activate", "--force");
    expect(act.code, act.stderr).toBe(0);
    expect(act.stderr).toMatch(/^podcert: --force: activated CA \w+ before it was published for 10m: pods that have not received it yet will fail handshakes with certificates it signs\n/);
    const ret = await rotate(path, "retire", "--force");
    expect(ret.code, ret.stderr).toBe(0);
    expect(ret.stderr).toMatch(/^podcert: --force: retired CA (\w+) early: certificates signed by CA \1 until \S+ will no longer verify once pods receive the new bundle\n/);
    expect(statesOf(path).map((c) => c.state)).toEqual(["retired", "active"]);
  });

  it("--propagation sets the wait before activate", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    movePast(path, 0.5);
    expect((await rotate(path, "activate", "--propagation", "1h")).code).toBe(75);
    expect((await rotate(path, "activate", "--propagation", "20m")).code).toBe(0);
  });

  it("aborts a rotation by retiring the prepared CA at once", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    const prepared = statesOf(path)[1]!.serial;
    const r = await rotate(path, "retire", "--serial", prepared.toLowerCase());
    expect(r.code, r.stderr).toBe(0);
    expect(statesOf(path).map((c) => c.state)).toEqual(["active", "retired"]);
  });

  it("imports an intermediate under an offline root (key in SEC1 form, stored as PKCS#8); the root is what gets published", async () => {
    const path = await initPool();
    const now = Date.now();
    const root = await testCa({ name: "Offline Root", notBefore: new Date(now - HOUR), notAfter: new Date(now + 3000 * 24 * HOUR) });
    const int = await testCa({ name: "Issuing CA", notBefore: new Date(now - HOUR), notAfter: new Date(now + 300 * 24 * HOUR), issuer: root });
    const d = join(path, "..", "..", `import-${n++}`);
    const files = { cert: `${d}-cert.pem`, key: `${d}-key.pem`, chain: `${d}-chain.pem` };
    writeFileSync(files.cert, int.certificate);
    writeFileSync(files.key, createPrivateKey(int.privateKey).export({ type: "sec1", format: "pem" }) as string);
    writeFileSync(files.chain, root.certificate);
    const r = await rotate(path, "prepare", "--certificate", files.cert, "--private-key", files.key, "--chain", files.chain);
    expect(r.code, r.stderr).toBe(0);
    const ca = parseCaPoolDocument(readFileSync(path, "utf8")).signers.find((s) => s.signerName === WORKERPOOL_SIGNER)!.cas[1]!;
    expect(ca.privateKey).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(ca.state).toBe("prepared");
    const bundle = await podcert(["ca", "bundle", "--ca-pool", path, "--signer", WORKERPOOL_SIGNER]);
    const published = pemDecodeAll(bundle.stdout).map((b) => new X509Certificate(b.der).subject);
    expect(published).toEqual([expect.stringContaining(`${WORKERPOOL_SIGNER} CA`), "CN=Offline Root"]);
  });

  it("refuses an imported CA whose key does not match, naming the file and not the key; the pool is unchanged", async () => {
    const path = await initPool();
    const before = readFileSync(path, "utf8");
    const now = Date.now();
    const a = await testCa({ name: "A", notBefore: new Date(now - HOUR), notAfter: new Date(now + 300 * 24 * HOUR) });
    const b = await testCa({ name: "B", notBefore: new Date(now - HOUR), notAfter: new Date(now + 300 * 24 * HOUR) });
    const base = join(path, "..", "..", `mismatch-${n++}`);
    writeFileSync(`${base}-cert.pem`, a.certificate);
    writeFileSync(`${base}-key.pem`, b.privateKey);
    const r = await rotate(path, "prepare", "--certificate", `${base}-cert.pem`, "--private-key", `${base}-key.pem`);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(`podcert: the CA to import (--certificate ${base}-cert.pem): the private key does not match CA certificate CN=A\n`);
    quotesNoKey(r, [pemDecodeAll(b.privateKey)[0]!.der.toString("base64")]);
    unchanged(path, before);

    writeFileSync(`${base}-garbage.pem`, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    const g = await rotate(path, "prepare", "--certificate", `${base}-cert.pem`, "--private-key", `${base}-garbage.pem`);
    expect(g.code).toBe(78);
    expect(g.stderr).toMatch(/is not a usable PEM private key/);
    unchanged(path, before);
  });

  it("refuses a CA too short for the signer's maximum lifetime", async () => {
    const path = await initPool();
    const before = readFileSync(path, "utf8");
    const r = await rotate(path, "prepare", "--validity-days", "1");
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/it must cover a full certificate \(24h\) for at least 1h after now/);
    unchanged(path, before);
  });

  it("rewrites the file a symlink points to, and keeps the link", async () => {
    const path = await initPool();
    const link = join(path, "..", "..", `link-${n++}.yaml`);
    symlinkSync(path, link);
    const r = await podcert(["ca", "rotate", "--ca-pool", link, "--signer", WORKERPOOL_SIGNER, "prepare"]);
    expect(r.code, r.stderr).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(realpathSync(link)).toBe(path);
    expect(statesOf(path).map((c) => c.state)).toEqual(["active", "prepared"]);
  });

  it.each([
    { case: "no step", args: [], code: 64, m: /expected one of prepare, activate, retire/ },
    { case: "an unknown step", args: ["rollback"], code: 64, m: /expected one of prepare, activate, retire/ },
    { case: "an option of another step", args: ["activate", "--serial", "01"], code: 64, m: /--serial is not an option of ca rotate activate/ },
    { case: "--force on prepare", args: ["prepare", "--force"], code: 64, m: /--force is not an option of ca rotate prepare/ },
    { case: "a bad duration", args: ["activate", "--propagation", "10x"], code: 64, m: /--propagation must be a duration like 10m, 90s or 1h/ },
    { case: "half an import", args: ["prepare", "--certificate", "x.pem"], code: 64, m: /both --certificate and --private-key/ },
  ])("refuses $case as a usage error", async ({ args, code, m }) => {
    usagePool ??= initPool(); // never changed: one for all the cases
    const r = await rotate(await usagePool, ...args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(m);
  });

  it("refuses a signer that is not configured (its lifetime decides the waits) and a pool that does not load", async () => {
    const path = await initPool();
    const r = await podcert(["ca", "rotate", "--ca-pool", path, "--signer", "example.com/other", "prepare"]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/signer example\.com\/other is not in the signer configuration \(the built-in one: .*\); .* pass the --config sign uses/);
    const broken = join(path, "..", "broken.yaml");
    writeFileSync(broken, "apiVersion: podcert.ate.dev/v1alpha1\nkind: CAPool\nsigners: []\n", { mode: 0o600 });
    const b = await podcert(["ca", "rotate", "--ca-pool", broken, "--signer", WORKERPOOL_SIGNER, "prepare"]);
    expect(b.code).toBe(78);
    expect(b.stderr).toMatch(/CA pool is invalid/);
    expect(readFileSync(broken, "utf8")).toMatch(/signers: \[\]/);
  });
});

describe("podcert ca status", () => {
  it("prints a table: signer, serial, fingerprint, state, since, not after, next step", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    const r = await podcert(["ca", "status", "--ca-pool", path]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^SIGNER +SERIAL +SHA-256 +STATE +SINCE +NOT AFTER +NEXT$/);
    const cols = (line: string) => line.split(/ {2,}/);
    const rows = lines.slice(1).map(cols);
    const doc: CaPoolDocument = parseCaPoolDocument(readFileSync(path, "utf8"));
    const fp = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase().slice(0, 16);
    const ate = doc.signers.find((s) => s.signerName === ATESYSTEM_SIGNER)!.cas[0]!;
    const [active, prepared] = doc.signers.find((s) => s.signerName === WORKERPOOL_SIGNER)!.cas;
    expect(rows).toEqual([
      [ATESYSTEM_SIGNER, new X509Certificate(ate.certificate).serialNumber, fp(ate.certificate), "(none, signs)", "-", expect.stringMatching(/Z$/), expect.stringMatching(/^rotate before \S+Z$/)],
      [WORKERPOOL_SIGNER, new X509Certificate(active!.certificate).serialNumber, fp(active!.certificate), "active", expect.stringMatching(/Z$/), expect.stringMatching(/Z$/), "—"],
      [WORKERPOOL_SIGNER, new X509Certificate(prepared!.certificate).serialNumber, fp(prepared!.certificate), "prepared", expect.stringMatching(/Z$/), expect.stringMatching(/Z$/), expect.stringMatching(/^activate from \S+Z$/)],
    ]);
    // aligned: every column starts at the same place on every line
    const starts = (line: string) => [...line.matchAll(/(?<= {2})\S/g)].map((m) => m.index);
    expect(new Set(lines.map((l) => starts(l).slice(0, 5).join(","))).size).toBe(1);
    quotesNoKey(r, keyBodies(path));
  });

  it("--output json gives the same facts for scripts", async () => {
    const path = await initPool();
    expect((await rotate(path, "prepare")).code).toBe(0);
    const r = await podcert(["ca", "status", "--ca-pool", path, "--output", "json", "--propagation", "90s"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      now: string;
      propagationSeconds: number;
      signers: { signerName: string; maxLifetimeSeconds: number; next: { step: string }; cas: { serialHex: string; fingerprintSha256: string; state: string | null; signs: boolean; since: string | null; notAfter: string; next: { step: string; from?: string; text: string } }[] }[];
    };
    expect(out.propagationSeconds).toBe(90);
    const w = out.signers.find((s) => s.signerName === WORKERPOOL_SIGNER)!;
    expect(w.maxLifetimeSeconds).toBe(86400);
    expect(w.next.step).toBe("activate");
    const p = w.cas[1]!;
    expect(p.state).toBe("prepared");
    expect(p.fingerprintSha256).toMatch(/^[0-9a-f]{64}$/);
    // --propagation 90s, counted from when the CA is published at the latest.
    expect(Date.parse(p.next.from!) - Date.parse(p.since!)).toBe(90_000 + PUBLICATION_DELAY_SECONDS * 1000);
    expect(out.signers.find((s) => s.signerName === ATESYSTEM_SIGNER)!.cas[0]).toMatchObject({ state: null, signs: true, since: null });
  });

  it("refuses an unknown --output", async () => {
    const r = await podcert(["ca", "status", "--ca-pool", join(dir, "never-read.yaml"), "--output", "yaml"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--output must be table or json/);
  });
});
