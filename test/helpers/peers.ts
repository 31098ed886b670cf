/**
 * Two pods using their certificates: chain building against a trust bundle at a chosen time
 * (node:crypto), and a mutual TLS handshake between two credential bundles with node:tls and,
 * where installed, openssl s_server / s_client. For the rotation proof (test/integration/rotation.test.ts).
 */
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spiffeIdOf, type Credential } from "../../local-cluster/mtls.js";
import { splitPem } from "../integration/certs.js";

export type { Credential };
export { hasOpenssl, splitPem } from "../integration/certs.js";

/** Every temporary folder made here (each holds key files while it exists). */
const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** The temporary folders made here that still exist: none, once every call has returned. */
export function leftoverTempDirs(): string[] {
  return tempDirs.filter((d) => existsSync(d));
}

const validAt = (c: X509Certificate, at: Date) => c.validFromDate.getTime() <= at.getTime() && at.getTime() <= c.validToDate.getTime();

export type ChainResult = { ok: true; anchor: X509Certificate } | { ok: false; why: string };

/**
 * Builds the path leaf → the chain's certificates → a root of `bundlePem`, as a TLS peer would at
 * time `at`: every link issued (names) and signed (signature) by the next, every issuer a CA,
 * every certificate valid at `at`. The chain never carries the root: the bundle must.
 */
export function chainVerifiesAt(chainPem: string, bundlePem: string, at: Date): ChainResult {
  const chain = splitPem(chainPem).map((p) => new X509Certificate(p));
  const roots = splitPem(bundlePem).map((p) => new X509Certificate(p));
  const leaf = chain[0];
  if (leaf === undefined) return { ok: false, why: "empty chain" };
  if (leaf.ca) return { ok: false, why: "the leaf is a CA" };
  for (const [i, c] of chain.entries()) {
    if (!validAt(c, at)) return { ok: false, why: `chain[${i}] is not valid at ${at.toISOString()} (${c.validFrom} .. ${c.validTo})` };
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const [child, parent] = [chain[i]!, chain[i + 1]!];
    if (!parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey)) return { ok: false, why: `chain[${i}] is not issued by chain[${i + 1}]` };
  }
  const top = chain[chain.length - 1]!;
  const anchor = roots.find((r) => r.ca && top.checkIssued(r) && top.verify(r.publicKey));
  if (anchor === undefined) return { ok: false, why: "no root of the bundle issued the top of the chain" };
  if (!validAt(anchor, at)) return { ok: false, why: `the root is not valid at ${at.toISOString()}` };
  return { ok: true, anchor };
}

export interface Handshake {
  ok: boolean;
  /** The SPIFFE IDs each side saw of the other (when the handshake got that far), or what failed. */
  serverSaw?: string;
  clientSaw?: string;
  detail: string;
}

/**
 * Mutual TLS with node:tls on loopback: the server requires and verifies a client certificate
 * (requestCert, rejectUnauthorized) and the client verifies the server's, both against
 * `trustPem`. The client checks the server's identity by its SPIFFE ID (the caller compares
 * `clientSaw`), not by DNS name: most pod certificates carry only a URI SAN. node:tls judges
 * validity at the real clock; it has no verification time.
 */
export async function nodeMutualTls(o: { server: Credential; client: Credential; trustPem: string }): Promise<Handshake> {
  let serverError: string | undefined;
  let serverSaw: string | undefined;
  const server = createServer(
    { key: o.server.keyPem, cert: o.server.chainPem, ca: o.trustPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
    (socket: TLSSocket) => {
      serverSaw = spiffeIdOf(socket.getPeerCertificate().subjectaltname);
      socket.end(`hello ${serverSaw ?? "?"}\n`);
    },
  );
  server.on("tlsClientError", (e: Error) => {
    serverError = e.message;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  try {
    const client = await new Promise<{ answer?: string; error?: string; clientSaw?: string }>((resolve) => {
      let answer = "";
      let clientSaw: string | undefined;
      let settled = false;
      const done = (r: { answer?: string; error?: string }) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        resolve({ ...r, ...(clientSaw === undefined ? {} : { clientSaw }) });
      };
      const socket = connect({
        host: "127.0.0.1",
        port,
        ca: o.trustPem,
        key: o.client.keyPem,
        cert: o.client.chainPem,
        minVersion: "TLSv1.2",
        // The chain is still verified (rejectUnauthorized defaults to true); the name is the SPIFFE ID, read below.
        checkServerIdentity: () => undefined,
      });
      socket.setTimeout(5_000, () => done({ error: "timed out" }));
      socket.on("secureConnect", () => {
        clientSaw = spiffeIdOf(socket.getPeerCertificate().subjectaltname);
      });
      socket.on("data", (d: Buffer) => {
        answer += d.toString();
        if (answer.includes("\n")) done({ answer: answer.trim() });
      });
      socket.on("error", (e: NodeJS.ErrnoException) => done({ error: e.code ? `${e.code}: ${e.message}` : e.message }));
      socket.on("end", () => done(answer ? { answer: answer.trim() } : { error: "closed by the server without an answer" }));
    });
    const ok = client.answer !== undefined && client.answer.startsWith("hello ") && serverError === undefined && client.error === undefined;
    return {
      ok,
      ...(serverSaw === undefined ? {} : { serverSaw }),
      ...(client.clientSaw === undefined ? {} : { clientSaw: client.clientSaw }),
      detail: ok ? client.answer! : `client: ${client.error ?? client.answer ?? "-"}; server: ${serverError ?? "-"}`,
    };
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Writes a credential's key (0600), leaf and the rest of its chain; returns the paths. */
function writeCredential(dir: string, name: string, c: Credential): { key: string; leaf: string; chain: string | undefined } {
  const [leaf, ...rest] = splitPem(c.chainPem);
  const paths = { key: join(dir, `${name}-key.pem`), leaf: join(dir, `${name}-leaf.pem`), chain: rest.length > 0 ? join(dir, `${name}-chain.pem`) : undefined };
  writeFileSync(paths.key, c.keyPem, { mode: 0o600 });
  writeFileSync(paths.leaf, leaf ?? "");
  if (paths.chain !== undefined) writeFileSync(paths.chain, rest.join(""));
  return paths;
}

const credentialArgs = (p: { key: string; leaf: string; chain: string | undefined }) => ["-cert", p.leaf, "-key", p.key, ...(p.chain === undefined ? [] : ["-cert_chain", p.chain])];

/**
 * The same handshake with `openssl s_server` (-Verify: a client certificate is required) and
 * `openssl s_client`, both with -verify_return_error, -CAfile the bundle and -attime `at`: openssl,
 * unlike node:tls, verifies at a chosen time, so this runs at the controlled clock. Success is the
 * server's -www answer reaching the client, which the server sends only after it accepted the
 * client's certificate. Files live in a folder of their own, removed before returning.
 */
export async function opensslMutualTls(o: { server: Credential; client: Credential; trustPem: string; at: Date }): Promise<Handshake> {
  const dir = tempDir("podcert-openssl-tls-");
  const attime = ["-attime", String(Math.floor(o.at.getTime() / 1000))];
  let server: ReturnType<typeof spawn> | undefined;
  try {
    const ca = join(dir, "bundle.pem");
    writeFileSync(ca, o.trustPem);
    const s = writeCredential(dir, "server", o.server);
    const c = writeCredential(dir, "client", o.client);
    server = spawn("openssl", ["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-www", ...credentialArgs(s), "-CAfile", ca, "-Verify", "4", "-verify_return_error", ...attime], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let serverOut = "";
    const proc = server;
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`openssl s_server did not start: ${serverOut}`)), 10_000);
      const onData = (d: Buffer) => {
        serverOut += d.toString();
        const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(serverOut);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`openssl s_server exited ${code}: ${serverOut}`));
      });
    });
    const client = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, ...credentialArgs(c), "-CAfile", ca, "-verify_return_error", ...attime, "-quiet"], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
      child.stdin.end("GET / HTTP/1.0\r\n\r\n");
    });
    const ok = client.code === 0 && client.out.includes("HTTP/1.0 200 ok");
    const firstLine = (text: string) => text.split("\n").find((l) => /error|HTTP\/1\.0/.test(l)) ?? text.trim().split("\n")[0] ?? "";
    return { ok, detail: ok ? "HTTP/1.0 200 ok" : `s_client exit ${client.code}: ${firstLine(client.out)}; s_server: ${firstLine(serverOut)}` };
  } finally {
    if (server !== undefined && server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `openssl verify -x509_strict -purpose <purpose> -attime <at>` of a chain against a bundle. */
export function opensslVerifyAt(chainPem: string, bundlePem: string, at: Date, purpose: "sslclient" | "sslserver"): { ok: boolean; out: string } {
  const dir = tempDir("podcert-openssl-verify-");
  try {
    const [leaf, ...rest] = splitPem(chainPem);
    writeFileSync(join(dir, "leaf.pem"), leaf ?? "");
    writeFileSync(join(dir, "bundle.pem"), bundlePem);
    const args = ["verify", "-x509_strict", "-purpose", purpose, "-attime", String(Math.floor(at.getTime() / 1000)), "-CAfile", join(dir, "bundle.pem")];
    if (rest.length > 0) {
      writeFileSync(join(dir, "untrusted.pem"), rest.join(""));
      args.push("-untrusted", join(dir, "untrusted.pem"));
    }
    args.push(join(dir, "leaf.pem"));
    const r = spawnSync("openssl", args, { encoding: "utf8" });
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
