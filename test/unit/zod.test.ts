// shared/zod.ts describeIssues: every schema error podcert raises reports all of a value's
// problems (a config with three mistakes is fixed in one go), bounded for hostile input.
import { describe, expect, it } from "vitest";
import { MAX_ISSUE_TEXT_LENGTH, MAX_REPORTED_ISSUES } from "../../shared/limits.js";
import * as z from "../../shared/zod.js";

const schema = z.strictObject({
  name: z.string(),
  port: z.number().check(z.int(), z.minimum(1)),
  items: z.array(z.strictObject({ id: z.string() })),
});
const issuesOf = (value: unknown): string[] => {
  const r = schema.safeParse(value);
  if (r.success) throw new Error("expected a failure");
  return z.describeIssues(r.error);
};

describe("describeIssues", () => {
  it("reports every issue with its path, indices in brackets as in Kubernetes field paths", () => {
    expect(issuesOf({ name: 1, port: 0, items: [{ id: "a" }, { id: 2 }] })).toEqual([
      "name: Invalid input: expected string, received number",
      "port: Too small: expected number to be >=1",
      "items[1].id: Invalid input: expected string, received number",
    ]);
  });

  it("names the value itself (top level)", () => {
    expect(issuesOf("text")).toEqual(["(top level): Invalid input: expected object, received string"]);
  });

  it(`reports at most ${MAX_REPORTED_ISSUES}, then counts the rest`, () => {
    const items = Array.from({ length: 8 }, (_, i) => ({ id: i }));
    const out = issuesOf({ name: "n", port: 1, items });
    expect(out).toHaveLength(MAX_REPORTED_ISSUES + 1);
    expect(out.slice(0, MAX_REPORTED_ISSUES)).toEqual(items.slice(0, MAX_REPORTED_ISSUES).map((_, i) => `items[${i}].id: Invalid input: expected string, received number`));
    expect(out.at(-1)).toBe(`and ${8 - MAX_REPORTED_ISSUES} more`);
    // Exactly the bound: nothing counted.
    expect(issuesOf({ name: "n", port: 1, items: items.slice(0, MAX_REPORTED_ISSUES) })).toHaveLength(MAX_REPORTED_ISSUES);
  });

  it("cuts an issue that quotes a long input (an unknown key) to a bounded text", () => {
    const key = "k".repeat(10_000);
    const [text] = issuesOf({ name: "n", port: 1, items: [], [key]: 1 });
    expect(text).toMatch(/^\(top level\): Unrecognized key: "kkk/);
    expect(text!.length).toBe(MAX_ISSUE_TEXT_LENGTH);
    expect(text!.endsWith("…")).toBe(true);
  });
});
