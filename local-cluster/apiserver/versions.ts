/**
 * The emulated control plane's API versions (local-cluster/kubernetes-versions.ts says which
 * version serves what) as pure functions over plain data: whether a type is served, how an
 * object converts between a served version and the store's internal form, which request forms a
 * create may use, the fields a version's schema lacks (dropped on decode, with a warning or, with
 * `fieldValidation=Strict`, a 400) and the deprecation warning kube-apiserver sends.
 *
 * The internal form is the RESOURCE_TYPES entry's version (v1beta1 for pod certificates) with
 * every field any version has, as kube-apiserver's internal type keeps pkixPublicKey and
 * proofOfPossession although v1 lacks them (pkg/apis/certificates/v1/zz_generated.conversion.go,
 * docs/kubernetes-versions.md).
 */

import {
  controlPlaneApis,
  KUBERNETES_VERSIONS,
  type CertificatesApiVersion,
  type ControlPlaneApis,
  type KubernetesVersion,
  type PublicKeyForm,
} from "../kubernetes-versions.js";
import { storageType, type KubeObject, type ResourceType } from "./resources.js";
import { isRecord } from "./json.js";

export const CERTIFICATES_GROUP = "certificates.k8s.io";

const PCR = "PodCertificateRequest";
const CTB = "ClusterTrustBundle";

/** The spec fields each request form uses (the Go fields are []byte, so JSON base64 or null). */
const FORM_FIELDS: Readonly<Record<PublicKeyForm, readonly string[]>> = {
  pkix: ["pkixPublicKey", "proofOfPossession"],
  csr: ["stubPKCS10Request"],
};
const KEY_FIELDS = [...FORM_FIELDS.pkix, ...FORM_FIELDS.csr];

/** The certificates.k8s.io versions serving `kind`, preferred first ([] for other kinds). */
function versionsServing(apis: ControlPlaneApis, kind: string): readonly CertificatesApiVersion[] {
  return kind === PCR ? apis.podCertificateRequests : kind === CTB ? apis.clusterTrustBundles : [];
}

/** Served by control plane `kv`: every type outside certificates.k8s.io, and the versions controlPlaneApis lists. */
export function isServed(kv: KubernetesVersion, t: ResourceType): boolean {
  if (t.group !== CERTIFICATES_GROUP) return true;
  return (versionsServing(controlPlaneApis(kv), t.kind) as readonly string[]).includes(t.version);
}

/** The request forms a PodCertificateRequest create through `t`'s version may use (others: []). */
export function requestForms(kv: KubernetesVersion, t: ResourceType): readonly PublicKeyForm[] {
  if (t.kind !== PCR || t.group !== CERTIFICATES_GROUP) return [];
  const forms = controlPlaneApis(kv).requestForms as Readonly<Record<string, readonly PublicKeyForm[]>>;
  return forms[t.version] ?? [];
}

/**
 * The spec fields `t`'s schema lacks in control plane `kv`: a version has the fields of the
 * request forms it accepts, so v1 has no pkixPublicKey/proofOfPossession and 1.35's v1beta1 no
 * stubPKCS10Request (kubernetes/api certificates/v1/types.go, certificates/v1beta1/types.go at
 * v0.35.0).
 */
export function fieldsNotInSchema(kv: KubernetesVersion, t: ResourceType): readonly string[] {
  if (t.kind !== PCR || t.group !== CERTIFICATES_GROUP) return [];
  const forms = requestForms(kv, t);
  return (Object.keys(FORM_FIELDS) as PublicKeyForm[]).filter((f) => !forms.includes(f)).flatMap((f) => FORM_FIELDS[f]);
}

/**
 * The fields of a request body that decoding into `t`'s Go type would not know, as paths
 * ("spec.pkixPublicKey"): present keys count whatever their value (null too), as for Go's strict
 * decoder. Only the fields that differ between versions are looked for; the server does not know
 * every kind's full schema (docs/kubernetes-versions.md).
 */
export function unknownFields(kv: KubernetesVersion, t: ResourceType, body: KubeObject): string[] {
  const spec = body.spec;
  if (!isRecord(spec)) return [];
  return fieldsNotInSchema(kv, t).filter((f) => Object.hasOwn(spec, f)).map((f) => `spec.${f}`);
}

/**
 * A body in `t`'s version as the internal form: the internal apiVersion, the fields `t` lacks
 * dropped (as the decoder drops unknown fields), and empty key fields (null, "") removed, as Go
 * decodes both to an empty []byte and Semantic.DeepEqual treats empty as absent. A new object;
 * `obj` is not changed.
 */
export function toInternal(kv: KubernetesVersion, t: ResourceType, obj: KubeObject): KubeObject {
  const out: KubeObject = { ...obj, apiVersion: storageType(t).apiVersion };
  if (t.kind !== PCR || !isRecord(obj.spec)) return out;
  const spec = { ...obj.spec };
  for (const f of fieldsNotInSchema(kv, t)) delete spec[f];
  for (const f of KEY_FIELDS) if (spec[f] === null || spec[f] === "") delete spec[f];
  out.spec = spec;
  return out;
}

/**
 * A stored (internal) object as `t`'s version shows it: that apiVersion, without the fields `t`
 * lacks. Through v1, a request made through v1beta1 with a PKIX key shows neither PKIX field and
 * `stubPKCS10Request: null`: v1's Go field is `StubPKCS10Request []byte json:"stubPKCS10Request"`
 * without omitempty, and encoding/json writes a nil []byte as null (kubernetes/api
 * certificates/v1/types.go; the encoding is inferred, not observed on a live server). v1beta1
 * objects are shown as stored, absent key fields absent (a deviation kept for the clients and
 * tests written against this server: kube-apiserver would write null there too). `obj` is not
 * changed (it may be a frozen store object); the result shares unchanged parts with it.
 */
export function fromInternal(kv: KubernetesVersion, t: ResourceType, obj: KubeObject): KubeObject {
  if (obj.apiVersion === t.apiVersion && fieldsNotInSchema(kv, t).length === 0) return obj;
  const out: KubeObject = { ...obj, apiVersion: t.apiVersion };
  if (t.kind !== PCR || !isRecord(obj.spec)) return out;
  const spec: Record<string, unknown> = { ...obj.spec };
  const lacking = fieldsNotInSchema(kv, t);
  for (const f of lacking) delete spec[f];
  if (t.version === "v1") spec.stubPKCS10Request ??= null;
  out.spec = spec;
  return out;
}

interface Deprecation {
  kind: string;
  version: string;
  deprecatedIn: KubernetesVersion;
  removedIn: string;
  replacement: string;
}

/**
 * kubernetes/api certificates/v1beta1/zz_generated.prerelease-lifecycle.go (HEAD 10b39a39):
 * PodCertificateRequest and ClusterTrustBundle v1beta1 deprecated in 1.37, removed in 1.40,
 * replaced by v1.
 */
const DEPRECATIONS: readonly Deprecation[] = [
  { kind: PCR, version: "v1beta1", deprecatedIn: "1.37", removedIn: "1.40", replacement: "v1" },
  { kind: CTB, version: "v1beta1", deprecatedIn: "1.37", removedIn: "1.40", replacement: "v1" },
];

/**
 * The warning kube-apiserver sends (as `Warning: 299 - "…"`) with every request to a deprecated
 * version of a resource, worded as its deprecation.WarningMessage; undefined when not deprecated.
 */
export function deprecationWarning(kv: KubernetesVersion, t: ResourceType): string | undefined {
  if (t.group !== CERTIFICATES_GROUP) return undefined;
  const d = DEPRECATIONS.find((x) => x.kind === t.kind && x.version === t.version);
  if (d === undefined || KUBERNETES_VERSIONS.indexOf(kv) < KUBERNETES_VERSIONS.indexOf(d.deprecatedIn)) return undefined;
  return `${t.group}/${t.version} ${t.kind} is deprecated in v${d.deprecatedIn}+, unavailable in v${d.removedIn}+; use ${t.group}/${d.replacement} ${t.kind}`;
}

/**
 * A `Warning` header value (RFC 7234 warn-code 299, agent "-"), the text a quoted-string with `"`
 * and `\` escaped, as k8s.io/apiserver's warning recorder writes it.
 */
export function warningHeader(text: string): string {
  return `299 - "${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * kube-apiserver's version priority (k8s.io/apimachinery version.CompareKubeAwareVersionStrings):
 * GA before beta before alpha, higher numbers first. Discovery's preferredVersion is the first.
 */
export function compareApiVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [0, 0, 0] as const;
    return [m[2] === undefined ? 3 : m[2] === "beta" ? 2 : 1, Number(m[1]), Number(m[3] ?? 0)] as const;
  };
  const [pa, pb] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pb[i]! - pa[i]!;
  return 0;
}

/** `fieldValidation`: Ignore drops unknown fields silently, Warn (the default) with a warning, Strict refuses them (400). */
export type FieldValidation = "Ignore" | "Warn" | "Strict";

/** The `fieldValidation` query parameter (case-sensitive, as kube-apiserver's); undefined when invalid. */
export function parseFieldValidation(raw: string | null): FieldValidation | undefined {
  if (raw === null || raw === "") return "Warn";
  return raw === "Ignore" || raw === "Warn" || raw === "Strict" ? raw : undefined;
}

/** The emulated /version document. */
export function versionInfo(kv: KubernetesVersion): { major: string; minor: string; gitVersion: string } {
  const [major, minor] = kv.split(".") as [string, string];
  return { major, minor, gitVersion: `v${kv}.0-podcert-embedded` };
}
