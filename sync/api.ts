/**
 * The sync API for TypeScript pipelines: open a cluster, define a job whose
 * sources are your own code (or transforms of the built-in ones), and run it
 * exactly as `pifs sync` runs a YAML job.
 *
 * @example
 * ```ts
 * import { defineJob, type Source } from "./api.ts";
 * // A source of two generated files.
 * const numbers: Source = {
 *   kind: "numbers",
 *   description: "generated numbers",
 *   async *list() {
 *     for (const n of [1, 2]) {
 *       const text = new TextEncoder().encode(`${n}\n`);
 *       yield {
 *         path: `n${n}.txt`,
 *         size: text.length,
 *         mtimeMs: 0,
 *         key: `numbers:${n}`,
 *         open: () => Promise.resolve(ReadableStream.from([text])),
 *       };
 *     }
 *   },
 * };
 * const job = defineJob({ name: "numbers", target: "/numbers", sources: [numbers] });
 * if (job.spec.chunking.avg !== 1024 * 1024 || job.sources.length !== 1) throw new Error();
 * ```
 *
 * @module
 */
import { Store, type StoreOptions } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { normalizePath } from "../store/namespace.ts";
import { validateCdcOptions } from "./cdc.ts";
import { DEFAULT_CHUNK_AVG, type JobSpec, type SnapshotsSpec, type SourceSpec } from "./spec.ts";
import { runJob, sourceFor, type SyncOptions, type SyncSummary } from "./engine.ts";
import type { Source, SourceEntry } from "../pipelines/source.ts";

export type { Source, SourceEntry, SourceProblem } from "../pipelines/source.ts";
export { SourceError } from "../pipelines/source.ts";

/**
 * Opens the cluster in `dir` (default: `$PIFS_CLUSTER`): connects to its Pis
 * and brings the host's index up to date. Close it with `store.close()`.
 */
export async function openCluster(dir?: string, opts: StoreOptions = {}): Promise<Store> {
  return await Store.open(clusterDir(dir), opts);
}

/** A job for {@linkcode sync}: its settings and its sources. */
export interface Job {
  /** The settings, as a YAML job would have them. */
  spec: JobSpec;
  /** Its sources: your own, or built from source specs. */
  sources: Source[];
}

/** What {@linkcode defineJob} takes: a job's YAML fields, with sources as code. */
export interface JobDefinition {
  /** Job name (used for snapshots and the unchanged-file cache). */
  name: string;
  /** Store directory the sources land in. */
  target: string;
  /** Sources: objects implementing {@linkcode Source}, or source specs. */
  sources: (Source | SourceSpec)[];
  /** Globs of paths to take (default: all). */
  include?: string[];
  /** Globs of paths to leave out. */
  exclude?: string[];
  /** Copies of each chunk (default: the cluster's). */
  copies?: number;
  /** Chunk sizes in bytes (default: avg 1 MiB, min avg/4, max 4·avg). */
  chunking?: { avg: number; min?: number; max?: number };
  /** Snapshot retention (default: the last 10). */
  snapshots?: Partial<SnapshotsSpec>;
}

function isSource(s: Source | SourceSpec): s is Source {
  return typeof (s as Source).list === "function";
}

/** Checks a job definition (throws a RangeError naming the field) and fills its defaults. */
export function defineJob(def: JobDefinition): Job {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(def.name)) {
    throw new RangeError(`name: '${def.name}' is not a job name (letters, digits, . _ -)`);
  }
  if (!def.target.startsWith("/")) {
    throw new RangeError(`target: '${def.target}' must be an absolute store path`);
  }
  const target = normalizePath(def.target);
  if (!def.sources.length) throw new RangeError("sources: a job needs at least one source");
  const avg = def.chunking?.avg ?? DEFAULT_CHUNK_AVG;
  const chunking = {
    avg,
    min: def.chunking?.min ?? Math.floor(avg / 4),
    max: def.chunking?.max ?? Math.min(4 * avg, 8 * 1024 * 1024),
  };
  try {
    validateCdcOptions(chunking);
  } catch (e) {
    throw new RangeError(`chunking: ${(e as Error).message}`);
  }
  if (def.copies !== undefined && !(Number.isInteger(def.copies) && def.copies >= 1)) {
    throw new RangeError(`copies: ${def.copies} is not a whole number ≥ 1`);
  }
  const specs = def.sources.filter((s): s is SourceSpec => !isSource(s));
  const spec: JobSpec = {
    name: def.name,
    target,
    sources: specs,
    include: def.include ?? [],
    exclude: def.exclude ?? [],
    copies: def.copies,
    chunking,
    snapshots: {
      keepLast: def.snapshots?.keepLast ?? 10,
      keepDaily: def.snapshots?.keepDaily ?? 0,
      keepWeekly: def.snapshots?.keepWeekly ?? 0,
      keepMonthly: def.snapshots?.keepMonthly ?? 0,
    },
    specFile: "(code)",
  };
  return { spec, sources: def.sources.map((s) => isSource(s) ? s : sourceFor(s)) };
}

/** Runs a job against an open cluster; resolves with the same summary `pifs sync --json` prints. */
export async function sync(store: Store, job: Job, opts: SyncOptions = {}): Promise<SyncSummary> {
  return await runJob(store, job.spec, opts, job.sources);
}

/** What {@linkcode transformSource} changes. */
export interface SourceTransform {
  /** New path of an entry (`undefined`: leave it out). */
  path?: (entry: SourceEntry) => string | undefined;
  /** A transform of the content (e.g. `new CompressionStream("gzip")`); sizes become unknown. */
  content?: () => {
    writable: WritableStream<Uint8Array<ArrayBuffer>>;
    readable: ReadableStream<Uint8Array>;
  };
  /** Suffix of the key, so a changed transform re-syncs its files. */
  version?: string;
}

/**
 * A source seen through a transform: renamed or filtered entries, and
 * content passed through a stream transform.
 *
 * @example
 * ```ts
 * import { transformSource, type Source } from "./api.ts";
 * const one: Source = {
 *   kind: "one",
 *   description: "one file",
 *   async *list() {
 *     yield {
 *       path: "a.txt",
 *       size: 1,
 *       mtimeMs: 0,
 *       key: "one",
 *       open: () => Promise.resolve(ReadableStream.from([new Uint8Array([65])])),
 *     };
 *   },
 * };
 * const gz = transformSource(one, {
 *   path: (e) => `${e.path}.gz`,
 *   content: () => new CompressionStream("gzip"),
 * });
 * for await (const e of gz.list(() => {})) {
 *   if (e.path !== "a.txt.gz" || e.size !== -1) throw new Error();
 * }
 * ```
 */
export function transformSource(source: Source, t: SourceTransform): Source {
  return {
    kind: source.kind,
    description: `${source.description} (transformed)`,
    async *list(report, signal) {
      for await (const e of source.list(report, signal)) {
        const path = t.path ? t.path(e) : e.path;
        if (path === undefined) continue;
        if (!t.content) {
          yield { ...e, path, key: t.version ? `${e.key}:${t.version}` : e.key };
          continue;
        }
        yield {
          path,
          size: -1,
          mtimeMs: e.mtimeMs,
          mode: e.mode,
          // The original's key and size, and the transform's version: the
          // same input through the same transform is the same entry.
          key: `${e.key}:${e.size}:${t.version ?? "t"}`,
          open: async (offset = 0, sig?: AbortSignal) => {
            if (offset !== 0) throw new RangeError("a transformed entry opens at 0 only");
            const raw = await e.open(0, sig) as ReadableStream<Uint8Array<ArrayBuffer>>;
            return raw.pipeThrough(t.content!());
          },
        };
      }
    },
  };
}
