// The rotation proof (issue 10, "Prove it"): both signers rotate their CA — atesystem to a new
// root, workerpool to an intermediate under an offline root — with a controlled clock, while pods
// keep getting certificates and using them. Everything runs in-process against the embedded API
// server with knative/'s RBAC: the emulated kubelet makes the PCRs (real keys), the pipeline
// (validate → derive-sans → sign) issues them as each function's ServiceAccount, the rotation
// rules (cli/ca-rotation.ts) rewrite the pool, the trust publisher writes the bundles from the
// pool's trust document, and a pod's clusterTrustBundle projection (README selector) is read back
// as kubelet would. At every step every certificate still valid at the controlled time verifies
// against what a pod has mounted, and pods handshake (node:tls; openssl where installed).
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { KubeConfig } from "@kubernetes/client-node";
import { createCa, createCaPool } from "../../cli/ca-create.js";
import {
  activateCa,
  DEFAULT_PROPAGATION_SECONDS,
  prepareCa,
  PUBLICATION_DELAY_SECONDS,
  RETIRE_MARGIN_SECONDS,
  retireCa,
  RotationRefusedError,
  type RotationFacts,
} from "../../cli/ca-rotation.js";
import { clusterApiFor, stepContexts } from "../../cli/cluster.js";
import { issueAll } from "../../cli/issue.js";
import { publish, type PublishReport } from "../../functions/publish-trust/handler.js";
import { parseClusterFile } from "../../local-cluster/apiserver/cluster-file.js";
import { describeRefusal, startApiServer, type EmbeddedApiServer } from "../../local-cluster/apiserver/server.js";
import { loadKnativeIdentities, manifestNamespaces, userOfService } from "../../local-cluster/identities.js";
import { requestPodCertificates } from "../../local-cluster/kubelet/emulator.js";
import { readClusterTrustBundleProjection } from "../../local-cluster/kubelet/trust-projection.js";
import { spiffeIdOf } from "../../local-cluster/mtls.js";
import {
  caTrustDocument,
  clusterTrustBundleName,
  parseCaPool,
  parseCaTrust,
  serializeCaPool,
  trustBundlePem,
  type CaPool,
  type CaPoolDocument,
  type CaState,
} from "../../shared/ca/pool.js";
import { MANAGED_BY, MANAGED_BY_LABEL, spiffeBundleKey, type SpiffeBundle } from "../../shared/ca/publication.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import { KubeClusterApi, loadKubeConfig } from "../../shared/kube/client-node.js";
import type { ClusterApi } from "../../shared/kube/cluster.js";
import { terminalCondition } from "../../shared/pcr/model.js";
import { BACKDATE_SECONDS } from "../../shared/policy/lifetime.js";
import { ATESYSTEM_SIGNER, defaultSignerConfig, WORKERPOOL_SIGNER } from "../../shared/profiles/defaults.js";
import type { FunctionContext } from "../../shared/runtime/function.js";
import { silentLogger } from "../../shared/runtime/log.js";
import { serviceName, STEPS, type StepName } from "../../shared/steps.js";
import { pemDecodeAll } from "../../shared/x509/pem.js";
import { testCa } from "../helpers/ca.js";
import { chainVerifiesAt, hasOpenssl, leftoverTempDirs, nodeMutualTls, opensslMutualTls, opensslVerifyAt, splitPem, type Credential, type Handshake } from "../helpers/peers.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const A = ATESYSTEM_SIGNER;
const W = WORKERPOOL_SIGNER;
const SIGNERS = [A, W] as const;
type Signer = (typeof SIGNERS)[number];
type CaLabel = "old" | "new";

const config = defaultSignerConfig();
const maxLifetimeSeconds = (s: Signer) => config.signers.get(s)!.maxLifetimeSeconds;
const PROPAGATION_SECONDS = DEFAULT_PROPAGATION_SECONDS;
const SPIFFE_CONFIGMAP = "podcert-spiffe-bundles";
/** README, "clusterTrustBundle": what every pod of a signer projects to verify its peers. */
const POD_SELECTOR = { matchLabels: { [MANAGED_BY_LABEL]: MANAGED_BY } };

/*
 * Two clocks. The controlled one drives everything podcert decides (sign's certificate times, the
 * rotation rules, the API server's timestamps); it jumps from step to step. node:tls cannot be
 * given a verification time: it judges validity at the real clock. So the controlled clock is
 * placed around the real present: t0 is 18 hours ago. Certificates live 24 hours (both profiles'
 * maximum), so those issued at t0 (valid t0-2m .. t0+24h-2m) and those renewed at t0+12h are valid
 * in real time, while the whole rotation (t0 → retire at t0+24h27m) spans more than one lifetime.
 * Hence: chain verification (node:crypto) and the openssl handshakes (-attime) run at the
 * controlled time for every certificate; node:tls handshakes run with the certificates that are
 * valid at both times, which every step has (the only ones missing are those issued after the
 * retirement, which lie in the real future).
 */
const REAL_START = Math.floor(Date.now() / SECOND) * SECOND;
const T0 = REAL_START - 18 * HOUR;
let clock = new Date(T0);
const now = () => clock;
const setClock = (ms: number) => {
  clock = new Date(ms);
};
const facts = (s: Signer): RotationFacts => ({ now: clock, maxLifetimeSeconds: maxLifetimeSeconds(s), propagationSeconds: PROPAGATION_SECONDS });

/** When the rules allow activation (prepared at t0+1m) and when retirement (superseded then). */
const PREPARED_AT = T0 + MINUTE;
const ACTIVATE_FROM = PREPARED_AT + (PUBLICATION_DELAY_SECONDS + PROPAGATION_SECONDS) * SECOND;
const RETIRE_FROM = ACTIVATE_FROM + (maxLifetimeSeconds(A) + RETIRE_MARGIN_SECONDS) * SECOND;

const ids = loadKnativeIdentities("knative");
const userOf = (fn: StepName) => userOfService(ids, serviceName(fn)).name;
const keys = ephemeralStepKeys();
/** Per step: a few kubelet rounds, dozens of openssl processes; generous on 2 shared cores. */
const STEP_TIMEOUT_MS = 120_000;

interface CaRef {
  /** The CA that signs (an intermediate for workerpool's new CA). */
  cert: X509Certificate;
  /** The trust anchor pods get for it. */
  root: X509Certificate;
}

interface IssuedCert {
  batch: string;
  signer: Signer;
  pod: string;
  spiffeId: string;
  credential: Credential;
  leaf: X509Certificate;
  ca: CaLabel;
}

/** What the trust publisher wrote and what pods mount, after one publication. */
interface View {
  step: string;
  report: PublishReport;
  /** The PEM a pod's projection holds, per signer. */
  mounted: Record<Signer, string>;
}

let api: EmbeddedApiServer;
let adminKc: KubeConfig;
let clusters: Record<StepName, ClusterApi>;
let sourceApi: ClusterApi;
let trustApi: KubeClusterApi;
/** The operator's pool file. */
let poolDoc: CaPoolDocument;
/** What sign has loaded (it follows the file a little late: kubelet's Secret sync). */
let signPool: CaPool;
/** The trust document (`podcert ca trust`) the publisher reads. */
let trustText: string;
const cas = new Map<string, CaRef>();
const caOf = (s: Signer, l: CaLabel) => cas.get(`${s} ${l}`)!;
const issued: IssuedCert[] = [];
const views = new Map<string, View>();

const validAt = (c: X509Certificate, at: Date) => c.validFromDate.getTime() <= at.getTime() && at.getTime() <= c.validToDate.getTime();
const dersOf = (pem: string) => pemDecodeAll(pem).map((b) => b.der.toString("base64"));
const derOf = (c: X509Certificate) => c.raw.toString("base64");
const describeCert = (c: IssuedCert) => `${c.batch} ${c.signer} ${c.pod} (${c.ca} CA, ${c.leaf.validFrom} .. ${c.leaf.validTo})`;
const statesOf = (s: Signer): (CaState | undefined)[] => poolDoc.signers.find((x) => x.signerName === s)!.cas.map((c) => c.state);

function applyToSign(doc: CaPoolDocument): void {
  signPool = parseCaPool(serializeCaPool(doc));
}
function applyToTrust(doc: CaPoolDocument): void {
  trustText = stringify(caTrustDocument(doc), { lineWidth: 0, blockQuote: "literal" });
}

beforeAll(async () => {
  const objects = parseClusterFile(readFileSync("examples/cluster.yaml", "utf8"));
  api = await startApiServer({
    objects: [...objects, ...manifestNamespaces(ids, objects)],
    authorization: { rbac: ids.documents, users: [...ids.services.values(), ids.source] },
    now,
  });
  adminKc = loadKubeConfig({ kubeconfigText: api.kubeconfig() });
  clusters = Object.fromEntries(STEPS.map((s) => [s, clusterApiFor(api, userOf(s))])) as Record<StepName, ClusterApi>;
  sourceApi = clusterApiFor(api, ids.source.name);
  trustApi = new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig(userOf("publish-trust")) }));
});

afterAll(async () => {
  await api?.stop();
});

/**
 * One round of kubelet asking for every pod's certificates at the controlled time, issued by the
 * in-process pipeline with the pool sign has loaded. Each request ends as its pod's annotation
 * says; the issued ones are kept with their keys, and the PCRs removed (kubelet's next round makes
 * new ones).
 */
async function issueBatch(batch: string): Promise<IssuedCert[]> {
  const requests = await requestPodCertificates(adminKc);
  const contexts = stepContexts({ config, cluster: clusters, keys, caPool: signPool, log: silentLogger, now });
  const result = await issueAll({ cluster: sourceApi, contexts, maxAttempts: 2, backoffMs: 5 });
  const out: IssuedCert[] = [];
  for (const r of requests) {
    const pcr = result.pcrs.find((p) => p.metadata.uid === r.pcr.metadata.uid)!;
    const c = terminalCondition(pcr);
    const outcome = c === undefined ? "Pending" : c.type === "Issued" ? "Issued" : `${c.type}:${c.reason}`;
    expect(outcome, `${batch}: ${r.pod.namespace}/${r.pod.name} ${pcr.spec.signerName}: ${c?.message ?? ""}`).toBe(r.expected);
    api.store.delete("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name);
    if (outcome !== "Issued") continue;
    const signer = pcr.spec.signerName as Signer;
    const chainPem = pcr.status!.certificateChain!;
    const leaf = new X509Certificate(splitPem(chainPem)[0]!);
    // Issued at the controlled time (sign backdates by BACKDATE_SECONDS), not the real one.
    expect(leaf.validFromDate.getTime()).toBe(Math.floor(clock.getTime() / SECOND) * SECOND - BACKDATE_SECONDS * SECOND);
    const by = (["old", "new"] as const).filter((l) => cas.has(`${signer} ${l}`) && leaf.checkIssued(caOf(signer, l).cert) && leaf.verify(caOf(signer, l).cert.publicKey));
    expect(by, `${batch}: ${r.pod.name}'s certificate is signed by exactly one known CA`).toHaveLength(1);
    out.push({
      batch,
      signer,
      pod: `${r.pod.namespace}/${r.pod.name}`,
      spiffeId: spiffeIdOf(leaf.subjectAltName)!,
      credential: { keyPem: r.privateKey.export({ type: "pkcs8", format: "pem" }) as string, chainPem },
      leaf,
      ca: by[0]!,
    });
  }
  expect(new Set(out.map((c) => c.signer)), `${batch}: both signers issued`).toEqual(new Set(SIGNERS));
  issued.push(...out);
  return out;
}

type Ctb = { metadata: { labels?: Record<string, string> }; spec: { signerName: string; trustBundle: string } };

/**
 * The trust publisher's run at the controlled time, then what it left: each signer's
 * ClusterTrustBundle holds exactly the roots of `want`, only CA certificates and no private key;
 * a pod's projection holds the same; the SPIFFE bundle's x5c are the ClusterTrustBundle's
 * certificates, one per key, no private key member.
 */
async function publishAndCheck(step: string, want: Record<Signer, readonly CaLabel[]>): Promise<View> {
  const ctx: FunctionContext = {
    ...stepContexts({ config, cluster: clusters, keys, log: silentLogger, now, events: false })["publish-trust"],
    trust: { read: () => parseCaTrust(trustText), api: trustApi, namespace: "podcert", configMapName: SPIFFE_CONFIGMAP, refreshHintSeconds: 300 },
  };
  const report = await publish(ctx);
  expect(report.missing).toEqual([]);
  const mounted = {} as Record<Signer, string>;
  const cm = api.store.get("configmaps", "podcert", SPIFFE_CONFIGMAP) as unknown as { data: Record<string, string> };
  expect(JSON.stringify(cm.data)).not.toMatch(/PRIVATE KEY/);
  for (const s of SIGNERS) {
    const ctb = api.store.get("clustertrustbundles", undefined, clusterTrustBundleName(s)) as unknown as Ctb;
    expect(ctb.spec.signerName).toBe(s);
    expect(ctb.metadata.labels?.[MANAGED_BY_LABEL]).toBe(MANAGED_BY);
    // Never a key, never a leaf: every block is a CERTIFICATE of a CA.
    expect(ctb.spec.trustBundle).not.toMatch(/PRIVATE KEY/);
    const blocks = pemDecodeAll(ctb.spec.trustBundle);
    expect(blocks.map((b) => b.label).every((l) => l === "CERTIFICATE")).toBe(true);
    expect(blocks.map((b) => new X509Certificate(b.der).ca), `${step}: ${s}`).toEqual(blocks.map(() => true));
    const wanted = want[s].map((l) => derOf(caOf(s, l).root));
    expect([...dersOf(ctb.spec.trustBundle)].sort(), `${step}: ${s}'s ClusterTrustBundle`).toEqual([...wanted].sort());

    mounted[s] = await readClusterTrustBundleProjection(adminKc, { signerName: s, labelSelector: POD_SELECTOR, path: "ca.pem" }, { order: "sorted" });
    expect([...dersOf(mounted[s])].sort(), `${step}: what ${s}'s pods mount`).toEqual([...wanted].sort());

    const spiffe = JSON.parse(cm.data[spiffeBundleKey(s)]!) as SpiffeBundle;
    expect(spiffe.keys.map((k) => k.x5c[0]), `${step}: ${s}'s SPIFFE bundle`).toEqual(dersOf(ctb.spec.trustBundle));
    for (const k of spiffe.keys) {
      expect(k.use).toBe("x509-svid");
      expect(k.x5c).toHaveLength(1);
      expect(k.d).toBeUndefined();
    }
  }
  const view = { step, report, mounted };
  views.set(step, view);
  return view;
}

const spiffeSequence = (s: Signer): number => {
  const cm = api.store.get("configmaps", "podcert", SPIFFE_CONFIGMAP) as unknown as { data: Record<string, string> };
  return (JSON.parse(cm.data[spiffeBundleKey(s)]!) as SpiffeBundle).spiffe_sequence;
};

/** A server and a client certificate of the signer from CAs `server` and `client` among `from` (latest first; two different pods when possible). */
function pair(from: readonly IssuedCert[], s: Signer, server: CaLabel, client: CaLabel): [IssuedCert, IssuedCert] | undefined {
  const latestFirst = [...from].reverse().filter((c) => c.signer === s);
  const srv = latestFirst.find((c) => c.ca === server);
  const candidates = latestFirst.filter((c) => c.ca === client && c !== srv);
  const cli = candidates.find((c) => c.pod !== srv?.pod) ?? candidates[0];
  return srv && cli ? [srv, cli] : undefined;
}

function expectHandshake(h: Handshake, server: IssuedCert, client: IssuedCert, what: string): void {
  expect(h.ok, `${what}: ${h.detail}`).toBe(true);
  if (h.serverSaw !== undefined || h.clientSaw !== undefined) {
    expect(h.serverSaw, what).toBe(client.spiffeId);
    expect(h.clientSaw, what).toBe(server.spiffeId);
  }
}

/**
 * Every certificate valid at the controlled time verifies against what its pods mount, to the
 * root of the CA that signed it (node:crypto, and openssl verify -attime); then, per signer, pods
 * handshake for every combination of the CAs whose certificates are in use (`inUse`, asserted),
 * with node:tls where real time allows and with openssl at the controlled time.
 */
async function checkInUse(view: View, inUse: Record<Signer, readonly CaLabel[]>): Promise<void> {
  const valid = issued.filter((c) => validAt(c.leaf, clock));
  for (const c of valid) {
    const r = chainVerifiesAt(c.credential.chainPem, view.mounted[c.signer], clock);
    expect(r.ok ? "ok" : r.why, `${view.step}: ${describeCert(c)}`).toBe("ok");
    if (r.ok) expect(derOf(r.anchor), `${view.step}: ${describeCert(c)} anchors at its CA's root`).toBe(derOf(caOf(c.signer, c.ca).root));
    if (hasOpenssl) {
      for (const purpose of ["sslclient", "sslserver"] as const) {
        const o = opensslVerifyAt(c.credential.chainPem, view.mounted[c.signer], clock, purpose);
        expect(o.ok, `${view.step}: openssl verify ${purpose} ${describeCert(c)}: ${o.out}`).toBe(true);
      }
    }
  }
  for (const s of SIGNERS) {
    const labels = [...new Set(valid.filter((c) => c.signer === s).map((c) => c.ca))].sort();
    expect(labels, `${view.step}: CAs with certificates in use for ${s}`).toEqual([...inUse[s]].sort());
    const realNow = new Date();
    const validInRealTime = valid.filter((c) => validAt(c.leaf, realNow));
    let nodeHandshakes = 0;
    for (const server of labels) {
      for (const client of labels) {
        const real = pair(validInRealTime, s, server, client);
        if (real !== undefined) {
          const what = `${view.step}: node:tls ${s} server ${describeCert(real[0])} ⇄ client ${describeCert(real[1])}`;
          expectHandshake(await nodeMutualTls({ server: real[0].credential, client: real[1].credential, trustPem: view.mounted[s] }), real[0], real[1], what);
          nodeHandshakes++;
        }
        if (hasOpenssl) {
          const p = pair(valid, s, server, client)!;
          const what = `${view.step}: openssl ${s} server ${describeCert(p[0])} ⇄ client ${describeCert(p[1])}`;
          expectHandshake(await opensslMutualTls({ server: p[0].credential, client: p[1].credential, trustPem: view.mounted[s], at: clock }), p[0], p[1], what);
        }
      }
    }
    // At least one node:tls handshake per step and signer: the clocks are placed so that every step has one.
    expect(nodeHandshakes, `${view.step}: node:tls handshakes for ${s}`).toBeGreaterThan(0);
  }
}

describe("a CA rotation with a controlled clock, while certificates are issued and used", { timeout: STEP_TIMEOUT_MS }, () => {
  it("t0: a pool as `ca init` writes it (no states) signs; its CA is published; pods verify and handshake", async () => {
    setClock(T0);
    poolDoc = await createCaPool(SIGNERS, { keyAlgorithm: "ECDSAP256", validityDays: 365, now: clock });
    for (const s of SIGNERS) {
      expect(statesOf(s)).toEqual([undefined]);
      const cert = new X509Certificate(poolDoc.signers.find((x) => x.signerName === s)!.cas[0]!.certificate);
      cas.set(`${s} old`, { cert, root: cert });
    }
    applyToSign(poolDoc);
    applyToTrust(poolDoc);

    const view = await publishAndCheck("t0", { [A]: ["old"], [W]: ["old"] });
    expect(view.report.created.sort()).toEqual(SIGNERS.map(clusterTrustBundleName).sort());
    for (const s of SIGNERS) expect(spiffeSequence(s)).toBe(1);
    const batch = await issueBatch("t0");
    expect(batch.every((c) => c.ca === "old")).toBe(true);
    await checkInUse(view, { [A]: ["old"], [W]: ["old"] });
  });

  it("prepare (t0+1m): old and new CA are published; the prepared CA does not sign yet; workerpool's new CA is an intermediate whose root is published", async () => {
    setClock(PREPARED_AT);
    const newA = await createCa({ signerName: A, keyAlgorithm: "ED25519", validityDays: 365, now: clock });
    // An offline root: only its certificate reaches the pool; the intermediate under it signs.
    const root = await testCa({ name: "workerpool offline root", notBefore: new Date(T0 - HOUR), notAfter: new Date(T0 + 730 * 24 * HOUR) });
    const intermediate = await testCa({ name: "workerpool intermediate", notBefore: new Date(T0 - HOUR), notAfter: new Date(T0 + 365 * 24 * HOUR), issuer: root });
    cas.set(`${A} new`, { cert: new X509Certificate(newA.certificate), root: new X509Certificate(newA.certificate) });
    cas.set(`${W} new`, { cert: new X509Certificate(intermediate.certificate), root: new X509Certificate(root.certificate) });

    const a = prepareCa(poolDoc, A, newA, facts(A));
    const w = prepareCa(a.doc, W, { certificate: intermediate.certificate, privateKey: intermediate.privateKey, intermediates: root.certificate }, facts(W));
    poolDoc = w.doc;
    // ca init's CA was adopted as the active one; the new one waits, published.
    for (const s of SIGNERS) expect(statesOf(s)).toEqual(["active", "prepared"]);
    expect(serializeCaPool(poolDoc)).not.toContain(pemDecodeAll(root.privateKey)[0]!.der.toString("base64").slice(0, 64));
    applyToSign(poolDoc);
    applyToTrust(poolDoc);

    const view = await publishAndCheck("prepare", { [A]: ["old", "new"], [W]: ["old", "new"] });
    expect(view.report.updated.sort()).toEqual(SIGNERS.map(clusterTrustBundleName).sort());
    for (const s of SIGNERS) expect(spiffeSequence(s)).toBe(2);
    // The bundle holds the offline root, not the intermediate.
    expect(dersOf(view.mounted[W])).toContain(derOf(caOf(W, "new").root));
    expect(dersOf(view.mounted[W])).not.toContain(derOf(caOf(W, "new").cert));

    const batch = await issueBatch("prepare");
    expect(batch.map((c) => c.ca)).toEqual(batch.map(() => "old"));
    await checkInUse(view, { [A]: ["old"], [W]: ["old"] });
  });

  it("activate is refused until published + propagation time; from then new certificates chain to the new CA while the old ones keep verifying", async () => {
    setClock(ACTIVATE_FROM - SECOND);
    for (const s of SIGNERS) {
      let refusal: unknown;
      try {
        activateCa(poolDoc, s, { ...facts(s), force: false });
      } catch (e) {
        refusal = e;
      }
      expect(refusal).toBeInstanceOf(RotationRefusedError);
      const r = refusal as RotationRefusedError;
      expect(r.code).toBe("ERR_ROTATION_NOT_YET");
      expect(r.possibleFrom?.getTime()).toBe(ACTIVATE_FROM);
    }
    // Until then the old CA signs: these are the last certificates it signs on schedule.
    const last = await issueBatch("before activation");
    expect(last.every((c) => c.ca === "old")).toBe(true);
    await checkInUse(await publishAndCheck("before activation", { [A]: ["old", "new"], [W]: ["old", "new"] }), { [A]: ["old"], [W]: ["old"] });

    setClock(ACTIVATE_FROM);
    for (const s of SIGNERS) {
      const out = activateCa(poolDoc, s, { ...facts(s), force: false });
      expect(out.risks).toEqual([]);
      poolDoc = out.doc;
      expect(statesOf(s)).toEqual(["superseded", "active"]);
    }
    applyToTrust(poolDoc);
    // Activation changes nothing pods trust: no bundle is written.
    const activated = await publishAndCheck("activate", { [A]: ["old", "new"], [W]: ["old", "new"] });
    expect(activated.report.updated).toEqual([]);
    expect(activated.report.spiffeChanged).toEqual([]);

    // sign reads the rewritten pool only when kubelet has synced its Secret (a minute or more):
    // until then the old CA goes on signing after its since.superseded. RETIRE_MARGIN_SECONDS covers that.
    setClock(ACTIVATE_FROM + 5 * MINUTE);
    const lagging = await issueBatch("sign lagging");
    expect(lagging.every((c) => c.ca === "old")).toBe(true);

    applyToSign(poolDoc);
    setClock(ACTIVATE_FROM + 6 * MINUTE);
    const fresh = await issueBatch("activated");
    expect(fresh.every((c) => c.ca === "new")).toBe(true);
    for (const c of fresh.filter((x) => x.signer === W)) {
      // The intermediate is in the chain; the root is not (pods have it from the bundle).
      expect(dersOf(c.credential.chainPem).slice(1), describeCert(c)).toEqual([derOf(caOf(W, "new").cert)]);
    }
    for (const c of fresh.filter((x) => x.signer === A)) expect(splitPem(c.credential.chainPem), describeCert(c)).toHaveLength(1);

    const view = await publishAndCheck("overlap", { [A]: ["old", "new"], [W]: ["old", "new"] });
    await checkInUse(view, { [A]: ["old", "new"], [W]: ["old", "new"] });

    // Why prepare comes first: against the bundle pods had before it, the new CA's certificates
    // fail, in chain building and in a handshake with an old-CA peer.
    const t0 = views.get("t0")!;
    for (const s of SIGNERS) {
      const [server, client] = pair(issued.filter((c) => validAt(c.leaf, clock) && validAt(c.leaf, new Date())), s, "old", "new")!;
      expect(chainVerifiesAt(client.credential.chainPem, t0.mounted[s], clock).ok).toBe(false);
      expect((await nodeMutualTls({ server: server.credential, client: client.credential, trustPem: t0.mounted[s] })).ok).toBe(false);
      expect((await nodeMutualTls({ server: server.credential, client: client.credential, trustPem: view.mounted[s] })).ok).toBe(true);
    }
  });

  it("t0+12h: renewals come from the new CA, both stay published; retire is refused until no old certificate can be valid, and forcing it would break handshakes", async () => {
    setClock(T0 + 12 * HOUR);
    const renewal = await issueBatch("renewal");
    expect(renewal.every((c) => c.ca === "new")).toBe(true);
    const view = await publishAndCheck("renewal", { [A]: ["old", "new"], [W]: ["old", "new"] });
    for (const s of SIGNERS) expect(spiffeSequence(s)).toBe(2);
    await checkInUse(view, { [A]: ["old", "new"], [W]: ["old", "new"] });

    for (const s of SIGNERS) {
      for (const at of [clock.getTime(), RETIRE_FROM - SECOND]) {
        let refusal: unknown;
        try {
          retireCa(poolDoc, s, { ...facts(s), now: new Date(at), force: false });
        } catch (e) {
          refusal = e;
        }
        expect(refusal).toBeInstanceOf(RotationRefusedError);
        expect((refusal as RotationRefusedError).possibleFrom?.getTime()).toBe(RETIRE_FROM);
      }
      // --force now: it says what it risks, and the bundle it would publish rejects old
      // certificates that are still valid (the handshakes it would break).
      const forced = retireCa(poolDoc, s, { ...facts(s), force: true });
      expect(forced.risks).toHaveLength(1);
      const wouldPublish = trustBundlePem(parseCaTrust(stringify(caTrustDocument(forced.doc))), s);
      const stillValidOld = issued.filter((c) => c.signer === s && c.ca === "old" && validAt(c.leaf, clock));
      expect(stillValidOld.length).toBeGreaterThan(0);
      for (const c of stillValidOld) {
        expect(chainVerifiesAt(c.credential.chainPem, view.mounted[s], clock).ok).toBe(true);
        expect(chainVerifiesAt(c.credential.chainPem, wouldPublish, clock).ok, describeCert(c)).toBe(false);
      }
    }
  });

  it("retire at superseded + max lifetime + margin: no old-CA certificate is valid any more; the bundle holds only the new CA", async () => {
    setClock(RETIRE_FROM);
    // The safety property: when the rules allow retirement, every certificate the old CA signed
    // has expired, including those sign made after the pool said "superseded"; those outlive
    // superseded + max lifetime, so without the margin some would still be valid.
    const old = issued.filter((c) => c.ca === "old");
    expect(old.length).toBeGreaterThan(0);
    expect(old.filter((c) => validAt(c.leaf, clock)).map(describeCert)).toEqual([]);
    const lastOldEnd = Math.max(...old.map((c) => c.leaf.validToDate.getTime()));
    expect(lastOldEnd).toBeGreaterThan(ACTIVATE_FROM + maxLifetimeSeconds(A) * SECOND);
    expect(lastOldEnd).toBeLessThan(RETIRE_FROM);

    const before = views.get("renewal")!;
    for (const s of SIGNERS) {
      const out = retireCa(poolDoc, s, { ...facts(s), force: false });
      expect(out.risks).toEqual([]);
      poolDoc = out.doc;
      expect(statesOf(s)).toEqual(["retired", "active"]);
    }
    applyToSign(poolDoc);
    applyToTrust(poolDoc);
    const view = await publishAndCheck("retire", { [A]: ["new"], [W]: ["new"] });
    expect(view.report.updated.sort()).toEqual(SIGNERS.map(clusterTrustBundleName).sort());
    for (const s of SIGNERS) expect(spiffeSequence(s)).toBe(3);

    const batch = await issueBatch("after retirement");
    expect(batch.every((c) => c.ca === "new")).toBe(true);
    await checkInUse(view, { [A]: ["new"], [W]: ["new"] });

    // What retirement takes away: an old-CA certificate (taken at a time it is valid, the real
    // present, so only trust differs) verified against the bundle before, and not after.
    const realNow = new Date();
    for (const s of SIGNERS) {
      const oldCert = issued.find((c) => c.signer === s && c.ca === "old" && validAt(c.leaf, realNow))!;
      const newCert = [...issued].reverse().find((c) => c.signer === s && c.ca === "new" && validAt(c.leaf, realNow))!;
      expect(chainVerifiesAt(oldCert.credential.chainPem, before.mounted[s], realNow).ok).toBe(true);
      expect(chainVerifiesAt(oldCert.credential.chainPem, view.mounted[s], realNow).ok).toBe(false);
      expect((await nodeMutualTls({ server: newCert.credential, client: oldCert.credential, trustPem: before.mounted[s] })).ok).toBe(true);
      expect((await nodeMutualTls({ server: newCert.credential, client: oldCert.credential, trustPem: view.mounted[s] })).ok).toBe(false);
      expect((await nodeMutualTls({ server: oldCert.credential, client: newCert.credential, trustPem: view.mounted[s] })).ok).toBe(false);
      if (hasOpenssl) {
        expect((await opensslMutualTls({ server: newCert.credential, client: oldCert.credential, trustPem: before.mounted[s], at: realNow })).ok).toBe(true);
        expect((await opensslMutualTls({ server: newCert.credential, client: oldCert.credential, trustPem: view.mounted[s], at: realNow })).ok).toBe(false);
      }
    }
  });

  // Registered only where openssl is missing, so the report says which checks did not run.
  if (!hasOpenssl) it.skip("openssl verify and s_server/s_client handshakes at each step: openssl is not installed", () => {});

  it("made every API call as each function's own ServiceAccount, each allowed by knative/'s RBAC, and left no key file behind", () => {
    expect(api.refusedRequests().map(describeRefusal)).toEqual([]);
    expect(leftoverTempDirs()).toEqual([]);
  });
});
