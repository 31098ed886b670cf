/**
 * shared/runtime/run-step.ts: the preamble every step shares (event, profile, attestations, the
 * pending PCR) and how each outcome becomes a reply, a status write, a retry or nothing. Runs
 * small test steps against an in-memory ClusterApi with real step keys and attestations.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, RejectedEventError, RequestDeniedError, TransientError, WaitingError } from "../../../shared/errors.js";
import { attest, type Decision, type StepKeys } from "../../../shared/events/attestation.js";
import { apiServerAddEvent } from "../../../shared/events/pcr-event.js";
import { ephemeralStepKeys } from "../../../shared/events/step-keys.js";
import { readStepEventData, type PodcertEvent } from "../../../shared/events/types.js";
import { EVENT_TYPES, type KeyedStep } from "../../../shared/steps.js";
import type { ClusterApi, KubernetesEvent } from "../../../shared/kube/cluster.js";
import { pcrRef, type PcrStatus, type PodCertificateRequest } from "../../../shared/pcr/model.js";
import { deniedStatus } from "../../../shared/pcr/status.js";
import { ATESYSTEM_SIGNER, defaultSignerConfig } from "../../../shared/profiles/defaults.js";
import type { FunctionContext } from "../../../shared/runtime/function.js";
import { dispatch } from "../../../shared/runtime/http.js";
import { createLogger } from "../../../shared/runtime/log.js";
import { attestedStep, denied, reply, skip, sourceStep, wait, type Outcome } from "../../../shared/runtime/run-step.js";
import { pcrFor, pod } from "../../helpers/objects.js";

const KEYS: Record<KeyedStep, StepKeys> = ephemeralStepKeys();
const NOW = new Date();
const SPKI = "spki-hash";

/** An in-memory API server holding one PCR; `conflict` makes the next status write a 409. */
function fakeCluster(pcr: PodCertificateRequest | undefined) {
  const state = { pcr, writes: [] as PcrStatus[], writtenAt: [] as (string | undefined)[], conflict: undefined as undefined | ((p: PodCertificateRequest) => PodCertificateRequest | undefined) };
  const api: Partial<ClusterApi> = {
    readPcr: async () => structuredClone(state.pcr),
    replacePcrStatus: async (p, status) => {
      if (state.conflict) {
        state.pcr = state.conflict(state.pcr!);
        state.conflict = undefined;
        throw new ConflictError("stale resourceVersion");
      }
      state.writes.push(status);
      state.writtenAt.push(p.metadata.resourceVersion);
      state.pcr = { ...state.pcr!, status };
      return state.pcr;
    },
    readPod: async () => pod(),
  };
  return { api: api as ClusterApi, state };
}

function context(step: KeyedStep, cluster: ClusterApi) {
  const lines: Record<string, unknown>[] = [];
  const events: KubernetesEvent[] = [];
  const ctx: FunctionContext = {
    config: defaultSignerConfig(),
    cluster,
    keys: KEYS[step],
    now: () => NOW,
    log: createLogger({ write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }),
    events: { record: (e) => void events.push(e), flush: async () => true, dropped: 0, sampled: 0 },
  };
  const decisions = () => lines.filter((l) => l.msg === "decision");
  return { ctx, decisions, events };
}

let pcr: PodCertificateRequest;
beforeEach(() => {
  pcr = pcrFor(pod(), { signerName: ATESYSTEM_SIGNER });
  pcr.metadata.resourceVersion = "7";
});

/** A step event for `pcr` carrying the given steps' attestations of the given decisions. */
async function stepEvent(type: string, decisions: Partial<Record<"validate" | "derive-sans" | "sign", Decision>>, o: { spki?: Partial<Record<string, string>> } = {}): Promise<PodcertEvent> {
  const attestations: Record<string, string> = {};
  for (const [from, decision] of Object.entries(decisions)) {
    attestations[from] = await attest(KEYS[from as KeyedStep], { pcr: pcrRef(pcr), signerName: ATESYSTEM_SIGNER, spkiSha256: o.spki?.[from] ?? SPKI, decision }, { now: NOW, ttlSeconds: 900 });
  }
  return {
    specversion: "1.0",
    id: "e1",
    type,
    source: "/test",
    data: { pcr: pcrRef(pcr), signerName: ATESYSTEM_SIGNER, attestations },
    extensions: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
  };
}

const VALIDATED: Decision = {
  kind: "validated",
  keyType: "ECDSAP256",
  podName: "web-0",
  podUID: "u",
  serviceAccountName: "web",
  services: { kind: "none" },
  request: { apiVersion: "certificates.k8s.io/v1beta1", resourceVersion: "7", nodeName: "node-1", nodeUID: "n", serviceAccountUID: "s", publicKey: "AAAA" },
};
const DERIVED: Decision = { kind: "sans-derived", uris: ["spiffe://x/ns/a/sa/b"], dnsNames: [], lifetimeSeconds: 3600 };

/** A derive-sans-like step whose algorithm returns `outcome` (and records what it was given). */
function validatedStep(outcome: (spki: string) => Outcome) {
  const seen: { podName?: string; spki?: string } = {};
  const def = attestedStep({
    step: "derive-sans",
    expects: { validated: "validate" },
    run({ attested, spkiSha256 }) {
      seen.podName = attested.validated.podName; // typed: no narrowing needed
      seen.spki = spkiSha256;
      return outcome(spkiSha256);
    },
  });
  return { def, seen };
}

describe("attestedStep: the preamble", () => {
  it("hands the algorithm each expected decision, typed by its kind, and the key they bind", async () => {
    const { def, seen } = validatedStep((spki) => reply(EVENT_TYPES.sansDerived, spki, DERIVED, { outcome: "derived" }, { withReceived: true }));
    const { ctx, decisions } = context("derive-sans", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, { validate: VALIDATED }));
    expect(r.status).toBe(200);
    expect(seen).toEqual({ podName: "web-0", spki: SPKI });
    // The reply: this step's attestation added to those received, the trace carried on.
    const data = readStepEventData(r.reply!);
    expect(Object.keys(data.attestations).sort()).toEqual(["derive-sans", "validate"]);
    expect(r.reply!.extensions.traceparent).toBeDefined();
    expect(decisions()).toMatchObject([{ step: "derive-sans", eventId: "e1", pcrName: pcr.metadata.name, signerName: ATESYSTEM_SIGNER, outcome: "derived" }]);
  });

  it.each([
    { case: "a missing attestation", decisions: {}, status: 401, error: /missing attestation from step validate/ },
    { case: "an attestation of another decision kind", decisions: { validate: DERIVED }, status: 403, error: /attests a sans-derived decision, not validated/ },
  ])("rejects $case before anything is read", async ({ decisions: given, status, error }) => {
    const { def } = validatedStep(() => skip("unreachable"));
    const { api, state } = fakeCluster(pcr);
    const { ctx, decisions } = context("derive-sans", api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, given));
    expect(r.status).toBe(status);
    expect(String(r.error)).toMatch(error);
    expect(decisions()).toEqual([]);
    expect(state.writes).toEqual([]);
  });

  it("rejects attestations bound to different keys (403)", async () => {
    const def = attestedStep({
      step: "sign",
      expects: { validated: "validate", "sans-derived": "derive-sans" },
      run: () => skip("unreachable"),
    });
    const { ctx } = context("sign", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.sansDerived, { validate: VALIDATED, "derive-sans": DERIVED }, { spki: { "derive-sans": "other" } }));
    expect(r.status).toBe(403);
    expect(String(r.error)).toMatch(/the validate and derive-sans attestations are bound to different keys/);
  });

  it("checks what the step holds before any attestation", async () => {
    const def = attestedStep({
      step: "derive-sans",
      expects: { validated: "validate" },
      holds: () => {
        throw new TransientError("started without what it needs");
      },
      run: () => skip("unreachable"),
    });
    const { ctx } = context("derive-sans", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, {}));
    expect(r.status).toBe(503);
  });

  it("rejects an event for a signer this deployment does not serve (400)", async () => {
    const { def } = validatedStep(() => skip("unreachable"));
    const { ctx } = context("derive-sans", fakeCluster(pcr).api);
    const event = await stepEvent(EVENT_TYPES.validated, { validate: VALIDATED });
    const r = await dispatch(def, ctx, { ...event, data: { ...(event.data as object), signerName: "other.example/signer" } });
    expect(r.status).toBe(400);
  });
});

describe("attestedStep with readsPcr: the pending PCR", () => {
  const denyLike = (run: (pcr: PodCertificateRequest) => Outcome) =>
    attestedStep({
      step: "deny",
      expects: { denied: () => "validate" },
      readsPcr: true,
      run: ({ pcr: read }) => run(read),
    });
  const DENIAL: Decision = { kind: "denied", reason: "PodMismatch", message: "m", permanent: false };

  it.each([
    { case: "gone", stored: () => undefined, why: "PCR no longer exists" },
    { case: "re-created under the same name", stored: () => ({ ...pcr, metadata: { ...pcr.metadata, uid: "new" } }), why: "PCR was re-created (uid new)" },
    { case: "already terminal", stored: () => ({ ...pcr, status: deniedStatus({ reason: "X", message: "y", permanent: false, now: NOW }) }), why: "PCR is already Denied" },
  ])("skips a PCR that is $case (204, logged, the algorithm not run)", async ({ stored, why }) => {
    let ran = false;
    const { ctx, decisions } = context("deny", fakeCluster(stored()).api);
    const r = await dispatch(
      denyLike(() => ((ran = true), skip("x"))),
      ctx,
      await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }),
    );
    expect(r.status).toBe(204);
    expect(ran).toBe(false);
    expect(decisions()).toMatchObject([{ outcome: "skipped", message: why }]);
  });

  describe("writeStatus", () => {
    const write = (read: PodCertificateRequest): Outcome => ({
      kind: "writeStatus",
      pcr: read,
      status: deniedStatus({ reason: "PodMismatch", message: "m", permanent: false, now: NOW }),
      log: { outcome: "denied", reason: "PodMismatch", message: "m" },
      note: { type: "Warning", reason: "PodMismatch", message: "m" },
    });

    it("writes with the resourceVersion read, then logs and records the Kubernetes Event", async () => {
      const { api, state } = fakeCluster(pcr);
      const { ctx, decisions, events } = context("deny", api);
      const r = await dispatch(denyLike(write), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(204);
      expect(state.writes).toHaveLength(1);
      expect(state.pcr?.metadata.resourceVersion).toBe("7");
      expect(decisions()).toMatchObject([{ outcome: "denied", reason: "PodMismatch", message: "m" }]);
      expect(events).toMatchObject([{ type: "Warning", reason: "PodMismatch", message: "m" }]);
    });

    it("on a conflict another delivery won: skipped, nothing else logged or recorded", async () => {
      const { api, state } = fakeCluster(pcr);
      state.conflict = (p) => ({ ...p, status: deniedStatus({ reason: "X", message: "y", permanent: false, now: NOW }) });
      const { ctx, decisions, events } = context("deny", api);
      const r = await dispatch(denyLike(write), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(204);
      expect(decisions()).toMatchObject([{ outcome: "skipped", message: "PCR is already Denied (read back after a conflicting status write)" }]);
      expect(events).toEqual([]);
    });

    it("on a conflict with the PCR still pending: retried (503)", async () => {
      const { api, state } = fakeCluster(pcr);
      state.conflict = (p) => p;
      const { ctx, decisions } = context("deny", api);
      const r = await dispatch(denyLike(write), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(503);
      expect(r.error).toBeInstanceOf(TransientError);
      expect(decisions()).toEqual([]);
    });

    it("with a recheck (sign, writing on an attested resourceVersion): a conflict on a PCR still pending is read back, rechecked and written once more with its resourceVersion", async () => {
      const { api, state } = fakeCluster(pcr);
      state.conflict = (p) => ({ ...p, metadata: { ...p.metadata, resourceVersion: "8" } });
      const checked: (string | undefined)[] = [];
      const { ctx, decisions } = context("deny", api);
      const withRecheck = (read: PodCertificateRequest): Outcome => ({ ...(write(read) as Extract<Outcome, { kind: "writeStatus" }>), recheck: (fresh) => void checked.push(fresh.metadata.resourceVersion) });
      const r = await dispatch(denyLike(withRecheck), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(204);
      expect(checked).toEqual(["8"]);
      expect(state.writtenAt).toEqual(["8"]);
      expect(decisions()).toMatchObject([{ outcome: "denied" }]);
    });

    it("with a recheck that finds another request: its error (403), nothing written", async () => {
      const { api, state } = fakeCluster(pcr);
      state.conflict = (p) => ({ ...p, metadata: { ...p.metadata, resourceVersion: "8" } });
      const { ctx, decisions } = context("deny", api);
      const refusing = (read: PodCertificateRequest): Outcome => ({
        ...(write(read) as Extract<Outcome, { kind: "writeStatus" }>),
        recheck: () => {
          throw new RejectedEventError("attestations do not match", 403);
        },
      });
      const r = await dispatch(denyLike(refusing), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(403);
      expect(state.writes).toEqual([]);
      expect(decisions()).toEqual([]);
    });

    it("refuses (500) a status kube-apiserver would reject, and writes nothing", async () => {
      const { api, state } = fakeCluster(pcr);
      const { ctx } = context("deny", api);
      const bad = (read: PodCertificateRequest): Outcome => ({ ...(write(read) as Extract<Outcome, { kind: "writeStatus" }>), status: deniedStatus({ reason: "not a reason!", message: "m", permanent: false, now: NOW }) });
      const r = await dispatch(denyLike(bad), ctx, await stepEvent(EVENT_TYPES.denied, { validate: DENIAL }));
      expect(r.status).toBe(500);
      expect(String(r.error)).toMatch(/refusing to write a status kube-apiserver would reject/);
      expect(state.writes).toEqual([]);
    });
  });
});

describe("the other outcomes", () => {
  it("wait: logged as waiting, then retried (503) with what it waits for", async () => {
    const { def } = validatedStep(() => wait("Services", "Service ns/api does not exist"));
    const { ctx, decisions } = context("derive-sans", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, { validate: VALIDATED }));
    expect(r.status).toBe(503);
    expect((r.error as Error).message).toBe("waiting for Services: Service ns/api does not exist");
    expect(decisions()).toMatchObject([{ outcome: "waiting", message: "Service ns/api does not exist" }]);
  });

  it("wait: records no Kubernetes Event when nothing asks an operator to act (Services the user creates)", async () => {
    const { def } = validatedStep(() => wait("Services", "Service ns/api does not exist"));
    const { ctx, events } = context("derive-sans", fakeCluster(pcr).api);
    expect((await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, { validate: VALIDATED }))).status).toBe(503);
    expect(events).toEqual([]);
  });

  it.each([
    { case: "a WaitingError from the policy the algorithm calls", run: (): Outcome => {
      throw new WaitingError("a usable CA", "CAExpiring", "the CA expires; rotate");
    } },
    { case: "a wait outcome with a reason", run: (): Outcome => wait("a usable CA", "the CA expires; rotate", { reason: "CAExpiring" }) },
  ])("$case: pending (503), the decision line gives the reason, and a Warning Event on the PCR says it", async ({ run }) => {
    // A sign-like step that reads the PCR: the Event is on the PCR the event names.
    const def = attestedStep({ step: "sign", expects: { validated: "validate" }, readsPcr: true, run });
    const { api, state } = fakeCluster(pcr);
    const { ctx, decisions, events } = context("sign", api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.sansDerived, { validate: VALIDATED }));
    expect(r.status).toBe(503);
    expect(r.error).toBeInstanceOf(TransientError);
    expect((r.error as Error).message).toBe("waiting for a usable CA: the CA expires; rotate");
    expect(decisions()).toMatchObject([{ outcome: "waiting", reason: "CAExpiring", message: "the CA expires; rotate" }]);
    expect(events).toEqual([
      {
        regarding: { kind: "PodCertificateRequest", apiVersion: "certificates.k8s.io/v1beta1", namespace: pcr.metadata.namespace, name: pcr.metadata.name, uid: pcr.metadata.uid },
        type: "Warning",
        reason: "CAExpiring",
        message: "the CA expires; rotate",
        reportingComponent: "podcert-sign",
      },
    ]);
    expect(state.writes).toEqual([]);
  });

  it("other errors of the algorithm keep their meaning (a TransientError: 503, no decision, no Event)", async () => {
    const def = attestedStep({ step: "sign", expects: { validated: "validate" }, readsPcr: true, run: (): Outcome => {
      throw new TransientError("the API server is away");
    } });
    const { ctx, decisions, events } = context("sign", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.sansDerived, { validate: VALIDATED }));
    expect(r.status).toBe(503);
    expect(decisions()).toEqual([]);
    expect(events).toEqual([]);
  });

  it("denied: a request.denied reply with the denial attested, without the attestations received", async () => {
    const { def } = validatedStep((spki) => denied(new RequestDeniedError("TooManyDNSNames", "too many"), spki));
    const { ctx, decisions } = context("derive-sans", fakeCluster(pcr).api);
    const r = await dispatch(def, ctx, await stepEvent(EVENT_TYPES.validated, { validate: VALIDATED }));
    expect(r.reply?.type).toBe(EVENT_TYPES.denied);
    expect(Object.keys(readStepEventData(r.reply!).attestations)).toEqual(["derive-sans"]);
    expect(decisions()).toMatchObject([{ outcome: "denied", reason: "TooManyDNSNames", message: "too many" }]);
  });
});

describe("sourceStep: an unauthenticated ApiServerSource event", () => {
  const validateLike = (seen: PodCertificateRequest[]) =>
    sourceStep({
      step: "validate",
      run: ({ pcr: read }) => (seen.push(read), skip("ran")),
    });

  it("runs the algorithm on the PCR as the API server has it, not as the event says", async () => {
    const seen: PodCertificateRequest[] = [];
    const lying = structuredClone(pcr);
    lying.spec.podName = "someone-else";
    const { ctx } = context("validate", fakeCluster(pcr).api);
    await dispatch(validateLike(seen), ctx, apiServerAddEvent(lying));
    expect(seen.map((p) => p.spec.podName)).toEqual([pcr.spec.podName]);
  });

  it.each([
    { case: "names a signer this deployment does not serve", event: () => apiServerAddEvent({ ...pcr, spec: { ...pcr.spec, signerName: "other.example/x" } }), stored: () => pcr },
    { case: "is already terminal in the event", event: () => apiServerAddEvent({ ...pcr, status: deniedStatus({ reason: "X", message: "y", permanent: false, now: NOW }) }), stored: () => pcr },
    { case: "is for a PCR stored with another signer", event: () => apiServerAddEvent(pcr), stored: () => ({ ...pcr, spec: { ...pcr.spec, signerName: "other.example/x" } }) },
  ])("ignores an event that $case: 204, no decision", async ({ event, stored }) => {
    const seen: PodCertificateRequest[] = [];
    const { ctx, decisions } = context("validate", fakeCluster(stored()).api);
    expect((await dispatch(validateLike(seen), ctx, event())).status).toBe(204);
    expect(seen).toEqual([]);
    expect(decisions()).toEqual([]);
  });

  it("skips, logged, a PCR that is gone", async () => {
    const { ctx, decisions } = context("validate", fakeCluster(undefined).api);
    expect((await dispatch(validateLike([]), ctx, apiServerAddEvent(pcr))).status).toBe(204);
    expect(decisions()).toMatchObject([{ outcome: "skipped", message: "PCR no longer exists", signerName: ATESYSTEM_SIGNER }]);
  });

  it("a malformed event is rejected (400)", async () => {
    const { ctx } = context("validate", fakeCluster(pcr).api);
    const r = await dispatch(validateLike([]), ctx, { ...apiServerAddEvent(pcr), data: { metadata: {} } });
    expect(r.status).toBe(400);
    expect(r.error).toBeInstanceOf(RejectedEventError);
  });
});
