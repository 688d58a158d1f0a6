/**
 * libfuse3's low-level API through Deno FFI: the few functions `pifs mount`
 * needs, the `fuse_lowlevel_ops` table, and builders for the C structs they
 * take (`struct stat`, `fuse_entry_param`, `fuse_file_info`, `statvfs`).
 *
 * Threads: {@linkcode FuseSession.loop} runs `fuse_session_loop` on a worker
 * thread (the symbol is `nonblocking`). libfuse calls the operations on that
 * thread; they are `Deno.UnsafeCallback.threadSafe`, so each call is queued
 * to the JS thread and the worker waits until the JS handler returns. A
 * handler only reads its arguments and starts its work; the answer goes out
 * later, from the JS thread, with one of the `reply*` methods (libfuse's
 * `fuse_reply_*` write to /dev/fuse and may be called from any thread).
 * Every request gets exactly one reply ({@linkcode FuseRequest}).
 *
 * Layouts: written for libfuse 3.14 (`FUSE_USE_VERSION` 3.12 or later: the
 * ops table below has 44 slots, `sizeof` 352) on Linux x86_64 and aarch64
 * (glibc). See fuse/README.md for macOS (macFUSE, FUSE-T).
 *
 * @module
 */

/** An errno value, as the Linux kernel numbers them. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENODATA: 61,
  ENOTSUP: 95,
} as const;

/** File type bits of `st_mode`. */
export const S_IFDIR = 0o040000;
/** Regular file type bits of `st_mode`. */
export const S_IFREG = 0o100000;
/** Symbolic link type bits of `st_mode`. */
export const S_IFLNK = 0o120000;
/** The type bits of `st_mode`. */
export const S_IFMT = 0o170000;
/** Character device. */
export const S_IFCHR = 0o020000;
/** Block device. */
export const S_IFBLK = 0o060000;
/** Named pipe. */
export const S_IFIFO = 0o010000;
/** Socket. */
export const S_IFSOCK = 0o140000;

/** Access mode bits of an open's flags (`O_ACCMODE`). */
export const O_ACCMODE = 3;
/** Open flags that would change a file (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND). */
export const O_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000;
/** `O_EXCL`. */
export const O_EXCL = 0o200;
/** `O_TRUNC`. */
export const O_TRUNC = 0o1000;
/** `O_APPEND`. */
export const O_APPEND = 0o2000;

/** `setattr`'s `to_set` bits (fuse_lowlevel.h `FUSE_SET_ATTR_*`). */
export const SetAttr = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  CTIME: 1 << 10,
} as const;

/** `rename` flags. */
export const RENAME_NOREPLACE = 1;
/** `rename` flags: swap the two names. */
export const RENAME_EXCHANGE = 2;

/** `statvfs.f_flag`: read-only. */
export const ST_RDONLY = 1;

/** What {@linkcode encodeStat} writes. */
export interface Attr {
  /** Inode number. */
  ino: number;
  /** Type and permission bits. */
  mode: number;
  /** Links. */
  nlink: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Bytes. */
  size: number;
  /** Modification time, ms since 1970 (also used for atime and ctime). */
  mtimeMs: number;
  /** Preferred I/O size. */
  blksize: number;
}

/** Offsets of `struct stat` and the structs that embed it, per platform. */
interface Layout {
  statSize: number;
  nlink: [number, 4 | 8];
  mode: number;
  uid: number;
  gid: number;
  size: number;
  blksize: [number, 4 | 8];
  blocks: number;
  atim: number;
  mtim: number;
  ctim: number;
}

// glibc x86_64: st_nlink is 8 bytes and comes before st_mode.
const X86_64: Layout = {
  statSize: 144,
  nlink: [16, 8],
  mode: 24,
  uid: 28,
  gid: 32,
  size: 48,
  blksize: [56, 8],
  blocks: 64,
  atim: 72,
  mtim: 88,
  ctim: 104,
};
// glibc aarch64 (asm-generic stat): st_mode, then a 4-byte st_nlink.
const AARCH64: Layout = {
  statSize: 128,
  nlink: [20, 4],
  mode: 16,
  uid: 24,
  gid: 28,
  size: 48,
  blksize: [56, 4],
  blocks: 64,
  atim: 72,
  mtim: 88,
  ctim: 104,
};

/** The platform's layout; throws where the structs are not written down. */
function layout(): Layout {
  if (Deno.build.os !== "linux") {
    throw new Error(
      `pifs mount: ${Deno.build.os} is not supported yet (Linux only; see fuse/README.md)`,
    );
  }
  if (Deno.build.arch === "x86_64") return X86_64;
  if (Deno.build.arch === "aarch64") return AARCH64;
  throw new Error(`pifs mount: no struct layout for ${Deno.build.arch}`);
}

/** `sizeof(struct stat)` here. */
export function statSize(): number {
  return layout().statSize;
}

/** `sizeof(struct fuse_entry_param)`: ino, generation, stat, two doubles. */
export function entryParamSize(): number {
  return 16 + layout().statSize + 16;
}

/** Writes `a` as a `struct stat` at `off` of `buf` (zeroing it first). */
export function encodeStat(buf: Uint8Array, off: number, a: Attr): void {
  const L = layout();
  buf.fill(0, off, off + L.statSize);
  const v = new DataView(buf.buffer, buf.byteOffset + off, L.statSize);
  v.setBigUint64(8, BigInt(a.ino), true);
  if (L.nlink[1] === 8) v.setBigUint64(L.nlink[0], BigInt(a.nlink), true);
  else v.setUint32(L.nlink[0], a.nlink, true);
  v.setUint32(L.mode, a.mode, true);
  v.setUint32(L.uid, a.uid, true);
  v.setUint32(L.gid, a.gid, true);
  v.setBigInt64(L.size, BigInt(a.size), true);
  if (L.blksize[1] === 8) v.setBigInt64(L.blksize[0], BigInt(a.blksize), true);
  else v.setInt32(L.blksize[0], a.blksize, true);
  v.setBigInt64(L.blocks, BigInt(Math.ceil(a.size / 512)), true);
  const sec = Math.floor(a.mtimeMs / 1000);
  const nsec = Math.round((a.mtimeMs - sec * 1000) * 1e6);
  for (const t of [L.atim, L.mtim, L.ctim]) {
    v.setBigInt64(t, BigInt(sec), true);
    v.setBigInt64(t + 8, BigInt(nsec), true);
  }
}

/** The fields of a `struct stat` that `setattr` may ask to change. */
export interface StatIn {
  /** Type and permission bits. */
  mode: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Bytes. */
  size: number;
  /** Access time, ms since 1970. */
  atimeMs: number;
  /** Modification time, ms since 1970 (nanoseconds dropped below the millisecond). */
  mtimeMs: number;
}

/** Reads a `struct stat` the kernel sent (setattr). */
export function decodeStat(p: Deno.PointerValue): StatIn {
  if (!p) return { mode: 0, uid: 0, gid: 0, size: 0, atimeMs: 0, mtimeMs: 0 };
  const L = layout();
  const v = new Deno.UnsafePointerView(p);
  const time = (off: number) =>
    Number(v.getBigInt64(off)) * 1000 + Math.floor(Number(v.getBigInt64(off + 8)) / 1e6);
  return {
    mode: v.getUint32(L.mode),
    uid: v.getUint32(L.uid),
    gid: v.getUint32(L.gid),
    size: Number(v.getBigInt64(L.size)),
    atimeMs: time(L.atim),
    mtimeMs: time(L.mtim),
  };
}

/** A `struct stat` for `fuse_reply_attr`. */
export function statStruct(a: Attr): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(statSize());
  encodeStat(b, 0, a);
  return b;
}

/** A `struct fuse_entry_param` for `fuse_reply_entry` and `fuse_add_direntry_plus`. */
export function entryParam(a: Attr, generation: number, timeoutS: number): Uint8Array<ArrayBuffer> {
  const L = layout();
  const b = new Uint8Array(entryParamSize());
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(a.ino), true);
  v.setBigUint64(8, BigInt(generation), true);
  encodeStat(b, 16, a);
  v.setFloat64(16 + L.statSize, timeoutS, true); // attr_timeout
  v.setFloat64(24 + L.statSize, timeoutS, true); // entry_timeout
  return b;
}

/** A negative lookup (ino 0): the kernel caches the absence for `timeoutS`. */
export function negativeEntry(timeoutS: number): Uint8Array<ArrayBuffer> {
  const L = layout();
  const b = new Uint8Array(entryParamSize());
  new DataView(b.buffer).setFloat64(24 + L.statSize, timeoutS, true);
  return b;
}

/** `sizeof(struct fuse_file_info)` (3.14, both platforms): flags, bit fields, fh, lock_owner, poll_events. */
export const FILE_INFO_SIZE = 40;
const FI_BITS = 4; // the word of bit fields after `int flags`
const FI_FH = 16;
/** `fuse_file_info` bit: keep the page cache of an earlier open. */
export const FI_KEEP_CACHE = 1 << 2;
/** `fuse_file_info` bit: the kernel may cache this directory's entries. */
export const FI_CACHE_READDIR = 1 << 6;

/** The `flags` and `fh` of a `fuse_file_info` the kernel sent. */
export function readFileInfo(p: Deno.PointerValue): { flags: number; fh: number } {
  if (!p) return { flags: 0, fh: 0 };
  const v = new Deno.UnsafePointerView(p);
  return { flags: v.getInt32(0), fh: Number(v.getBigUint64(FI_FH)) };
}

/** A `fuse_file_info` for `fuse_reply_open` (our own copy: the kernel's is gone by then). */
export function fileInfo(fh: number, bits: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(FILE_INFO_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(FI_BITS, bits, true);
  v.setBigUint64(FI_FH, BigInt(fh), true);
  return b;
}

/** What {@linkcode statvfsStruct} writes. */
export interface FsStat {
  /** Block size (f_bsize and f_frsize). */
  bsize: number;
  /** Blocks in all. */
  blocks: number;
  /** Blocks free. */
  bfree: number;
  /** Blocks free to users. */
  bavail: number;
  /** Inodes (entries). */
  files: number;
  /** Inodes free. */
  ffree: number;
  /** f_flag bits (ST_RDONLY). */
  flag: number;
  /** Longest name. */
  namemax: number;
}

/** A `struct statvfs` (glibc, 64-bit Linux: eleven 8-byte fields, then spare; 112 bytes). */
export function statvfsStruct(s: FsStat): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(112);
  const v = new DataView(b.buffer);
  const f = [s.bsize, s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.ffree, 0, s.flag];
  f.forEach((x, i) => v.setBigUint64(8 * i, BigInt(Math.max(0, Math.floor(x))), true));
  v.setBigUint64(80, BigInt(s.namemax), true);
  return b;
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const e = new TextEncoder().encode(s);
  const b = new Uint8Array(e.length + 1);
  b.set(e);
  return b;
}

/** Reads a C string argument. */
export function readCString(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

const SYMBOLS = {
  fuse_session_new: { parameters: ["buffer", "buffer", "usize", "pointer"], result: "pointer" },
  fuse_session_mount: { parameters: ["pointer", "buffer"], result: "i32" },
  fuse_session_loop: { parameters: ["pointer"], result: "i32", nonblocking: true },
  fuse_session_exit: { parameters: ["pointer"], result: "void" },
  fuse_session_unmount: { parameters: ["pointer"], result: "void" },
  fuse_session_destroy: { parameters: ["pointer"], result: "void" },
  fuse_session_fd: { parameters: ["pointer"], result: "i32" },
  // Off the JS thread: the kernel may need a reply from this process before it returns.
  fuse_lowlevel_notify_inval_inode: {
    parameters: ["pointer", "u64", "i64", "i64"],
    result: "i32",
    nonblocking: true,
  },
  fuse_lowlevel_notify_inval_entry: {
    parameters: ["pointer", "u64", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  fuse_reply_err: { parameters: ["pointer", "i32"], result: "i32" },
  fuse_reply_none: { parameters: ["pointer"], result: "void" },
  fuse_reply_entry: { parameters: ["pointer", "buffer"], result: "i32" },
  fuse_reply_attr: { parameters: ["pointer", "buffer", "f64"], result: "i32" },
  fuse_reply_readlink: { parameters: ["pointer", "buffer"], result: "i32" },
  fuse_reply_open: { parameters: ["pointer", "buffer"], result: "i32" },
  fuse_reply_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  fuse_reply_write: { parameters: ["pointer", "usize"], result: "i32" },
  fuse_reply_buf: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  fuse_reply_statfs: { parameters: ["pointer", "buffer"], result: "i32" },
  fuse_add_direntry: {
    parameters: ["pointer", "buffer", "usize", "buffer", "buffer", "i64"],
    result: "usize",
  },
  fuse_add_direntry_plus: {
    parameters: ["pointer", "buffer", "usize", "buffer", "buffer", "i64"],
    result: "usize",
  },
  fuse_req_ctx: { parameters: ["pointer"], result: "pointer" },
} as const;

/** The loaded library. */
export type FuseLib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** Why libfuse3 cannot be used here, or undefined when it can. */
export function fuseUnavailable(): string | undefined {
  try {
    loadFuse();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Loads libfuse3 (once). */
export function loadFuse(): FuseLib {
  if (lib) return lib.symbols;
  layout(); // refuses platforms whose structs are not written down
  const names = Deno.env.get("PIFS_LIBFUSE")
    ? [Deno.env.get("PIFS_LIBFUSE")!]
    : ["libfuse3.so.3", "libfuse3.so"];
  const errors: string[] = [];
  for (const n of names) {
    try {
      lib = Deno.dlopen(n, SYMBOLS);
      return lib.symbols;
    } catch (e) {
      errors.push(`${n}: ${(e as Error).message}`);
    }
  }
  throw new Error(
    `libfuse3 not found (${errors.join("; ")}); install it (Debian/Ubuntu: apt-get install fuse3)`,
  );
}

/** One request from the kernel; exactly one reply is sent for it. */
export class FuseRequest {
  /** libfuse's `fuse_req_t`. */
  readonly req: Deno.PointerObject;
  /** The operation, for the log. */
  readonly op: string;
  #lib: FuseLib;
  #done = false;
  #alive: () => boolean;

  /**
   * Wraps `req` (an operation named `op`); `alive` says whether the session
   * still exists (a reply after it is freed is dropped).
   */
  constructor(lib: FuseLib, req: Deno.PointerObject, op: string, alive: () => boolean) {
    this.#lib = lib;
    this.req = req;
    this.op = op;
    this.#alive = alive;
  }

  /** Whether a reply was sent. */
  get done(): boolean {
    return this.#done;
  }

  #claim(): boolean {
    if (this.#done) return false;
    this.#done = true;
    return this.#alive();
  }

  /** An error (a positive errno), or 0 for success without data. */
  err(errno: number): void {
    if (this.#claim()) this.#lib.fuse_reply_err(this.req, errno);
  }
  /** No reply (forget). */
  none(): void {
    if (this.#claim()) this.#lib.fuse_reply_none(this.req);
  }
  /** A `fuse_entry_param`. */
  entry(e: Uint8Array<ArrayBuffer>): void {
    if (this.#claim()) this.#lib.fuse_reply_entry(this.req, e);
  }
  /** A `struct stat`, valid for `timeoutS`. */
  attr(st: Uint8Array<ArrayBuffer>, timeoutS: number): void {
    if (this.#claim()) this.#lib.fuse_reply_attr(this.req, st, timeoutS);
  }
  /** A symbolic link's target. */
  readlink(target: string): void {
    if (this.#claim()) this.#lib.fuse_reply_readlink(this.req, cstr(target));
  }
  /** A `fuse_file_info` for open/opendir. */
  open(fi: Uint8Array<ArrayBuffer>): void {
    if (this.#claim()) this.#lib.fuse_reply_open(this.req, fi);
  }
  /** A new file's entry and its `fuse_file_info` (create). */
  create(e: Uint8Array<ArrayBuffer>, fi: Uint8Array<ArrayBuffer>): void {
    if (this.#claim()) this.#lib.fuse_reply_create(this.req, e, fi);
  }
  /** Bytes written. */
  written(n: number): void {
    if (this.#claim()) this.#lib.fuse_reply_write(this.req, BigInt(n));
  }
  /** Data (read, readdir). */
  buf(b: Uint8Array<ArrayBuffer>, n = b.length): void {
    if (this.#claim()) this.#lib.fuse_reply_buf(this.req, b, BigInt(n));
  }
  /** A `struct statvfs`. */
  statfs(s: Uint8Array<ArrayBuffer>): void {
    if (this.#claim()) this.#lib.fuse_reply_statfs(this.req, s);
  }

  /**
   * Appends a directory entry to `buf` at `at`; returns the bytes it takes,
   * which may exceed the room left (then nothing was written).
   */
  addDirentry(
    buf: Uint8Array<ArrayBuffer>,
    at: number,
    name: string,
    st: Uint8Array<ArrayBuffer>,
    nextOff: number,
  ): number {
    return Number(
      this.#lib.fuse_add_direntry(
        this.req,
        buf.subarray(at),
        BigInt(buf.length - at),
        cstr(name),
        st,
        BigInt(nextOff),
      ),
    );
  }

  /** As {@linkcode addDirentry}, with the entry's attributes (readdirplus). */
  addDirentryPlus(
    buf: Uint8Array<ArrayBuffer>,
    at: number,
    name: string,
    e: Uint8Array<ArrayBuffer>,
    nextOff: number,
  ): number {
    return Number(
      this.#lib.fuse_add_direntry_plus(
        this.req,
        buf.subarray(at),
        BigInt(buf.length - at),
        cstr(name),
        e,
        BigInt(nextOff),
      ),
    );
  }

  /** The calling process's uid, gid and pid. */
  ctx(): { uid: number; gid: number; pid: number } {
    const p = this.#lib.fuse_req_ctx(this.req);
    if (!p) return { uid: 0, gid: 0, pid: 0 };
    const v = new Deno.UnsafePointerView(p);
    return { uid: v.getUint32(0), gid: v.getUint32(4), pid: v.getInt32(8) };
  }
}

/** The slots of `struct fuse_lowlevel_ops` in libfuse 3.14, in order. */
export const OPS = [
  "init",
  "destroy",
  "lookup",
  "forget",
  "getattr",
  "setattr",
  "readlink",
  "mknod",
  "mkdir",
  "unlink",
  "rmdir",
  "symlink",
  "rename",
  "link",
  "open",
  "read",
  "write",
  "flush",
  "release",
  "fsync",
  "opendir",
  "readdir",
  "releasedir",
  "fsyncdir",
  "statfs",
  "setxattr",
  "getxattr",
  "listxattr",
  "removexattr",
  "access",
  "create",
  "getlk",
  "setlk",
  "bmap",
  "ioctl",
  "poll",
  "write_buf",
  "retrieve_reply",
  "forget_multi",
  "flock",
  "fallocate",
  "readdirplus",
  "copy_file_range",
  "lseek",
] as const;

/** One slot's name. */
export type OpName = typeof OPS[number];

// The C signature of each operation we fill in (fuse_ino_t is uint64_t, off_t int64_t).
const P = "pointer";
const SIGS: Partial<Record<OpName, readonly Deno.NativeType[]>> = {
  init: [P, P],
  lookup: [P, "u64", P],
  forget: [P, "u64", "u64"],
  forget_multi: [P, "usize", P],
  getattr: [P, "u64", P],
  setattr: [P, "u64", P, "i32", P],
  readlink: [P, "u64"],
  mknod: [P, "u64", P, "u32", "u64"],
  mkdir: [P, "u64", P, "u32"],
  unlink: [P, "u64", P],
  rmdir: [P, "u64", P],
  symlink: [P, P, "u64", P],
  rename: [P, "u64", P, "u64", P, "u32"],
  link: [P, "u64", "u64", P],
  open: [P, "u64", P],
  read: [P, "u64", "usize", "i64", P],
  write: [P, "u64", P, "usize", "i64", P],
  flush: [P, "u64", P],
  release: [P, "u64", P],
  fsync: [P, "u64", "i32", P],
  fsyncdir: [P, "u64", "i32", P],
  opendir: [P, "u64", P],
  readdir: [P, "u64", "usize", "i64", P],
  readdirplus: [P, "u64", "usize", "i64", P],
  releasedir: [P, "u64", P],
  statfs: [P, "u64"],
  setxattr: [P, "u64", P, P, "usize", "i32"],
  removexattr: [P, "u64", P],
  create: [P, "u64", P, "u32", P],
  fallocate: [P, "u64", "i32", "i64", "i64", P],
  copy_file_range: [P, "u64", "i64", P, "u64", "i64", P, "usize", "i32"],
};

/** A handler: gets the C arguments (request first, except `init`). */
// deno-lint-ignore no-explicit-any
export type OpHandler = (...args: any[]) => void;

/**
 * A FUSE session: the ops table of thread-safe callbacks, the mount, and
 * the receive loop on a worker thread.
 */
export class FuseSession {
  readonly #lib: FuseLib;
  readonly #callbacks: Deno.UnsafeCallback[] = [];
  readonly #keep: Uint8Array[] = []; // C memory libfuse points into while the session lives
  #se: Deno.PointerObject | null = null;
  #mounted = false;
  #destroyed = false;

  /**
   * Creates the session with `handlers` (slots without one stay NULL:
   * libfuse answers ENOSYS) and the mount `options` (as `-o` takes them).
   */
  constructor(handlers: Partial<Record<OpName, OpHandler>>, options: string[]) {
    this.#lib = loadFuse();
    const table = new BigUint64Array(OPS.length);
    OPS.forEach((name, i) => {
      const h = handlers[name];
      if (!h) return;
      const params = SIGS[name];
      if (!params) throw new Error(`fuse op ${name}: no signature written down`);
      const cb = Deno.UnsafeCallback.threadSafe(
        { parameters: params, result: "void" } as const,
        h as Deno.UnsafeCallbackFunction<readonly Deno.NativeType[], "void">,
      );
      this.#callbacks.push(cb as unknown as Deno.UnsafeCallback);
      table[i] = BigInt(Deno.UnsafePointer.value(cb.pointer));
    });
    const argv = ["pifs", ...(options.length ? ["-o", options.join(",")] : [])].map(cstr);
    const ptrs = new BigUint64Array(argv.length + 1);
    argv.forEach((a, i) => ptrs[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a))));
    // struct fuse_args { int argc; char **argv; int allocated; }
    const args = new Uint8Array(24);
    const av = new DataView(args.buffer);
    av.setInt32(0, argv.length, true);
    av.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(ptrs))), true);
    const tableBytes = new Uint8Array(table.buffer);
    this.#keep.push(...argv, new Uint8Array(ptrs.buffer), args, tableBytes);
    this.#se = this.#lib.fuse_session_new(args, tableBytes, BigInt(tableBytes.length), null);
    if (!this.#se) {
      this.#closeCallbacks();
      throw new Error(`fuse_session_new failed (mount options: ${options.join(",")})`);
    }
  }

  /** The library, for building replies. */
  get lib(): FuseLib {
    return this.#lib;
  }

  /** Mounts at `mountpoint`. */
  mount(mountpoint: string): void {
    if (!this.#se) throw new Error("session destroyed");
    if (this.#lib.fuse_session_mount(this.#se, cstr(mountpoint)) !== 0) {
      throw new Error(`fuse_session_mount ${mountpoint} failed (see the messages above)`);
    }
    this.#mounted = true;
  }

  /**
   * Receives and dispatches requests until the file system is unmounted
   * (the kernel ends the connection: `fusermount3 -u`, `umount`) or
   * {@linkcode FuseSession.exit} is called; resolves with libfuse's result.
   */
  async loop(): Promise<number> {
    if (!this.#se) throw new Error("session destroyed");
    return await this.#lib.fuse_session_loop(this.#se);
  }

  /**
   * Drops what the kernel caches of inode `ino`: its attributes and its
   * data (from byte `off`; a negative `off`: the attributes only). Runs on a worker thread (the kernel may need this process to
   * answer a request first); resolves with libfuse's result (0, or -errno,
   * e.g. -ENOENT for an inode the kernel no longer knows).
   */
  async invalInode(ino: number, off = 0): Promise<number> {
    if (!this.#se || !this.#mounted) return 0;
    return await this.#lib.fuse_lowlevel_notify_inval_inode(this.#se, BigInt(ino), BigInt(off), 0n);
  }

  /** Drops the kernel's cached entry `name` in directory inode `parent` (as {@linkcode invalInode}). */
  async invalEntry(parent: number, name: string): Promise<number> {
    if (!this.#se || !this.#mounted) return 0;
    const b = new TextEncoder().encode(name);
    return await this.#lib.fuse_lowlevel_notify_inval_entry(
      this.#se,
      BigInt(parent),
      b,
      BigInt(b.length),
    );
  }

  /** Asks the loop to stop after the request in progress. */
  exit(): void {
    if (this.#se) this.#lib.fuse_session_exit(this.#se);
  }

  /** Unmounts (if still mounted), frees the session and the callbacks. Call after the loop ended. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#se) {
      if (this.#mounted) this.#lib.fuse_session_unmount(this.#se);
      this.#lib.fuse_session_destroy(this.#se);
      this.#se = null;
    }
    this.#closeCallbacks();
  }

  #closeCallbacks() {
    for (const cb of this.#callbacks) cb.close();
    this.#callbacks.length = 0;
  }
}
