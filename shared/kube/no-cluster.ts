/**
 * The ClusterApi of a function the registry says does not use Kubernetes (shared/steps.ts
 * usesKubernetes: false, the dead-letter sink): it is given no kubeconfig, so every call is a bug
 * in that function, refused here with the reason rather than sent unauthenticated.
 */
import type { ClusterApi } from "./cluster.js";

export class NoKubernetesError extends Error {
  override readonly name = "NoKubernetesError";
}

export function noCluster(step: string): ClusterApi {
  const refuse = (call: string) => (): Promise<never> => Promise.reject(new NoKubernetesError(`${step} has no Kubernetes access (shared/steps.ts usesKubernetes: false), yet called ${call}`));
  return {
    readPcr: refuse("readPcr"),
    replacePcrStatus: refuse("replacePcrStatus"),
    listPcrs: refuse("listPcrs"),
    readPod: refuse("readPod"),
    readNamespace: refuse("readNamespace"),
    readNode: refuse("readNode"),
    readServiceAccount: refuse("readServiceAccount"),
    listServices: refuse("listServices"),
    readService: refuse("readService"),
    createEvent: refuse("createEvent"),
  };
}
