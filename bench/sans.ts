/**
 * Part 5: SAN derivation as the number of Services in a namespace grows: time per request and
 * Kubernetes API calls per request (which must not grow with the number of Services). derive-sans
 * runs with its Services index, as the function server runs it: for "true", the first request in
 * the namespace lists every Service (and seeds the index, which then watches), so it is reported
 * apart; the others read only the Services selecting the pod.
 */
import { stepContexts } from "../cli/cluster.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { apiServerAddEvent } from "../shared/events/pcr-event.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import { type PodcertEvent } from "../shared/events/types.js";
import { EVENT_TYPES } from "../shared/steps.js";
import type { ClusterApi } from "../shared/kube/cluster.js";
import { KubeClusterApi, loadKubeConfig } from "../shared/kube/client-node.js";
import { ServicesIndex } from "../shared/kube/services-index.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { dispatch } from "../shared/runtime/http.js";
import { silentLogger } from "../shared/runtime/log.js";
import { startApiServerThread } from "../local-cluster/apiserver/thread.js";
import { syntheticCluster } from "./cluster.js";
import { percentile, target, type BenchPart } from "./report.js";

/** Wraps a ClusterApi, counting calls (the Services index's list and watch too). */
function counting<T extends ClusterApi>(inner: T): { api: T; calls: () => number; reset: () => void } {
  let n = 0;
  const api = new Proxy(inner, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        n++;
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
  return { api, calls: () => n, reset: () => (n = 0) };
}

export async function runSans(o: { sizes?: number[]; requests?: number } = {}): Promise<BenchPart> {
  const sizes = o.sizes ?? [10, 1000, 10000];
  // 200: the first "true" request's list of every Service leaves garbage that is collected during
  // the next ones; with 50 that pause added ~5 ms to each at 10,000 Services (measured).
  const requests = o.requests ?? 200;
  const rows: BenchPart["rows"] = [];
  const callsPerRequest: number[] = [];
  let trueAtTenThousand: number | undefined;
  for (const services of sizes) {
    for (const mode of ["true", "api"] as const) {
      const { objects, pcrs } = syntheticCluster({ pods: requests, keyType: "ECDSAP256", signer: "atesystem", services });
      for (const p of pcrs) p.spec.unverifiedUserAnnotations = { "atesystem.podcert.ate.dev/expects-service": mode };
      // On its own thread, as in part 2: kube-apiserver runs elsewhere in a cluster, so derive-sans'
      // thread pays for its own work, not for the server's (as `podcert issue` runs it).
      const api = await startApiServerThread({ objects });
      const indexes: ServicesIndex[] = [];
      try {
        const config = defaultSignerConfig();
        const c = counting(new KubeClusterApi(loadKubeConfig({ kubeconfigText: api.kubeconfig })));
        const contexts = stepContexts({ config, cluster: c.api, keys: ephemeralStepKeys(), log: silentLogger, servicesIndexes: (a) => {
          const index = new ServicesIndex(a);
          indexes.push(index);
          return index;
        } });
        const validated: PodcertEvent[] = [];
        for (const pcr of pcrs) {
          const r = await dispatch((await loadFunctions()).validate, contexts.validate, apiServerAddEvent(pcr));
          if (r.reply?.type !== EVENT_TYPES.validated) throw new Error(`validate did not accept ${pcr.metadata.name}: ${String(r.error)}`);
          validated.push(r.reply);
        }
        const deriveSans = (await loadFunctions())["derive-sans"];
        const derive = async (e: PodcertEvent) => {
          const r = await dispatch(deriveSans, contexts["derive-sans"], e);
          if (r.reply?.type !== EVENT_TYPES.sansDerived) throw new Error(`derive-sans failed: ${String(r.error)}`);
        };
        const [first, ...rest] = validated;
        c.reset();
        let start = performance.now();
        await derive(first!);
        const firstMs = performance.now() - start;
        const firstCalls = c.calls();
        c.reset();
        const each: number[] = [];
        start = performance.now();
        for (const e of rest) {
          const t0 = performance.now();
          await derive(e);
          each.push(performance.now() - t0);
        }
        const ms = (performance.now() - start) / rest.length;
        const perRequest = c.calls() / rest.length;
        callsPerRequest.push(perRequest);
        if (mode === "true" && services === 10_000) trueAtTenThousand = ms;
        rows.push({
          Services: services,
          annotation: mode === "true" ? '"true" (all selecting)' : '"api" (named)',
          "ms per request": ms,
          "p50 ms": percentile(each.sort((a, b) => a - b), 50),
          "p99 ms": percentile(each, 99),
          "API calls per request": perRequest,
          "first request ms": firstMs,
          "first request API calls": firstCalls,
        });
      } finally {
        for (const index of indexes) index.close();
        await api.stop();
      }
    }
  }
  const spread = Math.max(...callsPerRequest) - Math.min(...callsPerRequest);
  return {
    title: "5. SAN derivation vs Services in the namespace",
    rows,
    targets: [
      target("SAN derivation: API calls per request constant in the number of Services (max − min)", spread, "max", 0, "calls"),
      ...(trueAtTenThousand === undefined ? [] : [target('SAN derivation, "true", 10,000 Services: ms per request', trueAtTenThousand, "max", 5, "ms")]),
    ],
    notes: [
      "derive-sans alone, in process, against the embedded API server on its own thread (as in part 2; before issue 14 it ran on derive-sans' thread), with its Services index (shared/kube/services-index.ts) as the function server runs it.",
      '"true" reads the pod, then the Services selecting it (two round trips in a row); named Services are read alongside the pod (one).',
      '"ms per request" and "API calls per request" leave out the first request in the namespace, shown apart: for "true" it lists every Service (as without the index) and seeds the index, whose watch then keeps it current; the others read the pod and each Service selecting it (a GET each: every name is confirmed against the API server at request time).',
    ],
  };
}
