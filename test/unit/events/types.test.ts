// shared/events/types.ts readStepEventData: what one step hands the next, refused with every
// problem named.
import { describe, expect, it } from "vitest";
import { RejectedEventError } from "../../../shared/errors.js";
import { readStepEventData, type PodcertEvent } from "../../../shared/events/types.js";
import { EVENT_TYPES } from "../../../shared/steps.js";

const event = (data: unknown): PodcertEvent => ({
  specversion: "1.0",
  id: "e-1",
  type: EVENT_TYPES.validated,
  source: "/podcert/validate",
  data,
  extensions: {},
});
const PCR = { namespace: "ate-system", name: "req-abcde", uid: "0b6f7c1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b" };

describe("readStepEventData", () => {
  it("reads well-formed data", () => {
    const data = { pcr: PCR, signerName: "x.example/identity", attestations: { validate: "ey.x.y" } };
    expect(readStepEventData(event(data))).toEqual(data);
  });

  it("reports every problem of malformed data, not only the first", () => {
    const data = { pcr: { ...PCR, namespace: "../kube-system", uid: "" }, signerName: 7, attestations: { validate: "", admin: "x" } };
    let err: unknown;
    try {
      readStepEventData(event(data));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RejectedEventError);
    const message = (err as Error).message;
    expect(message).toMatch(/^event e-1 \(dev\.ate\.podcert\.request\.validated\): malformed data \(/);
    for (const part of ["pcr.namespace: must be a namespace name", "pcr.uid: Too small", "signerName: Invalid input", "attestations.validate: Too small", 'attestations: Unrecognized key: "admin"']) {
      expect(message).toContain(part);
    }
  });
});
