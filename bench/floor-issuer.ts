/**
 * The burst floor's one subscriber (bench/burst.ts, measureBurstFloor): the least any signer behind
 * the local broker must do per PCR. It takes each PodCertificateRequest's add event (binary-mode
 * CloudEvent, the PCR as its data) and writes that PCR's status with a certificate the harness made
 * before the clock started: one delivery in, one status write out. No checks, no steps, no
 * attestations, no cryptography — so podcert's pipeline, which does all of that and more calls and
 * hops, cannot be faster on the same stand-ins.
 *
 * Environment: PORT, HOST; FLOOR_API_URL (the embedded API server), FLOOR_TOKEN (a bearer token
 * allowed to update PCR status), FLOOR_STATUSES (a JSON file: "<namespace>/<name>" → status).
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Pool } from "undici";

interface PcrData {
  apiVersion: string;
  metadata: { name: string; namespace: string };
}

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set`);
  return v;
};
const statuses = new Map(Object.entries(JSON.parse(readFileSync(env("FLOOR_STATUSES"), "utf8")) as Record<string, unknown>));
const token = env("FLOOR_TOKEN");
// Keep-alive connections, as podcert's own client keeps them (kube/client-node.ts).
const api = new Pool(env("FLOOR_API_URL"), { connections: 64 });

async function writeStatus(pcr: PcrData): Promise<number> {
  const { namespace, name } = pcr.metadata;
  const status = statuses.get(`${namespace}/${name}`);
  if (status === undefined) return 404;
  const res = await api.request({
    method: "PUT",
    path: `/apis/${pcr.apiVersion}/namespaces/${namespace}/podcertificaterequests/${name}/status`,
    headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ ...pcr, status }),
  });
  await res.body.dump();
  return res.statusCode;
}

const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    writeStatus(JSON.parse(Buffer.concat(chunks).toString("utf8")) as PcrData).then(
      // A refused write is answered 500, so the broker retries and the run shows it.
      (code) => res.writeHead(code >= 200 && code < 300 ? 202 : 500).end(),
      () => res.writeHead(500).end(),
    );
  });
});
server.listen(Number(env("PORT")), process.env.HOST ?? "127.0.0.1");
process.on("SIGTERM", () => {
  server.close();
  void api.close();
});
