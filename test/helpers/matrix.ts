/**
 * What the hostile-input matrices (test/integration/hostile-matrix-*.test.ts) check around every
 * case: every step of the registry served, the API server's state before and after, the bundle
 * still answering its health check, its memory from /proc, and a legitimate request still issued.
 */
import { readFileSync } from "node:fs";
import { expect } from "vitest";
import { parseAllDocuments } from "yaml";
import { terminalCondition, type PodCertificateRequest } from "../../shared/pcr/model.js";
import { EVENT_TYPES, serviceName, STEP_REGISTRY, STEPS, type StepName } from "../../shared/steps.js";
import { createPcr, postEvent, type BundleEnv, type ServedBundle } from "./bundles.js";

/** Every step of the registry, served; returns once the trust publisher's start-up publication is done. */
export async function serveEveryStep(env: BundleEnv): Promise<Record<StepName, ServedBundle>> {
  const served = await Promise.all(STEPS.map((fn) => env.serve(fn)));
  const bundles = Object.fromEntries(served.map((b) => [b.fn, b])) as Record<StepName, ServedBundle>;
  // Its writes at start are not the matrix's doing: wait for them before any snapshot.
  for (const s of STEP_REGISTRY.filter((s) => s.publishesTrust)) {
    const b = bundles[s.name];
    const published = () => b.stderr().includes('"msg":"trust bundles published"');
    // Its log is the signal; the suite's hook timeout bounds the wait.
    while (!published()) await new Promise<void>((resolve) => b.child.stderr!.once("data", () => resolve()));
  }
  return bundles;
}

/** The embedded API server keeps its last 10,000 requests; a snapshot must not see that window slide. */
const SERVED_KEPT = 10_000;

export interface ApiSnapshot {
  /** The store's global resourceVersion: any write anywhere (Events included) moves it. */
  resourceVersion: string;
  /** Each PCR's resourceVersion and status. */
  pcrs: Record<string, { resourceVersion: string | undefined; status: unknown }>;
  /** How many requests the API server had answered. */
  served: number;
}

export function snapshotApi(env: BundleEnv): ApiSnapshot {
  const pcrs: ApiSnapshot["pcrs"] = {};
  for (const item of env.api.store.list("podcertificaterequests").items as unknown as PodCertificateRequest[]) {
    pcrs[`${item.metadata.namespace}/${item.metadata.name}`] = { resourceVersion: item.metadata.resourceVersion, status: item.status ?? null };
  }
  const served = env.api.servedRequests().length;
  expect(served, "the API server's request log is full; a write could go unseen").toBeLessThan(SERVED_KEPT);
  return { resourceVersion: env.api.store.resourceVersion, pcrs, served };
}

/** Nothing was written since `before`: no PCR changed, the store did not move, no write request was served. */
export function expectApiUnchanged(env: BundleEnv, before: ApiSnapshot): void {
  const after = snapshotApi(env);
  expect(after.pcrs).toEqual(before.pcrs);
  expect(after.resourceVersion).toBe(before.resourceVersion);
  const writes = env.api.servedRequests().slice(before.served).filter((r) => r.method !== "GET");
  expect(writes).toEqual([]);
}

export async function expectAlive(b: ServedBundle): Promise<void> {
  expect(b.child.exitCode, b.stderr()).toBeNull();
  const res = await fetch(`${b.url}/healthz`);
  expect(res.status, `${b.fn} health check`).toBe(200);
  await res.arrayBuffer();
}

/** A /proc/<pid>/status field in MiB (VmRSS: resident now; VmHWM: the peak), undefined without /proc. */
export function procMemoryMiB(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A Service's container memory limit in knative/services.yaml (the dead-letter sink's: dead-letter.yaml), in MiB. */
export function memoryLimitMiB(service: string): number {
  const docs = ["knative/services.yaml", "knative/dead-letter.yaml"].flatMap((f) => parseAllDocuments(readFileSync(f, "utf8")));
  for (const doc of docs) {
    const s = doc.toJSON() as { kind?: string; metadata?: { name?: string }; spec?: { template?: { spec?: { containers?: { resources?: { limits?: { memory?: string } } }[] } } } } | null;
    if (s?.kind !== "Service" || s.metadata?.name !== service) continue;
    const m = /^(\d+)(Mi|Gi)$/.exec(s.spec?.template?.spec?.containers?.[0]?.resources?.limits?.memory ?? "");
    if (m) return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
  }
  throw new Error(`no memory limit for ${service} in knative/services.yaml or dead-letter.yaml`);
}

/**
 * Each bundle's resident memory, now and at its peak, stays below its container's memory limit in
 * knative/services.yaml (256 Mi: past it the kubelet OOM-kills the pod) with the headroom
 * hostile-http.test.ts allows a full containerConcurrency of maximum-size events, which costs
 * far more than the matrix's one request at a time.
 */
export function expectMemoryBounded(bundles: Record<StepName, ServedBundle>): void {
  const MAX_SHARE = 0.8;
  for (const b of Object.values(bundles)) {
    const pid = b.child.pid!;
    const rss = procMemoryMiB(pid, "VmRSS");
    const peak = procMemoryMiB(pid, "VmHWM");
    if (rss === undefined || peak === undefined) return; // no /proc on this system
    const bound = memoryLimitMiB(serviceName(b.fn)) * MAX_SHARE;
    expect(rss, `${b.fn}: VmRSS ${rss.toFixed(1)} MiB`).toBeLessThan(bound);
    expect(peak, `${b.fn}: VmHWM ${peak.toFixed(1)} MiB`).toBeLessThan(bound);
  }
}

/** A fresh PCR handed from validate to derive-sans to sign over HTTP, as the broker would: it ends Issued. */
export async function expectIssuedEndToEnd(env: BundleEnv, bundles: Record<StepName, ServedBundle>, name: string): Promise<void> {
  const { pcr, event } = createPcr(env.api, { namespace: "workers", pod: "worker-ecdsap256", signerName: "workerpool.podcert.ate.dev/identity", name });
  const v = await postEvent(bundles.validate.url, event);
  expect(v.reply?.type, v.text).toBe(EVENT_TYPES.validated);
  const d = await postEvent(bundles["derive-sans"].url, v.reply!);
  expect(d.reply?.type, d.text).toBe(EVENT_TYPES.sansDerived);
  const s = await postEvent(bundles.sign.url, d.reply!);
  expect(s.reply?.type, s.text).toBe(EVENT_TYPES.issued);
  const stored = env.api.store.get("podcertificaterequests", pcr.metadata.namespace, pcr.metadata.name) as unknown as PodCertificateRequest;
  expect(terminalCondition(stored)?.type).toBe("Issued");
  expect(stored.status?.certificateChain).toMatch(/^-----BEGIN CERTIFICATE-----/);
}
