/**
 * An embedded Kubernetes API server for local runs and tests: node:http on 127.0.0.1, serving the
 * REST paths podcert uses so that @kubernetes/client-node talks to it as to a real cluster.
 *
 * Served: core v1 namespaces, nodes, pods, services, serviceaccounts, configmaps, events; events.k8s.io/v1
 * events; certificates.k8s.io podcertificaterequests and clustertrustbundles in the versions the
 * emulated Kubernetes version serves (`kubernetesVersion`, versions.ts: v1beta1 in 1.35 and 1.36,
 * v1 and the deprecated v1beta1 in 1.37), from one store whose objects every served version
 * reads and writes (converted as kube-apiserver converts; docs/kubernetes-versions.md). Verbs: get,
 * list (per namespace and across namespaces, label and field selectors), watch (`?watch=true`),
 * create (POST, generateName), replace (PUT, and PUT .../status for types with a status
 * subresource), delete. PATCH, deletecollection and dryRun are not supported (405 / 400). Lists
 * honour `limit` and `continue` (store.ts: later pages are not a snapshot). Also /version, /healthz, /livez,
 * /readyz and the discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>).
 *
 * Authentication and authorization are opt-in (`authorization`): off, every request is allowed,
 * which keeps tests of the store itself simple. On (the local run, `podcert demo`, the HTTP tests),
 * the server behaves as kube-apiserver with `--anonymous-auth=false --authorization-mode=RBAC`:
 * a bearer token per user it was given (plus ADMIN_USER, in `system:masters`), 401 without a known
 * one; then RBAC (rbac.ts) over the given documents and Kubernetes' bootstrap roles, for every
 * request including /version and discovery, with request attributes derived as kube-apiserver
 * does (request-info.ts) and 403 Status bodies worded as its; the `sign` check on
 * PodCertificateRequest status writes (422); and the `attest` check on ClusterTrustBundles that
 * name a signer (403, trust-bundles.ts). Every refusal is kept (`refusedRequests`), so a run
 * can prove that nothing it did was refused, including calls whose failure changes no outcome.
 *
 * Behaviour a reader should know (details in store.ts): creating a namespaced object needs its
 * Namespace (404 otherwise; seeding creates missing ones); PUT .../podcertificaterequests/x/status
 * applies kube-apiserver's status rules (shared/pcr/status-rules.ts) and answers 422 with one cause
 * per broken rule; ClusterTrustBundles and ConfigMaps are validated as kube-apiserver validates
 * them (trust-bundles.ts, config-maps.ts); a PUT to a pod may change its metadata and the few
 * spec fields ValidatePodUpdate allows (images, …), any other spec change is 422 (pods.ts); a
 * stale metadata.resourceVersion is 409 Conflict (a ClusterTrustBundle update without one is
 * 422); errors are `Status` objects.
 * Versions: responses, list items, watch events and bookmarks are in the request's version; a
 * write's fields that version lacks are dropped with a `Warning` header (`unknown field
 * "spec.pkixPublicKey"`), or refused (400) with `?fieldValidation=Strict`; requests to a deprecated
 * version get kube-apiserver's deprecation `Warning`. /version reports the emulated minor.
 * Watches: no resourceVersion (or "0") sends ADDED for existing objects first, a resourceVersion
 * sends the changes after it (ERROR 410 Expired once older than the history kept); BOOKMARKs only
 * with allowWatchBookmarks=true. client-node's Watch aborts after 30 s without data (TimeoutError);
 * its ListWatch / informers then reconnect from the last resourceVersion, which this server honours.
 *
 * Fault injection (`faults`, `setFaults`; off by default; fault-injection.ts says who gets faults):
 * after authentication and authorization (a forbidden request is still a 403), one draw per request
 * from the users the plan applies to: 500 InternalError, 503 ServiceUnavailable, 429
 * TooManyRequests with Retry-After (as API Priority and Fairness), `slow` (held for slowMs, then
 * 504 Timeout), `reset` (the connection destroyed without an answer) — none of these does anything —
 * or `conflict`: a PUT to an existing object is preceded by a concurrent write (an annotation), so
 * the client's resourceVersion is stale and the store answers 409 as kube-apiserver would (a PUT
 * without resourceVersion succeeds, as there); drawn for any other request, `conflict` is no fault.
 * Watch requests can get the same request faults, and then one draw per event sent (not BOOKMARKs
 * or ERRORs): `watchSkip` drops the event, `watchCloseEarly` sends it and ends the stream.
 */

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";

import { stringify } from "yaml";

import { ConfigError } from "../../shared/errors.js";
import { kubernetesVersionFromEnv, type KubernetesVersion } from "../kubernetes-versions.js";
import type { ApiFaultKind, ApiFaultPlan, FaultCounter } from "../faults.js";
import { ApiFaultInjector, type RequestFault } from "./fault-injection.js";
import {
  authorize,
  BOOTSTRAP_RBAC,
  forbiddenMessage,
  isAuthorizedForSignerName,
  parseRbacPolicy,
  type RbacPolicy,
  type RequestAttributes,
  type UserInfo,
} from "./rbac.js";
import { isWatch, requestAttributes } from "./request-info.js";
import { ALL_RESOURCE_TYPES, resourceFor, resourceForPath, type KubeObject, type ResourceType } from "./resources.js";
import {
  ApiError,
  badRequest,
  forbidden,
  internalError,
  methodNotAllowed,
  notFound,
  pathNotFound,
  serviceUnavailable,
  success,
  timeout,
  tooLarge,
  tooManyRequests,
  unauthorized,
  unsupportedMediaType,
} from "./status.js";
import { ObjectStore, type AdmissionOptions, type WatchEvent } from "./store.js";
import { SHORT_NAMES, toTable, wantsTable } from "./tables.js";
import { attestForbiddenReason } from "./trust-bundles.js";
import {
  compareApiVersions,
  deprecationWarning,
  fromInternal,
  isServed,
  parseFieldValidation,
  unknownFields,
  versionInfo,
  warningHeader,
} from "./versions.js";

export interface EmbeddedApiServer {
  /** http://127.0.0.1:<port> */
  url: string;
  /**
   * A kubeconfig (YAML) for `url`: cluster, user and context "podcert-embedded",
   * insecure-skip-tls-verify (client-node needs it to accept http://). With `authorization`, it
   * holds the bearer token of `user` (a user name; default ADMIN_USER; an unknown one throws
   * ConfigError); without, no credentials.
   */
  kubeconfig(user?: string): string;
  /** The bearer token of `user` (default ADMIN_USER); undefined without `authorization`. */
  token(user?: string): string | undefined;
  /** Every request refused so far (401, 403 including the `attest` check, and 422 from the `sign` check), oldest first. */
  refusedRequests(): RefusedRequest[];
  /**
   * The requests answered so far, oldest first (at most the last MAX_SERVED_KEPT): for tests that
   * count what a function costs the API server.
   */
  servedRequests(): ServedRequest[];
  /**
   * A SubjectAccessReview: would `user` be allowed `attrs`? (Always true without `authorization`.)
   * For controllers that check permissions before acting, as Knative's ApiServerSource does.
   */
  accessReview(user: UserInfo, attrs: RequestAttributes): boolean;
  /**
   * In-process access to the objects the server serves (no authorization applies). It takes
   * objects in any served version and returns them in the internal form (store.ts).
   */
  store: ObjectStore;
  /** The control plane emulated. */
  kubernetesVersion: KubernetesVersion;
  /**
   * Turns fault injection on with `plan`, or off (undefined); a plan with problems
   * (apiFaultPlanProblems) throws ConfigError and leaves the current one in force. The server's one
   * generator (seeded at start with `faults.seed`, else DEFAULT_FAULT_SEED) keeps its sequence
   * across plans; `seed` restarts it.
   */
  setFaults(plan: ApiFaultPlan | undefined, o?: { seed?: number }): void;
  /** The faults injected so far, by kind (live: it keeps counting). */
  faultCounts(): FaultCounter;
  /**
   * The same API over HTTPS as well, for kubectl: it sends no credentials to a plain http://
   * server (kubernetes/kubectl#744). Returns https://localhost:<port>; the certificate must name
   * localhost.
   */
  listenTls(tls: { certPem: string; keyPem: string }): Promise<string>;
  /** Closes the listener and every open watch, and ends requests held by `slow` faults. */
  stop(): Promise<void>;
}

/** One answered request: who (when authenticated), what, and the status answered. */
export interface ServedRequest {
  user?: string;
  method: string;
  /** Path and query. */
  url: string;
  /** The status answered; 0 when the connection was reset without an answer (`fault: "reset"`). */
  status: number;
  /** The request fault injected into this request, if any (watch events' faults are only counted). */
  fault?: ApiFaultKind;
}

const MAX_SERVED_KEPT = 10_000;

export interface StartApiServerOptions {
  /**
   * Objects to load first (e.g. from parseClusterFile). Namespaces are created first and missing
   * ones implicitly; uids, creationTimestamps and statuses are kept. Kinds the server does not
   * serve, and versions the emulated control plane does not serve (a v1 PodCertificateRequest
   * before 1.37), are skipped (reported through `log`). A bad object throws ConfigError naming
   * its index.
   */
  objects?: readonly unknown[];
  /**
   * The Kubernetes control plane to emulate (local-cluster/kubernetes-versions.ts): which
   * certificates.k8s.io versions are served and what each accepts. Default:
   * kubernetesVersionFromEnv() (PODCERT_KUBERNETES_VERSION, else 1.36).
   */
  kubernetesVersion?: KubernetesVersion;
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
  /** Authenticate and authorize every request as kube-apiserver would; absent: allow everything. */
  authorization?: ApiServerAuthorization;
  /** Fault injection from the start (see setFaults); a plan with problems throws ConfigError. */
  faults?: { plan: ApiFaultPlan; seed?: number };
}

export interface ApiServerAuthorization {
  /**
   * Role, ClusterRole, RoleBinding and ClusterRoleBinding documents (any other kind is skipped),
   * in force besides Kubernetes' bootstrap roles (BOOTSTRAP_RBAC). A document kube-apiserver
   * would refuse is a ConfigError.
   */
  rbac: readonly unknown[];
  /** Who can authenticate besides ADMIN_USER: the server issues a random bearer token to each. */
  users: readonly UserInfo[];
}

/** The cluster administrator (kubeadm's name), whose group `system:masters` is bound to cluster-admin. */
export const ADMIN_USER: UserInfo = { name: "kubernetes-admin", groups: ["system:masters", "system:authenticated"] };

/** A request the server refused to authenticate (401) or authorize (403, also for `attest`; 422 for the `sign` check). */
export interface RefusedRequest {
  /** Absent for a 401. */
  user?: string;
  method: string;
  /** The request's path and query. */
  url: string;
  code: 401 | 403 | 422;
  /** What was refused, as the authorizer saw it: verb, and resource (with `/subresource`) or path. */
  verb?: string;
  apiGroup?: string;
  resource?: string;
  namespace?: string;
  name?: string;
  path?: string;
  message: string;
}

/** One line naming a refused call: who, what, where, and the HTTP request. */
export function describeRefusal(r: RefusedRequest): string {
  const who = r.user ?? "an unauthenticated client";
  if (r.verb === undefined) return `${who}: ${r.method} ${r.url} → ${r.code}`;
  const what = r.resource !== undefined
    ? `${r.verb} ${r.resource}${r.apiGroup ? `.${r.apiGroup}` : ""}${r.name ? ` "${r.name}"` : ""}${r.namespace ? ` in namespace ${r.namespace}` : ""}`
    : `${r.verb} path ${r.path}`;
  return `${who}: ${what} (${r.method} ${r.url} → ${r.code})`;
}

export const CONTEXT_NAME = "podcert-embedded";
const DEFAULT_MAX_BODY = 3 * 1024 * 1024;

export async function startApiServer(o: StartApiServerOptions = {}): Promise<EmbeddedApiServer> {
  const kubernetesVersion = o.kubernetesVersion ?? kubernetesVersionFromEnv();
  const store = new ObjectStore({ kubernetesVersion, ...(o.now ? { now: o.now } : {}), ...(o.historyLimit ? { historyLimit: o.historyLimit } : {}) });
  seed(store, o.objects ?? [], o.log);

  const watches = new Set<() => void>();
  const refused: RefusedRequest[] = [];
  const auth = o.authorization === undefined ? undefined : authState(o.authorization);
  const ctx: Ctx = {
    store,
    kv: kubernetesVersion,
    watches,
    maxBody: o.maxBodyBytes ?? DEFAULT_MAX_BODY,
    bookmarkMs: o.bookmarkIntervalMs ?? 10_000,
    log: o.log,
    host: "",
    auth,
    refuse: (r) => {
      refused.push(r);
      o.log?.(`refused: ${describeRefusal(r)}`);
    },
    userOf: new WeakMap(),
    faults: new ApiFaultInjector(ADMIN_USER.name, o.faults ?? {}),
    faultOf: new WeakMap(),
    held: new Set(),
    now: o.now ?? (() => new Date()),
  };
  const served: ServedRequest[] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, req, res).catch((e: unknown) => {
      const err = e instanceof ApiError ? e : internalError(e instanceof Error ? e.message : String(e));
      if (!(e instanceof ApiError)) o.log?.(`internal error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, err.code, err.status);
    }).finally(() => {
      o.log?.(`${req.method} ${req.url} ${res.statusCode}`);
      const user = ctx.userOf.get(req);
      const fault = ctx.faultOf.get(req);
      served.push({
        ...(user === undefined ? {} : { user }),
        method: req.method ?? "GET",
        url: req.url ?? "/",
        status: fault === "reset" ? 0 : res.statusCode,
        ...(fault === undefined ? {} : { fault }),
      });
      // Trimmed in halves, not one per request: splice moves every entry kept.
      if (served.length >= 2 * MAX_SERVED_KEPT) served.splice(0, served.length - MAX_SERVED_KEPT);
    });
  };
  const server = createServer(onRequest);
  const tlsServers: HttpsServer[] = [];
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

  const token = (user = ADMIN_USER.name): string | undefined => {
    if (!auth) return undefined;
    const t = auth.tokenOf.get(user);
    if (t === undefined) throw new ConfigError(`the embedded API server has no user ${JSON.stringify(user)} (it knows ${[...auth.tokenOf.keys()].join(", ")})`);
    return t;
  };
  return {
    url,
    store,
    kubernetesVersion,
    kubeconfig: (user?: string) => kubeconfigFor(url, token(user)),
    token,
    refusedRequests: () => [...refused],
    servedRequests: () => served.slice(-MAX_SERVED_KEPT),
    accessReview: (user, attrs) => auth === undefined || authorize(auth.policy, user, attrs).allowed,
    setFaults: (plan, fo) => ctx.faults.set(plan, fo?.seed),
    faultCounts: () => ctx.faults.counter,
    async listenTls(tls: { certPem: string; keyPem: string }) {
      const https = createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, onRequest);
      await new Promise<void>((resolve, reject) => {
        https.once("error", reject);
        https.listen(0, "127.0.0.1", () => resolve());
      });
      tlsServers.push(https);
      return `https://localhost:${(https.address() as AddressInfo).port}`;
    },
    async stop() {
      for (const end of [...watches]) end();
      // Held `slow` requests end now rather than when their timers would (closeAllConnections cuts them).
      for (const release of [...ctx.held]) release();
      await Promise.all([server, ...tlsServers].map((s) => new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      })));
    },
  };
}

/**
 * client-node refuses plain http:// servers unless the cluster sets insecure-skip-tls-verify
 * ("HTTP protocol is not allowed when skipTLSVerify is not set or false"), so it is set here;
 * with `caPem` (an https:// URL from listenTls) the server is verified against that CA instead.
 */
export function kubeconfigFor(url: string, token?: string, caPem?: string): string {
  const cluster = caPem === undefined ? { server: url, "insecure-skip-tls-verify": true } : { server: url, "certificate-authority-data": Buffer.from(caPem).toString("base64") };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: CONTEXT_NAME, cluster }],
    users: [{ name: CONTEXT_NAME, user: token === undefined ? {} : { token } }],
    contexts: [{ name: CONTEXT_NAME, context: { cluster: CONTEXT_NAME, user: CONTEXT_NAME } }],
    "current-context": CONTEXT_NAME,
    preferences: {},
  });
}

interface AuthState {
  policy: RbacPolicy;
  userOf: Map<string, UserInfo>;
  tokenOf: Map<string, string>;
}

function authState(a: ApiServerAuthorization): AuthState {
  const { policy, problems } = parseRbacPolicy([...BOOTSTRAP_RBAC, ...a.rbac]);
  if (problems.length > 0) throw new ConfigError(`RBAC documents kube-apiserver would refuse:\n  ${problems.join("\n  ")}`);
  const userOf = new Map<string, UserInfo>();
  const tokenOf = new Map<string, string>();
  for (const user of [ADMIN_USER, ...a.users]) {
    if (tokenOf.has(user.name)) continue;
    // Random per server: a token only works against the server that issued it, like a real one.
    const t = randomBytes(24).toString("base64url");
    userOf.set(t, { name: user.name, groups: [...user.groups] });
    tokenOf.set(user.name, t);
  }
  return { policy, userOf, tokenOf };
}

/** The bearer token authenticator: `Authorization: Bearer <token>` (scheme in any case). */
function authenticate(auth: AuthState, req: IncomingMessage): UserInfo | undefined {
  const m = /^bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return m ? auth.userOf.get(m[1]!) : undefined;
}

/** Authentication, then RBAC: the user, or an ApiError (401, 403) after recording the refusal. */
function admit(ctx: Ctx, auth: AuthState, req: IncomingMessage, method: string, url: URL): UserInfo {
  const requestUrl = `${url.pathname}${url.search}`;
  const user = authenticate(auth, req);
  if (user === undefined) {
    ctx.refuse({ method, url: requestUrl, code: 401, message: "Unauthorized" });
    throw unauthorized();
  }
  const attrs: RequestAttributes = requestAttributes(method, url);
  const decision = authorize(auth.policy, user, attrs);
  if (decision.allowed) return user;
  const err = attrs.resourceRequest
    ? forbidden({ group: attrs.apiGroup, resource: attrs.resource, name: attrs.name, message: forbiddenMessage(user, attrs), reason: decision.reason })
    : forbidden({ group: "", resource: "", name: "", message: forbiddenMessage(user, attrs), reason: decision.reason });
  const refusal: RefusedRequest = { user: user.name, method, url: requestUrl, code: 403, verb: attrs.verb, message: err.message };
  if (attrs.resourceRequest) {
    refusal.apiGroup = attrs.apiGroup;
    refusal.resource = attrs.subresource === "" ? attrs.resource : `${attrs.resource}/${attrs.subresource}`;
    if (attrs.namespace !== "") refusal.namespace = attrs.namespace;
    if (attrs.name !== "") refusal.name = attrs.name;
  } else refusal.path = attrs.path;
  ctx.refuse(refusal);
  throw err;
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
    const t = resourceFor(o.apiVersion, o.kind);
    if (!t) {
      log?.(`skipping ${what}: ${o.apiVersion} ${o.kind} is not served by the embedded API server`);
      continue;
    }
    // Same convention as an unknown kind: skipped and logged (clusterFileProblems warns first).
    if (!isServed(store.kubernetesVersion, t)) {
      log?.(`skipping ${what}: ${o.apiVersion} ${o.kind} is not served by Kubernetes ${store.kubernetesVersion}`);
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
  /** The control plane emulated. */
  kv: KubernetesVersion;
  watches: Set<() => void>;
  maxBody: number;
  bookmarkMs: number;
  log: ((line: string) => void) | undefined;
  host: string;
  auth: AuthState | undefined;
  refuse: (r: RefusedRequest) => void;
  /** The user each admitted request was authenticated as. */
  userOf: WeakMap<IncomingMessage, string>;
  faults: ApiFaultInjector;
  /** The request fault injected into each request, for servedRequests(). */
  faultOf: WeakMap<IncomingMessage, ApiFaultKind>;
  /** Releases the requests a `slow` fault holds (stop() calls them). */
  held: Set<() => void>;
  now: () => Date;
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
  // kube-apiserver authenticates and authorizes before routing: a forbidden path is 403, not 404.
  const user = ctx.auth === undefined ? undefined : admit(ctx, ctx.auth, req, method, url);
  if (user !== undefined) ctx.userOf.set(req, user.name);
  // After authorization, as API Priority and Fairness and the handlers come after it.
  const fault = ctx.faults.drawRequest(user?.name ?? "");
  if (fault !== undefined && fault !== "conflict") return injectRequestFault(ctx, req, res, fault, user?.name ?? "");
  const conflictDrawn = fault === "conflict";
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

  const route = parseRoute(ctx, segs);
  const { t, namespace, name, sub } = route;
  // Set before anything can fail: kube-apiserver sends it with errors too.
  const deprecated = deprecationWarning(ctx.kv, t);
  if (deprecated !== undefined) addWarning(res, deprecated);
  if (q.has("dryRun")) throw badRequest("dryRun is not supported by the embedded API server");
  const render = (obj: KubeObject) => fromInternal(ctx.kv, t, obj);

  if (name === undefined) {
    if (method === "GET") {
      if (isWatch(q)) return watch(ctx, req, res, route, q);
      const list = ctx.store.list(t, selection(t, namespace, q));
      const metadata = {
        resourceVersion: list.resourceVersion,
        ...(list.continue === undefined ? {} : { continue: list.continue, remainingItemCount: list.remainingItemCount }),
      };
      // `kubectl get` asks for a Table (tables.ts), everyone else for the list.
      if (wantsTable(req.headers.accept)) sendJson(res, 200, toTable(t, list.items, { now: ctx.now(), metadata }));
      else sendJson(res, 200, { kind: `${t.kind}List`, apiVersion: t.apiVersion, metadata, items: list.items.map(render) });
      return;
    }
    if (method === "POST" && (namespace !== undefined || !t.namespaced)) {
      const body = await readObject(ctx, req, res, route, q);
      sendJson(res, 201, render(ctx.store.create(body, attestCheck(ctx, user, method, url))));
      return;
    }
    throw methodNotAllowed(method);
  }

  if (method === "GET") {
    const obj = ctx.store.get(t, namespace, name);
    if (!obj) throw notFound(t, name);
    sendJson(res, 200, wantsTable(req.headers.accept) && sub === undefined ? toTable(t, [obj], { now: ctx.now() }) : render(obj));
    return;
  }
  if (method === "PUT") {
    if (conflictDrawn) concurrentWrite(ctx, req, route, user?.name ?? "");
    const body = await readObject(ctx, req, res, route, q);
    sendJson(res, 200, render(sub === "status" ? ctx.store.replaceStatus(body, signCheck(ctx, user, method, url)) : ctx.store.replace(body, attestCheck(ctx, user, method, url))));
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
    sendJson(res, 200, t.kind === "Pod" ? render(gone) : success(t, name, gone.metadata.uid));
    return;
  }
  throw methodNotAllowed(method);
}

/** Records and logs an injected fault. */
function noteFault(ctx: Ctx, req: IncomingMessage, kind: ApiFaultKind, user: string): void {
  ctx.faults.hit(kind);
  ctx.faultOf.set(req, kind);
  ctx.log?.(`fault: ${kind} ${req.method ?? "GET"} ${req.url ?? "/"} as ${user === "" ? "(unauthenticated)" : user}`);
}

/** The request faults that answer (or do not) without doing anything. */
async function injectRequestFault(ctx: Ctx, req: IncomingMessage, res: ServerResponse, kind: Exclude<RequestFault, "conflict">, user: string): Promise<void> {
  noteFault(ctx, req, kind, user);
  switch (kind) {
    case "status500":
      throw internalError("fault injected by the embedded API server");
    case "status503":
      throw serviceUnavailable("the server is currently unable to handle the request (fault injected)");
    case "status429": {
      const seconds = ctx.faults.retryAfterSeconds;
      const err = tooManyRequests(seconds);
      const text = JSON.stringify(err.status);
      res.writeHead(429, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "retry-after": String(seconds) });
      res.end(text);
      return;
    }
    case "slow":
      await hold(ctx, ctx.faults.slowMs);
      if (res.destroyed || res.headersSent) return;
      throw timeout();
    case "reset":
      req.socket.destroy();
      return;
  }
}

/** Waits `ms`, or until stop() releases every held request. */
function hold(ctx: Ctx, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const release = () => {
      clearTimeout(timer);
      ctx.held.delete(release);
      resolve();
    };
    const timer = setTimeout(release, ms);
    ctx.held.add(release);
  });
}

/**
 * The `conflict` fault: another writer updates the object first (an annotation counting such
 * writes), so the request's resourceVersion is stale. Nothing to conflict with (no object): no fault.
 */
function concurrentWrite(ctx: Ctx, req: IncomingMessage, route: Route, user: string): void {
  const current = ctx.store.get(route.t, route.namespace, route.name!);
  if (current === undefined) return;
  const n = ctx.faults.counter.get("conflict") + 1;
  const annotations = { ...current.metadata.annotations, [CONCURRENT_WRITER_ANNOTATION]: String(n) };
  try {
    ctx.store.replace({ ...current, metadata: { ...current.metadata, annotations } });
  } catch {
    return; // the store would not take its own object back (never seen): no fault, rather than a made-up error
  }
  noteFault(ctx, req, "conflict", user);
}

/** The annotation the `conflict` fault's concurrent writer sets (to the number of such writes so far). */
export const CONCURRENT_WRITER_ANNOTATION = "podcert.test/concurrent-writer";

/** The store's `sign` check for this request's user (none without authorization); refusals are recorded. */
function signCheck(ctx: Ctx, user: UserInfo | undefined, method: string, url: URL) {
  const auth = ctx.auth;
  if (auth === undefined || user === undefined) return {};
  return {
    signer: {
      user: user.name,
      maySign: (signerName: string) => {
        const ok = isAuthorizedForSignerName(auth.policy, user, "sign", signerName);
        if (!ok) {
          ctx.refuse({
            user: user.name,
            method,
            url: `${url.pathname}${url.search}`,
            code: 422,
            verb: "sign",
            apiGroup: "certificates.k8s.io",
            resource: "signers",
            name: signerName,
            message: `User ${JSON.stringify(user.name)} is not permitted to "sign" for signer ${JSON.stringify(signerName)}`,
          });
        }
        return ok;
      },
    },
  };
}

/**
 * The store's `attest` check (ClusterTrustBundleAttest) for this request's user; none without
 * authorization, as kube-apiserver's AlwaysAllow authorizer would allow it. Refusals are recorded.
 */
function attestCheck(ctx: Ctx, user: UserInfo | undefined, method: string, url: URL): AdmissionOptions {
  const auth = ctx.auth;
  if (auth === undefined || user === undefined) return {};
  return {
    attester: {
      user: user.name,
      mayAttest: (signerName: string) => {
        const ok = isAuthorizedForSignerName(auth.policy, user, "attest", signerName);
        if (!ok) {
          ctx.refuse({
            user: user.name,
            method,
            url: `${url.pathname}${url.search}`,
            code: 403,
            verb: "attest",
            apiGroup: "certificates.k8s.io",
            resource: "signers",
            name: signerName,
            message: attestForbiddenReason(signerName),
          });
        }
        return ok;
      },
    },
  };
}

/**
 * /api/v1/namespaces/ns/pods/name/status and friends, in a version the emulated control plane
 * serves; throws 404 for anything else.
 */
function parseRoute(ctx: Ctx, segs: string[]): Route {
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
  if (!t || !isServed(ctx.kv, t) || extra.length > 0) throw pathNotFound();
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
    ...(q.get("continue") ? { continue: q.get("continue")! } : {}),
    ...(limitOf(q) === undefined ? {} : { limit: limitOf(q)! }),
  };
}

/** `limit`: a positive integer, or none (kube-apiserver ignores 0 and negative values). */
function limitOf(q: URLSearchParams): number | undefined {
  const raw = q.get("limit");
  if (raw === null || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return n > 0 ? n : undefined;
}

function watch(ctx: Ctx, req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): void {
  const { t, namespace } = route;
  const bookmarks = q.get("allowWatchBookmarks") === "true";
  const initialEvents = q.get("sendInitialEvents") === "true";
  const pending: string[] = [];
  let streaming = false;
  // Set by a watchCloseEarly fault: nothing more is sent, and the stream ends once flushed.
  let closing = false;
  const user = ctx.userOf.get(req) ?? "";
  const write = (e: WatchEvent | { type: "BOOKMARK" | "ERROR"; object: unknown }) => {
    if (closing) return;
    if (e.type !== "BOOKMARK" && e.type !== "ERROR") {
      const fault = ctx.faults.drawWatch(user);
      if (fault !== undefined) {
        ctx.faults.hit(fault);
        ctx.log?.(`fault: ${fault} ${req.method ?? "GET"} ${req.url ?? "/"} as ${user === "" ? "(unauthenticated)" : user} (${e.type} rv ${(e as WatchEvent).object.metadata.resourceVersion ?? "?"})`);
      }
      if (fault === "watchSkip") return;
      if (fault === "watchCloseEarly") {
        closing = true;
        // Ended after this event is written; while the replay is still pending, once it is flushed.
        if (streaming) queueMicrotask(() => end());
      }
    }
    // Events carry the stored (internal) object: shown in the watch's version.
    const shown = e.type === "BOOKMARK" || e.type === "ERROR" ? e : { type: e.type, object: fromInternal(ctx.kv, t, (e as WatchEvent).object) };
    const line = `${JSON.stringify(shown)}\n`;
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

  const timers: NodeJS.Timeout[] = [];
  function end(): void {
    if (!ctx.watches.delete(end)) return;
    stopWatch();
    for (const timer of timers) clearTimeout(timer);
    res.end();
  }
  ctx.watches.add(end);

  res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache, private" });
  res.flushHeaders();
  streaming = true;
  for (const line of pending.splice(0)) res.write(line);
  if (closing) {
    end();
    return;
  }
  if (bookmarks) timers.push(setInterval(() => bookmark(), ctx.bookmarkMs));
  const timeout = Number(q.get("timeoutSeconds") ?? "");
  if (timeout > 0) timers.push(setTimeout(end, timeout * 1000));
  req.on("close", end);
  res.on("close", end);
}

/**
 * The request body as the object for `route`: apiVersion/kind/namespace/name filled or checked.
 * Fields the route's version lacks (versions.ts unknownFields) are left for the store to drop;
 * here they get a `Warning` each (fieldValidation Warn, the default), nothing (Ignore), or a 400
 * (Strict), as kube-apiserver's decoder does for unknown fields.
 */
async function readObject(ctx: Ctx, req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<KubeObject> {
  const validation = parseFieldValidation(q.get("fieldValidation"));
  if (validation === undefined) {
    throw badRequest(`fieldValidation: Unsupported value: ${JSON.stringify(q.get("fieldValidation"))}: supported values: "Ignore", "Strict", "Warn"`);
  }
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
  const unknown = unknownFields(ctx.kv, t, obj as KubeObject);
  if (unknown.length > 0 && validation === "Strict") {
    throw badRequest(`${t.kind} in version ${JSON.stringify(t.version)} cannot be handled as a ${t.kind}: strict decoding error: ${unknown.map((f) => `unknown field ${JSON.stringify(f)}`).join(", ")}`);
  }
  if (validation === "Warn") for (const f of unknown) addWarning(res, `unknown field ${JSON.stringify(f)}`);
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

/** Adds a `Warning: 299 - "…"` header (one header line per warning); sent with whatever answer follows. */
function addWarning(res: ServerResponse, text: string): void {
  const have = res.getHeader("warning");
  const list = have === undefined ? [] : Array.isArray(have) ? have : [String(have)];
  res.setHeader("warning", [...list, warningHeader(text)]);
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
  if (path === "/version") return { ...versionInfo(ctx.kv), platform: `${process.platform}/${process.arch}` };
  // Only what the emulated version serves. A real 1.35/1.36 cluster also serves
  // certificates.k8s.io/v1 (CertificateSigningRequests), which this server does not implement:
  // there /apis/certificates.k8s.io/v1 is 404 and the group lists v1beta1 only.
  const served = ALL_RESOURCE_TYPES.filter((t) => isServed(ctx.kv, t));
  const groups = [...new Set(served.filter((t) => t.group !== "").map((t) => t.group))];
  // Preferred first: GA before beta (v1 in 1.37), as kube-apiserver orders them.
  const versionsOf = (g: string) => [...new Set(served.filter((t) => t.group === g).map((t) => t.version))].sort(compareApiVersions);
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
  const types = served.filter((t) => t.group === group && t.version === version);
  if (types.length === 0) throw pathNotFound();
  const verbs = ["create", "delete", "get", "list", "update", "watch"];
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources: types.flatMap((t) => [
      { name: t.plural, singularName: t.kind.toLowerCase(), namespaced: t.namespaced, kind: t.kind, verbs, ...(SHORT_NAMES[t.plural] ? { shortNames: SHORT_NAMES[t.plural] } : {}) },
      ...(t.hasStatus ? [{ name: `${t.plural}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: ["get", "update"] }] : []),
    ]),
  };
}
