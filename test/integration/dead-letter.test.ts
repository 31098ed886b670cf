// The dead-letter function (functions/dead-letter) over HTTP, as its bundle: it takes what the
// Broker dead-letters, of any type, with Knative's knativeerror* extensions; logs one bounded line
// per event (never its data); counts it with bounded labels; answers 204; and it starts and is
// ready with no kubeconfig and no step keys, and calls no API server. Malformed CloudEvents are
// the hostile matrix's (it is a registry step like the others: hostile-matrix-events.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PodcertEvent } from "../../shared/events/types.js";
import { MAX_LOGGED_LENGTH } from "../../functions/dead-letter/handler.js";
import { EVENT_TYPES } from "../../shared/steps.js";
import { postEvent, postStructured, startBundleEnv, type BundleEnv, type ServedBundle } from "../helpers/bundles.js";
import { expectAlive, expectApiUnchanged, snapshotApi } from "../helpers/matrix.js";

let env: BundleEnv;
let sink: ServedBundle;

beforeAll(async () => {
  env = await startBundleEnv();
  sink = await env.serve("dead-letter");
}, 60_000);

afterAll(async () => {
  await env?.stop();
});

/** A forged attestation-shaped token: it must never reach the log. */
const TOKEN = "eyJhbGciOiJFZERTQSIsImtpZCI6InZhbGlkYXRlIn0.eyJzZWNyZXQiOiJ0b2tlbiJ9.c2lnbmF0dXJlLW5ldmVyLWxvZ2dlZA";

let n = 0;
function deadLetter(o: { type?: string; subject?: string; extensions?: Record<string, string>; data?: unknown } = {}): PodcertEvent {
  return {
    specversion: "1.0",
    id: `dl-${++n}`,
    type: o.type ?? EVENT_TYPES.denied,
    source: "/podcert/validate",
    ...(o.subject === undefined ? {} : { subject: o.subject }),
    datacontenttype: "application/json",
    data: o.data ?? { pcr: { namespace: "team-a", name: "pcr-1", uid: "u" }, signerName: "s", attestations: { validate: TOKEN } },
    extensions: o.extensions ?? { knativeerrordest: "http://podcert-deny.podcert.svc.cluster.local", knativeerrorcode: "403", knativeerrordata: Buffer.from(`attestation ${TOKEN}`).toString("base64") },
  };
}

/** The dead-letter lines logged so far. */
const logged = (): Record<string, unknown>[] =>
  sink
    .stderr()
    .split("\n")
    .filter((l) => l.includes('"msg":"event dead-lettered"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const lineFor = (id: string) => logged().find((l) => l.eventId === id);

async function metrics(): Promise<string> {
  return (await fetch(`${sink.url}/metrics`)).text();
}
const deadLetterSeries = (text: string) => text.split("\n").filter((l) => l.startsWith("podcert_dead_letters_total{"));

describe("the dead-letter function", () => {
  it("is ready without a kubeconfig or step keys, and reads nothing from the API server", async () => {
    expect((await fetch(`${sink.url}/healthz`)).status).toBe(200);
    expect(sink.stderr()).not.toMatch(/not ready|Kubernetes credentials|step key/);
    const before = snapshotApi(env);
    expect((await postEvent(sink.url, deadLetter())).status).toBe(204);
    expectApiUnchanged(env, before);
    // Not even a read: it has no client.
    expect(env.api.servedRequests().slice(before.served)).toEqual([]);
  });

  it("logs the envelope, the PCR its subject names and Knative's error destination and code; never the data", async () => {
    const step = deadLetter({ subject: "team-a/pcr-1" });
    expect((await postEvent(sink.url, step)).status).toBe(204);
    await expect.poll(() => lineFor(step.id)).toBeDefined();
    expect(lineFor(step.id)).toMatchObject({
      level: "warn",
      function: "dead-letter",
      eventId: step.id,
      type: EVENT_TYPES.denied,
      source: "/podcert/validate",
      subject: "team-a/pcr-1",
      pcrNamespace: "team-a",
      pcrName: "pcr-1",
      errorDestination: "http://podcert-deny.podcert.svc.cluster.local",
      errorCode: 403,
    });
    // The ApiServerSource's subject (the PCR's API path) names it too.
    const source = deadLetter({ type: EVENT_TYPES.apiServerAdd, subject: "/apis/certificates.k8s.io/v1beta1/namespaces/team-b/podcertificaterequests/pcr-2" });
    expect((await postEvent(sink.url, source)).status).toBe(204);
    await expect.poll(() => lineFor(source.id)).toMatchObject({ pcrNamespace: "team-b", pcrName: "pcr-2" });
    expect(sink.stderr()).not.toContain(TOKEN);
    expect(sink.stderr()).not.toContain("attestations");
    expect(sink.stderr()).not.toContain(Buffer.from(`attestation ${TOKEN}`).toString("base64"));
  });

  it("counts podcert's event types by name and every other type as other, never a PCR or pod name", async () => {
    const before = deadLetterSeries(await metrics());
    const foreign = deadLetter({ type: "com.example.team-a.pcr-1.secret-name", subject: "team-a/pcr-1" });
    expect((await postEvent(sink.url, foreign)).status).toBe(204);
    expect((await postEvent(sink.url, deadLetter({ type: EVENT_TYPES.validated }))).status).toBe(204);
    const text = await metrics();
    const after = deadLetterSeries(text);
    expect(after).not.toEqual(before);
    expect(after.some((l) => l.includes('type="other"'))).toBe(true);
    expect(after.some((l) => l.includes(`type="${EVENT_TYPES.validated}"`))).toBe(true);
    for (const l of after) {
      const type = /type="([^"]*)"/.exec(l)?.[1];
      expect([...Object.values(EVENT_TYPES), "other"], l).toContain(type);
    }
    expect(text).not.toMatch(/pcr-1|team-a|secret-name/);
    // podcert_events_received_total keeps to the same rule.
    expect(text).not.toContain("com.example");
  });

  describe("hostile dead letters: each is taken (204), logged bounded, and the function stays up", () => {
    const long = "a".repeat(2000);
    const cases: { case: string; event: () => PodcertEvent; check: (line: Record<string, unknown>) => void }[] = [
      {
        case: "attributes and extensions at the codec's 2048-character limit",
        event: () => deadLetter({ subject: long, extensions: { knativeerrordest: `http://${long}`, knativeerrorcode: "500", knativeerrordata: long } }),
        check: (l) => {
          for (const k of ["subject", "errorDestination"]) {
            expect(String(l[k]).length, k).toBeLessThanOrEqual(MAX_LOGGED_LENGTH + 40);
            expect(String(l[k]), k).toMatch(/\.\.\.\(\d+ characters\)$/);
          }
          expect(l.pcrNamespace).toBeUndefined();
        },
      },
      {
        case: "a subject that is a path traversal, not a PCR",
        event: () => deadLetter({ subject: "../../etc/passwd" }),
        check: (l) => {
          expect(l.subject).toBe("../../etc/passwd");
          expect(l.pcrNamespace).toBeUndefined();
          expect(l.pcrName).toBeUndefined();
        },
      },
      {
        case: "a subject with names Kubernetes would refuse",
        event: () => deadLetter({ subject: "Team_A/PCR 1" }),
        check: (l) => expect(l.pcrNamespace).toBeUndefined(),
      },
      {
        case: "an API-path subject of another resource",
        event: () => deadLetter({ subject: "/api/v1/namespaces/team-a/secrets/token" }),
        check: (l) => expect(l.pcrName).toBeUndefined(),
      },
      {
        case: "knativeerrorcode that is not a status code",
        event: () => deadLetter({ extensions: { knativeerrorcode: "9999; drop table" } }),
        check: (l) => {
          expect(l.errorCode).toBe("invalid");
          expect(l.errorDestination).toBeUndefined();
        },
      },
      {
        case: "no Knative extensions at all (posted by someone else than the Broker)",
        event: () => deadLetter({ extensions: {} }),
        check: (l) => {
          expect(l.errorCode).toBeUndefined();
          expect(l.errorDestination).toBeUndefined();
        },
      },
      {
        case: "data of another shape (a whole PCR-like object, a string, null)",
        event: () => deadLetter({ data: { status: { certificateChain: TOKEN }, spec: { pkixPublicKey: TOKEN } } }),
        check: () => expect(sink.stderr()).not.toContain(TOKEN),
      },
    ];
    it.each(cases)("$case", async ({ event, check }) => {
      const e = event();
      const res = await postEvent(sink.url, e);
      expect(res.status, res.text).toBe(204);
      await expect.poll(() => lineFor(e.id)).toBeDefined();
      const line = lineFor(e.id)!;
      check(line);
      // One line, within the logger's 16 KiB.
      expect(Buffer.byteLength(JSON.stringify(line))).toBeLessThan(4096);
      await expectAlive(sink);
    });

    it("structured mode, with data that is null, a number or a list", async () => {
      for (const data of [null, 42, ["a", { b: TOKEN }]]) {
        const res = await postStructured(sink.url, { specversion: "1.0", id: `dl-structured-${String(data)}`, source: "/x", type: "anything", datacontenttype: "application/json", data });
        expect(res.status, res.text).toBe(204);
      }
      expect(sink.stderr()).not.toContain(TOKEN);
      await expectAlive(sink);
    });

    it("a burst of dead letters at once (its containerConcurrency, 50) is all taken, and the function stays up", async () => {
      const answers = await Promise.all(Array.from({ length: 50 }, () => postEvent(sink.url, deadLetter({ type: `burst.${n}` }))));
      expect(answers.every((a) => a.status === 204)).toBe(true);
      await expectAlive(sink);
    });
  });
});
