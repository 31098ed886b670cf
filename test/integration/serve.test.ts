// A function bundle served over HTTP as Knative runs it, against the embedded API server.
import { fixture } from "../helpers/kubernetes.js";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVENT_TYPES, type StepName } from "../../shared/steps.js";
import { startBundleEnv, type BundleEnv } from "../helpers/bundles.js";

let env: BundleEnv;
const serve = (fn: StepName, extra: Record<string, string> = {}) => env.serve(fn, extra);

beforeAll(async () => {
  env = await startBundleEnv();
});

afterAll(async () => {
  await env?.stop();
});

describe("a function served over HTTP", () => {
  it("answers a structured-mode event with a binary-mode reply, then drains on SIGTERM", async () => {
    const validate = await serve("validate");
    expect((await fetch(`${validate.url}/healthz`)).status).toBe(200);
    const event = readFileSync(fixture("events/issued/api-ecdsap256.json"), "utf8");
    const res = await fetch(validate.url, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: event });
    expect(res.status).toBe(200);
    expect(res.headers.get("ce-type")).toBe(EVENT_TYPES.validated);
    expect(res.headers.get("ce-source")).toBe("/podcert/validate");
    const data = (await res.json()) as { pcr: { name: string }; attestations: { validate?: string } };
    expect(data.pcr.name).toBe("req-api-ecdsap256");
    // A General JWS as JSON text: one payload, a signature per receiver of validate.
    expect((JSON.parse(data.attestations.validate!) as { payload: string; signatures: unknown[] }).signatures).toHaveLength(3);

    const metrics = await (await fetch(`${validate.url}/metrics`)).text();
    expect(metrics).toMatch(/podcert_events_received_total\{type="dev\.knative\.apiserver\.resource\.add",status="200",function="validate"\} 1/);
    expect(metrics).toMatch(/podcert_decisions_total\{signer="atesystem\.podcert\.ate\.dev\/identity",outcome="validated",reason="",function="validate"\} 1/);
    const apiCount = metrics.split("\n").find((l) => l.startsWith("podcert_kubernetes_api_seconds_count{") && l.includes('operation="get pod"') && l.includes('outcome="ok"'));
    expect(apiCount).toMatch(/ 1$/);
    expect(metrics).not.toMatch(/req-api-ecdsap256|api-ecdsap256/);

    const exited = new Promise<number | null>((resolve) => validate.child.on("exit", (code) => resolve(code)));
    validate.child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("answers 400 to something that is not a CloudEvent and 401 to an unsigned hand-off", async () => {
    const sign = await serve("sign");
    const garbage = await fetch(sign.url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(garbage.status).toBe(400);
    const unsigned = await fetch(sign.url, {
      method: "POST",
      headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "x1", "ce-source": "/attacker", "ce-type": EVENT_TYPES.sansDerived },
      body: JSON.stringify({ pcr: { namespace: "ate-system", name: "req-api-ecdsap256", uid: "44444444-0000-4000-8000-000000000007" }, signerName: "atesystem.podcert.ate.dev/identity", attestations: {} }),
    });
    expect(unsigned.status).toBe(401);
    const pcr = env.api.store.get("podcertificaterequests", "ate-system", "req-api-ecdsap256") as { status?: unknown } | undefined;
    expect(pcr?.status ?? {}).toEqual({});
  });

  it("authenticates as the kubeconfig says, inside the bundle (token file as in a pod, exec plugin)", async () => {
    // The function bundles keep only the parts of client-node they use (esbuild.config.mjs): this
    // checks that its authenticators survived. The function's first request (GET /api, the
    // readiness check at start) carries the credentials.
    const seen: { url: string; authorization: string | undefined }[] = [];
    const server = createServer((req, res) => {
      seen.push({ url: req.url ?? "", authorization: req.headers.authorization });
      res.writeHead(200, { "content-type": "application/json" }).end('{"major":"1","minor":"35"}');
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const tokenFile = join(env.dir, "sa-token");
      // Ends in a newline, as `echo` writes it: trimmed, as client-go does.
      writeFileSync(tokenFile, "token-from-file\n");
      const execScript = `process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { token: "token-from-exec" } }))`;
      const users: Partial<Record<StepName, unknown>> = {
        // What loadFromCluster builds inside a pod: the projected service-account token, re-read as it rotates.
        validate: { "auth-provider": { name: "tokenFile", config: { tokenFile } } },
        "derive-sans": { exec: { apiVersion: "client.authentication.k8s.io/v1", command: process.execPath, args: ["-e", execScript], interactiveMode: "Never" } },
      };
      for (const [fn, user] of Object.entries(users) as [StepName, unknown][]) {
        const kubeconfig = join(env.dir, `${fn}.kubeconfig`);
        writeFileSync(kubeconfig, JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{ name: "c", cluster: { server: url, "insecure-skip-tls-verify": true } }],
          users: [{ name: "u", user }],
          contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
          "current-context": "c",
        }));
        seen.length = 0;
        const f = await serve(fn, { KUBECONFIG: kubeconfig });
        for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
        expect(seen[0], f.stderr()).toEqual({ url: "/api", authorization: `Bearer token-from-${fn === "validate" ? "file" : "exec"}` });
        f.child.kill("SIGTERM");
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("refuses to start with an unknown LOG_LEVEL, naming the levels it takes", async () => {
    await expect(serve("validate", { LOG_LEVEL: "verbose" })).rejects.toThrow(/exited 78.*LOG_LEVEL must be one of debug, info, warn, error, got \\?"verbose/s);
  });

  it("refuses to start without its step keys, naming what is missing", async () => {
    await expect(serve("deny", { PODCERT_KEYS_DIR: join(env.dir, "nowhere") })).rejects.toThrow(/exited 78.*edge keys of deny/s);
  });
});
