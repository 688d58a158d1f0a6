/**
 * The folder source: every regular file under a local directory, walked in a
 * deterministic order (names sorted by UTF-16 code units at each level,
 * depth-first), with the helpers that other local sources (photos) share:
 * {@linkcode walkLocalFiles}, {@linkcode openLocalFile} and
 * {@linkcode localFileEntry}.
 *
 * Symbolic links are skipped and reported unless followed; when followed, a
 * link back to a directory on the current path is reported instead of being
 * walked forever. Unreadable directories and files and special files (fifos,
 * sockets, devices) are reported and skipped. A file whose size or mtime
 * differs at the end of reading from what was listed makes its stream error
 * with a {@linkcode SourceError} "changed while being read", so a torn file is
 * never committed.
 *
 * @module
 */

import { type Source, type SourceEntry, SourceError, type SourceProblem } from "./source.ts";

/** Size of each read of a local file (and of each chunk its stream yields). */
export const READ_PIECE = 256 * 1024;

/** The message reported for a symbolic link while links are not followed. */
export const SYMLINK_SKIPPED = "symbolic link skipped (follow_symlinks is off)";

/** The message reported for a name that is not valid UTF-8. */
export const NOT_UTF8 =
  "name is not valid UTF-8, skipped: pifs cannot store such a name yet (rename the file)";

/** The message a file's stream errors with when it changed after it was listed. */
export const CHANGED_WHILE_READ = "changed while being read";

/** A regular file found by {@linkcode walkLocalFiles}. */
export interface LocalFile {
  /** Where the file is read from: the root joined with {@linkcode LocalFile.relPath}. */
  absPath: string;
  /** Path relative to the walked root, with POSIX separators. */
  relPath: string;
  /** Size in bytes when listed. */
  size: number;
  /** Modification time in ms since the epoch when listed (0 when unknown). */
  mtimeMs: number;
  /** Permission bits (`mode & 0o7777`), when the platform has them. */
  mode?: number;
  /** `dev:ino` of the file (of the link's target for a followed link). */
  key: string;
}

/** A directory found by {@linkcode walkLocalTree} (listed before what it holds). */
export interface LocalDir {
  /** Where it is: the root joined with {@linkcode LocalDir.relPath}. */
  absPath: string;
  /** Path relative to the walked root, with POSIX separators. */
  relPath: string;
  /** Modification time in ms since the epoch (0 when unknown). */
  mtimeMs: number;
  /** Permission bits (`mode & 0o7777`), when the platform has them. */
  mode?: number;
}

/** A symbolic link found by {@linkcode walkLocalTree} with `keepSymlinks`: kept as a link. */
export interface LocalSymlink {
  /** Where it is: the root joined with {@linkcode LocalSymlink.relPath}. */
  absPath: string;
  /** Path relative to the walked root, with POSIX separators. */
  relPath: string;
  /** What it points to, as written in the link. */
  target: string;
  /** Modification time of the link itself, ms since the epoch (0 when unknown). */
  mtimeMs: number;
}

/** What {@linkcode walkLocalTree} yields: a regular file, a directory or a symbolic link. */
export type LocalItem =
  | ({ type: "file" } & LocalFile)
  | ({ type: "dir" } & LocalDir)
  | ({ type: "symlink" } & LocalSymlink);

/** How {@linkcode walkLocalFiles} and {@linkcode walkLocalTree} walk. */
export interface WalkOptions {
  /** Follow symbolic links to files and directories (default false). */
  followSymlinks?: boolean;
  /**
   * Without `followSymlinks`: yield symbolic links as `symlink` items (to be
   * stored as links, as `cp -r` does) instead of reporting them skipped.
   */
  keepSymlinks?: boolean;
  /** Yield each directory below the root as a `dir` item, before its entries. */
  directories?: boolean;
  /**
   * Decides by base name whether a non-directory entry is wanted; entries it
   * rejects are skipped without a report (and without a stat). Symbolic links
   * to directories are always considered. Default: every entry is wanted.
   */
  accept?: (name: string) => boolean;
  /** Stops the walk (it throws the signal's reason) when aborted. */
  signal?: AbortSignal;
}

/** Options of {@linkcode FolderSource}. */
export interface FolderSourceOptions {
  /** The directory to list: an absolute path. */
  root: string;
  /** Follow symbolic links (default false: they are skipped and reported). */
  followSymlinks?: boolean;
}

/** Whether `path` is absolute (POSIX, or a Windows drive or UNC path). */
export function isAbsolutePath(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}

/** Joins a local directory and a relative POSIX path with one separator. */
export function joinLocalPath(dir: string, rel: string): string {
  if (rel === "") return dir;
  return /[\\/]$/.test(dir) ? `${dir}${rel}` : `${dir}/${rel}`;
}

/** The message of an error value, for problem reports. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The listing facts of a stat result: size, mtime, mode bits and `dev:ino` key. */
export function fileFacts(
  info: Deno.FileInfo,
  absPath: string,
): Pick<LocalFile, "size" | "mtimeMs" | "mode" | "key"> {
  return {
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
    mode: info.mode === null ? undefined : info.mode & 0o7777,
    key: info.ino === null ? `path:${absPath}` : `${info.dev}:${info.ino}`,
  };
}

function byName(a: Deno.DirEntry, b: Deno.DirEntry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** How many directory entries ahead of the one handled are looked at (lstat, open). */
const PROBE_AHEAD = 32;

/** What was learnt of one directory entry ahead of its turn. */
interface Probe {
  /** Filtered out by name: not looked at. */
  skip?: boolean;
  /** Its lstat. */
  info?: Deno.FileInfo;
  /** Why lstat failed. */
  statError?: unknown;
  /** A regular file that cannot be opened for reading: why. */
  openError?: unknown;
}

/** lstat of `absPath`, and for a regular file whether it opens for reading. Never throws. */
async function probe(absPath: string): Promise<Probe> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(absPath);
  } catch (e) {
    return { statError: e };
  }
  if (!info.isFile) return { info };
  try {
    (await Deno.open(absPath, { read: true })).close();
    return { info };
  } catch (e) {
    return { info, openError: e };
  }
}

/** What a file that is neither regular, a directory nor a link is, in words ("fifo", "socket"...). */
export function specialKind(info: Deno.FileInfo): string {
  if (info.isFifo) return "fifo";
  if (info.isSocket) return "socket";
  if (info.isBlockDevice) return "block device";
  if (info.isCharDevice) return "character device";
  return "special file";
}

async function dirId(info: Deno.FileInfo, absPath: string): Promise<string> {
  if (info.ino !== null) return `${info.dev}:${info.ino}`;
  return `path:${await Deno.realPath(absPath)}`;
}

/**
 * Walks `root` depth-first in name order and yields its regular files.
 * Problems with single entries are reported (with `path` relative to the
 * root) and the entry skipped; a root that is missing, not a directory or not
 * readable throws a {@linkcode SourceError} naming it.
 */
export async function* walkLocalFiles(
  root: string,
  options: WalkOptions,
  report: (problem: SourceProblem) => void,
): AsyncGenerator<LocalFile> {
  const files = { ...options, keepSymlinks: false, directories: false };
  for await (const item of walkLocalTree(root, files, report)) {
    if (item.type === "file") {
      const { type: _, ...file } = item;
      yield file;
    }
  }
}

/**
 * The one walk of a local tree, behind every way files enter the store from
 * a local disk (`pifs put`, the folder and photos sources of `pifs sync`):
 * depth-first in name order, yielding regular files, and directories and
 * symbolic links as `options` ask. Problems with single entries (unreadable,
 * special files, loops, names that are not UTF-8) are reported with `path`
 * relative to the root and the entry skipped; a symbolic link skipped because
 * links are neither followed nor kept is reported with `skipped: true`. A
 * root that is missing, not a directory or not readable throws a
 * {@linkcode SourceError} naming it.
 */
export async function* walkLocalTree(
  root: string,
  options: WalkOptions,
  report: (problem: SourceProblem) => void,
): AsyncGenerator<LocalItem> {
  const { followSymlinks = false, accept, signal } = options;
  const keepSymlinks = !followSymlinks && (options.keepSymlinks ?? false);
  if (!isAbsolutePath(root)) throw new SourceError(`folder ${root} is not an absolute path`);
  let rootInfo: Deno.FileInfo;
  try {
    rootInfo = await Deno.stat(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new SourceError(`folder ${root} does not exist`, undefined, { cause: e });
    }
    throw new SourceError(`folder ${root} cannot be read: ${errorText(e)}`, undefined, {
      cause: e,
    });
  }
  if (!rootInfo.isDirectory) throw new SourceError(`${root} is not a directory`);

  // dev:ino of the directories on the current path, for loop detection.
  const onPath = new Set<string>([await dirId(rootInfo, root)]);

  async function* walk(absDir: string, relDir: string): AsyncGenerator<LocalItem> {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const entry of Deno.readDir(absDir)) entries.push(entry);
    } catch (e) {
      if (relDir === "") {
        throw new SourceError(`folder ${root} cannot be read: ${errorText(e)}`, undefined, {
          cause: e,
        });
      }
      report({ path: relDir, message: `directory not readable, skipped: ${errorText(e)}` });
      return;
    }
    entries.sort(byName);
    // Each entry's lstat and (a regular file) whether it opens, asked up to
    // PROBE_AHEAD entries ahead of the one handled: asked one at a time, a
    // library of 10,000 files waited 0.4 s on them.
    const probes: Promise<Probe>[] = [];
    const ahead = (k: number) => {
      if (k < entries.length && probes[k] === undefined) {
        const e = entries[k];
        probes[k] = accept && !e.isDirectory && !e.isSymlink && !accept(e.name)
          ? Promise.resolve({ skip: true })
          : probe(joinLocalPath(absDir, e.name));
      }
    };
    for (let k = 0; k < PROBE_AHEAD; k++) ahead(k);
    for (const [i, entry] of entries.entries()) {
      signal?.throwIfAborted();
      ahead(i + PROBE_AHEAD);
      const pr = await probes[i];
      const absPath = joinLocalPath(absDir, entry.name);
      const relPath = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      if (pr.skip) continue;
      let info: Deno.FileInfo;
      try {
        if (pr.statError !== undefined) throw pr.statError;
        info = pr.info!;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound && entry.name.includes("\uFFFD")) {
          // The directory listing decodes names as UTF-8, replacing what is
          // not; such a name cannot be opened again by its decoded form.
          report({ path: relPath, message: NOT_UTF8 });
          continue;
        }
        if (e instanceof Deno.errors.NotFound) continue; // removed while listing
        report({ path: relPath, message: `cannot stat, skipped: ${errorText(e)}` });
        continue;
      }
      if (info.isSymlink && keepSymlinks) {
        let target: string;
        try {
          target = await Deno.readLink(absPath);
        } catch (e) {
          report({
            path: relPath,
            message: `symbolic link not readable, skipped: ${errorText(e)}`,
          });
          continue;
        }
        if (accept && !accept(entry.name)) continue;
        yield { type: "symlink", absPath, relPath, target, mtimeMs: info.mtime?.getTime() ?? 0 };
        continue;
      }
      if (info.isSymlink) {
        if (!followSymlinks) {
          if (accept && !accept(entry.name)) {
            // Unwanted by name: report it only when it leads to a directory.
            const target = await Deno.stat(absPath).catch(() => undefined);
            if (!target?.isDirectory) continue;
          }
          report({ path: relPath, message: SYMLINK_SKIPPED, skipped: true });
          continue;
        }
        try {
          info = await Deno.stat(absPath);
        } catch (e) {
          const what = e instanceof Deno.errors.NotFound
            ? "broken symbolic link, skipped"
            : `symbolic link cannot be followed, skipped: ${errorText(e)}`;
          report({ path: relPath, message: what });
          continue;
        }
      }
      if (info.isDirectory) {
        let id: string;
        try {
          id = await dirId(info, absPath);
        } catch (e) {
          report({ path: relPath, message: `cannot stat, skipped: ${errorText(e)}` });
          continue;
        }
        if (onPath.has(id)) {
          report({
            path: relPath,
            message: "symbolic link loop (leads back to an enclosing directory), not followed",
          });
          continue;
        }
        onPath.add(id);
        try {
          if (options.directories) {
            const { mtimeMs, mode } = fileFacts(info, absPath);
            yield { type: "dir", absPath, relPath, mtimeMs, mode };
          }
          yield* walk(absPath, relPath);
        } finally {
          onPath.delete(id);
        }
        continue;
      }
      if (accept && !accept(entry.name)) continue;
      if (!info.isFile) {
        report({ path: relPath, message: `${specialKind(info)} skipped (not a regular file)` });
        continue;
      }
      try {
        // Opened by the probe (lstat said a file; a link followed is opened here).
        if (pr.openError !== undefined) throw pr.openError;
        if (!pr.info!.isFile) (await Deno.open(absPath, { read: true })).close();
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        report({ path: relPath, message: `file not readable, skipped: ${errorText(e)}` });
        continue;
      }
      yield { type: "file", absPath, relPath, ...fileFacts(info, absPath) };
    }
  }

  yield* walk(root, "");
}

/**
 * Opens a local file from byte `offset` as a pull-based stream of pieces of at
 * most {@linkcode READ_PIECE} bytes (one read per pull, so the consumer's pace
 * sets the reading pace). The file is closed at the end, on cancel, on error
 * and on abort. At the end the open file is stat'ed again: if its size or
 * mtime differ from `listed`, or fewer or more bytes were read than listed,
 * the stream errors with {@linkcode SourceError} "changed while being read".
 * Opening failures reject with a {@linkcode SourceError} naming `entryPath`.
 */
export async function openLocalFile(
  absPath: string,
  listed: { size: number; mtimeMs: number },
  entryPath: string,
  offset = 0,
  signal?: AbortSignal,
): Promise<ReadableStream<Uint8Array>> {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new SourceError(`bad offset ${offset}`, entryPath);
  }
  if (listed.size >= 0 && offset > listed.size) {
    throw new SourceError(`offset ${offset} is beyond the end (${listed.size} bytes)`, entryPath);
  }
  signal?.throwIfAborted();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(absPath, { read: true });
  } catch (e) {
    throw new SourceError(`cannot open: ${errorText(e)}`, entryPath, { cause: e });
  }
  if (offset > 0) {
    try {
      await file.seek(offset, Deno.SeekMode.Start);
    } catch (e) {
      file.close();
      throw new SourceError(`cannot seek to ${offset}: ${errorText(e)}`, entryPath, {
        cause: e,
      });
    }
  }

  let position = offset;
  let finished = false;
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  const finish = () => {
    if (finished) return;
    finished = true;
    signal?.removeEventListener("abort", onAbort);
    try {
      file.close();
    } catch {
      // already closed
    }
  };
  const onAbort = () => {
    if (finished) return;
    finish();
    controller?.error(signal?.reason);
  };

  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      signal?.addEventListener("abort", onAbort, { once: true });
    },
    async pull(c) {
      if (finished) return;
      const buf = new Uint8Array(READ_PIECE);
      let n: number | null;
      try {
        n = await file.read(buf);
      } catch (e) {
        if (finished) return; // cancelled or aborted while reading
        finish();
        throw new SourceError(`read failed: ${errorText(e)}`, entryPath, { cause: e });
      }
      if (finished) return;
      if (n !== null) {
        position += n;
        c.enqueue(n < READ_PIECE / 2 ? buf.slice(0, n) : buf.subarray(0, n));
        return;
      }
      let now: Deno.FileInfo;
      try {
        now = await file.stat();
      } catch (e) {
        finish();
        throw new SourceError(`cannot stat after reading: ${errorText(e)}`, entryPath, {
          cause: e,
        });
      }
      finish();
      const sizeChanged = listed.size >= 0 && (now.size !== listed.size || position !== now.size);
      if (sizeChanged || (now.mtime?.getTime() ?? 0) !== listed.mtimeMs) {
        throw new SourceError(CHANGED_WHILE_READ, entryPath);
      }
      c.close();
    },
    cancel() {
      finish();
    },
  });
}

/** A {@linkcode SourceEntry} at target path `path` for a listed local file. */
export function localFileEntry(file: LocalFile, path: string, sha256?: string): SourceEntry {
  const entry: SourceEntry = {
    path,
    size: file.size,
    mtimeMs: file.mtimeMs,
    key: file.key,
    open: (offset = 0, signal?: AbortSignal) =>
      openLocalFile(file.absPath, file, path, offset, signal),
    freshPieces: true, // each piece is a new buffer (openLocalFile)
  };
  if (file.mode !== undefined) entry.mode = file.mode;
  if (sha256 !== undefined) entry.sha256 = sha256;
  return entry;
}

/** Every regular file under a local directory, at its path relative to it. */
export class FolderSource implements Source {
  /** Always `"folder"`. */
  readonly kind = "folder";
  /** `folder ROOT`. */
  readonly description: string;
  /** The listed directory. */
  readonly root: string;
  /** Whether symbolic links are followed. */
  readonly followSymlinks: boolean;

  /** Checks that `root` is absolute; whether it exists is checked by {@linkcode list}. */
  constructor(options: FolderSourceOptions) {
    if (!isAbsolutePath(options.root)) {
      throw new SourceError(`folder ${options.root} is not an absolute path`);
    }
    this.root = options.root;
    this.followSymlinks = options.followSymlinks ?? false;
    this.description = `folder ${options.root}`;
  }

  /**
   * Lists the regular files depth-first in name order. Throws a
   * {@linkcode SourceError} when the root is missing or not a directory.
   */
  async *list(
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): AsyncGenerator<SourceEntry> {
    const walk = walkLocalFiles(
      this.root,
      { followSymlinks: this.followSymlinks, signal },
      report,
    );
    for await (const file of walk) yield localFileEntry(file, file.relPath);
  }
}

/** Creates a {@linkcode FolderSource}. */
export function folderSource(options: FolderSourceOptions): FolderSource {
  return new FolderSource(options);
}
