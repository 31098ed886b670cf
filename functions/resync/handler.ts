/**
 * resync: re-announces the PCRs whose live events were lost. The ApiServerSource emits nothing for
 * objects that exist when it starts or re-lists, drops an event after a few failed sends, and the
 * default Broker is not durable; such a PCR would wait for its next update or its deletion by the
 * 15-minute cleaner. Its own PingSource ticks it; each run lists the configured signers' PCRs
 * (paged), and POSTs a dev.ate.podcert.request.resync event for each one still pending past the
 * grace period, oldest first and at most PODCERT_RESYNC_MAX_EVENTS (shared/policy/resync.ts),
 * to the Broker (K_SINK). validate then handles it as it would the lost event.
 *
 * An event carries only a reference (namespace, name, uid, signer name), in the shape validate
 * reads (shared/events/pcr-event.ts): validate reads the PCR back anyway, and a reference fits the
 * event size limit whatever the PCR's size. It needs nothing but `list` on PCRs: no attestation,
 * no CA, no status write.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { requestUrl } from "../../shared/http-request.js";
import { TransientError } from "../../shared/errors.js";
import { eventToBinaryHttp } from "../../shared/events/codec.js";
import type { PodcertEvent } from "../../shared/events/types.js";
import { describePcr, PCR_KIND } from "../../shared/pcr/model.js";
import { pendingByAge, resyncCandidate, selectForResync, type ResyncCandidate } from "../../shared/policy/resync.js";
import type { FunctionContext, FunctionDefinition, ResyncContext } from "../../shared/runtime/function.js";
import { EVENT_TYPES, registered } from "../../shared/steps.js";

/** A bound on pages per signer and run, so a LIST that never ends (a broken server) cannot hold a run forever. */
const MAX_PAGES = 1000;

export interface ResyncReport {
  /** PCRs of the configured signers listed (every state). */
  listed: number;
  pages: number;
  /** Pending past the grace period. */
  pending: number;
  posted: number;
  failed: number;
  /** Pending past the grace period but over the per-run bound: the next tick's. */
  deferred: number;
}

const inFlight = new WeakMap<FunctionContext, Promise<ResyncReport>>();

export const resync: FunctionDefinition = {
  ...registered("resync"),

  async handle(_event, ctx) {
    // A tick redelivered (the Broker's 10 s attempt timeout) while a run is in progress joins it
    // rather than listing and posting everything a second time.
    let run = inFlight.get(ctx);
    if (run === undefined) {
      run = runResync(ctx).finally(() => inFlight.delete(ctx));
      inFlight.set(ctx, run);
    }
    const report = await run;
    // The next tick retries: selection starts over from the cluster's state, so nothing is kept here.
    if (report.failed > 0) throw new TransientError(`resync: ${report.failed} of ${report.failed + report.posted} events could not be posted to the Broker`);
    return undefined;
  },
};

/** One run: list, select, post. Throws (transient) only when the listing fails; failed posts are counted. */
export async function runResync(ctx: FunctionContext): Promise<ResyncReport> {
  const r = ctx.resync;
  if (r === undefined) throw new TransientError("resync was started without its sink (K_SINK) and list access");
  const candidates: ResyncCandidate[] = [];
  let listed = 0;
  let pages = 0;
  for (const signerName of ctx.config.signers.keys()) {
    let token: string | undefined;
    let n = 0;
    do {
      const page = await r.api.listPcrPage({ signerName, limit: r.pageSize, ...(token === undefined ? {} : { continue: token }) });
      pages++;
      listed += page.items.length;
      for (const pcr of page.items) {
        // Only what an event needs is kept: a page's PCRs are dropped before the next is read.
        const c = resyncCandidate(pcr);
        if (c !== undefined && c.signerName === signerName) candidates.push(c);
      }
      token = page.continue;
    } while (token !== undefined && ++n < MAX_PAGES);
    if (token !== undefined) ctx.log.warn("resync: stopped listing after the page limit", { signerName, pages: MAX_PAGES });
  }
  const now = ctx.now();
  ctx.metrics?.pendingListed({ at: now, counts: pendingByAge(candidates, ctx.config.signers.keys(), now) });
  const selection = selectForResync(candidates, { now, graceSeconds: r.graceSeconds, maxEvents: r.maxEvents });
  const results = await mapBounded(selection.selected, r.concurrency, async (c) => {
    try {
      await post(r, resyncEvent(c, now));
      return true;
    } catch (e) {
      ctx.log.warn("resync: event not posted", { pcrNamespace: c.namespace, pcrName: c.name, pcrUid: c.uid, error: e instanceof Error ? e.message : String(e) });
      return false;
    }
  });
  const posted = results.filter((ok) => ok).length;
  const report: ResyncReport = { listed, pages, pending: selection.pending, posted, failed: results.length - posted, deferred: selection.deferred };
  ctx.log.info("resync run", { ...report });
  return report;
}

/** The event for one pending PCR: a reference in the shape validate reads (readPcrTrigger). */
export function resyncEvent(c: ResyncCandidate, now: Date): PodcertEvent {
  const ref = { namespace: c.namespace, name: c.name, uid: c.uid };
  return {
    specversion: "1.0",
    id: randomUUID(),
    type: EVENT_TYPES.resync,
    source: "/podcert/resync",
    subject: describePcr(ref),
    time: now.toISOString(),
    datacontenttype: "application/json",
    // A reference only (no apiVersion): validate reads the PCR in the version the API server serves.
    data: { kind: PCR_KIND, metadata: ref, spec: { signerName: c.signerName } },
    extensions: {},
  };
}

/** One event to the sink in binary mode; anything but a 2xx is a failure. */
async function post(r: ResyncContext, event: PodcertEvent): Promise<void> {
  const { headers, body } = eventToBinaryHttp(event);
  if (r.sinkTokenFile !== undefined) headers.authorization = `Bearer ${sinkToken(r.sinkTokenFile)}`;
  const res = await requestUrl(r.sink, { method: "POST", headers, body, headersTimeout: r.postTimeoutMs, bodyTimeout: r.postTimeoutMs });
  await res.body.text();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new TransientError(`the Broker answered HTTP ${res.statusCode}`);
}

/** The sink's token; a missing file (not yet mounted or refreshed) fails this run, which is retried. */
function sinkToken(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw new TransientError(`the Broker's token (${path}) cannot be read`, { cause: e });
  }
}

/** f over items with at most `limit` calls in flight, results in the items' order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
