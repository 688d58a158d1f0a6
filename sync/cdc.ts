/**
 * Content-defined chunking (CDC) for the sync engine, in the style of FastCDC:
 * a gear rolling hash looked at only past a minimum chunk size, with
 * normalized chunking (a stricter test before the normal size, a looser one
 * after it) and a hard maximum.
 *
 * A boundary depends only on the bytes of the current chunk (in fact only on
 * the 32 bytes before it and the chunk's length), so an edit changes the
 * chunks around it and the chunking then falls back in step with the old one.
 * The same bytes always give the same chunks, however they were split into
 * `push()` calls or stream writes.
 *
 * - {@linkcode cutPoint}: the end of the next chunk in a contiguous buffer.
 * - {@linkcode Chunker}: incremental; memory stays below `max` bytes.
 * - {@linkcode cdcStream}: a `TransformStream` of bytes into whole chunks.
 *
 * @module
 */

/** Chunk size limits in bytes. */
export interface CdcOptions {
  /** Smallest chunk (except the last one of a stream); at least 64. */
  min: number;
  /** Target mean chunk size: a power of two, `min < avg < max`. */
  avg: number;
  /** Largest chunk; at most 8 MiB (the largest chunk a node stores). */
  max: number;
}

/** The largest chunk a node stores, and so the largest `max` allowed: 8 MiB. */
export const MAX_CHUNK: number = 8 * 1024 * 1024;

/**
 * Default limits: avg 1 MiB, min 256 KiB (avg/4), max 4 MiB (avg*4).
 *
 * The chunker (and SHA-256) run at the same speed for every avg, so avg only
 * trades chunk count (index entries, per-chunk link round trips) against edit
 * cost. In `bench/cdc_bench.ts`, overwriting 1 MiB makes about 2.4 MiB of new
 * chunks at avg 1 MiB against 1.3 MiB at 256 KiB (with 4 times the chunks) and
 * 10 MiB at 4 MiB (where max can only be 2 avg under the 8 MiB node limit).
 */
export const DEFAULT_CDC: CdcOptions = Object.freeze({
  min: 256 * 1024,
  avg: 1024 * 1024,
  max: 4 * 1024 * 1024,
});

/**
 * Throws a `RangeError` naming the field unless `o` is usable: integers with
 * `64 <= min < avg < max <= 8 MiB` and `avg` a power of two.
 *
 * @example
 * ```ts
 * import { validateCdcOptions } from "./cdc.ts";
 * let msg = "";
 * try {
 *   validateCdcOptions({ min: 1024, avg: 3000, max: 65536 });
 * } catch (e) {
 *   msg = (e as Error).message;
 * }
 * if (!msg.includes("avg")) throw new Error(msg);
 * ```
 */
export function validateCdcOptions(o: CdcOptions): void {
  if (o === null || typeof o !== "object") throw new RangeError("CDC options must be an object");
  for (const f of ["min", "avg", "max"] as const) {
    const v = o[f];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(`CDC option ${f} must be a positive integer, got ${String(v)}`);
    }
  }
  const { min, avg, max } = o;
  if (min < 64) throw new RangeError(`CDC option min must be at least 64, got ${min}`);
  if ((avg & (avg - 1)) !== 0 || avg > 2 ** 30) {
    throw new RangeError(`CDC option avg must be a power of two, got ${avg}`);
  }
  if (avg <= min) throw new RangeError(`CDC option avg (${avg}) must be greater than min (${min})`);
  if (max <= avg) throw new RangeError(`CDC option max (${max}) must be greater than avg (${avg})`);
  if (max > MAX_CHUNK) {
    throw new RangeError(`CDC option max must be at most ${MAX_CHUNK} (8 MiB), got ${max}`);
  }
}

// ---------------------------------------------------------------------------
// Gear table

/**
 * 256 pseudo-random 32-bit values, one per byte value, made at load time from
 * a fixed seed so every build of pifs cuts at the same places. Each value is
 * a murmur-style finalizer (xor-shift / multiply, twice) applied to a Weyl
 * sequence (seed + i * golden-ratio constant). Stored as Int32Array so the hot
 * loop stays in int32 arithmetic (the bits are what matter).
 */
const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  let x = 0x70696673; // "pifs"
  for (let i = 0; i < 256; i++) {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    t[i] = z ^ (z >>> 16);
  }
  return t;
})();

/** The gear value of byte `b` as an unsigned 32-bit number (for tests and docs). */
export function gearValue(b: number): number {
  return GEAR[b & 255] >>> 0;
}

/**
 * The hash after the bytes `src[from..to)`, starting from `h`:
 * `h = (h << 1) + GEAR[byte]` (mod 2^32). Bit k of the hash depends on the
 * last k + 1 bytes only, so after 32 bytes the start value is gone.
 */
function gearRoll(src: Uint8Array, from: number, to: number, h: number): number {
  const g = GEAR;
  for (let i = from; i < to; i++) h = ((h << 1) + g[src[i]]) | 0;
  return h;
}

/** The hash when {@linkcode gearScan} last returned. */
let scanHash = 0;

/**
 * Rolls the hash over `src[from..to)` from `h` and returns the first index i
 * after which `(h & mask) === 0`, or -1; the hash is left in `scanHash`.
 */
function gearScan(src: Uint8Array, from: number, to: number, h: number, mask: number): number {
  const g = GEAR;
  let i = from;
  // Four bytes per turn: fewer loop-condition checks in the common case.
  const end4 = to - 3;
  for (; i < end4; i += 4) {
    h = ((h << 1) + g[src[i]]) | 0;
    if ((h & mask) === 0) {
      scanHash = h;
      return i;
    }
    h = ((h << 1) + g[src[i + 1]]) | 0;
    if ((h & mask) === 0) {
      scanHash = h;
      return i + 1;
    }
    h = ((h << 1) + g[src[i + 2]]) | 0;
    if ((h & mask) === 0) {
      scanHash = h;
      return i + 2;
    }
    h = ((h << 1) + g[src[i + 3]]) | 0;
    if ((h & mask) === 0) {
      scanHash = h;
      return i + 3;
    }
  }
  for (; i < to; i++) {
    h = ((h << 1) + g[src[i]]) | 0;
    if ((h & mask) === 0) {
      scanHash = h;
      return i;
    }
  }
  scanHash = h;
  return -1;
}

// ---------------------------------------------------------------------------
// Parameters

/** Bytes of hash history a boundary test looks at (the hash is 32 bits wide). */
const WINDOW = 32;

/** Normalization level: the masks have log2(avg) ± this many bits (see params()). */
const NC_LEVEL = 1;

/** Options with the derived values the scan uses. */
interface Params {
  min: number;
  avg: number;
  max: number;
  /** Chunk length from which the loose mask applies. */
  normal: number;
  /** Strict mask (log2(avg) + 1 top bits), used for lengths below `normal`. */
  maskS: number;
  /** Loose mask (log2(avg) - 1 top bits), used for lengths from `normal` on. */
  maskL: number;
}

/** A mask of the top `bits` bits of a 32-bit word, as an int32. */
function topBits(bits: number): number {
  return bits <= 0 ? 0 : (-1 << (32 - bits)) | 0;
}

/**
 * Checks `o` and derives the scan parameters.
 *
 * Masks: with `b = log2(avg)`, lengths in `[min, normal)` cut where the top
 * `b + 1` bits of the hash are zero (odds 1/(2 avg) per byte), lengths in
 * `[normal, max)` where the top `b - 1` bits are (odds 2/avg). This is
 * FastCDC's normalization level 1: sizes bunch up around the normal point
 * (few chunks near min or max) while a cut still resynchronizes soon after an
 * edit. Level 2 (b ± 2 bits) gives tighter sizes but resyncs worse: its loose
 * mask fires 4 times per avg, so a chunk shifted by an edit mostly ends where
 * the old chunks had no boundary. In a simulation of 400 random avg-sized
 * overwrites (avg 16 KiB, min avg/4) level 2 changed 3.1 chunks on average
 * and more than 4 in 15% of cases; level 1 changed 2.2, more than 4 in 1%.
 * Since a strict-mask match is also a loose-mask match, a cut made before the
 * normal point survives an edit that lengthens its chunk. The top bits are
 * used because bit k of a gear hash sees only the last k + 1 bytes.
 *
 * Normal point: FastCDC puts it at avg, which makes the mean about 1.2 avg
 * at level 1 with min = avg/4. Here it is placed where the expected mean on
 * random data is avg: with p = 1/(2 avg) and q = 2/avg the mean is
 * `min + (1 - e^(-pL)) / p + e^(-pL) / q` for `L = normal - min`, so
 * `e^(-pL) = (1/p + min - avg) / (1/p - 1/q)`. For min = avg/4 that gives
 * normal ≈ 0.61 avg. (It is min when min ≥ avg/2; `max` cuts a few chunks
 * short, so with max = 2 avg the mean is a bit under avg.)
 */
function params(o: CdcOptions): Params {
  validateCdcOptions(o);
  const { min, avg, max } = o;
  const bits = Math.round(Math.log2(avg));
  const invP = avg * 2 ** NC_LEVEL, invQ = avg / 2 ** NC_LEVEL;
  const r = (invP + min - avg) / (invP - invQ);
  let normal = r >= 1 ? min : Math.round(min - invP * Math.log(r));
  normal = Math.max(min, Math.min(max, normal));
  return {
    min,
    avg,
    max,
    normal,
    maskS: topBits(bits + NC_LEVEL),
    maskL: topBits(bits - NC_LEVEL),
  };
}

const DEFAULT_PARAMS = params(DEFAULT_CDC);

function paramsOf(o: CdcOptions | undefined): Params {
  return o === undefined || o === DEFAULT_CDC ? DEFAULT_PARAMS : params(o);
}

/**
 * The normal point of `o`: the chunk length from which the looser mask
 * applies (see the module notes). For tests and tools.
 */
export function normalSize(o: CdcOptions = DEFAULT_CDC): number {
  return paramsOf(o).normal;
}

// ---------------------------------------------------------------------------
// Pure cut point

/**
 * The end of the chunk that starts at `start` in `data[start..end)`, taking
 * `end` as the end of the input: an index `c` with `start < c <= end` (or
 * `c === start` when the range is empty). `c - start` is at least `min`
 * unless the input ends first, and at most `max`.
 *
 * @example
 * ```ts
 * import { cutPoint } from "./cdc.ts";
 * const data = crypto.getRandomValues(new Uint8Array(60000));
 * const opts = { min: 256, avg: 1024, max: 4096 };
 * const c = cutPoint(data, 0, data.length, opts);
 * if (c < 256 || c > 4096) throw new Error(`bad cut ${c}`);
 * ```
 */
export function cutPoint(
  data: Uint8Array,
  start = 0,
  end: number = data.length,
  opts: CdcOptions = DEFAULT_CDC,
): number {
  const p = paramsOf(opts);
  return cut(data, start, end, p);
}

function cut(data: Uint8Array, start: number, end: number, p: Params): number {
  const n = end - start;
  if (n <= p.min) return end;
  // The hash starts WINDOW bytes before the first length tested, so every
  // test sees exactly the 32 bytes before it.
  const h0 = gearRoll(data, start + p.min - WINDOW, start + p.min - 1, 0);
  const sEnd = start + Math.min(n, p.normal) - 1;
  let i = gearScan(data, start + p.min - 1, sEnd, h0, p.maskS);
  if (i >= 0) return i + 1;
  const lEnd = start + Math.min(n, p.max) - 1;
  i = gearScan(data, sEnd, lEnd, scanHash, p.maskL);
  if (i >= 0) return i + 1;
  return lEnd + 1;
}

// ---------------------------------------------------------------------------
// Incremental chunker

/**
 * Splits a byte stream into content-defined chunks, incrementally.
 *
 * `push()` returns the chunks completed so far; `finish()` returns the rest.
 * Boundaries depend only on the bytes, never on how they were split into
 * `push()` calls. At most `max - 1` bytes stay buffered between calls.
 *
 * A returned chunk is either a subarray of the array given to `push()` (when
 * the chunk lies wholly inside it: no copy) or a fresh copy; the chunker never
 * writes into either later. So chunks stay valid as long as the caller does
 * not overwrite the arrays it pushed. After `finish()` the chunker starts
 * over, as if new.
 *
 * @example
 * ```ts
 * import { Chunker } from "./cdc.ts";
 * const opts = { min: 1024, avg: 4096, max: 16384 };
 * const data = new Uint8Array(200_000);
 * for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
 * const ch = new Chunker(opts);
 * const chunks = [...ch.push(data.subarray(0, 70_000)), ...ch.push(data.subarray(70_000))];
 * const last = ch.finish();
 * if (last) chunks.push(last);
 * let total = 0;
 * for (const c of chunks) total += c.length;
 * if (total !== data.length) throw new Error("chunks must cover the input");
 * if (chunks.slice(0, -1).some((c) => c.length < 1024 || c.length > 16384)) {
 *   throw new Error("chunk size out of bounds");
 * }
 * ```
 */
export class Chunker {
  /** The options in use. */
  readonly options: CdcOptions;
  readonly #p: Params;
  /** Bytes of the current chunk seen so far. */
  #len = 0;
  /** The gear hash at the current position (valid once hashing started). */
  #h = 0;
  /** Bytes of the current chunk from earlier pushes: #buf[0..#bufLen). */
  #buf: Uint8Array = new Uint8Array(0);
  #bufLen = 0;

  /** Makes a chunker; throws a `RangeError` on bad options. */
  constructor(opts: CdcOptions = DEFAULT_CDC) {
    this.#p = paramsOf(opts);
    this.options = { min: this.#p.min, avg: this.#p.avg, max: this.#p.max };
  }

  /** Bytes held for the chunk in progress (always below `max`). */
  get buffered(): number {
    return this.#bufLen;
  }

  /** Feeds bytes; returns the chunks they complete, in order. */
  push(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    const n = data.length;
    const p = this.#p;
    const warm = p.min - WINDOW, first = p.min - 1, sEnd = p.normal - 1, lEnd = p.max - 1;
    let i = 0; // next byte of data to look at
    let seg = 0; // where the current chunk's part of data starts
    let len = this.#len, h = this.#h;
    while (i < n) {
      if (len < warm) { // not hashed: no boundary can depend on these bytes
        const k = Math.min(n - i, warm - len);
        i += k;
        len += k;
        continue;
      }
      if (len < first) { // warm the hash up over the 31 bytes before `min`
        const k = Math.min(n - i, first - len);
        h = gearRoll(data, i, i + k, len === warm ? 0 : h);
        i += k;
        len += k;
        continue;
      }
      let at = -1;
      if (len < sEnd) {
        const k = Math.min(n - i, sEnd - len);
        at = gearScan(data, i, i + k, h, p.maskS);
        h = scanHash;
        if (at < 0) {
          i += k;
          len += k;
          continue;
        }
      } else if (len < lEnd) {
        const k = Math.min(n - i, lEnd - len);
        at = gearScan(data, i, i + k, h, p.maskL);
        h = scanHash;
        if (at < 0) {
          i += k;
          len += k;
          continue; // at len === max - 1 the next byte ends the chunk (below)
        }
      } else {
        at = i; // len === max - 1: forced cut after this byte
      }
      // Cut after data[at].
      const end = at + 1;
      if (this.#bufLen === 0) {
        out.push(data.subarray(seg, end));
      } else {
        const c = new Uint8Array(this.#bufLen + end - seg);
        c.set(this.#buf.subarray(0, this.#bufLen));
        c.set(data.subarray(seg, end), this.#bufLen);
        out.push(c);
        this.#bufLen = 0;
      }
      i = seg = end;
      len = 0;
      h = 0;
    }
    this.#len = len;
    this.#h = h;
    if (seg < n) this.#keep(data.subarray(seg, n));
    return out;
  }

  /** Returns the last, partial chunk (undefined if none) and resets the chunker. */
  finish(): Uint8Array | undefined {
    const last = this.#bufLen > 0 ? this.#buf.slice(0, this.#bufLen) : undefined;
    this.#len = this.#bufLen = this.#h = 0;
    return last;
  }

  /** Appends bytes of the chunk in progress to the buffer (< max in total). */
  #keep(b: Uint8Array): void {
    const need = this.#bufLen + b.length;
    if (need > this.#buf.length) {
      const cap = Math.min(this.#p.max, Math.max(need, this.#buf.length * 2, 4096));
      const nb = new Uint8Array(cap);
      nb.set(this.#buf.subarray(0, this.#bufLen));
      this.#buf = nb;
    }
    this.#buf.set(b, this.#bufLen);
    this.#bufLen = need;
  }
}

/**
 * A `TransformStream` that turns a stream of byte arrays into whole
 * content-defined chunks (the same chunks as {@linkcode Chunker}). It holds at
 * most one chunk in progress and waits for the reader before taking more
 * input (the usual `TransformStream` backpressure).
 *
 * @example
 * ```ts
 * import { cdcStream } from "./cdc.ts";
 * const data = crypto.getRandomValues(new Uint8Array(50_000));
 * const chunks = await Array.fromAsync(
 *   ReadableStream.from([data.subarray(0, 10), data.subarray(10)])
 *     .pipeThrough(cdcStream({ min: 256, avg: 1024, max: 4096 })),
 * );
 * if (chunks.reduce((s, c) => s + c.length, 0) !== data.length) throw new Error("lost bytes");
 * ```
 */
export function cdcStream(opts: CdcOptions = DEFAULT_CDC): TransformStream<Uint8Array, Uint8Array> {
  const ch = new Chunker(opts);
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(data, controller) {
      for (const c of ch.push(data)) controller.enqueue(c);
    },
    flush(controller) {
      const last = ch.finish();
      if (last) controller.enqueue(last);
    },
  });
}
