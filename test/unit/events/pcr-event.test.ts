import { describe, expect, it } from "vitest";
import { RejectedEventError } from "../../../shared/errors.js";
import { eventFromHttp } from "../../../shared/events/codec.js";
import { readPcrTrigger } from "../../../shared/events/pcr-event.js";
import type { PodcertEvent } from "../../../shared/events/types.js";
import { pcrFor, pod } from "../../helpers/objects.js";

const SIGNER = "atesystem.podcert.ate.dev/identity";

/** A real PCR as kubelet makes it, as the ApiServerSource (Resource mode) sends it. */
const pcr = pcrFor(pod(), { signerName: SIGNER });

function sourceEvent(data: unknown, extensions: Record<string, string> = { kind: "PodCertificateRequest", apiversion: "certificates.k8s.io/v1beta1" }): PodcertEvent {
  return {
    specversion: "1.0",
    id: "0d5e6f70-0000-4000-8000-000000000001",
    type: "dev.knative.apiserver.resource.add",
    source: "https://10.96.0.1:443",
    data,
    extensions,
  };
}

const withConditions = (conditions: unknown[]) => ({ ...structuredClone(pcr), status: { conditions } });
const cond = (type: string, status = "True") => ({ type, status, reason: "X", message: "m", lastTransitionTime: "2026-05-01T10:00:00Z" });

function rejected(fn: () => unknown, message?: RegExp): RejectedEventError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(RejectedEventError);
  expect((err as RejectedEventError).status).toBe(400);
  if (message) expect((err as Error).message).toMatch(message);
  return err as RejectedEventError;
}

describe("readPcrTrigger", () => {
  it("reads the PCR reference and signer from ApiServerSource data", () => {
    expect(readPcrTrigger(sourceEvent(pcr))).toEqual({
      ref: { namespace: "ate-system", name: "req-abcde", uid: pcr.metadata.uid },
      signerName: SIGNER,
      terminal: false,
    });
  });

  it("reads an event that came over HTTP in binary mode", () => {
    const headers = {
      "ce-id": "1",
      "ce-source": "https://10.96.0.1:443",
      "ce-type": "dev.knative.apiserver.resource.update",
      "ce-specversion": "1.0",
      "ce-kind": "PodCertificateRequest",
      "content-type": "application/json",
    };
    expect(readPcrTrigger(eventFromHttp(headers, JSON.stringify(pcr))).ref.name).toBe("req-abcde");
  });

  it("accepts a resync event without the kind extension", () => {
    expect(readPcrTrigger(sourceEvent(pcr, {})).signerName).toBe(SIGNER);
  });

  it.each(["Pod", "podcertificaterequest", "Secret"])("rejects an event whose kind extension is %s", (kind) => {
    rejected(() => readPcrTrigger(sourceEvent(pcr, { kind })), new RegExp(`about a ${kind}, not a PodCertificateRequest`));
  });

  it("rejects data whose kind is another object's", () => {
    rejected(() => readPcrTrigger(sourceEvent({ ...pcr, kind: "Pod" })), /not a PodCertificateRequest/);
  });

  it.each([
    { case: "no uid", change: (d: Record<string, any>) => delete d.metadata.uid, path: /metadata\.uid/ },
    { case: "an empty uid", change: (d: Record<string, any>) => (d.metadata.uid = ""), path: /metadata\.uid/ },
    { case: "no name", change: (d: Record<string, any>) => delete d.metadata.name, path: /metadata\.name/ },
    { case: "no namespace", change: (d: Record<string, any>) => delete d.metadata.namespace, path: /metadata\.namespace/ },
    { case: "no signerName", change: (d: Record<string, any>) => delete d.spec.signerName, path: /spec\.signerName/ },
    { case: "no spec", change: (d: Record<string, any>) => delete d.spec, path: /spec/ },
    { case: "a numeric uid", change: (d: Record<string, any>) => (d.metadata.uid = 42), path: /metadata\.uid/ },
    { case: "a 64-character namespace", change: (d: Record<string, any>) => (d.metadata.namespace = "n".repeat(64)), path: /metadata\.namespace/ },
    // Names go into API paths: ".." would walk up ("/namespaces/../podcertificaterequests/x" is a cluster-wide read).
    { case: "a namespace of ..", change: (d: Record<string, any>) => (d.metadata.namespace = ".."), path: /metadata\.namespace: must be a namespace name/ },
    { case: "a name of ..", change: (d: Record<string, any>) => (d.metadata.name = ".."), path: /metadata\.name: must be an object name/ },
    { case: "a name of .", change: (d: Record<string, any>) => (d.metadata.name = "."), path: /metadata\.name: must be an object name/ },
    { case: "a name with a slash", change: (d: Record<string, any>) => (d.metadata.name = "a/b"), path: /metadata\.name/ },
    { case: "a namespace with capitals", change: (d: Record<string, any>) => (d.metadata.namespace = "Ate-System"), path: /metadata\.namespace/ },
    { case: "a namespace with a dot", change: (d: Record<string, any>) => (d.metadata.namespace = "a.b"), path: /metadata\.namespace/ },
    { case: "a 254-character name", change: (d: Record<string, any>) => (d.metadata.name = "a".repeat(254)), path: /metadata\.name/ },
  ])("rejects data with $case, naming the field", ({ change, path }) => {
    const data = structuredClone(pcr) as unknown as Record<string, any>;
    change(data);
    rejected(() => readPcrTrigger(sourceEvent(data)), path);
  });

  it.each([
    { case: "null data", data: null },
    { case: "text data", data: "req-abcde" },
    { case: "a Reference-mode event (no spec)", data: { kind: "PodCertificateRequest", namespace: "ate-system", name: "req-abcde", apiVersion: "certificates.k8s.io/v1beta1" } },
  ])("rejects $case", ({ data }) => {
    rejected(() => readPcrTrigger(sourceEvent(data)), /data is not a PodCertificateRequest/);
  });

  it("names every problem of the data, not only the first", () => {
    const data = structuredClone(pcr) as unknown as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    data.metadata.namespace = "../kube-system";
    data.metadata.uid = 42;
    data.spec.signerName = "";
    const message = rejected(() => readPcrTrigger(sourceEvent(data))).message;
    for (const part of ["metadata.namespace: ", "metadata.uid: ", "spec.signerName: "]) expect(message).toContain(part);
  });

  it.each([
    { case: "Issued", conditions: [cond("Issued")], terminal: true },
    { case: "Denied", conditions: [cond("Denied")], terminal: true },
    { case: "Failed", conditions: [cond("Failed")], terminal: true },
    { case: "a terminal type with status False", conditions: [cond("Denied", "False")], terminal: false },
    { case: "a non-terminal condition", conditions: [cond("Pending")], terminal: false },
    { case: "a terminal condition after another", conditions: [cond("Progressing"), cond("Issued")], terminal: true },
    { case: "an empty list", conditions: [], terminal: false },
  ])("detects terminal conditions: $case → $terminal", ({ conditions, terminal }) => {
    expect(readPcrTrigger(sourceEvent(withConditions(conditions))).terminal).toBe(terminal);
  });

  it("treats a status without conditions as not terminal", () => {
    expect(readPcrTrigger(sourceEvent({ ...pcr, status: {} })).terminal).toBe(false);
  });

  it("rejects an absurd number of conditions", () => {
    rejected(() => readPcrTrigger(sourceEvent(withConditions(Array.from({ length: 65 }, () => cond("Pending"))))));
  });
});
