/**
 * publish-trust: keeps what pods trust equal to the CA pool's published CAs (every CA that is not
 * retired), for each configured signer: its signer-linked ClusterTrustBundle and its SPIFFE trust
 * bundle (a ConfigMap, and GET /bundles/<signer>). A PingSource ticks it every few minutes and it
 * runs once at start, so drift (an edited or deleted bundle) is repaired within one tick. It reads
 * only the CA certificates (the CATrust document), never a private key. What to write is decided
 * in shared/ca/publication.ts; this is the I/O around it.
 */
import { ConfigError, ConflictError, TransientError } from "../../shared/errors.js";
import {
  desiredTrustBundle,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  nextSpiffeBundle,
  planTrustBundles,
  readSpiffeBundle,
  spiffeBundleKeys,
  spiffeKeys,
  type SpiffeBundle,
} from "../../shared/ca/publication.js";
import type { CaTrust } from "../../shared/ca/pool.js";
import type { FunctionContext, FunctionDefinition, GetAnswer, TrustContext } from "../../shared/runtime/function.js";
import { registered } from "../../shared/steps.js";

/** What this process last published, for GET /bundles/<signer>. */
interface Published {
  at: Date;
  spiffe: Map<string, SpiffeBundle>;
}
const published = new WeakMap<FunctionContext, Published>();

export interface PublishReport {
  created: string[];
  updated: string[];
  deleted: string[];
  spiffeChanged: string[];
  /** Configured signers the CA trust document has no CA for (their bundles are left as they are). */
  missing: string[];
}

const BUNDLES_PREFIX = "/bundles/";

export const publishTrust: FunctionDefinition = {
  ...registered("publish-trust"),

  async handle(_event, ctx) {
    await publish(ctx);
    return undefined;
  },

  async onStart(ctx) {
    await publish(ctx);
  },

  getPrefix: BUNDLES_PREFIX,
  async get(path, ctx): Promise<GetAnswer | undefined> {
    let signer: string;
    try {
      signer = decodeURIComponent(path.slice(BUNDLES_PREFIX.length));
    } catch {
      return undefined; // malformed percent-encoding: no such signer
    }
    if (!ctx.config.signers.has(signer)) return undefined;
    // Scaled from zero, this process has not published yet: what the last run wrote is in the ConfigMap.
    let bundle = published.get(ctx)?.spiffe.get(signer);
    try {
      bundle ??= await storedBundle(ctx, signer);
    } catch (e) {
      return { status: 503, contentType: "text/plain; charset=utf-8", body: `not available: ${e instanceof Error ? e.message : String(e)}\n` };
    }
    if (bundle === undefined) return { status: 503, contentType: "text/plain; charset=utf-8", body: "not published yet\n" };
    return { status: 200, contentType: "application/json", body: `${JSON.stringify(bundle, null, 2)}\n` };
  },
};

/** The signer's SPIFFE bundle as the ConfigMap holds it, if any (a read; never a write). */
async function storedBundle(ctx: FunctionContext, signer: string): Promise<SpiffeBundle | undefined> {
  const t = ctx.trust;
  if (t === undefined) return undefined;
  const cm = await t.api.readConfigMap(t.namespace, t.configMapName);
  return readSpiffeBundle(cm?.data?.[spiffeBundleKeys([...ctx.config.signers.keys()]).get(signer)!]);
}

/** One run: bundles and SPIFFE bundles made equal to the CA trust document. */
export async function publish(ctx: FunctionContext): Promise<PublishReport> {
  const trustCtx = ctx.trust;
  if (trustCtx === undefined) throw new TransientError("publish-trust was started without its CA trust document");
  let trust: CaTrust;
  try {
    trust = trustCtx.read();
  } catch (e) {
    // A file caught mid-update, or broken: change nothing, try again at the next tick.
    const message = e instanceof ConfigError ? e.message : String(e);
    throw new TransientError(`the CA trust document cannot be read (${message}); bundles left as they are`, { cause: e });
  }
  const configured = [...ctx.config.signers.keys()];
  const missing = configured.filter((s) => !trust.signers.has(s));
  const present = configured.filter((s) => trust.signers.has(s));
  if (missing.length > 0) ctx.log.warn("no CA in the CA trust document for configured signers; their bundles are left as they are", { signers: missing });

  const report: PublishReport = { created: [], updated: [], deleted: [], spiffeChanged: [], missing };
  await publishClusterTrustBundles(ctx, trustCtx, trust, present, configured, report);
  const spiffe = await publishSpiffeBundles(ctx, trustCtx, trust, present, report);

  const at = ctx.now();
  published.set(ctx, { at, spiffe });
  for (const signer of present) ctx.metrics?.trustPublished({ signer, at });
  ctx.log.info("trust bundles published", { ...report, signers: present });
  return report;
}

async function publishClusterTrustBundles(ctx: FunctionContext, t: TrustContext, trust: CaTrust, present: readonly string[], configured: readonly string[], report: PublishReport): Promise<void> {
  const existing = await t.api.listTrustBundles(`${MANAGED_BY_LABEL}=${MANAGED_BY}`);
  const actions = planTrustBundles(present.map((s) => desiredTrustBundle(trust, s)), existing)
    // A configured signer missing from the trust document keeps its bundle: deleting it would
    // break every handshake with its certificates over what is likely an editing mistake.
    .filter((a) => a.kind !== "delete" || a.signerName === undefined || !configured.includes(a.signerName));
  for (const a of actions) {
    try {
      if (a.kind === "create") {
        await t.api.createTrustBundle(a.bundle);
        report.created.push(a.bundle.metadata.name);
      } else if (a.kind === "update") {
        await t.api.replaceTrustBundle(a.bundle);
        report.updated.push(a.bundle.metadata.name);
        ctx.log.info("trust bundle updated", { name: a.bundle.metadata.name, why: a.why });
      } else {
        await t.api.deleteTrustBundle(a.name);
        report.deleted.push(a.name);
      }
    } catch (e) {
      // Another writer got there first; the next tick sees its result and decides again.
      if (e instanceof ConflictError) throw new TransientError(`ClusterTrustBundle ${a.kind === "delete" ? a.name : a.bundle.metadata.name} changed while being written; retrying`, { cause: e });
      throw e;
    }
  }
}

async function publishSpiffeBundles(ctx: FunctionContext, t: TrustContext, trust: CaTrust, present: readonly string[], report: PublishReport): Promise<Map<string, SpiffeBundle>> {
  const keys = spiffeBundleKeys([...ctx.config.signers.keys()]);
  const current = await t.api.readConfigMap(t.namespace, t.configMapName);
  const data: Record<string, string> = {};
  const bundles = new Map<string, SpiffeBundle>();
  for (const signer of present) {
    const key = keys.get(signer)!;
    const previousText = current?.data?.[key];
    const next = nextSpiffeBundle(readSpiffeBundle(previousText), await spiffeKeys(trust, signer), t.refreshHintSeconds);
    bundles.set(signer, next.bundle);
    data[key] = next.changed ? `${JSON.stringify(next.bundle)}\n` : previousText!;
    if (next.changed) report.spiffeChanged.push(signer);
  }
  // Bundles of configured signers missing from the trust document stay as they were.
  for (const [signer, key] of keys) {
    const kept = current?.data?.[key];
    if (!present.includes(signer) && kept !== undefined) data[key] = kept;
  }
  const same = current !== undefined && JSON.stringify(sorted(current.data ?? {})) === JSON.stringify(sorted(data));
  if (!same) {
    try {
      await t.api.writeConfigMap({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: {
          name: t.configMapName,
          namespace: t.namespace,
          labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
          ...(current?.metadata.resourceVersion === undefined ? {} : { resourceVersion: current.metadata.resourceVersion }),
        },
        data,
      });
    } catch (e) {
      if (e instanceof ConflictError) throw new TransientError(`ConfigMap ${t.namespace}/${t.configMapName} changed while being written; retrying`, { cause: e });
      throw e;
    }
  }
  return bundles;
}

const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
