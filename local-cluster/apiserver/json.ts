/** Reading decoded JSON whose shape is not known yet (request bodies, stored objects). */

/** A JSON object: not null, not an array. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
