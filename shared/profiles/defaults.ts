/**
 * The built-in configuration: the two signers of the seed discussion. Kept as YAML text (the same
 * format an operator writes) so the default goes through the same validation as any file; the
 * copy in examples/config/ate.yaml is checked against it by a test.
 */
import { parseSignerConfig, type SignerConfig } from "./config.js";

export const ATESYSTEM_SIGNER = "atesystem.podcert.ate.dev/identity";
export const WORKERPOOL_SIGNER = "workerpool.podcert.ate.dev/identity";
export const EXPECTS_SERVICE_ANNOTATION = "atesystem.podcert.ate.dev/expects-service";
export const WORKERPOOL_NAMESPACE_LABEL = "podcert.ate.dev/workerpool";

export const DEFAULT_CONFIG_YAML = `\
apiVersion: podcert.ate.dev/v1alpha1
kind: SignerConfig
trustDomain: cluster.local
clusterDomain: cluster.local
attestationTTLSeconds: 900
signers:
  - name: ${ATESYSTEM_SIGNER}
    namespaces:
      names: [ate-system]
    dnsNames:
      optInAnnotation: ${EXPECTS_SERVICE_ANNOTATION}
      maxNames: 100
    maxLifetimeSeconds: 86400
  - name: ${WORKERPOOL_SIGNER}
    namespaces:
      matchLabels:
        ${WORKERPOOL_NAMESPACE_LABEL}: "true"
      exclude: [ate-system]
    podIdentityExtension:
      oid: 1.3.6.1.4.1.32473.1.1
    maxLifetimeSeconds: 86400
`;

let cached: SignerConfig | undefined;

export function defaultSignerConfig(): SignerConfig {
  cached ??= parseSignerConfig(DEFAULT_CONFIG_YAML, "built-in configuration");
  return cached;
}
