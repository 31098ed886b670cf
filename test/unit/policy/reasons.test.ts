// The documented denial reasons (README) and the code's one list (policy/reasons.ts) agree.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DENIAL_REASONS, isDenialReason } from "../../../shared/policy/reasons.js";

const readme = readFileSync("README.md", "utf8");

describe("DENIAL_REASONS", () => {
  it("is the README's list, in the README's order", () => {
    const line = /^- Denial reasons, checked in this order: ([\s\S]*?)\n(?=- |\n)/m.exec(readme);
    expect(line, "README's denial-reasons bullet").not.toBeNull();
    const named = [...line![1]!.matchAll(/`([A-Z][A-Za-z]+)`/g)].map((m) => m[1]);
    expect(named).toEqual([...DENIAL_REASONS]);
  });

  it("every reason is a valid condition reason, and isDenialReason knows exactly these", () => {
    for (const r of DENIAL_REASONS) expect(r).toMatch(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/);
    expect(isDenialReason("PodMismatch")).toBe(true);
    expect(isDenialReason("podMismatch")).toBe(false);
    expect(isDenialReason("constructor")).toBe(false);
  });
});
