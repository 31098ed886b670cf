/**
 * Emulates a Knative ApiServerSource in Resource mode for PodCertificateRequests: watches the
 * (embedded) API server and turns each change into a `dev.knative.apiserver.resource.*` event.
 * Like the real source it does not replay objects that existed before it started: it lists once
 * for a resourceVersion and watches from there, reconnecting from the last one it saw.
 */
import { CustomObjectsApi, Watch, type KubeConfig } from "@kubernetes/client-node";
import type { RequestAttributes, UserInfo } from "./apiserver/rbac.js";
import { apiServerSourceEvent } from "../shared/events/pcr-event.js";
import type { PodcertEvent } from "../shared/events/types.js";
import { certificatesApiVersion, type CertificatesVersion } from "../shared/kube/api-versions.js";
import { KubeClusterApi } from "../shared/kube/client-node.js";
import type { PodCertificateRequest } from "../shared/pcr/model.js";

export interface EmulatedSource {
  /** The version its `resources` entry names: "certificates.k8s.io/v1" or ".../v1beta1". */
  apiVersion: string;
  stop(): void;
}


/**
 * Knative's ApiServerSource controller (runAccessCheck) starts the receive adapter only when
 * SubjectAccessReviews say its ServiceAccount may get, list and watch each resource in every
 * namespace it selects; the review names the user alone, without groups. Returns the controller's
 * message when something is missing.
 */
export function sourceAccessProblem(
  review: (user: UserInfo, attrs: RequestAttributes) => boolean,
  user: string,
  namespaces: readonly string[],
  apiVersion: CertificatesVersion = "v1",
): string | undefined {
  const missing: string[] = [];
  for (const namespace of namespaces) {
    const verbs = ["get", "list", "watch"].filter((verb) => !review({ name: user, groups: [] }, {
      resourceRequest: true, verb, apiGroup: "certificates.k8s.io", apiVersion, namespace, resource: "podcertificaterequests", subresource: "", name: "",
    }));
    if (verbs.length > 0) missing.push(`${verbs.join(", ")} resource "podcertificaterequests" in API group "certificates.k8s.io" in Namespace "${namespace}"`);
  }
  return missing.length === 0 ? undefined : `insufficient permissions: User ${user} cannot ${missing.join(", ")}`;
}

/** Attempts at the first list before startApiServerSource gives up (the API server may be injecting faults). */
const LIST_ATTEMPTS = 20;
const RETRY_MS = 200;

/**
 * Starts the source: lists once for a resourceVersion (retried, as the adapter's reflector retries
 * ListAndWatch) and watches from it. Every watch that ends (the server closed it, a request fault,
 * a reset, client-node's 30 s inactivity timeout) is reopened from the last resourceVersion seen,
 * so nothing sent after it is lost; a watch that fails before it is established is retried from
 * the same resourceVersion. A 410 Expired (the server no longer has the history) is a re-list and
 * a watch from there: changes in between are lost, as with the real adapter (its store ignores
 * re-lists), and the resync function re-announces pending PCRs.
 *
 * It watches the version its `resources` entry names (`apiVersion`); by default the one the API
 * server prefers (v1 on 1.37+, else v1beta1), as knative/apiserversource.yaml does with the
 * component for the cluster's version (README "Kubernetes versions").
 */
export async function startApiServerSource(
  kc: KubeConfig,
  sink: (event: PodcertEvent) => void,
  o: { onError?: (e: unknown) => void; retryMs?: number; apiVersion?: CertificatesVersion } = {},
): Promise<EmulatedSource> {
  const retryMs = o.retryMs ?? RETRY_MS;
  // One GET per list (the generic object API would ask discovery first, on every list).
  const lists = kc.makeApiClient(CustomObjectsApi);
  const discovery = new KubeClusterApi(kc);
  // Resolved with the first list, and retried with it.
  let apiVersion = o.apiVersion === undefined ? undefined : certificatesApiVersion(o.apiVersion);
  let stopped = false;
  let controller: AbortController | undefined;
  let retry: NodeJS.Timeout | undefined;
  const pause = (ms: number) => new Promise<void>((r) => (retry = setTimeout(r, ms)));

  const currentVersion = async (attempts: number): Promise<string> => {
    for (let attempt = 1; ; attempt++) {
      try {
        apiVersion ??= certificatesApiVersion((await discovery.certificatesApis()).pcr);
        const [group, version] = apiVersion.split("/") as [string, string];
        const list = (await lists.listClusterCustomObject({ group, version, plural: "podcertificaterequests" })) as { metadata?: { resourceVersion?: string } };
        return list.metadata?.resourceVersion ?? "0";
      } catch (e) {
        if (stopped || attempt >= attempts) throw e;
        o.onError?.(e);
        await pause(Math.min(retryMs * attempt, 2_000));
      }
    }
  };
  let resourceVersion = await currentVersion(LIST_ATTEMPTS);
  const watch = new Watch(kc);

  const reconnect = (ms: number, relist: boolean) => {
    if (stopped) return;
    retry = setTimeout(() => {
      void (async () => {
        if (relist) resourceVersion = await currentVersion(Number.POSITIVE_INFINITY);
        await connect();
      })().catch((e: unknown) => {
        if (stopped) return;
        o.onError?.(e);
        reconnect(retryMs, relist);
      });
    }, ms);
  };

  const connect = async (): Promise<void> => {
    if (stopped) return;
    // The watch's first event confirms it is established; until then the caller must not create.
    let established!: () => void;
    const ready = new Promise<void>((r) => (established = r));
    let expired = false;
    controller = await watch.watch(
      `/apis/${apiVersion!}/podcertificaterequests`,
      { resourceVersion, allowWatchBookmarks: true },
      (phase: string, obj: PodCertificateRequest & { metadata: { resourceVersion?: string } }) => {
        established();
        if (phase === "ERROR") {
          // A Status: 410 Expired means this resourceVersion can no longer be resumed from.
          if ((obj as unknown as { code?: unknown })?.code === 410) expired = true;
          return;
        }
        if (obj?.metadata?.resourceVersion) resourceVersion = obj.metadata.resourceVersion;
        const plain = JSON.parse(JSON.stringify(obj)) as PodCertificateRequest;
        if (phase === "ADDED") sink(apiServerSourceEvent("add", plain));
        else if (phase === "MODIFIED") sink(apiServerSourceEvent("update", plain));
        else if (phase === "DELETED") sink(apiServerSourceEvent("delete", plain));
      },
      (err: unknown) => {
        established();
        if (stopped) return;
        if (err) o.onError?.(err);
        reconnect(err || expired ? retryMs : 0, expired);
      },
    );
    // client-node resolves once the response headers arrived: the server is watching from here
    // (or the watch failed, and is retried from the same resourceVersion: nothing is lost).
    established();
    await ready;
    if (stopped) controller.abort();
  };
  await connect();
  return {
    apiVersion: apiVersion!,
    stop() {
      stopped = true;
      clearTimeout(retry);
      controller?.abort();
    },
  };
}
