// `podcert invoke`: one function at a time, replies chaining into the next, attestations enforced.
import { fixture } from "../helpers/kubernetes.js";
import { tempDir } from "../helpers/temp.js";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { EVENT_TYPES } from "../../shared/steps.js";
import { podcert } from "./cli.js";

const ISSUED = fixture("clusters/issued.yaml");
const DENIED = fixture("clusters/denied.yaml");

let dir: string;
let keys: string;
let otherKeys: string;
let caPool: string;

function save(name: string, json: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof json === "string" ? json : JSON.stringify(json));
  return path;
}

beforeAll(async () => {
  dir = tempDir("podcert-invoke-");
  keys = join(dir, "keys");
  otherKeys = join(dir, "other-keys");
  caPool = join(dir, "ca.yaml");
  for (const args of [["keys", "init", "--out", keys], ["keys", "init", "--out", otherKeys], ["ca", "init", "--out", caPool]]) {
    const r = await podcert(args);
    expect(r.code, r.stderr).toBe(0);
  }
});

describe("podcert invoke", () => {
  let validated: Record<string, unknown>;
  let derived: Record<string, unknown>;

  it("chains validate → derive-sans → sign for a stateful pod behind a headless Service", async () => {
    const v = await podcert(["invoke", "validate", "--event", fixture("events/issued/valkey-0.json"), "--cluster", ISSUED, "--keys", keys]);
    expect(v.code, v.stderr).toBe(0);
    validated = JSON.parse(v.stdout) as Record<string, unknown>;
    expect(validated.type).toBe(EVENT_TYPES.validated);

    const d = await podcert(["invoke", "derive-sans", "--event", save("validated.json", v.stdout), "--cluster", ISSUED, "--keys", keys]);
    expect(d.code, d.stderr).toBe(0);
    derived = JSON.parse(d.stdout) as Record<string, unknown>;
    expect(derived.type).toBe(EVENT_TYPES.sansDerived);

    const s = await podcert(["invoke", "sign", "--event", save("derived.json", d.stdout), "--cluster", ISSUED, "--keys", keys, "--ca-pool", caPool]);
    expect(s.code, s.stderr).toBe(0);
    const issued = JSON.parse(s.stdout) as { type: string; data: { pcr: { name: string } } };
    expect(issued.type).toBe(EVENT_TYPES.issued);
    expect(issued.data.pcr.name).toBe("req-valkey-0");
    // The audit line: serial and fingerprint, never key material.
    expect(s.stderr).toMatch(/"serialNumber":"[0-9a-f]+"/);
    expect(s.stderr).toMatch(/"fingerprintSha256":"[0-9a-f]{64}"/);
    expect(s.stderr).not.toMatch(/PRIVATE KEY/);
    expect(s.stderr).not.toContain(readFileSync(caPool, "utf8").match(/MI[A-Za-z0-9+/]{40}/g)?.at(-1) ?? "unmatched");
    // The issued chain, on stderr (stdout holds the reply).
    expect(s.stderr).toMatch(/issued certificate chain of \S+\/req-valkey-0 \(--out <file> writes it to a file\):\n-----BEGIN CERTIFICATE-----\n/);
  });

  it("writes the chain sign issued to --out: a certificate for the request's key", async () => {
    const out = join(dir, "chain.pem");
    const s = await podcert(["invoke", "sign", "--event", join(dir, "derived.json"), "--cluster", ISSUED, "--keys", keys, "--ca-pool", caPool, "--out", out]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(/wrote the issued certificate chain of \S+\/req-valkey-0 to /);
    const leaf = new X509Certificate(readFileSync(out, "utf8"));
    expect(leaf.subjectAltName).toContain("valkey-0.valkey.ate-system.svc");
  });

  it("takes --out only for sign", async () => {
    const r = await podcert(["invoke", "validate", "--event", fixture("events/issued/valkey-0.json"), "--cluster", ISSUED, "--keys", keys, "--out", join(dir, "x.pem")]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--out is an option of invoke sign only/);
  });

  it("carries the traceparent from each input event to its reply", async () => {
    const event = JSON.parse(readFileSync(fixture("events/issued/router-ed25519.json"), "utf8")) as Record<string, unknown>;
    event.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const v = await podcert(["invoke", "validate", "--event", save("traced.json", event), "--cluster", ISSUED, "--keys", keys]);
    expect(v.code, v.stderr).toBe(0);
    expect((JSON.parse(v.stdout) as { traceparent: string }).traceparent).toBe(event.traceparent);
  });

  it("rejects (exit 65) a sans.derived event without derive-sans' attestation", async () => {
    const forged = structuredClone(derived) as { data: { attestations: Record<string, string> } };
    delete forged.data.attestations["derive-sans"];
    const s = await podcert(["invoke", "sign", "--event", save("forged1.json", forged), "--cluster", ISSUED, "--keys", keys, "--ca-pool", caPool]);
    expect(s.code).toBe(65);
    expect(s.stderr).toMatch(/missing attestation from step derive-sans/);
    expect(s.stdout).toBe("");
  });

  it("rejects (exit 65) an attestation made with another deployment's keys", async () => {
    const s = await podcert(["invoke", "sign", "--event", save("derived2.json", derived), "--cluster", ISSUED, "--keys", otherKeys, "--ca-pool", caPool]);
    expect(s.code).toBe(65);
    expect(s.stderr).toMatch(/signature does not verify/);
  });

  it("rejects (exit 65) a validated attestation replayed for another PCR", async () => {
    const moved = structuredClone(validated) as { data: { pcr: { name: string; uid: string } } };
    moved.data.pcr.name = "req-router-ed25519";
    const d = await podcert(["invoke", "derive-sans", "--event", save("moved.json", moved), "--cluster", ISSUED, "--keys", keys]);
    expect(d.code).toBe(65);
    expect(d.stderr).toMatch(/does not match the event/);
  });

  it("says nothing (exit 0) for a signer it does not serve", async () => {
    const event = JSON.parse(readFileSync(fixture("events/issued/router-ed25519.json"), "utf8")) as { data: { spec: { signerName: string } } };
    event.data.spec.signerName = "example.com/not-ours";
    const v = await podcert(["invoke", "validate", "--event", save("other-signer.json", event), "--cluster", ISSUED, "--keys", keys]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe("");
  });

  it("exits 75 (transient) while the Services a pod expects do not exist", async () => {
    const v = await podcert(["invoke", "validate", "--event", fixture("events/denied/missing-service.json"), "--cluster", DENIED, "--keys", keys]);
    expect(v.code, v.stderr).toBe(0);
    const d = await podcert(["invoke", "derive-sans", "--event", save("missing.json", v.stdout), "--cluster", DENIED, "--keys", keys]);
    expect(d.code).toBe(75);
    expect(d.stderr).toMatch(/not-there-yet does not exist/);
  });

  it("hands a denial from validate to deny, which writes it (no reply)", async () => {
    const v = await podcert(["invoke", "validate", "--event", fixture("events/denied/wrong-proof.json"), "--cluster", DENIED, "--keys", keys]);
    expect(v.code, v.stderr).toBe(0);
    const denied = JSON.parse(v.stdout) as { type: string };
    expect(denied.type).toBe(EVENT_TYPES.denied);
    const d = await podcert(["invoke", "deny", "--event", save("denied.json", v.stdout), "--cluster", DENIED, "--keys", keys]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toBe("");
    expect(d.stderr).toMatch(/"outcome":"denied".*"reason":"InvalidProofOfPossession"/);
  });

  it("refuses to send sign a denial (wrong event type: 65)", async () => {
    const v = await podcert(["invoke", "validate", "--event", fixture("events/denied/rsa2048.json"), "--cluster", DENIED, "--keys", keys]);
    const s = await podcert(["invoke", "sign", "--event", save("denied-to-sign.json", v.stdout), "--cluster", DENIED, "--keys", keys, "--ca-pool", caPool]);
    expect(s.code).toBe(65);
  });
});
