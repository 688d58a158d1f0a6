/**
 * The sync engine: one job, from its sources into the store.
 *
 * source entries → include/exclude → unchanged-file cache (key, size, mtime:
 * skipped before they are read) → content-defined chunks → SHA-256 → chunks
 * the cluster already holds are not sent again → the others go to their Pis
 * in parallel → manifest → journal entry (a file is visible only whole) →
 * at the end, an immutable snapshot of the target tree, and retention.
 *
 * Everything is a stream with backpressure: a file's memory is bounded by a
 * few chunks in flight, whatever its size. A run killed at any moment and run
 * again skips finished files by the cache, stored chunks by the index, and a
 * chunk cut half-way resumes where the Pi says it stands (PUT_BEGIN).
 *
 * @module
 */
import picomatch from "picomatch";
import { chunkId, sha256Stream } from "../ids.ts";
import type { Store } from "../store/store.ts";
import { Feed } from "../store/feed.ts";
import { encodeManifest, type Manifest, normalizePath } from "../store/namespace.ts";
import { writeSnapshot } from "../store/snapshots.ts";
import type { SnapshotRow } from "../store/index_db.ts";
import { Chunker } from "./cdc.ts";
import type { JobSpec, SnapshotsSpec, SourceSpec } from "./spec.ts";
import type { Source, SourceEntry, SourceProblem } from "../pipelines/source.ts";
import { FolderSource } from "../pipelines/folder.ts";
import { PhotosSource } from "../pipelines/photos.ts";
import { HttpSource } from "../pipelines/http.ts";

/** What a run did: the fields `--json` prints as its last line. */
export interface SyncSummary {
  /** Job name. */
  job: string;
  /** Snapshot taken at the end (absent when the run stored nothing and none was needed). */
  snapshot?: string;
  /** Files that were not in the target before. */
  files_new: number;
  /** Files whose content or metadata changed. */
  files_changed: number;
  /** Files skipped as unchanged (by the cache, or read and found identical). */
  files_unchanged: number;
  /**
   * Files asked for and not stored (each is in `problems`): unreadable
   * files and directories, special files, names the store refuses, files
   * that failed while being stored. Any makes the run `partial` and the
   * exit code 1.
   */
  files_failed: number;
  /**
   * Entries left out by the job's own rules (symbolic links while
   * `follow_symlinks` is off, sidecars without a photo): each is in
   * `problems` with `skipped: true`; not failures.
   */
  files_skipped: number;
  /** Bytes read from the sources. */
  bytes_read: number;
  /** Bytes the host wrote to the Pis' links during the run. */
  wire_bytes: number;
  /** Chunks sent to the Pis. */
  chunks_new: number;
  /** Chunks the cluster already held. */
  chunks_deduplicated: number;
  /** Bytes read per byte of new chunk data (1 when nothing deduplicated). */
  dedup_ratio: number;
  /** Snapshots removed by retention. */
  snapshots_removed: string[];
  /** Entries left out as exact duplicates of others (photos: `dedupe`): not problems. */
  duplicates: number;
  /** Entries skipped or failed, with why. */
  problems: SourceProblem[];
  /** Remarks of the sources on entries of this run, e.g. photos dated by their file time. */
  notes: { path: string; note: string }[];
  /** Wall time of the run in seconds. */
  seconds: number;
}

/**
 * Counters of a run in progress, which {@linkcode runJob} keeps up to date in
 * the object given as {@linkcode SyncOptions.progress} (for progress bars:
 * the files and bytes still to come, and what is planned for the Pis).
 */
export interface SyncProgress {
  /** Entries listed so far (after include/exclude). */
  files_listed: number;
  /** True once every source has been listed: `files_listed` is the total. */
  listing_done: boolean;
  /** Entries finished: new, changed, unchanged or failed. */
  files_done: number;
  /** Sum of the sizes of the listed entries whose size is known. */
  bytes_listed: number;
  /** Listed entries of unknown size (an http URL without Content-Length). */
  sizes_unknown: number;
  /** Sizes of the entries skipped as unchanged before they were read. */
  bytes_skipped: number;
  /** Bytes read from the sources. */
  bytes_read: number;
  /** Bytes of chunks handed to the Pis to store, times their copies. */
  bytes_planned: number;
  /** Of `bytes_planned`, the bytes whose copies are committed. */
  bytes_stored: number;
}

/** A {@linkcode SyncProgress} with every counter at zero. */
export function newSyncProgress(): SyncProgress {
  return {
    files_listed: 0,
    listing_done: false,
    files_done: 0,
    bytes_listed: 0,
    sizes_unknown: 0,
    bytes_skipped: 0,
    bytes_read: 0,
    bytes_planned: 0,
    bytes_stored: 0,
  };
}

/** Progress events of a run (`--json` prints one per line). */
export type SyncEvent =
  | { event: "start"; job: string; sources: string[] }
  | {
    event: "file";
    job: string;
    path: string;
    status: "new" | "changed" | "unchanged";
    /** Entries finished so far, this one included. */
    files_done?: number;
    /** Entries listed so far (the total once listing is done). */
    files_listed?: number;
    /** Bytes read from the sources so far. */
    bytes_read?: number;
  }
  | { event: "problem"; job: string; path: string; message: string }
  | { event: "duplicate"; job: string; path: string; of: string }
  | { event: "snapshot"; job: string; name: string; files: number; bytes: number }
  | { event: "done"; summary: SyncSummary };

/** Options of {@linkcode runJob}. */
export interface SyncOptions {
  /** Progress events. */
  onEvent?: (e: SyncEvent) => void;
  /** Bytes read so far (for a progress bar). */
  onBytes?: (n: number) => void;
  /** Counters the run keeps up to date (see {@linkcode SyncProgress}). */
  progress?: SyncProgress;
  /** Stops the run between chunks; what is committed stays. */
  signal?: AbortSignal;
  /** The clock (tests). */
  now?: () => number;
  /** Files read at once (default 4), and more while a Pi is about to run dry. */
  parallelFiles?: number;
  /**
   * Bytes of chunks in flight (read, not yet stored) beyond which no more
   * files or chunks are started to feed a Pi about to run dry (default
   * 4 MiB per answering Pi, at least 16 MiB).
   */
  feedBytes?: number;
  /** A Pi with fewer bytes than this queued is about to run dry (default 128 KiB). */
  lowWater?: number;
}

const MiB = 1024 * 1024;

/** Makes the source a spec names. */
export function sourceFor(spec: SourceSpec): Source {
  switch (spec.kind) {
    case "folder":
      return new FolderSource({ root: spec.path, followSymlinks: spec.followSymlinks });
    case "photos":
      return new PhotosSource({ roots: spec.paths, layout: spec.layout, dedupe: spec.dedupe });
    case "http":
      return new HttpSource({
        urls: spec.urls,
        manifest: spec.manifest,
        concurrency: spec.concurrency,
        retries: spec.retries,
        timeoutMs: spec.timeout * 1000,
      });
  }
}

/**
 * Frees the memory of bytes that nothing needs any more (a piece of the
 * source, once chunked; a chunk, once found stored) now rather than at V8's
 * next garbage collection, when they span their whole buffer. V8 collects
 * when some 64 MiB of buffers were allocated since the last collection, so
 * without this a fast run (a re-sync that finds every chunk stored) carries
 * that much dead data.
 */
function release(bytes: Uint8Array): void {
  if (owns(bytes)) (bytes.buffer as ArrayBuffer).transfer(0);
}

/** Whether `bytes` spans the whole of a plain (not shared, not resizable) buffer. */
function owns(bytes: Uint8Array): boolean {
  const buf = bytes.buffer;
  return buf instanceof ArrayBuffer && bytes.byteOffset === 0 &&
    bytes.byteLength === buf.byteLength && !buf.detached && !buf.resizable;
}

/** A file of a run that could not be stored: reported, the run goes on. */
class FileFailed extends Error {
  override name = "FileFailed";
}

/**
 * Runs one job against an open store: every source, then a snapshot of the
 * target, then retention. Problems with single files are reported in the
 * summary and do not stop the run; a store failure (too few Pis) does.
 */
export async function runJob(
  store: Store,
  job: JobSpec,
  opts: SyncOptions = {},
  sources: Source[] = job.sources.map(sourceFor),
): Promise<SyncSummary> {
  const now = opts.now ?? Date.now;
  const t0 = performance.now();
  const wire0 = store.wireBytes;
  const target = normalizePath(job.target);
  // Copies: the job's, else the per-path rule (`pifs copies`) of each file.
  const copiesAt = (path: string) =>
    job.copies !== undefined ? Math.min(job.copies, store.nodes.size) : store.copiesFor(path);
  const sum: SyncSummary = {
    job: job.name,
    files_new: 0,
    files_changed: 0,
    files_unchanged: 0,
    files_failed: 0,
    files_skipped: 0,
    bytes_read: 0,
    wire_bytes: 0,
    chunks_new: 0,
    chunks_deduplicated: 0,
    dedup_ratio: 1,
    snapshots_removed: [],
    duplicates: 0,
    problems: [],
    notes: [],
    seconds: 0,
  };
  let newBytes = 0;
  const prog = opts.progress ?? newSyncProgress();
  const emit = (e: SyncEvent) => opts.onEvent?.(e);
  const fileDone = (path: string, status: "new" | "changed" | "unchanged") => {
    prog.files_done++;
    emit({
      event: "file",
      job: job.name,
      path,
      status,
      files_done: prog.files_done,
      files_listed: prog.files_listed,
      bytes_read: sum.bytes_read,
    });
  };
  const report = (p: SourceProblem) => {
    if (p.duplicateOf !== undefined) {
      sum.duplicates++;
      emit({ event: "duplicate", job: job.name, path: p.path, of: p.duplicateOf });
      return;
    }
    sum.problems.push(p);
    if (p.skipped) sum.files_skipped++;
    else sum.files_failed++;
    emit({ event: "problem", job: job.name, path: p.path, message: p.message });
  };
  const include = job.include.length ? picomatch(job.include, { dot: true }) : () => true;
  const exclude = job.exclude.length ? picomatch(job.exclude, { dot: true }) : () => false;
  emit({ event: "start", job: job.name, sources: sources.map((s) => s.description) });

  const seen = new Set<string>();
  const slots = Math.max(1, opts.parallelFiles ?? 4);
  const running = new Set<Promise<void>>();
  let fatal: unknown;
  const up = Math.max(1, store.up().length);
  const maxFiles = (src: Source) => (src.kind === "http" ? slots : Math.max(slots, 4 * up));
  // As `pifs put` does: more chunks and files than the usual limits while a
  // Pi is about to run dry (store/feed.ts), within a cap on chunk bytes held.
  const feed = new Feed(store, {
    cap: opts.feedBytes ?? Math.max(16 * MiB, 4 * MiB * up),
    lowWater: opts.lowWater,
  });

  /**
   * Stores one entry; throws FileFailed for a problem of this file only.
   * `extra`: started beyond `slots` (its chunks go out only within the
   * feed's byte cap); `first` is called once its first chunk is on its way
   * (or it needs none).
   */
  const storeEntry = async (
    entry: SourceEntry,
    path: string,
    extra: boolean,
    first: () => void,
  ) => {
    const copies = copiesAt(path);
    // The cache keeps the listed mtime; a source may learn a better one while
    // the file is read (http: Last-Modified), which the file is committed with.
    const listedMtime = entry.mtimeMs;
    const cached = store.index.syncCacheGet(job.name, path);
    const live = store.index.get(path);
    if (
      cached && live?.type === "f" && live.manifest === cached.manifest &&
      cached.key === entry.key && cached.size === entry.size &&
      cached.mtime === listedMtime && (entry.size >= 0 || listedMtime > 0)
    ) {
      sum.files_unchanged++;
      prog.bytes_skipped += Math.max(0, entry.size);
      fileDone(path, "unchanged");
      return;
    }
    if (live?.type === "d") throw new FileFailed(`${path}: a directory in the store`);
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = await entry.open(0, opts.signal);
    } catch (e) {
      throw new FileFailed((e as Error).message);
    }
    const verifies = (stream as { verifiesSha256?: boolean }).verifiesSha256 === true;
    const hash = entry.sha256 && !verifies ? sha256Stream() : undefined;
    const chunker = new Chunker(job.chunking);
    const chunks: [string, number][] = [];
    const inflight = new Set<Promise<void>>();
    const limit = Math.max(2, 2 * store.up().length);
    let size = 0;
    let failure: unknown;
    // Buffers are freed as soon as they are dead (see release()): a piece of
    // the source once no chunk in flight views it, a chunk the chunker copied
    // once it is found stored. What went to a Pi is left to the collector.
    const viewers = new Map<ArrayBufferLike, number>(); // piece -> its chunks in flight
    const pinned = new WeakSet<ArrayBufferLike>(); // pieces with a chunk sent
    const done = (c: Uint8Array, free: boolean) => {
      const buf = c.buffer;
      const n = viewers.get(buf);
      if (n === undefined) {
        if (free && !pinned.has(buf)) release(c);
      } else if (!free) {
        viewers.delete(buf);
        pinned.add(buf);
      } else if (n > 1) viewers.set(buf, n - 1);
      else {
        viewers.delete(buf);
        release(new Uint8Array(buf as ArrayBuffer));
      }
    };
    // A chunk may be a view of a piece the source enqueued; sources never
    // reuse an enqueued piece (Source.open), so no copy is needed.
    const send = async (data: Uint8Array) => {
      const idx = chunks.length;
      chunks.push(["", data.length]);
      size += data.length;
      const placed = feed.start();
      first(); // the file's own place in the feed passes to its first chunk
      feed.bytes += data.length;
      const p = (async () => {
        try {
          const id = await chunkId(data);
          chunks[idx][0] = id;
          if (store.index.locations(id).length >= copies) {
            sum.chunks_deduplicated++;
            done(data, true);
            return;
          }
          done(data, false);
          prog.bytes_planned += data.length * copies;
          const r = await store.storeChunk(data, { id, copies, onQueued: placed });
          prog.bytes_stored += data.length * copies;
          if (r.sent) {
            sum.chunks_new++;
            newBytes += data.length;
          } else sum.chunks_deduplicated++;
        } finally {
          placed();
          feed.bytes -= data.length;
        }
      })().catch((e) => {
        failure ??= e;
      }).finally(() => inflight.delete(p));
      inflight.add(p);
      // The usual limit (a file started beyond the run's slots keeps to the
      // feed's byte cap too), or beyond it while a Pi is about to run dry.
      const full = () =>
        inflight.size >= limit || (extra && inflight.size > 0 && feed.bytes >= feed.cap);
      while (!failure && full() && !feed.extra()) {
        await Promise.race([...inflight, feed.change()]);
      }
      if (failure) throw failure;
    };
    try {
      for await (const piece of stream) {
        opts.signal?.throwIfAborted();
        hash?.update(piece);
        sum.bytes_read += piece.length;
        prog.bytes_read += piece.length;
        opts.onBytes?.(piece.length);
        const cs = chunker.push(piece);
        if (entry.freshPieces === true && owns(piece)) {
          const n = cs.reduce((k, c) => k + (c.buffer === piece.buffer ? 1 : 0), 0);
          if (n === 0) release(piece); // all copied: the chunker keeps no view of it
          else viewers.set(piece.buffer, n);
        }
        for (const c of cs) await send(c);
      }
      const last = chunker.finish();
      if (last) await send(last);
      await Promise.all(inflight);
      if (failure) throw failure;
    } catch (e) {
      await Promise.allSettled(inflight);
      if (e === failure || opts.signal?.aborted) throw e; // the store failed: stop the run
      throw new FileFailed((e as Error).message);
    }
    if (hash) {
      const got = hash.hex();
      if (got !== entry.sha256) {
        throw new FileFailed(`sha256 mismatch: expected ${entry.sha256}, got ${got}`);
      }
    }
    if (entry.size >= 0 && size !== entry.size) {
      throw new FileFailed(`size mismatch: listed ${entry.size} bytes, read ${size}`);
    }
    const manifest: Manifest = { v: 1, size, chunks };
    const mid = await chunkId(encodeManifest(manifest));
    const mode = (entry.mode ?? 0o644) & 0o7777;
    const mtime = Math.round(entry.mtimeMs);
    if (
      live?.type === "f" && live.manifest === mid && live.mode === mode && live.mtime === mtime
    ) {
      sum.files_unchanged++; // read, and found identical
      fileDone(path, "unchanged");
    } else {
      if (store.index.locations(mid).length < copies) {
        // Ahead of queued data chunks: the file lands once its own chunks have.
        await store.storeChunk(encodeManifest(manifest), { id: mid, copies, urgent: true });
      }
      store.index.setManifest(mid, manifest);
      await store.commit(
        { op: "put", p: path, m: mid, size, mode, mtime, copies },
        manifest,
      );
      const status = live?.type === "f" ? "changed" : "new";
      if (status === "new") sum.files_new++;
      else sum.files_changed++;
      fileDone(path, status);
    }
    store.index.syncCacheSet(job.name, path, {
      key: entry.key,
      size: entry.size,
      mtime: listedMtime,
      manifest: mid,
    });
  };

  for (const source of sources) {
    for await (const entry of source.list(report, opts.signal)) {
      if (fatal) break;
      if (!include(entry.path) || exclude(entry.path)) continue;
      let path: string;
      try {
        path = normalizePath(`${target}/${entry.path}`);
      } catch (e) {
        report({ path: entry.path, message: (e as Error).message });
        continue;
      }
      if (seen.has(path)) {
        report({ path: entry.path, message: "offered twice (by two sources?): the first kept" });
        continue;
      }
      seen.add(path);
      if (entry.note !== undefined) sum.notes.push({ path: entry.path, note: entry.note });
      prog.files_listed++;
      if (entry.size >= 0) prog.bytes_listed += entry.size;
      else prog.sizes_unknown++;
      const extra = running.size >= slots;
      const first = feed.start();
      const p: Promise<void> = storeEntry(entry, path, extra, first).catch((e) => {
        if (e instanceof FileFailed) {
          prog.files_done++;
          report({ path: entry.path, message: e.message });
        } else fatal ??= e;
      }).finally(() => {
        first();
        running.delete(p);
      });
      running.add(p);
      // `slots` files at once, and more (up to `maxFiles`) while a Pi is
      // about to run dry; an http source keeps to `slots` downloads.
      while (
        !fatal && running.size >= slots &&
        !(running.size < maxFiles(source) && feed.extra())
      ) await Promise.race([...running, feed.change()]);
    }
    if (fatal) break;
  }
  prog.listing_done = true;
  await Promise.all(running);
  if (fatal) throw fatal;

  const snap = await takeSnapshot(store, job, target, copiesAt(target), now());
  sum.snapshot = snap.name;
  emit({ event: "snapshot", job: job.name, name: snap.name, files: snap.files, bytes: snap.bytes });
  sum.snapshots_removed = await applyRetention(store, job.name, job.snapshots);

  sum.wire_bytes = store.wireBytes - wire0;
  sum.dedup_ratio = newBytes ? Math.round((sum.bytes_read / newBytes) * 1000) / 1000 : 1;
  sum.seconds = Math.round(performance.now() - t0) / 1000;
  emit({ event: "done", summary: sum });
  return sum;
}

/** Snapshot names: the job and the UTC time, e.g. `docs-20261125-114705`. */
export function snapshotName(job: string, time: number): string {
  const d = new Date(time).toISOString(); // 2026-11-25T11:47:05.123Z
  return `${job}-${d.slice(0, 10).replaceAll("-", "")}-${d.slice(11, 19).replaceAll(":", "")}`;
}

/**
 * Records the target tree as an immutable snapshot: its trees (shared with
 * earlier snapshots and checkpoints wherever a directory is unchanged), a
 * small record, and the `snap` journal entry.
 */
export async function takeSnapshot(
  store: Store,
  job: JobSpec,
  target: string,
  copies: number,
  time: number,
): Promise<SnapshotRow> {
  let name = snapshotName(job.name, time);
  for (let k = 2; store.index.snapshot(name); k++) name = `${snapshotName(job.name, time)}-${k}`;
  const w = await writeSnapshot(store, {
    name,
    job: job.name,
    target,
    time,
    copies,
    entries: store.index.walk(target),
  });
  await store.commit({ op: "snap", ...w.row }, undefined, w.held);
  return w.row;
}

/**
 * Which of a job's snapshots retention keeps: the `keepLast` newest, and the
 * newest of each of the `keepDaily` latest days, `keepWeekly` weeks and
 * `keepMonthly` months that have one (as restic's `forget` does). Times in UTC.
 */
export function retained(snaps: SnapshotRow[], keep: SnapshotsSpec): Set<string> {
  const newest = [...snaps].sort((a, b) => b.time - a.time || (b.name < a.name ? -1 : 1));
  const kept = new Set<string>(newest.slice(0, Math.max(1, keep.keepLast)).map((s) => s.name));
  const bucket = (n: number, key: (d: Date) => string) => {
    const seen = new Set<string>();
    for (const s of newest) {
      if (seen.size >= n) break;
      const k = key(new Date(s.time));
      if (seen.has(k)) continue;
      seen.add(k);
      kept.add(s.name);
    }
  };
  bucket(keep.keepDaily, (d) => d.toISOString().slice(0, 10));
  bucket(keep.keepWeekly, isoWeek);
  bucket(keep.keepMonthly, (d) => d.toISOString().slice(0, 7));
  return kept;
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${week}`;
}

/** Removes the job's snapshots retention does not keep; returns their names. */
export async function applyRetention(
  store: Store,
  job: string,
  keep: SnapshotsSpec,
): Promise<string[]> {
  const snaps = store.index.snapshots(job);
  const kept = retained(snaps, keep);
  const removed: string[] = [];
  for (const s of snaps) {
    if (kept.has(s.name)) continue;
    await store.commit({ op: "snaprm", name: s.name });
    removed.push(s.name);
  }
  return removed;
}
