// Attacks on the running function bundles over HTTP, and what the pipeline must do when the cluster
// changes under it: each case is a finding of a hostile-input probe (issue 8) that failed before.
// The four bundles run as Knative runs them, against the embedded API server; events are handed
// from one to the next as the broker would.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attest } from "../../shared/events/attestation.js";
import { eventToJson } from "../../shared/events/codec.js";
import { requestKeyBinding } from "../../shared/events/key-binding.js";
import { type PodcertEvent } from "../../shared/events/types.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { MAX_CONDITION_MESSAGE_BYTES, MAX_USER_ANNOTATION_VALUE_BYTES } from "../../shared/limits.js";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { loadStepKeysDir } from "../../shared/runtime/load.js";
import { shortServiceNames } from "../helpers/objects.js";
import { createPcr, postEvent, postStructured, startBundleEnv, type Answer, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";

const ATE = "atesystem.podcert.ate.dev/identity";
const WORKER = "workerpool.podcert.ate.dev/identity";
const OPT_IN = "atesystem.podcert.ate.dev/expects-service";
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

let env: BundleEnv;
let fns: Record<"validate" | "derive-sans" | "sign" | "deny", ServedBundle>;
let counter = 0;
const uniqueName = (prefix: string) => `${prefix}-${++counter}`;

beforeAll(async () => {
  env = await startBundleEnv();
  const [validate, deriveSans, sign, deny] = await Promise.all([env.serve("validate"), env.serve("derive-sans"), env.serve("sign"), env.serve("deny")]);
  fns = { validate: validate!, "derive-sans": deriveSans!, sign: sign!, deny: deny! };
});

afterAll(async () => {
  await env?.stop();
});

/** Which function the broker hands each reply type to. */
const CONSUMER: Record<string, keyof typeof fns> = {
  [EVENT_TYPES.validated]: "derive-sans",
  [EVENT_TYPES.sansDerived]: "sign",
  [EVENT_TYPES.denied]: "deny",
};

/** Delivers `event` to validate, then each reply to its consumer, until nothing replies; every answer must be 2xx. */
async function runChain(event: PodcertEvent, between: (next: keyof typeof fns) => void = () => {}): Promise<void> {
  let target: keyof typeof fns | undefined = "validate";
  let e: PodcertEvent | undefined = event;
  while (target !== undefined && e !== undefined) {
    between(target);
    const a: Answer = await postEvent(fns[target].url, e);
    expect(a.status, `${target}: ${a.text}`).toBeLessThan(300);
    e = a.reply;
    target = e === undefined ? undefined : CONSUMER[e.type];
  }
}

function stored(pcr: PodCertificateRequest): PodCertificateRequest {
  return env.api.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name) as unknown as PodCertificateRequest;
}

async function expectAlive(b: ServedBundle): Promise<void> {
  expect(b.child.exitCode, b.stderr()).toBeNull();
  expect((await fetch(`${b.url}/healthz`)).status).toBe(200);
}

describe("trace context from the network is validated, never copied into a header (finding 1)", () => {
  const hostile = [
    { case: "traceparent with CR LF", attribute: "traceparent", value: `${TRACEPARENT}\r\nx-injected: 1` },
    { case: "tracestate with a character above U+00FF", attribute: "tracestate", value: "congo=\u0101" },
  ];

  it.each(hostile)("validate answers an event with $case and stays up; the reply carries no trace context", async ({ attribute, value }) => {
    const { event } = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: uniqueName("req-trace-v") });
    const a = await postStructured(fns.validate.url, { ...eventToJson(event), [attribute]: value });
    expect(a.status, a.text).toBe(200);
    expect(a.reply?.type).toBe(EVENT_TYPES.validated);
    expect(a.reply?.extensions[attribute]).toBeUndefined();
    await expectAlive(fns.validate);
    expect(fns.validate.stderr()).toMatch(new RegExp(`"msg":"event attribute dropped",.*"attribute":"${attribute}","reason":"does not follow the W3C Trace Context grammar"`));
  });

  it.each(hostile)("derive-sans and sign answer a hand-off with $case and stay up; the certificate is issued", async ({ attribute, value }) => {
    const { pcr, event } = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: uniqueName("req-trace-ds") });
    const v = await postEvent(fns.validate.url, { ...event, extensions: { ...event.extensions, traceparent: TRACEPARENT } });
    expect(v.reply?.extensions.traceparent).toBe(TRACEPARENT);
    const d = await postStructured(fns["derive-sans"].url, { ...eventToJson(v.reply!), [attribute]: value });
    expect(d.status, d.text).toBe(200);
    expect(d.reply?.extensions[attribute]).toBeUndefined();
    await expectAlive(fns["derive-sans"]);
    const s = await postStructured(fns.sign.url, { ...eventToJson(d.reply!), [attribute]: value });
    expect(s.status, s.text).toBe(200);
    expect(s.reply?.type).toBe(EVENT_TYPES.issued);
    expect(s.reply?.extensions[attribute]).toBeUndefined();
    await expectAlive(fns.sign);
    expect(terminalCondition(stored(pcr))?.type).toBe("Issued");
  });

  it("rejects with 400 an event whose other extension holds CR LF, and stays up", async () => {
    const { event } = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: uniqueName("req-ext") });
    const a = await postStructured(fns.validate.url, { ...eventToJson(event), kind: "PodCertificateRequest\r\nx-injected: 1" });
    expect(a.status).toBe(400);
    expect(a.text).toMatch(/extension kind holds a character other than printable ASCII/);
    await expectAlive(fns.validate);
  });
});

describe("every request ends in a terminal status, whatever its size (finding 3)", () => {
  it("a list of nothing but commas is Denied InvalidUnverifiedUserAnnotations, with a message the status holds", async () => {
    const { pcr, event } = createPcr(env.api, {
      namespace: "ate-system",
      pod: "api-ecdsap256",
      signerName: ATE,
      name: uniqueName("req-commas"),
      userAnnotations: { [OPT_IN]: ",".repeat(MAX_USER_ANNOTATION_VALUE_BYTES - 1) },
    });
    await runChain(event);
    const c = terminalCondition(stored(pcr));
    expect(c).toMatchObject({ type: "Denied", reason: "InvalidUnverifiedUserAnnotations" });
    expect(Buffer.byteLength(c!.message)).toBeLessThan(MAX_CONDITION_MESSAGE_BYTES);
    expect(c!.message).toMatch(/item 5 is empty; and 4091 more problems$/);
  });

  it("1,100 distinct short Service names are Denied TooManyDNSNames", async () => {
    const names = shortServiceNames(1100);
    const value = names.join(",");
    expect(Buffer.byteLength(value)).toBeLessThanOrEqual(MAX_USER_ANNOTATION_VALUE_BYTES);
    const { pcr, event } = createPcr(env.api, { namespace: "ate-system", pod: "api-ecdsap256", signerName: ATE, name: uniqueName("req-many"), userAnnotations: { [OPT_IN]: value } });
    await runChain(event);
    expect(terminalCondition(stored(pcr))).toMatchObject({ type: "Denied", reason: "TooManyDNSNames", message: `${OPT_IN}: names 1100 Services, at least 2200 DNS names; this signer puts at most 100 in a certificate` });
  });
});

describe("names from an event are checked before any API call (finding 4)", () => {
  const trigger = (namespace: string, name: string) => ({
    specversion: "1.0",
    id: "0d5e6f70-0000-4000-8000-00000000dead",
    type: EVENT_TYPES.apiServerAdd,
    source: "https://kubernetes.default.svc",
    datacontenttype: "application/json",
    kind: "PodCertificateRequest",
    data: { kind: "PodCertificateRequest", metadata: { namespace, name, uid: "44444444-0000-4000-8000-000000000007" }, spec: { signerName: ATE } },
  });

  it.each([
    { case: "namespace ..", namespace: "..", name: "x", says: /metadata\.namespace: must be a namespace name/ },
    { case: "namespace and name ..", namespace: "..", name: "..", says: /metadata\.(namespace|name): must be/ },
    { case: "name ../../nodes", namespace: "ate-system", name: "../../nodes", says: /metadata\.name: must be an object name/ },
  ])("validate refuses $case with 400, not a cluster-wide read or a retried 500", async ({ namespace, name, says }) => {
    const a = await postStructured(fns.validate.url, trigger(namespace, name));
    expect(a.status).toBe(400);
    expect(a.text).toMatch(says);
  });

  it.each(["derive-sans", "sign", "deny"] as const)("%s refuses a hand-off naming namespace .. with 400, before it looks at the attestation", async (fn) => {
    const type = fn === "derive-sans" ? EVENT_TYPES.validated : fn === "sign" ? EVENT_TYPES.sansDerived : EVENT_TYPES.denied;
    const a = await postStructured(fns[fn].url, {
      specversion: "1.0",
      id: "x",
      type,
      source: "/attacker",
      datacontenttype: "application/json",
      data: { pcr: { namespace: "..", name: "x", uid: "u" }, signerName: ATE, attestations: {} },
    });
    expect(a.status).toBe(400);
    expect(a.text).toMatch(/pcr\.namespace: must be a namespace name/);
  });
});

describe("a pod deleted or replaced mid-pipeline gets no certificate (finding 5)", () => {
  function addPod(template: string, namespace: string, name: string, uid: string): void {
    const t = structuredClone(env.api.store.get("pods", namespace, template)) as unknown as { metadata: Record<string, unknown> };
    t.metadata = { name, namespace, uid, labels: t.metadata.labels };
    env.api.store.create(t);
  }

  const cases = [
    { signer: WORKER, template: "worker-ecdsap256", namespace: "workers", annotations: undefined },
    { signer: ATE, template: "api-ecdsap256", namespace: "ate-system", annotations: { [OPT_IN]: "api" } },
  ].flatMap((c) =>
    (["deleted", "replaced"] as const).flatMap((change) =>
      (["derive-sans", "sign"] as const).map((before) => ({ ...c, change, before, case: `${c.signer === WORKER ? "a worker (no DNS names)" : "a control-plane pod (DNS names)"}, ${change} before ${before}` })),
    ),
  );

  it.each(cases)("$case: Denied PodMismatch", async ({ signer, template, namespace, annotations, change, before }) => {
    const podName = uniqueName("victim");
    addPod(template, namespace, podName, `aaaaaaaa-0000-4000-8000-${String(counter).padStart(12, "0")}`);
    const { pcr, event } = createPcr(env.api, { namespace, pod: podName, signerName: signer, name: uniqueName("req-victim"), ...(annotations ? { userAnnotations: annotations } : {}) });
    await runChain(event, (next) => {
      if (next !== before) return;
      env.api.store.delete("pods", namespace, podName);
      if (change === "replaced") addPod(template, namespace, podName, `bbbbbbbb-0000-4000-8000-${String(counter).padStart(12, "0")}`);
    });
    expect(terminalCondition(stored(pcr))).toMatchObject({ type: "Denied", reason: "PodMismatch" });
    expect(stored(pcr).status?.certificateChain).toBeUndefined();
  });
});

describe("attestations are bounded in age (finding 6)", () => {
  it.each([
    { case: "issued a year from now, valid for 15 minutes", iatOffsetSeconds: 365 * 86400, ttlSeconds: 900, says: /issued in the future/ },
    { case: "issued now, valid for a year", iatOffsetSeconds: 0, ttlSeconds: 365 * 86400, says: /claims a lifetime of 31536000 s, more than the 900 s configured/ },
  ])("derive-sans refuses a correctly signed token $case with 403", async ({ iatOffsetSeconds, ttlSeconds, says }) => {
    // Made with validate's own key, as by someone who stole it once.
    const keys = loadStepKeysDir("validate", join(env.keysDir, "validate"));
    const { pcr } = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: WORKER, name: uniqueName("req-age") });
    const ref = { namespace: pcr.metadata.namespace, name: pcr.metadata.name, uid: pcr.metadata.uid! };
    const token = await attest(
      keys,
      {
        pcr: ref,
        signerName: WORKER,
        spkiSha256: requestKeyBinding(pcr.spec),
        decision: {
          kind: "validated",
          keyType: "ECDSAP256",
          podName: pcr.spec.podName,
          podUID: pcr.spec.podUID,
          serviceAccountName: pcr.spec.serviceAccountName,
          services: { kind: "none" },
          request: { apiVersion: pcr.apiVersion === "certificates.k8s.io/v1" ? "certificates.k8s.io/v1" : "certificates.k8s.io/v1beta1", resourceVersion: pcr.metadata.resourceVersion ?? "1", nodeName: pcr.spec.nodeName, nodeUID: pcr.spec.nodeUID, serviceAccountUID: pcr.spec.serviceAccountUID, publicKey: pcr.spec.pkixPublicKey ?? "" },
        },
      },
      { now: new Date(Date.now() + iatOffsetSeconds * 1000), ttlSeconds },
    );
    const a = await postEvent(fns["derive-sans"].url, {
      specversion: "1.0",
      id: "forged-1",
      type: EVENT_TYPES.validated,
      source: "/podcert/validate",
      datacontenttype: "application/json",
      data: { pcr: ref, signerName: WORKER, attestations: { validate: token } },
      extensions: {},
    });
    expect(a.status).toBe(403);
    expect(a.text).toMatch(says);
  });
});
