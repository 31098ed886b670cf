// The embedded API server's fault injection, over HTTP: each fault as a client sees it (status,
// Retry-After, the Status body, a reset connection, a held answer, a real 409), off by default,
// never for the administrator, after authorization, the same faults for the same seed, and plans
// refused with ConfigError. Nothing here asserts a duration: held answers are checked by order.
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";

import { serviceAccountUser } from "../../../local-cluster/apiserver/rbac.js";
import { ADMIN_USER, CONCURRENT_WRITER_ANNOTATION, startApiServer, type EmbeddedApiServer, type StartApiServerOptions } from "../../../local-cluster/apiserver/server.js";
import type { ApiFaultPlan } from "../../../local-cluster/faults.js";
import { ConfigError } from "../../../shared/errors.js";

const G = "rbac.authorization.k8s.io";
const SA = serviceAccountUser("podcert", "podcert-sign");
const NOBODY = serviceAccountUser("podcert", "nobody");
const CMS = "/api/v1/namespaces/n/configmaps";

const SEED = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "n" } },
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm", namespace: "n" }, data: { a: "1" } },
];
// The ServiceAccount may do anything (cluster-admin); NOBODY may do nothing beyond discovery.
const RBAC = [{
  apiVersion: `${G}/v1`, kind: "ClusterRoleBinding", metadata: { name: "sa-admin" },
  roleRef: { apiGroup: G, kind: "ClusterRole", name: "cluster-admin" },
  subjects: [{ kind: "ServiceAccount", name: "podcert-sign", namespace: "podcert" }],
}];

const servers: EmbeddedApiServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function start(o: Partial<StartApiServerOptions> = {}, auth = true): Promise<EmbeddedApiServer> {
  const api = await startApiServer({
    objects: SEED,
    ...(auth ? { authorization: { rbac: RBAC, users: [SA, NOBODY] } } : {}),
    ...o,
  });
  servers.push(api);
  return api;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** One request as `user` (a name; undefined: no credentials). */
async function call(api: EmbeddedApiServer, method: "GET" | "POST" | "PUT", path: string, o: { user?: string; body?: unknown } = {}): Promise<Answer> {
  const token = o.user === undefined ? undefined : api.token(o.user);
  const res = await request(`${api.url}${path}`, {
    method,
    headers: {
      accept: "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(o.body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

const newCm = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "n" }, data: { x: "y" } });

describe("off by default", () => {
  it("injects nothing over many requests without a plan, and after setFaults(undefined)", async () => {
    const api = await start();
    for (let i = 0; i < 60; i++) expect((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status).toBe(200);
    api.setFaults({ status500: 1 });
    expect((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status).toBe(500);
    api.setFaults(undefined);
    for (let i = 0; i < 20; i++) expect((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status).toBe(200);
    expect(api.faultCounts().snapshot()).toEqual({ status500: 1 });
    expect(api.servedRequests().filter((r) => r.fault !== undefined)).toHaveLength(1);
  });
});

describe("request faults, each at rate 1", () => {
  it.each([
    { $case: "status500", plan: { status500: 1 }, code: 500, reason: "InternalError" },
    { $case: "status503", plan: { status503: 1 }, code: 503, reason: "ServiceUnavailable" },
  ])("$case answers a Failure Status and does nothing", async ({ plan, code, reason }) => {
    const lines: string[] = [];
    const api = await start({ faults: { plan }, log: (l) => lines.push(l) });
    const a = await call(api, "POST", CMS, { user: SA.name, body: newCm("made") });
    expect(a.status).toBe(code);
    expect(a.headers["content-type"]).toBe("application/json");
    expect(a.body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", reason, code });
    expect(api.store.get("ConfigMap", "n", "made")).toBeUndefined();
    expect(lines).toContain(`fault: ${Object.keys(plan)[0]} POST ${CMS} as ${SA.name}`);
    expect(api.servedRequests().at(-1)).toMatchObject({ user: SA.name, method: "POST", status: code, fault: Object.keys(plan)[0] });
  });

  it("status429 answers TooManyRequests with Retry-After and details.retryAfterSeconds, as API Priority and Fairness", async () => {
    const api = await start({ faults: { plan: { status429: 1, retryAfterSeconds: 3 } } });
    const a = await call(api, "POST", CMS, { user: SA.name, body: newCm("made") });
    expect(a.status).toBe(429);
    expect(a.headers["retry-after"]).toBe("3");
    expect(a.body).toMatchObject({ kind: "Status", status: "Failure", reason: "TooManyRequests", code: 429, details: { retryAfterSeconds: 3 } });
    expect(api.store.get("ConfigMap", "n", "made")).toBeUndefined();
    api.setFaults({ status429: 1 });
    expect((await call(api, "GET", CMS, { user: SA.name })).headers["retry-after"]).toBe("1");
  });

  it("slow holds the answer, then answers 504 Timeout without doing anything", async () => {
    const api = await start({ faults: { plan: { slow: 1, slowMs: 1_500 } } });
    const order: string[] = [];
    const slow = call(api, "POST", CMS, { user: SA.name, body: newCm("made") }).then((a) => {
      order.push("slow");
      return a;
    });
    // The administrator is never faulted: its request, sent after, is answered first.
    expect((await call(api, "GET", `${CMS}/cm`, { user: ADMIN_USER.name })).status).toBe(200);
    order.push("admin");
    const a = await slow;
    expect(order).toEqual(["admin", "slow"]);
    expect(a.status).toBe(504);
    expect(a.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Timeout", code: 504 });
    expect(api.store.get("ConfigMap", "n", "made")).toBeUndefined();
  });

  it("stop() does not wait for requests a slow fault holds", async () => {
    const api = await startApiServer({ objects: SEED, faults: { plan: { slow: 1, slowMs: 600_000 } } });
    const held = call(api, "GET", CMS).then((a) => a.status, () => "cut");
    await expect.poll(() => api.faultCounts().get("slow")).toBe(1);
    await api.stop(); // the test's own timeout fails it if this waited 10 minutes
    expect(await held).toBe("cut");
  });

  it("reset destroys the connection without an answer", async () => {
    const api = await start({ faults: { plan: { reset: 1 } } });
    await expect(call(api, "GET", `${CMS}/cm`, { user: SA.name })).rejects.toThrow(/socket|closed|reset/i);
    expect(api.faultCounts().get("reset")).toBe(1);
    expect(api.servedRequests().at(-1)).toMatchObject({ user: SA.name, method: "GET", status: 0, fault: "reset" });
  });

  it("conflict: a concurrent writer makes the PUT's resourceVersion stale, and the store answers 409", async () => {
    const api = await start();
    const read = (await call(api, "GET", `${CMS}/cm`, { user: SA.name })).body as { metadata: { resourceVersion: string } };
    api.setFaults({ conflict: 1 });
    const a = await call(api, "PUT", `${CMS}/cm`, { user: SA.name, body: { ...read, data: { a: "2" } } });
    expect(a.status).toBe(409);
    expect(a.body).toMatchObject({ kind: "Status", reason: "Conflict", code: 409 });
    const stored = api.store.get("ConfigMap", "n", "cm")!;
    expect(stored.metadata.annotations?.[CONCURRENT_WRITER_ANNOTATION]).toBe("1");
    expect((stored as unknown as { data: unknown }).data).toEqual({ a: "1" });
    expect(api.servedRequests().at(-1)).toMatchObject({ method: "PUT", status: 409, fault: "conflict" });

    // Without a resourceVersion kube-apiserver accepts the write over the concurrent one.
    const { resourceVersion: _rv, ...meta } = read.metadata;
    const b = await call(api, "PUT", `${CMS}/cm`, { user: SA.name, body: { ...read, metadata: meta, data: { a: "3" } } });
    expect(b.status).toBe(200);
    expect(api.store.get("ConfigMap", "n", "cm")!.metadata.annotations?.[CONCURRENT_WRITER_ANNOTATION]).toBeUndefined();
    expect(api.faultCounts().get("conflict")).toBe(2);

    // Anything but a PUT to an existing object: no fault, not counted.
    expect((await call(api, "POST", CMS, { user: SA.name, body: newCm("made") })).status).toBe(201);
    expect((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status).toBe(200);
    expect((await call(api, "PUT", `${CMS}/absent`, { user: SA.name, body: newCm("absent") })).status).toBe(404);
    expect(api.faultCounts().get("conflict")).toBe(2);
  });
});

describe("who gets faults", () => {
  it("a forbidden request is still 403; the administrator is never faulted, whatever appliesTo says", async () => {
    const api = await start({ faults: { plan: { status500: 1, appliesTo: () => true } } });
    expect((await call(api, "GET", CMS, { user: NOBODY.name })).status).toBe(403);
    expect((await call(api, "GET", CMS)).status).toBe(401);
    for (let i = 0; i < 20; i++) expect((await call(api, "GET", CMS, { user: ADMIN_USER.name })).status).toBe(200);
    expect(api.faultCounts().total()).toBe(0);
    expect((await call(api, "GET", CMS, { user: SA.name })).status).toBe(500);
  });

  it("by default only ServiceAccounts; appliesTo chooses", async () => {
    const api = await start({ faults: { plan: { status503: 1, appliesTo: (u) => u.endsWith(":nobody") } } });
    expect((await call(api, "GET", CMS, { user: SA.name })).status).toBe(200);
    expect((await call(api, "GET", "/version", { user: NOBODY.name })).status).toBe(503);
  });

  it("without authorization there is no user: every request by default, appliesTo gets \"\"", async () => {
    const api = await start({ faults: { plan: { status503: 1 } } }, false);
    expect((await call(api, "GET", CMS)).status).toBe(503);
    const seen: string[] = [];
    api.setFaults({ status503: 1, appliesTo: (u) => (seen.push(u), false) });
    expect((await call(api, "GET", CMS)).status).toBe(200);
    expect(seen).toEqual([""]);
  });
});

describe("determinism and validation", () => {
  it("the same seed and the same requests inject the same faults", async () => {
    const plan: ApiFaultPlan = { status500: 0.25, status503: 0.25, status429: 0.2 };
    const run = async (seed: number) => {
      const api = await start({ faults: { plan, seed } });
      const statuses: number[] = [];
      for (let i = 0; i < 40; i++) statuses.push((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status);
      return { statuses, counts: api.faultCounts().snapshot() };
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    expect(new Set(a.statuses)).toEqual(new Set([200, 500, 503, 429]));
    // setFaults with a seed restarts the generator.
    const api = await start();
    api.setFaults(plan, { seed: 7 });
    const again: number[] = [];
    for (let i = 0; i < 40; i++) again.push((await call(api, "GET", `${CMS}/cm`, { user: SA.name })).status);
    expect(again).toEqual(a.statuses);
  });

  it.each([
    { $case: "a rate above 1", plan: { status500: 1.5 }, message: /status500: a rate is a number from 0 to 1, not 1.5/ },
    { $case: "request rates adding up past 1", plan: { status500: 0.6, reset: 0.6 }, message: /add up to 1.200/ },
    { $case: "watch rates adding up past 1", plan: { watchSkip: 0.7, watchCloseEarly: 0.7 }, message: /add up to 1.400/ },
    { $case: "a negative slowMs", plan: { slow: 0.1, slowMs: -1 }, message: /slowMs: a whole number from 0, not -1/ },
    { $case: "a fractional retryAfterSeconds", plan: { retryAfterSeconds: 0.5 }, message: /retryAfterSeconds/ },
  ])("setFaults refuses $case with a ConfigError and keeps the plan in force", async ({ plan, message }) => {
    const api = await start({ faults: { plan: { status503: 1 } } });
    let thrown: unknown;
    try {
      api.setFaults(plan as ApiFaultPlan);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).code).toBe("ERR_CONFIG");
    expect((thrown as ConfigError).message).toMatch(message);
    expect((await call(api, "GET", CMS, { user: SA.name })).status).toBe(503);
  });

  it("startApiServer refuses a bad plan", async () => {
    await expect(startApiServer({ faults: { plan: { status500: 2 } } })).rejects.toBeInstanceOf(ConfigError);
  });

  it("watch rates are drawn separately from request rates (each set may add up to 1)", async () => {
    const api = await start();
    expect(() => api.setFaults({ status500: 1, watchSkip: 1 })).not.toThrow();
  });
});

describe("watch faults", () => {
  /** The lines of a watch stream until the server ends it. */
  async function watchLines(api: EmbeddedApiServer, query: string, onOpen: () => void): Promise<{ type: string; object: { metadata: { name: string } } }[]> {
    const res = await request(`${api.url}${CMS}?watch=true&${query}`, { headers: { authorization: `Bearer ${api.token(SA.name)!}` } });
    expect(res.statusCode).toBe(200);
    onOpen();
    const text = await res.body.text();
    return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { type: string; object: { metadata: { name: string } } });
  }

  it("watchCloseEarly sends the event, then ends the stream", async () => {
    const api = await start();
    const rv = api.store.resourceVersion;
    api.setFaults({ watchCloseEarly: 1 });
    const events = await watchLines(api, `resourceVersion=${rv}`, () => {
      api.store.create(newCm("first"));
      api.store.create(newCm("second"));
    });
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED first"]);
    expect(api.faultCounts().get("watchCloseEarly")).toBe(1);
  });

  it("watchCloseEarly during the initial replay ends the stream after the first event", async () => {
    const api = await start({ faults: { plan: { watchCloseEarly: 1 } } });
    api.store.create(newCm("more"));
    const events = await watchLines(api, "", () => {});
    expect(events.map((e) => e.object.metadata.name)).toEqual(["cm"]);
  });

  it("watchSkip drops events (BOOKMARKs and later events still come)", async () => {
    const api = await start();
    const rv = api.store.resourceVersion;
    api.setFaults({ watchSkip: 0.5 }, { seed: 3 });
    const events = await watchLines(api, `resourceVersion=${rv}&timeoutSeconds=1`, () => {
      for (let i = 0; i < 20; i++) api.store.create(newCm(`cm-${i}`));
      api.setFaults(undefined);
      api.store.create(newCm("last"));
    });
    const names = events.map((e) => e.object.metadata.name);
    const skipped = api.faultCounts().get("watchSkip");
    expect(skipped).toBeGreaterThan(0);
    expect(names).toHaveLength(21 - skipped);
    expect(names.at(-1)).toBe("last");
  });
});
