/**
 * Label and field selectors as kube-apiserver parses them (the subset podcert and client-node use).
 *
 * Labels: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma-separated (AND).
 * Fields: `path=value`, `path==value`, `path!=value`, comma-separated; the paths a resource type
 * supports are listed in resources.ts, anything else is a 400 like on a real cluster.
 */

import { badRequest } from "./status.js";

export type Matcher = (get: (key: string) => string | undefined) => boolean;

/** A label key's shape: an optional DNS-subdomain prefix and `/`, then a qualified name (lengths not checked). */
export const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** A label value's shape (empty allowed; length not checked). */
export const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Splits on commas outside parentheses. */
function terms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of selector) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== "");
}

export function parseLabelSelector(selector: string | undefined): Matcher {
  const tests: Matcher[] = [];
  for (const term of terms(selector ?? "")) {
    const bad = () => badRequest(`unable to parse requirement: invalid label selector ${JSON.stringify(term)}`);
    let m: RegExpExecArray | null;
    if ((m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(term))) {
      const [, key, op, list] = m;
      const values = new Set(list!.split(",").map((v) => v.trim()));
      if (!LABEL_KEY.test(key!) || [...values].some((v) => !LABEL_VALUE.test(v))) throw bad();
      tests.push(op === "in" ? (g) => values.has(g(key!) ?? "\0") : (g) => !values.has(g(key!) ?? "\0"));
    } else if ((m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term))) {
      const [, key, op, value] = m;
      if (!LABEL_KEY.test(key!) || !LABEL_VALUE.test(value!)) throw bad();
      tests.push(op === "!=" ? (g) => g(key!) !== value : (g) => g(key!) === value);
    } else if ((m = /^(!?)\s*([^!=\s()]+)$/.exec(term))) {
      const [, not, key] = m;
      if (!LABEL_KEY.test(key!)) throw bad();
      tests.push(not ? (g) => g(key!) === undefined : (g) => g(key!) !== undefined);
    } else {
      throw bad();
    }
  }
  return (get) => tests.every((t) => t(get));
}

/** `supported` lists the field paths this resource type can be selected by. */
export function parseFieldSelector(selector: string | undefined, supported: readonly string[]): Matcher {
  const tests: Matcher[] = [];
  for (const term of terms(selector ?? "")) {
    const m = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid field selector: ${JSON.stringify(term)}`);
    const [, path, op, value] = m;
    if (!supported.includes(path!)) throw badRequest(`field label not supported: ${path}`);
    tests.push(op === "!=" ? (g) => (g(path!) ?? "") !== value : (g) => (g(path!) ?? "") === value);
  }
  return (get) => tests.every((t) => t(get));
}
