/**
 * CRC-32C (Castagnoli), as used by every pifs frame and on-card record.
 *
 * @module
 */

const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0x82f63b78 & -(c & 1));
    t[i] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32C of `data`, continuing from `crc` (0 to start).
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * const crc = crc32c(new TextEncoder().encode("123456789"));
 * if (crc !== 0xe3069283) throw new Error("wrong CRC-32C");
 * ```
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = (c >>> 8) ^ TABLE[(c ^ data[i]) & 0xff];
  return ~c >>> 0;
}
