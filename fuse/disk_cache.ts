/**
 * The mount's chunk cache on the host's disk: chunks read over the serial
 * lines are kept as files named by their id under a directory
 * (`DIR/mount-cache/`), bounded in bytes, least recently used dropped
 * first. Chunks are content-addressed, so a cached chunk never goes stale;
 * each is checked against its id when read back, and a damaged file is
 * deleted and reported as a miss, never served. The cache survives
 * unmounting: a file read last week comes from the disk, not over a
 * 115200-baud line.
 *
 * @example
 * ```ts ignore
 * import { DiskChunkCache } from "./disk_cache.ts";
 * const cache = await DiskChunkCache.open("cluster/mount-cache", 1 << 30);
 * const data = await cache.get(id) ?? await fetchOverTheLines(id);
 * ```
 *
 * @module
 */
import { chunkId } from "../ids.ts";

const ID = /^[0-9a-f]{64}$/;

/** A bounded, content-checked chunk cache in a directory. */
export class DiskChunkCache {
  readonly #dir: string;
  readonly #max: number;
  /** Ids by recency (oldest first) with their sizes. */
  #lru = new Map<string, number>();
  #bytes = 0;
  /** Bytes of puts in progress: room made before they write. */
  #reserved = 0;
  #writing = new Set<string>();
  #pending = new Set<Promise<void>>();
  /** Chunks served from the disk. */
  hits = 0;
  /** Chunks not on the disk (or damaged there). */
  misses = 0;
  /** Cached files found damaged (deleted). */
  damaged = 0;

  private constructor(dir: string, max: number) {
    this.#dir = dir;
    this.#max = max;
  }

  /**
   * Opens (making it if needed) the cache in `dir`, holding at most
   * `maxBytes`; what is already there is kept, oldest (by mtime) dropped
   * first, and leftovers of interrupted writes are removed.
   */
  static async open(dir: string, maxBytes: number): Promise<DiskChunkCache> {
    await Deno.mkdir(dir, { recursive: true });
    const c = new DiskChunkCache(dir, maxBytes);
    const found: { id: string; size: number; t: number }[] = [];
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (!e.isFile || !ID.test(e.name)) {
        if (e.isFile && e.name.endsWith(".part")) await Deno.remove(p).catch(() => {});
        continue;
      }
      const st = await Deno.stat(p);
      found.push({ id: e.name, size: st.size, t: st.mtime?.getTime() ?? 0 });
    }
    found.sort((a, b) => a.t - b.t);
    for (const f of found) {
      c.#lru.set(f.id, f.size);
      c.#bytes += f.size;
    }
    await c.#evict();
    return c;
  }

  /** Bytes held on the disk. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Chunks held. */
  get size(): number {
    return this.#lru.size;
  }

  /** The chunk if it is cached and intact; undefined otherwise. */
  async get(id: string): Promise<Uint8Array | undefined> {
    if (!this.#lru.has(id)) {
      this.misses++;
      return undefined;
    }
    const p = `${this.#dir}/${id}`;
    const data = await Deno.readFile(p).catch(() => undefined);
    if (!data || await chunkId(data) !== id) {
      // Gone, or its bytes no longer match its id: never served.
      if (data) this.damaged++;
      this.#drop(id);
      await Deno.remove(p).catch(() => {});
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Most recent now, unless an eviction took it meanwhile (then it is not
    // put back: its bytes were already given up, and its file goes).
    const size = this.#lru.get(id);
    if (size !== undefined) {
      this.#lru.delete(id);
      this.#lru.set(id, size);
      const now = new Date();
      await Deno.utime(p, now, now).catch(() => {}); // recency survives a remount
    }
    return data;
  }

  /** Waits for the puts in progress (before the process ends: unmounting). */
  async settle(): Promise<void> {
    while (this.#pending.size) await Promise.allSettled([...this.#pending]);
  }

  /** Keeps `data` (whose id is `id`, already checked by the reader) unless it is larger than the cache. */
  put(id: string, data: Uint8Array): Promise<void> {
    const p = this.#put(id, data);
    this.#pending.add(p);
    const done = () => this.#pending.delete(p);
    p.then(done, done);
    return p;
  }

  async #put(id: string, data: Uint8Array): Promise<void> {
    if (!ID.test(id) || data.length > this.#max || this.#lru.has(id) || this.#writing.has(id)) {
      return;
    }
    this.#writing.add(id);
    // Room first, so the directory never holds more than the bound, even
    // when the process ends mid-way.
    this.#reserved += data.length;
    const p = `${this.#dir}/${id}`;
    try {
      await this.#evict();
      if (this.#bytes + this.#reserved > this.#max) return; // other puts took the room
      // Whole or not at all: a crash leaves a .part file, removed at the next open.
      await Deno.writeFile(`${p}.part`, data);
      await Deno.rename(`${p}.part`, p);
      this.#lru.set(id, data.length);
      this.#bytes += data.length;
    } finally {
      this.#reserved -= data.length;
      this.#writing.delete(id);
    }
  }

  #drop(id: string) {
    const size = this.#lru.get(id);
    if (size === undefined) return;
    this.#lru.delete(id);
    this.#bytes -= size;
  }

  async #evict() {
    for (const [id, size] of this.#lru) {
      if (this.#bytes + this.#reserved <= this.#max) break;
      this.#lru.delete(id);
      this.#bytes -= size;
      await Deno.remove(`${this.#dir}/${id}`).catch(() => {});
    }
  }
}
