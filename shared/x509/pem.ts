/**
 * PEM (RFC 7468) encoding and strict decoding.
 *
 * Decoding is strict inside a block: the END label must match the BEGIN label, RFC 1421 style
 * headers ("Proc-Type: ...") are refused, and the body must be canonical base64 (standard
 * alphabet, padding only at the very end, no stray characters). Text outside blocks is ignored,
 * as RFC 7468 allows (openssl prints "subject=..." lines before certificates, for example).
 *
 * Error messages never quote the input: PEM handed to these functions may be private keys.
 */
import { withArticle } from "../words.js";

export interface PemBlock {
  label: string;
  der: Buffer;
}

const LABEL = /^[\x21-\x2c\x2e-\x7e]([- ]?[\x21-\x2c\x2e-\x7e])*$/;

export function pemEncode(label: string, der: Uint8Array): string {
  if (!LABEL.test(label)) throw new Error("invalid PEM label");
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const BEGIN = /^-----BEGIN (.*)-----$/;
const END = /^-----END (.*)-----$/;
const B64_LINE = /^[A-Za-z0-9+/=]*$/;
const B64_ALL = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Every PEM block in `text`, in order. Throws a plain Error naming the block and the problem. */
export function pemDecodeAll(text: string): PemBlock[] {
  if (typeof text !== "string") throw new Error("PEM input is not a string");
  const lines = text.split("\n");
  const out: PemBlock[] = [];
  let label: string | undefined;
  let body: string[] = [];
  let blockNo = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/[ \t\r]+$/, "");
    const where = `PEM block ${blockNo} (line ${i + 1})`;
    if (label === undefined) {
      const m = BEGIN.exec(line);
      if (m) {
        blockNo++;
        if (!LABEL.test(m[1]!)) throw new Error(`PEM block ${blockNo} (line ${i + 1}): invalid label`);
        label = m[1]!;
        body = [];
      } else if (END.test(line)) {
        throw new Error(`PEM END line without BEGIN (line ${i + 1})`);
      }
      continue;
    }
    const e = END.exec(line);
    if (e) {
      if (e[1] !== label) throw new Error(`${where}: END label does not match BEGIN label ${JSON.stringify(label)}`);
      const b64 = body.join("");
      if (b64.length === 0) throw new Error(`${where}: ${label} block is empty`);
      if (!B64_ALL.test(b64)) throw new Error(`${where}: ${label} block is not valid base64`);
      const der = Buffer.from(b64, "base64");
      if (der.toString("base64") !== b64) {
        throw new Error(`${where}: ${label} block is not canonical base64`);
      }
      out.push({ label, der });
      label = undefined;
      continue;
    }
    if (BEGIN.test(line)) throw new Error(`${where}: BEGIN inside the ${label} block (missing END line)`);
    const trimmed = line.replace(/^[ \t]+/, "");
    if (trimmed.includes(":")) throw new Error(`${where}: PEM headers are not supported (${label} block)`);
    if (!B64_LINE.test(trimmed)) throw new Error(`${where}: ${label} block contains characters outside base64`);
    body.push(trimmed);
  }
  if (label !== undefined) throw new Error(`PEM block ${blockNo}: ${label} block has no END line`);
  return out;
}

/** The DER of every block with `label`; throws when any block has another label or none exist. */
export function pemDecodeLabel(text: string, label: string, what = "PEM input"): Buffer[] {
  const blocks = pemDecodeAll(text);
  if (blocks.length === 0) throw new Error(`${what} contains no ${label} PEM block`);
  for (const b of blocks) {
    if (b.label !== label) throw new Error(`${what} contains ${withArticle(b.label)} block where only ${label} is allowed`);
  }
  return blocks.map((b) => b.der);
}
