// stepContexts (cli/cluster.ts): which steps get a Services index, and how many the caller is given to close.
import { describe, expect, it } from "vitest";
import { stepContexts } from "../../../cli/cluster.js";
import { kubeconfigFor } from "../../../local-cluster/apiserver/server.js";
import { ephemeralStepKeys } from "../../../shared/events/step-keys.js";
import type { ClusterApi, ServicesWatchApi } from "../../../shared/kube/cluster.js";
import { KubeClusterApi, loadKubeConfig } from "../../../shared/kube/client-node.js";
import type { ServicesIndex } from "../../../shared/kube/services-index.js";
import { defaultSignerConfig } from "../../../shared/profiles/defaults.js";
import { silentLogger } from "../../../shared/runtime/log.js";
import { STEP_REGISTRY, STEPS, type StepName } from "../../../shared/steps.js";

/** A client that is never called: nothing listens there. */
const client = () => new KubeClusterApi(loadKubeConfig({ kubeconfigText: kubeconfigFor("http://127.0.0.1:1") }));
const indexing: StepName[] = STEP_REGISTRY.filter((s) => s.indexesServices).map((s) => s.name);

function contexts(cluster: ClusterApi | Record<StepName, ClusterApi>) {
  const created: { api: ServicesWatchApi; index: ServicesIndex }[] = [];
  const out = stepContexts({
    config: defaultSignerConfig(),
    cluster,
    keys: ephemeralStepKeys(),
    log: silentLogger,
    events: false,
    servicesIndexes: (api) => {
      const index = { close: () => {} } as unknown as ServicesIndex;
      created.push({ api, index });
      return index;
    },
  });
  return { out, created };
}

describe("stepContexts", () => {
  it("creates a Services index only for the steps the registry says index Services, each one given to its step", () => {
    expect(indexing.length).toBeGreaterThan(0);
    const perStep = Object.fromEntries(STEPS.map((s) => [s, client()])) as Record<StepName, KubeClusterApi>;
    const { out, created } = contexts(perStep);
    expect(created).toHaveLength(indexing.length);
    created.forEach((c, i) => expect(c.api).toBe(perStep[indexing[i]!]));
    expect(STEPS.filter((s) => out[s].servicesIndex !== undefined)).toEqual(indexing);
    indexing.forEach((s, i) => expect(out[s].servicesIndex).toBe(created[i]!.index));
  });

  it("creates one index for one client, shared by the steps that index Services", () => {
    const { out, created } = contexts(client());
    expect(created).toHaveLength(1);
    for (const s of STEPS) expect(out[s].servicesIndex).toBe(indexing.includes(s) ? created[0]!.index : undefined);
  });
});
