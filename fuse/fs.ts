/**
 * The pifs file system as FUSE sees it: an inode table over the store's
 * paths, the request handlers, a chunk cache with read-ahead, and the write
 * path: files open for writing are spooled to the host's disk and committed
 * (chunks, then a namespace `put`) at fsync, at the last release (the last
 * close) and at unmount. Every handler returns at once; its reply goes out when the data
 * has come over the links ({@linkcode FuseRequest}).
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import {
  decodeManifest,
  encodeManifest,
  type Manifest,
  MAX_NAME,
  MAX_PATH,
  SNAPSHOTS_DIR,
} from "../store/namespace.ts";
import type { SnapshotFile } from "../store/trees.ts";
import type { DiskChunkCache } from "./disk_cache.ts";
import {
  type Attr,
  decodeStat,
  entryParam,
  Errno,
  FI_CACHE_READDIR,
  FI_KEEP_CACHE,
  fileInfo,
  FuseRequest,
  FuseSession,
  O_ACCMODE,
  O_APPEND,
  O_EXCL,
  O_TRUNC,
  O_WRITE_FLAGS,
  type OpHandler,
  type OpName,
  readCString,
  readFileInfo,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  SetAttr,
  ST_RDONLY,
  type StatIn,
  statStruct,
  statvfsStruct,
} from "./ffi.ts";

/** A file, directory or symbolic link as the file system shows it. */
export interface FsNode {
  /** "f" file, "d" directory, "l" symbolic link. */
  type: "f" | "d" | "l";
  /** Bytes (files; a link: its target's length). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, ms since 1970. */
  mtime: number;
  /** Manifest id (files). */
  manifest: string | null;
  /** A symbolic link's target. */
  target?: string;
}

/** A snapshot as listed under `/.snapshots`. */
export interface SnapshotRef {
  /** Its name (a directory under /.snapshots). */
  name: string;
  /** Id of its snapshot object. */
  root: string;
  /** When it was taken, ms since 1970. */
  time: number;
}

/** Capacity of the cluster, as statfs reports it. */
export interface Capacity {
  /** Bytes for chunk data, all nodes. */
  capacity: number;
  /** Of those, bytes free. */
  free: number;
  /** Copies kept of each chunk (R): both are divided by it. */
  copies: number;
  /** Files and directories. */
  entries: number;
}

/**
 * The changes a writable backend commits. Each resolves once the change is
 * in the namespace (a journal entry on a quorum of nodes) and rejects with an
 * {@linkcode FsError} carrying the errno to answer.
 */
export interface BackendWrites {
  /**
   * Stores a file's content (`size` bytes, read with `read(offset, length)`)
   * as chunks and a manifest, for the file now at `path` (its copies rule);
   * nothing in the namespace changes yet.
   */
  prepare(
    path: string,
    size: number,
    read: (off: number, len: number) => Uint8Array,
  ): Promise<PreparedFile>;
  /** Makes `path` the file `prepared` holds (replacing what is there). */
  put(path: string, prepared: PreparedFile, meta: { mode: number; mtime: number }): Promise<void>;
  /** Makes the directory `path`. */
  mkdir(path: string, mode: number, mtime: number): Promise<void>;
  /** Removes `path` (and everything under it). */
  remove(path: string): Promise<void>;
  /** Renames `from` to `to` (replacing what is at `to`). */
  move(from: string, to: string): Promise<void>;
  /** Changes the mode and/or mtime of `path`. */
  setAttr(path: string, attr: { mode?: number; mtime?: number }): Promise<void>;
  /** Makes `path` a symbolic link to `target`. */
  symlink(path: string, target: string, mtime: number): Promise<void>;
}

/** A file's content stored by {@linkcode BackendWrites.prepare}, not yet named. */
export interface PreparedFile {
  /** Manifest id. */
  id: string;
  /** Bytes. */
  size: number;
  /** Anything else the backend needs to commit it. */
  [k: string]: unknown;
}

/** What the file system reads from: the store (fuse/store_backend.ts) or a fake in tests. */
export interface Backend {
  /** The entry at a normalised path (`/` included). */
  get(path: string): FsNode | undefined;
  /** The children of a directory: name and node, by name. */
  list(dir: string): { name: string; node: FsNode }[];
  /** A file's manifest. */
  manifest(id: string): Promise<Manifest>;
  /** A chunk's bytes (hash checked; another copy tried when a node fails). */
  chunk(id: string): Promise<Uint8Array>;
  /** Capacity and free space. */
  capacity(): Promise<Capacity>;
  /** Snapshots. */
  snapshots(): SnapshotRef[];
  /** A snapshot's files, by path within it (either snapshot format). */
  snapshotFiles(root: string): Promise<SnapshotFile[]>;
  /** How many chunks to read ahead of a sequential reader. */
  readAhead(): number;
  /** The changes (absent: the backend is read-only). */
  writes?: BackendWrites;
}

/** Options of {@linkcode PifsFs}. */
export interface FsOptions {
  /** Bytes of chunks kept in memory (default 64 MiB). */
  cacheBytes?: number;
  /** Chunks kept on the host's disk too (behind the memory cache); none if absent. */
  diskCache?: DiskChunkCache;
  /** Messages (errors, and every request with `debug`). */
  log?: (msg: string) => void;
  /** Log every request. */
  debug?: boolean;
  /** Seconds the kernel may cache names and attributes (default 3600: only this mount changes the tree). */
  timeoutS?: number;
  /** Refuse every change with EROFS (`-o ro`; also when the backend has no `writes`). */
  readOnly?: boolean;
  /** Directory for the spool files of files open for writing (required unless read-only). */
  spoolDir?: string;
}

/** An error carrying the errno to answer with. */
export class FsError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "FS";
  /** The error's name. */
  override name = "FsError";
  /** Positive errno. */
  readonly errno: number;
  /** An error answered with `errno`. */
  constructor(errno: number, msg: string) {
    super(msg);
    this.errno = errno;
  }
}

const SNAP_PREFIX = `/${SNAPSHOTS_DIR}`;

/**
 * The largest file the mount makes (4 TiB, as FAT32 cards of a handful of
 * Pis hold less): a write or truncate past it is EFBIG, before the host's
 * spool is asked for the room.
 */
export const MAX_FILE_BYTES = 4 * 1024 ** 4;

interface Inode {
  /** Its path; null once unlinked (or replaced by a rename) while the kernel still holds it. */
  path: string | null;
  nlookup: number;
}

/** A file's content read from its manifest's chunks. */
interface FileHandle {
  kind: "f";
  path: string;
  manifest: Manifest;
  /** Byte offset where each chunk starts (one more: the size). */
  starts: number[];
  /** End of the last read (sequential readers get read-ahead). */
  lastEnd: number;
}

/**
 * An inode with open handles (or being truncated): its size, mode and mtime
 * as the file system shows them, and, once changed, its content in a spool
 * file on the host's disk.
 */
interface OpenFile {
  ino: number;
  /** Open handles. */
  handles: number;
  size: number;
  mode: number;
  mtime: number;
  /** The content, once written or truncated (read from here while it exists). */
  spool?: Deno.FsFile;
  spoolPath?: string;
  /** The content before any change, from the store (no spool yet). */
  reader?: FileHandle;
  /** Differs from what the store holds (content or attributes): committed at fsync, last release. */
  dirty: boolean;
  /** The store holds a file at this inode's path (false: created here, not committed yet). */
  stored: boolean;
  /** Serialises spool changes and commits. */
  lock: Mutex;
  /** Dropped (its spool file closed): never used again. */
  closed?: boolean;
}

interface OpenHandle {
  kind: "o";
  ino: number;
  append: boolean;
}

interface DirHandle {
  kind: "d";
  /** ".", "..", then the children. */
  entries: { name: string; path: string; node: FsNode }[];
}

/** Runs async sections one at a time. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(fn);
    this.#tail = p.catch(() => {});
    return p;
  }
}

/** A bounded cache of chunks by id, least recently used dropped first. */
export class ChunkCache {
  #max: number;
  #bytes = 0;
  #map = new Map<string, Uint8Array>();
  #loading = new Map<string, Promise<Uint8Array>>();
  #fetch: (id: string) => Promise<Uint8Array>;
  /** Chunks served from memory. */
  hits = 0;
  /** Chunks fetched from the nodes. */
  misses = 0;

  /** A cache of at most `maxBytes` over `fetch`. */
  constructor(maxBytes: number, fetch: (id: string) => Promise<Uint8Array>) {
    this.#max = maxBytes;
    this.#fetch = fetch;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The chunk, from memory or fetched (one fetch per id at a time). */
  get(id: string): Promise<Uint8Array> {
    const b = this.#map.get(id);
    if (b) {
      this.hits++;
      this.#map.delete(id); // most recently used: to the end
      this.#map.set(id, b);
      return Promise.resolve(b);
    }
    let p = this.#loading.get(id);
    if (!p) {
      this.misses++;
      p = this.#fetch(id).then((data) => {
        this.#put(id, data);
        return data;
      }).finally(() => this.#loading.delete(id));
      this.#loading.set(id, p);
    }
    return p;
  }

  /** Starts fetching `id` unless it is here or on its way. */
  prefetch(id: string): void {
    if (this.#map.has(id) || this.#loading.has(id)) return;
    this.get(id).catch(() => {}); // a failed read-ahead is retried by the real read
  }

  #put(id: string, b: Uint8Array) {
    if (b.length > this.#max) return;
    this.#map.set(id, b);
    this.#bytes += b.length;
    for (const [k, v] of this.#map) {
      if (this.#bytes <= this.#max) break;
      this.#map.delete(k);
      this.#bytes -= v.length;
    }
  }
}

const utf8 = new TextEncoder();

/**
 * The path of `name` in the directory `dir`: ENAMETOOLONG, before anything
 * is made, for a name or a path longer than the store keeps (the kernel
 * passes names of up to 255 bytes and paths of any length).
 */
function join(dir: string, name: string): string {
  const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
  if (name.length > MAX_NAME / 3 && utf8.encode(name).length > MAX_NAME) {
    throw new FsError(
      Errno.ENAMETOOLONG,
      `${path.slice(0, 60)}…: name longer than ${MAX_NAME} bytes`,
    );
  }
  if (path.length > MAX_PATH / 3 && utf8.encode(path).length > MAX_PATH) {
    throw new FsError(
      Errno.ENAMETOOLONG,
      `${path.slice(0, 60)}…: path longer than ${MAX_PATH} bytes`,
    );
  }
  return path;
}

function parent(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function isSnapshotPath(path: string): boolean {
  return path === SNAP_PREFIX || path.startsWith(SNAP_PREFIX + "/");
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Writes all of `data` at `off` of `f`. */
function writeAt(f: Deno.FsFile, off: number, data: Uint8Array): void {
  f.seekSync(off, Deno.SeekMode.Start);
  let at = 0;
  while (at < data.length) at += f.writeSync(data.subarray(at));
}

/** Reads up to `size` bytes at `off` of `f` (fewer at its end). */
function readAt(f: Deno.FsFile, off: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  f.seekSync(off, Deno.SeekMode.Start);
  let at = 0;
  while (at < size) {
    const n = f.readSync(out.subarray(at));
    if (n === null || n === 0) break;
    at += n;
  }
  return at === size ? out : out.slice(0, at);
}

/**
 * The file system over a {@linkcode Backend}: build it, then
 * {@linkcode PifsFs.mount} and {@linkcode PifsFs.serve}.
 */
export class PifsFs {
  readonly #b: Backend;
  readonly #w: BackendWrites | undefined;
  readonly #log: (msg: string) => void;
  readonly #debug: boolean;
  readonly #timeout: number;
  readonly #uid: number;
  readonly #gid: number;
  readonly #spoolDir: string | undefined;
  readonly cache: ChunkCache;
  /** The chunk cache on the host's disk, if any. */
  readonly disk: DiskChunkCache | undefined;
  #inodes = new Map<number, Inode>([[1, { path: "/", nlookup: 1 }]]);
  /** The manifest each inode had when last opened for reading (page cache kept only while equal). */
  #lastOpened = new Map<number, string | null>();
  /** The manifest each file inode had when the kernel was last given its attributes. */
  #told = new Map<number, string | null>();
  #byPath = new Map<string, number>([["/", 1]]);
  #nextIno = 2;
  #handles = new Map<number, OpenHandle | DirHandle>();
  #open = new Map<number, OpenFile>();
  #nextFh = 1;
  #nextSpool = 1;
  /** Namespace changes and commits, one at a time (a check and its commit stay together). */
  #ns = new Mutex();
  /** Commits whose content is stored, waiting for their `put` entry. */
  #puts: {
    of: OpenFile;
    prepared: PreparedFile;
    resolve: () => void;
    reject: (e: unknown) => void;
  }[] = [];
  #manifests = new Map<string, Promise<Manifest>>();
  #snaps = new Map<string, Promise<Map<string, FsNode>>>();
  #session: FuseSession | undefined;
  #pending = new Set<FuseRequest>();
  #alive = true;
  /** Requests answered, by operation. */
  readonly counts = new Map<string, number>();
  /** Files committed (put entries) through the mount. */
  commits = 0;

  /** A file system over `backend`. */
  constructor(backend: Backend, opts: FsOptions = {}) {
    this.#b = backend;
    this.#w = opts.readOnly ? undefined : backend.writes;
    if (this.#w && !opts.spoolDir) throw new Error("PifsFs: a writable mount needs spoolDir");
    this.#spoolDir = opts.spoolDir;
    this.#log = opts.log ?? (() => {});
    this.#debug = !!opts.debug;
    this.#timeout = opts.timeoutS ?? 3600;
    this.#uid = Deno.uid() ?? 0;
    this.#gid = Deno.gid() ?? 0;
    const disk = this.disk = opts.diskCache;
    this.cache = new ChunkCache(opts.cacheBytes ?? 64 << 20, async (id) => {
      const kept = await disk?.get(id);
      if (kept) return kept;
      const data = await backend.chunk(id); // checked against its id
      disk?.put(id, data).catch((e) => this.#log(`disk cache: ${(e as Error).message}`));
      return data;
    });
  }

  /** Whether changes are refused (EROFS). */
  get readOnly(): boolean {
    return !this.#w;
  }

  // ---- namespace ----

  /** The node at `path`: an open file's, the store's, or one of a snapshot's under /.snapshots. */
  async resolve(path: string): Promise<FsNode | undefined> {
    const ino = this.#byPath.get(path);
    const of = ino === undefined ? undefined : this.#open.get(ino);
    if (of) return this.#nodeOf(of);
    if (isSnapshotPath(path)) {
      // A real entry of that name wins over the snapshots.
      const real = this.#b.get(SNAP_PREFIX);
      if (real) return this.#b.get(path);
      if (path === SNAP_PREFIX) {
        return { type: "d", size: 0, mode: 0o555, mtime: 0, manifest: null };
      }
      const rest = path.slice(SNAP_PREFIX.length + 1);
      const slash = rest.indexOf("/");
      const name = slash < 0 ? rest : rest.slice(0, slash);
      const tree = await this.#snapTree(name);
      return tree?.get(slash < 0 ? "/" : rest.slice(slash));
    }
    return this.#b.get(path);
  }

  #nodeOf(of: OpenFile): FsNode {
    return { type: "f", size: of.size, mode: of.mode, mtime: of.mtime, manifest: null };
  }

  /** Whether `path` lies in the virtual /.snapshots (read-only). */
  #inSnapshots(path: string): boolean {
    return isSnapshotPath(path) && !this.#b.get(SNAP_PREFIX);
  }

  /** The children of the directory at `path`, by name. */
  async children(path: string): Promise<{ name: string; node: FsNode }[]> {
    const real = this.#b.get(SNAP_PREFIX);
    if (!real && isSnapshotPath(path)) {
      if (path === SNAP_PREFIX) {
        const out: { name: string; node: FsNode }[] = [];
        for (const s of this.#b.snapshots()) {
          out.push({
            name: s.name,
            node: { type: "d", size: 0, mode: 0o555, mtime: s.time, manifest: null },
          });
        }
        return out.sort(byName);
      }
      const rest = path.slice(SNAP_PREFIX.length + 1);
      const slash = rest.indexOf("/");
      const name = slash < 0 ? rest : rest.slice(0, slash);
      const tree = await this.#snapTree(name);
      if (!tree) return [];
      const dir = slash < 0 ? "/" : rest.slice(slash);
      const out: { name: string; node: FsNode }[] = [];
      for (const [p, node] of tree) {
        if (p !== "/" && parent(p) === dir) {
          out.push({ name: p.slice(p.lastIndexOf("/") + 1), node });
        }
      }
      return out.sort(byName);
    }
    let list = this.#b.list(path);
    // Files open here: their size and times as written so far; new ones not committed yet.
    const open = new Map<string, FsNode>();
    for (const of of this.#open.values()) {
      const p = this.#inodes.get(of.ino)?.path;
      if (p && p !== "/" && parent(p) === path) {
        open.set(p.slice(p.lastIndexOf("/") + 1), this.#nodeOf(of));
      }
    }
    if (open.size) {
      list = list.map((c) => {
        const n = open.get(c.name);
        if (!n) return c;
        open.delete(c.name);
        return { name: c.name, node: n };
      });
      for (const [name, node] of open) list.push({ name, node });
      list.sort(byName);
    }
    // /.snapshots is listed in the root when there is a snapshot to show.
    if (path === "/" && !real && this.#b.snapshots().length > 0) {
      list.push({
        name: SNAPSHOTS_DIR,
        node: { type: "d", size: 0, mode: 0o555, mtime: 0, manifest: null },
      });
      list.sort(byName);
    }
    return list;
  }

  /** A snapshot's files and directories by path within it (undefined: no such snapshot). */
  #snapTree(name: string): Promise<Map<string, FsNode> | undefined> {
    const ref = this.#b.snapshots().find((s) => s.name === name);
    if (!ref) return Promise.resolve(undefined);
    let p = this.#snaps.get(ref.root);
    if (!p) {
      p = this.#b.snapshotFiles(ref.root).then((files) => {
        const t = new Map<string, FsNode>();
        const dir: FsNode = { type: "d", size: 0, mode: 0o555, mtime: ref.time, manifest: null };
        t.set("/", dir);
        for (const [rel, manifest, size, mode, mtime] of files) {
          const path = "/" + rel.split("/").filter((x) => x && x !== "." && x !== "..").join("/");
          if (path === "/") continue;
          for (let d = parent(path); !t.has(d); d = parent(d)) t.set(d, { ...dir });
          t.set(path, { type: "f", size, mode: mode & 0o7777, mtime, manifest });
        }
        return t;
      });
      p.catch(() => this.#snaps.delete(ref.root)); // retried at the next access
      this.#snaps.set(ref.root, p);
    }
    return p;
  }

  #attr(ino: number, n: FsNode): Attr {
    // What the kernel is told a file holds (it caches the size for #timeout).
    if (n.type === "f") this.#told.set(ino, n.manifest);
    const type = n.type === "d" ? S_IFDIR : n.type === "l" ? S_IFLNK : S_IFREG;
    return {
      ino,
      mode: type | (n.type === "l" ? 0o777 : n.mode & 0o7777),
      nlink: n.type === "d" ? 2 : 1,
      uid: this.#uid,
      gid: this.#gid,
      size: n.type === "d" ? 0 : n.size,
      mtimeMs: n.mtime,
      blksize: 256 * 1024,
    };
  }

  /** The inode of `path`, made if new; `lookups` added to its count. */
  #ino(path: string, lookups: number): number {
    let ino = this.#byPath.get(path);
    if (ino === undefined) {
      // Inode numbers are never reused (generation stays 0).
      ino = this.#nextIno++;
      this.#byPath.set(path, ino);
      this.#inodes.set(ino, { path, nlookup: 0 });
    }
    this.#inodes.get(ino)!.nlookup += lookups;
    return ino;
  }

  #path(ino: number): string {
    const i = this.#inodes.get(ino);
    if (!i) throw new FsError(Errno.ENOENT, `inode ${ino} unknown (forgotten)`);
    if (i.path === null) throw new FsError(Errno.ENOENT, `inode ${ino} was removed`);
    return i.path;
  }

  /** Inodes the kernel holds (root included). */
  get inodes(): number {
    return this.#inodes.size;
  }

  /** Files open (or being changed) now. */
  get openFiles(): number {
    return this.#open.size;
  }

  #forget(ino: number, n: number) {
    const i = this.#inodes.get(ino);
    if (!i || ino === 1) return;
    i.nlookup -= n;
    if (i.nlookup <= 0 && !this.#open.has(ino)) {
      this.#inodes.delete(ino);
      this.#lastOpened.delete(ino);
      this.#told.delete(ino);
      if (i.path !== null && this.#byPath.get(i.path) === ino) this.#byPath.delete(i.path);
    }
  }

  /** `path` (and what is under it) no longer names its inodes: removed, or replaced by a rename. */
  #unlinkPaths(path: string) {
    for (const [p, ino] of [...this.#byPath]) {
      if (p !== path && !p.startsWith(path + "/")) continue;
      this.#byPath.delete(p);
      const i = this.#inodes.get(ino);
      if (i) i.path = null;
      const of = this.#open.get(ino);
      if (of) {
        of.dirty = of.stored = false; // nothing left to commit
        if (of.handles === 0) void this.#close(of); // one kept after a failed commit
      }
    }
  }

  /**
   * The store changed under the mount (a command the mount ran for another
   * one, `cli/_serve.ts`): names whose entry is gone are dropped from the
   * kernel's cache, and every inode's cached attributes and data too, so
   * the next access sees what was committed, never an old size over new
   * data. Files open for writing here keep their spool (the last commit
   * wins).
   */
  async externalChange(): Promise<void> {
    const s = this.#session;
    if (!s) return;
    const gone: string[] = [];
    for (const [p, ino] of this.#byPath) {
      if (p === "/" || isSnapshotPath(p) || this.#open.has(ino)) continue;
      if (!this.#b.get(p)) gone.push(p);
    }
    for (const p of gone) {
      const slash = p.lastIndexOf("/");
      const parent = this.#byPath.get(slash <= 0 ? "/" : p.slice(0, slash));
      if (parent !== undefined) await s.invalEntry(parent, p.slice(slash + 1));
    }
    for (const p of gone) if (this.#byPath.has(p)) this.#unlinkPaths(p);
    const failed: string[] = [];
    for (const ino of [...this.#inodes.keys()]) {
      if (this.#open.has(ino)) continue;
      const r = await s.invalInode(ino);
      // -ENOENT: the kernel no longer knows it (nothing cached).
      if (r !== 0 && r !== -2) failed.push(`inode ${ino}: ${r}`);
    }
    this.#log(
      `the store changed: ${gone.length} names dropped, ${this.#inodes.size} inodes invalidated` +
        (failed.length ? `; failed: ${failed.slice(0, 5).join(", ")}` : ""),
    );
  }

  /** The inodes of `from` and under it now live at `to` and under it. */
  #movePaths(from: string, to: string) {
    const moved: [string, number][] = [];
    for (const [p, ino] of this.#byPath) {
      if (p === from || p.startsWith(from + "/")) moved.push([to + p.slice(from.length), ino]);
    }
    for (const [, ino] of moved) this.#byPath.delete(this.#inodes.get(ino)!.path!);
    for (const [np, ino] of moved) {
      this.#byPath.set(np, ino);
      this.#inodes.get(ino)!.path = np;
    }
  }

  #manifest(id: string): Promise<Manifest> {
    let p = this.#manifests.get(id);
    if (!p) {
      // Through the disk cache too: a file read before opens with every Pi down.
      const disk = this.disk;
      p = disk
        ? disk.get(id).then(async (kept) => {
          if (kept) return decodeManifest(kept, id);
          const m = await this.#b.manifest(id);
          // Canonical JSON: the bytes hash to `id` again (checked when read back).
          disk.put(id, encodeManifest(m)).catch(() => {});
          return m;
        })
        : this.#b.manifest(id);
      p.catch(() => this.#manifests.delete(id));
      this.#manifests.set(id, p);
      if (this.#manifests.size > 4096) {
        this.#manifests.delete(this.#manifests.keys().next().value!);
      }
    }
    return p;
  }

  // ---- reading ----

  /** Bytes [off, off+size) of a file, from its chunks. */
  private async read(h: FileHandle, off: number, size: number): Promise<Uint8Array> {
    const total = h.manifest.size;
    if (off >= total || size <= 0) return new Uint8Array(0);
    const end = Math.min(total, off + size);
    // The chunk holding `off`: binary search over the starts.
    let lo = 0, hi = h.manifest.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (h.starts[mid] <= off) lo = mid;
      else hi = mid - 1;
    }
    let last = lo;
    while (h.starts[last + 1] < end) last++;
    const parts = [];
    for (let k = lo; k <= last; k++) parts.push(this.#chunkAt(h, k));
    // A sequential reader gets the next chunks fetched ahead.
    const ahead = off === h.lastEnd ? this.#b.readAhead() : 1;
    for (let k = last + 1; k <= last + ahead && k < h.manifest.chunks.length; k++) {
      this.cache.prefetch(h.manifest.chunks[k][0]);
    }
    h.lastEnd = end;
    const got = await Promise.all(parts);
    const out = new Uint8Array(end - off);
    let at = 0;
    for (let k = lo; k <= last; k++) {
      const b = got[k - lo];
      const from = Math.max(off, h.starts[k]) - h.starts[k];
      const to = Math.min(end, h.starts[k + 1]) - h.starts[k];
      out.set(b.subarray(from, to), at);
      at += to - from;
    }
    return out;
  }

  /** Bytes [off, off+size) of the file at `path`, as a read through the mount gets them (tests). */
  async readFile(path: string, off: number, size: number): Promise<Uint8Array> {
    const n = await this.resolve(path);
    if (!n || n.type !== "f") throw new FsError(Errno.ENOENT, path);
    const ino = this.#byPath.get(path);
    const of = ino === undefined ? undefined : this.#open.get(ino);
    if (of) return await this.#readOpen(of, off, size);
    return await this.read(await this.#handle(path, n), off, size);
  }

  async #handle(path: string, n: FsNode): Promise<FileHandle> {
    if (!n.manifest) throw new FsError(Errno.EIO, `${path}: no manifest`);
    const m = await this.#manifest(n.manifest);
    const starts = [0];
    for (const [, size] of m.chunks) starts.push(starts[starts.length - 1] + size);
    if (starts[starts.length - 1] !== m.size || m.size !== n.size) {
      throw new FsError(Errno.EIO, `${path}: manifest says ${m.size} bytes, entry ${n.size}`);
    }
    return { kind: "f", path, manifest: m, starts, lastEnd: 0 };
  }

  async #chunkAt(h: FileHandle, k: number): Promise<Uint8Array> {
    const [id, size] = h.manifest.chunks[k];
    const b = await this.cache.get(id);
    if (b.length !== size) {
      throw new FsError(Errno.EIO, `${h.path}: chunk ${id}: ${b.length} bytes, expected ${size}`);
    }
    return b;
  }

  /** A read of an open file: from its spool once changed, else from the store. */
  async #readOpen(of: OpenFile, off: number, size: number): Promise<Uint8Array> {
    if (of.spool) {
      if (off >= of.size || size <= 0) return new Uint8Array(0);
      return readAt(of.spool, off, Math.min(size, of.size - off));
    }
    if (!of.reader) {
      if (of.size === 0) return new Uint8Array(0);
      const path = this.#path(of.ino);
      const n = this.#b.get(path);
      if (!n || n.type !== "f") throw new FsError(Errno.ENOENT, path);
      of.reader = await this.#handle(path, n);
    }
    return await this.read(of.reader, off, size);
  }

  // ---- writing ----

  /** The open state of `ino` (made from `n` when the inode has none). */
  #openFile(ino: number, n: FsNode, stored: boolean): OpenFile {
    let of = this.#open.get(ino);
    if (!of) {
      of = {
        ino,
        handles: 0,
        size: n.size,
        mode: n.mode,
        mtime: n.mtime,
        dirty: false,
        stored,
        lock: new Mutex(),
      };
      this.#open.set(ino, of);
    }
    return of;
  }

  /** Gives `of` a spool file holding its content (copied from the store, or empty). */
  async #spool(of: OpenFile, empty: boolean): Promise<Deno.FsFile> {
    if (of.spool) return of.spool;
    if (of.closed) throw new FsError(Errno.EIO, `inode ${of.ino}: changed after it was dropped`);
    const path = `${this.#spoolDir}/${of.ino}-${this.#nextSpool++}`;
    const f = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
    try {
      if (!empty && of.size > 0) {
        if (!of.reader) {
          const p = this.#path(of.ino);
          const n = this.#b.get(p);
          if (!n || n.type !== "f") throw new FsError(Errno.ENOENT, p);
          of.reader = await this.#handle(p, n);
        }
        const h = of.reader;
        for (let k = 0; k < h.manifest.chunks.length; k++) {
          writeAt(f, h.starts[k], await this.#chunkAt(h, k));
        }
      }
    } catch (e) {
      f.close();
      await Deno.remove(path).catch(() => {});
      throw e;
    }
    if (empty) of.size = 0;
    of.spool = f;
    of.spoolPath = path;
    of.reader = undefined;
    return f;
  }

  /**
   * Commits `of` if it differs from the store: its content as chunks and a
   * manifest first, then (namespace locked) a `put` entry at the path the
   * inode has then: a rename meanwhile moves the commit with it, an unlink
   * drops it. Call with the file locked (never with the namespace locked).
   */
  async #commit(of: OpenFile): Promise<void> {
    if (!of.dirty || of.closed) return;
    const path0 = this.#inodes.get(of.ino)?.path;
    if (!path0) {
      of.dirty = false; // unlinked: nothing to keep
      return;
    }
    const f = of.spool ?? await this.#spool(of, false);
    // Attribute changes while this runs set it again (content waits for the file lock).
    of.dirty = false;
    let prepared: PreparedFile;
    try {
      prepared = await this.#w!.prepare(path0, of.size, (off, len) => readAt(f, off, len));
    } catch (e) {
      of.dirty = true;
      throw e;
    }
    await new Promise<void>((resolve, reject) => {
      this.#puts.push({ of, prepared, resolve, reject });
      if (this.#puts.length === 1) void this.#ns.run(() => this.#drainPuts());
    });
  }

  /**
   * The `put` entries of the commits whose content is stored, all at once
   * (namespace locked): the store sends entries that wait together in one
   * journal append, so many small files cost a round trip per batch.
   */
  async #drainPuts() {
    const batch = this.#puts.splice(0);
    await Promise.all(batch.map(async (q) => {
      const path = this.#inodes.get(q.of.ino)?.path;
      if (!path) return q.resolve(); // unlinked meanwhile
      try {
        await this.#w!.put(path, q.prepared, { mode: q.of.mode & 0o7777, mtime: q.of.mtime });
      } catch (e) {
        q.of.dirty = true;
        return q.reject(e);
      }
      q.of.stored = true;
      this.commits++;
      q.resolve();
    }));
  }

  /** Drops `of` (no handle left): its spool file goes, unless a commit failed (then it is kept). */
  async #close(of: OpenFile, keep?: string) {
    of.closed = true;
    if (this.#open.get(of.ino) === of) this.#open.delete(of.ino);
    of.spool?.close();
    of.spool = undefined;
    if (!of.spoolPath) return;
    if (keep) {
      await Deno.writeTextFile(
        `${of.spoolPath}.json`,
        JSON.stringify({ path: keep, mode: of.mode, mtime: of.mtime, size: of.size }) + "\n",
      ).catch(() => {});
      this.#log(`${keep}: not committed; its content is kept in ${of.spoolPath}`);
    } else await Deno.remove(of.spoolPath).catch(() => {});
    of.spoolPath = undefined;
    // The inode table keeps an unlinked inode only while the kernel holds it.
    const i = this.#inodes.get(of.ino);
    if (i && i.nlookup <= 0 && of.ino !== 1) {
      this.#inodes.delete(of.ino);
      if (i.path !== null && this.#byPath.get(i.path) === of.ino) this.#byPath.delete(i.path);
    }
  }

  /** Commits `of` if dirty (the file locked; the namespace only for the journal entry). */
  #commitLocked(of: OpenFile): Promise<void> {
    return of.lock.run(() => this.#commit(of));
  }

  /** Commits every changed file still open (at unmount); returns how many failed. */
  async flushAll(): Promise<number> {
    let failed = 0;
    for (const of of [...this.#open.values()]) {
      const path = this.#inodes.get(of.ino)?.path ?? undefined;
      try {
        await this.#commitLocked(of);
        await this.#close(of);
      } catch (e) {
        failed++;
        this.#log(`${path}: commit at unmount failed: ${(e as Error).message}`);
        await this.#close(of, path ?? `inode ${of.ino}`);
      }
    }
    return failed;
  }

  #refuseChange(op: string, path: string) {
    if (!this.#w) throw new FsError(Errno.EROFS, `${op} ${path}: read-only mount`);
    if (this.#inSnapshots(path)) {
      throw new FsError(Errno.EROFS, `${op} ${path}: snapshots are read-only`);
    }
  }

  /** The directory at `path` (ENOENT, ENOTDIR otherwise). */
  async #dir(path: string): Promise<FsNode> {
    const n = await this.resolve(path);
    if (!n) throw new FsError(Errno.ENOENT, `${path}: no such directory`);
    if (n.type !== "d") throw new FsError(Errno.ENOTDIR, `${path}: not a directory`);
    return n;
  }

  #entry(path: string, n: FsNode): Uint8Array<ArrayBuffer> {
    const ino = this.#ino(path, 1);
    return entryParam(this.#attr(ino, n), 0, this.#timeout);
  }

  // ---- the session ----

  /** The handlers, by operation (exported for tests that call them without a kernel). */
  handlers(): Partial<Record<OpName, OpHandler>> {
    const ro = this.readOnly;
    const refuse = (op: string, errno: number, why: string) =>
      this.#wrap(op, () => Promise.reject(new FsError(ro ? Errno.EROFS : errno, `${op}: ${why}`)));
    return {
      init: (_userdata: unknown, _conn: unknown) => {
        this.#log("FUSE session initialised");
      },
      lookup: this.#wrap("lookup", async (r, parentIno: number, namePtr: Deno.PointerValue) => {
        const name = readCString(namePtr);
        const path = join(this.#path(parentIno), name);
        const n = name === "." || name === ".." ? undefined : await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        r.entry(this.#entry(path, n));
      }),
      forget: (req: Deno.PointerObject, ino: number | bigint, n: number | bigint) => {
        this.#forget(Number(ino), Number(n));
        new FuseRequest(this.#session!.lib, req, "forget", () => this.#alive).none();
      },
      forget_multi: (req: Deno.PointerObject, count: number | bigint, list: Deno.PointerValue) => {
        if (list) {
          const v = new Deno.UnsafePointerView(list);
          for (let i = 0; i < Number(count); i++) {
            this.#forget(Number(v.getBigUint64(16 * i)), Number(v.getBigUint64(16 * i + 8)));
          }
        }
        new FuseRequest(this.#session!.lib, req, "forget_multi", () => this.#alive).none();
      },
      getattr: this.#wrap("getattr", async (r, ino: number) => {
        const of = this.#open.get(ino);
        const n = of ? this.#nodeOf(of) : await this.resolve(this.#path(ino));
        if (!n) throw new FsError(Errno.ENOENT, `inode ${ino}`);
        r.attr(statStruct(this.#attr(ino, n)), this.#timeout);
      }),
      setattr: this.#wrap(
        "setattr",
        (r, ino: number, attrPtr: Deno.PointerValue, toSet: number) => {
          const st = decodeStat(attrPtr); // C memory: read now
          // The state of a file is per inode: an ftruncate's handle (fi) adds nothing.
          return this.#setattr(r, ino, st, toSet);
        },
      ),
      readlink: this.#wrap("readlink", async (r, ino: number) => {
        const n = await this.resolve(this.#path(ino));
        if (!n || n.type !== "l") throw new FsError(Errno.EINVAL, "not a symbolic link");
        r.readlink(n.target ?? "");
      }),
      mknod: this.#wrap(
        "mknod",
        async (r, parentIno: number, namePtr: Deno.PointerValue, mode: number) => {
          const path = join(this.#path(parentIno), readCString(namePtr));
          this.#refuseChange("mknod", path);
          const type = mode & S_IFMT;
          if (type === S_IFCHR || type === S_IFBLK) {
            throw new FsError(Errno.EPERM, `mknod ${path}: the store keeps no device files`);
          }
          if (type !== S_IFREG && type !== 0) {
            throw new FsError(
              Errno.ENOTSUP,
              `mknod ${path}: the store keeps no named pipes or sockets`,
            );
          }
          const mtime = Date.now();
          await this.#ns.run(async () => {
            await this.#dir(parent(path));
            if (await this.resolve(path)) throw new FsError(Errno.EEXIST, path);
            const empty = await this.#w!.prepare(path, 0, () => new Uint8Array(0));
            await this.#w!.put(path, empty, { mode: mode & 0o7777, mtime });
          });
          r.entry(this.#entry(path, await this.resolve(path) as FsNode));
        },
      ),
      mkdir: this.#wrap(
        "mkdir",
        async (r, parentIno: number, namePtr: Deno.PointerValue, mode: number) => {
          const path = join(this.#path(parentIno), readCString(namePtr));
          this.#refuseChange("mkdir", path);
          await this.#ns.run(async () => {
            await this.#dir(parent(path));
            if (await this.resolve(path)) throw new FsError(Errno.EEXIST, path);
            await this.#w!.mkdir(path, mode & 0o7777, Date.now());
          });
          r.entry(this.#entry(path, await this.resolve(path) as FsNode));
        },
      ),
      unlink: this.#wrap("unlink", async (r, parentIno: number, namePtr: Deno.PointerValue) => {
        const path = join(this.#path(parentIno), readCString(namePtr));
        this.#refuseChange("unlink", path);
        await this.#ns.run(async () => {
          const n = await this.resolve(path);
          if (!n) throw new FsError(Errno.ENOENT, path);
          if (n.type === "d") throw new FsError(Errno.EISDIR, path);
          if (this.#b.get(path)) await this.#w!.remove(path);
          this.#unlinkPaths(path);
        });
        r.err(0);
      }),
      rmdir: this.#wrap("rmdir", async (r, parentIno: number, namePtr: Deno.PointerValue) => {
        const path = join(this.#path(parentIno), readCString(namePtr));
        this.#refuseChange("rmdir", path);
        await this.#ns.run(async () => {
          const n = await this.resolve(path);
          if (!n) throw new FsError(Errno.ENOENT, path);
          if (n.type !== "d") throw new FsError(Errno.ENOTDIR, path);
          if (path === "/") throw new FsError(Errno.EBUSY, "the root");
          if ((await this.children(path)).length) throw new FsError(Errno.ENOTEMPTY, path);
          await this.#w!.remove(path);
          this.#unlinkPaths(path);
        });
        r.err(0);
      }),
      symlink: this.#wrap(
        "symlink",
        async (r, linkPtr: Deno.PointerValue, parentIno: number, namePtr: Deno.PointerValue) => {
          const target = readCString(linkPtr);
          const path = join(this.#path(parentIno), readCString(namePtr));
          this.#refuseChange("symlink", path);
          await this.#ns.run(async () => {
            await this.#dir(parent(path));
            if (await this.resolve(path)) throw new FsError(Errno.EEXIST, path);
            await this.#w!.symlink(path, target, Date.now());
          });
          r.entry(this.#entry(path, await this.resolve(path) as FsNode));
        },
      ),
      rename: this.#wrap(
        "rename",
        (
          r,
          p1: number,
          n1: Deno.PointerValue,
          p2: number,
          n2: Deno.PointerValue,
          flags: number,
        ) => {
          const from = join(this.#path(p1), readCString(n1));
          const to = join(this.#path(p2), readCString(n2));
          return this.#rename(r, from, to, flags);
        },
      ),
      link: refuse("link", Errno.EPERM, "the store keeps no hard links"),
      setxattr: refuse("setxattr", Errno.ENOTSUP, "no extended attributes"),
      removexattr: refuse("removexattr", Errno.ENOTSUP, "no extended attributes"),
      fallocate: refuse("fallocate", Errno.ENOTSUP, "not supported"),
      create: this.#wrap(
        "create",
        async (r, parentIno: number, namePtr: Deno.PointerValue, mode: number, fi) => {
          const { flags } = readFileInfo(fi);
          const path = join(this.#path(parentIno), readCString(namePtr));
          this.#refuseChange("create", path);
          // The name is taken under the namespace lock; the spool file after it
          // (a file lock is never waited for with the namespace locked).
          const made = await this.#ns.run(async () => {
            await this.#dir(parent(path));
            const cur = await this.resolve(path);
            if (cur) {
              if (flags & O_EXCL) throw new FsError(Errno.EEXIST, path);
              if (cur.type === "d") throw new FsError(Errno.EISDIR, path);
              if (cur.type !== "f") throw new FsError(Errno.EEXIST, path);
              return { cur };
            }
            const of = this.#openFile(this.#ino(path, 0), {
              type: "f",
              size: 0,
              mode: mode & 0o7777,
              mtime: Date.now(),
              manifest: null,
            }, false);
            of.handles++;
            of.dirty = true;
            return { of };
          });
          let ino: number, fh: number;
          if (made.cur) {
            ino = this.#ino(path, 0);
            fh = await this.#openIno(ino, path, made.cur, flags);
          } else {
            const of = made.of!;
            ino = of.ino;
            try {
              await of.lock.run(() => this.#spool(of, true));
            } catch (e) {
              if (--of.handles <= 0) await this.#close(of);
              throw e;
            }
            fh = this.#nextFh++;
            this.#handles.set(fh, { kind: "o", ino, append: (flags & O_APPEND) !== 0 });
          }
          this.#inodes.get(ino)!.nlookup++;
          const of = this.#open.get(ino)!;
          r.create(
            entryParam(this.#attr(ino, this.#nodeOf(of)), 0, this.#timeout),
            fileInfo(fh, 0),
          );
        },
      ),
      open: this.#wrap("open", async (r, ino: number, fi: Deno.PointerValue) => {
        const { flags } = readFileInfo(fi);
        const path = this.#path(ino);
        const writing = (flags & O_ACCMODE) !== 0 || (flags & O_WRITE_FLAGS) !== 0;
        if (writing && !this.#w) {
          throw new FsError(Errno.EROFS, `${path}: opened for writing (read-only mount)`);
        }
        if (writing && this.#inSnapshots(path)) {
          throw new FsError(Errno.EROFS, `${path}: snapshots are read-only`);
        }
        const n = await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        if (n.type === "d") throw new FsError(Errno.EISDIR, path);
        const fh = await this.#openIno(ino, path, n, flags);
        // Read-only: the mount itself changes nothing, so the kernel keeps the
        // page cache across opens, unless the content changed since the last
        // open (a command run for another one, e.g. a sync, replaced it): then
        // the kernel drops what it has, even pages a read in flight cached
        // after the change was announced (externalChange).
        const last = this.#lastOpened.get(ino);
        this.#lastOpened.set(ino, n.manifest);
        const keep = !this.#w && last !== undefined && last === n.manifest;
        // The kernel's cached size may be the old content's: drop its
        // attributes (not pages: nothing here holds a page lock) before the
        // open returns, so the reader's fstat and reads see the new size.
        const told = this.#told.get(ino);
        if (told !== undefined && told !== n.manifest) {
          this.#told.delete(ino);
          await this.#session?.invalInode(ino, -1);
        }
        r.open(fileInfo(fh, keep ? FI_KEEP_CACHE : 0));
      }),
      read: this.#wrap(
        "read",
        async (r, _ino: number, size: number, off: number, fi: Deno.PointerValue) => {
          const h = this.#handles.get(readFileInfo(fi).fh);
          if (!h || h.kind !== "o") throw new FsError(Errno.EBADF, "read: no such open file");
          const of = this.#open.get(h.ino);
          if (!of) throw new FsError(Errno.EBADF, "read: no such open file");
          const data = await this.#readOpen(of, Number(off), Number(size));
          r.buf(data as Uint8Array<ArrayBuffer>);
        },
      ),
      write: this.#wrap(
        "write",
        async (
          r,
          _ino: number,
          buf: Deno.PointerValue,
          size: number,
          off: number,
          fi: Deno.PointerValue,
        ) => {
          const { fh } = readFileInfo(fi);
          // The kernel's buffer is gone once this returns: copy it now.
          const data = size > 0 && buf
            ? new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(buf, size)).slice()
            : new Uint8Array(0);
          if (!this.#w) throw new FsError(Errno.EROFS, "write: read-only mount");
          const h = this.#handles.get(fh);
          if (!h || h.kind !== "o") throw new FsError(Errno.EBADF, "write: no such open file");
          const of = this.#open.get(h.ino);
          if (!of) throw new FsError(Errno.EBADF, "write: no such open file");
          if (off + size > MAX_FILE_BYTES) throw new FsError(Errno.EFBIG, "write");
          await of.lock.run(async () => {
            const f = await this.#spool(of, false);
            const at = h.append ? of.size : off;
            writeAt(f, at, data);
            of.size = Math.max(of.size, at + data.length);
            of.mtime = Date.now();
            of.dirty = true;
          });
          r.written(data.length);
        },
      ),
      flush: this.#wrap("flush", (r) => {
        // close(2) of one descriptor (also of each dup, which some runtimes make for every
        // I/O): nothing is committed here; the last release and fsync commit.
        r.err(0);
        return Promise.resolve();
      }),
      fsync: this.#wrap("fsync", async (r, ino: number) => {
        const of = this.#open.get(ino);
        if (of?.dirty) await this.#commitLocked(of);
        r.err(0);
      }),
      release: this.#wrap("release", async (r, ino: number, fi: Deno.PointerValue) => {
        this.#handles.delete(readFileInfo(fi).fh);
        const of = this.#open.get(ino);
        if (of) await this.#unuse(of, false);
        r.err(0);
      }),
      opendir: this.#wrap("opendir", async (r, ino: number) => {
        const path = this.#path(ino);
        const n = await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        if (n.type !== "d") throw new FsError(Errno.ENOTDIR, path);
        const up = parent(path);
        const entries = [
          { name: ".", path, node: n },
          { name: "..", path: up, node: (await this.resolve(up)) ?? n },
          ...(await this.children(path)).map((c) => ({ ...c, path: join(path, c.name) })),
        ];
        const fh = this.#nextFh++;
        this.#handles.set(fh, { kind: "d", entries });
        // Read-only, the listing cannot change: the kernel may keep it.
        r.open(fileInfo(fh, this.#w ? 0 : FI_KEEP_CACHE | FI_CACHE_READDIR));
      }),
      readdir: this.#wrap("readdir", (r, _ino, size, off, fi) => {
        this.#readdir(r, Number(size), Number(off), fi, false);
        return Promise.resolve();
      }),
      readdirplus: this.#wrap("readdirplus", (r, _ino, size, off, fi) => {
        this.#readdir(r, Number(size), Number(off), fi, true);
        return Promise.resolve();
      }),
      releasedir: this.#wrap("releasedir", (r, _ino: number, fi: Deno.PointerValue) => {
        this.#handles.delete(readFileInfo(fi).fh);
        r.err(0);
        return Promise.resolve();
      }),
      fsyncdir: this.#wrap("fsyncdir", (r) => {
        // Names are committed before their requests are answered: nothing waits here.
        r.err(0);
        return Promise.resolve();
      }),
      statfs: this.#wrap("statfs", async (r) => {
        const c = await this.#b.capacity();
        const bsize = 4096;
        const r_ = Math.max(1, c.copies);
        r.statfs(statvfsStruct({
          bsize,
          blocks: c.capacity / r_ / bsize,
          bfree: c.free / r_ / bsize,
          bavail: c.free / r_ / bsize,
          files: c.entries,
          ffree: 0,
          flag: this.#w ? 0 : ST_RDONLY,
          namemax: 255,
        }));
      }),
    };
  }

  /** Opens the file `ino` (at `path`, node `n`) with `flags`; returns the handle. */
  async #openIno(ino: number, path: string, n: FsNode, flags: number): Promise<number> {
    const writing = (flags & O_ACCMODE) !== 0;
    const of = this.#openFile(ino, n, !!this.#b.get(path));
    of.handles++;
    try {
      if (writing && (flags & O_TRUNC)) {
        await of.lock.run(async () => {
          const f = await this.#spool(of, true);
          f.truncateSync(0);
          of.size = 0;
          of.mtime = Date.now();
          of.dirty = true;
        });
      } else if (!of.spool && !of.reader && of.size > 0) {
        // The manifest now: a file unlinked while open stays readable.
        of.reader = await this.#handle(path, this.#b.get(path) ?? n);
      }
    } catch (e) {
      await this.#unuse(of, false); // what others changed is kept, as at a release
      throw e;
    }
    const fh = this.#nextFh++;
    this.#handles.set(fh, { kind: "o", ino, append: (flags & O_APPEND) !== 0 });
    return fh;
  }

  /**
   * Drops one use of `of` (a handle, or a setattr's hold on it); the last
   * one commits what is left and drops it. A failed commit is returned: the
   * file is then dropped if `discard` (its caller reports the error), else
   * kept open without a handle (still listed and readable from its spool,
   * committed at its next close or fsync, or at unmount, where a last failure
   * keeps the spool file).
   */
  async #unuse(of: OpenFile, discard: boolean): Promise<unknown> {
    let failed: unknown;
    await of.lock.run(async () => {
      if (--of.handles > 0) return;
      try {
        // Attributes changed while a commit ran need one more.
        for (let k = 0; k < 3 && of.dirty; k++) await this.#commit(of);
      } catch (e) {
        failed = e;
      }
    });
    if (of.handles > 0 || of.closed) return failed;
    if (failed && !discard) {
      const path = this.#inodes.get(of.ino)?.path ?? `inode ${of.ino}`;
      this.#log(
        `${path}: commit at release failed: ${(failed as Error)?.message ?? failed}; kept in ` +
          `${of.spoolPath}, retried at its next close or fsync and at unmount`,
      );
      return failed;
    }
    await this.#close(of);
    return failed;
  }

  async #setattr(
    r: FuseRequest,
    ino: number,
    st: StatIn,
    set: number,
  ) {
    const path = this.#inodes.get(ino)?.path ?? null;
    const label = path ?? `inode ${ino}`;
    const want = (bit: number) => (set & bit) !== 0;
    const ownerBits = SetAttr.UID | SetAttr.GID | SetAttr.SIZE | SetAttr.MODE | SetAttr.MTIME |
      SetAttr.MTIME_NOW;
    if (!this.#w && (set & ownerBits)) {
      throw new FsError(Errno.EROFS, `setattr ${label}: read-only mount`);
    }
    if (path !== null && (set & ownerBits)) this.#refuseChange("setattr", path);
    // chown: only to the mounting user (the store keeps no owners).
    if (want(SetAttr.UID) && st.uid !== this.#uid && st.uid !== 0xffffffff) {
      throw new FsError(Errno.EPERM, `chown ${label}: owner ${st.uid} (only ${this.#uid} is kept)`);
    }
    if (want(SetAttr.GID) && st.gid !== this.#gid && st.gid !== 0xffffffff) {
      throw new FsError(Errno.EPERM, `chgrp ${label}: group ${st.gid} (only ${this.#gid} is kept)`);
    }
    const mode = want(SetAttr.MODE) ? st.mode & 0o7777 : undefined;
    const mtime = want(SetAttr.MTIME_NOW)
      ? Date.now()
      : want(SetAttr.MTIME)
      ? st.mtimeMs
      : want(SetAttr.SIZE)
      ? Date.now()
      : undefined;
    // Held (as a handle would) while this runs: a release meanwhile does not drop it.
    let of = this.#open.get(ino);
    if (of) of.handles++;
    // A truncate of a file nobody has open: changed in a spool, committed before the answer.
    let ephemeral = false;
    let err: unknown;
    try {
      const n = of ? this.#nodeOf(of) : path === null ? undefined : await this.resolve(path);
      if (!n) throw new FsError(Errno.ENOENT, label);
      if (want(SetAttr.SIZE)) {
        if (n.type === "d") throw new FsError(Errno.EISDIR, `truncate ${label}`);
        if (n.type !== "f") throw new FsError(Errno.EINVAL, `truncate ${label}`);
        if (st.size < 0) throw new FsError(Errno.EINVAL, `truncate ${label} to ${st.size}`);
        if (st.size > MAX_FILE_BYTES) {
          throw new FsError(
            Errno.EFBIG,
            `truncate ${label} to ${st.size}: larger than a file can be`,
          );
        }
        if (!of) {
          of = this.#open.get(ino) ?? this.#openFile(ino, n, path !== null && !!this.#b.get(path));
          ephemeral = of.handles === 0;
          of.handles++;
        }
        const o = of;
        await o.lock.run(async () => {
          const f = await this.#spool(o, false);
          f.truncateSync(st.size);
          o.size = st.size;
          o.dirty = true;
        });
      }
      if (of && (of.dirty || !of.stored)) {
        // The next commit of the content carries them (at the latest when this drops it).
        if (mode !== undefined) of.mode = mode;
        if (mtime !== undefined) of.mtime = mtime;
        if (mode !== undefined || mtime !== undefined) of.dirty = true;
      } else if ((mode !== undefined || mtime !== undefined) && path !== null) {
        await this.#ns.run(() => this.#w!.setAttr(path, { mode, mtime }));
        if (of) {
          if (mode !== undefined) of.mode = mode;
          if (mtime !== undefined) of.mtime = mtime;
        }
      }
    } catch (e) {
      err = e;
    }
    // A truncate by path that fails is answered with its error: nothing to keep then.
    if (of) err ??= await this.#unuse(of, ephemeral);
    if (err) throw err;
    const now = this.#open.get(ino);
    const after = now ? this.#nodeOf(now) : path === null ? undefined : await this.resolve(path);
    if (!after) throw new FsError(Errno.ENOENT, label);
    r.attr(statStruct(this.#attr(ino, after)), this.#timeout);
  }

  async #rename(r: FuseRequest, from: string, to: string, flags: number) {
    if (flags & RENAME_EXCHANGE) {
      throw new FsError(Errno.EINVAL, `rename ${from} ${to}: exchange is not supported`);
    }
    this.#refuseChange("rename", from);
    this.#refuseChange("rename", to);
    await this.#ns.run(async () => {
      const src = await this.resolve(from);
      if (!src) throw new FsError(Errno.ENOENT, from);
      await this.#dir(parent(to));
      if (from === to) return;
      if (to.startsWith(from + "/")) {
        throw new FsError(Errno.EINVAL, `rename ${from} into itself (${to})`);
      }
      if (from === "/") throw new FsError(Errno.EBUSY, "the root");
      const dst = await this.resolve(to);
      if (dst) {
        if (flags & RENAME_NOREPLACE) throw new FsError(Errno.EEXIST, to);
        if (src.type === "d" && dst.type !== "d") throw new FsError(Errno.ENOTDIR, to);
        if (src.type !== "d" && dst.type === "d") throw new FsError(Errno.EISDIR, to);
        if (dst.type === "d" && (await this.children(to)).length) {
          throw new FsError(Errno.ENOTEMPTY, to);
        }
      }
      if (this.#b.get(from)) await this.#w!.move(from, to); // replaces what is at `to`
      else if (this.#b.get(to)) await this.#w!.remove(to); // `from` is new: not committed yet
      if (dst) this.#unlinkPaths(to);
      this.#movePaths(from, to);
    });
    r.err(0);
  }

  #readdir(r: FuseRequest, size: number, off: number, fi: Deno.PointerValue, plus: boolean) {
    const h = this.#handles.get(readFileInfo(fi).fh);
    if (!h || h.kind !== "d") throw new FsError(Errno.EBADF, "readdir: no such open directory");
    const buf = new Uint8Array(size);
    let used = 0;
    for (let i = off; i < h.entries.length; i++) {
      const e = h.entries[i];
      const dot = e.name === "." || e.name === "..";
      // Entries returned with attributes count as lookups (not . and ..). An
      // inode made here for a plain readdir stays until a lookup and its
      // forget (d_ino then matches st_ino).
      const ino = dot ? (this.#byPath.get(e.path) ?? 1) : this.#ino(e.path, 0);
      const attr = this.#attr(ino, e.node);
      const need = plus
        ? r.addDirentryPlus(buf, used, e.name, entryParam(attr, 0, this.#timeout), i + 1)
        : r.addDirentry(buf, used, e.name, statStruct(attr), i + 1);
      if (used + need > size) break;
      used += need;
      if (plus && !dot) this.#inodes.get(ino)!.nlookup++;
    }
    r.buf(buf, used);
  }

  /**
   * A C callback for `op`: reads nothing after it returns, replies once
   * (EIO for an unexpected error, the errno of an {@linkcode FsError}).
   */
  #wrap(
    op: string,
    // deno-lint-ignore no-explicit-any
    fn: (r: FuseRequest, ...args: any[]) => Promise<void>,
  ): OpHandler {
    // deno-lint-ignore no-explicit-any
    return (req: Deno.PointerObject, ...args: any[]) => {
      const r = new FuseRequest(this.#session!.lib, req, op, () => this.#alive);
      this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
      const norm = args.map((a) => typeof a === "bigint" ? Number(a) : a);
      if (this.#debug) this.#log(`${op} ${norm.filter((a) => typeof a === "number").join(" ")}`);
      this.#pending.add(r);
      let p: Promise<void>;
      try {
        p = fn(r, ...norm);
      } catch (e) {
        p = Promise.reject(e);
      }
      p.catch((e) => {
        // The host's own disk (the spool) full is ENOSPC too; anything else unexpected is EIO.
        const code = (e as { code?: string })?.code;
        const errno = e instanceof FsError
          ? e.errno
          : code === "ENOSPC" || code === "EDQUOT"
          ? Errno.ENOSPC
          : Errno.EIO;
        if (
          !(e instanceof FsError) || this.#debug || errno === Errno.EIO || errno === Errno.ENOSPC
        ) {
          this.#log(`${op}: ${(e as Error)?.message ?? e} (answered errno ${errno})`);
        }
        r.err(errno);
      }).finally(() => {
        this.#pending.delete(r);
      });
    };
  }

  /** Creates the session with `options` (mount options, e.g. "ro") and mounts it at `mountpoint`. */
  mount(mountpoint: string, options: string[]): void {
    this.#session = new FuseSession(this.handlers(), options);
    try {
      this.#session.mount(mountpoint);
    } catch (e) {
      this.#session.destroy();
      this.#session = undefined;
      throw e;
    }
  }

  /**
   * Serves requests until the file system is unmounted; then waits (up to
   * `drainMs`) for the replies in progress, commits the files still open
   * and changed, and frees the session.
   */
  async serve(drainMs = 2000): Promise<void> {
    const s = this.#session;
    if (!s) throw new Error("not mounted");
    try {
      const rc = await s.loop();
      if (rc !== 0) this.#log(`fuse_session_loop ended with ${rc}`);
      const until = Date.now() + drainMs;
      while (this.#pending.size && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 20));
      }
    } finally {
      // A reply after the session is gone would touch freed memory: none from now on.
      this.#alive = false;
      s.destroy();
      this.#session = undefined;
      // Files the kernel never released (the connection ended first) are committed now.
      if (this.#open.size) {
        this.#log(`committing ${this.#open.size} files still open at unmount`);
        await this.flushAll();
      }
    }
  }
}
