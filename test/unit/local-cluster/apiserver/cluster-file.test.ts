import { describe, expect, it } from "vitest";

import { MAX_CLUSTER_FILE_BYTES, parseClusterFile } from "../../../../local-cluster/apiserver/cluster-file.js";
import { startApiServer } from "../../../../local-cluster/apiserver/server.js";
import { ConfigError } from "../../../../shared/errors.js";

const MULTI = `
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-0, namespace: team-a, uid: 11111111-2222-3333-4444-555555555555}
    spec: {nodeName: node-1, serviceAccountName: web}
  - apiVersion: v1
    kind: ServiceAccount
    metadata: {name: web, namespace: team-a}
---
# a comment-only document is empty
---
apiVersion: v1
kind: Node
metadata:
  name: node-1
---
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"env": "dev"}}}
---
apiVersion: v1
kind: PodList
metadata: {resourceVersion: "12345"}
items:
  - metadata: {name: web-1, namespace: team-a}
    spec: {nodeName: node-1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
`;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("parseClusterFile", () => {
  it("reads Lists, typed lists and multi-document YAML (JSON included)", () => {
    const objs = parseClusterFile(MULTI);
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      "Pod/web-0", "ServiceAccount/web", "Node/node-1", "Namespace/team-a", "Pod/web-1", "Deployment/web",
    ]);
    expect(objs[4]).toMatchObject({ apiVersion: "v1", kind: "Pod", spec: { nodeName: "node-1" } });
    expect(objs[3]!.metadata.labels).toEqual({ env: "dev" });
  });

  it("reads a JSON List as kubectl -o json prints it", () => {
    const text = JSON.stringify({ apiVersion: "v1", kind: "List", items: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "x" } }], metadata: {} });
    expect(parseClusterFile(text)).toHaveLength(1);
    expect(parseClusterFile("")).toEqual([]);
  });

  it("reads one JSON text as the YAML parser reads it (typed lists filled in), and everything else as YAML", () => {
    const list = {
      apiVersion: "v1",
      kind: "PodList",
      metadata: { resourceVersion: "7" },
      items: [{ metadata: { name: "web-0", namespace: "team-a", labels: { app: "web" } }, spec: { nodeName: "n", containers: [{ name: "c", image: "i" }] } }],
    };
    const json = JSON.stringify(list, null, 2);
    // The same text with a second, empty document is no longer one JSON text: the YAML parser reads it.
    const viaYaml = parseClusterFile(`${json}\n---\n`);
    expect(parseClusterFile(`  \n${json}`)).toEqual(viaYaml);
    expect(viaYaml[0]).toMatchObject({ apiVersion: "v1", kind: "Pod", metadata: { name: "web-0" } });
    // YAML flow style starts with "{" too, and is no JSON.
    expect(parseClusterFile("{apiVersion: v1, kind: Namespace, metadata: {name: x}}").map((o) => o.metadata.name)).toEqual(["x"]);
    // Neither JSON nor YAML: the YAML parser's error, as before.
    expect(configError(() => parseClusterFile('{"apiVersion": "v1", "kind": ')).message).toMatch(/^cluster file document 0: invalid YAML/);
  });

  it("keeps the last of a key repeated in a JSON object, as kube-apiserver's default decoding does; YAML refuses it", () => {
    const text = '{"apiVersion": "v1", "kind": "Pod", "kind": "Namespace", "metadata": {"name": "a"}}';
    expect(parseClusterFile(text).map((o) => o.kind)).toEqual(["Namespace"]);
    expect(configError(() => parseClusterFile(`${text}\n---\n`)).message).toMatch(/invalid YAML: .*unique/i);
  });

  it("names the document, the item and the problem", () => {
    const noName = configError(() => parseClusterFile("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\n"));
    expect(noName.message).toMatch(/^cluster file document 1: metadata\.name: /);
    const inList = configError(() => parseClusterFile("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {kind: Pod, metadata: {name: b}}\n"));
    expect(inList.message).toMatch(/^cluster file document 0, items\[1\]: apiVersion: /);
    expect(configError(() => parseClusterFile("- just\n- a list\n")).message).toMatch(/^cluster file document 0: /);
    expect(configError(() => parseClusterFile("a: [unclosed\n")).message).toMatch(/^cluster file document 0: invalid YAML/);
    expect(configError(() => parseClusterFile("kind: List\nitems: 3\n")).message).toMatch(/items: must be a list/);
  });

  it("names every problem of an object, not only the first", () => {
    const message = configError(() => parseClusterFile("kind: ''\nmetadata: {name: 7}\n")).message;
    expect(message).toMatch(/^cluster file document 0: apiVersion: .+; kind: .+; metadata\.name: /);
  });

  it("refuses files over the size limit", () => {
    const big = "#".repeat(MAX_CLUSTER_FILE_BYTES + 1);
    expect(configError(() => parseClusterFile(big)).message).toMatch(/limit is 67108864/);
  });

  it("seeds the embedded API server: namespaces first, unknown kinds skipped and logged", async () => {
    const lines: string[] = [];
    const server = await startApiServer({ objects: parseClusterFile(MULTI), log: (l) => lines.push(l) });
    try {
      expect(server.store.get("Pod", "team-a", "web-0")?.metadata.uid).toBe("11111111-2222-3333-4444-555555555555");
      expect(server.store.get("Namespace", undefined, "team-a")?.metadata.labels).toMatchObject({ env: "dev" });
      expect(server.store.list("pods").items).toHaveLength(2);
      expect(lines).toEqual([expect.stringMatching(/^skipping object 5 \(Deployment team-a\/web\): apps\/v1 Deployment is not served/)]);
    } finally {
      await server.stop();
    }
  });

  it("reports a bad seed object as ConfigError with its index", async () => {
    const objects = [
      { apiVersion: "v1", kind: "Pod", metadata: { name: "a", namespace: "x" } },
      { apiVersion: "v1", kind: "Pod", metadata: { name: "a", namespace: "x" } },
    ];
    await expect(startApiServer({ objects })).rejects.toThrow(/^object 1 \(Pod x\/a\): pods "a" already exists$/);
    await expect(startApiServer({ objects: [{ apiVersion: "v1", kind: "Pod", metadata: { name: "Bad" , namespace: "x" } }] }))
      .rejects.toBeInstanceOf(ConfigError);
  });
});
