import { describe, expect, it } from "vitest";
import {
  chooseCertificatesApis,
  certificatesVersionOf,
  describeCertificatesApis,
  isCertificatesProblem,
  needsLegacyRead,
  type CertificatesApis,
} from "../../../shared/kube/api-versions.js";
import type { PodCertificateRequest } from "../../../shared/pcr/model.js";

const BOTH = ["podcertificaterequests", "podcertificaterequests/status", "clustertrustbundles"];

function chosen(served: Parameters<typeof chooseCertificatesApis>[0]): CertificatesApis {
  const c = chooseCertificatesApis(served);
  if (isCertificatesProblem(c)) throw new Error(c.problem);
  return c;
}

describe("chooseCertificatesApis", () => {
  it("1.35/1.36 (v1 serves only CertificateSigningRequests): v1beta1 for both kinds, no legacy read", () => {
    expect(chosen({ v1: ["certificatesigningrequests", "certificatesigningrequests/status"], v1beta1: BOTH })).toEqual({ pcr: "v1beta1", ctb: "v1beta1" });
    // The embedded server of 1.35/1.36 serves no v1 at all (404): the same choice.
    expect(chosen({ v1beta1: BOTH })).toEqual({ pcr: "v1beta1", ctb: "v1beta1" });
  });

  it("1.37 (both versions): v1, with v1beta1 kept for requests with a PKIX key", () => {
    expect(chosen({ v1: BOTH, v1beta1: BOTH })).toEqual({ pcr: "v1", pcrLegacy: "v1beta1", ctb: "v1" });
  });

  it("1.40 (v1beta1 removed): v1 alone, no legacy read", () => {
    expect(chosen({ v1: BOTH })).toEqual({ pcr: "v1", ctb: "v1" });
  });

  it("ClusterTrustBundles not served (their feature gate off) leaves the PCR choice alone", () => {
    expect(chosen({ v1beta1: ["podcertificaterequests"] })).toEqual({ pcr: "v1beta1" });
  });

  it("no PodCertificateRequests anywhere is a problem naming the feature gate and runtime-config", () => {
    const c = chooseCertificatesApis({ v1: ["certificatesigningrequests"], v1beta1: ["clustertrustbundles"] });
    expect(isCertificatesProblem(c)).toBe(true);
    expect((c as { problem: string }).problem).toMatch(/serves no podcertificaterequests.*PodCertificateRequest feature gate.*--runtime-config=certificates\.k8s\.io\/v1beta1\/podcertificaterequests=true/);
  });

  it("a subresource alone does not count as serving the resource", () => {
    expect(isCertificatesProblem(chooseCertificatesApis({ v1: ["podcertificaterequests/status"] }))).toBe(true);
  });

  it("describes the choice and why", () => {
    expect(describeCertificatesApis({ pcr: "v1", pcrLegacy: "v1beta1", ctb: "v1" })).toBe(
      "PodCertificateRequests in certificates.k8s.io/v1 (requests with a PKIX key, from kubelets older than 1.36, read through certificates.k8s.io/v1beta1); ClusterTrustBundles in certificates.k8s.io/v1",
    );
    expect(describeCertificatesApis({ pcr: "v1beta1" })).toMatch(/v1beta1 \(v1 not served: Kubernetes 1\.35 or 1\.36\); ClusterTrustBundles not served/);
  });
});

describe("needsLegacyRead", () => {
  const pcr = (apiVersion: string, spec: Partial<PodCertificateRequest["spec"]>) => ({ apiVersion, spec }) as PodCertificateRequest;

  it("only a v1 object showing no key at all: what v1 shows of a v1beta1 PKIX-key request", () => {
    expect(needsLegacyRead(pcr("certificates.k8s.io/v1", {}))).toBe(true);
    expect(needsLegacyRead(pcr("certificates.k8s.io/v1", { stubPKCS10Request: null }))).toBe(true);
    expect(needsLegacyRead(pcr("certificates.k8s.io/v1", { stubPKCS10Request: "MIIB" }))).toBe(false);
    expect(needsLegacyRead(pcr("certificates.k8s.io/v1beta1", {}))).toBe(false);
  });
});

describe("certificatesVersionOf", () => {
  it("reads certificates.k8s.io v1 and v1beta1 only", () => {
    expect(certificatesVersionOf("certificates.k8s.io/v1")).toBe("v1");
    expect(certificatesVersionOf("certificates.k8s.io/v1beta1")).toBe("v1beta1");
    expect(certificatesVersionOf("certificates.k8s.io/v1alpha1")).toBeUndefined();
    expect(certificatesVersionOf("example.com/v1")).toBeUndefined();
    expect(certificatesVersionOf(undefined)).toBeUndefined();
  });
});
