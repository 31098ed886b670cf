/**
 * Server-side printing, as kube-apiserver answers `kubectl get`: a request whose Accept asks for
 * `application/json;as=Table;v=v1;g=meta.k8s.io` gets a meta.k8s.io/v1 Table with the columns of
 * kube-apiserver's table printers (kubernetes/kubernetes pkg/printers/internalversion/printers.go);
 * kinds without a printer there get the default NAME/AGE table, as CRDs without
 * additionalPrinterColumns do. Rows carry the object's metadata (PartialObjectMetadata, the
 * default `includeObject=Metadata`), which kubectl reads for its NAMESPACE column.
 */
import type { KubeObject, ResourceType } from "./resources.js";

export interface TableColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  format: string;
  description: string;
  /** 0: always shown; 1: only with `-o wide`. */
  priority: number;
}

export interface Table {
  kind: "Table";
  apiVersion: "meta.k8s.io/v1";
  metadata: { resourceVersion?: string; continue?: string; remainingItemCount?: number };
  columnDefinitions: TableColumn[];
  rows: { cells: (string | number | boolean)[]; object: { kind: "PartialObjectMetadata"; apiVersion: "meta.k8s.io/v1"; metadata: KubeObject["metadata"] } }[];
}

type Cell = string | number | boolean;
interface Printer {
  columns: TableColumn[];
  row(obj: KubeObject, now: Date): Cell[];
}

const col = (name: string, o: { type?: TableColumn["type"]; format?: string; priority?: number; description?: string } = {}): TableColumn => ({
  name,
  type: o.type ?? "string",
  format: o.format ?? "",
  description: o.description ?? "",
  priority: o.priority ?? 0,
});
const NAME = col("Name", { format: "name", description: "Name must be unique within a namespace." });
const AGE = col("Age", { description: "CreationTimestamp is a timestamp representing the server time when this object was created." });

/** The shortest form kubectl sees for a missing value. */
const NONE = "<none>";

/**
 * apimachinery's duration.HumanDuration, which printers.go's translateTimestamp uses: precise
 * while short ("90s", "5m3s"), coarser as it grows ("3h", "12d", "2y45d").
 */
export function humanDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const totalSeconds = Math.floor(ms / 1000);
  const minutes = Math.floor(totalSeconds / 60);
  if (minutes < 10) {
    const s = totalSeconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const d = Math.floor(hours / 24) % 365;
    return d === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${d}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

function since(time: unknown, now: Date): string {
  if (typeof time !== "string" || !Number.isFinite(Date.parse(time))) return "<unknown>";
  return humanDuration(now.getTime() - Date.parse(time));
}

const rec = (x: unknown): Record<string, unknown> => (x !== null && typeof x === "object" && !Array.isArray(x) ? (x as Record<string, unknown>) : {});
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const str = (x: unknown): string => (typeof x === "string" ? x : "");
const age = (obj: KubeObject, now: Date) => since(obj.metadata.creationTimestamp, now);
const labelsText = (m: unknown) => {
  const entries = Object.entries(rec(m)).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? NONE : entries.map(([k, v]) => `${k}=${String(v)}`).join(",");
};

/** PodCertificateRequest: the state is its terminal condition, else Pending. */
function pcrState(obj: KubeObject): string {
  for (const c of arr(rec(obj.status).conditions)) {
    const t = str(rec(c).type);
    if ((t === "Issued" || t === "Denied" || t === "Failed") && str(rec(c).status) === "True") return t;
  }
  return "Pending";
}

function podRow(obj: KubeObject, now: Date): Cell[] {
  const spec = rec(obj.spec);
  const status = rec(obj.status);
  const statuses = arr(status.containerStatuses).map(rec);
  let reason = str(status.reason) || str(status.phase);
  let ready = 0;
  let restarts = 0;
  for (const c of statuses) {
    restarts += typeof c.restartCount === "number" ? c.restartCount : 0;
    const state = rec(c.state);
    if (str(rec(state.waiting).reason) !== "") reason = str(rec(state.waiting).reason);
    else if (str(rec(state.terminated).reason) !== "") reason = str(rec(state.terminated).reason);
    else if (c.ready === true && state.running !== undefined) ready++;
  }
  if (obj.metadata.deletionTimestamp !== undefined) reason = "Terminating";
  return [obj.metadata.name, `${ready}/${arr(spec.containers).length}`, reason, restarts, age(obj, now),
    str(status.podIP) || NONE, str(spec.nodeName) || NONE, str(status.nominatedNodeName) || NONE, NONE];
}

function servicePorts(spec: Record<string, unknown>): string {
  const ports = arr(spec.ports).map(rec).map((p) => {
    const proto = str(p.protocol) || "TCP";
    return typeof p.nodePort === "number" && p.nodePort > 0 ? `${String(p.port)}:${p.nodePort}/${proto}` : `${String(p.port)}/${proto}`;
  });
  return ports.length === 0 ? NONE : ports.join(",");
}

function serviceExternalIp(spec: Record<string, unknown>, status: Record<string, unknown>): string {
  const external = arr(spec.externalIPs).map(str).filter((s) => s !== "");
  switch (str(spec.type) || "ClusterIP") {
    case "ExternalName":
      return str(spec.externalName);
    case "LoadBalancer": {
      const lb = arr(rec(status.loadBalancer).ingress).map(rec).map((i) => str(i.ip) || str(i.hostname)).filter((s) => s !== "");
      const all = [...lb, ...external];
      return all.length > 0 ? all.join(",") : "<pending>";
    }
    default:
      return external.length > 0 ? external.join(",") : NONE;
  }
}

function eventRow(obj: KubeObject, now: Date): Cell[] {
  // core/v1 names the object involvedObject, events.k8s.io/v1 names it regarding.
  const about = rec(obj.involvedObject ?? obj.regarding);
  const source = rec(obj.source);
  const sourceText = str(source.component) !== "" ? [str(source.component), str(source.host)].filter((s) => s !== "").join(", ") : str(obj.reportingController ?? obj.reportingComponent);
  const last = obj.lastTimestamp ?? rec(obj.series).lastObservedTime ?? obj.eventTime ?? obj.deprecatedLastTimestamp;
  const first = obj.firstTimestamp ?? obj.eventTime ?? obj.deprecatedFirstTimestamp;
  const count = typeof obj.count === "number" ? obj.count : typeof rec(obj.series).count === "number" ? (rec(obj.series).count as number) : 1;
  return [since(last, now), str(obj.type), str(obj.reason), `${str(about.kind).toLowerCase()}/${str(about.name)}`, str(about.fieldPath),
    sourceText, str(obj.message ?? obj.note), since(first, now), String(count), obj.metadata.name];
}

const PRINTERS: Readonly<Record<string, Printer>> = {
  // Pods, Services, Namespaces, Nodes, ServiceAccounts, ConfigMaps and Events: printers.go's
  // AddHandlers; kubectl hides priority-1 columns unless `-o wide`.
  Pod: {
    columns: [NAME, col("Ready"), col("Status"), col("Restarts", { type: "integer" }), AGE,
      col("IP", { priority: 1 }), col("Node", { priority: 1 }), col("Nominated Node", { priority: 1 }), col("Readiness Gates", { priority: 1 })],
    row: podRow,
  },
  Service: {
    columns: [NAME, col("Type"), col("Cluster-IP"), col("External-IP"), col("Port(s)"), AGE, col("Selector", { priority: 1 })],
    row: (obj, now) => {
      const spec = rec(obj.spec);
      return [obj.metadata.name, str(spec.type) || "ClusterIP", str(spec.clusterIP) || NONE, serviceExternalIp(spec, rec(obj.status)), servicePorts(spec), age(obj, now), labelsText(spec.selector)];
    },
  },
  Namespace: {
    columns: [NAME, col("Status"), AGE],
    row: (obj, now) => [obj.metadata.name, str(rec(obj.status).phase), age(obj, now)],
  },
  Node: {
    columns: [NAME, col("Status"), col("Roles"), AGE, col("Version"), col("Internal-IP", { priority: 1 }), col("External-IP", { priority: 1 }),
      col("OS-Image", { priority: 1 }), col("Kernel-Version", { priority: 1 }), col("Container-Runtime", { priority: 1 })],
    row: (obj, now) => {
      const status = rec(obj.status);
      const readyCond = arr(status.conditions).map(rec).find((c) => c.type === "Ready");
      const ready = readyCond === undefined ? "Unknown" : readyCond.status === "True" ? "Ready" : "NotReady";
      const roles = Object.keys(obj.metadata.labels ?? {}).filter((k) => k.startsWith("node-role.kubernetes.io/")).map((k) => k.slice("node-role.kubernetes.io/".length)).filter((r) => r !== "");
      const address = (type: string) => arr(status.addresses).map(rec).find((a) => a.type === type)?.address;
      const info = rec(status.nodeInfo);
      return [obj.metadata.name, rec(obj.spec).unschedulable === true ? `${ready},SchedulingDisabled` : ready, roles.length > 0 ? roles.sort().join(",") : NONE, age(obj, now),
        str(info.kubeletVersion), str(address("InternalIP")) || NONE, str(address("ExternalIP")) || NONE,
        str(info.osImage) || "<unknown>", str(info.kernelVersion) || "<unknown>", str(info.containerRuntimeVersion) || "<unknown>"];
    },
  },
  ServiceAccount: {
    columns: [NAME, col("Secrets", { type: "integer" }), AGE],
    row: (obj, now) => [obj.metadata.name, arr(obj.secrets).length, age(obj, now)],
  },
  ConfigMap: {
    columns: [NAME, col("Data", { type: "integer" }), AGE],
    row: (obj, now) => [obj.metadata.name, Object.keys(rec(obj.data)).length + Object.keys(rec(obj.binaryData)).length, age(obj, now)],
  },
  Event: {
    columns: [col("Last Seen"), col("Type"), col("Reason"), col("Object"), col("Subobject", { priority: 1 }), col("Source", { priority: 1 }),
      col("Message"), col("First Seen", { priority: 1 }), col("Count", { priority: 1 }), col("Name", { priority: 1 })],
    row: eventRow,
  },
  // Name, SignerName: printers.go's clusterTrustBundleColumnDefinitions (no Age column).
  ClusterTrustBundle: {
    columns: [NAME, col("SignerName")],
    row: (obj) => [obj.metadata.name, str(rec(obj.spec).signerName) || NONE],
  },
  // Not verified against kube-apiserver: no stored version of printers.go has a PCR handler (the
  // indexed ones predate PCRs, 1.34), and without one kube-apiserver prints NAME and AGE. These
  // columns say what an operator looks for (docs/kubernetes-versions.md, "Unclear").
  PodCertificateRequest: {
    columns: [NAME, col("PodName"), col("ServiceAccountName"), col("NodeName"), col("SignerName"), col("State"), AGE],
    row: (obj, now) => {
      const spec = rec(obj.spec);
      return [obj.metadata.name, str(spec.podName), str(spec.serviceAccountName), str(spec.nodeName), str(spec.signerName), pcrState(obj), age(obj, now)];
    },
  },
};

const DEFAULT_PRINTER: Printer = { columns: [NAME, AGE], row: (obj, now) => [obj.metadata.name, age(obj, now)] };

/**
 * Whether the Accept header asks for a meta.k8s.io/v1 Table. kubectl lists v1, then v1beta1, then
 * plain JSON; only v1 is served (a client asking for v1beta1 alone gets plain JSON).
 */
export function wantsTable(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return accept.split(",").some((part) => {
    const [type, ...params] = part.split(";").map((s) => s.trim());
    if (type !== "application/json") return false;
    const p = new Map(params.map((kv) => kv.split("=").map((s) => s.trim()) as [string, string]));
    return p.get("as") === "Table" && p.get("v") === "v1" && p.get("g") === "meta.k8s.io";
  });
}

/** A Table of `items` for type `t` (one item for a GET of one object). */
export function toTable(t: ResourceType, items: readonly KubeObject[], o: { now: Date; metadata?: Table["metadata"] }): Table {
  const printer = PRINTERS[t.kind] ?? DEFAULT_PRINTER;
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: o.metadata ?? {},
    columnDefinitions: printer.columns,
    rows: items.map((obj) => ({
      cells: printer.row(obj, o.now),
      object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: obj.metadata },
    })),
  };
}

/** kube-apiserver's short names (discovery `shortNames`); PodCertificateRequests and ClusterTrustBundles have none. */
export const SHORT_NAMES: Readonly<Record<string, readonly string[]>> = {
  namespaces: ["ns"],
  nodes: ["no"],
  pods: ["po"],
  services: ["svc"],
  serviceaccounts: ["sa"],
  configmaps: ["cm"],
  events: ["ev"],
};
