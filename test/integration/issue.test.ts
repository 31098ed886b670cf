// `podcert issue` on the fixture clusters, checking every certificate as a TLS peer would.
import { fixture, KUBERNETES_VERSION, STUB_CSR_SERVED } from "../helpers/kubernetes.js";
import { tempDir } from "../helpers/temp.js";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { casesFor, deniedCases, EXPECTED_DENIALS } from "../../cli/fixtures.js";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { ATESYSTEM_SIGNER, EXPECTS_SERVICE_ANNOTATION, WORKERPOOL_SIGNER } from "../../shared/profiles/defaults.js";
import { podcert } from "./cli.js";
import { certtoolVerify, hasCerttool, hasNss, hasOpenssl, nssVerify, opensslVerify, requestSpki, splitPem, verifiesAgainst } from "./certs.js";

const ISSUED = fixture("clusters/issued.yaml");
const DENIED = fixture("clusters/denied.yaml");

type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown> };
const fixtureObjects = (path: string) => parseAllDocuments(readFileSync(path, "utf8")).map((d) => d.toJSON() as Obj);

let dir: string;
let caPool: string;
const bundles = new Map<string, string>();

/** The stderr of the last `issue` call. */
let issueStderr = "";

async function issue(cluster: string): Promise<PodCertificateRequest[]> {
  const r = await podcert(["issue", "--cluster", cluster, "--ca-pool", caPool]);
  issueStderr = r.stderr;
  expect(r.code, r.stderr).toBe(0);
  const list = JSON.parse(r.stdout) as { kind: string; items: PodCertificateRequest[] };
  expect(list.kind).toBe("List");
  return list.items;
}

beforeAll(async () => {
  dir = tempDir("podcert-issue-");
  caPool = join(dir, "ca-pool.yaml");
  const init = await podcert(["ca", "init", "--out", caPool]);
  expect(init.code, init.stderr).toBe(0);
  for (const signer of [ATESYSTEM_SIGNER, WORKERPOOL_SIGNER]) {
    const b = await podcert(["ca", "bundle", "--ca-pool", caPool, "--signer", signer]);
    expect(b.code, b.stderr).toBe(0);
    bundles.set(signer, b.stdout);
  }
});

describe("podcert issue's logs (LOG_LEVEL, read by the command and passed to the steps)", () => {
  const run = (env: Record<string, string>) => podcert(["issue", "--cluster", DENIED, "--ca-pool", caPool], { env });
  const decisions = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("{") && (JSON.parse(l) as { msg?: string }).msg === "decision");

  it("logs warnings only by default, and the steps' decisions at LOG_LEVEL=info", async () => {
    const quiet = await run({ LOG_LEVEL: "" });
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(decisions(quiet.stderr)).toEqual([]);
    const info = await run({ LOG_LEVEL: "info" });
    expect(info.code, info.stderr).toBe(0);
    expect(decisions(info.stderr).length).toBeGreaterThan(0);
  });

  it("refuses an unknown LOG_LEVEL as a configuration error, naming the levels", async () => {
    const r = await run({ LOG_LEVEL: "verbose" });
    expect(r.code).toBe(78);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe('podcert: environment variable LOG_LEVEL must be one of debug, info, warn, error, got "verbose"\n');
  });
});

/** The SANs a fixture PCR must get, from the fixture cluster's own Services and pods. */
function expectedSans(pcr: PodCertificateRequest, objects: Obj[]): { uris: string[]; dns: string[] } {
  const ns = pcr.metadata.namespace;
  const uris = [`spiffe://cluster.local/ns/${ns}/sa/${pcr.spec.serviceAccountName}`];
  const ask = pcr.spec.unverifiedUserAnnotations?.[EXPECTS_SERVICE_ANNOTATION];
  if (ask === undefined) return { uris, dns: [] };
  const pod = objects.find((o) => o.kind === "Pod" && o.metadata.namespace === ns && o.metadata.name === pcr.spec.podName)!;
  const labels = pod.metadata.labels ?? {};
  const services = objects.filter((o) => {
    if (o.kind !== "Service" || o.metadata.namespace !== ns) return false;
    const sel = (o.spec?.selector ?? {}) as Record<string, string>;
    const type = (o.spec?.type as string | undefined) ?? "ClusterIP";
    return type !== "ExternalName" && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v);
  });
  const wanted = ask === "true" ? services : services.filter((s) => ask.split(",").map((x) => x.trim()).includes(s.metadata.name));
  const dns: string[] = [];
  for (const s of wanted) {
    dns.push(`${s.metadata.name}.${ns}.svc`, `${s.metadata.name}.${ns}.svc.cluster.local`);
    const podSpec = (pod.spec ?? {}) as { hostname?: string; subdomain?: string };
    if (s.spec?.clusterIP === "None" && podSpec.subdomain === s.metadata.name && podSpec.hostname) {
      dns.push(`${podSpec.hostname}.${s.metadata.name}.${ns}.svc`, `${podSpec.hostname}.${s.metadata.name}.${ns}.svc.cluster.local`);
    }
  }
  return { uris, dns };
}

function sanParts(cert: X509Certificate): { uris: string[]; dns: string[] } {
  const parts = (cert.subjectAltName ?? "").split(", ").filter(Boolean);
  return {
    uris: parts.filter((p) => p.startsWith("URI:")).map((p) => p.slice(4)),
    dns: parts.filter((p) => p.startsWith("DNS:")).map((p) => p.slice(4)),
  };
}

describe("podcert issue on the issued fixture cluster", () => {
  let pcrs: PodCertificateRequest[];
  const objects = fixtureObjects(ISSUED);
  beforeAll(async () => {
    pcrs = await issue(ISSUED);
  });
  // The request as the fixture wrote it: the List podcert issue prints is in the version the API
  // server prefers, and v1 (1.37) shows a PKIX-key request without its key.
  const requested = (pcr: PodCertificateRequest) => objects.find((o) => o.kind === "PodCertificateRequest" && o.metadata.name === pcr.metadata.name) as unknown as PodCertificateRequest;

  it("reports progress on a piped stderr as plain lines, without carriage returns, the last one processed N/N PCRs", () => {
    // The test's pipe is not a terminal: no redrawn line (issue 14), at most a line every few
    // seconds (cli/progress.ts), and the final line exactly once.
    expect(issueStderr).not.toMatch(/[\r\x1b]/);
    const progress = issueStderr.split("\n").filter((l) => l.startsWith("processed "));
    expect(progress.at(-1)).toBe(`processed ${pcrs.length}/${pcrs.length} PCRs`);
    expect(progress.filter((l) => l === `processed ${pcrs.length}/${pcrs.length} PCRs`)).toHaveLength(1);
    for (const l of progress.slice(0, -1)) expect(l).toMatch(new RegExp(`^processed \\d+/${pcrs.length} PCRs$`));
  });

  it("issues every request in the fixture", () => {
    const fixturePcrs = objects.filter((o) => o.kind === "PodCertificateRequest");
    expect(pcrs).toHaveLength(fixturePcrs.length);
    for (const pcr of pcrs) expect(terminalCondition(pcr)?.type, `${pcr.metadata.name}: ${terminalCondition(pcr)?.message}`).toBe("Issued");
  });

  it("covers every key type, both signers, and both public-key forms where the control plane has both", () => {
    expect(new Set(pcrs.map((p) => p.spec.signerName))).toEqual(new Set([ATESYSTEM_SIGNER, WORKERPOOL_SIGNER]));
    expect(pcrs.some((p) => requested(p).spec.stubPKCS10Request)).toBe(STUB_CSR_SERVED);
    expect(pcrs.some((p) => requested(p).spec.pkixPublicKey)).toBe(true);
  });

  it("gives each certificate exactly the expected SANs and the status times", () => {
    for (const pcr of pcrs) {
      const [leafPem] = splitPem(pcr.status?.certificateChain ?? "");
      const leaf = new X509Certificate(leafPem!);
      const want = expectedSans(pcr, objects);
      const got = sanParts(leaf);
      expect(got.uris, pcr.metadata.name).toEqual(want.uris);
      expect([...got.dns].sort(), pcr.metadata.name).toEqual([...want.dns].sort());
      expect(new Date(leaf.validFrom).getTime()).toBe(new Date(pcr.status!.notBefore!).getTime());
      expect(new Date(leaf.validTo).getTime()).toBe(new Date(pcr.status!.notAfter!).getTime());
      expect(leaf.subject ?? "").toBe("");
    }
  });

  // A request names its key as pkixPublicKey (read here) or in a stub CSR (read with openssl).
  const leafKeyMatches = (pcr: PodCertificateRequest) => {
    const leaf = new X509Certificate(splitPem(pcr.status?.certificateChain ?? "")[0]!);
    return leaf.publicKey.export({ type: "spki", format: "der" }).equals(requestSpki(requested(pcr)));
  };

  it("gives each certificate the key its request names as pkixPublicKey", () => {
    const named = pcrs.filter((p) => requested(p).spec.pkixPublicKey);
    expect(named.length).toBeGreaterThan(0);
    for (const pcr of named) expect(leafKeyMatches(pcr), pcr.metadata.name).toBe(true);
  });

  it.skipIf(!hasOpenssl || !STUB_CSR_SERVED)(`gives each certificate the key of its request's stub CSR${STUB_CSR_SERVED ? "" : ` (skipped: Kubernetes ${KUBERNETES_VERSION} has no stub CSRs)`}`, () => {
    const stubs = pcrs.filter((p) => !requested(p).spec.pkixPublicKey && requested(p).spec.stubPKCS10Request);
    expect(stubs.length).toBeGreaterThan(0);
    for (const pcr of stubs) expect(leafKeyMatches(pcr), pcr.metadata.name).toBe(true);
  });

  it("chains every certificate to its own signer's trust bundle and never to the other's", () => {
    for (const pcr of pcrs) {
      const chain = pcr.status!.certificateChain!;
      const other = pcr.spec.signerName === ATESYSTEM_SIGNER ? WORKERPOOL_SIGNER : ATESYSTEM_SIGNER;
      expect(verifiesAgainst(chain, bundles.get(pcr.spec.signerName)!), pcr.metadata.name).toBe(true);
      expect(verifiesAgainst(chain, bundles.get(other)!), pcr.metadata.name).toBe(false);
    }
  });

  it.skipIf(!hasOpenssl)("passes openssl verify for TLS server and client use, only against its own signer's bundle", () => {
    for (const pcr of pcrs) {
      const chain = pcr.status!.certificateChain!;
      for (const purpose of ["sslserver", "sslclient"] as const) {
        const own = opensslVerify(chain, bundles.get(pcr.spec.signerName)!, purpose);
        expect(own.ok, `${pcr.metadata.name} ${purpose}: ${own.output}`).toBe(true);
      }
      const other = pcr.spec.signerName === ATESYSTEM_SIGNER ? WORKERPOOL_SIGNER : ATESYSTEM_SIGNER;
      expect(opensslVerify(chain, bundles.get(other)!, "sslclient").ok).toBe(false);
    }
  });

  // The same verdicts from GnuTLS and NSS, the TLS stacks of other clients. NSS as Debian 12 ships
  // it (3.87) does not know Ed25519 keys at all ("Unrecognized Object Identifier"): those leaves are
  // left to OpenSSL and GnuTLS.
  const isEd25519 = (pcr: PodCertificateRequest) => new X509Certificate(splitPem(pcr.status!.certificateChain!)[0]!).publicKey.asymmetricKeyType === "ed25519";
  const otherStacks = [
    { tool: "GnuTLS certtool --verify", has: hasCerttool, verify: certtoolVerify, checks: (_: PodCertificateRequest) => true },
    { tool: "NSS vfychain", has: hasNss, verify: nssVerify, checks: (pcr: PodCertificateRequest) => !isEd25519(pcr) },
  ];
  for (const { tool, has, verify, checks } of otherStacks) it.skipIf(!has)(`passes ${tool} for TLS server and client use, only against its own signer's bundle`, () => {
    const checked = pcrs.filter(checks);
    expect(checked.length).toBeGreaterThan(pcrs.length / 2);
    for (const pcr of checked) {
      const chain = pcr.status!.certificateChain!;
      for (const purpose of ["sslserver", "sslclient"] as const) {
        const own = verify(chain, bundles.get(pcr.spec.signerName)!, purpose);
        expect(own.ok, `${pcr.metadata.name} ${purpose}: ${own.output}`).toBe(true);
      }
      const other = pcr.spec.signerName === ATESYSTEM_SIGNER ? WORKERPOOL_SIGNER : ATESYSTEM_SIGNER;
      const foreign = verify(chain, bundles.get(other)!, "sslclient");
      expect(foreign.ok, `${pcr.metadata.name} against the other signer's bundle: ${foreign.output}`).toBe(false);
    }
  });

  it("puts the pod-identity extension on workerpool certificates only", () => {
    for (const pcr of pcrs) {
      const text = new X509Certificate(splitPem(pcr.status!.certificateChain!)[0]!).toLegacyObject() as { ext_key_usage?: string[] };
      expect(text.ext_key_usage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
      const der = new X509Certificate(splitPem(pcr.status!.certificateChain!)[0]!).raw;
      // OID 1.3.6.1.4.1.32473.1.1 in DER
      const oid = Buffer.from("060a2b0601040181fd590101", "hex");
      expect(der.includes(oid), pcr.metadata.name).toBe(pcr.spec.signerName === WORKERPOOL_SIGNER);
      if (pcr.spec.signerName === WORKERPOOL_SIGNER) {
        for (const field of [pcr.spec.podName, pcr.spec.podUID, pcr.spec.nodeName, pcr.spec.nodeUID, pcr.spec.serviceAccountUID]) {
          expect(der.includes(Buffer.from(field))).toBe(true);
        }
      }
    }
  });
});

describe("podcert issue on the denied fixture cluster", () => {
  let pcrs: PodCertificateRequest[];
  beforeAll(async () => {
    pcrs = await issue(DENIED);
  });

  // The cases this control plane can hold (1.35 has no stub CSR, so no broken one either).
  const present = new Set(fixtureObjects(DENIED).filter((o) => o.kind === "PodCertificateRequest").map((o) => o.metadata.name));
  it("holds every denied case its control plane can hold", () => {
    expect([...present].sort()).toEqual(casesFor(deniedCases(), KUBERNETES_VERSION).map((c) => `req-${c.name}`).sort());
  });
  it.each(Object.entries(EXPECTED_DENIALS).filter(([name]) => present.has(`req-${name}`)).map(([name, reason]) => ({ name, reason })))("$name ends as $reason", ({ name, reason }) => {
    const pcr = pcrs.find((p) => p.metadata.name === `req-${name}`);
    expect(pcr).toBeDefined();
    const c = terminalCondition(pcr!);
    if (reason === "Pending") {
      expect(c).toBeUndefined();
      expect(pcr!.status ?? {}).toEqual({});
      return;
    }
    expect(c?.type).toBe("Denied");
    expect(c?.reason).toBe(reason);
    expect(c?.message.length).toBeGreaterThan(10);
    expect(pcr!.status?.certificateChain ?? "").toBe("");
  });

  it("lists the request waiting for its Service on stderr, and still exits 0 (the pod's owner ends the wait)", () => {
    expect(issueStderr).toMatch(/^\d+ issued, \d+ denied or failed, 1 pending$/m);
    expect(issueStderr).toMatch(/^ {2}pending \S+\/req-missing-service \(\S+\): derive-sans: waiting for Services: /m);
  });

  it("names a supported key type when it refuses one", () => {
    const c = terminalCondition(pcrs.find((p) => p.metadata.name === "req-rsa2048")!);
    expect(c?.message).toMatch(/ECDSAP256/);
  });
});

describe("podcert issue's exit code", () => {
  it("is 75, listing each request left pending and why, when the CA pool lacks a configured signer's CA", async () => {
    const config = parseYaml(readFileSync("examples/config/ate.yaml", "utf8")) as { signers: { name: string }[] };
    config.signers = config.signers.filter((s) => s.name === ATESYSTEM_SIGNER);
    const oneSigner = join(dir, "one-signer.yaml");
    writeFileSync(oneSigner, stringifyYaml(config));
    const partialPool = join(dir, "partial-pool.yaml");
    expect((await podcert(["ca", "init", "--out", partialPool, "--config", oneSigner])).code).toBe(0);

    const r = await podcert(["issue", "--cluster", ISSUED, "--ca-pool", partialPool]);
    expect(r.code, r.stderr).toBe(75);
    const items = (JSON.parse(r.stdout) as { items: PodCertificateRequest[] }).items;
    const stuck = items.filter((p) => p.spec.signerName === WORKERPOOL_SIGNER);
    expect(stuck.length).toBeGreaterThan(0);
    for (const p of stuck) expect(r.stderr).toContain(`  pending ${p.metadata.namespace}/${p.metadata.name} (${WORKERPOOL_SIGNER}): sign: `);
    expect(r.stderr).toMatch(new RegExp(`${stuck.length} requests stay pending for a reason an operator must fix`));
  });

  it("is 0 and says so for a cluster file without PodCertificateRequests", async () => {
    const empty = join(dir, "empty.yaml");
    writeFileSync(empty, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n");
    const r = await podcert(["issue", "--cluster", empty, "--ca-pool", caPool]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`cluster file ${empty} has no PodCertificateRequests; nothing to issue`);
    // The progress still ends with its final line, once.
    expect(r.stderr.split("\n").filter((l) => l.startsWith("processed "))).toEqual(["processed 0/0 PCRs"]);
  });

  it("is 78, naming the object, when the embedded API server (on its own thread) refuses the cluster file", async () => {
    const twice = join(dir, "twice.json");
    const pod = { apiVersion: "v1", kind: "Pod", metadata: { name: "a", namespace: "x" } };
    writeFileSync(twice, JSON.stringify({ apiVersion: "v1", kind: "List", items: [pod, pod] }));
    const r = await podcert(["issue", "--cluster", twice, "--ca-pool", caPool]);
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr).toContain('object 1 (Pod x/a): pods "a" already exists');
    expect(r.stdout).toBe("");
  });
});
