/**
 * Emulates a Knative ApiServerSource in Resource mode for PodCertificateRequests: watches the
 * (embedded) API server and turns each change into a `dev.knative.apiserver.resource.*` event.
 * Like the real source it does not replay objects that existed before it started: it lists once
 * for a resourceVersion and watches from there, reconnecting from the last one it saw.
 */
import { CertificatesV1beta1Api, Watch, type KubeConfig } from "@kubernetes/client-node";
import type { RequestAttributes, UserInfo } from "./apiserver/rbac.js";
import { apiServerSourceEvent } from "../shared/events/pcr-event.js";
import type { PodcertEvent } from "../shared/events/types.js";
import type { PodCertificateRequest } from "../shared/pcr/model.js";

export interface EmulatedSource {
  stop(): void;
}

const PATH = "/apis/certificates.k8s.io/v1beta1/podcertificaterequests";

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
): string | undefined {
  const missing: string[] = [];
  for (const namespace of namespaces) {
    const verbs = ["get", "list", "watch"].filter((verb) => !review({ name: user, groups: [] }, {
      resourceRequest: true, verb, apiGroup: "certificates.k8s.io", apiVersion: "v1beta1", namespace, resource: "podcertificaterequests", subresource: "", name: "",
    }));
    if (verbs.length > 0) missing.push(`${verbs.join(", ")} resource "podcertificaterequests" in API group "certificates.k8s.io" in Namespace "${namespace}"`);
  }
  return missing.length === 0 ? undefined : `insufficient permissions: User ${user} cannot ${missing.join(", ")}`;
}

export async function startApiServerSource(
  kc: KubeConfig,
  sink: (event: PodcertEvent) => void,
  o: { onError?: (e: unknown) => void } = {},
): Promise<EmulatedSource> {
  const list = await kc.makeApiClient(CertificatesV1beta1Api).listPodCertificateRequestForAllNamespaces();
  let resourceVersion = list.metadata?.resourceVersion ?? "0";
  let stopped = false;
  let controller: AbortController | undefined;
  const watch = new Watch(kc);

  const connect = async (): Promise<void> => {
    // The watch's first event confirms it is established; until then the caller must not create.
    let established!: () => void;
    const ready = new Promise<void>((r) => (established = r));
    controller = await watch.watch(
      PATH,
      { resourceVersion, allowWatchBookmarks: true },
      (phase: string, obj: PodCertificateRequest & { metadata: { resourceVersion?: string } }) => {
        established();
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
        setTimeout(() => void connect().catch((e: unknown) => o.onError?.(e)), err ? 200 : 0);
      },
    );
    // client-node resolves once the response headers arrived: the server is watching from here.
    established();
    await ready;
  };
  await connect();
  return {
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}
