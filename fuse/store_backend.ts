/**
 * The file system's {@linkcode Backend} over an open {@linkcode Store}: the
 * namespace from the index, manifests and chunks from the nodes (any copy),
 * capacity from the nodes' INFO.
 *
 * @module
 */
import type { Store } from "../store/store.ts";
import type { Manifest, SnapshotObject } from "../store/namespace.ts";
import type { Backend, Capacity, FsNode, SnapshotRef } from "./fs.ts";

/** How long a capacity read from the nodes is reused (ms). */
const CAPACITY_TTL_MS = 10_000;

/** A {@linkcode Backend} reading `store`. */
export class StoreBackend implements Backend {
  readonly #s: Store;
  #cap: { at: number; value: Capacity } | undefined;
  #capLoading: Promise<Capacity> | undefined;

  /** Reads `store` (open; closed by its owner). */
  constructor(store: Store) {
    this.#s = store;
  }

  get(path: string): FsNode | undefined {
    const e = this.#s.index.get(path);
    return e
      ? { type: e.type, size: e.size, mode: e.mode, mtime: e.mtime, manifest: e.manifest }
      : undefined;
  }

  list(dir: string): { name: string; node: FsNode }[] {
    return this.#s.index.list(dir).map((e) => ({
      name: e.path.slice(e.path.lastIndexOf("/") + 1),
      node: { type: e.type, size: e.size, mode: e.mode, mtime: e.mtime, manifest: e.manifest },
    }));
  }

  manifest(id: string): Promise<Manifest> {
    return this.#s.manifestOf(id);
  }

  chunk(id: string): Promise<Uint8Array> {
    return this.#s.getChunk(id);
  }

  snapshots(): SnapshotRef[] {
    return this.#s.index.snapshots().map((r) => ({ name: r.name, root: r.root, time: r.time }));
  }

  snapshotObject(root: string): Promise<SnapshotObject> {
    return this.#s.snapshotObject(root);
  }

  readAhead(): number {
    return Math.max(2, this.#s.up().length);
  }

  /**
   * Capacity and free bytes summed over the nodes (INFO, refreshed at most
   * every 10 s from the nodes that answer; a node down counts with what it
   * said at open, or not at all).
   */
  capacity(): Promise<Capacity> {
    if (this.#cap && Date.now() - this.#cap.at < CAPACITY_TTL_MS) {
      return Promise.resolve(this.#cap.value);
    }
    this.#capLoading ??= (async () => {
      const infos = await Promise.all([...this.#s.nodes.values()].map(async (st) => {
        if (st.client) {
          try {
            st.info = await st.client.info();
          } catch { /* keep what it said before */ }
        }
        return st.info;
      }));
      let capacity = 0, free = 0;
      for (const i of infos) {
        if (!i || i.status !== 0) continue;
        capacity += i.capacity;
        free += i.free;
      }
      const value: Capacity = {
        capacity,
        free,
        copies: this.#s.copies,
        entries: this.#s.index.usage("/").files,
      };
      this.#cap = { at: Date.now(), value };
      return value;
    })().finally(() => this.#capLoading = undefined);
    return this.#capLoading;
  }
}
