/**
 * Go's encoding/pem.Decode, which kube-apiserver's ClusterTrustBundle validation and kubelet's
 * trust bundle projection both loop over. Not shared/x509/pem.ts: that decoder is strict (it
 * refuses headers and malformed blocks outright), while Go skips what does not parse as a block
 * and reports headers, so validation can refuse them with its own message, and kubelet can
 * ignore them. The port follows pem.go (Go 1.21+) step by step:
 *
 * - a block starts at `-----BEGIN ` at the start of the text or after a newline; the type line
 *   must end with `-----` (trailing spaces and tabs ignored);
 * - header lines are lines with a `:` until the first line without one;
 * - the body runs to `\n-----END <type>-----`, whose line may carry only trailing whitespace;
 * - the body is base64 after removing spaces and tabs (StdEncoding also skips \r and \n), with
 *   padding; a block that fails any of this is skipped and the search goes on after its BEGIN line.
 */

export interface GoPemBlock {
  type: string;
  headers: Record<string, string>;
  bytes: Buffer;
}

const PEM_START = "\n-----BEGIN ";
const PEM_END = "\n-----END ";
const PEM_END_OF_LINE = "-----";
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Every block pem.Decode would return, called in a loop until it returns nil. */
export function decodeGoPemBlocks(text: string): GoPemBlock[] {
  const out: GoPemBlock[] = [];
  let rest = text;
  for (;;) {
    const r = decodeOne(rest);
    if (r === undefined) return out;
    out.push(r.block);
    rest = r.rest;
  }
}

function decodeOne(data: string): { block: GoPemBlock; rest: string } | undefined {
  let rest = data;
  for (;;) {
    if (rest.startsWith(PEM_START.slice(1))) rest = rest.slice(PEM_START.length - 1);
    else {
      const at = rest.indexOf(PEM_START);
      if (at < 0) return undefined;
      rest = rest.slice(at + PEM_START.length);
    }

    let typeLine: string;
    [typeLine, rest] = getLine(rest);
    if (!typeLine.endsWith(PEM_END_OF_LINE)) continue;
    const type = typeLine.slice(0, -PEM_END_OF_LINE.length);

    const headers: Record<string, string> = {};
    let headerCount = 0;
    let truncated = false;
    for (;;) {
      if (rest.length === 0) {
        truncated = true;
        break;
      }
      const [line, next] = getLine(rest);
      const colon = line.indexOf(":");
      if (colon < 0) break;
      headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
      headerCount++;
      rest = next;
    }
    if (truncated) return undefined;

    let endIndex: number;
    let endTrailerIndex: number;
    // Without headers the END line may follow the BEGIN line directly (an empty block).
    if (headerCount === 0 && rest.startsWith(PEM_END.slice(1))) {
      endIndex = 0;
      endTrailerIndex = PEM_END.length - 1;
    } else {
      endIndex = rest.indexOf(PEM_END);
      endTrailerIndex = endIndex + PEM_END.length;
    }
    if (endIndex < 0) continue;

    const trailer = rest.slice(endTrailerIndex);
    const trailerLen = type.length + PEM_END_OF_LINE.length;
    if (trailer.length < trailerLen) continue;
    const endLine = trailer.slice(0, trailerLen);
    if (!endLine.startsWith(type) || !endLine.endsWith(PEM_END_OF_LINE)) continue;
    if (getLine(trailer.slice(trailerLen))[0].length !== 0) continue;

    const b64 = rest.slice(0, endIndex).replace(/[ \t\r\n]/g, "");
    if (!STD_BASE64.test(b64)) continue;
    const bytes = Buffer.from(b64, "base64");
    return { block: { type, headers, bytes }, rest: getLine(rest.slice(endIndex + PEM_END.length - 1))[1] };
  }
}

/** pem.getLine: the first line without its line ending and trailing spaces/tabs, and the rest. */
function getLine(data: string): [string, string] {
  let i = data.indexOf("\n");
  let j: number;
  if (i < 0) {
    i = data.length;
    j = i;
  } else {
    j = i + 1;
    if (i > 0 && data[i - 1] === "\r") i--;
  }
  return [data.slice(0, i).replace(/[ \t]+$/, ""), data.slice(j)];
}
