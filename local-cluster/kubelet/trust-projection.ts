/**
 * What kubelet writes for a `clusterTrustBundle` projected volume source, so the local run can
 * show what a pod would have mounted. It follows kubelet's source, not its documentation:
 *
 * - pkg/volume/projected/projected.go (collectData): `name` set → that one bundle
 *   (GetTrustAnchorsByName; its signerName and labels are not looked at); else `signerName` set →
 *   every bundle of that signer whose labels match `labelSelector` (GetTrustAnchorsBySigner);
 *   else an error. Pod validation refuses a source with both, so "name wins" never shows.
 * - pkg/kubelet/clustertrustbundle/clustertrustbundle_manager.go: the selector goes through
 *   metav1.LabelSelectorAsSelector, where nil matches nothing and `{}` everything; nothing found
 *   is an error unless `optional` (the mount fails and the pod does not start), an empty file if
 *   it is. normalizeTrustAnchors decodes every PEM block of every bundle (Go's pem.Decode: text
 *   and headers are dropped), de-duplicates by DER, sorts (sets.List), then shuffles
 *   (rand.Shuffle, "a stable ordering that changes each time Kubelet restarts"; in fact anew each
 *   time its 5-minute cache is refilled) and writes each as a CERTIFICATE block. So consumers
 *   must not depend on the order; `order: "sorted"` skips the shuffle for reproducible output.
 *
 * Kubelet's cache (entries dropped on every bundle change, at most 5 minutes old) is not
 * emulated: this is what a pod sees once the change has reached it.
 */

import { ApiException, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { KubeClusterApi } from "../../shared/kube/client-node.js";

import { decodeGoPemBlocks } from "../apiserver/go-pem.js";
import { LABEL_KEY, LABEL_VALUE, parseLabelSelector } from "../apiserver/selectors.js";
import { pemEncode } from "../../shared/x509/pem.js";

/** metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string> | null;
  matchExpressions?: readonly { key: string; operator: string; values?: readonly string[] | null }[] | null;
}

/** The pod's `clusterTrustBundle` projected volume source (core/v1 ClusterTrustBundleProjection). */
export interface ClusterTrustBundleProjection {
  name?: string | null;
  signerName?: string | null;
  labelSelector?: LabelSelector | null;
  optional?: boolean | null;
  path: string;
}

/** What the projection reads of a ClusterTrustBundle (client-node's type fits). */
export interface ClusterTrustBundleLike {
  metadata?: { name?: string; labels?: Record<string, string> };
  spec: { signerName?: string; trustBundle: string };
}

export interface ProjectionOptions {
  /** "shuffled" (default) as kubelet, or "sorted" by DER for reproducible files. */
  order?: "shuffled" | "sorted";
  /** The shuffle's randomness, in [0, 1); default Math.random. */
  random?: () => number;
}

export type TrustProjectionErrorCode = "ERR_CTB_PROJECTION_INVALID" | "ERR_CTB_NOT_FOUND" | "ERR_CTB_NONE_MATCHED";

/** The mount would fail: kubelet keeps the pod from starting, with this message in its events. */
export class TrustProjectionError extends Error {
  override readonly name = "TrustProjectionError";
  constructor(
    readonly code: TrustProjectionErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The PEM kubelet would write at `source.path`, from `bundles` (every ClusterTrustBundle it knows). */
export function projectClusterTrustBundles(bundles: readonly ClusterTrustBundleLike[], source: ClusterTrustBundleProjection, o: ProjectionOptions = {}): string {
  return normalize(selectBundles(bundles, source), o);
}

/**
 * One client per kubeconfig, so discovery is asked once (as a kubelet asks at start), not on
 * every read: waitForPublishedTrust reads every 100 ms.
 */
const discovery = new WeakMap<KubeConfig, KubeClusterApi>();
function discoveryFor(kc: KubeConfig): KubeClusterApi {
  let api = discovery.get(kc);
  if (api === undefined) discovery.set(kc, (api = new KubeClusterApi(kc)));
  return api;
}

/**
 * The same, reading the bundles from the API as kubelet's informer would: the named bundle, or
 * the signer's bundles listed with its field selector and the projection's label selector, in
 * the version the API server serves them in (v1 from 1.37, v1beta1 before).
 */
export async function readClusterTrustBundleProjection(kc: KubeConfig, source: ClusterTrustBundleProjection, o: ProjectionOptions = {}): Promise<string> {
  const { ctb } = await discoveryFor(kc).certificatesApis();
  if (ctb === undefined) throw new Error("the API server serves no ClusterTrustBundles");
  const where = { group: "certificates.k8s.io", version: ctb, plural: "clustertrustbundles" };
  const objects = kc.makeApiClient(CustomObjectsApi);
  let bundles: ClusterTrustBundleLike[] = [];
  if (isSet(source.name)) {
    try {
      bundles = [(await objects.getClusterCustomObject({ ...where, name: source.name })) as ClusterTrustBundleLike];
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 404)) throw e;
    }
  } else if (isSet(source.signerName) && isSet(source.labelSelector)) {
    const labelSelector = labelSelectorQuery(source.labelSelector);
    const list = (await objects.listClusterCustomObject({ ...where, fieldSelector: `spec.signerName=${source.signerName}`, labelSelector })) as { items?: ClusterTrustBundleLike[] };
    bundles = list.items ?? [];
  }
  return projectClusterTrustBundles(bundles, source, o);
}

/**
 * A LabelSelector as a `labelSelector` query (and selectors.ts) spells it, after the checks
 * LabelSelectorAsSelector makes: valid keys and values, a known operator, values for In/NotIn
 * and none for Exists/DoesNotExist. `{}` is "" (everything); nil has no query form (nothing).
 */
export function labelSelectorQuery(selector: LabelSelector): string {
  const bad = (m: string) => new TrustProjectionError("ERR_CTB_PROJECTION_INVALID", `while parsing label selector: ${m}`);
  const key = (k: string) => {
    const [prefix, name] = k.includes("/") ? [k.slice(0, k.indexOf("/")), k.slice(k.indexOf("/") + 1)] : ["", k];
    if (!LABEL_KEY.test(k) || name.length > 63 || prefix.length > 253) throw bad(`key: Invalid value: ${JSON.stringify(k)}: not a valid label key`);
    return k;
  };
  const value = (v: string) => {
    if (!LABEL_VALUE.test(v) || v.length > 63) throw bad(`values: Invalid value: ${JSON.stringify(v)}: not a valid label value`);
    return v;
  };
  const terms: string[] = [];
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) terms.push(`${key(k)}=${value(v)}`);
  for (const e of selector.matchExpressions ?? []) {
    const values = [...(e.values ?? [])];
    switch (e.operator) {
      case "In":
      case "NotIn":
        if (values.length === 0) throw bad("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty");
        terms.push(`${key(e.key)} ${e.operator === "In" ? "in" : "notin"} (${values.map(value).join(",")})`);
        break;
      case "Exists":
      case "DoesNotExist":
        if (values.length > 0) throw bad("values: Invalid value: values set must be empty for exists and does not exist");
        terms.push(`${e.operator === "Exists" ? "" : "!"}${key(e.key)}`);
        break;
      default:
        throw bad(`${JSON.stringify(e.operator)} is not a valid label selector operator`);
    }
  }
  return terms.join(",");
}

// ---------------------------------------------------------------------------------------------

function selectBundles(bundles: readonly ClusterTrustBundleLike[], source: ClusterTrustBundleProjection): ClusterTrustBundleLike[] {
  const optional = source.optional === true;
  if (isSet(source.name)) {
    const found = bundles.find((b) => b.metadata?.name === source.name);
    if (found !== undefined) return [found];
    if (optional) return [];
    throw new TrustProjectionError("ERR_CTB_NOT_FOUND", `while getting ClusterTrustBundle: clustertrustbundles.certificates.k8s.io ${JSON.stringify(source.name)} not found`);
  }
  if (isSet(source.signerName)) {
    const selected = isSet(source.labelSelector) ? bundles.filter(matches(source.labelSelector, source.signerName)) : [];
    if (selected.length > 0 || optional) return selected;
    throw new TrustProjectionError("ERR_CTB_NONE_MATCHED", "combination of signerName and labelSelector matched zero ClusterTrustBundles");
  }
  throw new TrustProjectionError("ERR_CTB_PROJECTION_INVALID", "ClusterTrustBundle projection requires either name or signerName to be set");
}

function matches(selector: LabelSelector, signerName: string): (b: ClusterTrustBundleLike) => boolean {
  const labels = parseLabelSelector(labelSelectorQuery(selector));
  return (b) => (b.spec.signerName ?? "") === signerName && labels((k) => b.metadata?.labels?.[k]);
}

/** normalizeTrustAnchors: every block's DER once, sorted, then shuffled unless asked not to. */
function normalize(bundles: readonly ClusterTrustBundleLike[], o: ProjectionOptions): string {
  const anchors = new Map<string, Buffer>();
  for (const b of bundles) {
    for (const block of decodeGoPemBlocks(b.spec.trustBundle)) anchors.set(block.bytes.toString("base64"), block.bytes);
  }
  const list = [...anchors.values()].sort(Buffer.compare);
  if ((o.order ?? "shuffled") === "shuffled") shuffle(list, o.random ?? Math.random);
  return list.map((der) => pemEncode("CERTIFICATE", der)).join("");
}

/** rand.Shuffle's Fisher-Yates: from the end, swap with a uniformly chosen earlier-or-same index. */
function shuffle<T>(list: T[], random: () => number): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
}

/** Go's pointer fields: absent and null are nil. */
function isSet<T>(v: T | null | undefined): v is T {
  return v !== undefined && v !== null;
}
