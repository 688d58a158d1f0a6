/**
 * Many files stored at once: the scheduler behind `pifs put` (and the
 * throughput benchmark, so that it measures the same pipeline).
 *
 * Chunks go to Pis by the hash of their bytes, so the next few files of a
 * tree land on Pis at random. With few files in flight one Pi's queue is
 * long while another's runs dry, and the dry link idles. With `W` files in
 * flight over `N` Pis, each Pi is busy about `W / (W + N - 1)` of the time
 * (a closed queueing network of `N` equal stations), so 16 files per Pi
 * would keep every link busy ~95 % of the time by that model. With two
 * copies, though, a file holds its place until its slower copy lands, and
 * the files in flight pile up behind the busiest Pi while another runs dry
 * (N=4 R=2 sustained 0.82 of the line with 16 files per Pi and nothing
 * more). So the queue also watches each Pi's queued bytes: while one has
 * less than `lowWater` queued, more files start, one at a time, up to
 * `maxFilesPerNode` per Pi (N=4 R=2 then sustained 0.95; measured by
 * `bench/cluster_bench.ts`): the rule of {@linkcode Feed}, which sync runs
 * share. Their bytes are bounded too, so big files never pile up in memory.
 *
 * @example
 * ```ts ignore
 * import { PutQueue } from "./put.ts";
 * import { Store } from "./store.ts";
 * const s = await Store.open("cluster");
 * const q = new PutQueue(s);
 * const bytes = new TextEncoder().encode("hello\n");
 * await q.add("/docs/hello.txt", () => Promise.resolve(ReadableStream.from([bytes])), {
 *   size: bytes.length,
 *   mode: 0o644,
 *   mtime: Date.now(),
 * });
 * await q.finish();
 * await s.close();
 * ```
 *
 * @module
 */
import { SourceError } from "../pipelines/source.ts";
import { Feed } from "./feed.ts";
import type { PutStats, Store } from "./store.ts";

/** Options of {@linkcode PutQueue}. */
export interface PutQueueOptions {
  /** Files in flight per answering Pi (default 16). */
  filesPerNode?: number;
  /**
   * A Pi with fewer bytes than this queued for it (default 128 KiB) is
   * about to run dry: more files are started, beyond `filesPerNode`, until
   * every Pi has this much queued again...
   */
  lowWater?: number;
  /** ...up to this many files in flight per answering Pi (default 64). */
  maxFilesPerNode?: number;
  /**
   * Bytes of the files in flight at most (default 64 MiB). A file larger
   * than this is stored alone.
   */
  bytesAhead?: number;
  /** Counts of what was stored, updated as files land. */
  stats?: PutStats;
  /** Called with each chunk's size as it is stored. */
  onBytes?: (n: number) => void;
  /** Called when a file is committed (visible, whole). */
  onFile?: (path: string, size: number) => void;
  /**
   * Called when a file's own source fails (it cannot be opened or read, or
   * it changed while read: a {@linkcode SourceError}): the file is not
   * stored and the queue goes on. Without it, such a failure stops the
   * queue as any other does.
   */
  onFailed?: (path: string, error: SourceError) => void;
}

/** What {@linkcode PutQueue.add} needs to know of a file. */
export interface PutFileMeta {
  /** Its size in bytes (for the in-flight bound; the stream decides what is stored). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, ms since the epoch. */
  mtime: number;
  /** Copies of its chunks (default: the per-path rule, else the store's). */
  copies?: number;
}

/**
 * Stores files several at a time, so that every Pi's link stays busy; each
 * file becomes visible once it is whole. A failure of one file's source goes
 * to {@linkcode PutQueueOptions.onFailed} when given; any other failure (the
 * store's: no quorum, no space) stops the queue: it is thrown by the next
 * {@linkcode PutQueue.add} or by {@linkcode PutQueue.finish}, and no file
 * is started after it ({@linkcode PutQueue.failedPath} names its file).
 *
 * @example
 * ```ts ignore
 * import { PutQueue } from "./put.ts";
 * declare const store: import("./store.ts").Store;
 * const q = new PutQueue(store, { filesPerNode: 16, onFile: (p) => console.log(p) });
 * q.mkdir("/a", 0o755, Date.now());
 * await q.finish();
 * ```
 */
export class PutQueue {
  #store: Store;
  #opts: PutQueueOptions;
  #running = new Set<Promise<void>>();
  /** Bytes of the files in flight; a file is placed once its first chunk is queued. */
  #feed: Feed;
  #failure: unknown;
  #failed = false;
  #failedPath?: string;

  /** A queue that stores into `store`. */
  constructor(store: Store, opts: PutQueueOptions = {}) {
    this.#store = store;
    this.#opts = opts;
    this.#feed = new Feed(store, {
      cap: opts.bytesAhead ?? 64 * 1024 * 1024,
      lowWater: opts.lowWater,
    });
  }

  /** Files allowed in flight now: `filesPerNode` × the Pis that answer (at least 4). */
  get fileSlots(): number {
    return Math.max(4, (this.#opts.filesPerNode ?? 16) * this.#store.up().length);
  }

  /** The most files in flight: `maxFilesPerNode` × the Pis that answer. */
  get maxFiles(): number {
    return Math.max(this.fileSlots, (this.#opts.maxFilesPerNode ?? 64) * this.#store.up().length);
  }

  /** Whether a file of `size` bytes may start now. */
  #room(size: number): boolean {
    const n = this.#running.size;
    if (n === 0) return true;
    if (this.#feed.bytes + size > this.#feed.cap) return false;
    if (n < this.fileSlots) return true;
    // Beyond `fileSlots`: one more at a time while a Pi is about to run dry.
    return n < this.maxFiles && this.#feed.extra();
  }

  /** Files being stored now. */
  get running(): number {
    return this.#running.size;
  }

  /** The file whose failure stopped the queue, if one did (undefined for a directory or link). */
  get failedPath(): string | undefined {
    return this.#failedPath;
  }

  #check() {
    if (this.#failed) throw this.#failure;
  }

  #track(p: Promise<void>, size: number, path?: string) {
    const t: Promise<void> = p.catch((e) => {
      if (e instanceof SourceError && path !== undefined && this.#opts.onFailed) {
        this.#opts.onFailed(path, e);
        return;
      }
      if (!this.#failed) this.#failed = true, this.#failure = e, this.#failedPath = path;
    }).finally(() => {
      this.#running.delete(t);
      this.#feed.bytes -= size;
    });
    this.#running.add(t);
    this.#feed.bytes += size;
  }

  /**
   * Starts storing the file `path` from the stream `open` gives (opened only
   * when its turn comes), after waiting for room in flight. Resolves once it
   * has started, not once it is stored.
   */
  async add(
    path: string,
    open: () => Promise<ReadableStream<Uint8Array>>,
    meta: PutFileMeta,
  ): Promise<void> {
    const s = this.#store;
    while (!this.#failed && !this.#room(meta.size)) {
      await Promise.race([...this.#running, this.#feed.change()]);
    }
    this.#check();
    const placed = this.#feed.start();
    this.#track(
      (async () => {
        try {
          const source = await open();
          await s.putStream(path, source, {
            mode: meta.mode,
            mtime: meta.mtime,
            copies: meta.copies ?? s.copiesFor(path),
            onBytes: this.#opts.onBytes,
            onQueued: placed,
          }, this.#opts.stats);
        } finally {
          placed();
        }
        this.#opts.onFile?.(path, meta.size);
      })(),
      meta.size,
      path,
    );
  }

  /**
   * Records the directory `path` (a journal entry). It does not wait for
   * the commit: entries commit in the order they were queued, so the
   * directory is committed before any file stored under it.
   */
  mkdir(path: string, mode: number, mtime: number): void {
    this.#check();
    this.#track(this.#store.commit({ op: "mkdir", p: path, mode, mtime }), 0);
  }

  /**
   * Records the symbolic link `path` pointing to `target` (a journal entry,
   * committed in order as {@linkcode PutQueue.mkdir}'s are).
   */
  symlink(path: string, target: string, mtime: number): void {
    this.#check();
    this.#track(this.#store.commit({ op: "symlink", p: path, target, mtime }), 0);
  }

  /** Waits for every file started; throws the first failure. */
  async finish(): Promise<void> {
    while (this.#running.size) await Promise.all(this.#running);
    this.#check();
  }
}
