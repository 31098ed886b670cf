/**
 * HTTP/1.1 by hand over a TCP socket, for clients no library would be: one that stalls mid-body,
 * one that goes away mid-body, one that sends a body larger than it should, one that only holds a
 * connection open. Everything waits on the server, never on a clock: a server that never answers
 * fails the test by its timeout.
 */
import { connect, type Socket } from "node:net";

export interface RawResponse {
  /** 0 when the server closed the connection without an answer. */
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawConnection {
  socket: Socket;
  write(data: string | Buffer): Promise<void>;
  /** The first response on this connection, once its body is complete (or the server closed it). */
  response(): Promise<RawResponse>;
  /** Resolves once the server has closed the connection (or reset it). */
  closed: Promise<void>;
  close(): void;
}

export function openRaw(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let received = Buffer.alloc(0);
    const waiters: (() => void)[] = [];
    let ended = false;
    socket.on("data", (d: Buffer) => {
      received = Buffer.concat([received, d]);
      for (const w of waiters.splice(0)) w();
    });
    const closed = new Promise<void>((r) => {
      const done = () => {
        ended = true;
        for (const w of waiters.splice(0)) w();
        r();
      };
      socket.on("close", done);
      socket.on("end", done);
    });
    socket.on("error", () => {}); // a reset is an outcome the tests look at, via `closed`
    socket.once("connect", () => {
      resolve({
        socket,
        write: (data) => new Promise<void>((r, j) => socket.write(data, (e) => (e ? j(e) : r()))),
        async response() {
          for (;;) {
            const parsed = parseResponse(received, ended);
            if (parsed) return parsed;
            if (ended) return { status: 0, headers: {}, body: received.toString("latin1") };
            await new Promise<void>((r) => waiters.push(r));
          }
        },
        closed,
        close: () => socket.destroy(),
      });
    });
    socket.once("error", reject);
  });
}

/** A complete response in `buf` (content-length or connection close delimited), or undefined. */
function parseResponse(buf: Buffer, ended: boolean): RawResponse | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [statusLine, ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const rest = buf.subarray(end + 4);
  const length = headers["content-length"];
  if (length !== undefined) {
    if (rest.length < Number(length)) return undefined;
    return { status, headers, body: rest.subarray(0, Number(length)).toString("utf8") };
  }
  if (headers["transfer-encoding"] === "chunked") {
    const text = rest.toString("latin1");
    if (!text.includes("\r\n0\r\n\r\n") && !text.startsWith("0\r\n\r\n")) return ended ? { status, headers, body: text } : undefined;
    return { status, headers, body: decodeChunked(text) };
  }
  return ended || status === 204 || status === 304 ? { status, headers, body: rest.toString("utf8") } : undefined;
}

function decodeChunked(text: string): string {
  let out = "";
  let i = 0;
  for (;;) {
    const nl = text.indexOf("\r\n", i);
    const size = parseInt(text.slice(i, nl), 16);
    if (!(size > 0)) return out;
    out += text.slice(nl + 2, nl + 2 + size);
    i = nl + 2 + size + 2;
  }
}

/** Request head for a POST of a binary-mode CloudEvent (the body is up to the caller). */
export function postHead(o: { host: string; contentLength?: number; chunked?: boolean; type?: string }): string {
  const lines = [
    "POST / HTTP/1.1",
    `host: ${o.host}`,
    "content-type: application/json",
    "ce-specversion: 1.0",
    "ce-id: raw-1",
    "ce-source: /test",
    `ce-type: ${o.type ?? "dev.knative.apiserver.resource.add"}`,
  ];
  if (o.contentLength !== undefined) lines.push(`content-length: ${o.contentLength}`);
  if (o.chunked) lines.push("transfer-encoding: chunked");
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/** One chunk of a chunked body. */
export function chunk(data: string | Buffer): Buffer {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from("\r\n")]);
}

/** Where a TCP port on this machine listens, from /proc/net/tcp (Linux); undefined elsewhere. */
export async function listeningAddress(port: number): Promise<string | undefined> {
  const { readFileSync, existsSync } = await import("node:fs");
  if (!existsSync("/proc/net/tcp")) return undefined;
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      const [addr, p] = (f[1] ?? "").split(":");
      if (p === hexPort && f[3] === "0A") return ipFromProc(addr ?? "");
    }
  }
  return "not listening";
}

function ipFromProc(hex: string): string {
  if (hex.length === 8) return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".");
  return hex === "00000000000000000000000000000000" ? "::" : hex;
}

/**
 * One POST / with exactly these headers and body bytes (a content-length is added unless the
 * headers set one or a transfer-encoding), on its own connection: for bodies and headers fetch
 * would change (it adds a content type to a string body and refuses some headers).
 */
export async function rawPost(url: string, headers: Record<string, string>, body: Buffer | string = Buffer.alloc(0)): Promise<RawResponse> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const lines = ["POST / HTTP/1.1", `host: ${new URL(url).host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  const names = Object.keys(headers).map((k) => k.toLowerCase());
  if (!names.includes("content-length") && !names.includes("transfer-encoding")) lines.push(`content-length: ${bytes.length}`);
  const c = await openRaw(url);
  try {
    // The server may answer (413) and close before it has read everything: what it answered counts.
    await c.write(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), bytes])).catch(() => {});
    return await c.response();
  } finally {
    c.close();
  }
}
