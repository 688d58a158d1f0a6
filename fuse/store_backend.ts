/**
 * The file system's {@linkcode Backend} over an open {@linkcode Store}: the
 * namespace from the index, manifests and chunks from the nodes (any copy),
 * capacity from the nodes' INFO, and the changes as journal entries (`put`,
 * `mkdir`, `rm`, `mv`, `attr`, `symlink`) committed with the store's quorum.
 *
 * @module
 */
import {
  CHUNK_SIZE,
  NamespaceError,
  NoSpaceError,
  ReadOnlyError,
  type Store,
} from "../store/store.ts";
import { NodeError } from "../link/client.ts";
import { Status } from "../link/codec.ts";
import type { Entry } from "../store/index_db.ts";
import { encodeManifest, type Manifest, normalizePath, PathError } from "../store/namespace.ts";
import { snapshotContents } from "../store/snapshots.ts";
import type { SnapshotFile } from "../store/trees.ts";
import { Errno } from "./ffi.ts";
import {
  type Backend,
  type BackendWrites,
  type Capacity,
  FsError,
  type FsNode,
  type PreparedFile,
  type SnapshotRef,
} from "./fs.ts";

/** A file's content on the nodes: manifest and chunks stored, not yet named. */
interface StoredContent extends PreparedFile {
  manifest: Manifest;
  copies: number;
}

function nodeOf(e: Entry): FsNode {
  return {
    type: e.type,
    size: e.size,
    mode: e.mode,
    mtime: e.mtime,
    manifest: e.manifest,
    ...(e.type === "l" ? { target: e.target ?? "" } : {}),
  };
}

/**
 * The errno for an error of the store: ENOSPC when a node is full, EROFS for
 * a store opened read-only, ENAMETOOLONG/EINVAL for a path the namespace
 * refuses, EIO for everything else (nodes down, quorum not reached, links).
 */
export function errnoOf(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  if (e instanceof NoSpaceError) return Errno.ENOSPC;
  if (e instanceof NodeError && e.status === Status.ENOSPC) return Errno.ENOSPC;
  if (e instanceof ReadOnlyError) return Errno.EROFS;
  if (e instanceof NamespaceError) {
    const errno = (Errno as Record<string, number>)[e.code];
    if (errno !== undefined) return errno;
  }
  if (e instanceof PathError) {
    return e.code === "NAME_TOO_LONG"
      ? Errno.ENAMETOOLONG
      : e.code === "RESERVED"
      ? Errno.EROFS
      : Errno.EINVAL;
  }
  return Errno.EIO;
}

/** Runs `fn`, turning a store error into an {@linkcode FsError} for `what`. */
async function mapped<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof FsError) throw e;
    throw new FsError(errnoOf(e), `${what}: ${(e as Error)?.message ?? e}`);
  }
}

/** The store's path for a path of the mount (checked: length, characters). */
function storePath(p: string): string {
  const n = normalizePath(p);
  if (n !== p) throw new PathError(p, `not a normal path (${n})`);
  return n;
}

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
    return e ? nodeOf(e) : undefined;
  }

  list(dir: string): { name: string; node: FsNode }[] {
    return this.#s.index.list(dir).map((e) => ({
      name: e.path.slice(e.path.lastIndexOf("/") + 1),
      node: nodeOf(e),
    }));
  }

  /** The changes, each committed as a journal entry before it resolves. */
  readonly writes: BackendWrites = {
    prepare: (path, size, read) => mapped(`storing ${path}`, () => this.#prepare(path, size, read)),
    put: (path, prepared, meta) =>
      mapped(`storing ${path}`, () => {
        const p = prepared as StoredContent;
        return this.#s.commit({
          op: "put",
          p: storePath(path),
          m: p.id,
          size: p.size,
          mode: meta.mode,
          mtime: meta.mtime,
          copies: p.copies,
        }, p.manifest);
      }),
    mkdir: (path, mode, mtime) =>
      mapped(`mkdir ${path}`, () => this.#s.mkdir(storePath(path), { mode, mtime })),
    // The file system checked that a directory it removes is empty.
    remove: (path) =>
      mapped(`rm ${path}`, () => this.#s.remove(storePath(path), { recursive: true })),
    move: (from, to) =>
      mapped(`mv ${from} ${to}`, () => this.#s.move(storePath(from), storePath(to))),
    setAttr: (path, a) => mapped(`setattr ${path}`, () => this.#s.setAttr(storePath(path), a)),
    symlink: (path, target, mtime) =>
      mapped(`symlink ${path}`, () => this.#s.symlink(storePath(path), target, mtime)),
  };

  manifest(id: string): Promise<Manifest> {
    return this.#s.manifestOf(id);
  }

  chunk(id: string): Promise<Uint8Array> {
    return this.#s.getChunk(id);
  }

  /**
   * Cuts a file into {@linkcode CHUNK_SIZE} pieces (as `pifs put` does),
   * stores each on R nodes (a few in flight), then its manifest.
   */
  async #prepare(
    path: string,
    size: number,
    read: (off: number, len: number) => Uint8Array,
  ): Promise<StoredContent> {
    const copies = this.#s.copiesFor(storePath(path));
    const n = Math.ceil(size / CHUNK_SIZE);
    const chunks: [string, number][] = [];
    const limit = Math.max(2, 2 * this.#s.up().length);
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const k = next++;
        const len = Math.min(CHUNK_SIZE, size - k * CHUNK_SIZE);
        const data = read(k * CHUNK_SIZE, len);
        if (data.length !== len) {
          throw new Error(`${path}: the spool file holds less than ${size} bytes`);
        }
        chunks[k] = [(await this.#s.storeChunk(data, { copies })).id, len];
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, Math.max(1, n)) }, worker));
    const manifest: Manifest = { v: 1, size, chunks };
    const m = await this.#s.storeChunk(encodeManifest(manifest), { copies });
    this.#s.index.setManifest(m.id, manifest);
    return { id: m.id, size, manifest, copies };
  }

  snapshots(): SnapshotRef[] {
    return this.#s.index.snapshots().map((r) => ({ name: r.name, root: r.root, time: r.time }));
  }

  async snapshotFiles(root: string): Promise<SnapshotFile[]> {
    return (await snapshotContents(this.#s, root)).files;
  }

  readAhead(): number {
    // As `pifs get`: two chunks in flight per node, so no line idles between chunks.
    return Math.max(2, 2 * this.#s.up().length);
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
      const { capacity, free } = await this.#s.space();
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
