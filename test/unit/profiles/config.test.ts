import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors.js";
import { KEY_TYPES } from "../../../shared/pcr/model.js";
import { DEFAULT_POD_IDENTITY_OID, parseSignerConfig, type SignerConfig } from "../../../shared/profiles/config.js";
import {
  ATESYSTEM_SIGNER,
  DEFAULT_CONFIG_YAML,
  defaultSignerConfig,
  EXPECTS_SERVICE_ANNOTATION,
  WORKERPOOL_NAMESPACE_LABEL,
  WORKERPOOL_SIGNER,
} from "../../../shared/profiles/defaults.js";

const EXAMPLES = fileURLToPath(new URL("../../../examples/config/", import.meta.url));
const exampleFiles = (() => {
  try {
    return readdirSync(EXAMPLES).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"));
  } catch {
    return [];
  }
})();

/** A minimal valid document, as a plain object, for tests to break one thing at a time. */
function minimal(): Record<string, unknown> & { signers: Record<string, unknown>[] } {
  return {
    apiVersion: "podcert.ate.dev/v1alpha1",
    kind: "SignerConfig",
    signers: [{ name: "example.com/identity", namespaces: { names: ["apps"] } }],
  };
}

/** Parses (JSON is YAML) and returns the ConfigError's message, failing if it parses. */
function configError(doc: unknown, source = "test.yaml"): string {
  const text = typeof doc === "string" ? doc : JSON.stringify(doc);
  let err: unknown;
  try {
    parseSignerConfig(text, source);
  } catch (e) {
    err = e;
  }
  expect(err, "expected a ConfigError").toBeInstanceOf(ConfigError);
  expect((err as ConfigError).code).toBe("ERR_CONFIG");
  return (err as Error).message;
}

describe("the built-in configuration", () => {
  const config = defaultSignerConfig();

  it("has exactly the seed's two signers", () => {
    expect([...config.signers.keys()]).toEqual([ATESYSTEM_SIGNER, WORKERPOOL_SIGNER]);
    expect(ATESYSTEM_SIGNER).toBe("atesystem.podcert.ate.dev/identity");
    expect(WORKERPOOL_SIGNER).toBe("workerpool.podcert.ate.dev/identity");
  });

  it("uses cluster.local for the cluster domain and both trust domains, and a 15 minute attestation TTL", () => {
    expect(config.clusterDomain).toBe("cluster.local");
    expect(config.attestationTTLSeconds).toBe(900);
    for (const p of config.signers.values()) expect(p.trustDomain).toBe("cluster.local");
  });

  it("atesystem: only ate-system, expects-service opt-in for DNS names (at most 100), no pod-identity extension", () => {
    const p = config.signers.get(ATESYSTEM_SIGNER)!;
    expect(p.namespaces).toEqual({ names: ["ate-system"], exclude: [] });
    expect(p.dnsNames).toEqual({ optInAnnotation: EXPECTS_SERVICE_ANNOTATION, required: false, maxNames: 100 });
    expect(EXPECTS_SERVICE_ANNOTATION).toBe("atesystem.podcert.ate.dev/expects-service");
    expect(p.podIdentityExtension).toBeUndefined();
  });

  it('workerpool: namespaces labelled podcert.ate.dev/workerpool="true" except ate-system, pod-identity extension, no DNS names', () => {
    const p = config.signers.get(WORKERPOOL_SIGNER)!;
    expect(p.namespaces).toEqual({ matchLabels: { [WORKERPOOL_NAMESPACE_LABEL]: "true" }, exclude: ["ate-system"] });
    expect(WORKERPOOL_NAMESPACE_LABEL).toBe("podcert.ate.dev/workerpool");
    expect(p.podIdentityExtension).toEqual({ oid: DEFAULT_POD_IDENTITY_OID });
    expect(p.dnsNames).toBeUndefined();
  });

  it("both signers: all six key types, 24 h maximum, refresh at half the lifetime", () => {
    for (const p of config.signers.values()) {
      expect([...p.allowedKeyTypes]).toEqual([...KEY_TYPES]);
      expect(p.maxLifetimeSeconds).toBe(86400);
      expect(p.refreshFraction).toBe(0.5);
    }
  });

  it("the default pod-identity OID has every arc below 2^31", () => {
    for (const arc of DEFAULT_POD_IDENTITY_OID.split(".")) expect(Number(arc)).toBeLessThan(2 ** 31);
  });

  it("is the same object on every call and parses from its YAML text", () => {
    expect(defaultSignerConfig()).toBe(config);
    expect(parseSignerConfig(DEFAULT_CONFIG_YAML)).toEqual(config);
  });
});

describe("example configurations", () => {
  it("examples/config holds at least the built-in layout and the upstream-style layout", () => {
    expect(exampleFiles.length).toBeGreaterThanOrEqual(2);
  });

  it.each(exampleFiles.map((file) => ({ case: file, file })))("$case parses", ({ file }) => {
    const config = parseSignerConfig(readFileSync(`${EXAMPLES}${file}`, "utf8"), file);
    expect(config.signers.size).toBeGreaterThan(0);
  });

  it.runIf(exampleFiles.includes("ate.yaml"))("ate.yaml is the built-in configuration", () => {
    expect(parseSignerConfig(readFileSync(`${EXAMPLES}ate.yaml`, "utf8"), "ate.yaml")).toEqual(defaultSignerConfig());
  });

  it.runIf(exampleFiles.includes("upstream-style.yaml"))("upstream-style.yaml: a service-DNS signer that requires the opt-in and a SPIFFE signer with the extension", () => {
    const config: SignerConfig = parseSignerConfig(readFileSync(`${EXAMPLES}upstream-style.yaml`, "utf8"), "upstream-style.yaml");
    const profiles = [...config.signers.values()];
    expect(profiles).toHaveLength(2);
    const dns = profiles.find((p) => p.dnsNames !== undefined)!;
    const spiffe = profiles.find((p) => p.podIdentityExtension !== undefined)!;
    expect(dns.dnsNames?.required).toBe(true);
    expect(dns.podIdentityExtension).toBeUndefined();
    expect(spiffe.dnsNames).toBeUndefined();
    expect(dns.name).not.toBe(spiffe.name);
  });
});

describe("parseSignerConfig: defaults", () => {
  it("fills in every default for a minimal document", () => {
    const c = parseSignerConfig(JSON.stringify(minimal()));
    expect(c.clusterDomain).toBe("cluster.local");
    expect(c.attestationTTLSeconds).toBe(900);
    expect(c.signers.get("example.com/identity")).toEqual({
      name: "example.com/identity",
      trustDomain: "cluster.local",
      namespaces: { names: ["apps"], exclude: [] },
      allowedKeyTypes: [...KEY_TYPES],
      maxLifetimeSeconds: 86400,
      refreshFraction: 0.5,
    });
  });

  it("takes the trust domain per signer, falling back to the top-level one", () => {
    const doc = minimal();
    doc.trustDomain = "corp.example";
    doc.signers.push({ name: "example.com/other", trustDomain: "other.example", namespaces: { any: true } });
    const c = parseSignerConfig(JSON.stringify(doc));
    expect(c.signers.get("example.com/identity")!.trustDomain).toBe("corp.example");
    expect(c.signers.get("example.com/other")!.trustDomain).toBe("other.example");
  });

  it("fills in the dnsNames and pod-identity defaults", () => {
    const doc = minimal();
    doc.signers[0]!.dnsNames = { optInAnnotation: "example.com/expects-service" };
    doc.signers[0]!.podIdentityExtension = {};
    const p = parseSignerConfig(JSON.stringify(doc)).signers.get("example.com/identity")!;
    expect(p.dnsNames).toEqual({ optInAnnotation: "example.com/expects-service", required: false, maxNames: 100 });
    expect(p.podIdentityExtension).toEqual({ oid: DEFAULT_POD_IDENTITY_OID });
  });

  it("accepts an OID whose largest arc is 2^31 - 1", () => {
    const doc = minimal();
    doc.signers[0]!.podIdentityExtension = { oid: "1.3.6.1.4.1.2147483647" };
    expect(parseSignerConfig(JSON.stringify(doc)).signers.get("example.com/identity")!.podIdentityExtension).toEqual({ oid: "1.3.6.1.4.1.2147483647" });
  });
});

describe("parseSignerConfig: bad files", () => {
  type Break = (doc: ReturnType<typeof minimal>) => void;
  const s0 = (doc: ReturnType<typeof minimal>) => doc.signers[0]!;

  it.each<{ case: string; change: Break; path: string; says: RegExp }>([
    { case: "an unknown top-level field", change: (d) => (d.signer = []), path: "(top level)", says: /Unrecognized key.*"signer"/ },
    { case: "an unknown signer field", change: (d) => (s0(d).maxLifetime = 3600), path: "signers[0]", says: /Unrecognized key.*"maxLifetime"/ },
    { case: "an unknown namespaces field", change: (d) => (s0(d).namespaces = { names: ["a"], labels: {} }), path: "signers[0].namespaces", says: /Unrecognized key.*"labels"/ },
    { case: "a signer name without a domain", change: (d) => (s0(d).name = "identity"), path: "signers[0].name", says: /<domain>\/<name>/ },
    { case: "a signer name with capitals in the domain", change: (d) => (s0(d).name = "Example.com/identity"), path: "signers[0].name", says: /<domain>\/<name>/ },
    { case: "a signer name with spaces", change: (d) => (s0(d).name = "example.com/my identity"), path: "signers[0].name", says: /<domain>\/<name>/ },
    { case: "a UUID-derived 2.25 OID", change: (d) => (s0(d).podIdentityExtension = { oid: "2.25.329800735698586629295641978511506172918" }), path: "signers[0].podIdentityExtension.oid", says: /2\^31/ },
    { case: "an OID arc of exactly 2^31", change: (d) => (s0(d).podIdentityExtension = { oid: "1.3.6.1.4.1.2147483648" }), path: "signers[0].podIdentityExtension.oid", says: /2147483648 is 2\^31 or more/ },
    { case: "an OID that is not dotted decimal", change: (d) => (s0(d).podIdentityExtension = { oid: "1.3.six" }), path: "signers[0].podIdentityExtension.oid", says: /dotted-decimal/ },
    { case: "maxLifetimeSeconds below an hour", change: (d) => (s0(d).maxLifetimeSeconds = 3599), path: "signers[0].maxLifetimeSeconds", says: /3600/ },
    { case: "maxLifetimeSeconds above the API maximum", change: (d) => (s0(d).maxLifetimeSeconds = 7862401), path: "signers[0].maxLifetimeSeconds", says: /7862400/ },
    { case: "names and any at once", change: (d) => (s0(d).namespaces = { names: ["a"], any: true }), path: "signers[0].namespaces", says: /exactly one of names, matchLabels or any/ },
    { case: "names and matchLabels at once", change: (d) => (s0(d).namespaces = { names: ["a"], matchLabels: { x: "y" } }), path: "signers[0].namespaces", says: /exactly one of/ },
    { case: "no namespace rule", change: (d) => (s0(d).namespaces = { exclude: ["a"] }), path: "signers[0].namespaces", says: /exactly one of/ },
    { case: "an unknown key type", change: (d) => (s0(d).allowedKeyTypes = ["RSA2048"]), path: "signers[0].allowedKeyTypes[0]", says: /.+/ },
    { case: "a refresh fraction of 1", change: (d) => (s0(d).refreshFraction = 1), path: "signers[0].refreshFraction", says: /.+/ },
    { case: "a bad cluster domain", change: (d) => (d.clusterDomain = "Cluster_Local"), path: "clusterDomain", says: /DNS name/ },
    // <hostname>.<service>.<namespace>.svc. takes up to 196 of a DNS name's 253 characters.
    { case: "a cluster domain too long for the names podcert derives", change: (d) => (d.clusterDomain = `${"c".repeat(52)}.local`), path: "clusterDomain", says: /at most 57 characters, so that <hostname>\.<service>\.<namespace>\.svc\.<clusterDomain> fits in 253/ },
    { case: "maxNames above 1000", change: (d) => (s0(d).dnsNames = { optInAnnotation: "example.com/expects-service", maxNames: 1001 }), path: "signers[0].dnsNames.maxNames", says: /1000/ },
    { case: "a wrong kind", change: (d) => (d.kind = "Config"), path: "kind", says: /.+/ },
    { case: "no signers", change: (d) => (d.signers = []), path: "signers", says: /.+/ },
  ])("$case", ({ change, path, says }) => {
    const doc = minimal();
    change(doc);
    const message = configError(doc);
    const line = message.split("\n").find((l) => l.startsWith(`  - ${path}: `));
    expect(line, message).toBeDefined();
    expect(line).toMatch(says);
  });

  it("a duplicate signer names the second occurrence", () => {
    const doc = minimal();
    doc.signers.push({ name: "example.com/identity", namespaces: { any: true } });
    expect(configError(doc)).toContain("  - signers[1].name: duplicate signer example.com/identity");
  });

  it("reports a duplicate signer together with the document's other problems (a wrong kind hid it)", () => {
    const doc = minimal();
    doc.kind = "SignerConfiguration";
    doc.signers.push({ name: "example.com/identity", namespaces: { any: true } });
    const message = configError(doc);
    expect(message).toContain("  - kind: ");
    expect(message).toContain("  - signers[1].name: duplicate signer example.com/identity");
  });

  it("lists every problem, each with its path, under the file's name", () => {
    const doc = minimal();
    doc.extra = true;
    s0(doc).maxLifetimeSeconds = 60;
    doc.signers.push({ name: "bad name", namespaces: { names: ["a"], any: true }, podIdentityExtension: { oid: "2.25.329800735698586629295641978511506172918" } });
    const message = configError(doc, "my-config.yaml");
    expect(message.split("\n")[0]).toBe("my-config.yaml is invalid:");
    for (const path of ["(top level)", "signers[0].maxLifetimeSeconds", "signers[1].name", "signers[1].namespaces", "signers[1].podIdentityExtension.oid"]) {
      expect(message).toContain(`  - ${path}: `);
    }
  });

  it("lists at most five problems, then counts the rest", () => {
    const doc = minimal();
    for (let i = 1; i <= 7; i++) doc.signers.push({ name: `bad name ${i}`, namespaces: { any: true } });
    const lines = configError(doc).split("\n").slice(1);
    expect(lines).toEqual([1, 2, 3, 4, 5].map((i) => expect.stringMatching(new RegExp(`^  - signers\\[${i}\\]\\.name: `))).concat("  - and 2 more"));
  });

  it.each([
    { case: "broken YAML", text: "apiVersion: [podcert" },
    { case: "a tab-indented mapping", text: "a:\n\tb: 1" },
  ])("not YAML ($case): says so and names the file", ({ text }) => {
    expect(configError(text, "bad.yaml")).toMatch(/^bad\.yaml: not valid YAML/);
  });

  it.each([
    { case: "an empty file", text: "" },
    { case: "a YAML list", text: "- 1\n- 2\n" },
    { case: "a scalar", text: "hello" },
  ])("YAML that is not a mapping ($case) is invalid at the top level", ({ text }) => {
    expect(configError(text)).toContain("(top level)");
  });

  it("refuses a file over 1 MiB before parsing it", () => {
    expect(configError(`# ${"x".repeat(1 << 20)}\n`, "huge.yaml")).toMatch(/^huge\.yaml: larger than/);
  });

  it("refuses a YAML alias bomb", () => {
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 0; i < 10; i++) lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`);
    expect(configError(lines.join("\n"), "bomb.yaml")).toMatch(/^bomb\.yaml: not valid YAML: .*alias/i);
  });
});
