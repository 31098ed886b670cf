/**
 * shared/ca/pool-source.ts: the pool file followed as kubelet updates a Secret volume (a new
 * folder behind the `..data` symlink), a refused file keeping the last good pool, and no key
 * material in what it logs.
 */
import { createPrivateKey } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createCa } from "../../../cli/ca-create.js";
import { activeCa, serializeCaPool, type CaPoolDocument, type CaState } from "../../../shared/ca/pool.js";
import { openCaPoolFile, type CaPoolLog } from "../../../shared/ca/pool-source.js";
import { ConfigError } from "../../../shared/errors.js";
import { pemDecodeAll } from "../../../shared/x509/pem.js";
import { secretVolume } from "../../helpers/secret-volume.js";

const SIGNER = "example.com/identity";
const OTHER = "example.com/other";
const T = new Date();
type Ca = { certificate: string; privateKey: string };
let A: Ca;
let B: Ca;
let O: Ca;

beforeAll(async () => {
  [A, B, O] = await Promise.all([
    createCa({ signerName: SIGNER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: T }),
    createCa({ signerName: SIGNER, keyAlgorithm: "ED25519", validityDays: 60, now: T }),
    createCa({ signerName: OTHER, keyAlgorithm: "ECDSAP256", validityDays: 30, now: T }),
  ]);
});

const stated = (ca: Ca, state: CaState) => ({ ...ca, state, since: { [state]: T.toISOString() } });
const poolText = (cas: CaPoolDocument["signers"][number]["cas"], other = true): string =>
  serializeCaPool({
    apiVersion: "podcert.ate.dev/v1alpha1",
    kind: "CAPool",
    signers: [{ signerName: SIGNER, cas }, ...(other ? [{ signerName: OTHER, cas: [stated(O, "active")] }] : [])],
  });
/** Pool A: A signs. Pool B: B signs, A superseded (still published). */
const poolA = () => poolText([stated(A, "active")]);
const poolB = () => poolText([stated(A, "superseded"), stated(B, "active")]);

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A Secret volume holding `text`, and a source on it with a clock the test moves. */
function setup(text: string, o: { signers?: string[] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "podcert-pool-source-"));
  dirs.push(dir);
  const volume = secretVolume(join(dir, "ca"), { "ca-pool.yaml": text });
  const lines: string[] = [];
  // The raw fields, not through the function logger: its PEM redaction must not hide a leak here.
  const log: CaPoolLog = {
    info: (msg, fields) => void lines.push(JSON.stringify({ level: "info", msg, ...fields })),
    error: (msg, fields) => void lines.push(JSON.stringify({ level: "error", msg, ...fields })),
  };
  let now = 0;
  const source = openCaPoolFile(volume.path("ca-pool.yaml"), { log, signers: o.signers ?? [SIGNER, OTHER], clock: () => now });
  return {
    volume,
    source,
    lines,
    logged: (msg: string) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg),
    advance: (ms: number) => void (now += ms),
  };
}

const signingSerial = (s: ReturnType<typeof setup>) => activeCa(s.source.current(), SIGNER, new Date()).serialHex;
const serialOf = (s: ReturnType<typeof setup>, ca: Ca) => [...s.source.current().signers.get(SIGNER)!].find((c) => c.certificatePem.trim() === ca.certificate.trim())?.serialHex;

/** A CA's private key as a leak would show it: the PKCS#8 DER in base64 (a run of it), and the JWK scalar d. */
function secretsOf(ca: Ca): string[] {
  const der = pemDecodeAll(ca.privateKey)[0]!.der.toString("base64");
  const d = (createPrivateKey(ca.privateKey).export({ format: "jwk" }) as { d: string }).d;
  return [der.slice(-40), d];
}

describe("openCaPoolFile", () => {
  it("follows a Secret volume update (the ..data symlink swapped to a new folder) at the next check, at most once a second", () => {
    const s = setup(poolA());
    const a = signingSerial(s);
    s.volume.update({ "ca-pool.yaml": poolB() });
    s.advance(999);
    expect(signingSerial(s)).toBe(a); // not looked at yet
    s.advance(1);
    const b = signingSerial(s);
    expect(b).not.toBe(a);
    expect(b).toBe(serialOf(s, B));
    expect(s.source.state()).toMatchObject({ upToDate: true, refusals: 0 });
    // Which CA signs and which are published, by serial and state.
    expect(s.logged("CA pool reloaded")).toMatchObject([
      {
        level: "info",
        signers: [
          { signer: SIGNER, signing: b, published: [{ serial: a, state: "superseded" }, { serial: b, state: "active" }] },
          { signer: OTHER, published: [{ state: "active" }] },
        ],
      },
    ]);
  });

  it("does not reload, nor log, the same content projected again (another key of the Secret changed)", () => {
    const s = setup(poolA());
    const before = s.source.state().loadedAt;
    s.volume.update({ "ca-pool.yaml": poolA() });
    s.advance(1000);
    expect(s.source.state().loadedAt).toBe(before);
    expect(s.logged("CA pool reloaded")).toEqual([]);
  });

  it("refuses a broken or partial file, logging it once and counting it, keeps signing with the last good pool, and takes the next good one", () => {
    const s = setup(poolA());
    const a = signingSerial(s);
    const good = poolB();
    const cases = [
      { content: good.slice(0, Math.floor(good.length / 2)), problem: /^CA pool is (invalid|not valid YAML or JSON)/ },
      { content: "apiVersion: [\n", problem: /^CA pool is not valid YAML or JSON \([A-Z_]+/ },
      // B's certificate with A's key: parses, but the key does not match.
      { content: poolText([stated(A, "superseded"), { ...stated(B, "active"), privateKey: A.privateKey }]), problem: /signers\[0\]\.cas\[1\] \(signer example\.com\/identity\): / },
      { content: poolText([stated(B, "active")], false), problem: /^the CA pool has no CA for signer example\.com\/other, which the configuration serves$/ },
    ];
    cases.forEach(({ content, problem }, i) => {
      s.volume.update({ "ca-pool.yaml": content });
      s.advance(1000);
      expect(signingSerial(s)).toBe(a);
      // The same bad content again (a new inode): neither logged nor counted again.
      s.volume.update({ "ca-pool.yaml": content });
      s.advance(1000);
      expect(signingSerial(s)).toBe(a);
      expect(s.source.state()).toMatchObject({ upToDate: false, refusals: i + 1 });
      const refused = s.logged("CA pool file refused; still signing with the last good pool");
      expect(refused).toHaveLength(i + 1);
      expect(refused[i]).toMatchObject({ level: "error", path: s.volume.path("ca-pool.yaml"), error: expect.stringMatching(problem) });
    });
    s.volume.update({ "ca-pool.yaml": good });
    s.advance(1000);
    expect(signingSerial(s)).toBe(serialOf(s, B));
    expect(s.source.state()).toMatchObject({ upToDate: true, refusals: cases.length });
    for (const secret of [...secretsOf(A), ...secretsOf(B), ...secretsOf(O)]) expect(s.lines.join("\n")).not.toContain(secret);
  });

  it("reads a file written in place again when the write goes on (a partial read is not the last word)", () => {
    const s = setup(poolA());
    const path = s.volume.path("ca-pool.yaml");
    const text = poolB();
    // Not kubelet's way, but an editor's: the same inode, truncated, then written in two parts.
    writeFileSync(path, text.slice(0, 200));
    s.advance(1000);
    expect(signingSerial(s)).not.toBe(serialOf(s, B));
    appendFileSync(path, text.slice(200));
    s.advance(1000);
    expect(signingSerial(s)).toBe(serialOf(s, B));
    expect(s.source.state().refusals).toBe(1);
  });

  it("keeps the last good pool while the file is missing, saying so once, and takes it back", () => {
    const s = setup(poolA());
    const a = signingSerial(s);
    const target = join(s.volume.dir, "..data", "ca-pool.yaml");
    unlinkSync(target);
    for (let i = 0; i < 3; i++) {
      s.advance(1000);
      expect(signingSerial(s)).toBe(a);
    }
    expect(s.logged("CA pool file refused; still signing with the last good pool")).toMatchObject([{ error: "cannot read the CA pool: ENOENT" }]);
    s.volume.update({ "ca-pool.yaml": poolA() });
    s.advance(1000);
    expect(s.source.state()).toMatchObject({ upToDate: true, refusals: 1 });
  });

  it("fails at start on a file that does not load (no last good pool): a ConfigError naming the problem", () => {
    expect(() => setup("apiVersion: [\n")).toThrow(ConfigError);
    expect(() => setup(poolA(), { signers: [SIGNER, OTHER, "example.com/third"] })).toThrow(/no CA for signer example\.com\/third/);
    const dir = mkdtempSync(join(tmpdir(), "podcert-pool-source-"));
    dirs.push(dir);
    expect(() => openCaPoolFile(join(dir, "nothing.yaml"), { log: { info() {}, error() {} } })).toThrow(/cannot read CA pool .*nothing\.yaml: ENOENT/);
  });

  it("logs the pool it starts with, by serial and state, and never a key", () => {
    const s = setup(poolB());
    expect(s.logged("CA pool loaded")).toMatchObject([{ signers: [{ signer: SIGNER, signing: serialOf(s, B) }, { signer: OTHER }] }]);
    for (const secret of [...secretsOf(A), ...secretsOf(B)]) expect(s.lines.join("\n")).not.toContain(secret);
  });
});
