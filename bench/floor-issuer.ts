/**
 * The burst floors' subscribers (bench/burst.ts, measureBurstFloor): what a signer behind the local
 * broker does per PCR with no work of its own — no checks, no attestations, no cryptography; each
 * PCR's certificate was made before the clock started. FLOOR_ROLE says which part it plays:
 *
 * - `issuer` (the least any signer must do): takes each PCR's add event and writes its status, one
 *   delivery in and one status write out.
 * - `validate`, `derive-sans`, `sign` (podcert's hops): the events and Kubernetes API calls of the
 *   step it stands in for, as the pipeline makes them. validate reads the PCR and the pod and
 *   replies `request.validated` (and answers the Issued update with nothing); derive-sans reads the
 *   Service a pod names and replies `sans.derived`; sign reads the pod, writes the status and
 *   replies `request.issued`.
 *
 * Environment: PORT, HOST; FLOOR_ROLE; FLOOR_API_URL (the embedded API server), FLOOR_TOKEN (a
 * bearer token with the role's rights); FLOOR_STATUSES (issuer and sign: a JSON file,
 * "<namespace>/<name>" → status).
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Pool } from "undici";
import { EXPECTS_SERVICE_ANNOTATION } from "../shared/profiles/defaults.js";
import { EVENT_TYPES } from "../shared/steps.js";

interface Pcr {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string };
  spec: { podName: string; unverifiedUserAnnotations?: Record<string, string> };
  status?: { conditions?: unknown[] };
}

/** What the hops hand on: the PCR as validate read it, and the Service its pod names, if any. */
interface Handed {
  pcr: Pcr;
  service?: string;
}

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set`);
  return v;
};
const role = env("FLOOR_ROLE");
const statuses = role === "issuer" || role === "sign" ? new Map(Object.entries(JSON.parse(readFileSync(env("FLOOR_STATUSES"), "utf8")) as Record<string, unknown>)) : new Map<string, unknown>();
const token = env("FLOOR_TOKEN");
// Keep-alive connections, as podcert's own client keeps them (kube/client-node.ts).
const api = new Pool(env("FLOOR_API_URL"), { connections: 64 });

class CallFailed extends Error {}

async function call(method: "GET" | "PUT", path: string, body?: unknown): Promise<unknown> {
  const res = await api.request({
    method,
    path,
    headers: { accept: "application/json", authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new CallFailed(`${method} ${path}: HTTP ${res.statusCode}`);
  return JSON.parse(text);
}

const pcrPath = (p: Pcr) => `/apis/${p.apiVersion}/namespaces/${p.metadata.namespace}/podcertificaterequests/${p.metadata.name}`;
const podPath = (p: Pcr) => `/api/v1/namespaces/${p.metadata.namespace}/pods/${p.spec.podName}`;

async function writeStatus(pcr: Pcr): Promise<void> {
  const { namespace, name, uid, resourceVersion } = pcr.metadata;
  const status = statuses.get(`${namespace}/${name}`);
  if (status === undefined) throw new CallFailed(`no status made for ${namespace}/${name}`);
  await call("PUT", `${pcrPath(pcr)}/status`, { apiVersion: pcr.apiVersion, kind: pcr.kind, metadata: { name, namespace, uid, resourceVersion }, status });
}

let replies = 0;
/** A binary-mode CloudEvent reply (the broker publishes it), or an empty answer. */
function answer(res: ServerResponse, reply?: { type: string; data: Handed }): void {
  if (reply === undefined) {
    res.writeHead(202).end();
    return;
  }
  res
    .writeHead(200, { "ce-specversion": "1.0", "ce-id": `floor-${process.pid}-${++replies}`, "ce-source": `bench/floor/${role}`, "ce-type": reply.type, "content-type": "application/json" })
    .end(JSON.stringify(reply.data));
}

async function handle(type: string, data: unknown): Promise<{ type: string; data: Handed } | undefined> {
  switch (role) {
    case "issuer":
      await writeStatus(data as Pcr);
      return undefined;
    case "validate": {
      const event = data as Pcr;
      if ((event.status?.conditions ?? []).length > 0) return undefined; // the update its status write caused
      const pcr = (await call("GET", pcrPath(event))) as Pcr;
      await call("GET", podPath(pcr));
      const service = pcr.spec.unverifiedUserAnnotations?.[EXPECTS_SERVICE_ANNOTATION];
      return { type: EVENT_TYPES.validated, data: { pcr, ...(service === undefined ? {} : { service }) } };
    }
    case "derive-sans": {
      const handed = data as Handed;
      if (handed.service !== undefined) await call("GET", `/api/v1/namespaces/${handed.pcr.metadata.namespace}/services/${handed.service}`);
      return { type: EVENT_TYPES.sansDerived, data: handed };
    }
    case "sign": {
      const handed = data as Handed;
      await call("GET", podPath(handed.pcr));
      await writeStatus(handed.pcr);
      return { type: EVENT_TYPES.issued, data: handed };
    }
    default:
      throw new Error(`FLOOR_ROLE ${role} is none of issuer, validate, derive-sans, sign (event ${type})`);
  }
}

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === "/healthz") {
    res.writeHead(200).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const type = String(req.headers["ce-type"] ?? "");
    handle(type, JSON.parse(Buffer.concat(chunks).toString("utf8"))).then(
      (reply) => answer(res, reply),
      // Answered 500, so the broker retries and a floor that cannot do its part shows in the run.
      (e: unknown) => {
        process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
        res.writeHead(500).end();
      },
    );
  });
});
server.listen(Number(env("PORT")), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => {
  server.close();
  void api.close();
});
