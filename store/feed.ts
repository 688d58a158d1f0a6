/**
 * What keeps every Pi's line fed while many files are stored: the one
 * scheduling rule that `pifs put` ({@linkcode PutQueue}) and sync runs share.
 *
 * Chunks go to Pis by the hash of their bytes, so with a fixed number of
 * files or chunks in flight the ones still waiting pile up behind the
 * busiest Pi while another runs dry, and the dry line idles (a closed
 * queue: 16 chunks over 8 Pis keep each line busy about 16 / 23 of the
 * time; with two copies a file also holds its place until its slower copy
 * lands). So while some Pi has fewer than `lowWater` bytes queued, a caller
 * may start more than its usual limit, one at a time: the next only once
 * the one before it has reached its Pis' queues (so a feed never overshoots
 * on bytes that are not placed yet), and only while the bytes in flight
 * stay under `cap`.
 *
 * @example
 * ```ts ignore
 * import { Feed } from "./feed.ts";
 * declare const store: import("./store.ts").Store;
 * const feed = new Feed(store, { cap: 16 << 20 });
 * while (!feed.extra()) await feed.change();
 * const placed = feed.start(); // pass to putStream's onQueued
 * placed();
 * ```
 *
 * @module
 */
import type { Store } from "./store.ts";

/** Options of {@linkcode Feed}. */
export interface FeedOptions {
  /** Bytes in flight above which nothing more starts beyond the usual limits. */
  cap: number;
  /** A Pi with fewer bytes than this queued is about to run dry (default 128 KiB). */
  lowWater?: number;
}

/**
 * Counts what was started and not yet placed, and says when one more may
 * start beyond a caller's usual limits.
 */
export class Feed {
  /** Bytes in flight (held in memory), kept by the caller. */
  bytes = 0;
  /** Bytes in flight above which {@linkcode Feed.extra} says no. */
  readonly cap: number;
  /** Queued bytes under which a Pi counts as about to run dry. */
  readonly lowWater: number;
  #store: Store;
  #pending = 0;
  #waiters: (() => void)[] = [];

  /** A feed for the Pis of `store`. */
  constructor(store: Store, opts: FeedOptions) {
    if (!(opts.cap > 0)) throw new RangeError(`feed cap must be positive, got ${opts.cap}`);
    this.#store = store;
    this.cap = opts.cap;
    this.lowWater = opts.lowWater ?? 128 * 1024;
  }

  /** Things started whose bytes are not in their Pis' queues yet. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Counts one more thing started and not placed yet. The function returned
   * marks it placed (pass it as `putStream`'s `onQueued`, and call it again
   * when the thing ends: only the first call counts).
   */
  start(): () => void {
    this.#pending++;
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.#pending--;
      for (const w of this.#waiters.splice(0)) w();
    };
  }

  /**
   * Whether one more may start beyond the usual limits now: nothing started
   * earlier is still unplaced, the bytes in flight are under the cap, and
   * some answering Pi is about to run dry.
   */
  extra(): boolean {
    return this.#pending === 0 && this.bytes < this.cap && this.#store.starved(this.lowWater);
  }

  /** Resolves when something started is placed or a chunk copy lands (or fails). */
  change(): Promise<void> {
    return Promise.race([
      new Promise<void>((r) => this.#waiters.push(r)),
      this.#store.copyLanded(),
    ]);
  }
}
