// Go's pem.Decode as the CTB validation and kubelet's projection loop over it: what is a block,
// what is skipped, and headers reported rather than refused.
import { describe, expect, it } from "vitest";

import { decodeGoPemBlocks } from "../../../../local-cluster/apiserver/go-pem.js";

const B64 = Buffer.from("hello, pem").toString("base64"); // "aGVsbG8sIHBlbQ=="
const block = (type: string, body = B64, end = type) => `-----BEGIN ${type}-----\n${body}\n-----END ${end}-----\n`;
const decoded = (text: string) => decodeGoPemBlocks(text).map((b) => ({ type: b.type, headers: b.headers, text: b.bytes.toString() }));

describe("decodeGoPemBlocks", () => {
  it.each([
    { case: "one block", text: block("CERTIFICATE"), want: [{ type: "CERTIFICATE", headers: {}, text: "hello, pem" }] },
    { case: "text before, between and after blocks", text: `junk\n${block("A")}more junk\n${block("B")}tail`, want: [{ type: "A", headers: {}, text: "hello, pem" }, { type: "B", headers: {}, text: "hello, pem" }] },
    { case: "CRLF line endings and trailing blanks", text: block("A").replaceAll("\n", " \r\n"), want: [{ type: "A", headers: {}, text: "hello, pem" }] },
    { case: "base64 split over lines with spaces and tabs", text: block("A", "aGVsbG8s\n IHBl\tbQ=="), want: [{ type: "A", headers: {}, text: "hello, pem" }] },
    { case: "headers, with or without a blank line", text: `-----BEGIN A-----\nProc-Type: 4,ENCRYPTED\nX : y \n\n${B64}\n-----END A-----\n${block("B", `K: v\n${B64}`)}`, want: [{ type: "A", headers: { "Proc-Type": "4,ENCRYPTED", X: "y" }, text: "hello, pem" }, { type: "B", headers: { K: "v" }, text: "hello, pem" }] },
    { case: "an empty block", text: "-----BEGIN A-----\n-----END A-----\n", want: [{ type: "A", headers: {}, text: "" }] },
  ])("decodes $case", ({ text, want }) => {
    expect(decoded(text)).toEqual(want);
  });

  it.each([
    { case: "END type differs from BEGIN", text: block("A", B64, "B") },
    { case: "bad base64", text: block("A", "not base64!") },
    { case: "missing padding", text: block("A", "aGVsbG8sIHBlbQ") },
    { case: "BEGIN not at a line start", text: ` ${block("A")}` },
    { case: "no END line", text: `-----BEGIN A-----\n${B64}\n` },
    { case: "something after the END line", text: `-----BEGIN A-----\n${B64}\n-----END A----- x\n` },
    { case: "a type line not ending in dashes", text: `-----BEGIN A----\n${B64}\n-----END A-----\n` },
  ])("skips a block with $case", ({ text }) => {
    expect(decoded(text)).toEqual([]);
    // ...and goes on to the next good one.
    expect(decoded(`${text}${block("NEXT")}`).map((b) => b.type)).toEqual(["NEXT"]);
  });

  it("stops when a block's headers run to the end of the text, as Go returns nil there", () => {
    expect(decoded(`-----BEGIN A-----\nK: v`)).toEqual([]);
  });
});
