// Real TLS handshakes (node:tls) with certificates issued by podcert's own CA code.
import { beforeAll, describe, expect, it } from "vitest";
import { parseCaPool, serializeCaPool, trustBundlePem, activeCa, type CaPool } from "../../../shared/ca/pool.js";
import { createCaPool } from "../../../cli/ca-create.js";
import { mtlsRequest, parseCredentialBundle, runSeedMtlsChecks, spiffeIdOf, startMtlsServer, type Credential } from "../../../local-cluster/mtls.js";
import { issueLeaf } from "../../../shared/x509/leaf.js";
import { generateRequestKeyPair } from "../../../local-cluster/kubelet/keys.js";
import { pemEncode } from "../../../shared/x509/pem.js";

const ATE = "atesystem.podcert.ate.dev/identity";
const WORKER = "workerpool.podcert.ate.dev/identity";
let pool: CaPool;

function credential(signer: string, uri: string, dnsNames: string[] = []): Credential {
  const key = generateRequestKeyPair("ECDSAP256");
  const now = Date.now();
  const leaf = issueLeaf(activeCa(pool, signer, new Date()).signer, {
    spkiDer: key.spkiDer,
    keyType: "ECDSAP256",
    uris: [uri],
    dnsNames,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
  });
  return parseCredentialBundle(pemEncode("PRIVATE KEY", key.privateKey.export({ type: "pkcs8", format: "der" })) + leaf.chainPem);
}

const id = (sa: string, ns = "ate-system") => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

beforeAll(async () => {
  pool = parseCaPool(serializeCaPool(await createCaPool([ATE, WORKER], { keyAlgorithm: "ECDSAP256", validityDays: 2, now: new Date() })));
});

describe("the seed's mTLS checks", () => {
  it("accept the router, refuse the worker, the unauthorized identity, the wrong server name and the wrong trust", async () => {
    const checks = await runSeedMtlsChecks({
      apiserver: credential(ATE, id("ate-apiserver"), ["api.ate-system.svc", "api.ate-system.svc.cluster.local"]),
      router: credential(ATE, id("atenet-router")),
      otherControlPlane: credential(ATE, id("valkey")),
      worker: credential(WORKER, id("worker", "workers-a")),
      ateTrustPem: trustBundlePem(pool, ATE),
      workerTrustPem: trustBundlePem(pool, WORKER),
      serverName: "api.ate-system.svc",
      routerSpiffeId: id("atenet-router"),
    });
    expect(checks.map((c) => [c.name, c.outcome, c.ok])).toEqual([
      ["router → apiserver as api.ate-system.svc", "accepted", true],
      ["worker pod certificate → apiserver", "refused", true],
      ["another ate-system identity → apiserver (authorized by SPIFFE ID)", "refused", true],
      ["router → a server whose certificate lacks api.ate-system.svc", "refused", true],
      ["router trusting only the workerpool bundle → apiserver", "refused", true],
    ]);
    expect(checks[3]!.detail).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it("with one CA for both signers, only SPIFFE authorization would stop a worker", async () => {
    // What the seed's split prevents: with a shared CA, a worker's certificate gets through TLS.
    const checks = await runSeedMtlsChecks({
      apiserver: credential(ATE, id("ate-apiserver"), ["api.ate-system.svc"]),
      router: credential(ATE, id("atenet-router")),
      worker: credential(ATE, id("atenet-router", "workers-a")),
      ateTrustPem: trustBundlePem(pool, ATE),
      workerTrustPem: trustBundlePem(pool, WORKER),
      serverName: "api.ate-system.svc",
      routerSpiffeId: id("atenet-router"),
    });
    const worker = checks.find((c) => c.name.startsWith("worker"))!;
    // The handshake succeeds (the server answered); the seed's separate CAs refuse it in TLS itself.
    expect(worker.outcome).toBe("refused");
    expect(worker.detail).toMatch(/^403/);
  });

  it("authorize by the exact SPIFFE ID", async () => {
    const server = await startMtlsServer({ credential: credential(ATE, id("ate-apiserver"), ["api.ate-system.svc"]), clientTrustPem: trustBundlePem(pool, ATE), authorized: [id("atenet-router")] });
    try {
      const ask = (c: Credential) => mtlsRequest({ port: server.port, serverName: "api.ate-system.svc", serverTrustPem: trustBundlePem(pool, ATE), credential: c });
      expect((await ask(credential(ATE, id("atenet-router")))).answer).toBe(`200 hello ${id("atenet-router")}`);
      expect((await ask(credential(ATE, id("atenet-router2")))).answer).toMatch(/^403/);
    } finally {
      await server.close();
    }
  });

  it.each([
    { san: "URI:spiffe://td/ns/a/sa/b, DNS:x", id: "spiffe://td/ns/a/sa/b" },
    { san: "DNS:x, URI:https://example.com", id: undefined },
    { san: undefined, id: undefined },
  ])("reads the SPIFFE ID from $san", ({ san, id: want }) => expect(spiffeIdOf(san)).toBe(want));

  it("refuses a credential bundle without a key", () => {
    expect(() => parseCredentialBundle("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")).toThrow(/PRIVATE KEY/);
  });
});
