/**
 * The `validate` step's decision: given a PCR and what the cluster says about its pod, either
 * accept it (with the request's key and what the pod asked for) or deny it with one reason.
 * Rules run in a fixed order so the same request always gets the same reason; this file is where
 * each reason is given (x509/request-key.ts only says what is wrong with a key, keyProblemDenial
 * below turns that into a reason).
 */
import { RequestDeniedError } from "../errors.js";
import type { Namespace, Node, PcrSpec, Pod, PodCertificateRequest, ServiceAccount } from "../pcr/model.js";
import type { NamespaceScope, SignerProfile } from "../profiles/config.js";
import { isRequestKeyProblem, readRequestKey, type RequestKey, type RequestKeyProblem } from "../x509/request-key.js";
import { checkUserAnnotations, type ServiceSelection } from "./annotations.js";

export interface ValidationFacts {
  pcr: PodCertificateRequest;
  profile: SignerProfile;
  /** The PCR's namespace; read only when the scope needs its labels. */
  namespace: Namespace | undefined;
  pod: Pod | undefined;
  serviceAccount: ServiceAccount | undefined;
  node: Node | undefined;
}

export type ValidationDecision =
  | { outcome: "validated"; key: RequestKey; services: ServiceSelection }
  | { outcome: "denied"; error: RequestDeniedError };

/** Whether the scope names the namespace; `labels` is undefined when the namespace was not found. */
export function namespaceInScope(scope: NamespaceScope, name: string, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (scope.exclude.includes(name)) return false;
  if (scope.any) return true;
  if (scope.names) return scope.names.includes(name);
  if (scope.matchLabels) {
    if (labels === undefined) return false;
    return Object.entries(scope.matchLabels).every(([k, v]) => labels[k] === v);
  }
  return false;
}

export function describeScope(scope: NamespaceScope): string {
  const parts: string[] = [];
  if (scope.names) parts.push(`namespaces ${scope.names.join(", ")}`);
  if (scope.matchLabels) {
    parts.push(`namespaces labelled ${Object.entries(scope.matchLabels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}`);
  }
  if (scope.any) parts.push("any namespace");
  if (scope.exclude.length > 0) parts.push(`except ${scope.exclude.join(", ")}`);
  return parts.join(" ");
}

/** Why a namespace is out of scope, in words that fit the scope ("only to …" reads wrong after "any namespace"). */
function namespaceRefusal(signer: string, scope: NamespaceScope, ns: string): string {
  if (scope.any === true && scope.exclude.includes(ns)) {
    return `signer ${signer} issues to ${describeScope(scope)}; namespace ${ns} is excluded`;
  }
  return `signer ${signer} issues only to ${describeScope(scope)}; namespace ${ns} is not one of them`;
}

/**
 * Every way the live pod itself differs from what the request claims (exists, UID, node, service
 * account, not terminating, not finished); empty when they agree. sign checks this again just
 * before it writes the certificate.
 */
export function livePodMismatches(spec: Pick<PcrSpec, "podName" | "podUID" | "nodeName" | "serviceAccountName">, pod: Pod | undefined): string[] {
  if (pod === undefined) return [`pod ${spec.podName} does not exist`];
  const problems: string[] = [];
  if (pod.metadata.uid !== spec.podUID) problems.push(`pod UID is ${pod.metadata.uid ?? "unset"}, request says ${spec.podUID}`);
  if ((pod.spec.nodeName ?? "") !== spec.nodeName) {
    problems.push(`pod is on node ${JSON.stringify(pod.spec.nodeName ?? "")}, request says ${spec.nodeName}`);
  }
  const podServiceAccount = pod.spec.serviceAccountName ?? "default";
  if (podServiceAccount !== spec.serviceAccountName) {
    problems.push(`pod runs as service account ${podServiceAccount}, request says ${spec.serviceAccountName}`);
  }
  if (pod.metadata.deletionTimestamp) problems.push("pod is terminating");
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") problems.push(`pod has finished (phase ${phase})`);
  return problems;
}

/** Every way the live pod, its service account and its node differ from the request; empty when they agree. */
export function podMismatches(facts: Pick<ValidationFacts, "pcr" | "pod" | "serviceAccount" | "node">): string[] {
  const { spec } = facts.pcr;
  const problems = livePodMismatches(spec, facts.pod);
  if (facts.pod === undefined) return problems;
  if (facts.serviceAccount === undefined) problems.push(`service account ${spec.serviceAccountName} does not exist`);
  else if (facts.serviceAccount.metadata.uid !== spec.serviceAccountUID) {
    problems.push(`service account UID is ${facts.serviceAccount.metadata.uid ?? "unset"}, request says ${spec.serviceAccountUID}`);
  }
  if (facts.node === undefined) problems.push(`node ${spec.nodeName} does not exist`);
  else if (facts.node.metadata.uid !== spec.nodeUID) {
    problems.push(`node UID is ${facts.node.metadata.uid ?? "unset"}, request says ${spec.nodeUID}`);
  }
  return problems;
}

/**
 * The denial for what is wrong with a request's key. The key's own faults are UnsupportedKeyType:
 * its type, its encoding (a pkixPublicKey that does not decode included), its weakness, whatever
 * proof comes with it. The proof's are InvalidProofOfPossession: missing, malformed or not
 * verifying, the stub CSR included (its self-signature is the proof), and a request carrying
 * both key forms or neither.
 */
export function keyProblemDenial(p: RequestKeyProblem): RequestDeniedError {
  return new RequestDeniedError(keyProblemReason(p), p.message);
}

function keyProblemReason(p: RequestKeyProblem): "UnsupportedKeyType" | "InvalidProofOfPossession" {
  switch (p.problem) {
    case "unsupportedType":
    case "unusableKey":
      return "UnsupportedKeyType";
    case "malformed":
      return p.field === "pkixPublicKey" ? "UnsupportedKeyType" : "InvalidProofOfPossession";
    case "badProof":
      return "InvalidProofOfPossession";
  }
}

function deny(reason: RequestDeniedError["reason"], message: string): ValidationDecision {
  return { outcome: "denied", error: new RequestDeniedError(reason, message) };
}

export function decideValidation(facts: ValidationFacts): ValidationDecision {
  const { pcr, profile } = facts;
  const ns = pcr.metadata.namespace;

  if (!namespaceInScope(profile.namespaces, ns, facts.namespace?.metadata.labels ?? (facts.namespace ? {} : undefined))) {
    return deny("NamespaceNotAllowed", namespaceRefusal(profile.name, profile.namespaces, ns));
  }

  const annotations = checkUserAnnotations(pcr.spec.unverifiedUserAnnotations, profile);
  // A well-formed list of too many Services is decided last, after the request's own checks.
  if (!annotations.ok && annotations.reason === "InvalidUnverifiedUserAnnotations") return deny(annotations.reason, annotations.message);

  // UnsupportedKeyType, then InvalidProofOfPossession: the key is judged before its proof.
  const key = readRequestKey(pcr.spec, profile.allowedKeyTypes);
  if (isRequestKeyProblem(key)) return { outcome: "denied", error: keyProblemDenial(key) };

  const mismatches = podMismatches(facts);
  if (mismatches.length > 0) return deny("PodMismatch", `request does not match the live pod: ${mismatches.join("; ")}`);

  if (!annotations.ok) return deny(annotations.reason, annotations.message);
  return { outcome: "validated", key, services: annotations.services };
}
