/**
 * The one interface every sync source implements (folder, photos, http
 * dataset, and user-defined ones in TypeScript). A source lists entries; the
 * sync engine decides which to read (unchanged files are skipped by their
 * {@linkcode SourceEntry.key}, size and mtime before they are opened), chunks
 * what it reads, and commits each file to the target directory.
 *
 * @module
 */
import { PifsError } from "../errors.ts";

/** One file a source offers. */
export interface SourceEntry {
  /** Where the file goes, relative to the job's target: POSIX separators, no
   * leading slash, no `.` or `..` parts. */
  path: string;
  /** Size in bytes, or -1 when unknown until read. */
  size: number;
  /** Modification time in ms since the epoch; 0 when unknown. A source may
   * fill in an unknown (0) mtime while the entry is read (the http source: the
   * server's `Last-Modified`): the engine commits the file with the value it
   * has after reading, and keys the unchanged-file cache on the listed one. */
  mtimeMs: number;
  /** POSIX permission bits (e.g. 0o644), when the source has them. */
  mode?: number;
  /** Identity of this version of the file for the unchanged-file cache
   * (e.g. `dev:ino` of a local file, or a URL with its expected sha256). Two
   * runs that see the same key, size and mtime treat the file as unchanged
   * (an entry of unknown size, -1, only when its mtime is known, > 0). */
  key: string;
  /** Expected SHA-256 (hex) of the whole content, when the source knows it in
   * advance; the engine refuses to commit a file whose content differs. */
  sha256?: string;
  /** Opens the content from byte `offset` (default 0). The stream may retry
   * and resume internally; it errors with a {@linkcode SourceError} when it
   * gives up. A piece, once enqueued, belongs to the reader: the source never
   * writes to it again (the engine keeps views of it as chunks). */
  open(offset?: number, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Set when every piece the stream enqueues is a buffer of its own that the
   * source never uses again, not even to read: the engine then frees each
   * piece (detaches its buffer) as soon as it is chunked and its chunks are
   * stored, instead of leaving it to the garbage collector, which keeps the
   * resident memory of a fast sync down. */
  freshPieces?: boolean;
  /** A remark on how the source placed the entry (photos: dated by its file
   * time, for lack of a date in its metadata): listed in the run's summary
   * (`notes`), not a problem. */
  note?: string;
}

/** A sync source. */
export interface Source {
  /** Kind of source, e.g. `"folder"`, `"photos"`, `"http"`. */
  readonly kind: string;
  /** Human-readable description for progress and logs (e.g. the folder). */
  readonly description: string;
  /** Lists the entries. Entries whose path repeats are an error of the source.
   * Problems with single entries that do not stop the listing are reported
   * through `report` and the entry is left out. */
  list(report: (problem: SourceProblem) => void, signal?: AbortSignal): AsyncIterable<SourceEntry>;
}

/** A problem with one entry of a source: reported, and the entry skipped. */
export interface SourceProblem {
  /** The entry's path in the target, or the source location when no path is known. */
  path: string;
  /** What went wrong, in words that name the cause. */
  message: string;
  /** Set when the entry was left out as an exact duplicate of another file
   * (this is that file's source path): not a problem, the content is stored
   * once; the engine counts it in `duplicates`, not in `problems`. */
  duplicateOf?: string;
  /** Set when the entry was left out by the job's own rules (a symbolic link
   * while `follow_symlinks` is off, a sidecar without its photo): named and
   * counted in `files_skipped`, but not a failure. Any other problem is a
   * file asked for and not stored: it counts in `files_failed`. */
  skipped?: boolean;
}

/** A source failed in a way that names its cause (and the entry, when one). */
export class SourceError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "SOURCE";
  /** The error's name. */
  override name = "SourceError";
  /** The entry's path in the target, when the error concerns one entry. */
  path?: string;
  /** What went wrong, without the entry's path. */
  readonly reason: string;
  /** A message and, optionally, the entry's path. */
  constructor(message: string, path?: string, options?: ErrorOptions) {
    super(path === undefined ? message : `${path}: ${message}`, options);
    this.path = path;
    this.reason = message;
  }
}
