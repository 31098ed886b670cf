// The images the manifests run are pinned: podcert's own (every function, the dead-letter sink
// among them) to the version in package.json (a release changes both together, so `kubectl apply`
// of a release never runs another release's code), any other never to a moving tag such as :latest.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { STEPS } from "../../shared/steps.js";
import { clone, loadDir, ROOT, type Doc, type Obj } from "./manifests.js";

const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const { docs } = loadDir();

const containersOf = (docs: readonly Doc[]) =>
  docs.flatMap((d) => ((d.obj as Obj).spec?.template?.spec?.containers ?? []).map((c: Obj) => ({ file: d.file, image: String(c.image) })));

/** Every podcert image must name `version` as its tag; other images need a tag or digest that is not `latest`. */
export function imageTagProblems(docs: readonly Doc[], version: string): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const { file, image } of containersOf(docs)) {
    const own = /(?:^|\/)podcert-([a-z-]+)(?::([^@]+))?(?:@.+)?$/.exec(image);
    if (own !== null) {
      seen.add(own[1]!);
      if (own[2] !== version) problems.push(`${file}: ${image} is not tagged ${version} (package.json's version)`);
    } else if (/:latest(@|$)/.test(image)) {
      problems.push(`${file}: ${image} follows :latest`);
    }
  }
  for (const fn of STEPS) if (!seen.has(fn)) problems.push(`no image podcert-${fn}`);
  return problems;
}

describe("image tags in knative/", () => {
  it("podcert's images carry package.json's version; no image follows :latest", () => {
    expect(imageTagProblems(docs, version)).toEqual([]);
  });

  it("detects an image left at an older version, an untagged one and :latest", () => {
    const edited = clone(docs);
    const images = containersOf(edited);
    expect(images.length).toBe(STEPS.length);
    const set = (name: RegExp, image: string) => {
      for (const d of edited) for (const c of (d.obj as Obj).spec?.template?.spec?.containers ?? []) if (name.test(String(c.image))) c.image = image;
    };
    set(/podcert-sign:/, "registry.example/podcert-sign:0.0.1");
    set(/podcert-deny:/, "podcert-deny");
    set(/podcert-dead-letter:/, "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest");
    expect(imageTagProblems(edited, version).sort()).toEqual([
      "dead-letter.yaml: gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest follows :latest",
      "no image podcert-dead-letter",
      `services.yaml: podcert-deny is not tagged ${version} (package.json's version)`,
      `services.yaml: registry.example/podcert-sign:0.0.1 is not tagged ${version} (package.json's version)`,
    ]);
  });

  it("the README says how to upgrade every podcert image, the dead-letter sink's among them, and no longer pins a foreign one", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const section = /^### Upgrading\n([\s\S]*?)(?=^#{1,3} )/m.exec(readme)?.[1] ?? "";
    expect(section).toContain("newTag");
    expect(section).toContain("podcert-dead-letter");
    expect(readme).not.toContain("event_display");
  });
});
