/**
 * Signatures made without a private key, for tests of keys that allow them. Each is what an
 * attacker would send; the tests check that node:crypto (OpenSSL) accepts it and podcert does not.
 */
import { createHash } from "node:crypto";

/**
 * EMSA-PSS-ENCODE (RFC 8017 9.1.1) with SHA-256, MGF1-SHA-256 and a 32-byte salt. For an RSA key
 * with public exponent 1 this encoded message is itself a valid RSASSA-PSS signature (s^1 = EM).
 */
export function pssEncoded(message: Uint8Array, modulusBits: number): Buffer {
  const sha256 = (...parts: Uint8Array[]) => createHash("sha256").update(Buffer.concat(parts)).digest();
  const emLen = Math.ceil((modulusBits - 1) / 8);
  const salt = Buffer.alloc(32, 0x5a);
  const h = sha256(Buffer.alloc(8), sha256(message), salt);
  const db = Buffer.concat([Buffer.alloc(emLen - 32 - 32 - 2), Buffer.from([1]), salt]);
  for (let counter = 0, at = 0; at < db.length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    for (const byte of sha256(h, c)) if (at < db.length) db[at++]! ^= byte;
  }
  db[0]! &= 0xff >> (8 * emLen - (modulusBits - 1));
  return Buffer.concat([db, h, Buffer.from([0xbc])]);
}

/**
 * An Ed25519 signature (R, S) = (identity, 0): with the identity as public key (or any encoding
 * of it), [S]B = R + [k]A holds for every message, so OpenSSL accepts it for anything.
 */
export const ED25519_IDENTITY_FORGERY = Buffer.from("01" + "00".repeat(63), "hex");
