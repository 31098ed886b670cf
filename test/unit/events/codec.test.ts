import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RejectedEventError } from "../../../shared/errors.js";
import { eventFromHttp, eventFromJson, eventToBinaryHttp, eventToJson, isValidTraceparent, isValidTracestate, MAX_EVENT_BYTES } from "../../../shared/events/codec.js";
import { MAX_EVENT_ATTRIBUTE_LENGTH } from "../../../shared/limits.js";
import type { PodcertEvent } from "../../../shared/events/types.js";

const PCR_DATA = {
  apiVersion: "certificates.k8s.io/v1beta1",
  kind: "PodCertificateRequest",
  metadata: { name: "req-abcde", namespace: "ate-system", uid: "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716" },
  spec: { signerName: "atesystem.podcert.ate.dev/identity" },
};
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const binaryHeaders = (): Record<string, string> => ({
  "ce-id": "evt-1",
  "ce-source": "https://10.96.0.1:443",
  "ce-type": "dev.knative.apiserver.resource.add",
  "ce-specversion": "1.0",
  "ce-subject": "/apis/certificates.k8s.io/v1beta1/namespaces/ate-system/podcertificaterequests/req-abcde",
  "ce-time": "2026-05-01T10:00:00Z",
  "ce-kind": "PodCertificateRequest",
  "ce-traceparent": TRACEPARENT,
  "content-type": "application/json",
});

const structured = (): Record<string, unknown> => ({
  specversion: "1.0",
  id: "evt-2",
  source: "/podcert/validate",
  type: "dev.ate.podcert.request.validated",
  subject: "ate-system/req-abcde",
  time: "2026-05-01T10:00:00Z",
  datacontenttype: "application/json",
  traceparent: TRACEPARENT,
  kind: "PodCertificateRequest",
  data: PCR_DATA,
});
const STRUCTURED_CT = { "content-type": "application/cloudevents+json; charset=utf-8" };

function rejected(fn: () => unknown, status: number, message?: RegExp): RejectedEventError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, "expected a RejectedEventError").toBeInstanceOf(RejectedEventError);
  const r = err as RejectedEventError;
  expect(r.status).toBe(status);
  if (message) expect(r.message).toMatch(message);
  return r;
}

describe("eventFromHttp: binary mode", () => {
  it("reads the attributes, the extensions and the JSON data", () => {
    const e = eventFromHttp(binaryHeaders(), JSON.stringify(PCR_DATA));
    expect(e).toEqual({
      specversion: "1.0",
      id: "evt-1",
      source: "https://10.96.0.1:443",
      type: "dev.knative.apiserver.resource.add",
      subject: "/apis/certificates.k8s.io/v1beta1/namespaces/ate-system/podcertificaterequests/req-abcde",
      time: "2026-05-01T10:00:00.000Z",
      datacontenttype: "application/json",
      extensions: { kind: "PodCertificateRequest", traceparent: TRACEPARENT },
      data: PCR_DATA,
    } satisfies PodcertEvent);
  });

  it("treats header names case-insensitively and joins repeated headers", () => {
    const h: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(binaryHeaders())) h[k.toUpperCase()] = v;
    h["ce-tracestate"] = ["a=1", "b=2"];
    const e = eventFromHttp(h, JSON.stringify(PCR_DATA));
    expect(e.id).toBe("evt-1");
    expect(e.extensions.kind).toBe("PodCertificateRequest");
    expect(e.extensions.tracestate).toBe("a=1,b=2");
  });

  it("parses data as JSON when the content type is application/json with parameters", () => {
    const e = eventFromHttp({ ...binaryHeaders(), "content-type": "application/json; charset=utf-8" }, '{"a":[1,2]}');
    expect(e.data).toEqual({ a: [1, 2] });
  });

  it("leaves non-JSON data as text", () => {
    const e = eventFromHttp({ ...binaryHeaders(), "content-type": "text/plain" }, "hello");
    expect(e.data).toBe("hello");
  });

  it("reads an event without a body or a content type as one without data (a PingSource without data)", () => {
    const h = binaryHeaders();
    delete h["content-type"];
    expect(eventFromHttp(h, "").data).toBeUndefined();
    // Declared JSON, an empty body is not.
    rejected(() => eventFromHttp(binaryHeaders(), ""), 400, /data is not JSON/);
  });

  it("rejects JSON data that does not parse with 400", () => {
    rejected(() => eventFromHttp(binaryHeaders(), "{not json"), 400);
  });

  it("leaves Error.stackTraceLimit as it was (decoding turns stacks off for the SDK's errors), also after a refusal", () => {
    const before = Error.stackTraceLimit;
    eventFromHttp(binaryHeaders(), JSON.stringify(PCR_DATA));
    expect(Error.stackTraceLimit).toBe(before);
    rejected(() => eventFromHttp(binaryHeaders(), "{not json"), 400);
    expect(Error.stackTraceLimit).toBe(before);
    expect(new Error("still has a stack").stack).toMatch(/codec\.test/);
  });

  it.each(["ce-id", "ce-source", "ce-type", "ce-specversion"])("rejects a message without %s with 400", (header) => {
    const h = binaryHeaders();
    delete h[header];
    rejected(() => eventFromHttp(h, JSON.stringify(PCR_DATA)), 400);
  });

  it("rejects another specversion with 400", () => {
    rejected(() => eventFromHttp({ ...binaryHeaders(), "ce-specversion": "0.3" }, "{}"), 400, /specversion/);
  });

  it("rejects a plain JSON POST with no CloudEvent attributes with 400", () => {
    rejected(() => eventFromHttp({ "content-type": "application/json" }, JSON.stringify(PCR_DATA)), 400, /CloudEvent/);
  });
});

describe("eventFromHttp: structured mode", () => {
  it("reads the attributes, the extensions and the data", () => {
    const e = eventFromHttp(STRUCTURED_CT, JSON.stringify(structured()));
    expect(e).toEqual({
      specversion: "1.0",
      id: "evt-2",
      source: "/podcert/validate",
      type: "dev.ate.podcert.request.validated",
      subject: "ate-system/req-abcde",
      time: "2026-05-01T10:00:00.000Z",
      datacontenttype: "application/json",
      extensions: { kind: "PodCertificateRequest", traceparent: TRACEPARENT },
      data: PCR_DATA,
    } satisfies PodcertEvent);
  });

  it.each(["id", "source", "type", "specversion"])("rejects an event without %s with 400", (attr) => {
    const doc = structured();
    delete doc[attr];
    rejected(() => eventFromHttp(STRUCTURED_CT, JSON.stringify(doc)), 400);
  });

  it("rejects a body that is not JSON with 400", () => {
    rejected(() => eventFromHttp(STRUCTURED_CT, "{oops"), 400);
  });

  it("rejects a batch with 415", () => {
    const batch = JSON.stringify([structured(), { ...structured(), id: "evt-3" }]);
    rejected(() => eventFromHttp({ "content-type": "application/cloudevents-batch+json" }, batch), 415, /batch/);
  });
});

describe("eventFromHttp: size", () => {
  it(`rejects a body over ${MAX_EVENT_BYTES} bytes with 413, counting bytes not characters`, () => {
    const pad = "é".repeat(MAX_EVENT_BYTES / 2); // MAX_EVENT_BYTES bytes, half as many characters
    const body = JSON.stringify({ pad });
    expect(body.length).toBeLessThan(MAX_EVENT_BYTES);
    rejected(() => eventFromHttp(binaryHeaders(), body), 413);
  });

  it("accepts a large event just under the limit", () => {
    const body = JSON.stringify({ pad: "x".repeat(MAX_EVENT_BYTES - 20) });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect((eventFromHttp(binaryHeaders(), body).data as { pad: string }).pad).toHaveLength(MAX_EVENT_BYTES - 20);
  });
});

describe("eventToBinaryHttp", () => {
  const event = (): PodcertEvent => ({
    specversion: "1.0",
    id: "reply-1",
    type: "dev.ate.podcert.request.validated",
    source: "/podcert/validate",
    subject: "ate-system/req-abcde",
    time: "2026-05-01T10:00:01.000Z",
    datacontenttype: "application/json",
    data: { pcr: { namespace: "ate-system", name: "req-abcde", uid: "u" }, attestations: { validate: "a.b.c" } },
    extensions: { traceparent: TRACEPARENT, tracestate: "vendor=1", kind: "PodCertificateRequest" },
  });

  it("puts attributes and extensions in ce- headers and the data in the body", () => {
    const { headers, body } = eventToBinaryHttp(event());
    expect(headers["ce-id"]).toBe("reply-1");
    expect(headers["ce-type"]).toBe("dev.ate.podcert.request.validated");
    expect(headers["ce-traceparent"]).toBe(TRACEPARENT);
    expect(headers["ce-tracestate"]).toBe("vendor=1");
    expect(headers["ce-kind"]).toBe("PodCertificateRequest");
    expect(headers["content-type"]).toMatch(/^application\/json/);
    expect(JSON.parse(body)).toEqual(event().data);
  });

  it("round trips through eventFromHttp, extensions included", () => {
    const { headers, body } = eventToBinaryHttp(event());
    expect(eventFromHttp(headers, body)).toEqual(event());
  });

  it("round trips any lowercase-alphanumeric extensions (property)", () => {
    const core = new Set(["id", "type", "source", "specversion", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"]);
    const name = fc.stringMatching(/^[a-z][a-z0-9]{0,19}$/).filter((n) => !core.has(n));
    const value = fc.stringMatching(/^[ -~]{0,40}$/).map((v) => v.trim()).filter((v) => v.length > 0);
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 6 }), fc.jsonValue(), (extensions, data) => {
        fc.pre(data !== null && typeof data === "object");
        const e: PodcertEvent = { ...event(), extensions, data };
        const { headers, body } = eventToBinaryHttp(e);
        const back = eventFromHttp(headers, body);
        expect(back.extensions).toEqual(extensions);
        expect(back.data).toEqual(JSON.parse(JSON.stringify(data)));
      }),
      { numRuns: 200 },
    );
  });
});

describe("eventFromJson / eventToJson", () => {
  it("round trips the structured JSON form", () => {
    const e = eventFromJson(structured());
    expect(Date.parse(e.time!)).toBe(Date.parse("2026-05-01T10:00:00Z"));
    expect(eventToJson(e)).toEqual({ ...structured(), time: e.time });
    expect(eventFromJson(eventToJson(e))).toEqual(e);
  });

  it.each([
    { case: "null", json: null },
    { case: "an array", json: [structured()] },
    { case: "a string", json: "event" },
  ])("rejects $case", ({ json }) => {
    rejected(() => eventFromJson(json), 400);
  });

  it.each(["id", "source", "type"])("rejects an event without %s", (attr) => {
    const doc = structured();
    delete doc[attr];
    rejected(() => eventFromJson(doc), 400);
  });
});

describe("trace context and header-bound attributes", () => {
  it.each([
    { case: "version 00", value: TRACEPARENT, valid: true },
    { case: "a later version with more fields", value: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", valid: true },
    { case: "version 00 with more fields", value: `${TRACEPARENT}-extra`, valid: false },
    { case: "version ff", value: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", valid: false },
    { case: "an all-zero trace id", value: "00-00000000000000000000000000000000-00f067aa0ba902b7-01", valid: false },
    { case: "an all-zero parent id", value: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", valid: false },
    { case: "capital hex", value: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", valid: false },
    { case: "a short trace id", value: "00-abc-def-01", valid: false },
    { case: "CR LF", value: `${TRACEPARENT}\r\nx-injected: 1`, valid: false },
    { case: "a character above U+00FF", value: `${TRACEPARENT.slice(0, -1)}\u0101`, valid: false },
  ])("traceparent with $case: valid $valid", ({ value, valid }) => {
    expect(isValidTraceparent(value)).toBe(valid);
  });

  it.each([
    { case: "one member", value: "congo=t61rcWkgMzE", valid: true },
    { case: "two members with spaces", value: "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", valid: true },
    { case: "a multi-tenant key", value: "fw529a3039@dt=+.wqxd", valid: true },
    { case: "a value with =", value: "a=b=c", valid: false },
    { case: "a capital key", value: "Congo=x", valid: false },
    { case: "a duplicate key", value: "a=1,a=2", valid: false },
    { case: "33 members", value: Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(","), valid: false },
    { case: "CR LF", value: "a=1\r\nb=2", valid: false },
    { case: "a character above U+00FF", value: "a=\u0101", valid: false },
    { case: "a member without =", value: "a", valid: false },
  ])("tracestate with $case: valid $valid", ({ value, valid }) => {
    expect(isValidTracestate(value)).toBe(valid);
  });

  it.each(["traceparent", "tracestate"])("drops a structured-mode %s holding CR LF, saying so, and keeps the event", (attribute) => {
    const dropped: string[] = [];
    const e = eventFromHttp(STRUCTURED_CT, JSON.stringify({ ...structured(), [attribute]: "a=1\r\nx-injected: 1" }), (a, why) => dropped.push(`${a}: ${why}`));
    expect(e.extensions[attribute]).toBeUndefined();
    expect(e.extensions.kind).toBe("PodCertificateRequest");
    expect(dropped).toEqual([`${attribute}: does not follow the W3C Trace Context grammar`]);
  });

  it("keeps a valid traceparent and tracestate", () => {
    const e = eventFromHttp(STRUCTURED_CT, JSON.stringify({ ...structured(), tracestate: "congo=t61rcWkgMzE" }), () => {
      throw new Error("nothing should be dropped");
    });
    expect(e.extensions).toMatchObject({ traceparent: TRACEPARENT, tracestate: "congo=t61rcWkgMzE" });
  });

  it.each([
    { case: "an extension holding CR LF", patch: { kind: "PodCertificateRequest\r\nx: 1" }, says: /extension kind holds a character other than printable ASCII/ },
    { case: "an extension above U+00FF", patch: { kind: "Pod\u0101" }, says: /extension kind holds a character other than printable ASCII/ },
    { case: "an id holding LF", patch: { id: "evt\nx" }, says: /attribute id holds a character/ },
    { case: "a subject above U+00FF", patch: { subject: "\u0101" }, says: /attribute subject holds a character/ },
    { case: "an over-long source", patch: { source: `/${"s".repeat(MAX_EVENT_ATTRIBUTE_LENGTH)}` }, says: /attribute source longer than 2048 characters/ },
  ])("rejects with 400 a structured event with $case (it could not be forwarded as a header)", ({ patch, says }) => {
    let err: unknown;
    try {
      eventFromHttp(STRUCTURED_CT, JSON.stringify({ ...structured(), ...patch }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RejectedEventError);
    expect((err as RejectedEventError).status).toBe(400);
    expect((err as Error).message).toMatch(says);
  });
});
