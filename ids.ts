/**
 * Content ids: the hex SHA-256 of a chunk's bytes names it on every node,
 * in every manifest and tree, and in the index. This is the one definition;
 * {@linkcode chunkId} computes it with WebCrypto (native, for data),
 * {@linkcode objectId} the same value synchronously (for the small objects
 * the host builds in a loop: trees, checkpoints, snapshot records), and
 * {@linkcode sha256Stream} a whole file's SHA-256 piece by piece (a
 * manifest's checksum). Nothing else in pifs computes SHA-256.
 *
 * @example
 * ```ts
 * import { chunkId, objectId } from "./ids.ts";
 * const abc = new TextEncoder().encode("abc");
 * if ((await chunkId(abc)) !== objectId(abc) || !objectId(abc).startsWith("ba7816bf")) {
 *   throw new Error();
 * }
 * ```
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

/** The id of a chunk: hex SHA-256 of its bytes. */
export async function chunkId(data: Uint8Array): Promise<string> {
  return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource)));
}

/** The same id as {@linkcode chunkId}, computed synchronously. */
export function objectId(bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes));
}

/** A SHA-256 over pieces: `update` each, then `hex()` once. */
export interface Sha256Stream {
  /** Adds the next piece. */
  update(piece: Uint8Array): void;
  /** The hex digest of everything added. */
  hex(): string;
}

/** A new {@linkcode Sha256Stream}. */
export function sha256Stream(): Sha256Stream {
  const h = sha256.create();
  return {
    update: (piece) => void h.update(piece),
    hex: () => bytesToHex(h.digest()),
  };
}
