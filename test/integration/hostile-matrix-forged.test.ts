// Issue 11, part 2: forged hand-offs against every step that accepts attestations
// (acceptsAttestationsFrom in the registry), over HTTP. The valid attestations are real: the
// bundles made them for real PCRs of the embedded API server; each case tampers with one thing.
// Each must be refused 401 (no attestation) or 403 (an attestation that does not verify or does
// not match the event; shared/events/attestation.ts), or 400 when the hand-off itself is
// malformed, write nothing and leave the bundle healthy; afterwards memory is bounded and a real
// request is still issued.
import { createSecretKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { join } from "node:path";
import { GeneralSign, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Decision, EdgeKey } from "../../shared/events/attestation.js";
import type { PodcertEvent, StepEventData } from "../../shared/events/types.js";
import type { PcrRef } from "../../shared/pcr/model.js";
import { loadStepKeysDir } from "../../shared/runtime/load.js";
import { attestationEdges, edgeKid, EVENT_TYPES, KEYED_STEPS, STEP_REGISTRY, STEPS, type StepName } from "../../shared/steps.js";
import { acceptsFrom } from "../helpers/edges.js";
import { createPcr, postEvent, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { expectAlive, expectApiUnchanged, expectIssuedEndToEnd, expectMemoryBounded, serveEveryStep, snapshotApi } from "../helpers/matrix.js";

const WORKER = "workerpool.podcert.ate.dev/identity";
const ATE = "atesystem.podcert.ate.dev/identity";
const OPT_IN = "atesystem.podcert.ate.dev/expects-service";

let env: BundleEnv;
let bundles: Record<StepName, ServedBundle>;

/** The real hand-offs for one request of each signer, by event type; and a pending request nobody attested. */
const real: Record<"worker" | "ate", Partial<Record<string, PodcertEvent>>> = { worker: {}, ate: {} };
let refB: PcrRef;
let refA: PcrRef;

const dataOf = (e: PodcertEvent) => e.data as StepEventData;

async function handOff(fn: StepName, event: PodcertEvent, type: string): Promise<PodcertEvent> {
  const a = await postEvent(bundles[fn].url, event);
  expect(a.reply?.type, `${fn}: ${a.status} ${a.text}`).toBe(type);
  return a.reply!;
}

beforeAll(async () => {
  env = await startBundleEnv();
  bundles = await serveEveryStep(env);
  // A worker's request (validated, then its SANs derived) and one validate denies (a worker signer
  // outside its namespaces); the same for the control-plane signer (denied for its annotation).
  const a = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: "req-forge-a" });
  refA = { namespace: "workers", name: "req-forge-a", uid: a.pcr.metadata.uid! };
  real.worker[EVENT_TYPES.validated] = await handOff("validate", a.event, EVENT_TYPES.validated);
  real.worker[EVENT_TYPES.sansDerived] = await handOff("derive-sans", real.worker[EVENT_TYPES.validated]!, EVENT_TYPES.sansDerived);
  const d = createPcr(env.api, { namespace: "ate-system", pod: "api-ecdsap256", signerName: WORKER, name: "req-forge-denied" });
  real.worker[EVENT_TYPES.denied] = await handOff("validate", d.event, EVENT_TYPES.denied);
  const c = createPcr(env.api, { namespace: "ate-system", pod: "api-ecdsap256", signerName: ATE, name: "req-forge-c" });
  real.ate[EVENT_TYPES.validated] = await handOff("validate", c.event, EVENT_TYPES.validated);
  real.ate[EVENT_TYPES.sansDerived] = await handOff("derive-sans", real.ate[EVENT_TYPES.validated]!, EVENT_TYPES.sansDerived);
  const e = createPcr(env.api, { namespace: "ate-system", pod: "api-ecdsap256", signerName: ATE, name: "req-forge-e", userAnnotations: { [OPT_IN]: "True" } });
  real.ate[EVENT_TYPES.denied] = await handOff("validate", e.event, EVENT_TYPES.denied);
  // Pending, never handed on: the victim of replays.
  const b = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: "req-forge-b" });
  refB = { namespace: "workers", name: "req-forge-b", uid: b.pcr.metadata.uid! };
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

/** The steps under attack, from the registry, each with the type it consumes. */
const ATTESTED = STEP_REGISTRY.filter((s) => s.acceptsAttestationsFrom.length > 0).map((s) => ({ fn: s.name as StepName, type: s.consumes[0] as string }));

/** The real event a step consumes (a step added to the registry needs one here, or this fails). */
function base(signer: "worker" | "ate", type: string): PodcertEvent {
  const e = real[signer][type];
  if (e === undefined) throw new Error(`no real ${type} event to forge from: add one to beforeAll`);
  return structuredClone(e);
}

const withData = (e: PodcertEvent, data: unknown): PodcertEvent => ({ ...e, id: `${e.id}-forged`, data });
const withToken = (e: PodcertEvent, slot: string, token: string | undefined): PodcertEvent => {
  const attestations: Record<string, string> = { ...dataOf(e).attestations };
  if (token === undefined) delete attestations[slot];
  else attestations[slot] = token;
  return withData(e, { ...dataOf(e), attestations });
};

// --- tokens --------------------------------------------------------------------------------------

/** The key of edge from→to, as the receiver's Secret (written by `podcert keys init`) holds it. */
const edgeKey = (from: StepName, to: StepName): EdgeKey => loadStepKeysDir(to, join(env.keysDir, to)).accepted.get(from)!;
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const b64json = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
interface General {
  payload: string;
  signatures: { protected: string; signature: string }[];
}
const generalOf = (t: string) => JSON.parse(t) as General;
/** The protected header of the real token's signature for edge from→to. */
const headerOf = (t: string, from: StepName, to: StepName) => {
  const h = generalOf(t).signatures.map((sig) => b64json(sig.protected)).find((x) => x.kid === edgeKid({ from, to }));
  if (h === undefined) throw new Error(`the real token has no signature for ${edgeKid({ from, to })}`);
  return h;
};
const claimsOf = (t: string) => b64json(generalOf(t).payload) as JWTPayload;
/** A General JWS of `claims` with one signature: `header`, made with `key`. */
const mint = async (key: EdgeKey | KeyObject, header: Record<string, unknown>, claims: JWTPayload) => {
  const jws = new GeneralSign(new TextEncoder().encode(JSON.stringify(claims)));
  jws.addSignature(key).setProtectedHeader(header as { alg: string });
  return JSON.stringify(await jws.sign());
};
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The decision changed in a way that would pay off for an attacker, per kind. */
function tampered(d: Decision): Decision {
  switch (d.kind) {
    case "validated":
      return { ...d, serviceAccountName: "admin" };
    case "sans-derived":
      return { ...d, dnsNames: [...d.dnsNames, "kubernetes.default.svc"] };
    case "denied":
      return { ...d, reason: "PodMismatch", message: "forged" };
    case "issued":
      return { ...d, serialNumber: "01" };
  }
}

interface TokenForgery {
  case: string;
  /** The token to put in the slot instead of the real one (undefined: none); `fn` receives it. */
  forge(real: string, slot: StepName, fn: StepName): Promise<string | undefined> | string | undefined;
  status: 401 | 403;
  says: (slot: StepName) => RegExp;
}

/** Ways to replace one real attestation, whichever step made it. */
const TOKEN_FORGERIES: TokenForgery[] = [
  { case: "no attestation", forge: () => undefined, status: 401, says: (s) => new RegExp(`missing attestation from step ${s}`) },
  {
    case: "a fresh random HS256 key with the right kid",
    forge: (t, slot, fn) => mint(createSecretKey(randomBytes(32)), headerOf(t, slot, fn), claimsOf(t)),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: signature does not verify`),
  },
  {
    // The same sender's key for another receiver: what that receiver, compromised, holds. (Every
    // other edge's key is tried on deny below and in the unit tests.)
    case: "MACed with the sender's key of another edge, labelled as this edge",
    forge: (t, slot, fn) => {
      const others = attestationEdges().filter((e) => !(e.from === slot && e.to === fn));
      const other = others.find((e) => e.from === slot) ?? others[0]!;
      return mint(edgeKey(other.from, other.to), headerOf(t, slot, fn), claimsOf(t));
    },
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: signature does not verify`),
  },
  {
    case: "alg none, no signature",
    forge: (t, slot, fn) => JSON.stringify({ payload: generalOf(t).payload, signatures: [{ protected: b64url({ ...headerOf(t, slot, fn), alg: "none" }), signature: "" }] }),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected`),
  },
  {
    case: "alg none, with a signature member",
    forge: (t, slot, fn) => JSON.stringify({ payload: generalOf(t).payload, signatures: [{ protected: b64url({ ...headerOf(t, slot, fn), alg: "none" }), signature: "AA" }] }),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected`),
  },
  {
    case: "an EdDSA signature by a fresh key (an asymmetric alg)",
    forge: (t, slot, fn) => mint(generateKeyPairSync("ed25519").privateKey, { ...headerOf(t, slot, fn), alg: "EdDSA" }, claimsOf(t)),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: algorithm "EdDSA" is not allowed`),
  },
  {
    // Another HMAC algorithm under the edge's own key: the algorithm is pinned before the key is used.
    case: "HS512 MACed with the real key",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), { ...headerOf(t, slot, fn), alg: "HS512" }, claimsOf(t)),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: algorithm "HS512" is not allowed`),
  },
  {
    case: "typ changed to JWT (MACed with the real key)",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), { ...headerOf(t, slot, fn), typ: "JWT" }, claimsOf(t)),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: header typ does not match`),
  },
  {
    case: "kid naming another edge (MACed with the real key)",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), { ...headerOf(t, slot, fn), kid: `${slot}->validate` }, claimsOf(t)),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: no signature for edge ${s}->`),
  },
  {
    case: "expired (MACed with the real key)",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), headerOf(t, slot, fn), { ...claimsOf(t), iat: nowSeconds() - 3600, exp: nowSeconds() - 2700 }),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: expired`),
  },
  {
    case: "issued an hour from now (MACed with the real key)",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), headerOf(t, slot, fn), { ...claimsOf(t), iat: nowSeconds() + 3600, exp: nowSeconds() + 3600 + 900 }),
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: issued in the future`),
  },
  {
    case: "not valid before an hour from now (MACed with the real key)",
    forge: (t, slot, fn) => mint(edgeKey(slot, fn), headerOf(t, slot, fn), { ...claimsOf(t), nbf: nowSeconds() + 3600 }),
    status: 403,
    // A sender makes no nbf: the claims are not of the shape it makes.
    says: (s) => new RegExp(`attestation from ${s} has malformed claims \\(.*nbf`),
  },
  {
    case: "its decision rewritten (SANs, service account, reason), signatures kept",
    forge: (t) => {
      const c = claimsOf(t);
      return JSON.stringify({ ...generalOf(t), payload: b64url({ ...c, decision: tampered(c.decision as Decision) }) });
    },
    status: 403,
    says: (s) => new RegExp(`attestation from ${s} rejected: signature does not verify`),
  },
];

interface Case {
  case: string;
  event: () => Promise<PodcertEvent> | PodcertEvent;
  status: number;
  says: RegExp;
}

function casesFor(fn: StepName, type: string): Case[] {
  const slots = (e: PodcertEvent) => Object.keys(dataOf(e).attestations).filter((s): s is StepName => (acceptsFrom(fn) as readonly string[]).includes(s));
  // Which slots the real event carries is known only once beforeAll ran: list them by registry.
  const slotNames = acceptsFrom(fn).filter((s) => (type === EVENT_TYPES.denied ? s === "validate" : true));
  const cases: Case[] = slotNames.flatMap((slot) =>
    TOKEN_FORGERIES.map((f) => ({
      case: `${slot}'s attestation replaced: ${f.case}`,
      event: async () => {
        const e = base("worker", type);
        expect(slots(e)).toContain(slot);
        return withToken(e, slot, await f.forge(dataOf(e).attestations[slot as keyof StepEventData["attestations"]]!, slot, fn));
      },
      status: f.status,
      says: f.says(slot),
    })),
  );
  cases.push(
    {
      case: "valid attestations for one PCR, on an event about another (replay)",
      event: () => {
        const e = base("worker", type);
        return withData(e, { ...dataOf(e), pcr: refB });
      },
      status: 403,
      says: /does not match the event: it is for PCR (workers\/req-forge-a|ate-system\/req-forge-denied)/,
    },
    {
      case: "valid attestations for the other signer's request, on this signer's",
      event: () => withData(base("ate", type), { ...dataOf(base("ate", type)), pcr: refA, signerName: WORKER }),
      status: 403,
      says: /does not match the event: it is for PCR ate-system\/req-forge-[ce] .*; it is for signer atesystem\.podcert\.ate\.dev\/identity/,
    },
    {
      // The SANs are only ever read from derive-sans' token; a hand-off has no field for them.
      case: "a SAN list added to the event data, outside the tokens",
      event: () => {
        const e = base("worker", type);
        return withData(e, { ...dataOf(e), dnsNames: ["kubernetes.default.svc"], uris: ["spiffe://cluster.local/ns/kube-system/sa/admin"] });
      },
      status: 400,
      says: /malformed data/,
    },
  );
  if (type === EVENT_TYPES.denied) cases.push(...denialForgeries(fn));
  return cases;
}

/** Denials nobody who may deny made. */
function denialForgeries(fn: StepName): Case[] {
  // The keyed steps whose attestations fn does not accept (the dead-letter sink holds nothing).
  const mayNotDeny = KEYED_STEPS.filter((s) => !(acceptsFrom(fn) as readonly string[]).includes(s));
  return [
    {
      case: "validate's attestation that it validated, sent as a denial",
      event: () => ({ ...base("worker", EVENT_TYPES.validated), type: EVENT_TYPES.denied }),
      status: 403,
      says: /attestation from validate does not match the event: it attests a validated decision, not denied/,
    },
    {
      case: "derive-sans' attestation of its SANs, sent as a denial",
      event: () => ({ ...base("worker", EVENT_TYPES.sansDerived), type: EVENT_TYPES.denied }),
      status: 403,
      says: /attestation from derive-sans does not match the event: it attests a sans-derived decision, not denied/,
    },
    // A step that may not deny holds no key of an edge ending here; what it can make with the keys
    // of the edges it is an end of (each edge not into fn) does not verify as validate's.
    ...attestationEdges()
      .filter((e) => e.to !== fn)
      .map((e) => ({
        case: `a real denial re-MACed with the key of edge ${edgeKid(e)}, claiming to be validate's`,
        event: async () => {
          const e0 = base("worker", EVENT_TYPES.denied);
          const t = dataOf(e0).attestations.validate!;
          return withToken(e0, "validate", await mint(edgeKey(e.from, e.to), headerOf(t, "validate", fn), claimsOf(t)));
        },
        status: 403 as const,
        says: /attestation from validate rejected: signature does not verify/,
      })),
    ...mayNotDeny.map((step) => ({
      case: `a denial made under ${step}'s own name`,
      event: async () => {
        const e = base("worker", EVENT_TYPES.denied);
        const t = dataOf(e).attestations.validate!;
        const own = await mint(createSecretKey(randomBytes(32)), { ...headerOf(t, "validate", fn), kid: `${step}->${fn}` }, { ...claimsOf(t), iss: step });
        return withData(e, { ...dataOf(e), attestations: { [step]: own } });
      },
      // The hand-off has no place for its attestation: malformed, before any key is looked at.
      status: 400,
      says: /malformed data/,
    })),
  ];
}

describe.each(ATTESTED)("$fn over HTTP refuses forged hand-offs", ({ fn, type }) => {
  it.each(casesFor(fn, type))("$case: $status", async ({ event, status, says }) => {
    const forged = await event();
    const before = snapshotApi(env);
    const a = await postEvent(bundles[fn].url, forged);
    expect(a.status, a.text).toBe(status);
    expect(a.text).toMatch(says);
    await expectAlive(bundles[fn]);
    expectApiUnchanged(env, before);
  });
});

describe("after the matrix", () => {
  it("the requests attacked are as they were: pending, without a certificate", () => {
    for (const name of ["req-forge-a", "req-forge-b", "req-forge-c", "req-forge-denied", "req-forge-e"]) {
      const ns = name === "req-forge-a" || name === "req-forge-b" ? "workers" : "ate-system";
      expect(env.api.store.get("podcertificaterequests", ns, name)?.status ?? {}, name).toEqual({});
    }
  });

  it("every bundle is up with bounded memory, and a legitimate request is still issued end to end", async () => {
    for (const fn of STEPS) await expectAlive(bundles[fn]);
    expectMemoryBounded(bundles);
    await expectIssuedEndToEnd(env, bundles, "req-after-forged-matrix");
  });
});
