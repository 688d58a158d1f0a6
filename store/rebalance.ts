/**
 * Rebalance and drain: move copies to where placement now puts them.
 *
 * After a Pi joins, placement (weighted rendezvous hashing) ranks it first
 * or second for its share of the chunks, and only for those: rebalance
 * copies exactly those chunks onto it and then deletes the copies that
 * placement no longer wants. A drain does the same with one Pi left out of
 * placement, so every chunk it holds gets its copies elsewhere first; the
 * Pi is then recorded as retired (a `forget` journal entry) and leaves the
 * quorum.
 *
 * A copy is always made (written, committed, its hash checked by the
 * receiving Pi) before any other copy of the chunk is deleted, and a chunk
 * never drops below the copies it should have, so every file stays readable
 * at every moment; an interrupted move leaves at worst an extra copy, which
 * the next run removes. Copies are read from a healthy holder and checked
 * against their id before they are written.
 *
 * @example
 * ```ts ignore
 * import { Store } from "./store.ts";
 * import { rebalance } from "./rebalance.ts";
 * const s = await Store.open("cluster");
 * const r = await rebalance(s, { bwlimit: 20_000 });
 * console.log(`${r.copied} copies moved, ${r.bytesCopied} bytes`);
 * await s.close();
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { chunkId } from "../ids.ts";
import { NodeError } from "../link/client.ts";
import { rankNodes } from "./placement.ts";
import type { Store } from "./store.ts";

/** Options of {@linkcode rebalance} and {@linkcode drain}. */
export interface RebalanceOptions {
  /** Bytes per second of chunk data copied, at most (0 or absent: no limit). */
  bwlimit?: number;
  /** Stop starting new moves after this many seconds (absent: no limit); a rerun goes on. */
  maxDurationS?: number;
  /** Only report what would move. */
  dryRun?: boolean;
  /**
   * Asked before each move: true stops the run there (`yielded`), e.g. when
   * another command waits for the cluster ({@linkcode Store.othersWaiting}),
   * so syncs keep priority over moving data that is already safe.
   */
  yieldTo?: () => boolean;
  /** Progress messages. */
  log?: (msg: string) => void;
  /** Called after each chunk that moved: chunks done, chunks to move, bytes copied, the chunk's id. */
  onMove?: (done: number, total: number, bytes: number, id: string) => void | Promise<void>;
}

/** What {@linkcode rebalance} or {@linkcode drain} did (or, with `dryRun`, would do). */
export interface RebalanceResult {
  /** Chunks whose copies are not where placement puts them. */
  chunks: number;
  /** Copies made. */
  copied: number;
  /** Bytes of chunk data copied. */
  bytesCopied: number;
  /** Copies deleted (ones placement no longer wants). */
  deleted: number;
  /** Bytes those held. */
  bytesDeleted: number;
  /** Per node: copies it gained and lost. */
  nodes: { node: number; gained: number; lost: number; bytesGained: number }[];
  /** Chunks that could not be moved, and why. */
  failed: { id: string; error: string }[];
  /** Stopped by `maxDurationS` or `yieldTo` before everything moved. */
  stopped: boolean;
  /** Stopped because `yieldTo` asked (another command waits for the cluster). */
  yielded: boolean;
  /** Seconds it took. */
  seconds: number;
}

/** Input that rebalance or drain refuses: a node that is down, an unknown node. */
export class RebalanceError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "REBALANCE";
  /** The error's name. */
  override name = "RebalanceError";
}

/** Paces copying to `rate` bytes per second (a token bucket holding one second). */
class Pacer {
  #rate: number;
  #t0 = performance.now();
  #bytes = 0;
  constructor(rate: number) {
    this.#rate = rate;
  }
  async take(n: number): Promise<void> {
    if (!(this.#rate > 0)) return;
    this.#bytes += n;
    const due = (this.#bytes / this.#rate) * 1000 - 1000; // one second of burst
    const wait = this.#t0 + due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

interface Move {
  id: string;
  size: number;
  want: number;
  add: number[];
  drop: number[];
}

/** The moves that bring every chunk's copies to its placement, with `exclude` left out of it. */
function plan(store: Store, exclude: number[]): Move[] {
  const nodes = store.placementNodes(exclude);
  const moves: Move[] = [];
  for (const { id, copies } of store.index.referenced()) {
    const holders = store.index.locations(id);
    if (holders.length === 0) continue; // lost: scrub reports it, nothing to move
    const want = Math.min(copies || store.copies, nodes.length);
    const targets = rankNodes(id, nodes).slice(0, want);
    const add = targets.filter((n) => !holders.includes(n));
    // Copies off placement go, once every target holds one (so never below `want`).
    const drop = holders.filter((n) => !targets.includes(n));
    if (add.length === 0 && drop.length === 0) continue;
    moves.push({ id, size: store.index.chunkSize(id) ?? 0, want, add, drop });
  }
  return moves;
}

/** Chunks moved at once. */
const MOVES_IN_FLIGHT = 3;

async function execute(
  store: Store,
  moves: Move[],
  opts: RebalanceOptions,
): Promise<RebalanceResult> {
  const t0 = performance.now();
  const result: RebalanceResult = {
    chunks: moves.length,
    copied: 0,
    bytesCopied: 0,
    deleted: 0,
    bytesDeleted: 0,
    nodes: [],
    failed: [],
    stopped: false,
    yielded: false,
    seconds: 0,
  };
  const per = new Map<
    number,
    { node: number; gained: number; lost: number; bytesGained: number }
  >();
  const stat = (n: number) => {
    let s = per.get(n);
    if (!s) per.set(n, s = { node: n, gained: 0, lost: 0, bytesGained: 0 });
    return s;
  };
  const pacer = new Pacer(opts.bwlimit ?? 0);
  const deadline = opts.maxDurationS !== undefined ? t0 + opts.maxDurationS * 1000 : Infinity;
  let done = 0;
  if (opts.dryRun) {
    for (const m of moves) {
      for (const n of m.add) stat(n).gained++, stat(n).bytesGained += m.size;
      for (const n of m.drop) stat(n).lost++;
      result.copied += m.add.length;
      result.bytesCopied += m.add.length * m.size;
      result.deleted += m.drop.length;
      result.bytesDeleted += m.drop.length * m.size;
    }
    moves = [];
  }
  const one = async (m: Move) => {
    try {
      let data: Uint8Array | undefined;
      for (const n of m.add) {
        const st = store.nodes.get(n)!;
        if (!st.client) throw new Error(`node ${n} is down`);
        data ??= await store.getChunk(m.id);
        if (await chunkId(data) !== m.id) throw new Error("every copy read is damaged");
        await pacer.take(data.length);
        await lineOp(n, () => st.client!.putChunk(data!, { id: m.id }));
        store.index.addLocation(m.id, data.length, n);
        stat(n).gained++;
        stat(n).bytesGained += data.length;
        result.copied++;
        result.bytesCopied += data.length;
      }
      // Only now, with every new copy committed, the unwanted ones go.
      const size = data?.length ?? m.size;
      for (const n of m.drop) {
        const st = store.nodes.get(n)!;
        if (!st.client) continue; // down: its copy goes on a later run
        await lineOp(n, () => st.client!.deleteChunk(m.id));
        store.index.removeLocation(m.id, n);
        stat(n).lost++;
        result.deleted++;
        result.bytesDeleted += size;
      }
    } catch (e) {
      if (e instanceof RebalanceError) throw e;
      result.failed.push({ id: m.id, error: (e as Error).message });
      opts.log?.(`chunk ${m.id.slice(0, 12)}: ${(e as Error).message}`);
    }
    await opts.onMove?.(++done, moves.length, result.bytesCopied, m.id);
  };
  // A few moves at once, so reading the next chunk overlaps writing this
  // one (the receiving Pi's line is the bottleneck); a Pi holds 4 puts.
  let next = 0;
  let fatal: unknown;
  const worker = async () => {
    while (next < moves.length && fatal === undefined) {
      if (performance.now() > deadline) {
        result.stopped = true;
        return;
      }
      if (opts.yieldTo?.()) {
        result.stopped = result.yielded = true;
        return;
      }
      try {
        await one(moves[next++]);
      } catch (e) {
        fatal ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: MOVES_IN_FLIGHT }, worker));
  if (fatal !== undefined) throw fatal;
  result.nodes = [...per.values()].sort((a, b) => a.node - b.node);
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}

/**
 * Runs one request on node `n`'s line. A node that refuses (full, bad data)
 * fails only this chunk; one that stops answering ends the run, since every
 * later move to it would wait out the same timeout.
 */
async function lineOp<T>(n: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof NodeError) throw e;
    throw new RebalanceError(
      `node ${n} stopped answering (${(e as Error).message}); ` +
        "nothing is lost: run the command again once it is back",
    );
  }
}

/** Refuses when a node placement counts is down: its copies' places would be guessed. */
function needAllUp(store: Store, except: number[] = []): void {
  const gone = new Set([...store.index.forgotten(), ...except]);
  const down = [...store.nodes.values()].filter((st) => !gone.has(st.entry.id) && !st.client);
  if (down.length) {
    throw new RebalanceError(
      `every Pi must answer to move copies; down: ` +
        down.map((st) => `node ${st.entry.id} (${st.error})`).join(", ") +
        ` (bring it back, or \`pifs node forget K\` if it is lost for good)`,
    );
  }
}

/**
 * Moves copies to where placement puts them now: after a Pi joined, only
 * the chunks placement assigns to it move onto it. Safe to interrupt and
 * rerun.
 */
export async function rebalance(
  store: Store,
  opts: RebalanceOptions = {},
): Promise<RebalanceResult> {
  needAllUp(store);
  const moves = plan(store, []);
  opts.log?.(`${moves.length} chunks to move`);
  return await execute(store, moves, opts);
}

/**
 * Copies every chunk on node `node` to the other Pis (where placement puts
 * it without `node`), deletes nothing from `node` itself, and then records
 * the Pi as retired (a `forget` journal entry): it leaves placement and the
 * quorum. Safe to interrupt and rerun; the Pi is retired only once nothing
 * needs its copies.
 */
export async function drain(
  store: Store,
  node: number,
  opts: RebalanceOptions = {},
): Promise<RebalanceResult & { retired: boolean }> {
  const st = store.nodes.get(node);
  if (!st) {
    throw new RebalanceError(
      `node ${node}: not in this cluster (nodes: ${[...store.nodes.keys()].join(", ")})`,
    );
  }
  if (store.index.forgotten().includes(node)) {
    throw new RebalanceError(`node ${node}: already forgotten or drained`);
  }
  const others = store.placementNodes([node]);
  if (others.length === 0) {
    throw new RebalanceError(`node ${node} is the only Pi: nowhere to drain it to`);
  }
  needAllUp(store);
  // Copies on the drained Pi stay until it is retired: plan with it left out
  // of placement, and keep its copies (drop only from the others).
  const moves = plan(store, [node]).map((m) => ({ ...m, drop: m.drop.filter((n) => n !== node) }));
  opts.log?.(`node ${node}: ${moves.length} chunks to copy to the other Pis`);
  const r = await execute(store, moves, opts);
  if (opts.dryRun || r.stopped || r.failed.length) return { ...r, retired: false };
  // Retire it only if every chunk has its copies without it.
  const short = plan(store, [node]).filter((m) => m.add.length > 0);
  if (short.length) {
    r.failed.push(
      ...short.map((m) => ({ id: m.id, error: "still short of copies without this Pi" })),
    );
    return { ...r, retired: false };
  }
  await store.commit({ op: "forget", node });
  opts.log?.(`node ${node} drained and retired: it no longer counts for placement or the quorum`);
  return { ...r, retired: true };
}
