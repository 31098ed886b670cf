/**
 * Kubernetes' naming rules (apimachinery's IsDNS1123Label / IsDNS1123Subdomain / IsDNS1035Label),
 * for names that come from outside and go into an API path, a DNS SAN or a configuration. A name
 * that breaks them names no object kube-apiserver could hold, so it is refused before any call.
 */
import { MAX_LABEL_LENGTH, MAX_NAME_LENGTH } from "../limits.js";

/** A namespace name (and Node/Pod hostname labels): lowercase letters, digits, '-', alphanumeric ends. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** An object name (pods, nodes, PCRs, service accounts): dot-separated DNS-1123 labels. */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Service name: a DNS-1123 label that starts with a letter. */
export const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function isNamespaceName(s: string): boolean {
  return s.length <= MAX_LABEL_LENGTH && DNS1123_LABEL.test(s);
}

export function isObjectName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && DNS1123_SUBDOMAIN.test(s);
}

export function isServiceName(s: string): boolean {
  return s.length <= MAX_LABEL_LENGTH && DNS1035_LABEL.test(s);
}
