/**
 * The zod every schema in podcert uses: zod/mini, whose functions esbuild can tree-shake (about
 * 15 KiB bundled), not the classic API, whose methods pull in all of zod (about 450 KiB, ~35 ms of
 * every function's cold start). zod/mini installs no locale, so every message would read "Invalid
 * input"; the English one the classic API installs by itself is set here because ConfigError and
 * RejectedEventError texts quote the messages.
 *
 * Import it as `import * as z from "../zod.js"`, never zod or zod/mini directly. It re-exports the
 * functions one by one (`export *`): re-exporting zod/mini's namespace object instead would make
 * esbuild keep all of zod, every locale included. {@link describeIssues} is the one way a failed
 * parse becomes an error message.
 */
import { config } from "zod/mini";
import { en } from "zod/locales";
import { MAX_ISSUE_TEXT_LENGTH, MAX_REPORTED_ISSUES } from "./limits.js";

config(en());

export * from "zod/mini";

/** What {@link describeIssues} reads of a failed parse's error. */
export interface IssueList {
  readonly issues: readonly { readonly path: readonly PropertyKey[]; readonly message: string }[];
}

/**
 * A failed parse's issues as "path: message" texts, for an error that reports every problem at
 * once (fixing one at a time is slow), yet stays bounded for hostile input: at most
 * MAX_REPORTED_ISSUES, then "and N more", each cut to MAX_ISSUE_TEXT_LENGTH characters. Paths are
 * written as Kubernetes writes field paths (`signers[0].name`); "(top level)" is the value itself.
 */
export function describeIssues(...lists: IssueList[]): string[] {
  const issues = lists.flatMap((l) => l.issues);
  const shown = issues.slice(0, MAX_REPORTED_ISSUES).map((i) => cut(`${issuePath(i.path)}: ${i.message}`));
  const more = issues.length - shown.length;
  return more > 0 ? [...shown, `and ${more} more`] : shown;
}

function issuePath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || "(top level)";
}

function cut(text: string): string {
  return text.length <= MAX_ISSUE_TEXT_LENGTH ? text : `${text.slice(0, MAX_ISSUE_TEXT_LENGTH - 1).replace(/[\uD800-\uDBFF]$/u, "")}…`;
}
