/**
 * An embedded Kubernetes API server for local runs and tests: node:http on 127.0.0.1, serving the
 * REST paths podcert uses so that @kubernetes/client-node talks to it as to a real cluster.
 *
 * Served: core v1 namespaces, nodes, pods, services, serviceaccounts, events; events.k8s.io/v1
 * events; certificates.k8s.io/v1beta1 podcertificaterequests and clustertrustbundles. Verbs: get,
 * list (per namespace and across namespaces, label and field selectors), watch (`?watch=true`),
 * create (POST, generateName), replace (PUT, and PUT .../status for types with a status
 * subresource), delete. PATCH, deletecollection and dryRun are not supported (405 / 400). `limit`
 * is ignored (lists are always complete, without `continue`). Also /version, /healthz, /livez,
 * /readyz and the discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>).
 *
 * No authentication or authorization: every request is allowed.
 *
 * Behaviour a reader should know (details in store.ts): creating a namespaced object needs its
 * Namespace (404 otherwise; seeding creates missing ones); PUT .../podcertificaterequests/x/status
 * applies kube-apiserver's status rules (shared/pcr/status-rules.ts) and answers 422 with one cause
 * per broken rule; a stale metadata.resourceVersion is 409 Conflict; errors are `Status` objects.
 * Watches: no resourceVersion (or "0") sends ADDED for existing objects first, a resourceVersion
 * sends the changes after it (ERROR 410 Expired once older than the history kept); BOOKMARKs only
 * with allowWatchBookmarks=true. client-node's Watch aborts after 30 s without data (TimeoutError);
 * its ListWatch / informers then reconnect from the last resourceVersion, which this server honours.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { stringify } from "yaml";

import { ConfigError } from "../errors.js";
import { RESOURCE_TYPES, resourceFor, resourceForPath, type KubeObject, type ResourceType } from "./resources.js";
import {
  ApiError,
  badRequest,
  internalError,
  methodNotAllowed,
  notFound,
  pathNotFound,
  success,
  tooLarge,
  unsupportedMediaType,
} from "./status.js";
import { ObjectStore, type WatchEvent } from "./store.js";

export interface EmbeddedApiServer {
  /** http://127.0.0.1:<port> */
  url: string;
  /**
   * A kubeconfig (YAML) for `url`: cluster, user and context "podcert-embedded", no credentials,
   * insecure-skip-tls-verify (client-node needs it to accept http://).
   */
  kubeconfig(): string;
  /** In-process access to the objects the server serves. */
  store: ObjectStore;
  /** Closes the listener and every open watch. */
  stop(): Promise<void>;
}

export interface StartApiServerOptions {
  /**
   * Objects to load first (e.g. from parseClusterFile). Namespaces are created first and missing
   * ones implicitly; uids, creationTimestamps and statuses are kept. Kinds the server does not
   * serve are skipped (reported through `log`). A bad object throws ConfigError naming its index.
   */
  objects?: readonly unknown[];
  /** 0 (default): any free port. */
  port?: number;
  /** The server clock: creationTimestamps and the PCR status rules' "now". */
  now?: () => Date;
  /** One line per request and per skipped seed object; silent by default. */
  log?: (line: string) => void;
  /** Request body limit; larger bodies get 413. Default 3 MiB, like kube-apiserver. */
  maxBodyBytes?: number;
  /** Changes kept for watches that resume from a resourceVersion. Default 10000. */
  historyLimit?: number;
  /** BOOKMARK period for watches that ask for them (allowWatchBookmarks=true). Default 10 s. */
  bookmarkIntervalMs?: number;
}

export const CONTEXT_NAME = "podcert-embedded";
const DEFAULT_MAX_BODY = 3 * 1024 * 1024;

export async function startApiServer(o: StartApiServerOptions = {}): Promise<EmbeddedApiServer> {
  const store = new ObjectStore({ ...(o.now ? { now: o.now } : {}), ...(o.historyLimit ? { historyLimit: o.historyLimit } : {}) });
  seed(store, o.objects ?? [], o.log);

  const watches = new Set<() => void>();
  const ctx: Ctx = {
    store,
    watches,
    maxBody: o.maxBodyBytes ?? DEFAULT_MAX_BODY,
    bookmarkMs: o.bookmarkIntervalMs ?? 10_000,
    log: o.log,
    host: "",
  };
  const server = createServer((req, res) => {
    handle(ctx, req, res).catch((e: unknown) => {
      const err = e instanceof ApiError ? e : internalError(e instanceof Error ? e.message : String(e));
      if (!(e instanceof ApiError)) o.log?.(`internal error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, err.code, err.status);
    }).finally(() => o.log?.(`${req.method} ${req.url} ${res.statusCode}`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  ctx.host = `127.0.0.1:${port}`;
  const url = `http://${ctx.host}`;

  return {
    url,
    store,
    kubeconfig: () => kubeconfigFor(url),
    async stop() {
      for (const end of [...watches]) end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/**
 * client-node refuses plain http:// servers unless the cluster sets insecure-skip-tls-verify
 * ("HTTP protocol is not allowed when skipTLSVerify is not set or false"), so it is set here.
 */
export function kubeconfigFor(url: string): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: CONTEXT_NAME, cluster: { server: url, "insecure-skip-tls-verify": true } }],
    users: [{ name: CONTEXT_NAME, user: {} }],
    contexts: [{ name: CONTEXT_NAME, context: { cluster: CONTEXT_NAME, user: CONTEXT_NAME } }],
    "current-context": CONTEXT_NAME,
    preferences: {},
  });
}

function seed(store: ObjectStore, objects: readonly unknown[], log: ((line: string) => void) | undefined): void {
  const indexed = objects.map((obj, index) => ({ obj, index }));
  const isNamespace = (x: unknown) => (x as { kind?: unknown } | null)?.kind === "Namespace";
  const ordered = [...indexed.filter((x) => isNamespace(x.obj)), ...indexed.filter((x) => !isNamespace(x.obj))];
  for (const { obj, index } of ordered) {
    const o = obj as Partial<KubeObject> | null;
    const what = `object ${index} (${o?.kind ?? "?"} ${o?.metadata?.namespace ? `${o.metadata.namespace}/` : ""}${o?.metadata?.name ?? "?"})`;
    if (o === null || typeof o !== "object" || typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
      throw new ConfigError(`${what}: not a Kubernetes object (apiVersion and kind are required)`);
    }
    if (!resourceFor(o.apiVersion, o.kind)) {
      log?.(`skipping ${what}: ${o.apiVersion} ${o.kind} is not served by the embedded API server`);
      continue;
    }
    try {
      store.create(obj, { seed: true });
    } catch (e) {
      throw new ConfigError(`${what}: ${(e as Error).message}`, { cause: e });
    }
  }
}

// ---------------------------------------------------------------------------------------------

interface Ctx {
  store: ObjectStore;
  watches: Set<() => void>;
  maxBody: number;
  bookmarkMs: number;
  log: ((line: string) => void) | undefined;
  host: string;
}

interface Route {
  t: ResourceType;
  namespace?: string;
  name?: string;
  sub?: string;
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const method = req.method ?? "GET";
  const q = url.searchParams;
  const segs = url.pathname.split("/").filter((s) => s !== "").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw badRequest(`malformed path segment ${JSON.stringify(s)}`);
    }
  });

  const info = nonResource(ctx, segs);
  if (info !== undefined) {
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method);
    if (typeof info === "string") {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(info);
    } else sendJson(res, 200, info);
    return;
  }

  const route = parseRoute(segs);
  const { t, namespace, name, sub } = route;
  if (q.has("dryRun")) throw badRequest("dryRun is not supported by the embedded API server");

  if (name === undefined) {
    if (method === "GET") {
      const isWatch = q.get("watch") === "true" || q.get("watch") === "1";
      if (isWatch) return watch(ctx, req, res, route, q);
      const list = ctx.store.list(t, selection(t, namespace, q));
      sendJson(res, 200, {
        kind: `${t.kind}List`,
        apiVersion: t.apiVersion,
        metadata: { resourceVersion: list.resourceVersion },
        items: list.items,
      });
      return;
    }
    if (method === "POST" && (namespace !== undefined || !t.namespaced)) {
      const body = await readObject(ctx, req, route);
      sendJson(res, 201, ctx.store.create(body));
      return;
    }
    throw methodNotAllowed(method);
  }

  if (method === "GET") {
    const obj = ctx.store.get(t, namespace, name);
    if (!obj) throw notFound(t, name);
    sendJson(res, 200, obj);
    return;
  }
  if (method === "PUT") {
    const body = await readObject(ctx, req, route);
    sendJson(res, 200, sub === "status" ? ctx.store.replaceStatus(body) : ctx.store.replace(body));
    return;
  }
  if (method === "DELETE" && sub === undefined) {
    const raw = await readBody(ctx, req);
    let pre: { uid?: string; resourceVersion?: string } = {};
    if (raw.length > 0) {
      const opts = parseJson(raw) as { preconditions?: { uid?: string; resourceVersion?: string } } | null;
      pre = opts?.preconditions ?? {};
    }
    const gone = ctx.store.delete(t, namespace, name, pre);
    sendJson(res, 200, t.kind === "Pod" ? gone : success(t, name, gone.metadata.uid));
    return;
  }
  throw methodNotAllowed(method);
}

/** /api/v1/namespaces/ns/pods/name/status and friends; throws 404 for anything else. */
function parseRoute(segs: string[]): Route {
  let group: string;
  let version: string | undefined;
  let rest: string[];
  if (segs[0] === "api") {
    group = "";
    version = segs[1];
    rest = segs.slice(2);
  } else if (segs[0] === "apis") {
    group = segs[1] ?? "";
    version = segs[2];
    rest = segs.slice(3);
  } else throw pathNotFound();
  if (version === undefined) throw pathNotFound();

  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3 && !(rest.length === 3 && (rest[2] === "status" || rest[2] === "finalize"))) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural, name, sub, ...extra] = rest;
  const t = plural === undefined ? undefined : resourceForPath(group, version, plural);
  if (!t || extra.length > 0) throw pathNotFound();
  if (namespace !== undefined && !t.namespaced) throw pathNotFound();
  if (namespace === undefined && t.namespaced && name !== undefined) throw pathNotFound();
  if (sub !== undefined && (sub !== "status" || !t.hasStatus)) throw pathNotFound();
  const route: Route = { t };
  if (namespace !== undefined) route.namespace = namespace;
  if (name !== undefined) route.name = name;
  if (sub !== undefined) route.sub = sub;
  return route;
}

function selection(t: ResourceType, namespace: string | undefined, q: URLSearchParams) {
  return {
    ...(t.namespaced && namespace !== undefined ? { namespace } : {}),
    ...(q.get("labelSelector") ? { labelSelector: q.get("labelSelector")! } : {}),
    ...(q.get("fieldSelector") ? { fieldSelector: q.get("fieldSelector")! } : {}),
  };
}

function watch(ctx: Ctx, req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): void {
  const { t, namespace } = route;
  const bookmarks = q.get("allowWatchBookmarks") === "true";
  const initialEvents = q.get("sendInitialEvents") === "true";
  const pending: string[] = [];
  let streaming = false;
  const write = (e: WatchEvent | { type: "BOOKMARK" | "ERROR"; object: unknown }) => {
    const line = `${JSON.stringify(e)}\n`;
    if (streaming) res.write(line);
    else pending.push(line);
  };

  let stopWatch: () => void;
  try {
    stopWatch = ctx.store.watch(t, write, {
      ...selection(t, namespace, q),
      ...(q.get("resourceVersion") ? { resourceVersion: q.get("resourceVersion")! } : {}),
      sendInitialEvents: initialEvents,
    });
  } catch (e) {
    if (!(e instanceof ApiError) || e.code !== 410) throw e;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(`${JSON.stringify({ type: "ERROR", object: e.status })}\n`);
    return;
  }

  const bookmark = (annotations?: Record<string, string>) =>
    write({
      type: "BOOKMARK",
      object: {
        kind: t.kind,
        apiVersion: t.apiVersion,
        metadata: { resourceVersion: ctx.store.resourceVersion, ...(annotations ? { annotations } : {}) },
      },
    });
  if (initialEvents && bookmarks) bookmark({ "k8s.io/initial-events-end": "true" });

  res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private" });
  res.flushHeaders();
  streaming = true;
  for (const line of pending.splice(0)) res.write(line);

  const timers: NodeJS.Timeout[] = [];
  const end = () => {
    if (!ctx.watches.delete(end)) return;
    stopWatch();
    for (const timer of timers) clearTimeout(timer);
    res.end();
  };
  ctx.watches.add(end);
  if (bookmarks) timers.push(setInterval(() => bookmark(), ctx.bookmarkMs));
  const timeout = Number(q.get("timeoutSeconds") ?? "");
  if (timeout > 0) timers.push(setTimeout(end, timeout * 1000));
  req.on("close", end);
  res.on("close", end);
}

/** The request body as the object for `route`: apiVersion/kind/namespace/name filled or checked. */
async function readObject(ctx: Ctx, req: IncomingMessage, route: Route): Promise<KubeObject> {
  const type = req.headers["content-type"];
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) throw unsupportedMediaType(type);
  const body = parseJson(await readBody(ctx, req));
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw badRequest("the request body must be a JSON object");
  const obj = body as Partial<KubeObject>;
  const { t } = route;
  obj.apiVersion ??= t.apiVersion;
  obj.kind ??= t.kind;
  if (obj.apiVersion !== t.apiVersion) {
    throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${t.apiVersion})`);
  }
  if (obj.kind !== t.kind) throw badRequest(`the kind in the data (${obj.kind}) does not match the expected kind (${t.kind})`);
  if (obj.metadata === null || typeof obj.metadata !== "object") obj.metadata = {} as KubeObject["metadata"];
  const meta = obj.metadata;
  if (t.namespaced) {
    meta.namespace ??= route.namespace!;
    if (meta.namespace !== route.namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
  }
  if (route.name !== undefined) {
    meta.name ??= route.name;
    if (meta.name !== route.name) {
      throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${route.name})`);
    }
  }
  return obj as KubeObject;
}

async function readBody(ctx: Ctx, req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? "0");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Keep reading (and discarding) a too-large body so the client gets to read the 413,
    // up to a hard cap beyond which the connection is cut.
    if (size > ctx.maxBody * 8) {
      req.destroy();
      break;
    }
    if (size <= ctx.maxBody && declared <= ctx.maxBody) chunks.push(chunk);
  }
  if (size > ctx.maxBody || declared > ctx.maxBody) throw tooLarge(ctx.maxBody);
  return Buffer.concat(chunks);
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch (e) {
    throw badRequest(`couldn't decode the request body as JSON: ${(e as Error).message}`);
  }
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

// ---------------------------------------------------------------------------------------------
// Version, health and discovery

function nonResource(ctx: Ctx, segs: string[]): unknown {
  const path = `/${segs.join("/")}`;
  if (path === "/healthz" || path === "/livez" || path === "/readyz") return "ok";
  if (path === "/version") {
    return { major: "1", minor: "36", gitVersion: "v1.36.0-podcert-embedded", platform: `${process.platform}/${process.arch}` };
  }
  const groups = [...new Set(RESOURCE_TYPES.filter((t) => t.group !== "").map((t) => t.group))];
  const versionsOf = (g: string) => [...new Set(RESOURCE_TYPES.filter((t) => t.group === g).map((t) => t.version))];
  const apiGroup = (g: string) => {
    const versions = versionsOf(g).map((v) => ({ groupVersion: `${g}/${v}`, version: v }));
    return { kind: "APIGroup", apiVersion: "v1", name: g, versions, preferredVersion: versions[0] };
  };
  if (path === "/api") {
    return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: ctx.host }] };
  }
  if (path === "/apis") return { kind: "APIGroupList", apiVersion: "v1", groups: groups.map(apiGroup) };
  if (segs[0] === "apis" && segs.length === 2 && groups.includes(segs[1]!)) return apiGroup(segs[1]!);
  const [group, version] = segs[0] === "api" && segs.length === 2 ? ["", segs[1]!]
    : segs[0] === "apis" && segs.length === 3 ? [segs[1]!, segs[2]!] : [undefined, undefined];
  if (group === undefined) return undefined;
  const types = RESOURCE_TYPES.filter((t) => t.group === group && t.version === version);
  if (types.length === 0) throw pathNotFound();
  const verbs = ["create", "delete", "get", "list", "update", "watch"];
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources: types.flatMap((t) => [
      { name: t.plural, singularName: t.kind.toLowerCase(), namespaced: t.namespaced, kind: t.kind, verbs },
      ...(t.hasStatus ? [{ name: `${t.plural}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: ["get", "update"] }] : []),
    ]),
  };
}
