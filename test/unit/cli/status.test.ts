// `podcert status` / `doctor`: the report computed from plain data (no cluster, no files).
import YAML from "yaml";
import { beforeAll, describe, expect, it } from "vitest";

import { namedGrants, renderStatus, statusReport, yamlDocuments, type StatusFacts } from "../../../cli/status.js";
import { clusterTrustBundleName, parseCaTrust, type CaTrust } from "../../../shared/ca/pool.js";
import { desiredTrustBundle } from "../../../shared/ca/publication.js";
import type { ClusterTrustBundle } from "../../../shared/kube/cluster.js";
import type { PodCertificateRequest } from "../../../shared/pcr/model.js";
import { defaultSignerConfig } from "../../../shared/profiles/defaults.js";
import { testCa, type TestCa } from "../../helpers/ca.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const H = 3_600_000;
const config = defaultSignerConfig();
const [A, B] = [...config.signers.keys()] as [string, string];

function trustOf(cas: Record<string, TestCa[]>): CaTrust {
  return parseCaTrust(YAML.stringify({
    apiVersion: "podcert.ate.dev/v1alpha1",
    kind: "CATrust",
    signers: Object.entries(cas).map(([signerName, list]) => ({ signerName, cas: list.map((c) => ({ certificate: c.certificate })) })),
  }));
}

let longA: TestCa;
let longB: TestCa;
let shortB: TestCa;
beforeAll(async () => {
  [longA, longB, shortB] = await Promise.all([
    testCa({ name: "a", notBefore: new Date(NOW.getTime() - H), notAfter: new Date(NOW.getTime() + 365 * 24 * H) }),
    testCa({ name: "b", notBefore: new Date(NOW.getTime() - H), notAfter: new Date(NOW.getTime() + 365 * 24 * H) }),
    testCa({ name: "b-short", notBefore: new Date(NOW.getTime() - H), notAfter: new Date(NOW.getTime() + 5 * H) }),
  ]);
});

const facts = (o: Partial<StatusFacts> = {}): StatusFacts => ({ now: NOW, config: { source: "test", config }, ...o });

function pcr(name: string, signerName: string, ageMinutes: number, condition?: { type: string; reason: string; message: string }): PodCertificateRequest {
  return {
    apiVersion: "certificates.k8s.io/v1beta1",
    kind: "PodCertificateRequest",
    metadata: { namespace: "ns", name, uid: `uid-${name}`, creationTimestamp: new Date(NOW.getTime() - ageMinutes * 60_000).toISOString() },
    spec: { signerName, podName: "p", podUID: "u", serviceAccountName: "sa", serviceAccountUID: "u", nodeName: "n", nodeUID: "u" },
    ...(condition ? { status: { conditions: [{ ...condition, status: "True", lastTransitionTime: NOW.toISOString() }] } } : {}),
  };
}

describe("status report: CAs", () => {
  it("finds nothing wrong when every configured signer has a CA that covers a full certificate", () => {
    const r = statusReport(facts({ trust: { source: "pool", trust: trustOf({ [A]: [longA], [B]: [longB] }) } }));
    expect(r.problems).toEqual([]);
    expect(r.signers.map((s) => [s.signerName, s.cas.map((c) => c.signs)])).toEqual([[A, [true]], [B, [true]]]);
    expect(r.signers[0]!.cas[0]!.remainingSeconds).toBe(365 * 24 * 3600);
  });

  it("names a signer without CA, a CA within the signer's maximum lifetime, and a pool signer not configured", () => {
    const r = statusReport(facts({ trust: { source: "pool", trust: trustOf({ [B]: [shortB], "other.example.com/x": [longA] }) } }));
    expect(r.problems).toEqual([
      `signer ${A} is configured but the CA pool has no CA for it`,
      expect.stringMatching(new RegExp(`^the signing CA of ${B.replaceAll(".", "\\.")} .* ends in 5h, within the signer's maximum certificate lifetime \\(1d\\)`)),
      "the CA pool has signer other.example.com/x, which the configuration does not name",
    ]);
  });

  it("says when no CA can sign now", () => {
    const r = statusReport(facts({ now: new Date(NOW.getTime() + 6 * H), trust: { source: "pool", trust: trustOf({ [A]: [longA], [B]: [shortB] }) } }));
    expect(r.problems).toEqual([expect.stringContaining(`signer ${B} has no CA that can sign now`)]);
  });
});

describe("status report: RBAC", () => {
  const rbac = (signNames: string[]) => namedGrants(yamlDocuments(`
kind: ClusterRole
metadata: {name: podcert-sign}
rules:
  - {apiGroups: [certificates.k8s.io], resources: [podcertificaterequests], verbs: [get]}
  - {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: ${JSON.stringify(signNames)}, verbs: [sign]}
---
kind: ClusterRole
metadata: {name: podcert-publish-trust}
rules:
  - {apiGroups: [certificates.k8s.io], resources: [clustertrustbundles], verbs: [list, create, delete]}
  - {apiGroups: [certificates.k8s.io], resources: [clustertrustbundles], resourceNames: ${JSON.stringify([A, B].map(clusterTrustBundleName))}, verbs: [update]}
  - {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: ${JSON.stringify([A, B])}, verbs: [attest]}
`), "rbac.yaml");

  it("reads the named grants of the manifests", () => {
    expect(rbac([A, B]).map((g) => `${g.role} ${g.verb} ${g.resource} ${g.names.length}`)).toEqual([
      "ClusterRole podcert-sign (rbac.yaml) sign signers 2",
      "ClusterRole podcert-publish-trust (rbac.yaml) update clustertrustbundles 2",
      "ClusterRole podcert-publish-trust (rbac.yaml) attest signers 2",
    ]);
    expect(statusReport(facts({ rbac: { source: "rbac.yaml", grants: rbac([B, A]) } })).problems).toEqual([]);
  });

  it("names the role whose resourceNames differ from the configured signers", () => {
    expect(statusReport(facts({ rbac: { source: "rbac.yaml", grants: rbac([A, "typo.example.com/x"]) } })).problems).toEqual([
      `ClusterRole podcert-sign (rbac.yaml): sign on signers resourceNames lacks ${B}; resourceNames has extra typo.example.com/x (the configuration's signer names)`,
    ]);
  });

  it("says when the manifests grant no sign at all", () => {
    const grants = rbac([A, B]).filter((g) => g.verb !== "sign");
    expect(statusReport(facts({ rbac: { source: "rbac.yaml", grants } })).problems).toEqual(["rbac.yaml: no rule grants sign on signers by name (signer names)"]);
  });
});

describe("status report: the cluster", () => {
  const cluster = (o: Partial<NonNullable<StatusFacts["cluster"]>> = {}): NonNullable<StatusFacts["cluster"]> => ({ server: "https://k", pcrs: [], events: [], bundles: [], ...o });

  it("lists pending requests by age with when the cleaner deletes them and why they wait, and flags the late ones", () => {
    const r = statusReport(facts({
      cluster: cluster({
        pcrs: [pcr("new", A, 1), pcr("old", A, 12), pcr("issued", A, 14, { type: "Issued", reason: "Issued", message: "" }), pcr("theirs", "other.example.com/x", 30)],
        events: [
          { involvedObject: { kind: "PodCertificateRequest", namespace: "ns", name: "old", uid: "uid-old" }, type: "Warning", reason: "NoUsableCa", message: "rotate", source: { component: "podcert-sign" }, lastTimestamp: NOW.toISOString() },
          { involvedObject: { kind: "PodCertificateRequest", namespace: "ns", name: "old", uid: "uid-old" }, type: "Warning", reason: "Other", message: "not podcert's", source: { component: "someone-else" }, lastTimestamp: NOW.toISOString() },
        ],
      }),
    }));
    expect(r.pending!.map((p) => [p.name, p.ageSeconds, p.deletedInSeconds, p.waiting])).toEqual([
      ["theirs", 1800, 0, undefined],
      ["old", 720, 180, "NoUsableCa: rotate"],
      ["new", 60, 840, undefined],
    ]);
    // Only podcert's signers count as problems; 5 minutes by default.
    expect(r.problems).toEqual([`1 request for ${A} pending longer than 5m (oldest ns/old, 12m, NoUsableCa: rotate)`]);
    expect(statusReport(facts({ cluster: cluster({ pcrs: [pcr("old", A, 12)] }), pendingProblemSeconds: 900 })).problems).toEqual([]);
  });

  it("lists denials with their reasons", () => {
    const r = statusReport(facts({ cluster: cluster({ pcrs: [pcr("d", A, 2, { type: "Denied", reason: "NamespaceNotAllowed", message: "namespace ns is not allowed" })] }) }));
    expect(r.denials).toEqual([{ namespace: "ns", name: "d", signerName: A, type: "Denied", reason: "NamespaceNotAllowed", message: "namespace ns is not allowed", at: NOW.toISOString() }]);
    expect(r.problems).toEqual([]);
    expect(renderStatus(r)).toContain("NamespaceNotAllowed");
  });

  it("compares the published bundles with the pool", () => {
    const trust = trustOf({ [A]: [longA], [B]: [longB] });
    const good = [desiredTrustBundle(trust, A), desiredTrustBundle(trust, B)];
    expect(statusReport(facts({ trust: { source: "pool", trust }, cluster: cluster({ bundles: good }) })).problems).toEqual([]);
    const stale: ClusterTrustBundle = { ...good[1]!, spec: { ...good[1]!.spec, trustBundle: longA.certificate } };
    const orphan: ClusterTrustBundle = { ...good[0]!, metadata: { ...good[0]!.metadata, name: "gone:bundle" }, spec: { signerName: "gone.example.com/x", trustBundle: longA.certificate } };
    const r = statusReport(facts({ trust: { source: "pool", trust }, cluster: cluster({ bundles: [stale, orphan] }) }));
    expect(r.bundles!.map((b) => [b.name, b.state])).toEqual([[clusterTrustBundleName(A), "missing"], [clusterTrustBundleName(B), "differs"], ["gone:bundle", "not configured"]]);
    expect(r.problems).toHaveLength(3);
  });

  it("reads the CAs from the published bundles when no pool is given", () => {
    const r = statusReport(facts({ cluster: cluster({ bundles: [desiredTrustBundle(trustOf({ [A]: [longA] }), A)] }) }));
    expect(r.signers[0]).toMatchObject({ signerName: A, casFrom: "published bundle", cas: [{ state: "published", remainingSeconds: 365 * 24 * 3600 }] });
  });

  it("compares the deployed configuration's signers", () => {
    expect(statusReport(facts({ cluster: cluster({ runningSigners: [B, A] }) })).problems).toEqual([]);
    expect(statusReport(facts({ cluster: cluster({ runningSigners: [A] }) })).problems).toEqual([
      `the deployed configuration (ConfigMap podcert/podcert-config) differs from test: it lacks ${B}`,
    ]);
  });
});
