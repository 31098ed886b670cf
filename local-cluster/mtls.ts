/**
 * The seed's mutual TLS, proven with issued credential bundles: an "apiserver" TLS server that
 * presents its certificate and requires client certificates from the ate-system trust bundle, and
 * authorizes callers by SPIFFE ID; clients that verify the server against that bundle by DNS name.
 */
import { connect, createServer, type TLSSocket } from "node:tls";
import { ConfigError } from "../shared/errors.js";

export interface Credential {
  keyPem: string;
  chainPem: string;
}

/** Splits a kubelet credential bundle: the PKCS#8 key, then the chain. */
export function parseCredentialBundle(text: string): Credential {
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(text);
  const certs = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g);
  if (!key || !certs) throw new ConfigError("a credential bundle needs a PRIVATE KEY block followed by CERTIFICATE blocks");
  return { keyPem: key[0], chainPem: certs.join("") };
}

/** The URI SAN a peer certificate carries, as Node reports it. */
export function spiffeIdOf(subjectAltName: string | undefined): string | undefined {
  return (subjectAltName ?? "")
    .split(", ")
    .find((s) => s.startsWith("URI:spiffe://"))
    ?.slice(4);
}

export interface TlsServer {
  port: number;
  close(): Promise<void>;
}

/** A server answering "200 hello <id>" to authorized SPIFFE IDs and "403 ..." to others. */
export async function startMtlsServer(o: { credential: Credential; clientTrustPem: string; authorized: readonly string[] }): Promise<TlsServer> {
  const server = createServer(
    { key: o.credential.keyPem, cert: o.credential.chainPem, ca: o.clientTrustPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
    (socket: TLSSocket) => {
      const id = spiffeIdOf(socket.getPeerCertificate().subjectaltname);
      socket.end(id !== undefined && o.authorized.includes(id) ? `200 hello ${id}\n` : `403 ${id ?? "no SPIFFE ID"} is not authorized\n`);
    },
  );
  server.on("tlsClientError", () => {
    // A refused client certificate: the handshake result is what the checks read, on the client side.
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const a = server.address();
  return {
    port: typeof a === "object" && a ? a.port : 0,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface ClientResult {
  /** The server's first line, when the connection got that far. */
  answer?: string;
  error?: string;
}

/** Connects as a client with a certificate, verifying the server by `serverName` against `serverTrustPem`. */
export function mtlsRequest(o: { port: number; serverName: string; serverTrustPem: string; credential: Credential }): Promise<ClientResult> {
  return new Promise((resolve) => {
    let answer = "";
    let settled = false;
    const done = (r: ClientResult) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    const socket = connect({
      host: "127.0.0.1",
      port: o.port,
      servername: o.serverName,
      ca: o.serverTrustPem,
      key: o.credential.keyPem,
      cert: o.credential.chainPem,
      minVersion: "TLSv1.2",
    });
    socket.setTimeout(5_000, () => done({ error: "timed out" }));
    socket.on("data", (d: Buffer) => {
      answer += d.toString();
      if (answer.includes("\n")) done({ answer: answer.trim() });
    });
    socket.on("error", (e: NodeJS.ErrnoException) => done({ error: e.code ? `${e.code}: ${e.message}` : e.message }));
    socket.on("end", () => done(answer ? { answer: answer.trim() } : { error: "closed by the server without an answer" }));
  });
}

export interface HandshakeCheck {
  name: string;
  expect: "accepted" | "refused";
  outcome: "accepted" | "refused";
  detail: string;
  ok: boolean;
}

export interface SeedCredentials {
  apiserver: Credential;
  router: Credential;
  /** Another control-plane identity: TLS succeeds, authorization must not. */
  otherControlPlane?: Credential;
  worker: Credential;
  ateTrustPem: string;
  workerTrustPem: string;
  serverName: string;
  routerSpiffeId: string;
}

/** A client's result judged against what it should be: accepted only on the server's "200". */
export function judgeHandshake(name: string, expect: "accepted" | "refused", r: ClientResult): HandshakeCheck {
  const outcome = r.answer?.startsWith("200") ? "accepted" : "refused";
  return { name, expect, outcome, detail: r.answer ?? r.error ?? "", ok: outcome === expect };
}

/**
 * One handshake: a server presenting `server` and trusting clients from `serverTrustPem`,
 * authorizing `authorized`; a client presenting `client` and verifying the server as `serverName`
 * against `clientTrustPem`.
 */
export async function runHandshake(o: {
  name: string;
  expect: "accepted" | "refused";
  server: Credential;
  serverTrustPem: string;
  authorized: readonly string[];
  client: Credential;
  clientTrustPem: string;
  serverName: string;
}): Promise<HandshakeCheck> {
  const server = await startMtlsServer({ credential: o.server, clientTrustPem: o.serverTrustPem, authorized: o.authorized });
  try {
    return judgeHandshake(o.name, o.expect, await mtlsRequest({ port: server.port, serverName: o.serverName, serverTrustPem: o.clientTrustPem, credential: o.client }));
  } finally {
    await server.close();
  }
}

/** Runs the seed's handshakes and reports each against what it should do. */
export async function runSeedMtlsChecks(c: SeedCredentials): Promise<HandshakeCheck[]> {
  const checks: HandshakeCheck[] = [];
  const record = (name: string, expect: "accepted" | "refused", r: ClientResult) => checks.push(judgeHandshake(name, expect, r));
  const api = await startMtlsServer({ credential: c.apiserver, clientTrustPem: c.ateTrustPem, authorized: [c.routerSpiffeId] });
  const impostor = await startMtlsServer({ credential: c.router, clientTrustPem: c.ateTrustPem, authorized: [c.routerSpiffeId] });
  try {
    const request = (port: number, credential: Credential, serverTrustPem = c.ateTrustPem) =>
      mtlsRequest({ port, serverName: c.serverName, serverTrustPem, credential });
    record(`router → apiserver as ${c.serverName}`, "accepted", await request(api.port, c.router));
    record("worker pod certificate → apiserver", "refused", await request(api.port, c.worker));
    if (c.otherControlPlane) record("another ate-system identity → apiserver (authorized by SPIFFE ID)", "refused", await request(api.port, c.otherControlPlane));
    record(`router → a server whose certificate lacks ${c.serverName}`, "refused", await request(impostor.port, c.router));
    record("router trusting only the workerpool bundle → apiserver", "refused", await request(api.port, c.router, c.workerTrustPem));
  } finally {
    await api.close();
    await impostor.close();
  }
  return checks;
}
