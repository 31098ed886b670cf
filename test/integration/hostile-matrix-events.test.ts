// Issue 11, part 1: malformed CloudEvents against every function bundle over HTTP, one table per
// step of the registry (a new step is covered by being registered). Each case must be refused
// with its 4xx, for the reason it names, write nothing to the API server and leave the bundle
// answering its health check; afterwards each bundle's memory is bounded and a real request is
// still issued. (Stalled and abandoned uploads, and the connection cap: hostile-http.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_EVENT_BYTES } from "../../shared/events/codec.js";
import { EVENT_TYPES, STEP_REGISTRY, STEPS, type StepName } from "../../shared/steps.js";
import { startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { expectAlive, expectApiUnchanged, expectIssuedEndToEnd, expectMemoryBounded, serveEveryStep, snapshotApi } from "../helpers/matrix.js";
import { chunk, openRaw, postHead, rawPost, type RawResponse } from "../helpers/raw-http.js";

let env: BundleEnv;
let bundles: Record<StepName, ServedBundle>;

beforeAll(async () => {
  env = await startBundleEnv();
  bundles = await serveEveryStep(env);
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

const NOT_CONSUMED = "dev.ate.podcert.not-consumed";
const REQUIRED = ["id", "source", "type", "specversion"] as const;

const binaryHeaders = (type: string): Record<string, string> => ({
  "content-type": "application/json",
  "ce-specversion": "1.0",
  "ce-id": "hostile-1",
  "ce-source": "/attacker",
  "ce-type": type,
});
const structured = (type: string, data: unknown = {}): Record<string, unknown> => ({
  specversion: "1.0",
  id: "hostile-1",
  source: "/attacker",
  type,
  datacontenttype: "application/json",
  data,
});
const STRUCTURED = { "content-type": "application/cloudevents+json" };
const without = <T extends Record<string, unknown>>(o: T, key: string): T => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key)) as T;

/** A structured-mode event of a type no step consumes, padded with data to exactly `bytes`. */
function paddedEvent(bytes: number): Buffer {
  const event = structured(NOT_CONSUMED, { pad: "" });
  const room = bytes - Buffer.byteLength(JSON.stringify(event));
  const text = JSON.stringify(structured(NOT_CONSUMED, { pad: "x".repeat(room) }));
  expect(Buffer.byteLength(text)).toBe(bytes);
  return Buffer.from(text);
}

interface Case {
  case: string;
  headers: Record<string, string>;
  body: Buffer | string;
  status: number;
  /** The reason the answer gives: refused for this, not for something else. */
  says: RegExp;
}

/**
 * The malformed events for a step, each with the type it consumes where the event has a type:
 * whatever a case is refused for, it is not that the step ignores the type. The dead-letter sink
 * consumes every type (a denial stands in for one), so a well-formed event of a type no step
 * consumes is taken there (204), not refused.
 */
function casesFor(fn: StepName): Case[] {
  const entry = STEP_REGISTRY.find((s) => s.name === fn)!;
  const type: string = entry.consumes[0] ?? EVENT_TYPES.denied;
  const json = JSON.stringify;
  const notConsumed = (what: string, headers: Record<string, string>, body: Buffer | string): Case =>
    entry.deadLetterSink
      ? { case: `${what} (taken: the dead-letter sink consumes every type)`, headers, body, status: 204, says: /^$/ }
      : { case: what, headers, body, status: 400, says: new RegExp(`${fn} does not consume events of type ${NOT_CONSUMED}`) };
  return [
    ...REQUIRED.map((a) => ({ case: `binary mode without ce-${a}`, headers: without(binaryHeaders(type), `ce-${a}`), body: "{}", status: 400, says: new RegExp(`lacks ${a}`) })),
    ...REQUIRED.map((a) => ({ case: `structured mode without ${a}`, headers: STRUCTURED, body: json(without(structured(type), a)), status: 400, says: new RegExp(`lacks ${a}`) })),
    { case: "binary mode, specversion 0.3", headers: { ...binaryHeaders(type), "ce-specversion": "0.3" }, body: "{}", status: 400, says: /specversion 0\.3 is not supported/ },
    { case: "structured mode, specversion 0.3", headers: STRUCTURED, body: json({ ...structured(type), specversion: "0.3" }), status: 400, says: /specversion 0\.3 is not supported/ },
    { case: "batch mode", headers: { "content-type": "application/cloudevents-batch+json" }, body: json([structured(type)]), status: 415, says: /batched CloudEvents are not supported/ },
    { case: "binary mode as text/plain", headers: { ...binaryHeaders(type), "content-type": "text/plain" }, body: "{}", status: 415, says: /content type "text\/plain" is not supported/ },
    { case: "binary mode as application/xml", headers: { ...binaryHeaders(type), "content-type": "application/xml" }, body: "<event/>", status: 415, says: /content type "application\/xml" is not supported/ },
    { case: "binary mode with a body and no content type", headers: without(binaryHeaders(type), "content-type"), body: "{}", status: 415, says: /without a content type/ },
    { case: "structured mode in another format (application/cloudevents+xml)", headers: { "content-type": "application/cloudevents+xml" }, body: "<event/>", status: 415, says: /"application\/cloudevents\+xml" is not supported/ },
    { case: "binary mode, invalid JSON", headers: binaryHeaders(type), body: '{"apiVersion":', status: 400, says: /JSON/ },
    { case: "structured mode, invalid JSON", headers: STRUCTURED, body: '{"specversion":"1.0",', status: 400, says: /body is not JSON/ },
    // Decoded leniently, these bytes would become U+FFFD and the JSON would parse.
    { case: "binary mode, invalid UTF-8 inside a JSON string", headers: binaryHeaders(type), body: Buffer.concat([Buffer.from('{"note":"'), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from('"}')]), status: 400, says: /not UTF-8/ },
    { case: "structured mode, an overlong UTF-8 encoding in the id", headers: STRUCTURED, body: Buffer.concat([Buffer.from('{"specversion":"1.0","id":"'), Buffer.from([0xc0, 0xaf]), Buffer.from(`","source":"/a","type":"${type}"}`)]), status: 400, says: /not UTF-8/ },
    { case: "100,000 levels of [", headers: binaryHeaders(type), body: "[".repeat(100_000), status: 413, says: /too complex to parse: JSON nested deeper than/ },
    { case: "100,000 levels of {\"a\":", headers: STRUCTURED, body: '{"a":'.repeat(100_000), status: 413, says: /too complex to parse/ },
    // Read and parsed in full: what refuses it is its type, not its size.
    notConsumed(`exactly MAX_EVENT_BYTES (${MAX_EVENT_BYTES}), of a type it does not consume`, STRUCTURED, paddedEvent(MAX_EVENT_BYTES)),
    { case: "one byte over MAX_EVENT_BYTES", headers: STRUCTURED, body: paddedEvent(MAX_EVENT_BYTES + 1), status: 413, says: new RegExp(`event larger than ${MAX_EVENT_BYTES} bytes`) },
    notConsumed("a small event of a type it does not consume", binaryHeaders(NOT_CONSUMED), "{}"),
  ];
}

describe.each(STEPS)("%s over HTTP refuses malformed CloudEvents", (fn) => {
  it.each(casesFor(fn))("$case: $status", async ({ headers, body, status, says }) => {
    const before = snapshotApi(env);
    const res = await rawPost(bundles[fn].url, headers, body);
    expect(res.status, res.body).toBe(status);
    expect(res.body).toMatch(says);
    await expectAlive(bundles[fn]);
    expectApiUnchanged(env, before);
  });

  it("413 for a declared length over the limit, before the body is sent", async () => {
    const before = snapshotApi(env);
    const c = await openRaw(bundles[fn].url);
    await c.write(postHead({ host: "x", contentLength: MAX_EVENT_BYTES + 1, type: NOT_CONSUMED }));
    const res: RawResponse = await c.response();
    c.close();
    expect(res.status).toBe(413);
    await expectAlive(bundles[fn]);
    expectApiUnchanged(env, before);
  });

  it("413 for a chunked body once it passes the limit", async () => {
    const before = snapshotApi(env);
    const c = await openRaw(bundles[fn].url);
    await c.write(postHead({ host: "x", chunked: true, type: NOT_CONSUMED }));
    await c.write(chunk(Buffer.alloc(MAX_EVENT_BYTES + 1, 0x20))).catch(() => {});
    const res = await c.response();
    c.close();
    expect(res.status).toBe(413);
    await expectAlive(bundles[fn]);
    expectApiUnchanged(env, before);
  });
});

describe("a body that never finishes, at every bundle at once", () => {
  it("is answered 408 within the body timeout, and nothing is written", async () => {
    const before = snapshotApi(env);
    const answers = await Promise.all(
      STEPS.map(async (fn) => {
        const c = await openRaw(bundles[fn].url);
        await c.write(postHead({ host: "x", contentLength: 2000, type: NOT_CONSUMED }) + '{"apiVersion":');
        const res = await c.response();
        await c.closed;
        return [fn, res.status] as const;
      }),
    );
    expect(Object.fromEntries(answers)).toEqual(Object.fromEntries(STEPS.map((fn) => [fn, 408])));
    for (const fn of STEPS) await expectAlive(bundles[fn]);
    expectApiUnchanged(env, before);
  }, 30_000);
});

describe("after the matrix", () => {
  it("every bundle is up with bounded memory, and a legitimate request is still issued end to end", async () => {
    for (const fn of STEPS) await expectAlive(bundles[fn]);
    expectMemoryBounded(bundles);
    await expectIssuedEndToEnd(env, bundles, "req-after-malformed-matrix");
  });
});
