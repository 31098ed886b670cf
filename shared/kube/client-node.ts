/**
 * ClusterApi over @kubernetes/client-node: a kubeconfig (KUBECONFIG or in-cluster) or a given one.
 *
 * client-node supplies what is hard to get right: reading kubeconfigs and in-cluster config, every
 * authentication method (tokens and their rotation, client certificates, exec plugins), TLS and
 * proxies: `applySecurityAuthentication` sets the headers and the undici dispatcher of a request.
 * The few REST calls podcert makes are written here as plain JSON requests, sent with undici's
 * `request` on that dispatcher (undici is client-node's own HTTP client, one copy), instead of the
 * generated API classes and their `fetch` transport, because those cost what a function that
 * scales from zero and then takes a burst cannot afford (measured, see README "Performance"):
 * importing CoreV1Api pulls every generated API and model into the bundle (about 0.75 MiB more to
 * compile at each cold start), every call went JSON → typed models with Date objects → JSON again
 * (podcert works on plain wire-format objects), and undici's `fetch` (WHATWG Request, Response and
 * streams) cost about as much CPU per call as the rest of a PCR's handling. Responses are the API
 * server's JSON.
 */
import { HttpMethod, KubeConfig, RequestContext } from "@kubernetes/client-node";
import { type Dispatcher } from "undici";
import { requestUrl } from "../http-request.js";
import { ConfigError, ConflictError, TransientError } from "../errors.js";
import type { Namespace, Node, Pod, PodCertificateRequest, PcrStatus, Service, ServiceAccount } from "../pcr/model.js";
import {
  certificatesApiVersion,
  certificatesVersionOf,
  CERTIFICATES_GROUP,
  chooseCertificatesApis,
  isCertificatesProblem,
  needsLegacyRead,
  type CertificatesApis,
  type CertificatesVersion,
  type ServedResources,
} from "./api-versions.js";
import { ResourceExpiredError, type ClusterApi, type ClusterTrustBundle, type ConfigMap, type CoreV1Event, type KubernetesEvent, type PcrPage, type PcrStatusTarget, type ResyncApi, type ServiceList, type ServicesWatchApi, type ServiceWatchEvent, type TrustApi } from "./cluster.js";

/** Observes every API call (for metrics); never sees bodies. */
export type ApiCallObserver = (call: { operation: string; seconds: number; outcome: "ok" | "absent" | "conflict" | "error" }) => void;

/** Loads the kubeconfig the way kubectl does: $KUBECONFIG, ~/.kube/config, or in-cluster. */
export function loadKubeConfig(o: { kubeconfigText?: string } = {}): KubeConfig {
  const kc = new KubeConfig();
  if (o.kubeconfigText !== undefined) kc.loadFromString(o.kubeconfigText);
  else kc.loadFromDefault();
  reuseConnections(kc);
  return kc;
}

/**
 * Why the kubeconfig cannot authenticate anyone, or undefined. With no $KUBECONFIG, no
 * ~/.kube/config and no in-cluster token, client-node falls back to http://localhost:8080 and a
 * user without credentials: the function would start and every call would fail.
 */
export function missingCredentials(kc: KubeConfig): string | undefined {
  const user = kc.getCurrentUser();
  if (user === null) return "no Kubernetes credentials: the kubeconfig's current context names no user";
  const { token, authProvider, exec, certData, certFile, username } = user;
  if ([token, certData, certFile, username].some((v) => v !== undefined && v !== "") || authProvider !== undefined || exec !== undefined) return undefined;
  return `no Kubernetes credentials: the kubeconfig's user ${JSON.stringify(user.name)} has no token, client certificate or exec plugin (KUBECONFIG empty or unset, no ~/.kube/config, not in a pod with a ServiceAccount token)`;
}

interface DispatcherFactory {
  createDispatcher(cluster: unknown, agentOptions: unknown): Dispatcher | undefined;
  createDispatcherOptions(cluster: unknown, agentOptions: unknown): unknown;
}

/**
 * client-node 2.0.1 builds a new undici Agent for every request whenever TLS options are set
 * (always in a cluster: the service-account CA), so every API call opened a new connection and,
 * against a real API server, paid a TLS handshake. Reuse one dispatcher per distinct set of
 * options instead: the options (CA, client certificate) are compared on every request, so a
 * rotated file still takes effect on the next call. Tokens travel in headers and are unaffected.
 */
function reuseConnections(kc: KubeConfig): void {
  const factory = kc as unknown as DispatcherFactory;
  const original = factory.createDispatcher.bind(kc);
  const cache = new Map<string, Dispatcher | undefined>();
  factory.createDispatcher = (cluster, agentOptions) => {
    // Buffers (CA, certificate, key) are keyed by their bytes in base64, not JSON's number arrays.
    const options = JSON.stringify(factory.createDispatcherOptions(cluster, agentOptions), function (this: Record<string, unknown>, k, v: unknown) {
      const raw = this[k];
      return Buffer.isBuffer(raw) ? raw.toString("base64") : v;
    });
    // The JSON itself is the key (a few KiB, at most 9 kept): hashing it cost more than the lookup.
    if (!cache.has(options)) {
      if (cache.size > 8) cache.clear();
      cache.set(options, original(cluster, agentOptions));
    }
    return cache.get(options);
  };
}

/** /apis/certificates.k8s.io/<version> */
const certificatesPath = (v: CertificatesVersion) => `/apis/${CERTIFICATES_GROUP}/${v}`;
/**
 * Longest wait for an API server's answer (headers, then between body chunks), by default. Below
 * the Broker's 10 s per-attempt delivery `timeout` (knative/broker.yaml): a hung API server makes
 * the function answer 503 (retried) within the attempt, rather than the broker giving up on an
 * attempt whose handler still holds the request, and may still write, after it was redelivered.
 */
export const API_TIMEOUT_MS = 8_000;
/**
 * One path segment. Names are checked against Kubernetes' rules where they are first read (an
 * event, a PCR field); a segment that would move the path (empty, "." or "..", which
 * encodeURIComponent leaves as they are) reaching this point is a bug, never a request to send.
 */
function seg(name: string): string {
  if (name === "" || name === "." || name === "..") throw new Error(`bug: ${JSON.stringify(name)} as a Kubernetes API path segment`);
  return encodeURIComponent(name);
}

interface Response {
  status: number;
  text: string;
}

export class KubeClusterApi implements ClusterApi, TrustApi, ResyncApi, ServicesWatchApi {
  private readonly server: string;
  private readonly timeoutMs: number;
  private readonly onCertificatesApis: ((apis: CertificatesApis) => void) | undefined;
  /** The discovered versions (api-versions.ts), once discovery succeeded; a failed one is retried. */
  private apis: Promise<CertificatesApis> | undefined;

  constructor(
    private readonly kc: KubeConfig,
    private readonly observe: ApiCallObserver = () => {},
    o: { timeoutMs?: number; onCertificatesApis?: (apis: CertificatesApis) => void } = {},
  ) {
    this.timeoutMs = o.timeoutMs ?? API_TIMEOUT_MS;
    this.onCertificatesApis = o.onCertificatesApis;
    const server = kc.getCurrentCluster()?.server;
    if (server === undefined || server === "") throw new ConfigError("the kubeconfig's current context names no cluster server");
    this.server = server.replace(/\/+$/, "");
  }

  private async send(method: HttpMethod, path: string, body?: unknown): Promise<Response> {
    const res = await this.open(method, path, { body });
    return { status: res.statusCode, text: await res.body.text() };
  }

  /** The request sent, its answer's body unread (a watch streams it). */
  private async open(method: HttpMethod, path: string, o: { body?: unknown; bodyTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<Dispatcher.ResponseData> {
    const { body } = o;
    const ctx = new RequestContext(`${this.server}${path}`, method);
    ctx.setHeaderParam("Accept", "application/json");
    if (body !== undefined) {
      ctx.setHeaderParam("Content-Type", "application/json");
      ctx.setBody(JSON.stringify(body));
    }
    await this.kc.applySecurityAuthentication(ctx);
    // client-node puts a token file's content into the header as it is; a file that ends in a
    // newline (as `echo` writes one) would make an invalid header. client-go trims it; so do we.
    const headers = Object.fromEntries(Object.entries(ctx.getHeaders()).map(([k, v]) => [k, v.trim()]));
    return requestUrl(ctx.getUrl(), {
      method: method as Dispatcher.HttpMethod,
      headers,
      body: ctx.getBody() as string | undefined,
      // A hung API server fails the call (transient, retried by the broker) well before the
      // delivery itself times out, rather than holding the request for undici's 5 minutes.
      headersTimeout: this.timeoutMs,
      bodyTimeout: o.bodyTimeoutMs ?? this.timeoutMs,
      ...(o.signal === undefined ? {} : { signal: o.signal }),
    }, ctx.getDispatcher() as Dispatcher | undefined);
  }

  /**
   * One API call: 2xx is parsed JSON, 404 is undefined where absence is an answer, anything else
   * (and any network failure) the error apiFailure maps it to.
   */
  private async call<T>(operation: string, method: HttpMethod, path: string, o: { body?: unknown; absentOk: true }): Promise<T | undefined>;
  private async call<T>(operation: string, method: HttpMethod, path: string, o?: { body?: unknown; absentOk?: false }): Promise<T>;
  private async call<T>(operation: string, method: HttpMethod, path: string, o: { body?: unknown; absentOk?: boolean } = {}): Promise<T | undefined> {
    const done = this.timed(operation);
    let res: Response;
    try {
      res = await this.send(method, path, o.body);
    } catch (e) {
      throw done.failed(apiFailure(operation, { thrown: e }));
    }
    if (res.status >= 200 && res.status < 300) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(res.text);
      } catch {
        done("error");
        throw new TransientError(`Kubernetes API ${operation} answered HTTP ${res.status} with a body that is not JSON`);
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        done("error");
        throw new TransientError(`Kubernetes API ${operation} answered HTTP ${res.status} with a body that is not an object`);
      }
      done("ok");
      return parsed as T;
    }
    if (res.status === 404 && o.absentOk === true) {
      done("absent");
      return undefined;
    }
    throw done.failed(apiFailure(operation, res));
  }

  /**
   * Observes one call of `operation` from now: called with its outcome once it is known, or
   * `.failed` with the error it ends with, which it returns (a ConflictError is a conflict).
   */
  private timed(operation: string): ((outcome: "ok" | "absent" | "conflict" | "error") => void) & { failed: (e: Error) => Error } {
    const start = performance.now();
    const done = (outcome: "ok" | "absent" | "conflict" | "error") => this.observe({ operation, seconds: (performance.now() - start) / 1000, outcome });
    return Object.assign(done, {
      failed: (e: Error) => {
        done(e instanceof ConflictError ? "conflict" : "error");
        return e;
      },
    });
  }

  /**
   * Whether the API server can be reached and accepts these credentials: GET /api, which
   * kube-apiserver serves to every authenticated identity (system:discovery) and refuses to an
   * anonymous one (403) or a wrong token (401). undefined when it can; otherwise why not, for
   * the readiness probe. Never throws. Called at start without waiting, it also opens the
   * connection (TCP, TLS) so that a cold start's first event finds it open.
   */
  async checkAccess(): Promise<string | undefined> {
    let res: Response;
    try {
      res = await this.send(HttpMethod.GET, "/api");
    } catch (e) {
      return `the Kubernetes API server ${this.server} cannot be reached: ${e instanceof Error ? e.message : String(e)}`.slice(0, 500);
    }
    if (res.status === 200) {
      try {
        await this.certificatesApis();
        return undefined;
      } catch (e) {
        return (e instanceof Error ? e.message : String(e)).slice(0, 500);
      }
    }
    if (res.status === 401) return `the Kubernetes API server ${this.server} refused the credentials (HTTP 401)`;
    if (res.status === 403) return `the Kubernetes API server ${this.server} does not authenticate this identity (HTTP 403: ${statusMessage(res.text)})`.slice(0, 500);
    return `the Kubernetes API server ${this.server} answered GET /api with HTTP ${res.status}`;
  }

  /**
   * The certificates.k8s.io versions this API server serves PCRs and ClusterTrustBundles in, from
   * its discovery documents, asked once per process (two GETs; readiness asks first, so a cold
   * start's first event finds them known). A failure is a TransientError and is asked again next time.
   */
  certificatesApis(): Promise<CertificatesApis> {
    this.apis ??= this.discoverCertificatesApis().catch((e: unknown) => {
      this.apis = undefined;
      throw e;
    });
    return this.apis;
  }

  private async discoverCertificatesApis(): Promise<CertificatesApis> {
    const served: ServedResources = {};
    await Promise.all((["v1", "v1beta1"] as const).map(async (v) => {
      const list = await this.call<{ resources?: { name?: unknown }[] }>(`discover ${CERTIFICATES_GROUP}/${v}`, HttpMethod.GET, certificatesPath(v), { absentOk: true });
      if (list !== undefined) served[v] = (Array.isArray(list.resources) ? list.resources : []).map((r) => r?.name).filter((n): n is string => typeof n === "string");
    }));
    const apis = chooseCertificatesApis(served);
    if (isCertificatesProblem(apis)) throw new TransientError(apis.problem);
    this.onCertificatesApis?.(apis);
    return apis;
  }

  private async pcrsPath(namespace?: string): Promise<string> {
    const ns = namespace === undefined ? undefined : seg(namespace);
    const { pcr } = await this.certificatesApis();
    return ns === undefined ? `${certificatesPath(pcr)}/podcertificaterequests` : `${certificatesPath(pcr)}/namespaces/${ns}/podcertificaterequests`;
  }

  private async ctbsPath(): Promise<{ path: string; apiVersion: string }> {
    const { ctb } = await this.certificatesApis();
    if (ctb === undefined) throw new TransientError(`the API server serves no clustertrustbundles in ${CERTIFICATES_GROUP} v1 or v1beta1: Kubernetes 1.35 and 1.36 need the ClusterTrustBundle feature gate and --runtime-config=${CERTIFICATES_GROUP}/v1beta1/clustertrustbundles=true`);
    return { path: `${certificatesPath(ctb)}/clustertrustbundles`, apiVersion: certificatesApiVersion(ctb) };
  }

  /**
   * The PCR in the preferred version; a request with a PKIX key (a kubelet older than 1.36) that
   * v1 shows without any key is read again through v1beta1, which still carries it (api-versions.ts).
   */
  async readPcr(namespace: string, name: string) {
    const n = seg(name);
    const path = `${await this.pcrsPath(namespace)}/${n}`;
    const pcr = await this.call<PodCertificateRequest>("get podcertificaterequest", HttpMethod.GET, path, { absentOk: true });
    const { pcrLegacy } = await this.certificatesApis();
    if (pcr === undefined || pcrLegacy === undefined || !needsLegacyRead(pcr)) return pcr;
    return this.call<PodCertificateRequest>(
      "get podcertificaterequest",
      HttpMethod.GET,
      `${certificatesPath(pcrLegacy)}/namespaces/${seg(namespace)}/podcertificaterequests/${seg(name)}`,
      { absentOk: true },
    );
  }

  /**
   * Through the version the PCR was read in (a request made with a PKIX key through v1beta1 is
   * written there: docs/kubernetes-versions.md). The body carries no spec: a status write keeps
   * the stored spec whatever the body says (kube-apiserver's status strategy, and the embedded
   * API server), and sign, which writes from validate's attestation, has no stored spec to send.
   */
  async replacePcrStatus(pcr: PcrStatusTarget, status: PcrStatus) {
    const { namespace, name, uid, resourceVersion } = pcr.metadata;
    const version = certificatesVersionOf(pcr.apiVersion) ?? (await this.certificatesApis()).pcr;
    const body = {
      apiVersion: pcr.apiVersion,
      kind: pcr.kind,
      metadata: { name, namespace, ...(uid === undefined ? {} : { uid }), ...(resourceVersion === undefined ? {} : { resourceVersion }) },
      status,
    };
    return this.call<PodCertificateRequest>(
      "update podcertificaterequests/status",
      HttpMethod.PUT,
      `${certificatesPath(version)}/namespaces/${seg(namespace)}/podcertificaterequests/${seg(name)}/status`,
      { body, absentOk: true },
    );
  }

  async listPcrs(o: { signerName?: string; namespace?: string } = {}) {
    const query = o.signerName === undefined ? "" : `?fieldSelector=${seg(`spec.signerName=${o.signerName}`)}`;
    const path = await this.pcrsPath(o.namespace);
    const list = await this.call<{ items?: PodCertificateRequest[]; apiVersion?: string }>("list podcertificaterequests", HttpMethod.GET, `${path}${query}`);
    return listItems(list, (await this.certificatesApis()).pcr, "PodCertificateRequest");
  }

  async listPcrPage(o: { signerName: string; limit: number; continue?: string }): Promise<PcrPage> {
    const query = new URLSearchParams({ fieldSelector: `spec.signerName=${o.signerName}`, limit: String(o.limit) });
    if (o.continue !== undefined) query.set("continue", o.continue);
    const list = await this.call<{ items?: PodCertificateRequest[]; metadata?: { continue?: string }; apiVersion?: string }>(
      "list podcertificaterequests",
      HttpMethod.GET,
      `${await this.pcrsPath()}?${query.toString()}`,
    );
    const next = list.metadata?.continue;
    return {
      items: listItems(list, (await this.certificatesApis()).pcr, "PodCertificateRequest"),
      ...(typeof next === "string" && next !== "" ? { continue: next } : {}),
    };
  }

  readPod(namespace: string, name: string) {
    return this.call<Pod>("get pod", HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/pods/${seg(name)}`, { absentOk: true });
  }

  readNamespace(name: string) {
    return this.call<Namespace>("get namespace", HttpMethod.GET, `/api/v1/namespaces/${seg(name)}`, { absentOk: true });
  }

  readNode(name: string) {
    return this.call<Node>("get node", HttpMethod.GET, `/api/v1/nodes/${seg(name)}`, { absentOk: true });
  }

  readServiceAccount(namespace: string, name: string) {
    return this.call<ServiceAccount>("get serviceaccount", HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/serviceaccounts/${seg(name)}`, { absentOk: true });
  }

  readService(namespace: string, name: string) {
    return this.call<Service>("get service", HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/services/${seg(name)}`, { absentOk: true });
  }

  async listServices(namespace: string) {
    return (await this.listServicesVersioned(namespace)).items;
  }

  async listServicesVersioned(namespace: string): Promise<ServiceList> {
    const list = await this.call<{ items?: Service[]; metadata?: { resourceVersion?: string } }>("list services", HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/services`);
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "" };
  }

  /**
   * A watch of a namespace's Services from `resourceVersion`, with BOOKMARKs, ended by the API
   * server after `timeoutSeconds`. A stream silent for longer than that plus a minute is broken
   * (kube-apiserver sends a BOOKMARK about every minute): TransientError. Only the opening is
   * observed as an API call (the stream's length would say nothing about the API server).
   */
  async watchServices(namespace: string, o: { resourceVersion: string; timeoutSeconds: number; signal: AbortSignal }, onEvent: (e: ServiceWatchEvent) => void): Promise<void> {
    const query = new URLSearchParams({ watch: "true", allowWatchBookmarks: "true", timeoutSeconds: String(o.timeoutSeconds) });
    if (o.resourceVersion !== "") query.set("resourceVersion", o.resourceVersion);
    const operation = "watch services";
    const done = this.timed(operation);
    let res: Dispatcher.ResponseData;
    try {
      res = await this.open(HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/services?${query.toString()}`, {
        bodyTimeoutMs: (o.timeoutSeconds + 60) * 1000,
        signal: o.signal,
      });
    } catch (e) {
      if (o.signal.aborted) return;
      throw done.failed(apiFailure(operation, { thrown: e }));
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => "");
      // 410: the resourceVersion is too old; the watcher lists again (ServicesWatchApi).
      if (res.statusCode === 410) throw done.failed(new ResourceExpiredError(`Kubernetes API ${operation}: ${statusMessage(text)}`));
      throw done.failed(apiFailure(operation, { status: res.statusCode, text }));
    }
    done("ok");
    let buffered = "";
    try {
      res.body.setEncoding("utf8");
      for await (const chunk of res.body as AsyncIterable<string>) {
        buffered += chunk;
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line !== "") onEvent(watchEvent(line, operation));
        }
      }
    } catch (e) {
      if (o.signal.aborted) return;
      if (e instanceof TransientError) throw e;
      throw new TransientError(`Kubernetes API ${operation}: the stream broke: ${(e as Error).message}`, { cause: e });
    } finally {
      res.body.destroy();
    }
  }

  async listTrustBundles(labelSelector: string) {
    const { path } = await this.ctbsPath();
    const list = await this.call<{ items?: ClusterTrustBundle[]; apiVersion?: string }>("list clustertrustbundles", HttpMethod.GET, `${path}?labelSelector=${seg(labelSelector)}`);
    return listItems(list, (await this.certificatesApis()).ctb ?? "v1beta1", "ClusterTrustBundle" as const);
  }

  /** Written in the served version, whatever apiVersion the bundle was built with (the spec is the same in both). */
  async createTrustBundle(bundle: ClusterTrustBundle) {
    const { path, apiVersion } = await this.ctbsPath();
    await this.call("create clustertrustbundles", HttpMethod.POST, path, { body: { ...bundle, apiVersion } });
  }

  async replaceTrustBundle(bundle: ClusterTrustBundle) {
    const { path, apiVersion } = await this.ctbsPath();
    await this.call("update clustertrustbundles", HttpMethod.PUT, `${path}/${seg(bundle.metadata.name)}`, { body: { ...bundle, apiVersion } });
  }

  async deleteTrustBundle(name: string) {
    const { path } = await this.ctbsPath();
    await this.call("delete clustertrustbundles", HttpMethod.DELETE, `${path}/${seg(name)}`, { absentOk: true });
  }

  readConfigMap(namespace: string, name: string) {
    return this.call<ConfigMap>("get configmap", HttpMethod.GET, `/api/v1/namespaces/${seg(namespace)}/configmaps/${seg(name)}`, { absentOk: true });
  }

  async writeConfigMap(cm: ConfigMap) {
    const base = `/api/v1/namespaces/${seg(cm.metadata.namespace)}/configmaps`;
    if (cm.metadata.resourceVersion === undefined) await this.call("create configmap", HttpMethod.POST, base, { body: cm });
    else await this.call("update configmap", HttpMethod.PUT, `${base}/${seg(cm.metadata.name)}`, { body: cm });
  }

  /** The core/v1 Events about objects of `kind`, in every namespace (for `podcert status`). */
  async listEvents(o: { involvedKind: string }) {
    const list = await this.call<{ items?: CoreV1Event[] }>("list events", HttpMethod.GET, `/api/v1/events?fieldSelector=${seg(`involvedObject.kind=${o.involvedKind}`)}`);
    return list.items ?? [];
  }

  async createEvent(event: KubernetesEvent) {
    const now = new Date().toISOString();
    const { namespace, name } = event.regarding;
    // A PCR is named in the version it is read in here (the caller knows only that it is a PCR).
    const involvedObject = event.regarding.kind === "PodCertificateRequest" && this.apis !== undefined
      ? { ...event.regarding, apiVersion: certificatesApiVersion((await this.certificatesApis()).pcr) }
      : event.regarding;
    await this.call("create event", HttpMethod.POST, `/api/v1/namespaces/${seg(namespace)}/events`, {
      body: {
        apiVersion: "v1",
        kind: "Event",
        metadata: { generateName: `${name}.`, namespace },
        involvedObject,
        type: event.type,
        reason: event.reason,
        message: event.message,
        source: { component: event.reportingComponent },
        reportingComponent: event.reportingComponent,
        reportingInstance: event.reportingComponent,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }
}

/**
 * A list's items with apiVersion and kind: kube-apiserver leaves them out of list items, and the
 * status write needs them (the list's own apiVersion, else the version asked for).
 */
function listItems<T extends { apiVersion?: string; kind?: string }, K extends string>(
  list: { items?: T[]; apiVersion?: string },
  version: CertificatesVersion,
  kind: K,
): (T & { apiVersion: string; kind: K })[] {
  const apiVersion = certificatesVersionOf(list.apiVersion) === undefined ? certificatesApiVersion(version) : list.apiVersion!;
  return (list.items ?? []).map((item) => ({ ...item, apiVersion: item.apiVersion ?? apiVersion, kind }));
}

/** One line of a watch stream; an ERROR event is thrown (410: ResourceExpiredError). */
function watchEvent(line: string, operation: string): ServiceWatchEvent {
  let parsed: { type?: unknown; object?: { code?: unknown; message?: unknown; metadata?: { resourceVersion?: unknown } } };
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    throw new TransientError(`Kubernetes API ${operation}: a line of the stream is not JSON`);
  }
  const { type, object } = parsed;
  if (object === null || typeof object !== "object") throw new TransientError(`Kubernetes API ${operation}: an event without an object`);
  if (type === "ERROR") {
    const message = typeof object.message === "string" ? object.message.slice(0, 500) : "no details";
    if (object.code === 410) throw new ResourceExpiredError(`Kubernetes API ${operation}: ${message}`);
    throw new TransientError(`Kubernetes API ${operation} failed: ${message}`);
  }
  if (type === "BOOKMARK") {
    const rv = object.metadata?.resourceVersion;
    if (typeof rv !== "string" || rv === "") throw new TransientError(`Kubernetes API ${operation}: a BOOKMARK without a resourceVersion`);
    return { type, resourceVersion: rv };
  }
  if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") return { type, object: object as unknown as Service };
  throw new TransientError(`Kubernetes API ${operation}: an event of unknown type ${JSON.stringify(type)?.slice(0, 40)}`);
}

/**
 * The error of a call that failed: with no answer (refused, reset, timed out) or with an HTTP
 * status other than what the caller takes. 409 is a ConflictError, anything else a TransientError,
 * overloaded on 429 (the function answers 429 and the broker backs off).
 */
function apiFailure(operation: string, failure: { thrown: unknown } | { status: number; text: string }): ConflictError | TransientError {
  if ("thrown" in failure) return new TransientError(`Kubernetes API ${operation} failed: ${(failure.thrown as Error).message}`, { cause: failure.thrown });
  const { status, text } = failure;
  if (status === 409) return new ConflictError(`${operation}: conflict (${statusMessage(text)})`);
  return new TransientError(`Kubernetes API ${operation} failed with HTTP ${status}: ${statusMessage(text)}`, { overloaded: status === 429 });
}

/** The message of a Kubernetes Status body, bounded; never the whole body. */
function statusMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message.slice(0, 500);
  } catch {
    return text.slice(0, 200) || "no details";
  }
  return "no details";
}
