/**
 * Sizes, the one way pifs reads and writes them: {@linkcode parseSize} for
 * every size a user types (job files, `--size`, `--card-size`) and
 * {@linkcode formatBytes} for every size pifs prints. All units are binary:
 * `4M`, `4MB` and `4MiB` are each 4 × 2²⁰ bytes.
 *
 * @example
 * ```ts
 * import { formatBytes, parseSize } from "./units.ts";
 * if (parseSize("4MiB") !== 4 * 1024 * 1024 || parseSize("256K") !== 262144) throw new Error();
 * if (formatBytes(1536) !== "1.5 KiB" || formatBytes(1536, true) !== "1536 B") throw new Error();
 * ```
 *
 * @module
 */
import { PifsError } from "./errors.ts";

/** 2¹⁰ bytes. */
export const KiB = 1024;
/** 2²⁰ bytes. */
export const MiB = 1024 * KiB;

/** What {@linkcode parseSize} takes: a whole number of bytes, or a number and a unit. */
export const SIZE_RE: RegExp = /^\s*(\d+(?:\.\d+)?)\s*(?:([KkMmGgTt])([iI]?[bB])?|[bB])?\s*$/;
/** How to write a size, for error messages. */
export const SIZE_HINT = 'a number of bytes or a size like "256KiB", "1MiB", "64M" or "1G"';
const UNIT: Record<string, number> = { K: KiB, M: MiB, G: 1024 * MiB, T: 1024 * 1024 * MiB };

/** A size that is not one. */
export class SizeError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "SIZE";
  /** The error's name. */
  override name = "SizeError";
}

/**
 * A size in bytes: a whole number of bytes, or a number with a unit `K`,
 * `M`, `G`, `T`, optionally followed by `iB` or `B` (binary). Throws
 * {@linkcode SizeError} for anything else, or for a fraction of a byte.
 */
export function parseSize(size: string | number): number {
  const bad = () => new SizeError(`not a size: ${JSON.stringify(size)} (use ${SIZE_HINT})`);
  if (typeof size === "number") {
    if (!Number.isSafeInteger(size) || size < 0) throw bad();
    return size;
  }
  const m = SIZE_RE.exec(size);
  if (!m) throw bad();
  const n = Number(m[1]) * (m[2] ? UNIT[m[2].toUpperCase()] : 1);
  if (!Number.isSafeInteger(n)) throw bad();
  return n;
}

/**
 * Bytes for a person: `512 B`, `12.3 KiB`, `1.5 GiB`, `4.0 MiB` (one decimal
 * from KiB up, so a progress line keeps its width). `exact`: never rounded,
 * in the largest unit that divides `n` (`4 MiB`, `1536 B`), for echoing a
 * size a user gave.
 */
export function formatBytes(n: number, exact = false): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1 && (!exact || n % 1024 === 0)) {
    n /= 1024;
    i++;
  }
  return `${i && !exact ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}
