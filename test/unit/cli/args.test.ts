// The CLI's argument parsing in podcert's words, the article before names, and what a cluster file would have ignored.
import { describe, expect, it } from "vitest";
import { editDistance, integer, parse, UsageError } from "../../../cli/args.js";
import { clusterFileProblems, parseClusterFile } from "../../../local-cluster/apiserver/cluster-file.js";
import { withArticle } from "../../../shared/words.js";

const OPTIONS = { out: { type: "string" }, "validity-days": { type: "string" }, force: { type: "boolean" } } as const;
const usageError = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("no error");
};

describe("parse", () => {
  it("reads options and the positionals a command takes", () => {
    expect(parse(["x", "--out", "f", "--force"], OPTIONS, { positionals: 1 })).toEqual({ values: { out: "f", force: true }, positionals: ["x"] });
  });

  it.each([
    ["--validity", "unknown option --validity; did you mean --validity-days?"],
    ["--ot", "unknown option --ot; did you mean --out?"],
    ["--frobnicate", "unknown option --frobnicate"],
  ])("%s: %s", (option, message) => {
    expect(usageError(() => parse([option, "1"], OPTIONS))).toBe(message);
  });

  it("names an option without its value, and a flag given one", () => {
    expect(usageError(() => parse(["--out"], OPTIONS))).toBe("--out needs a value");
    expect(usageError(() => parse(["--out", "--force"], OPTIONS))).toBe("--out needs a value");
    expect(usageError(() => parse(["--force=yes"], OPTIONS))).toBe("--force takes no value");
  });

  it("refuses arguments the command does not take", () => {
    expect(usageError(() => parse(["stray"], OPTIONS))).toBe('unexpected argument "stray"');
  });

  it("checks integer ranges", () => {
    expect(integer({ n: "7" }, "n", { min: 1, max: 10, fallback: 3 })).toBe(7);
    expect(integer({}, "n", { min: 1, max: 10, fallback: 3 })).toBe(3);
    for (const bad of ["-5", "0", "11", "2.5", "", "1e1"]) expect(usageError(() => integer({ n: bad }, "n", { min: 1, max: 10, fallback: 3 }))).toMatch(/^--n must be an integer from 1 to 10/);
  });

  it("measures edit distance", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("same", "same")).toBe(0);
  });
});

describe("withArticle", () => {
  it.each([
    ["ECDSAP256", "an ECDSAP256"],
    ["ED25519", "an ED25519"],
    ["RSA3072", "an RSA3072"],
    ["CERTIFICATE", "a CERTIFICATE"],
    ["PodCertificateRequest", "a PodCertificateRequest"],
    ["issued", "an issued"],
    ["denied", "a denied"],
  ])("%s → %s", (word, expected) => expect(withArticle(word)).toBe(expected));
});

describe("clusterFileProblems", () => {
  it("names kinds the embedded API server does not serve and fields a kind does not have", () => {
    const objects = parseClusterFile(`apiVersion: v1
kind: Pd
metadata: {name: p, namespace: n}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: n, annotation: {a: b}}
specc: {}
spec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: n}
data: {a: b}
`);
    const problems = clusterFileProblems(objects);
    expect(problems.slice(0, 3)).toEqual([
      "Pd n/p: v1 Pd is not a kind the embedded API server serves; ignored",
      "Pod n/q: unknown field specc",
      "Pod n/q: unknown field metadata.annotation",
    ]);
    expect(problems[3]).toMatch(/^the kinds it serves: v1 Namespace, .*v1 Pod/);
    expect(problems).toHaveLength(4);
  });

  it("finds nothing to say about the example cluster's objects", async () => {
    const { readFileSync } = await import("node:fs");
    expect(clusterFileProblems(parseClusterFile(readFileSync("examples/cluster.yaml", "utf8")))).toEqual([]);
  });
});
