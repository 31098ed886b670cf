/**
 * Part 5: SAN derivation as the number of Services in a namespace grows: time per request and
 * Kubernetes API calls per request (which must not grow with the number of Services).
 */
import { startApiServer } from "../local-cluster/apiserver/server.js";
import { clusterApiFor, stepContexts } from "../cli/cluster.js";
import { loadFunctions } from "../local-cluster/functions.js";
import { apiServerAddEvent } from "../shared/events/pcr-event.js";
import { ephemeralStepKeys } from "../shared/events/step-keys.js";
import { type PodcertEvent } from "../shared/events/types.js";
import { EVENT_TYPES } from "../shared/steps.js";
import type { ClusterApi } from "../shared/kube/cluster.js";
import { defaultSignerConfig } from "../shared/profiles/defaults.js";
import { dispatch } from "../shared/runtime/http.js";
import { silentLogger } from "../shared/runtime/log.js";
import { syntheticCluster } from "./cluster.js";
import { target, type BenchPart } from "./report.js";

/** Wraps a ClusterApi, counting calls. */
function counting(inner: ClusterApi): { api: ClusterApi; calls: () => number; reset: () => void } {
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
  const requests = o.requests ?? 50;
  const rows: BenchPart["rows"] = [];
  const callsPerRequest: number[] = [];
  for (const services of sizes) {
    for (const mode of ["true", "api"] as const) {
      const { objects, pcrs } = syntheticCluster({ pods: requests, keyType: "ECDSAP256", signer: "atesystem", services });
      for (const p of pcrs) p.spec.unverifiedUserAnnotations = { "atesystem.podcert.ate.dev/expects-service": mode };
      const api = await startApiServer({ objects });
      try {
        const config = defaultSignerConfig();
        const c = counting(clusterApiFor(api));
        const contexts = stepContexts({ config, cluster: c.api, keys: ephemeralStepKeys(), log: silentLogger });
        const validated: PodcertEvent[] = [];
        for (const pcr of pcrs) {
          const r = await dispatch((await loadFunctions()).validate, contexts.validate, apiServerAddEvent(pcr));
          if (r.reply?.type !== EVENT_TYPES.validated) throw new Error(`validate did not accept ${pcr.metadata.name}: ${String(r.error)}`);
          validated.push(r.reply);
        }
        c.reset();
        const start = performance.now();
        for (const e of validated) {
          const r = await dispatch((await loadFunctions())["derive-sans"], contexts["derive-sans"], e);
          if (r.reply?.type !== EVENT_TYPES.sansDerived) throw new Error(`derive-sans failed: ${String(r.error)}`);
        }
        const ms = (performance.now() - start) / validated.length;
        const perRequest = c.calls() / validated.length;
        callsPerRequest.push(perRequest);
        rows.push({ Services: services, annotation: mode === "true" ? '"true" (all selecting)' : '"api" (named)', "ms per request": ms, "API calls per request": perRequest });
      } finally {
        await api.stop();
      }
    }
  }
  const spread = Math.max(...callsPerRequest) - Math.min(...callsPerRequest);
  return {
    title: "5. SAN derivation vs Services in the namespace",
    rows,
    targets: [target("SAN derivation: API calls per request constant in the number of Services (max − min)", spread, "max", 0, "calls")],
    notes: ["derive-sans alone, in process, against the embedded API server; every name is confirmed against the API at request time (no cache)."],
  };
}
