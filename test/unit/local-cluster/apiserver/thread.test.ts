// The embedded API server on its own thread (what `podcert issue` and the benchmark run), from the
// built entry dist/podcert-apiserver.mjs (the tests' global set-up builds it).
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { startApiServerThread } from "../../../../local-cluster/apiserver/thread.js";
import { ConfigError } from "../../../../shared/errors.js";
import { KubeClusterApi, loadKubeConfig } from "../../../../shared/kube/client-node.js";
import { KUBERNETES_VERSION } from "../../../helpers/kubernetes.js";

const ENTRY = pathToFileURL(resolve("dist/podcert-apiserver.mjs"));
const pod = (name: string) => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "x", uid: `uid-${name}` }, spec: { nodeName: "n", serviceAccountName: "default" } });

describe("startApiServerThread", () => {
  it("serves the objects it was given to a client of its kubeconfig, and stops (twice is harmless)", async () => {
    const thread = await startApiServerThread({ entry: ENTRY, objects: [pod("a"), pod("b")], kubernetesVersion: KUBERNETES_VERSION });
    try {
      const api = new KubeClusterApi(loadKubeConfig({ kubeconfigText: thread.kubeconfig }));
      expect((await api.readPod("x", "a"))?.metadata.uid).toBe("uid-a");
      expect(await api.readPod("x", "missing")).toBeUndefined();
    } finally {
      await thread.stop();
    }
    await thread.stop();
  });

  it("rejects with the server's ConfigError when it refuses a seed object", async () => {
    const failed = startApiServerThread({ entry: ENTRY, objects: [pod("a"), pod("a")] });
    await expect(failed).rejects.toBeInstanceOf(ConfigError);
    await expect(failed).rejects.toThrow('object 1 (Pod x/a): pods "a" already exists');
  });

  it("rejects, naming the entry, when the thread cannot start", async () => {
    const missing = pathToFileURL(resolve("dist/no-such-entry.mjs"));
    await expect(startApiServerThread({ entry: missing, objects: [] })).rejects.toThrow(/no-such-entry\.mjs|Cannot find module/);
  });
});
