import { describe, expect, it } from "vitest";
import {
  controlPlaneApis,
  DEFAULT_KUBERNETES_VERSION,
  kubeletRequestBehaviour,
  KUBERNETES_VERSION_ENV,
  KUBERNETES_VERSIONS,
  kubernetesVersionFromEnv,
  parseKubernetesVersion,
} from "../../../local-cluster/kubernetes-versions.js";
import { ConfigError } from "../../../shared/errors.js";

describe("emulated Kubernetes versions", () => {
  it("every kubelet writes a version and a form its own control plane accepts", () => {
    for (const v of KUBERNETES_VERSIONS) {
      const { apiVersion, form } = kubeletRequestBehaviour(v);
      const apis = controlPlaneApis(v);
      expect(apis.podCertificateRequests, v).toContain(apiVersion);
      expect(apis.requestForms[apiVersion], v).toContain(form);
    }
  });

  it("an older kubelet's request is accepted by every newer control plane (the supported skew)", () => {
    for (const [i, kubelet] of KUBERNETES_VERSIONS.entries()) {
      for (const plane of KUBERNETES_VERSIONS.slice(i)) {
        const { apiVersion, form } = kubeletRequestBehaviour(kubelet);
        expect(controlPlaneApis(plane).requestForms[apiVersion], `${kubelet} kubelet on ${plane}`).toContain(form);
      }
    }
  });

  it("v1 carries only the stub CSR; 1.35's v1beta1 only the PKIX key", () => {
    expect(controlPlaneApis("1.37").requestForms.v1).toEqual(["csr"]);
    expect(controlPlaneApis("1.35").requestForms.v1beta1).toEqual(["pkix"]);
    expect(controlPlaneApis("1.36").podCertificateRequests).toEqual(["v1beta1"]);
    expect(controlPlaneApis("1.37").podCertificateRequests[0]).toBe("v1");
  });

  it("reads versions as people and Nodes write them", () => {
    expect(parseKubernetesVersion("1.37")).toBe("1.37");
    expect(parseKubernetesVersion("v1.35.4")).toBe("1.35");
    expect(parseKubernetesVersion("v1.36.0-podcert-embedded")).toBe("1.36");
    expect(parseKubernetesVersion("v1.36.1+k3s1")).toBe("1.36");
    expect(parseKubernetesVersion("1.34")).toBeUndefined();
    expect(parseKubernetesVersion("1.370")).toBeUndefined();
    expect(parseKubernetesVersion("latest")).toBeUndefined();
  });

  it("the environment sets the run's default; an unknown value is an error, not a fallback", () => {
    expect(kubernetesVersionFromEnv({})).toBe(DEFAULT_KUBERNETES_VERSION);
    expect(kubernetesVersionFromEnv({ [KUBERNETES_VERSION_ENV]: "v1.37" })).toBe("1.37");
    expect(() => kubernetesVersionFromEnv({ [KUBERNETES_VERSION_ENV]: "1.34" })).toThrow(ConfigError);
    expect(() => kubernetesVersionFromEnv({ [KUBERNETES_VERSION_ENV]: "1.34" })).toThrow(/PODCERT_KUBERNETES_VERSION="1\.34" is not one of 1\.35, 1\.36, 1\.37/);
  });
});
