/**
 * A budget for the structure of a JSON body, checked on its bytes before anything parses it.
 *
 * MAX_EVENT_BYTES bounds an event's bytes, not what parsing them costs: V8 spends about 64 bytes
 * on an empty object against the 3 it takes in JSON, and the codec parses a structured-mode body
 * twice. Fifty one-MiB events of `[{},{},…]` at once (one pod's containerConcurrency) took a
 * function to 1.7 GiB of RSS here, against a 256 Mi container limit; fifty of one long string,
 * 0.25 GiB.
 *
 * What podcert is sent has little structure: a step's event is a PCR reference, a signer name
 * and up to three JWS strings (about ten values); an ApiServerSource event carries one
 * PodCertificateRequest, a few dozen values plus its labels, annotations, user annotations and
 * managedFields.
 */

import { MAX_JSON_DEPTH, MAX_JSON_VALUES } from "../limits.js";

export { MAX_JSON_DEPTH, MAX_JSON_VALUES };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Why `body` exceeds the budget, or undefined when it does not. It counts structure outside
 * strings (UTF-8 never puts an ASCII byte inside a multi-byte character) and does not validate:
 * malformed JSON is left to the parser. Values are estimated from above, as containers plus
 * commas plus colons.
 */
export function jsonShapeProblem(body: Uint8Array, o: { maxValues?: number; maxDepth?: number } = {}): string | undefined {
  const maxValues = o.maxValues ?? MAX_JSON_VALUES;
  const maxDepth = o.maxDepth ?? MAX_JSON_DEPTH;
  let values = 0;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
      continue;
    }
    switch (b) {
      case QUOTE:
        inString = true;
        break;
      case OPEN_BRACE:
      case OPEN_BRACKET:
        values++;
        if (++depth > maxDepth) return `JSON nested deeper than ${maxDepth} levels`;
        break;
      case CLOSE_BRACE:
      case CLOSE_BRACKET:
        depth--;
        break;
      case COMMA:
      case COLON:
        values++;
        break;
      default:
        continue;
    }
    if (values > maxValues) return `JSON with more than ${maxValues} values`;
  }
  return undefined;
}
