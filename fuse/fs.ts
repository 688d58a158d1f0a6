/**
 * The pifs file system as FUSE sees it (read-only slice): an inode table
 * over the store's paths, the request handlers, and a chunk cache with
 * read-ahead. Every handler returns at once; its reply goes out when the
 * data has come over the links ({@linkcode FuseRequest}).
 *
 * @module
 */
import type { Manifest, SnapshotObject } from "../store/namespace.ts";
import {
  type Attr,
  entryParam,
  Errno,
  FI_CACHE_READDIR,
  FI_KEEP_CACHE,
  fileInfo,
  FuseRequest,
  FuseSession,
  O_ACCMODE,
  O_WRITE_FLAGS,
  type OpHandler,
  type OpName,
  readCString,
  readFileInfo,
  S_IFDIR,
  S_IFREG,
  ST_RDONLY,
  statStruct,
  statvfsStruct,
} from "./ffi.ts";

/** A file or directory as the file system shows it. */
export interface FsNode {
  /** "f" file, "d" directory. */
  type: "f" | "d";
  /** Bytes (files). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, ms since 1970. */
  mtime: number;
  /** Manifest id (files). */
  manifest: string | null;
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
  /** A snapshot object. */
  snapshotObject(root: string): Promise<SnapshotObject>;
  /** How many chunks to read ahead of a sequential reader. */
  readAhead(): number;
}

/** Options of {@linkcode PifsFs}. */
export interface FsOptions {
  /** Bytes of chunks kept in memory (default 64 MiB). */
  cacheBytes?: number;
  /** Messages (errors, and every request with `debug`). */
  log?: (msg: string) => void;
  /** Log every request. */
  debug?: boolean;
  /** Seconds the kernel may cache names and attributes (default 3600: the tree does not change while mounted). */
  timeoutS?: number;
}

/** An error carrying the errno to answer with. */
export class FsError extends Error {
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

/** The name of the directory under the root that holds the snapshots. */
export const SNAPSHOT_DIR = ".snapshots";
const SNAP_PREFIX = `/${SNAPSHOT_DIR}`;

interface Inode {
  path: string;
  nlookup: number;
}

interface FileHandle {
  kind: "f";
  path: string;
  manifest: Manifest;
  /** Byte offset where each chunk starts (one more: the size). */
  starts: number[];
  /** End of the last read (sequential readers get read-ahead). */
  lastEnd: number;
}

interface DirHandle {
  kind: "d";
  /** ".", "..", then the children. */
  entries: { name: string; path: string; node: FsNode }[];
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

function join(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

function parent(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/**
 * The read-only file system over a {@linkcode Backend}: build it, then
 * {@linkcode PifsFs.mount} and {@linkcode PifsFs.serve}.
 */
export class PifsFs {
  readonly #b: Backend;
  readonly #log: (msg: string) => void;
  readonly #debug: boolean;
  readonly #timeout: number;
  readonly #uid: number;
  readonly #gid: number;
  readonly cache: ChunkCache;
  #inodes = new Map<number, Inode>([[1, { path: "/", nlookup: 1 }]]);
  #byPath = new Map<string, number>([["/", 1]]);
  #nextIno = 2;
  #handles = new Map<number, FileHandle | DirHandle>();
  #nextFh = 1;
  #manifests = new Map<string, Promise<Manifest>>();
  #snaps = new Map<string, Promise<Map<string, FsNode>>>();
  #session: FuseSession | undefined;
  #pending = new Set<FuseRequest>();
  #alive = true;
  /** Requests answered, by operation. */
  readonly counts = new Map<string, number>();

  /** A file system over `backend`. */
  constructor(backend: Backend, opts: FsOptions = {}) {
    this.#b = backend;
    this.#log = opts.log ?? (() => {});
    this.#debug = !!opts.debug;
    this.#timeout = opts.timeoutS ?? 3600;
    this.#uid = Deno.uid() ?? 0;
    this.#gid = Deno.gid() ?? 0;
    this.cache = new ChunkCache(opts.cacheBytes ?? 64 << 20, (id) => backend.chunk(id));
  }

  // ---- namespace ----

  /** The node at `path`: the store's, or one of a snapshot's under /.snapshots. */
  async resolve(path: string): Promise<FsNode | undefined> {
    if (path === SNAP_PREFIX || path.startsWith(SNAP_PREFIX + "/")) {
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

  /** The children of the directory at `path`, by name. */
  async children(path: string): Promise<{ name: string; node: FsNode }[]> {
    const real = this.#b.get(SNAP_PREFIX);
    if (!real && (path === SNAP_PREFIX || path.startsWith(SNAP_PREFIX + "/"))) {
      if (path === SNAP_PREFIX) {
        const out: { name: string; node: FsNode }[] = [];
        for (const s of this.#b.snapshots()) {
          out.push({
            name: s.name,
            node: { type: "d", size: 0, mode: 0o555, mtime: s.time, manifest: null },
          });
        }
        return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
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
      return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    }
    const list = this.#b.list(path);
    // /.snapshots is listed in the root when there is a snapshot to show.
    if (path === "/" && !real && this.#b.snapshots().length > 0) {
      list.push({
        name: SNAPSHOT_DIR,
        node: { type: "d", size: 0, mode: 0o555, mtime: 0, manifest: null },
      });
      list.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    }
    return list;
  }

  /** A snapshot's files and directories by path within it (undefined: no such snapshot). */
  #snapTree(name: string): Promise<Map<string, FsNode> | undefined> {
    const ref = this.#b.snapshots().find((s) => s.name === name);
    if (!ref) return Promise.resolve(undefined);
    let p = this.#snaps.get(ref.root);
    if (!p) {
      p = this.#b.snapshotObject(ref.root).then((obj) => {
        const t = new Map<string, FsNode>();
        const dir: FsNode = { type: "d", size: 0, mode: 0o555, mtime: ref.time, manifest: null };
        t.set("/", dir);
        for (const [rel, manifest, size, mode, mtime] of obj.files) {
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
    return {
      ino,
      mode: (n.type === "d" ? S_IFDIR : S_IFREG) | (n.mode & 0o7777),
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
    return i.path;
  }

  /** Inodes the kernel holds (root included). */
  get inodes(): number {
    return this.#inodes.size;
  }

  #forget(ino: number, n: number) {
    const i = this.#inodes.get(ino);
    if (!i || ino === 1) return;
    i.nlookup -= n;
    if (i.nlookup <= 0) {
      this.#inodes.delete(ino);
      this.#byPath.delete(i.path);
    }
  }

  #manifest(id: string): Promise<Manifest> {
    let p = this.#manifests.get(id);
    if (!p) {
      p = this.#b.manifest(id);
      p.catch(() => this.#manifests.delete(id));
      this.#manifests.set(id, p);
      if (this.#manifests.size > 4096) {
        this.#manifests.delete(this.#manifests.keys().next().value!);
      }
    }
    return p;
  }

  // ---- reading ----

  /** Bytes [off, off+size) of an open file, from its chunks. */
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
    return await this.read(await this.#handle(path, n), off, size);
  }

  async #handle(path: string, n: FsNode): Promise<FileHandle> {
    const m = await this.#manifest(n.manifest!);
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

  // ---- the session ----

  /** The handlers, by operation (exported for tests that call them without a kernel). */
  handlers(): Partial<Record<OpName, OpHandler>> {
    const ro = (op: string) => this.#wrap(op, () => Promise.reject(new FsError(Errno.EROFS, op)));
    return {
      init: (_userdata: unknown, _conn: unknown) => {
        this.#log("FUSE session initialised");
      },
      lookup: this.#wrap("lookup", async (r, parentIno: number, namePtr: Deno.PointerValue) => {
        const name = readCString(namePtr);
        const path = join(this.#path(parentIno), name);
        const n = name === "." || name === ".." ? undefined : await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        const ino = this.#ino(path, 1);
        r.entry(entryParam(this.#attr(ino, n), 0, this.#timeout));
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
        const path = this.#path(ino);
        const n = await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        r.attr(statStruct(this.#attr(ino, n)), this.#timeout);
      }),
      setattr: ro("setattr"),
      readlink: this.#wrap("readlink", () => {
        // The store keeps no symbolic links yet: nothing here is one.
        return Promise.reject(new FsError(Errno.EINVAL, "not a symbolic link"));
      }),
      mknod: ro("mknod"),
      mkdir: ro("mkdir"),
      unlink: ro("unlink"),
      rmdir: ro("rmdir"),
      symlink: ro("symlink"),
      rename: ro("rename"),
      link: ro("link"),
      write: ro("write"),
      create: ro("create"),
      setxattr: ro("setxattr"),
      removexattr: ro("removexattr"),
      fallocate: ro("fallocate"),
      open: this.#wrap("open", async (r, ino: number, fi: Deno.PointerValue) => {
        const { flags } = readFileInfo(fi);
        const path = this.#path(ino);
        if ((flags & O_ACCMODE) !== 0 || (flags & O_WRITE_FLAGS) !== 0) {
          throw new FsError(Errno.EROFS, `${path}: opened for writing (read-only mount)`);
        }
        const n = await this.resolve(path);
        if (!n) throw new FsError(Errno.ENOENT, path);
        if (n.type === "d") throw new FsError(Errno.EISDIR, path);
        const h = await this.#handle(path, n);
        const fh = this.#nextFh++;
        this.#handles.set(fh, h);
        // The content of a path cannot change while mounted: keep the page cache.
        r.open(fileInfo(fh, FI_KEEP_CACHE));
      }),
      read: this.#wrap(
        "read",
        async (r, _ino: number, size: number, off: number, fi: Deno.PointerValue) => {
          const h = this.#handles.get(readFileInfo(fi).fh);
          if (!h || h.kind !== "f") throw new FsError(Errno.EBADF, "read: no such open file");
          const data = await this.read(h, Number(off), Number(size));
          r.buf(data as Uint8Array<ArrayBuffer>);
        },
      ),
      release: this.#wrap("release", (r, _ino: number, fi: Deno.PointerValue) => {
        this.#handles.delete(readFileInfo(fi).fh);
        r.err(0);
        return Promise.resolve();
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
        r.open(fileInfo(fh, FI_KEEP_CACHE | FI_CACHE_READDIR));
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
          flag: ST_RDONLY,
          namemax: 255,
        }));
      }),
    };
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
        const errno = e instanceof FsError ? e.errno : Errno.EIO;
        if (!(e instanceof FsError) || this.#debug || errno === Errno.EIO) {
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
   * `drainMs`) for the replies in progress and frees the session.
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
    }
  }
}
