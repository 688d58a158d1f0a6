/**
 * Deterministic, capacity-weighted chunk placement by weighted rendezvous
 * hashing (highest random weight).
 *
 * Every (chunk, node) pair gets a score `weight / -ln(u)`, where `u` is a
 * uniform hash of the pair in (0, 1); the nodes ranked by score, highest
 * first, are where the chunk's copies go. A node's chance of being first is
 * its share of the total weight, and adding or removing a node moves only
 * the copies that the change has to move: a new node takes copies only for
 * itself, and a removed node's copies go to the next nodes in each chunk's
 * ranking, while every other copy stays where it is.
 *
 * The hash is part of the on-disk layout (it decides where existing chunks
 * are found), so it is pinned by test vectors and must not change:
 *
 * - `c` = the first 16 hex digits of the chunk id, as a big-endian uint64;
 * - `k` = `mix64(id + 0x9e3779b97f4a7c15)` for node id `id`;
 * - `h` = `mix64(c ^ k)`;
 * - `u` = `((h >>> 12) + 0.5) / 2^52`, which lies strictly inside (0, 1);
 *
 * where `mix64` is the splitmix64 finalizer
 * (`z ^= z >>> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >>> 27;
 * z *= 0x94d049bb133111eb; z ^= z >>> 31`, all mod 2^64). Equal scores are
 * ranked by smaller node id first. All arithmetic is done in 32-bit halves,
 * so placing a chunk is synchronous and allocation-light.
 *
 * Only primaries are spread exactly in proportion to weight: later copies
 * go to the best-ranked node that does not already hold one, so with
 * `copies > 1` heavy nodes hold somewhat less than their weight's share of
 * all copies (with `copies` equal to the node count, every node holds
 * every chunk).
 *
 * @example
 * ```ts
 * import { placeChunk } from "./placement.ts";
 * const nodes = [{ id: 1, weight: 64e9 }, { id: 2, weight: 32e9 }, { id: 3, weight: 32e9 }];
 * const where = placeChunk("ab".repeat(32), nodes, 2);
 * if (where.length !== 2 || where[0] === where[1]) throw new Error();
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";

/**
 * A node that chunks can be placed on.
 *
 * @example
 * ```ts
 * import { type PlacementNode, rankNodes } from "./placement.ts";
 * const node: PlacementNode = { id: 7, weight: 32 * 2 ** 30 };
 * if (rankNodes("00".repeat(32), [node])[0] !== 7) throw new Error();
 * ```
 */
export interface PlacementNode {
  /** Node id within the cluster: an integer from 0 to 2^53 - 1, unique among the nodes. */
  id: number;
  /**
   * The node's relative share of chunks, e.g. its capacity in bytes: a finite
   * number > 0. Only ratios between the nodes' weights matter.
   */
  weight: number;
}

/**
 * A chunk id, node list or copy count that placement cannot use. `value` is
 * the offending value.
 *
 * @example
 * ```ts
 * import { placeChunk, PlacementError } from "./placement.ts";
 * try {
 *   placeChunk("00".repeat(32), [{ id: 1, weight: 1 }], 2);
 *   throw new Error("no error");
 * } catch (e) {
 *   if (!(e instanceof PlacementError) || e.value !== 2) throw e;
 * }
 * ```
 */
export class PlacementError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "PLACEMENT";
  /** The error's name. */
  override name = "PlacementError";
  /** The offending value. */
  readonly value: unknown;
  /** Makes the error for `value`, described by `message`. */
  constructor(message: string, value: unknown) {
    super(message);
    this.value = value;
  }
}

const CHUNK_ID = /^[0-9a-f]{64}$/;
const TWO_32 = 4294967296;
const TWO_52 = 4503599627370496;

function show(value: unknown): string {
  if (typeof value === "string") {
    const s = value.length > 80 ? `${value.slice(0, 80)}…` : value;
    return `${JSON.stringify(s)} (${value.length} chars)`;
  }
  if (typeof value === "number") return String(value); // JSON would show NaN as null
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function check_chunk_id(chunkId: string): void {
  if (typeof chunkId !== "string" || !CHUNK_ID.test(chunkId)) {
    throw new PlacementError(
      `chunk id must be 64 lowercase hex digits, got ${show(chunkId)}`,
      chunkId,
    );
  }
}

function check_nodes(nodes: readonly PlacementNode[]): void {
  const seen = new Set<number>();
  for (const node of nodes) {
    const { id, weight } = node;
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new PlacementError(
        `node id must be an integer from 0 to 2^53 - 1, got ${show(id)}`,
        id,
      );
    }
    if (seen.has(id)) throw new PlacementError(`duplicate node id ${id}`, id);
    seen.add(id);
    if (typeof weight !== "number" || !Number.isFinite(weight) || weight <= 0) {
      throw new PlacementError(
        `node ${id} has weight ${show(weight)}: it must be a finite number > 0`,
        weight,
      );
    }
  }
}

// The result of mix64, as two uint32 halves (kept here to avoid allocating).
let out_hi = 0;
let out_lo = 0;

/** out = (hi:lo * bh:bl) mod 2^64, for uint32 halves. */
function mul64(hi: number, lo: number, bh: number, bl: number): void {
  const a0 = lo & 0xffff, a1 = lo >>> 16, b0 = bl & 0xffff, b1 = bl >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  out_lo = ((mid << 16) | (p00 & 0xffff)) >>> 0;
  const carry = p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16); // high half of lo * bl
  out_hi = (carry + Math.imul(hi, bl) + Math.imul(lo, bh)) >>> 0;
}

/** out = the splitmix64 finalizer of hi:lo. */
function mix64(hi: number, lo: number): void {
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0;
  hi = (hi ^ (hi >>> 30)) >>> 0;
  mul64(hi, lo, 0xbf58476d, 0x1ce4e5b9);
  lo = (out_lo ^ ((out_lo >>> 27) | (out_hi << 5))) >>> 0;
  hi = (out_hi ^ (out_hi >>> 27)) >>> 0;
  mul64(hi, lo, 0x94d049bb, 0x133111eb);
  lo = (out_lo ^ ((out_lo >>> 31) | (out_hi << 1))) >>> 0;
  hi = (out_hi ^ (out_hi >>> 31)) >>> 0;
  out_hi = hi;
  out_lo = lo;
}

/** The score of node `id` with `weight` for the chunk whose first 64 bits are chi:clo. */
function score(chi: number, clo: number, id: number, weight: number): number {
  // k = mix64(id + golden ratio constant)
  const sum_lo = (id >>> 0) + 0x7f4a7c15;
  const carry = sum_lo >= TWO_32 ? 1 : 0;
  mix64((Math.floor(id / TWO_32) + 0x9e3779b9 + carry) >>> 0, sum_lo >>> 0);
  // h = mix64(c ^ k)
  mix64((chi ^ out_hi) >>> 0, (clo ^ out_lo) >>> 0);
  const u = (out_hi * 1048576 + (out_lo >>> 12) + 0.5) / TWO_52;
  return weight / -Math.log(u);
}

function rank(chunkId: string, nodes: readonly PlacementNode[]): number[] {
  const chi = parseInt(chunkId.slice(0, 8), 16);
  const clo = parseInt(chunkId.slice(8, 16), 16);
  const scored = nodes.map((n) => ({ id: n.id, score: score(chi, clo, n.id, n.weight) }));
  scored.sort((a, b) => b.score - a.score || a.id - b.id);
  return scored.map((s) => s.id);
}

/**
 * All node ids, ranked for the chunk `chunkId`: the best place for its
 * first copy first. The result does not depend on the order of `nodes`.
 *
 * Throws {@linkcode PlacementError} for a chunk id that is not 64 lowercase
 * hex digits, a bad or duplicate node id, or a weight that is not a finite
 * number > 0.
 *
 * @example
 * ```ts
 * import { rankNodes } from "./placement.ts";
 * const ranked = rankNodes("0f".repeat(32), [{ id: 1, weight: 1 }, { id: 2, weight: 1 }]);
 * if ([...ranked].sort().join() !== "1,2") throw new Error();
 * ```
 */
export function rankNodes(chunkId: string, nodes: readonly PlacementNode[]): number[] {
  check_chunk_id(chunkId);
  check_nodes(nodes);
  return rank(chunkId, nodes);
}

/**
 * The ids of the `copies` nodes that hold the chunk `chunkId`, best first:
 * the first `copies` of {@linkcode rankNodes}, so all distinct.
 *
 * Throws {@linkcode PlacementError} if `copies` is not an integer from 1 to
 * `nodes.length`, and for the bad input that {@linkcode rankNodes} rejects.
 *
 * @example
 * ```ts
 * import { placeChunk, rankNodes } from "./placement.ts";
 * const id = "5e".repeat(32);
 * const nodes = [{ id: 0, weight: 3 }, { id: 1, weight: 1 }, { id: 2, weight: 2 }];
 * const where = placeChunk(id, nodes, 2);
 * if (where.join() !== rankNodes(id, nodes).slice(0, 2).join()) throw new Error();
 * ```
 */
export function placeChunk(
  chunkId: string,
  nodes: readonly PlacementNode[],
  copies: number,
): number[] {
  check_chunk_id(chunkId);
  check_nodes(nodes);
  if (!Number.isInteger(copies) || copies < 1 || copies > nodes.length) {
    throw new PlacementError(
      `copies must be an integer from 1 to ${nodes.length} (the number of nodes), got ${
        show(copies)
      }`,
      copies,
    );
  }
  return rank(chunkId, nodes).slice(0, copies);
}
