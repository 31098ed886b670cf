/**
 * A per-process index of the Services of the namespaces whose pods ask for the names of every
 * Service selecting them (`expects-service: "true"`), so that derive-sans does not list every
 * Service of the namespace for each request (213 ms per request with 10,000 Services).
 *
 * The index only finds candidates; it never decides. Each candidate (a Service whose selector, as
 * the index last saw it, is a subset of the pod's labels) is read again (GET) and only the
 * Services the API server has now are handed to the decision (policy/sans.ts), which checks
 * eligibility and the selector itself. So a Service deleted or changed since the index saw it
 * gives no name; the index being behind can only leave a name out (a Service created or made to
 * select the pod a moment ago): no name at all is "waiting" and retried, as with a list made a
 * moment too early. API calls per request: one GET per selecting Service, whatever the namespace
 * holds.
 *
 * Per namespace, started by the first request that asks (nothing at start, nothing for pods that
 * name their Services): that request lists the Services, as without the index, and its list seeds
 * the index (requests arriving while it lists wait for it, then read from the index); a watch from
 * the list's resourceVersion keeps it current (resumed where it ended when the API server ends
 * it). A watch that fails (410 Gone, a broken stream, an error) drops the namespace's index: the
 * next request lists again and seeds it anew. Bounded: at most `maxNamespaces` namespaces and
 * `maxServices` Services held; beyond that, or with more than `maxCandidates` candidates, a
 * request lists as without the index. A namespace no request asked about for `idleMs` is dropped
 * (its watch closed), and one listed more than `relistMs` ago when its watch next ends (a bound on
 * what a missed event can cost). Watch failures are logged, never thrown; one that fails as it
 * opens (a ClusterRole without `watch`) is not tried again for `retryMs`.
 */
import type { Service } from "../pcr/model.js";
import { ResourceExpiredError, type ServicesWatchApi, type ServiceWatchEvent } from "./cluster.js";

/**
 * The methods of shared/runtime's Logger the index uses, declared here because shared/kube sits
 * below the runtime (as event-recorder.ts's WarningLog).
 */
export interface IndexLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ServicesIndexOptions {
  /** Namespaces indexed at once; default 32. */
  maxNamespaces?: number;
  /** Services held across them; default 50,000. */
  maxServices?: number;
  /** Candidates confirmed one GET each; with more, a list is cheaper. Default 64. */
  maxCandidates?: number;
  /** A namespace no request asked about for this long is dropped; default 15 minutes. */
  idleMs?: number;
  /** Each watch's timeoutSeconds (the API server ends it; it is resumed); default 300, jittered up to +20 %. */
  watchSeconds?: number;
  /**
   * A namespace listed longer ago than this is dropped when its watch next ends (then the next
   * request lists and seeds it again): a bound on how long an event the index missed (a lossy
   * watch) can keep a name out. Default 30 minutes.
   */
  relistMs?: number;
  /**
   * After a watch that failed at once (refused: no `watch` in the ClusterRole; or ended as it
   * opened), requests in that namespace list without seeding it for this long; default 60 s.
   */
  retryMs?: number;
  log?: IndexLog;
  /** Clock, for tests; default performance.now. */
  nowMs?: () => number;
}

type Labels = Readonly<Record<string, string>>;

/** A watch that ends sooner than this after it opened counts as broken (no tight reconnect loop). */
const MIN_WATCH_MS = 1_000;

/** A Service's selector as the index saw it, with the pair it is indexed under (its first key in order). */
interface IndexedSelector {
  selector: Labels;
  /** pairKey of the selector's first key, or undefined when it has none (then it never selects a pod). */
  pair: string | undefined;
}

/** One namespace's Services as the index saw them: selectors only, keyed by a selector pair. */
class NamespaceServices {
  /** name → selector ({} when it has none: such a Service never selects a pod). */
  readonly selectors = new Map<string, IndexedSelector>();
  /** One pair of each Service's selector → the names indexed under it. */
  readonly byPair = new Map<string, Set<string>>();
  readonly abort = new AbortController();
  lastUsed: number;
  readonly listedAt: number;

  constructor(
    readonly namespace: string,
    public resourceVersion: string,
    now: number,
  ) {
    this.lastUsed = now;
    this.listedAt = now;
  }

  get size(): number {
    return this.selectors.size;
  }

  put(service: Service): void {
    const name = service.metadata.name;
    this.remove(name);
    const selector = { ...(service.spec.selector ?? {}) };
    const first = Object.keys(selector).sort()[0];
    const pair = first === undefined ? undefined : pairKey(first, selector[first]!);
    this.selectors.set(name, { selector, pair });
    if (pair === undefined) return;
    let names = this.byPair.get(pair);
    if (names === undefined) this.byPair.set(pair, (names = new Set()));
    names.add(name);
  }

  remove(name: string): void {
    const indexed = this.selectors.get(name);
    if (indexed === undefined) return;
    this.selectors.delete(name);
    if (indexed.pair === undefined) return;
    const names = this.byPair.get(indexed.pair);
    names?.delete(name);
    if (names?.size === 0) this.byPair.delete(indexed.pair);
  }

  /** The Services whose selector, as last seen, the labels satisfy: a lookup per label, no scan. */
  candidates(labels: Labels): string[] {
    const out: string[] = [];
    for (const [k, v] of Object.entries(labels)) {
      for (const name of this.byPair.get(pairKey(k, v)) ?? []) {
        const { selector } = this.selectors.get(name)!;
        if (Object.entries(selector).every(([sk, sv]) => labels[sk] === sv)) out.push(name);
      }
    }
    return out;
  }
}

// Label keys and values never hold a NUL.
const pairKey = (k: string, v: string) => `${k}\u0000${v}`;

export class ServicesIndex {
  private readonly namespaces = new Map<string, NamespaceServices>();
  /**
   * Namespaces whose seeding list is in flight → settles (never rejects) when it is done. A request
   * arriving meanwhile waits for it and then asks the index, so a burst's first round makes one
   * list per namespace, not one each.
   */
  private readonly seeding = new Map<string, Promise<void>>();
  private held = 0;
  /** Namespaces whose watch failed at once → when they may be seeded again. */
  private readonly heldOff = new Map<string, number>();
  private closed = false;
  private readonly o: Required<Omit<ServicesIndexOptions, "log">> & Pick<ServicesIndexOptions, "log">;

  constructor(
    private readonly api: ServicesWatchApi,
    o: ServicesIndexOptions = {},
  ) {
    this.o = {
      maxNamespaces: o.maxNamespaces ?? 32,
      maxServices: o.maxServices ?? 50_000,
      maxCandidates: o.maxCandidates ?? 64,
      idleMs: o.idleMs ?? 15 * 60_000,
      watchSeconds: o.watchSeconds ?? 300,
      retryMs: o.retryMs ?? 60_000,
      relistMs: o.relistMs ?? 30 * 60_000,
      nowMs: o.nowMs ?? (() => performance.now()),
      log: o.log,
    };
  }

  /**
   * Services of `namespace` among which are all those selecting a pod with `labels`, each as the
   * API server has it now: the confirmed candidates when the namespace is indexed, else every
   * Service (a list, which seeds the index when there is room). Failures are the reads' own
   * (TransientError).
   */
  async selecting(namespace: string, labels: Labels): Promise<Service[]> {
    const inFlight = this.seeding.get(namespace);
    if (inFlight !== undefined) await inFlight;
    const ns = this.namespaces.get(namespace);
    if (ns !== undefined) {
      ns.lastUsed = this.o.nowMs();
      const names = ns.candidates(labels);
      if (names.length <= this.o.maxCandidates) {
        const read = await Promise.all(names.map((name) => this.api.readService(namespace, name)));
        return read.filter((s): s is Service => s !== undefined);
      }
    }
    return this.listAndSeed(namespace);
  }

  /** Whether `namespace` is indexed now (for tests). */
  isIndexed(namespace: string): boolean {
    return this.namespaces.has(namespace);
  }

  /** Stops every watch and indexes nothing more. */
  close(): void {
    this.closed = true;
    for (const ns of [...this.namespaces.values()]) this.drop(ns);
  }

  private async listAndSeed(namespace: string): Promise<Service[]> {
    const seed = !this.closed && !this.namespaces.has(namespace) && !this.seeding.has(namespace) && this.namespaces.size + this.seeding.size < this.o.maxNamespaces && !this.isHeldOff(namespace);
    const listing = this.api.listServicesVersioned(namespace);
    if (!seed) return (await listing).items;
    this.seeding.set(namespace, listing.then(() => undefined, () => undefined));
    try {
      const list = await listing;
      if (!this.closed && list.resourceVersion !== "" && this.held + list.items.length <= this.o.maxServices) {
        const ns = new NamespaceServices(namespace, list.resourceVersion, this.o.nowMs());
        for (const s of list.items) ns.put(s);
        this.namespaces.set(namespace, ns);
        this.held += ns.size;
        void this.watch(ns);
      }
      return list.items;
    } finally {
      this.seeding.delete(namespace);
    }
  }

  private isHeldOff(namespace: string): boolean {
    const until = this.heldOff.get(namespace);
    if (until === undefined) return false;
    if (this.o.nowMs() < until) return true;
    this.heldOff.delete(namespace);
    return false;
  }

  /** Keeps `ns` current until it fails, idles or the index closes; never throws. */
  private async watch(ns: NamespaceServices): Promise<void> {
    const { namespace } = ns;
    this.o.log?.debug("Services index: watching", { namespace, services: ns.size, resourceVersion: ns.resourceVersion });
    for (let first = true; !ns.abort.signal.aborted; first = false) {
      if (this.o.nowMs() - ns.lastUsed > this.o.idleMs) {
        this.o.log?.debug("Services index: no request asked, dropped", { namespace });
        this.drop(ns);
        return;
      }
      if (!first && this.o.nowMs() - ns.listedAt > this.o.relistMs) {
        this.o.log?.debug("Services index: listed long ago, dropped (the next request lists)", { namespace });
        this.drop(ns);
        return;
      }
      const opened = this.o.nowMs();
      try {
        const timeoutSeconds = Math.round(this.o.watchSeconds * (1 + Math.random() * 0.2));
        await this.api.watchServices(namespace, { resourceVersion: ns.resourceVersion, timeoutSeconds, signal: ns.abort.signal }, (e) => this.apply(ns, e));
        if (ns.abort.signal.aborted) return;
        if (this.o.nowMs() - opened < MIN_WATCH_MS) throw new Error("the API server ended the watch at once");
      } catch (e) {
        if (ns.abort.signal.aborted) return;
        const error = e instanceof Error ? e.message : String(e);
        if (first && this.o.nowMs() - opened < MIN_WATCH_MS) {
          // It never worked (refused, most likely): list per request for a while rather than
          // have every request list and be refused a watch again.
          this.o.log?.warn("Services index: the watch failed as it opened; listing every Service per request for now", { namespace, error, retryMs: this.o.retryMs });
          if (this.heldOff.size >= 4 * this.o.maxNamespaces) this.heldOff.clear();
          this.heldOff.set(namespace, this.o.nowMs() + this.o.retryMs);
        } else if (e instanceof ResourceExpiredError) {
          // 410: the API server no longer has changes that old (routine after a long quiet spell).
          this.o.log?.debug("Services index: the watch's resourceVersion expired, listing again on the next request", { namespace });
        } else {
          // Changes may have been missed: the next request lists and seeds it again.
          this.o.log?.info("Services index: watch failed, listing again on the next request", { namespace, error });
        }
        this.drop(ns);
        return;
      }
    }
  }

  private apply(ns: NamespaceServices, e: ServiceWatchEvent): void {
    if (ns.abort.signal.aborted) return;
    if (e.type === "BOOKMARK") {
      ns.resourceVersion = e.resourceVersion;
      return;
    }
    const { metadata } = e.object;
    // Only this namespace's Services, whatever a stream carries.
    if (typeof metadata?.name !== "string" || (metadata.namespace !== undefined && metadata.namespace !== ns.namespace)) return;
    const before = ns.size;
    if (e.type === "DELETED") ns.remove(metadata.name);
    else ns.put(e.object);
    this.held += ns.size - before;
    if (metadata.resourceVersion !== undefined) ns.resourceVersion = metadata.resourceVersion;
    if (this.held > this.o.maxServices) {
      this.o.log?.info("Services index: more Services than it holds, dropped", { namespace: ns.namespace, maxServices: this.o.maxServices });
      this.drop(ns);
    }
  }

  private drop(ns: NamespaceServices): void {
    ns.abort.abort();
    if (this.namespaces.get(ns.namespace) !== ns) return;
    this.namespaces.delete(ns.namespace);
    this.held -= ns.size;
  }
}
