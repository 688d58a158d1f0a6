/**
 * The namespace: remote paths, the journal entries that change the tree, and
 * file manifests. Entries are appended to the journals on the Pis; the host's
 * index is rebuilt by replaying them in order.
 *
 * @module
 */
import { PifsError, printable } from "../errors.ts";
import { Buffer } from "node:buffer";
import { deflateRawSync, inflateRawSync } from "node:zlib";

/** A remote path that is not acceptable. */
export class PathError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "PATH";
  /** The error's name. */
  override name = "PathError";
  /** The offending path. */
  readonly path: string;
  /**
   * A problem with `path`; `code` is `NAME_TOO_LONG` for a name or path over
   * {@linkcode MAX_NAME} or {@linkcode MAX_PATH} bytes, `RESERVED` for a path
   * in {@linkcode SNAPSHOTS_DIR}, `PATH` otherwise.
   */
  constructor(path: string, message: string, code = "PATH") {
    super(`remote path '${printable(path)}': ${message}`);
    this.path = path;
    this.code = code;
  }
}

/**
 * The top-level directory under which the mount shows the snapshots
 * (`/.snapshots/NAME/...`): reserved, so nothing can be stored there.
 */
export const SNAPSHOTS_DIR = ".snapshots";

/**
 * Throws a {@linkcode PathError} (code `RESERVED`) if the normalised path
 * `path` is {@linkcode SNAPSHOTS_DIR} or lies under it; returns `path`.
 * Every path that names something to create, move or change in the store
 * passes here ({@linkcode Store.commit} checks each entry).
 *
 * @example
 * ```ts
 * import { checkWritable } from "./namespace.ts";
 * if (checkWritable("/photos") !== "/photos") throw new Error();
 * let refused = false;
 * try { checkWritable("/.snapshots/x"); } catch { refused = true; }
 * if (!refused) throw new Error("/.snapshots accepted");
 * ```
 */
export function checkWritable(path: string): string {
  if (path === `/${SNAPSHOTS_DIR}` || path.startsWith(`/${SNAPSHOTS_DIR}/`)) {
    throw new PathError(
      path,
      `/${SNAPSHOTS_DIR} is reserved for the snapshots (read them with pifs snapshots or the mount)`,
      "RESERVED",
    );
  }
  return path;
}

/** Longest name of one path component, in UTF-8 bytes. */
export const MAX_NAME = 255;
/** Longest path, in UTF-8 bytes. */
export const MAX_PATH = 4096;

/**
 * Normalises a remote path to its absolute form ("/" or "/a/b"). Refuses
 * `..`, `.`, empty components, over-long names, NUL and control characters.
 *
 * @example
 * ```ts
 * import { normalizePath } from "./namespace.ts";
 * if (normalizePath("photos/2024/") !== "/photos/2024") throw new Error();
 * let refused = false;
 * try { normalizePath("/a/../b"); } catch { refused = true; }
 * if (!refused) throw new Error("'..' accepted");
 * ```
 */
export function normalizePath(path: string): string {
  if (typeof path !== "string" || path.length === 0) throw new PathError(path, "empty path");
  if (new TextEncoder().encode(path).length > MAX_PATH) {
    throw new PathError(path.slice(0, 40) + "…", `longer than ${MAX_PATH} bytes`, "NAME_TOO_LONG");
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) throw new PathError(path, "contains a control character");
  const trimmed = path.replace(/^\/+/, "").replace(/\/$/, "");
  if (trimmed === "") return "/";
  const parts = trimmed.split("/");
  for (const p of parts) {
    if (p === "") throw new PathError(path, "has an empty name (//)");
    if (p === "." || p === "..") throw new PathError(path, `'${p}' is not allowed`);
    if (new TextEncoder().encode(p).length > MAX_NAME) {
      throw new PathError(
        path,
        `name '${p.slice(0, 20)}…' is longer than ${MAX_NAME} bytes`,
        "NAME_TOO_LONG",
      );
    }
  }
  return "/" + parts.join("/");
}

/** Omit over each member of a union. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * The store paths a journal entry creates, removes or changes (both ends of
 * a `mv`); none for entries that name no path (snapshots, checkpoints).
 *
 * @example
 * ```ts
 * import { entryPaths } from "./namespace.ts";
 * const paths = entryPaths({ op: "mv", p: "/a", to: "/b", mtime: 0 });
 * if (paths.join() !== "/a,/b") throw new Error();
 * ```
 */
export function entryPaths(entry: DistributiveOmit<JournalEntry, "s">): string[] {
  switch (entry.op) {
    case "put":
    case "mkdir":
    case "rm":
    case "attr":
    case "symlink":
    case "copies":
      return [entry.p];
    case "mv":
      return [entry.p, entry.to];
    default:
      return [];
  }
}

/** Parent directory of a normalised path ("/" for top-level names). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** Last component of a normalised path ("" for "/"). */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** A change to the tree, as appended to the journals. `s` is its sequence number. */
export type JournalEntry =
  | {
    s: number;
    op: "put";
    p: string;
    m: string;
    size: number;
    mode: number;
    mtime: number;
    copies: number;
  }
  | { s: number; op: "mkdir"; p: string; mode: number; mtime: number }
  | { s: number; op: "rm"; p: string }
  | {
    s: number;
    op: "attr";
    /** The file, directory or symbolic link whose attributes change (`pifs mount`: chmod, utimens). */
    p: string;
    /** New permission bits (absent: unchanged). */
    mode?: number;
    /** New modification time, ms since the epoch (absent: unchanged). */
    mtime?: number;
  }
  | {
    s: number;
    op: "symlink";
    /** Path of the symbolic link (replaces what was there, as `put` does). */
    p: string;
    /** What it points to, as given (not resolved, not normalised). */
    target: string;
    /** Its modification time. */
    mtime: number;
  }
  | {
    s: number;
    op: "mv";
    p: string;
    to: string;
    /** mtime of the parents of `to` it creates (absent in older entries: the applying host's clock). */
    mtime?: number;
  }
  | {
    s: number;
    op: "snap";
    /** Snapshot name (unique). */
    name: string;
    /** The job that made it. */
    job: string;
    /** The store directory it captured. */
    target: string;
    /** Id of its {@linkcode SnapshotObject}. */
    root: string;
    /** When it was taken, ms since the epoch. */
    time: number;
    files: number;
    bytes: number;
  }
  | { s: number; op: "snaprm"; name: string }
  | {
    s: number;
    op: "copies";
    /** A directory (or file) path: the rule holds for new files at or under it. */
    p: string;
    /** Copies of each chunk of new files there; 0 removes the rule. */
    copies: number;
  }
  | {
    s: number;
    op: "forget";
    /** A node lost for good: its copies no longer count, placement and quorum leave it out. */
    node: number;
  }
  | {
    s: number;
    op: "ckpt";
    /** Checkpoint generation: 1, 2, 3, … */
    gen: number;
    /** Id of the {@linkcode CheckpointObject}: the namespace as it was before this entry. */
    root: string;
  }
  | ZipEntry;

/**
 * A run of `n` entries committed together, kept as one journal line: their
 * JSON lines (entries `s` … `s + n - 1`), deflated (raw DEFLATE) and in
 * base64. Many small files cost about a third of the journal bytes they
 * would as plain lines, on every node. See {@linkcode zipEntries}.
 */
export interface ZipEntry {
  /** Sequence number of its first entry. */
  s: number;
  /** Always "z". */
  op: "z";
  /** How many entries it holds (at least 1). */
  n: number;
  /** The entries' JSON lines, raw DEFLATE, base64. */
  z: string;
}

/**
 * One entry of a directory in a {@linkcode TreeObject}: name, type (`f` file,
 * `d` directory, `l` symbolic link), size, mode, mtime, id (a file's manifest,
 * a directory's tree object, a symbolic link's target) and copies (files; 0
 * otherwise).
 */
export type TreeEntry = [string, "f" | "d" | "l", number, number, number, string, number];

/**
 * A directory as a content-addressed object: its entries sorted by name, or
 * (a directory too large for one object) the ids of the objects holding its
 * entries in order, each `{"v":1,"kind":"tree","entries":[…]}`.
 */
export type TreeObject =
  | { v: 1; kind: "tree"; entries: TreeEntry[] }
  | { v: 1; kind: "tree"; parts: string[] };

/** A snapshot row in a {@linkcode CheckpointObject}: name, job, target, root, time, files, bytes. */
export type CheckpointSnapshot = [string, string, string, string, number, number, number];

/**
 * The root of a checkpoint: the whole namespace at journal entry `s` (the
 * `ckpt` entry that names it): the root directory's tree, the per-path copies
 * rules and the snapshots.
 */
export interface CheckpointObject {
  /** Format version: 1. */
  v: 1;
  /** Always "ckpt". */
  kind: "ckpt";
  /** Generation (as in the `ckpt` entry). */
  gen: number;
  /** Sequence number of the `ckpt` entry that names it. */
  s: number;
  /** Tree object of `/`. */
  tree: string;
  /** Copies rules: path, copies; by path. */
  policies: [string, number][];
  /** Snapshots, by name. */
  snapshots: CheckpointSnapshot[];
  /** Nodes forgotten (lost for good), ascending; absent in older checkpoints. */
  forgotten?: number[];
  /**
   * Mode and mtime of `/` when changed from 0o755 and 0 (`pifs mount`: chmod,
   * touch of the mount's root); absent otherwise, so older checkpoints keep their ids.
   */
  rootAttr?: [number, number];
}

/** Largest part of a split directory, in bytes of JSON (a hard cut, for pathological names). */
export const TREE_PART_BYTES = 4 * 1024 * 1024;

/**
 * A directory whose entries take more JSON than this is stored in parts
 * ({@linkcode splitTree}); smaller ones are one object, as before parts were
 * content-defined, so their ids did not change.
 */
export const TREE_SPLIT_BYTES = 64 * 1024;

/** One part ends, on average, after this many entries of a split directory. */
export const TREE_PART_ENTRIES = 128;

/** A well-mixed 32-bit hash of a name (FNV-1a over UTF-8, then a murmur3 finaliser). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) h = Math.imul(h ^ b, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Cuts a directory's entries (sorted by name) into the parts its tree
 * objects hold. A directory of up to {@linkcode TREE_SPLIT_BYTES} of JSON is
 * one part. A larger one is cut after each entry whose name hashes to a
 * boundary (one name in {@linkcode TREE_PART_ENTRIES}), so parts depend on
 * the names alone: a file added, changed or removed changes the one part
 * holding it (or two, where its name is a boundary), and a checkpoint of a
 * large directory that grew by a few files sends a few small parts, not the
 * whole listing again. No part exceeds {@linkcode TREE_PART_BYTES}.
 *
 * @example
 * ```ts
 * import { splitTree, type TreeEntry } from "./namespace.ts";
 * const few: TreeEntry[] = [["a", "f", 1, 0o644, 0, "m", 2]];
 * console.assert(splitTree(few).length === 1);
 * ```
 */
export function splitTree(list: readonly TreeEntry[]): TreeEntry[][] {
  const sizes = list.map((t) => JSON.stringify(t).length + 1);
  if (sizes.reduce((a, b) => a + b, 0) <= TREE_SPLIT_BYTES) return [list.slice()];
  const parts: TreeEntry[][] = [];
  let part: TreeEntry[] = [];
  let size = 0;
  list.forEach((t, i) => {
    if (size + sizes[i] > TREE_PART_BYTES && part.length) parts.push(part), part = [], size = 0;
    part.push(t);
    size += sizes[i];
    if (nameHash(t[0]) % TREE_PART_ENTRIES === 0) parts.push(part), part = [], size = 0;
  });
  if (part.length || parts.length === 0) parts.push(part);
  return parts;
}

/** Encodes a tree or checkpoint object (canonical JSON: equal content, equal id). */
export function encodeObject(o: TreeObject | CheckpointObject): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(o));
}

function parseObject(bytes: Uint8Array, id: string, what: string): Record<string, unknown> {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new JournalError(`${what} ${id.slice(0, 12)} is not JSON`);
  }
  if (o?.v !== 1) throw new JournalError(`${what} ${id.slice(0, 12)}: not a pifs ${what}`);
  return o;
}

/** Decodes a tree object, refusing anything else. */
export function decodeTree(bytes: Uint8Array, id: string): TreeObject {
  const o = parseObject(bytes, id, "tree object");
  const okEntries = Array.isArray(o.entries) &&
    (o.entries as unknown[]).every((e) =>
      Array.isArray(e) && e.length === 7 && typeof e[0] === "string" &&
      (e[1] === "f" || e[1] === "d" || e[1] === "l") && typeof e[5] === "string"
    );
  const okParts = Array.isArray(o.parts) &&
    (o.parts as unknown[]).every((x) => typeof x === "string");
  if (o.kind !== "tree" || !(okEntries || okParts)) {
    throw new JournalError(`tree object ${id.slice(0, 12)}: not a pifs tree`);
  }
  return o as unknown as TreeObject;
}

/** Decodes a checkpoint (root) object, refusing anything else. */
export function decodeCheckpoint(bytes: Uint8Array, id: string): CheckpointObject {
  const o = parseObject(bytes, id, "checkpoint object");
  if (
    o.kind !== "ckpt" || typeof o.gen !== "number" || typeof o.s !== "number" ||
    typeof o.tree !== "string" || !Array.isArray(o.policies) || !Array.isArray(o.snapshots)
  ) {
    throw new JournalError(`checkpoint object ${id.slice(0, 12)}: not a pifs checkpoint`);
  }
  return o as unknown as CheckpointObject;
}

/** What a snapshot holds: every file under its target, stored as a chunk. */
/**
 * A snapshot as its first format kept it (still read): every file's row in
 * one object, sorted by path. Nothing is shared between two snapshots.
 */
export interface SnapshotV1 {
  /** Format version: 1. */
  v: 1;
  /** Snapshot name. */
  name: string;
  /** The store directory it captured. */
  target: string;
  /** When it was taken, ms since the epoch. */
  time: number;
  /** Files: path relative to the target, manifest id, size, mode, mtime; sorted by path. */
  files: [string, string, number, number, number][];
}

/**
 * A snapshot (format 2): a small record naming the tree of its target,
 * written by the same tree writer as checkpoints (store/trees.ts). An
 * unchanged directory keeps its tree's id, so two snapshots of an unchanged
 * library share every tree and a new one costs this record alone.
 */
export interface SnapshotV2 {
  /** Format version: 2. */
  v: 2;
  /** Always "snap". */
  kind: "snap";
  /** Snapshot name. */
  name: string;
  /** The store directory it captured. */
  target: string;
  /** When it was taken, ms since the epoch. */
  time: number;
  /** The tree object of the target directory. */
  tree: string;
}

/** A snapshot object, in either format. */
export type SnapshotObject = SnapshotV1 | SnapshotV2;

/** Encodes a snapshot object (canonical JSON: equal snapshots, equal ids). */
export function encodeSnapshot(s: SnapshotObject): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s));
}

/** Decodes a snapshot object (either format), refusing anything else. */
export function decodeSnapshot(bytes: Uint8Array, id: string): SnapshotObject {
  let s: SnapshotObject;
  try {
    s = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new JournalError(`snapshot ${id.slice(0, 12)} is not JSON`);
  }
  const ok = s?.v === 1
    ? typeof s.name === "string" && Array.isArray(s.files)
    : s?.v === 2 && s.kind === "snap" && typeof s.name === "string" && typeof s.tree === "string";
  if (!ok) throw new JournalError(`snapshot ${id.slice(0, 12)} is not a pifs snapshot`);
  return s;
}

/** A file's content: the chunks, in order. Stored as a chunk itself. */
export interface Manifest {
  /** Format version: 1. */
  v: 1;
  /** File size in bytes. */
  size: number;
  /** Chunk ids and sizes, in file order. */
  chunks: [string, number][];
}

/** Encodes a journal entry as one line of JSON. */
export function encodeEntry(e: JournalEntry): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(e) + "\n");
}

/** A journal that cannot be read back as entries. */
export class JournalError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "JOURNAL";
  /** The error's name. */
  override name = "JournalError";
}

/** Most entries in one {@linkcode ZipEntry}. */
export const MAX_ZIP_ENTRIES = 4096;
/** Most bytes of JSON lines in one {@linkcode ZipEntry}, once inflated. */
const MAX_ZIP_BYTES = 4 * 1024 * 1024;

/**
 * Packs entries with consecutive sequence numbers into one {@linkcode ZipEntry}.
 * Only `put`, `mkdir`, `rm`, `attr`, `symlink` and `mv` entries may be packed:
 * the others carry objects fetched while replaying, or mark a checkpoint.
 *
 * @example
 * ```ts
 * import { encodeEntry, type JournalEntry, unzipEntry, zipEntries } from "./namespace.ts";
 * const entries: JournalEntry[] = Array.from({ length: 20 }, (_, i) => ({
 *   op: "put", p: `/photos/img${i}.jpg`, m: "ab".repeat(32), size: 8192, mode: 420,
 *   mtime: 1764062400000 + i, copies: 2, s: 7 + i,
 * }));
 * const z = zipEntries(entries);
 * if (z.s !== 7 || z.n !== 20) throw new Error();
 * const plain = entries.reduce((a, e) => a + encodeEntry(e).length, 0);
 * if (encodeEntry(z).length * 2 > plain) throw new Error("not smaller");
 * const line = JSON.parse(new TextDecoder().decode(encodeEntry(z))); // as read back from a Pi
 * if (JSON.stringify(unzipEntry(line)) !== JSON.stringify(entries)) throw new Error();
 * ```
 */
export function zipEntries(entries: JournalEntry[]): ZipEntry {
  if (entries.length === 0 || entries.length > MAX_ZIP_ENTRIES) {
    throw new RangeError(`zipEntries: ${entries.length} entries (1 to ${MAX_ZIP_ENTRIES})`);
  }
  const lines: Uint8Array[] = [];
  let size = 0;
  entries.forEach((e, i) => {
    if (!ZIPPABLE.has(e.op)) throw new RangeError(`zipEntries: a ${e.op} entry cannot be packed`);
    if (e.s !== entries[0].s + i) {
      throw new RangeError(`zipEntries: entry ${e.s} after ${entries[0].s + i - 1}`);
    }
    const b = encodeEntry(e);
    lines.push(b);
    size += b.length;
  });
  if (size > MAX_ZIP_BYTES) throw new RangeError(`zipEntries: ${size} bytes of entries`);
  const all = new Uint8Array(size);
  let o = 0;
  for (const b of lines) all.set(b, o), o += b.length;
  const z = Buffer.from(deflateRawSync(all, { level: 9 })).toString("base64");
  const out: ZipEntry = { op: "z", n: entries.length, z, s: entries[0].s };
  unzipped.set(out, [...entries]); // applying it right after packing inflates nothing
  return out;
}

/**
 * What each packed line object holds, once known: a line packed here, or
 * one inflated and checked while decoding, is not inflated again when
 * applied.
 */
const unzipped = new WeakMap<ZipEntry, JournalEntry[]>();

const ZIPPABLE = new Set(["put", "mkdir", "rm", "attr", "symlink", "mv"]);

/** Whether `e` may go into a {@linkcode ZipEntry} (see {@linkcode zipEntries}). */
export function canZip(e: JournalEntry): boolean {
  return ZIPPABLE.has(e.op);
}

/**
 * The entries a {@linkcode ZipEntry} holds; a damaged one (bad base64 or
 * DEFLATE, another count, a gap in the sequence, an entry that may not be
 * packed) is a {@linkcode JournalError}.
 */
export function unzipEntry(z: ZipEntry): JournalEntry[] {
  const known = unzipped.get(z);
  if (known) return known;
  const where = `journal entry ${z.s} (z)`;
  if (!Number.isSafeInteger(z.n) || z.n < 1 || z.n > MAX_ZIP_ENTRIES || typeof z.z !== "string") {
    throw new JournalError(`${where}: bad count ${z.n} or data`);
  }
  let bytes: Uint8Array;
  try {
    bytes = inflateRawSync(Buffer.from(z.z, "base64"), { maxOutputLength: MAX_ZIP_BYTES });
  } catch (e) {
    throw new JournalError(`${where}: its entries do not inflate: ${(e as Error).message}`);
  }
  const inner = decodeJournal(bytes, z.s);
  if (inner.length !== z.n) {
    throw new JournalError(`${where}: holds ${inner.length} entries, says ${z.n}`);
  }
  for (const e of inner) {
    if (!ZIPPABLE.has(e.op)) throw new JournalError(`${where}: holds a ${e.op} entry`);
  }
  unzipped.set(z, inner);
  return inner;
}

/** The entries of `entries`, each {@linkcode ZipEntry} replaced by those it holds. */
export function expandEntries(entries: JournalEntry[]): JournalEntry[] {
  return entries.flatMap((e) => (e.op === "z" ? unzipEntry(e) : [e]));
}

/**
 * Decodes a journal (JSON lines) into entries; each must carry the next
 * sequence number after `firstSeq - 1` (a {@linkcode ZipEntry} stands for
 * its `n` entries, and is returned as it is: it is one line of the journal). With `firstSeq` "any" the first entry
 * may carry any sequence number (a journal trimmed at a checkpoint starts
 * there), and the others follow it without gaps.
 *
 * @example
 * ```ts
 * import { decodeJournal, encodeEntry } from "./namespace.ts";
 * const bytes = encodeEntry({ s: 1, op: "rm", p: "/x" });
 * if (decodeJournal(bytes)[0].op !== "rm") throw new Error();
 * // A journal trimmed at a checkpoint starts at that entry's number.
 * const trimmed = encodeEntry({ s: 41, op: "ckpt", gen: 3, root: "ab".repeat(32) });
 * if (decodeJournal(trimmed, "any")[0].s !== 41) throw new Error();
 * let refused = false;
 * try { decodeJournal(trimmed); } catch { refused = true; }
 * if (!refused) throw new Error("a gap accepted");
 * ```
 */
export function decodeJournal(bytes: Uint8Array, firstSeq: number | "any" = 1): JournalEntry[] {
  const text = new TextDecoder().decode(bytes);
  const out: JournalEntry[] = [];
  let seq = firstSeq;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let e: JournalEntry;
    try {
      e = JSON.parse(line);
    } catch {
      throw new JournalError(`journal entry ${seq}: not JSON: ${line.slice(0, 60)}`);
    }
    if (seq === "any") {
      if (!Number.isSafeInteger(e?.s) || e.s < 1) {
        throw new JournalError(`journal entry: bad sequence number ${e?.s}`);
      }
      seq = e.s;
    }
    if (e.s !== seq) throw new JournalError(`journal entry ${seq}: carries sequence ${e.s}`);
    if (e.op === "z") unzipEntry(e); // checked whole here, not half-way through applying it
    out.push(e);
    seq += e.op === "z" ? e.n : 1;
  }
  return out;
}

/** Encodes a manifest as the bytes of its chunk. */
export function encodeManifest(m: Manifest): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(m));
}

/** Decodes a manifest chunk. */
export function decodeManifest(bytes: Uint8Array, id: string): Manifest {
  const m = JSON.parse(new TextDecoder().decode(bytes));
  if (m?.v !== 1 || !Array.isArray(m.chunks) || typeof m.size !== "number") {
    throw new JournalError(`manifest ${id}: not a pifs manifest`);
  }
  return m;
}
