/**
 * A local stand-in for a Knative Broker, routing by the project's own Trigger manifests
 * (knative/triggers.yaml) and delivery spec (knative/broker.yaml), so the local run exercises the
 * production routing rather than a copy of it. Semantics follow Knative's: exact attribute
 * filters; a 200 reply that is a CloudEvent re-enters the broker; 404, 408, 409, 429, 5xx and
 * attempts that outlast the spec's timeout are retried with its backoff; anything else, or
 * exhausted retries, goes to the dead-letter sink: the onDeadLetter callback (the run's record
 * and log), and over HTTP to the sink the delivery spec names (the dead-letter function's local
 * process), with the extension attributes Knative adds (deliverToSink).
 *
 * Delivery faults (faults.ts), off by default, make it misbehave as brokers do on a cluster: a
 * delivery lost, sent twice (one after the other or at once), held back behind a later one,
 * delayed, or its subscriber's process killed while the request is in flight.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { request } from "undici";
import { parseAllDocuments } from "yaml";
import { ConfigError, isPodcertError, RejectedEventError } from "../shared/errors.js";
import { eventFromHttp, eventToBinaryHttp, MAX_EVENT_BYTES } from "../shared/events/codec.js";
import { DELIVERY_FAULTS, drawFault, FaultCounter, faultPlanProblems, seededRandom, type DeliveryFaultKind, type DeliveryFaultPlan } from "./faults.js";
import type { PodcertEvent } from "../shared/events/types.js";
import { BODY_TIMEOUT_MS, CONNECTIONS_CHECK_INTERVAL_MS, HEADERS_TIMEOUT_MS, readBody } from "../shared/runtime/body.js";
import { eventFromBody, UploadError } from "../shared/runtime/http.js";
import { retryable, routeEvent, type TriggerRoute } from "./router.js";

export interface DeliverySpec {
  retry: number;
  backoffPolicy: "exponential" | "linear";
  backoffDelayMs: number;
  /** Per attempt (Knative's `timeout`); unset: the local broker's own 30 s. */
  timeoutMs?: number;
  deadLetterSink?: string;
}

/** ISO 8601 durations as Knative writes them (PT0.5S, PT2S, PT1M). */
export function parseIsoDurationMs(text: string): number {
  const m = /^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(text);
  if (!m || text === "P" || text === "PT") throw new ConfigError(`${text} is not an ISO 8601 duration`);
  const [, d, h, min, s] = m.map((x) => (x === undefined ? 0 : Number(x)));
  return Math.round((((d ?? 0) * 24 + (h ?? 0)) * 3600 + (min ?? 0) * 60 + (s ?? 0)) * 1000);
}

/** The delivery spec of the Broker document in a manifest file. */
export function parseBrokerDelivery(yamlText: string, brokerName: string): DeliverySpec {
  for (const doc of parseAllDocuments(yamlText)) {
    const b = doc.toJSON() as { kind?: string; metadata?: { name?: string }; spec?: { delivery?: Record<string, unknown> } } | null;
    if (b?.kind !== "Broker" || b.metadata?.name !== brokerName) continue;
    const d = b.spec?.delivery ?? {};
    const sink = (d.deadLetterSink as { ref?: { name?: string }; uri?: string } | undefined);
    const spec: DeliverySpec = {
      retry: typeof d.retry === "number" ? d.retry : 0,
      backoffPolicy: d.backoffPolicy === "linear" ? "linear" : "exponential",
      backoffDelayMs: typeof d.backoffDelay === "string" ? parseIsoDurationMs(d.backoffDelay) : 0,
    };
    if (typeof d.timeout === "string") spec.timeoutMs = parseIsoDurationMs(d.timeout);
    const sinkName = sink?.ref?.name ?? sink?.uri;
    if (sinkName !== undefined) spec.deadLetterSink = sinkName;
    return spec;
  }
  throw new ConfigError(`no Broker named ${brokerName} in the broker manifest`);
}

/**
 * containerConcurrency of each Knative Service in a manifest file (Services without one are left
 * out: Knative's 0, no limit). Knative's queue-proxy lets that many requests into one pod and the
 * activator holds the rest; the local broker does the same per process.
 */
export function parseContainerConcurrency(yamlText: string, source = "services"): Map<string, number> {
  const out = new Map<string, number>();
  for (const [i, doc] of parseAllDocuments(yamlText).entries()) {
    if (doc.errors.length > 0) throw new ConfigError(`${source}: document ${i}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
    const s = doc.toJSON() as { kind?: string; metadata?: { name?: string }; spec?: { template?: { spec?: { containerConcurrency?: unknown } } } } | null;
    if (s?.kind !== "Service" || s.metadata?.name === undefined) continue;
    const cc = s.spec?.template?.spec?.containerConcurrency;
    if (cc === undefined || cc === 0) continue;
    if (typeof cc !== "number" || !Number.isInteger(cc) || cc < 0) throw new ConfigError(`${source}: Service ${s.metadata.name}: containerConcurrency must be a whole number`);
    out.set(s.metadata.name, cc);
  }
  return out;
}

export interface DeadLetter {
  event: PodcertEvent;
  trigger: string;
  subscriber: string;
  attempts: number;
  lastStatus: number | "network-error";
  lastError: string;
}

/** What became of one dead letter sent to the dead-letter sink over HTTP. */
export interface SinkDelivery {
  event: PodcertEvent;
  /** The sink's last answer, or network-error; "closed" when the broker closed before it was sent. */
  status: number | "network-error" | "closed";
  attempts: number;
  error?: string;
}

/**
 * The extension attributes Knative adds to a dead-lettered event (knative/eventing,
 * pkg/channel/attributes/knative_error.go): the failed subscriber's URL, the last answer's status
 * and the first KNATIVE_ERROR_DATA_MAX_BYTES bytes of its body (base64, as the dispatchers send it).
 */
export const KNATIVE_ERROR_EXTENSIONS = { dest: "knativeerrordest", code: "knativeerrorcode", data: "knativeerrordata" } as const;
export const KNATIVE_ERROR_DATA_MAX_BYTES = 1024;

/** The dead-lettered event as the sink receives it: the original, with Knative's error extensions. */
export function deadLetterEvent(d: { event: PodcertEvent; subscriberUrl: string; lastStatus: number | "network-error"; lastError: string }): PodcertEvent {
  const extensions: Record<string, string> = { ...d.event.extensions, [KNATIVE_ERROR_EXTENSIONS.dest]: d.subscriberUrl };
  // No answer, no status: left out rather than made up.
  if (typeof d.lastStatus === "number") extensions[KNATIVE_ERROR_EXTENSIONS.code] = String(d.lastStatus);
  else delete extensions[KNATIVE_ERROR_EXTENSIONS.code];
  extensions[KNATIVE_ERROR_EXTENSIONS.data] = Buffer.from(d.lastError).subarray(0, KNATIVE_ERROR_DATA_MAX_BYTES).toString("base64");
  return { ...d.event, extensions };
}

export interface Delivery {
  trigger: string;
  subscriber: string;
  eventType: string;
  /** The event's id and subject (a PCR event's subject names it), so a harness can tell deliveries apart. */
  id: string;
  subject?: string;
  status: number | "network-error";
  attempts: number;
  /** The fault injected into this delivery, if any. */
  fault?: DeliveryFaultKind;
}

/** A delivery the broker dropped on purpose (a `drop` fault): lost, not dead-lettered. */
export interface LostDelivery {
  event: PodcertEvent;
  trigger: string;
  subscriber: string;
  fault: "drop";
}

export interface BrokerFaults {
  /** Absent: no faults until setFaults. */
  plan?: DeliveryFaultPlan;
  /** Drawn once per delivery (seededRandom, for a run that can be repeated). */
  random: () => number;
  counter: FaultCounter;
}

/** How long a `reorder` delivery waits at most for a later one (so it is never stuck). */
export const REORDER_CAP_MS = 500;
/** A `delay` fault's wait when the plan sets no delayMs. */
export const DEFAULT_FAULT_DELAY_MS = 2_000;

export interface LocalBrokerOptions {
  routes: readonly TriggerRoute[];
  delivery: DeliverySpec;
  brokerName: string;
  /** Knative Service name → URL of the local process serving it. */
  subscribers: ReadonlyMap<string, string>;
  onDeadLetter?: (d: DeadLetter) => void;
  /** Each dead letter's delivery to the dead-letter sink over HTTP, once it ended (delivered or not). */
  onSinkDelivery?: (d: SinkDelivery) => void;
  onDelivery?: (d: Delivery) => void;
  /** Cap on the backoff delay, so a local run never sleeps for minutes. */
  maxBackoffMs?: number;
  /** Requests in flight per subscriber at most (its containerConcurrency); others wait in order. */
  concurrency?: ReadonlyMap<string, number>;
  /** Delivery faults (off when absent; setFaults switches them later). */
  faults?: BrokerFaults;
  /** A dropped delivery (a `drop` fault), for a harness to explain what it lost. */
  onLost?: (d: LostDelivery) => void;
  /**
   * A `killMidRequest` fault: called with the subscriber (its Knative Service name) once a request
   * to it has been sent and before its answer; the caller kills the process serving it.
   */
  onKill?: (subscriber: string) => boolean;
  /** Knative Eventing's OIDC: the Bearer token for a delivery to `subscriber` (a Knative Service name); none when unset. */
  authorization?: (subscriber: string) => Promise<string> | string;
}

/** The problems of a delivery fault plan for this broker (empty: usable). */
function deliveryPlanProblems(plan: DeliveryFaultPlan, canKill: boolean): string[] {
  const problems = faultPlanProblems(plan as Readonly<Record<string, unknown>>, DELIVERY_FAULTS);
  const { delayMs } = plan;
  if (delayMs !== undefined && (typeof delayMs !== "number" || !Number.isFinite(delayMs) || delayMs < 0)) problems.push(`delayMs: a number of milliseconds from 0, not ${String(delayMs)}`);
  if ((plan.killMidRequest ?? 0) > 0 && !canKill) problems.push("killMidRequest: this broker was given no onKill hook to kill a subscriber with");
  return problems;
}

/** The request body, calling `sent` once undici has written all of it (and so the headers) to the socket. */
async function* bodyThen(body: string, sent: () => void): AsyncGenerator<Buffer> {
  yield Buffer.from(body);
  sent();
}

/** Resolves true after `ms`, or false as soon as `signal` aborts (the timer then no longer keeps the process alive). */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve(true);
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}

/** A counting semaphore: at most `limit` holders, the others served first come, first served. */
class Slots {
  private used = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.used < this.limit) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.used--;
  }
}

export class LocalBroker {
  private inFlight = 0;
  private readonly slots = new Map<string, Slots>();
  private waiters: (() => void)[] = [];
  private server: Server | undefined;
  /** Aborted by close(): deliveries waiting to retry give up. */
  private readonly closing = new AbortController();
  private plan: DeliveryFaultPlan | undefined;
  private readonly random: () => number;
  /** The faults injected so far, by kind (the options' counter, or the broker's own). */
  readonly faultCounter: FaultCounter;
  /** Deliveries numbered as published: a `reorder` waits for one numbered after it. */
  private sequence = 0;
  /** `reorder` deliveries waiting: each goes once a delivery published after it had its first attempt. */
  private readonly held = new Set<{ seq: number; go: () => void }>();

  constructor(private readonly o: LocalBrokerOptions) {
    for (const r of o.routes) {
      if (r.broker === o.brokerName && !o.subscribers.has(r.subscriber)) {
        throw new ConfigError(`Trigger ${r.name} names Service ${r.subscriber}, which is not running locally`);
      }
    }
    for (const [subscriber, limit] of o.concurrency ?? []) if (limit > 0) this.slots.set(subscriber, new Slots(limit));
    // Without faults in the options, a fixed seed: a plan set later still injects repeatably.
    this.random = o.faults?.random ?? seededRandom(1);
    this.faultCounter = o.faults?.counter ?? new FaultCounter();
    this.setFaults(o.faults?.plan);
  }

  /** The delivery fault plan in force (undefined: none). */
  get faultPlan(): DeliveryFaultPlan | undefined {
    return this.plan === undefined ? undefined : { ...this.plan };
  }

  /** Switches delivery faults (undefined: none) for deliveries published from now on; a bad plan throws ConfigError. */
  setFaults(plan: DeliveryFaultPlan | undefined): void {
    if (plan !== undefined) {
      const problems = deliveryPlanProblems(plan, this.o.onKill !== undefined);
      if (problems.length > 0) throw new ConfigError(`delivery fault plan: ${problems.join("; ")}`);
    }
    this.plan = plan === undefined ? undefined : { ...plan };
  }

  /** Accepts an event and delivers it, with its replies, in the background. */
  publish(event: PodcertEvent): void {
    const routes = routeEvent(this.o.routes, this.o.brokerName, event);
    for (const route of routes) {
      const seq = ++this.sequence;
      // Drawn once per delivery (one event to one Trigger's subscriber), never per attempt.
      const fault = this.plan === undefined ? undefined : drawFault(this.random, this.plan, DELIVERY_FAULTS);
      // A kill counts once it happened (the run may spare a process that just started).
      if (fault !== undefined && fault !== "killMidRequest") this.faultCounter.hit(fault);
      if (fault === "drop") {
        this.o.onLost?.({ event, trigger: route.name, subscriber: route.subscriber, fault });
        continue;
      }
      this.inFlight++;
      void this.deliverWith(fault, seq, route, event).finally(() => {
        this.inFlight--;
        if (this.inFlight === 0) for (const w of this.waiters.splice(0)) w();
      });
    }
  }

  /** One delivery with its fault; held and delayed ones count as in flight (idle() waits for them). */
  private async deliverWith(fault: DeliveryFaultKind | undefined, seq: number, route: TriggerRoute, event: PodcertEvent): Promise<void> {
    const signal = this.closing.signal;
    switch (fault) {
      case "duplicate":
        await this.deliver(route, event, seq, fault);
        if (!signal.aborted) await this.deliver(route, event, seq, fault);
        return;
      case "concurrentDuplicate":
        await Promise.all([this.deliver(route, event, seq, fault), this.deliver(route, event, seq, fault)]);
        return;
      case "reorder":
        if (await this.hold(seq)) await this.deliver(route, event, seq, fault);
        return;
      case "delay":
        if (await pause(this.plan?.delayMs ?? DEFAULT_FAULT_DELAY_MS, signal)) await this.deliver(route, event, seq, fault);
        return;
      default:
        await this.deliver(route, event, seq, fault);
    }
  }

  /**
   * Holds a `reorder` delivery until a delivery published after it has had its first attempt
   * answered (so its subscriber saw the later event first, not a race between two connections),
   * or REORDER_CAP_MS; false when the broker closed meanwhile (the delivery is abandoned).
   */
  private hold(seq: number): Promise<boolean> {
    const signal = this.closing.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (go: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", abandon);
        this.held.delete(entry);
        resolve(go);
      };
      const entry = { seq, go: () => finish(true) };
      const abandon = () => finish(false);
      const timer = setTimeout(() => finish(true), REORDER_CAP_MS);
      signal.addEventListener("abort", abandon, { once: true });
      this.held.add(entry);
    });
  }

  /** Releases the `reorder` deliveries published before delivery `seq`, whose first attempt just ended. */
  private releaseHeldBefore(seq: number): void {
    for (const h of [...this.held]) if (h.seq < seq) h.go();
  }

  /** Resolves once nothing is being delivered or retried. */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }

  get pending(): number {
    return this.inFlight;
  }

  private backoff(attempt: number): number {
    const { backoffPolicy, backoffDelayMs } = this.o.delivery;
    const ms = backoffPolicy === "exponential" ? backoffDelayMs * 2 ** attempt : backoffDelayMs * (attempt + 1);
    return Math.min(ms, this.o.maxBackoffMs ?? 5_000);
  }

  private async deliver(route: TriggerRoute, event: PodcertEvent, seq: number, fault: DeliveryFaultKind | undefined): Promise<void> {
    const url = this.o.subscribers.get(route.subscriber)!;
    const { headers, body } = eventToBinaryHttp(event);
    const record = (status: number | "network-error", attempts: number): Delivery => ({
      trigger: route.name,
      subscriber: route.subscriber,
      eventType: event.type,
      id: event.id,
      ...(event.subject === undefined ? {} : { subject: event.subject }),
      status,
      attempts,
      ...(fault === undefined ? {} : { fault }),
    });
    // The kill goes with the first attempt whose request is actually sent (one refused before it
    // was sent, as by a process still restarting, cannot be cut short).
    let killPending = fault === "killMidRequest" && this.o.onKill !== undefined;
    let attempts = 0;
    let lastStatus: number | "network-error" = "network-error";
    let lastError = "";
    for (;;) {
      attempts++;
      try {
        // undici's request, not fetch: the broker shares the machine with what it measures, and
        // WHATWG fetch costs several times the CPU per delivery.
        const slots = this.slots.get(route.subscriber);
        await slots?.acquire();
        let status: number;
        let text: string;
        let replyHeaders: Record<string, string | string[] | undefined>;
        try {
          // The whole attempt (answer and body) within the timeout, as Knative's dispatcher bounds
          // it; the wait for a slot above is not counted.
          const timeoutMs = this.o.delivery.timeoutMs ?? 30_000;
          // Only a delivery to be killed pays for a streamed body: it tells when the request is out.
          // undici writes an async iterable body chunk by chunk (client-h1's writeIterable) though
          // its types list only Readable among streams.
          const auth = this.o.authorization === undefined ? {} : { authorization: `Bearer ${await this.o.authorization(route.subscriber)}` };
          const sending: string | Readable = killPending
            ? (bodyThen(body, () => {
                killPending = false;
                if (this.o.onKill?.(route.subscriber)) this.faultCounter.hit("killMidRequest");
              }) as unknown as Readable)
            : body;
          const res = await request(url, { method: "POST", headers: { ...headers, ...auth }, body: sending, signal: AbortSignal.timeout(timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs }).finally(() => {
            // This delivery's subscriber has seen it (or it failed): the reorders held before it go.
            if (attempts === 1) this.releaseHeldBefore(seq);
          });
          status = res.statusCode;
          replyHeaders = res.headers;
          text = await res.body.text();
        } finally {
          slots?.release();
        }
        lastStatus = status;
        if (status >= 200 && status < 300) {
          this.o.onDelivery?.(record(status, attempts));
          if (status === 200 && text.length > 0) {
            // Knative treats a 200 body that is not a CloudEvent as a failed delivery.
            let reply: PodcertEvent;
            try {
              reply = eventFromHttp(replyHeaders, text);
            } catch (e) {
              lastError = `reply is not a CloudEvent: ${isPodcertError(e) ? e.message : String(e)}`;
              break;
            }
            this.publish(reply);
          }
          return;
        }
        lastError = text.trim().slice(0, 500);
        if (!retryable(status)) break;
      } catch (e) {
        lastStatus = "network-error";
        lastError = (e as Error).name === "TimeoutError" ? `no answer within ${this.o.delivery.timeoutMs ?? 30_000} ms` : (e as Error).message;
      }
      if (attempts > this.o.delivery.retry) break;
      // Closed: the run is over and its subscribers are gone; a retry would only keep the process
      // alive for up to the whole backoff (a minute), and a dead letter would be noise.
      if (!(await pause(this.backoff(attempts - 1), this.closing.signal))) return;
    }
    this.o.onDelivery?.(record(lastStatus, attempts));
    this.o.onDeadLetter?.({ event, trigger: route.name, subscriber: route.subscriber, attempts, lastStatus, lastError });
    void this.deliverToSink(deadLetterEvent({ event, subscriberUrl: url, lastStatus, lastError }));
  }

  /** Where dead letters go over HTTP: the sink the delivery spec names, by Service (a local process) or URL. */
  private sinkUrl(): string | undefined {
    const sink = this.o.delivery.deadLetterSink;
    if (sink === undefined) return undefined;
    const local = this.o.subscribers.get(sink);
    if (local !== undefined) return local;
    return /^https?:\/\//.test(sink) ? sink : undefined;
  }

  /**
   * Sends a dead letter to the dead-letter sink, retried as any delivery (the spec's retries and
   * backoff). Never dead-lettered again, whatever the sink answers: a sink that fails would
   * otherwise receive its own failures forever. Its answer's body is ignored (not published), no
   * delivery faults apply, and it is not counted by idle(): the onDeadLetter record comes first and
   * is what the run's verdict reads. close() abandons it.
   */
  private async deliverToSink(event: PodcertEvent): Promise<void> {
    const url = this.sinkUrl();
    if (url === undefined) return;
    const { headers, body } = eventToBinaryHttp(event);
    const timeoutMs = this.o.delivery.timeoutMs ?? 30_000;
    let attempts = 0;
    let status: SinkDelivery["status"] = "network-error";
    let error: string | undefined;
    for (;;) {
      if (this.closing.signal.aborted) {
        status = "closed";
        break;
      }
      attempts++;
      try {
        const auth = this.o.authorization === undefined ? {} : { authorization: `Bearer ${await this.o.authorization(this.o.delivery.deadLetterSink ?? "")}` };
        const res = await request(url, { method: "POST", headers: { ...headers, ...auth }, body, signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.closing.signal]), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        status = res.statusCode;
        const text = await res.body.text();
        if (status >= 200 && status < 300) {
          error = undefined;
          break;
        }
        error = text.trim().slice(0, 500);
        if (!retryable(status)) break;
      } catch (e) {
        status = this.closing.signal.aborted ? "closed" : "network-error";
        error = (e as Error).message;
      }
      if (attempts > this.o.delivery.retry || !(await pause(this.backoff(attempts - 1), this.closing.signal))) break;
    }
    this.o.onSinkDelivery?.({ event, status, attempts, ...(error === undefined ? {} : { error }) });
  }

  /**
   * An HTTP ingress (POST / with a CloudEvent), as a Broker's address, for events from outside.
   * It reads bodies as the functions do (runtime/body.ts): at most MAX_EVENT_BYTES, answered 413
   * without holding the rest, within the same read timeout (408).
   */
  async listen(port = 0): Promise<string> {
    this.server = createServer({ connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS }, (req, res) => {
      void readBody(req, res, { limit: MAX_EVENT_BYTES, timeoutMs: BODY_TIMEOUT_MS })
        .then((read) => {
          try {
            if (read.kind === "aborted") return;
            const parsed = eventFromBody(read, req.headers, { timeoutMs: BODY_TIMEOUT_MS });
            if ("refused" in parsed) {
              const e = parsed.refused.error;
              return plain(res, parsed.refused.status, isPodcertError(e) || e instanceof UploadError ? e.message : "internal error");
            }
            this.publish(parsed.event);
            res.writeHead(202).end();
          } catch (e) {
            if (res.headersSent) res.destroy();
            else if (isPodcertError(e)) plain(res, e instanceof RejectedEventError ? e.status : 500, e.message);
            else plain(res, 500, "internal error");
          }
        })
        // Whatever still fails costs this request its connection, never the local run.
        .catch(() => res.destroy());
    });
    this.server.headersTimeout = HEADERS_TIMEOUT_MS;
    this.server.requestTimeout = HEADERS_TIMEOUT_MS + BODY_TIMEOUT_MS + CONNECTIONS_CHECK_INTERVAL_MS;
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", () => resolve()));
    const a = this.server.address();
    return `http://127.0.0.1:${typeof a === "object" && a ? a.port : port}`;
  }

  /** Stops accepting events and abandons the retries, held and delayed deliveries still waiting (nothing is dead-lettered). */
  async close(): Promise<void> {
    this.closing.abort();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(`${text}\n`);
}
