/**
 * What attestations bind as "the request's key": the SHA-256 of its SubjectPublicKeyInfo, or, when
 * the key cannot be read at all (a request about to be denied for it), of the raw key field, so
 * even a denial is tied to this exact request. The proof is not checked here.
 */
import { createHash } from "node:crypto";
import { KEY_TYPES, type PcrSpec } from "../pcr/model.js";
import { isRequestKeyProblem, readRequestKey } from "../x509/request-key.js";

export function requestKeyBinding(spec: PcrSpec): string {
  // Only the key is bound here, whatever its proof says (a denial may be about the proof).
  const key = readRequestKey(spec, KEY_TYPES, { verify: false });
  if (!isRequestKeyProblem(key)) return key.spkiSha256;
  const raw = spec.stubPKCS10Request || spec.pkixPublicKey || "";
  return `raw:${createHash("sha256").update(raw).digest("base64url")}`;
}
