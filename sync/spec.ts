/**
 * Job specs for `pifs sync`: the YAML file format, its zod schema, and the
 * loader that turns a file into normalised {@linkcode JobSpec}s (defaults
 * filled, sizes in bytes, source paths absolute) or a {@linkcode SpecError}
 * that lists every problem as `FILE:LINE:COL: FIELD: MESSAGE`.
 *
 * The smallest job file:
 *
 * ```yaml
 * name: docs
 * target: /docs
 * sources:
 *   - folder: ./my-docs
 * ```
 *
 * A file holds one job (its fields at the top level, as above) or several
 * under `jobs:`. Relative source paths are resolved against the directory of
 * the job file.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { formatBytes, MiB, parseSize, SIZE_HINT, SIZE_RE } from "../units.ts";
import { CronPattern } from "croner";
import picomatch from "picomatch";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document } from "yaml";
import { z } from "zod";
import { dirname, resolve } from "node:path";
import process from "node:process";
import { MAX_NAME, MAX_PATH, normalizePath, SNAPSHOTS_DIR } from "../store/namespace.ts";

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/** A local folder, copied recursively. */
export interface FolderSourceSpec {
  /** Kind of source. */
  kind: "folder";
  /** The folder, absolute once loaded (as written in {@linkcode ParsedJob}). */
  path: string;
  /** Whether symbolic links are followed (default false: they are skipped). */
  followSymlinks: boolean;
}

/** One or more photo libraries, filed by the date each photo was taken. */
export interface PhotosSourceSpec {
  /** Kind of source. */
  kind: "photos";
  /** The library folders (at least one), absolute once loaded. */
  paths: string[];
  /** Where a photo goes under the target, e.g. `{yyyy}/{mm}/{dd}/{name}`. */
  layout: string;
  /** Whether a photo whose content is already stored is skipped (default true). */
  dedupe: boolean;
}

/** A dataset fetched over HTTP(S): a list of URLs or a manifest naming them. */
export interface HttpSourceSpec {
  /** Kind of source. */
  kind: "http";
  /** The URLs to fetch (exactly one of `urls` and `manifest` is set). */
  urls?: string[];
  /** An http(s) URL, or an absolute path once loaded, of a manifest listing the files. */
  manifest?: string;
  /** Downloads running at once, 1..32 (default 4). */
  concurrency: number;
  /** Retries of one download before it fails, 0..100 (default 8). */
  retries: number;
  /** Seconds without progress before a download attempt is abandoned (default 60). */
  timeout: number;
}

/** One source of a job, by its `kind`. */
export type SourceSpec = FolderSourceSpec | PhotosSourceSpec | HttpSourceSpec;

/** Content-defined chunking sizes, in bytes: `min < avg < max`, `avg` a power of two. */
export interface ChunkingSpec {
  /** Smallest chunk (except a file's last). */
  min: number;
  /** Target average chunk size, a power of two. */
  avg: number;
  /** Largest chunk. */
  max: number;
}

/** Which snapshots of the target are kept after each run. */
export interface SnapshotsSpec {
  /** The newest snapshots kept, at least 1 (default 10). */
  keepLast: number;
  /** Days for which the newest snapshot of the day is kept (default 0). */
  keepDaily: number;
  /** Weeks for which the newest snapshot of the week is kept (default 0). */
  keepWeekly: number;
  /** Months for which the newest snapshot of the month is kept (default 0). */
  keepMonthly: number;
}

/** A job as {@linkcode jobSchema} outputs it: defaults filled, source paths as written. */
export interface ParsedJob {
  /** The job's name, unique in its file. */
  name: string;
  /** The store directory the job writes to, normalised (`/docs`, no trailing slash). */
  target: string;
  /** The sources, at least one. */
  sources: SourceSpec[];
  /** Glob patterns a file's path must match to be synced (empty: every file). */
  include: string[];
  /** Glob patterns of files left out (applied after `include`). */
  exclude: string[];
  /** Copies of each chunk kept in the store, 1..8 (unset: the store's default). */
  copies?: number;
  /** Chunking sizes. */
  chunking: ChunkingSpec;
  /** A cron pattern for scheduled runs (unset: runs only when started by hand). */
  schedule?: string;
  /** Which snapshots are kept. */
  snapshots: SnapshotsSpec;
}

/** A loaded job: a {@linkcode ParsedJob} with absolute source paths and its file. */
export interface JobSpec extends ParsedJob {
  /** Absolute path of the job file it came from. */
  specFile: string;
}

/** One problem in a job file. */
export interface SpecIssue {
  /** The field, e.g. `jobs[1].sources[0].http.urls[2]` or `target` ("" for the whole file). */
  path: string;
  /** 1-based line in the file, when known. */
  line?: number;
  /** 1-based column in the file, when known. */
  column?: number;
  /** What is wrong. */
  message: string;
}

/** A job file that cannot be used; the message lists every issue, one per line. */
export class SpecError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "SPEC";
  /** A usage error: the CLI exits with 2. */
  override readonly exitCode: number = 2;
  /** The error's name. */
  override name = "SpecError";
  /** The job file, as it was named to {@linkcode loadSpec} or {@linkcode parseSpec}. */
  readonly file: string;
  /** Every problem found, in the order they appear in the file. */
  readonly issues: SpecIssue[];
  /** Builds the message `FILE:LINE:COL: FIELD: MESSAGE` (one line per issue). */
  constructor(file: string, issues: SpecIssue[], options?: ErrorOptions) {
    super(issues.map((i) => formatIssue(file, i)).join("\n"), options);
    this.file = file;
    this.issues = issues;
  }
}

function formatIssue(file: string, i: SpecIssue): string {
  const where = i.line === undefined ? file : `${file}:${i.line}:${i.column ?? 1}`;
  return `${where}: ${i.path === "" ? "" : `${i.path}: `}${i.message}`;
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/** Smallest chunk size allowed, in bytes. */
export const MIN_CHUNK_SIZE = 64;
/** Largest chunk size allowed, in bytes (8 MiB). */
export const MAX_CHUNK_SIZE: number = 8 * MiB;
/** Average chunk size when a job sets none (1 MiB). */
export const DEFAULT_CHUNK_AVG: number = MiB;
/** Default photo layout under the target. */
export const DEFAULT_PHOTO_LAYOUT = "{yyyy}/{mm}/{dd}/{name}";
/** Placeholders a photo layout may use. */
export const PHOTO_LAYOUT_PLACEHOLDERS: readonly string[] = ["yyyy", "mm", "dd", "name", "camera"];

// ---------------------------------------------------------------------------
// Field schemas
// ---------------------------------------------------------------------------

/** A whole number in [min, max], whose issues never stop the checks of the enclosing objects. */
function int(min: number, max: number) {
  return z.number().min(min).max(max).superRefine((n, ctx) => {
    if (!Number.isInteger(n)) ctx.addIssue({ code: "custom", message: "must be a whole number" });
  }).meta({ type: "integer" });
}

/** Defaults shown in the JSON Schema, by the optional field schema they belong to. */
const JSON_DEFAULTS = new WeakMap<object, unknown>();

/** An optional field whose default (applied by the transforms) is `value`. */
function withDefault<T extends z.ZodType>(
  schema: T,
  value: unknown,
  description: string,
): z.ZodOptional<T> {
  const field = schema.optional().describe(description);
  JSON_DEFAULTS.set(field, value);
  return field;
}

function localPathIssue(s: string): string | undefined {
  if (s.trim() === "") return "must not be empty";
  if (/^~(\/|$)/.test(s)) {
    return "'~' is not expanded: give a full path, or one relative to the job file";
  }
  return undefined;
}

const localPath = z.string().superRefine((s, ctx) => {
  const message = localPathIssue(s);
  if (message) ctx.addIssue({ code: "custom", message });
});

function urlIssue(s: string): string | undefined {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return "not a URL";
  }
  return url.protocol === "http:" || url.protocol === "https:" ? undefined : "not an http(s) URL";
}

const httpUrl = z.string().superRefine((s, ctx) => {
  const message = urlIssue(s);
  if (message) ctx.addIssue({ code: "custom", message });
}).meta({ format: "uri" });

/** Whether a manifest reference is written as a URL rather than a local path. */
function looksLikeUrl(s: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(s) || /^https?:/i.test(s);
}

const manifestRef = z.string().superRefine((s, ctx) => {
  const message = looksLikeUrl(s) ? urlIssue(s) : localPathIssue(s);
  if (message) ctx.addIssue({ code: "custom", message });
});

const sizeSchema = z.union([
  int(1, Number.MAX_SAFE_INTEGER),
  z.string().regex(SIZE_RE, {
    error: (iss) => `not a size: ${JSON.stringify(iss.input)} (use ${SIZE_HINT})`,
  }),
], { error: `expected a size: ${SIZE_HINT}` }).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message, input: v });
    return z.NEVER;
  }
});

const chunkingSchema = z.strictObject({
  avg: sizeSchema.describe("Average chunk size, a power of two (e.g. 1MiB)."),
  min: sizeSchema.optional().describe("Smallest chunk (default avg/4, at least 64 B)."),
  max: sizeSchema.optional().describe("Largest chunk (default avg*4, at most 8MiB)."),
}).transform((c, ctx): ChunkingSpec => {
  const { avg } = c;
  const min = c.min ?? Math.floor(avg / 4);
  const max = c.max ?? Math.min(avg * 4, MAX_CHUNK_SIZE);
  const fail = (path: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [path], message, input: c });
  const bad = ctx.issues.length;
  if (!Number.isInteger(Math.log2(avg))) {
    fail("avg", `must be a power of two (e.g. 256KiB, 1MiB), not ${formatBytes(avg, true)}`);
  }
  if (min < MIN_CHUNK_SIZE) {
    if (c.min === undefined) {
      fail(
        "avg",
        `${formatBytes(avg, true)} gives a default min of ${
          formatBytes(min, true)
        }, below ${MIN_CHUNK_SIZE} B`,
      );
    } else fail("min", `must be at least ${MIN_CHUNK_SIZE} B, not ${formatBytes(min, true)}`);
  }
  if (min >= avg) {
    fail(
      c.min === undefined ? "avg" : "min",
      `min (${formatBytes(min, true)}) must be less than avg (${formatBytes(avg, true)})`,
    );
  }
  if (max > MAX_CHUNK_SIZE) fail("max", `must be at most 8 MiB, not ${formatBytes(max, true)}`);
  if (avg >= max) {
    if (c.max === undefined) fail("avg", `must be less than ${formatBytes(MAX_CHUNK_SIZE, true)}`);
    else {fail(
        "max",
        `max (${formatBytes(max, true)}) must be more than avg (${formatBytes(avg, true)})`,
      );}
  }
  return ctx.issues.length > bad ? z.NEVER : { min, avg, max };
});

const JOB_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const jobName = z.string().regex(JOB_NAME_RE, {
  error: "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
});

function targetIssue(s: string): string | undefined {
  if (!s.startsWith("/")) return "must be an absolute store path starting with /";
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(s)) return "must not contain control characters";
  if (new TextEncoder().encode(s).length > MAX_PATH) return `is longer than ${MAX_PATH} bytes`;
  if (s === "/") return undefined;
  if (s.split("/")[1] === SNAPSHOTS_DIR) {
    return `/${SNAPSHOTS_DIR} is reserved for the snapshots (choose another target)`;
  }
  const segments = s.slice(1).split("/");
  if (segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  for (const seg of segments) {
    if (seg === "") return "must not have an empty segment (//)";
    if (seg === "..") return "must not contain '..'";
    if (seg === ".") return "must not contain '.'";
    if (new TextEncoder().encode(seg).length > MAX_NAME) {
      return `segment '${seg.slice(0, 20)}…' is longer than ${MAX_NAME} bytes`;
    }
  }
  return undefined;
}

const targetSchema = z.string().superRefine((s, ctx) => {
  const message = targetIssue(s);
  if (message) ctx.addIssue({ code: "custom", message });
}).transform((s) => normalizePath(s));

const globSchema = z.string().superRefine((s, ctx) => {
  try {
    compileGlob(s, { strictBrackets: true });
  } catch (e) {
    ctx.addIssue({
      code: "custom",
      message: s === "" ? "must not be empty" : `bad glob pattern: ${(e as Error).message}`,
    });
  }
});

const compileGlob = picomatch as unknown as (
  pattern: string,
  options: { strictBrackets: boolean },
) => (path: string) => boolean;

const cronSchema = z.string().superRefine((s, ctx) => {
  try {
    new CronPattern(s);
  } catch (e) {
    const reason = (e as Error).message.replace(/^CronPattern:\s*/, "");
    ctx.addIssue({ code: "custom", message: `bad cron schedule: ${reason}` });
  }
});

const snapshotsSchema = z.strictObject({
  keep_last: withDefault(int(1, 1_000_000), 10, "The newest snapshots kept (default 10)."),
  keep_daily: withDefault(int(0, 1_000_000), 0, "Days whose newest snapshot is kept."),
  keep_weekly: withDefault(int(0, 1_000_000), 0, "Weeks whose newest snapshot is kept."),
  keep_monthly: withDefault(int(0, 1_000_000), 0, "Months whose newest snapshot is kept."),
}).transform((s): SnapshotsSpec => ({
  keepLast: s.keep_last ?? 10,
  keepDaily: s.keep_daily ?? 0,
  keepWeekly: s.keep_weekly ?? 0,
  keepMonthly: s.keep_monthly ?? 0,
}));

function layoutIssue(s: string): string | undefined {
  const names = [...s.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]);
  const unknown = names.find((n) => !PHOTO_LAYOUT_PLACEHOLDERS.includes(n));
  if (unknown !== undefined) {
    return `unknown placeholder {${unknown}} (use ${
      PHOTO_LAYOUT_PLACEHOLDERS.map((p) => `{${p}}`).join(" ")
    })`;
  }
  if (/[{}]/.test(s.replace(/\{[^{}]*\}/g, ""))) return "has an unmatched { or }";
  if (!names.includes("name")) return "must contain {name}";
  if (s.startsWith("/")) return "must be relative to the target (no leading /)";
  if (s.split("/").some((seg) => seg === ".." || seg === "." || seg === "")) {
    return "must not have '.', '..' or empty segments";
  }
  return undefined;
}

const layoutSchema = z.string().superRefine((s, ctx) => {
  const message = layoutIssue(s);
  if (message) ctx.addIssue({ code: "custom", message });
});

// ---------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------

const folderSource = z.strictObject({
  folder: localPath.describe("A local folder, copied recursively."),
  follow_symlinks: withDefault(
    z.boolean(),
    false,
    "Follow symbolic links (default false: skip them).",
  ),
}).transform((s): FolderSourceSpec => ({
  kind: "folder",
  path: s.folder,
  followSymlinks: s.follow_symlinks ?? false,
}));

const photosSource = z.strictObject({
  photos: z.union([localPath, z.array(localPath).min(1)], {
    error: "expected a path or a list of paths",
  }).describe("A photo library folder, or a list of them."),
  layout: withDefault(
    layoutSchema,
    DEFAULT_PHOTO_LAYOUT,
    "Where each photo goes under the target; placeholders {yyyy} {mm} {dd} {name} {camera}.",
  ),
  dedupe: withDefault(
    z.boolean(),
    true,
    "Skip photos whose content is already stored (default true).",
  ),
}).transform((s): PhotosSourceSpec => ({
  kind: "photos",
  paths: typeof s.photos === "string" ? [s.photos] : s.photos,
  layout: s.layout ?? DEFAULT_PHOTO_LAYOUT,
  dedupe: s.dedupe ?? true,
}));

const httpOptions = z.strictObject({
  urls: z.array(httpUrl).min(1).optional().describe("The http(s) URLs to fetch."),
  manifest: manifestRef.optional().describe(
    "An http(s) URL or a path of a manifest listing the files to fetch.",
  ),
  concurrency: withDefault(int(1, 32), 4, "Downloads at once, 1..32 (default 4)."),
  retries: withDefault(int(0, 100), 8, "Retries of one download, 0..100 (default 8)."),
  timeout: withDefault(
    z.number().positive().max(86_400),
    60,
    "Seconds without progress before a download attempt is abandoned (default 60).",
  ),
}).superRefine((h, ctx) => {
  if (typeof h !== "object" || h === null) return;
  if (h.urls === undefined && h.manifest === undefined) {
    ctx.addIssue({ code: "custom", message: "needs urls or manifest" });
  } else if (h.urls !== undefined && h.manifest !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["manifest"],
      message: "give either urls or manifest, not both",
    });
  }
}, { when: () => true });

const httpSource = z.strictObject({
  http: httpOptions.describe("A dataset fetched over HTTP(S)."),
}).transform((s): HttpSourceSpec => ({
  kind: "http",
  ...(s.http.urls !== undefined ? { urls: s.http.urls } : {}),
  ...(s.http.manifest !== undefined ? { manifest: s.http.manifest } : {}),
  concurrency: s.http.concurrency ?? 4,
  retries: s.http.retries ?? 8,
  timeout: s.http.timeout ?? 60,
}));

/** Source kinds, in the order of the branches of {@linkcode sourceSchema}. */
const SOURCE_KINDS = ["folder", "photos", "http"] as const;
const SOURCE_KEYS: Record<(typeof SOURCE_KINDS)[number], string[]> = {
  folder: ["folder", "follow_symlinks"],
  photos: ["photos", "layout", "dedupe"],
  http: ["http"],
};

/** The schema of one source: exactly one of `folder:`, `photos:` or `http:` with its options. */
export const sourceSchema: z.ZodType<SourceSpec> = z.union([
  folderSource,
  photosSource,
  httpSource,
], { error: "expected a source: a mapping with folder:, photos: or http:" });

// ---------------------------------------------------------------------------
// Jobs and files
// ---------------------------------------------------------------------------

const jobFields = {
  name: jobName.describe("The job's name, unique in the file."),
  target: targetSchema.describe("The store directory the job writes to, e.g. /docs."),
  sources: z.array(sourceSchema).min(1).optional().describe("Where the files come from."),
  source: sourceSchema.optional().describe("A single source (instead of sources:)."),
  include: withDefault(z.array(globSchema), [], "Glob patterns of the files synced (none: all)."),
  exclude: withDefault(z.array(globSchema), [], "Glob patterns of files left out."),
  copies: int(1, 8).optional().describe("Copies of each chunk in the store, 1..8."),
  chunking: withDefault(chunkingSchema, { avg: "1MiB" }, "Content-defined chunking sizes."),
  schedule: cronSchema.optional().describe('A cron pattern for scheduled runs, e.g. "0 3 * * *".'),
  snapshots: withDefault(snapshotsSchema, { keep_last: 10 }, "Which snapshots are kept."),
};
const JOB_KEYS = Object.keys(jobFields);

type JobFieldsOut = {
  name?: string;
  target?: string;
  sources?: SourceSpec[];
  source?: SourceSpec;
  include?: string[];
  exclude?: string[];
  copies?: number;
  chunking?: ChunkingSpec;
  schedule?: string;
  snapshots?: SnapshotsSpec;
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks across a job's fields; runs even when some fields are invalid. */
function checkJob(v: unknown, ctx: z.RefinementCtx, requireNameAndTarget: boolean): void {
  if (!isRecord(v)) return;
  if (requireNameAndTarget) {
    for (const key of ["name", "target"]) {
      if (v[key] === undefined) {
        ctx.addIssue({ code: "custom", path: [key], message: "required field missing" });
      }
    }
  }
  if (v.sources === undefined && v.source === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["sources"],
      message: "required field missing (a list of sources, or source: with one)",
    });
  } else if (v.sources !== undefined && v.source !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["source"],
      message: "give either sources or source, not both",
    });
  }
}

function finishJob(v: JobFieldsOut): ParsedJob {
  return {
    name: v.name!,
    target: v.target!,
    sources: v.sources ?? [v.source!],
    include: v.include ?? [],
    exclude: v.exclude ?? [],
    ...(v.copies !== undefined ? { copies: v.copies } : {}),
    chunking: v.chunking ?? {
      min: DEFAULT_CHUNK_AVG / 4,
      avg: DEFAULT_CHUNK_AVG,
      max: DEFAULT_CHUNK_AVG * 4,
    },
    ...(v.schedule !== undefined ? { schedule: v.schedule } : {}),
    snapshots: v.snapshots ?? { keepLast: 10, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 },
  };
}

const jobObject = z.strictObject(jobFields, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? `expected a job: a mapping with name:, target: and sources:, got ${
        describeValue(iss.input)
      }`
      : undefined,
});

const jobChecked = jobObject.superRefine((v, ctx) => checkJob(v, ctx, false), {
  when: () => true,
});

/** The schema of one job (an item of `jobs:`); its output has defaults filled and paths as written. */
export const jobSchema: z.ZodType<ParsedJob> = jobChecked.transform((v) => finishJob(v));

const jobList = z.array(jobSchema).min(1).superRefine((jobs: unknown, ctx) => {
  // Runs on invalid input too (when: always), to report duplicates beside
  // other issues: `jobs` may be anything, not only a list.
  if (!Array.isArray(jobs)) return;
  const seen = new Map<string, number>();
  jobs.forEach((job: unknown, i) => {
    if (!isRecord(job) || typeof job.name !== "string") return;
    const first = seen.get(job.name);
    if (first === undefined) seen.set(job.name, i);
    else {
      ctx.addIssue({
        code: "custom",
        path: [i, "name"],
        message: `duplicate job name "${job.name}" (also jobs[${first}])`,
      });
    }
  });
}, { when: () => true });

const fileObject = z.strictObject({
  ...jobFields,
  name: jobFields.name.optional(),
  target: jobFields.target.optional(),
  jobs: jobList.optional().describe("Several jobs (instead of one job's fields at the top level)."),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? `expected a mapping with a job's fields (name:, target:, sources:) or jobs:, got ${
        describeValue(iss.input)
      }`
      : undefined,
});

const fileChecked = fileObject
  .superRefine((v, ctx) => {
    if (!isRecord(v)) return;
    if (v.jobs === undefined) return checkJob(v, ctx, true);
    for (const key of JOB_KEYS) {
      if ((v as Record<string, unknown>)[key] !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: "not allowed next to jobs: (give it inside each job)",
        });
      }
    }
  }, { when: () => true });

/**
 * The schema of a whole job file: one job's fields at the top level, or
 * `jobs:` with a list of them. Its output is the list of jobs, paths as written.
 */
export const specFileSchema: z.ZodType<ParsedJob[]> = fileChecked.transform((v) =>
  v.jobs ?? [finishJob(v)]
);

/**
 * A JSON Schema (draft 2020-12) of the job file format, for editors to
 * validate and complete job files (`./pifs schema`).
 */
export function specJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(specFileSchema, {
    io: "input",
    unrepresentable: "any",
    override: ({ zodSchema, jsonSchema }) => {
      if (JSON_DEFAULTS.has(zodSchema)) jsonSchema.default = JSON_DEFAULTS.get(zodSchema);
      if (zodSchema === jobChecked || zodSchema === fileChecked) {
        const job = [{ required: ["sources"] }, { required: ["source"] }];
        if (zodSchema === jobChecked) jsonSchema.anyOf = job;
        else {
          jsonSchema.anyOf = [
            { required: ["jobs"] },
            { required: ["name", "target"], anyOf: job },
          ];
        }
      }
    },
  }) as Record<string, unknown>;
  return {
    ...schema,
    title: "pifs sync job file",
    description: "One job (name, target, sources) or several under jobs:.",
  };
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/** Largest job file {@linkcode loadSpec} reads (1 MiB: a job file is kilobytes). */
export const MAX_SPEC_BYTES: number = 1024 * 1024;
/** Deepest nesting of lists and mappings a job file may have (its format needs 6). */
export const MAX_SPEC_DEPTH = 32;

/**
 * Reads and parses the job file at `path`; see {@linkcode parseSpec}. Only a
 * regular file of at most {@linkcode MAX_SPEC_BYTES} in UTF-8 is read (a
 * fifo, a device or a directory is refused before it is opened); a file that
 * cannot be used is a {@linkcode SpecError} naming the path.
 */
export async function loadSpec(path: string): Promise<JobSpec[]> {
  const refuse = (message: string, cause?: unknown): never => {
    throw new SpecError(path, [{ path: "", message: `cannot read the job file: ${message}` }], {
      cause,
    });
  };
  let text = "";
  try {
    const st = await Deno.stat(path);
    if (st.isDirectory) refuse("it is a directory");
    if (!st.isFile) refuse("not a regular file (a fifo, socket or device is not read)");
    if (st.size > MAX_SPEC_BYTES) {
      refuse(`${st.size} bytes, more than a job file's ${MAX_SPEC_BYTES} (1 MiB)`);
    }
    // Read at most one byte past the limit: the file may grow after the stat.
    using file = await Deno.open(path, { read: true });
    const buf = new Uint8Array(MAX_SPEC_BYTES + 1);
    let n = 0;
    for (;;) {
      const k = await file.read(buf.subarray(n));
      if (k === null) break;
      n += k;
      if (n > MAX_SPEC_BYTES) refuse(`more than a job file's ${MAX_SPEC_BYTES} bytes (1 MiB)`);
    }
    text = decodeUtf8(buf.subarray(0, n), path);
  } catch (e) {
    if (e instanceof SpecError) throw e;
    if (e instanceof Deno.errors.NotFound) refuse("no such file", e);
    if (e instanceof Deno.errors.PermissionDenied) refuse("permission denied", e);
    if (e instanceof Deno.errors.IsADirectory) refuse("it is a directory", e);
    refuse((e as Error).message, e);
  }
  return parseSpec(text, path);
}

/** `bytes` as UTF-8 text; invalid UTF-8 is a {@linkcode SpecError} at its line and column. */
function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    // Find the first bad byte: decode growing prefixes line by line.
    let line = 1, start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 10) {
        try {
          new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, i));
        } catch {
          break;
        }
        line++;
        start = i + 1;
      }
    }
    throw new SpecError(file, [{
      path: "",
      line,
      column: 1,
      message: "not valid UTF-8 text (a job file is UTF-8: re-save it as such)",
    }]);
  }
}

/**
 * Parses the text of a job file into normalised jobs: defaults filled, sizes
 * in bytes, the target normalised, and source paths resolved against the
 * directory of `file` (which also names the file in messages). Throws a
 * {@linkcode SpecError} listing every problem, each with its line and column.
 *
 * @example
 * ```ts
 * import { parseSpec, SpecError } from "./spec.ts";
 * const text = "name: docs\ntarget: /docs\nsources:\n  - folder: ./my-docs\n";
 * const [job] = parseSpec(text, "/jobs/docs.yaml");
 * const src = job.sources[0];
 * if (src.kind !== "folder" || src.path !== "/jobs/my-docs") throw new Error();
 * if (job.chunking.avg !== 1024 * 1024 || job.snapshots.keepLast !== 10) throw new Error();
 * try {
 *   parseSpec("name: docs\ntarget: docs\nsource: { folder: . }\n", "docs.yaml");
 *   throw new Error("accepted a relative target");
 * } catch (e) {
 *   if (!(e instanceof SpecError) || !e.message.startsWith("docs.yaml:2:9: target: ")) throw e;
 * }
 * ```
 */
export function parseSpec(text: string, file: string): JobSpec[] {
  const lineCounter = new LineCounter();
  const tooDeep = (e: unknown): never => {
    if (!(e instanceof RangeError)) throw e;
    throw new SpecError(file, [{ path: "", message: `nested too deeply (${e.message})` }]);
  };
  const flowDeep = flowDepthOffset(text, MAX_SPEC_DEPTH);
  if (flowDeep !== undefined) {
    const before = text.slice(0, flowDeep);
    throw new SpecError(file, [{
      path: "",
      line: before.split("\n").length,
      column: flowDeep - before.lastIndexOf("\n"),
      message: `nested more than ${MAX_SPEC_DEPTH} levels deep (a job file needs 6)`,
    }]);
  }
  let doc: Document;
  try {
    doc = withoutYamlDebugEnv(() =>
      parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true })
    );
  } catch (e) {
    return tooDeep(e);
  }
  if (doc.errors.length > 0) {
    throw new SpecError(
      file,
      doc.errors.map((e) => ({
        path: "",
        line: e.linePos?.[0].line,
        column: e.linePos?.[0].col,
        message: e.code === "MULTIPLE_DOCS"
          ? "a job file holds one YAML document (put several jobs under jobs:)"
          : `YAML syntax error: ${
            e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")
          }`,
      })),
    );
  }
  let data: unknown;
  try {
    data = withoutYamlDebugEnv(() => doc.toJS({ maxAliasCount: 1000 }));
  } catch (e) {
    if (e instanceof RangeError) return tooDeep(e);
    throw new SpecError(file, [{ path: "", line: 1, column: 1, message: (e as Error).message }], {
      cause: e,
    });
  }
  const deep = depthPath(data, MAX_SPEC_DEPTH);
  if (deep) {
    throw new SpecError(file, [{
      path: "",
      ...positionOf(doc, deep, lineCounter),
      message: `nested more than ${MAX_SPEC_DEPTH} levels deep (a job file needs 6)`,
    }]);
  }
  if (data === null || data === undefined) {
    throw new SpecError(file, [{
      path: "",
      line: 1,
      column: 1,
      message: "the job file is empty: expected a job (name:, target:, sources:) or jobs:",
    }]);
  }
  const result = specFileSchema.safeParse(data, { error: errorMap });
  if (!result.success) {
    const raw: RawIssue[] = [];
    flattenIssues(result.error.issues, [], data, raw);
    throw new SpecError(file, locateIssues(raw, doc, lineCounter));
  }
  const specFile = resolve(file);
  const dir = dirname(specFile);
  return result.data.map((job) => resolveJob(job, dir, specFile));
}

/**
 * The offset of the first `[` or `{` that opens a flow collection nested
 * deeper than `limit`, or undefined: checked before the YAML parser, whose
 * recursion a deep enough flow nesting overflows. Quoted text and comments
 * are skipped; a bracket inside a plain scalar counts, which only matters
 * past `limit` of them.
 */
function flowDepthOffset(text: string, limit: number): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "[" || c === "{") {
      if (++depth > limit) return i;
    } else if (c === "]" || c === "}") depth = Math.max(0, depth - 1);
    else if (c === '"' || c === "'") {
      for (i++; i < text.length && text[i] !== c; i++) if (c === '"' && text[i] === "\\") i++;
    } else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]))) {
      while (i < text.length && text[i] !== "\n") i++;
    }
  }
  return undefined;
}

/**
 * The path to the first value nested deeper than `limit` lists and mappings
 * in `data`, or undefined; iterative, so no depth overflows the stack.
 */
function depthPath(data: unknown, limit: number): Path | undefined {
  const stack: { v: unknown; path: Path }[] = [{ v: data, path: [] }];
  while (stack.length > 0) {
    const { v, path } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (path.length >= limit) return path;
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, path: [...path, i] }));
    else for (const [k, x] of Object.entries(v)) stack.push({ v: x, path: [...path, k] });
  }
  return undefined;
}

function positionOf(
  doc: Document,
  path: Path,
  lineCounter: LineCounter,
): { line: number; column: number } {
  const pos = lineCounter.linePos(offsetOf(doc, path, false));
  return { line: pos.line, column: pos.col };
}

/**
 * Runs `fn` (synchronous YAML work) so that the yaml package's checks of its
 * debug variables `LOG_TOKENS` and `LOG_STREAM` neither fail nor prompt when
 * the program has no env permission: `process.env` is swapped for an empty
 * object meanwhile. Nothing else runs during a synchronous call.
 */
function withoutYamlDebugEnv<T>(fn: () => T): T {
  const granted = ["LOG_TOKENS", "LOG_STREAM"].every((variable) =>
    Deno.permissions.querySync({ name: "env", variable }).state === "granted"
  );
  if (granted) return fn();
  const saved = process.env;
  process.env = {};
  try {
    return fn();
  } finally {
    process.env = saved;
  }
}

function resolveJob(job: ParsedJob, dir: string, specFile: string): JobSpec {
  const sources = job.sources.map((s): SourceSpec => {
    switch (s.kind) {
      case "folder":
        return { ...s, path: resolve(dir, s.path) };
      case "photos":
        return { ...s, paths: s.paths.map((p) => resolve(dir, p)) };
      case "http":
        return s.manifest === undefined || looksLikeUrl(s.manifest)
          ? s
          : { ...s, manifest: resolve(dir, s.manifest) };
    }
  });
  return { ...job, sources, specFile };
}

// ---------------------------------------------------------------------------
// Issues: messages, union branches, positions
// ---------------------------------------------------------------------------

type Path = (string | number)[];

interface RawIssue {
  path: Path;
  message: string;
  /** Point at the key of the last path element rather than its value. */
  atKey?: boolean;
}

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping (key: value)",
};

function describeValue(v: unknown): string {
  if (v === null) return "nothing (null)";
  if (Array.isArray(v)) return "a list";
  switch (typeof v) {
    case "object":
      return "a mapping";
    case "string":
      return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)})`;
    case "number":
      return Number.isNaN(v) ? "not a number (.nan)" : `a number (${v})`;
    default:
      return String(v);
  }
}

const errorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case "invalid_type":
      return iss.input === undefined
        ? "required field missing"
        : `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${describeValue(iss.input)}`;
    case "too_small":
      if (iss.origin === "array" || iss.origin === "string") {
        return Number(iss.minimum) <= 1
          ? "must not be empty"
          : `needs at least ${iss.minimum} items`;
      }
      return iss.inclusive ? `must be at least ${iss.minimum}` : `must be more than ${iss.minimum}`;
    case "too_big":
      if (iss.origin === "array" || iss.origin === "string") {
        return `must have at most ${iss.maximum} items`;
      }
      return iss.inclusive ? `must be at most ${iss.maximum}` : `must be less than ${iss.maximum}`;
    case "unrecognized_keys":
      return "unknown field";
    default:
      return undefined;
  }
};

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) {
    if (Array.isArray(v) && typeof seg === "number") v = v[seg];
    else if (isRecord(v)) v = v[String(seg)];
    else return undefined;
  }
  return v;
}

function isSourcePath(path: Path): boolean {
  const last = path[path.length - 1], prev = path[path.length - 2];
  return last === "source" || (typeof last === "number" && prev === "sources");
}

function allowedKeysAt(path: Path, data: unknown): string[] {
  const last = path[path.length - 1];
  if (isSourcePath(path)) {
    const v = valueAt(data, path);
    const kind = SOURCE_KINDS.find((k) => isRecord(v) && k in v);
    return kind ? SOURCE_KEYS[kind] : Object.values(SOURCE_KEYS).flat();
  }
  if (last === "http") return Object.keys(httpOptions.shape);
  if (last === "chunking") return ["avg", "min", "max"];
  if (last === "snapshots") return Object.keys(snapshotsSchema.in.shape);
  if (path.length === 0) return [...JOB_KEYS, "jobs"];
  return JOB_KEYS;
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(
        d[i - 1][j] + 1,
        d[i][j - 1] + 1,
        d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

function unknownField(path: Path, key: string, data: unknown): RawIssue {
  const best = allowedKeysAt(path, data)
    .map((k) => ({ k, d: distance(key.toLowerCase(), k) }))
    .filter(({ d }) => d <= (key.length >= 6 ? 2 : 1))
    .sort((a, b) => a.d - b.d)[0];
  return {
    path: [...path, key],
    message: best ? `unknown field (did you mean "${best.k}"?)` : "unknown field",
    atKey: true,
  };
}

function flattenIssues(
  issues: readonly z.core.$ZodIssue[],
  base: Path,
  data: unknown,
  out: RawIssue[],
): void {
  for (const iss of issues) {
    const path: Path = [...base, ...iss.path.map((p) => (typeof p === "symbol" ? String(p) : p))];
    if (iss.code === "unrecognized_keys") {
      for (const key of iss.keys) out.push(unknownField(path, key, data));
    } else if (iss.code === "invalid_union") {
      flattenUnion(iss, path, data, out);
    } else {
      out.push({ path, message: iss.message });
    }
  }
}

/** Reports the issues of the union branch the input meant, or the union's own message. */
function flattenUnion(
  iss: z.core.$ZodIssueInvalidUnion,
  path: Path,
  data: unknown,
  out: RawIssue[],
): void {
  const value = valueAt(data, path);
  if (isSourcePath(path) && isRecord(value)) {
    const kinds = SOURCE_KINDS.filter((k) => k in value);
    if (kinds.length === 1) {
      return flattenIssues(iss.errors[SOURCE_KINDS.indexOf(kinds[0])], path, data, out);
    }
    const known = new Set(Object.values(SOURCE_KEYS).flat());
    if (kinds.length === 0) {
      out.push({ path, message: "a source needs one of folder:, photos: or http:" });
      for (const key of Object.keys(value)) {
        if (!known.has(key)) out.push(unknownField(path, key, data));
      }
    } else {
      out.push({
        path: [...path, kinds[1]],
        message: `a source has exactly one of folder:, photos: or http: (this one also has ${
          kinds[0]
        }:)`,
        atKey: true,
      });
    }
    return;
  }
  const matching = iss.errors.filter((branch) =>
    !branch.some((i) => i.code === "invalid_type" && i.path.length === 0)
  );
  if (matching.length === 1) return flattenIssues(matching[0], path, data, out);
  out.push({ path, message: iss.message });
}

function formatPath(path: Path): string {
  let s = "";
  for (const seg of path) {
    if (typeof seg === "number") s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) s += s === "" ? seg : `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

/** The offset of the YAML node at `path`, or of its nearest existing parent. */
function offsetOf(doc: Document, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = path[i];
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) =>
        String(isScalar(p.key) ? p.key.value : p.key) === String(seg)
      );
      if (!pair) break;
      const keyStart = rangeStart(pair.key);
      const empty = pair.value === null ||
        (isScalar(pair.value) && pair.value.value === null &&
          pair.value.range?.[0] === pair.value.range?.[1]);
      if ((atKey && i === path.length - 1) || empty) {
        if (keyStart !== undefined) offset = keyStart;
        break;
      }
      next = pair.value;
    } else if (isSeq(node) && typeof seg === "number" && seg < node.items.length) {
      next = node.items[seg];
    } else break;
    const start = rangeStart(next);
    if (start === undefined) break;
    offset = start;
    node = next;
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? range[0] : undefined;
}

function locateIssues(raw: RawIssue[], doc: Document, lineCounter: LineCounter): SpecIssue[] {
  const seen = new Set<string>();
  const located: (SpecIssue & { offset: number })[] = [];
  for (const r of raw) {
    const path = formatPath(r.path);
    const key = `${path}\0${r.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const offset = offsetOf(doc, r.path, r.atKey ?? false);
    const pos = lineCounter.linePos(offset);
    located.push({ path, line: pos.line, column: pos.col, message: r.message, offset });
  }
  located.sort((a, b) => a.offset - b.offset);
  return located.map(({ offset: _, ...issue }) => issue);
}
