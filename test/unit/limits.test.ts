// The derived limits hold what the primitive ones allow: the largest attestation and the largest
// event a step can legitimately make are accepted by the step that receives them, so no request
// that passed validate's limits can be refused further on (issue: requests that never end).
import { describe, expect, it } from "vitest";
import { boundDenialMessage, RequestDeniedError } from "../../shared/errors.js";
import { attest, verifyAttestation, type AttestationExpectation, type Decision } from "../../shared/events/attestation.js";
import { eventFromHttp, eventToBinaryHttp } from "../../shared/events/codec.js";
import { jsonShapeProblem } from "../../shared/events/json-shape.js";
import { ephemeralStepKeys } from "../../shared/events/step-keys.js";
import { apiServerAddEvent } from "../../shared/events/pcr-event.js";
import { readStepEventData, type PodcertEvent, type StepEventData } from "../../shared/events/types.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { pcrFor, pod } from "../helpers/objects.js";
import {
  MAX_ATTESTATION_BYTES,
  MAX_ATTESTED_POD_LABELS,
  MAX_LABEL_KEY_LENGTH,
  MAX_RESOURCE_VERSION_LENGTH,
  MAX_TIMESTAMP_LENGTH,
  REQUEST_KEY_LIMITS,
  MAX_CONDITION_MESSAGE_BYTES,
  MAX_DNS_NAMES,
  MAX_DNS_NAMES_BYTES,
  MAX_EVENT_BYTES,
  MAX_KUBE_ANNOTATIONS_BYTES,
  MAX_LABEL_LENGTH,
  MAX_NAME_LENGTH,
  MAX_SERVICE_NAMES,
  MAX_SIGNER_NAME_LENGTH,
  MAX_UID_LENGTH,
  MAX_URI_LENGTH,
  truncateUtf8,
} from "../../shared/limits.js";

const keys = ephemeralStepKeys();
const NOW = new Date("2026-05-01T10:00:00Z");
const TTL = 900;
// The longest names Kubernetes allows, so the claims around each decision are as large as they get.
const PCR = { namespace: "n".repeat(MAX_LABEL_LENGTH), name: "p".repeat(MAX_NAME_LENGTH), uid: "u".repeat(MAX_UID_LENGTH) };
const SIGNER = `${"d".repeat(MAX_SIGNER_NAME_LENGTH - 10)}/identity`;
const SPKI = "A".repeat(43);

/** As many names as MAX_DNS_NAMES allows, together MAX_DNS_NAMES_BYTES at most: the most JSON quoting. */
function largestDnsNames(): string[] {
  const each = Math.floor(MAX_DNS_NAMES_BYTES / MAX_DNS_NAMES);
  return Array.from({ length: MAX_DNS_NAMES }, (_, i) => `${String(i).padStart(4, "0")}${"x".repeat(each - 4)}`);
}

const LARGEST: Record<"validated" | "sans-derived" | "denied", Decision> = {
  validated: {
    kind: "validated",
    keyType: "RSA4096",
    podName: "p".repeat(MAX_NAME_LENGTH),
    podUID: "u".repeat(MAX_UID_LENGTH),
    serviceAccountName: "s".repeat(MAX_NAME_LENGTH),
    maxExpirationSeconds: 7862400,
    services: { kind: "named", names: Array.from({ length: MAX_SERVICE_NAMES }, (_, i) => `s${String(i).padStart(MAX_LABEL_LENGTH - 1, "0")}`) },
    request: {
      apiVersion: "certificates.k8s.io/v1beta1",
      resourceVersion: "9".repeat(MAX_RESOURCE_VERSION_LENGTH),
      creationTimestamp: "t".repeat(MAX_TIMESTAMP_LENGTH),
      nodeName: "n".repeat(MAX_NAME_LENGTH),
      nodeUID: "u".repeat(MAX_UID_LENGTH),
      serviceAccountUID: "u".repeat(MAX_UID_LENGTH),
      publicKey: "A".repeat(REQUEST_KEY_LIMITS.pkixPublicKey),
    },
    // As many labels as attested, each with the longest key and value Kubernetes allows.
    pod: {
      labels: Object.fromEntries(Array.from({ length: MAX_ATTESTED_POD_LABELS }, (_, i) => [`${String(i).padStart(2, "0")}${"k".repeat(MAX_LABEL_KEY_LENGTH - 2)}`, "v".repeat(MAX_LABEL_LENGTH)])),
      hostname: "h".repeat(MAX_LABEL_LENGTH),
      subdomain: "s".repeat(MAX_LABEL_LENGTH),
    },
  },
  "sans-derived": { kind: "sans-derived", uris: [`spiffe://${"t".repeat(MAX_URI_LENGTH - 9)}`], dnsNames: largestDnsNames(), lifetimeSeconds: 7862400 },
  // Quotes are escaped in JSON: a message of nothing else doubles.
  denied: { kind: "denied", reason: "InvalidUnverifiedUserAnnotations", message: boundDenialMessage('"'.repeat(MAX_CONDITION_MESSAGE_BYTES * 2)), permanent: false },
};

const sign = (decision: Decision, step: "validate" | "derive-sans" | "sign") =>
  attest(keys[step], { pcr: PCR, signerName: SIGNER, spkiSha256: SPKI, decision }, { now: NOW, ttlSeconds: TTL });
const expectation = (from: AttestationExpectation["from"], kind: Decision["kind"]): AttestationExpectation => ({ from, kind, pcr: PCR, signerName: SIGNER, spkiSha256: SPKI, maxLifetimeSeconds: TTL });

describe("limits", () => {
  it("bounds a denial message to what a status condition holds, whatever it quotes", () => {
    const m = new RequestDeniedError("InvalidUnverifiedUserAnnotations", `bad: ${"é".repeat(MAX_CONDITION_MESSAGE_BYTES)}`).message;
    expect(Buffer.byteLength(m)).toBeLessThanOrEqual(MAX_CONDITION_MESSAGE_BYTES);
    expect(m.endsWith("…")).toBe(true);
    expect(new RequestDeniedError("PodMismatch", "a\u0000b\r\nc\u007fd").message).toBe("a\uFFFDb\uFFFD\uFFFDc\uFFFDd");
    expect(truncateUtf8("short", 10)).toBe("short");
  });

  it.each([
    { case: "validate's, naming the most Services, with the largest key and the most labels", kind: "validated" as const, from: "validate" as const },
    { case: "derive-sans', with the most DNS names", kind: "sans-derived" as const, from: "derive-sans" as const },
    { case: "a denial quoting the longest message", kind: "denied" as const, from: "validate" as const },
  ])("the largest attestation ($case) fits MAX_ATTESTATION_BYTES and is accepted", async ({ kind, from }) => {
    const token = await sign(LARGEST[kind], from);
    expect(token.length).toBeLessThanOrEqual(MAX_ATTESTATION_BYTES);
    // More than half the limit: the limit is not so loose that it bounds nothing.
    expect(token.length).toBeGreaterThan(MAX_ATTESTATION_BYTES / 4);
    const receiver = kind === "validated" ? keys["derive-sans"] : kind === "sans-derived" ? keys.sign : keys.deny;
    const claims = await verifyAttestation(receiver, token, expectation(from, kind), NOW);
    expect(claims.decision).toEqual(LARGEST[kind]);
  });

  it("the largest event a step hands on (three attestations) fits MAX_EVENT_BYTES and is read back whole", async () => {
    const data: StepEventData = {
      pcr: { namespace: "ate-system", name: "p".repeat(MAX_NAME_LENGTH), uid: PCR.uid },
      signerName: SIGNER,
      attestations: {
        validate: await sign(LARGEST.validated, "validate"),
        "derive-sans": await sign(LARGEST["sans-derived"], "derive-sans"),
        sign: await sign(LARGEST.denied, "sign"),
      },
    };
    const event: PodcertEvent = {
      specversion: "1.0",
      id: "0d5e6f70-0000-4000-8000-000000000001",
      type: EVENT_TYPES.denied,
      source: "/podcert/sign",
      subject: `ate-system/${data.pcr.name}`,
      datacontenttype: "application/json",
      data,
      extensions: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    };
    const { headers, body } = eventToBinaryHttp(event);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(jsonShapeProblem(Buffer.from(body))).toBeUndefined();
    expect(readStepEventData(eventFromHttp(headers, body))).toEqual(data);
  });

  it("an ApiServerSource event for a PCR with as many user annotations as Kubernetes allows fits MAX_EVENT_BYTES", () => {
    // validate must read such a request to deny it: refusing the event would leave it pending.
    const pcr = pcrFor(pod(), { signerName: "atesystem.podcert.ate.dev/identity", keyType: "RSA4096", form: "csr" });
    const annotations: Record<string, string> = {};
    for (let i = 0, used = 0; used < MAX_KUBE_ANNOTATIONS_BYTES - 1100; i++) {
      const key = `k${String(i).padStart(3, "0")}.example.com/${"k".repeat(40)}`;
      annotations[key] = "v".repeat(1024);
      used += key.length + 1024;
    }
    pcr.spec.unverifiedUserAnnotations = annotations;
    // managedFields names every annotation key once more, as kube-apiserver stores it.
    Object.assign(pcr.metadata, { managedFields: [{ manager: "kubelet", operation: "Update", fieldsV1: { "f:spec": Object.fromEntries(Object.keys(annotations).map((k) => [`f:${k}`, {}])) } }] });
    const { headers, body } = eventToBinaryHttp(apiServerAddEvent(pcr));
    expect(Buffer.byteLength(body)).toBeGreaterThan(MAX_KUBE_ANNOTATIONS_BYTES);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(jsonShapeProblem(Buffer.from(body))).toBeUndefined();
    expect(eventFromHttp(headers, body).data).toEqual(JSON.parse(JSON.stringify(pcr)));
  });
});
