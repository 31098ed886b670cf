// Release hygiene a user checks before adopting podcert: the licence the package declares is the
// one the repository ships, and the changelog covers the version package.json names.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { license: string; version: string };

describe("release files", () => {
  it("LICENSE is the full text of the licence package.json declares", () => {
    expect(pkg.license).toBe("Apache-2.0");
    const text = readFileSync("LICENSE", "utf8");
    expect(text).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
    expect(text).toContain("END OF TERMS AND CONDITIONS");
  });

  it("CHANGELOG.md has a section for package.json's version", () => {
    const headings = readFileSync("CHANGELOG.md", "utf8").split("\n").filter((l) => l.startsWith("## "));
    expect(headings.some((h) => h.includes(pkg.version))).toBe(true);
  });
});
