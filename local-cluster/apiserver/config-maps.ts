/**
 * ConfigMaps as kube-apiserver validates them (pkg/apis/core/validation/validation.go:
 * ValidateConfigMap, ValidateConfigMapUpdate; keys by apimachinery's IsConfigMapKey): a DNS
 * subdomain name, valid keys in `data` and `binaryData` with none in both, at most 1 MiB of values
 * (core.MaxSecretSize, counted over both maps), and an `immutable` ConfigMap's data frozen.
 */

import { fieldCause, type StatusCause } from "./status.js";
import { maxLenError, regexError, tooLong, type ObjectLike } from "./validation-messages.js";

/** core.MaxSecretSize, which ConfigMaps share. */
export const MAX_CONFIG_MAP_SIZE = 1024 * 1024;

const KEY_MAX = 253;
const KEY_FMT = "[-._a-zA-Z0-9]+";
const KEY = /^[-._a-zA-Z0-9]+$/;
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * What decoding the body into the Go type would refuse (a 400 before any validation): `data`
 * maps to strings, `binaryData` to base64 (Go's []byte), `immutable` a boolean.
 */
export function configMapDecodeError(obj: ObjectLike): string | undefined {
  for (const field of ["data", "binaryData"] as const) {
    const m = obj[field];
    if (m === undefined || m === null) continue;
    if (typeof m !== "object" || Array.isArray(m)) return `json: cannot unmarshal ${jsonType(m)} into Go struct field ConfigMap.${field} of type map[string]${field === "data" ? "string" : "[]uint8"}`;
    for (const v of Object.values(m as Record<string, unknown>)) {
      if (typeof v !== "string") return `json: cannot unmarshal ${jsonType(v)} into Go struct field ConfigMap.${field} of type ${field === "data" ? "string" : "[]uint8"}`;
      if (field === "binaryData" && !STD_BASE64.test(v.replace(/[\r\n]/g, ""))) return "illegal base64 data in binaryData";
    }
  }
  const immutable = obj.immutable;
  if (immutable !== undefined && immutable !== null && typeof immutable !== "boolean") {
    return `json: cannot unmarshal ${jsonType(immutable)} into Go struct field ConfigMap.immutable of type bool`;
  }
  return undefined;
}

/** ValidateConfigMap (the name is checked by the store, like every kind's). */
export function validateConfigMap(obj: ObjectLike): StatusCause[] {
  const data = stringMap(obj.data);
  const binaryData = stringMap(obj.binaryData);
  const causes: StatusCause[] = [];
  let total = 0;
  for (const [key, value] of Object.entries(data)) {
    for (const m of configMapKeyErrors(key)) causes.push(fieldCause(`data[${key}]`, `Invalid value: ${JSON.stringify(key)}: ${m}`));
    if (Object.hasOwn(binaryData, key)) {
      causes.push(fieldCause(`data[${key}]`, `Invalid value: ${JSON.stringify(key)}: duplicate of key present in binaryData`));
    }
    total += Buffer.byteLength(value);
  }
  for (const [key, value] of Object.entries(binaryData)) {
    for (const m of configMapKeyErrors(key)) causes.push(fieldCause(`binaryData[${key}]`, `Invalid value: ${JSON.stringify(key)}: ${m}`));
    total += Buffer.from(value, "base64").length; // decoded bytes, as Go's []byte holds them
  }
  // Go passes the root path ("") here: the error is about the whole object.
  if (total > MAX_CONFIG_MAP_SIZE) causes.push(tooLong("", MAX_CONFIG_MAP_SIZE));
  return causes;
}

/** ValidateConfigMapUpdate: an immutable ConfigMap stays immutable and keeps its data. */
export function validateConfigMapUpdate(next: ObjectLike, old: ObjectLike, equal: (a: unknown, b: unknown) => boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  if (old.immutable === true) {
    const frozen = (path: string) => causes.push(fieldCause(path, "Forbidden: field is immutable when `immutable` is set", "FieldValueForbidden"));
    if (next.immutable !== true) frozen("immutable");
    if (!equal(next.data, old.data)) frozen("data");
    if (!equal(next.binaryData, old.binaryData)) frozen("binaryData");
  }
  return [...causes, ...validateConfigMap(next)];
}

/** IsConfigMapKey. */
export function configMapKeyErrors(key: string): string[] {
  const errs: string[] = [];
  if (key.length > KEY_MAX) errs.push(maxLenError(KEY_MAX));
  if (!KEY.test(key)) {
    errs.push(regexError("a valid config key must consist of alphanumeric characters, '-', '_' or '.'", KEY_FMT, "key.name", "KEY_NAME", "key-name"));
  }
  if (key === ".") errs.push("must not be '.'");
  else if (key === "..") errs.push("must not be '..'");
  else if (key.startsWith("..")) errs.push("must not start with '..'");
  return errs;
}

function stringMap(v: unknown): Record<string, string> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, string>) : {};
}

/** The JSON type name Go's decoder reports. */
function jsonType(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  if (typeof v === "boolean") return "bool";
  return typeof v === "object" ? "object" : typeof v;
}
