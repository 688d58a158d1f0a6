/**
 * The photos source: media files (photos, raw files and videos) under one or
 * more local roots, placed by capture date in a layout such as
 * `{yyyy}/{mm}/{dd}/{name}`, with their sidecars (`.xmp`, `.aae`, `.json`) and
 * with exact duplicates collapsed.
 *
 * The capture date comes from EXIF (or XMP) `DateTimeOriginal`, then
 * `CreateDate`, then `ModifyDate`, read by `exifr` from the head of the file
 * (64 KiB, then 256 KiB when that was not enough); the file's mtime is used
 * when there is none. EXIF dates are the camera's wall clock and are used as
 * written (no time-zone shifting); the mtime fallback is the date in UTC, so
 * the same library is filed the same way on every host, whatever its `TZ`.
 * Videos are not parsed (exifr 7 has no QuickTime/MP4 parser): they are placed
 * by mtime. Each file dated by its mtime carries a {@linkcode SourceEntry.note}
 * saying so, which the run's summary lists.
 *
 * Problems are reported with `path` = the absolute source path of the file
 * (its target path is not known, or not used, when it is skipped).
 *
 * @module
 */

import exifr from "exifr";
import { sha256Stream } from "../ids.ts";
import { type Source, type SourceEntry, SourceError, type SourceProblem } from "./source.ts";
import {
  isAbsolutePath,
  joinLocalPath,
  type LocalFile,
  localFileEntry,
  READ_PIECE,
  walkLocalFiles,
} from "./folder.ts";

/** The layout used when none is given. */
export const DEFAULT_PHOTO_LAYOUT = "{yyyy}/{mm}/{dd}/{name}";

/** Extensions (lower case, without the dot) of the photo files the source takes. */
export const PHOTO_EXTENSIONS: ReadonlySet<string> = new Set([
  "jpg",
  "jpeg",
  "heic",
  "heif",
  "png",
  "gif",
  "webp",
  "tif",
  "tiff",
  "dng",
  "cr2",
  "cr3",
  "nef",
  "arw",
  "raf",
  "orf",
  "rw2",
]);

/** Extensions (lower case, without the dot) of the video files the source takes. */
export const VIDEO_EXTENSIONS: ReadonlySet<string> = new Set([
  "mov",
  "mp4",
  "m4v",
  "avi",
  "3gp",
  "mts",
]);

/** Extensions (lower case, without the dot) of sidecar files that go with a media file. */
export const SIDECAR_EXTENSIONS: ReadonlySet<string> = new Set(["xmp", "aae", "json"]);

/** The message of a sidecar that has no media file next to it. */
export const ORPHAN_SIDECAR = "sidecar without a photo, skipped";

/** A capture time as the camera's wall-clock fields (month and day from 1). */
export interface CaptureDate {
  /** Four-digit year. */
  year: number;
  /** Month, 1 to 12. */
  month: number;
  /** Day of the month, 1 to 31. */
  day: number;
  /** Hour, 0 to 23. */
  hour: number;
  /** Minute, 0 to 59. */
  minute: number;
  /** Second, 0 to 59. */
  second: number;
}

/** What {@linkcode photoTargetPath} fills the layout's placeholders with. */
export interface PhotoPathInfo {
  /** Capture date (`{yyyy}`, `{mm}`, `{dd}`). */
  date: Pick<CaptureDate, "year" | "month" | "day">;
  /** The file's base name (`{name}`). */
  name: string;
  /** The camera as a path segment (`{camera}`); see {@linkcode cameraSegment}. Default "unknown". */
  camera?: string;
}

/** The metadata the source uses to place a media file. */
export interface PhotoMetadata {
  /** Capture date from the file's metadata, when it has one. */
  date?: CaptureDate;
  /** EXIF `Make`, when present. */
  make?: string;
  /** EXIF `Model`, when present. */
  model?: string;
}

/** Options of {@linkcode PhotosSource}. */
export interface PhotosSourceOptions {
  /** Directories to take media from, as absolute paths; earlier roots win duplicates. */
  roots: string[];
  /** Target layout with `{yyyy}` `{mm}` `{dd}` `{name}` `{camera}`; default {@linkcode DEFAULT_PHOTO_LAYOUT}. */
  layout?: string;
  /** Collapse files with identical content to the first one (default true). */
  dedupe?: boolean;
}

const PLACEHOLDER = /\{([^{}]*)\}/g;
const FIRST_HEAD = 64 * 1024;
const FULL_HEAD = 256 * 1024;
const CONCURRENCY = 8;

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Lower-case extension of `name` without the dot, or "" when it has none. */
function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/** `name` without its last extension. */
function stemOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

/**
 * Fills `layout` for one file: `{yyyy}` `{mm}` `{dd}` (zero-padded), `{name}`
 * and `{camera}`. Throws a {@linkcode SourceError} for an unknown placeholder
 * or a result that is not a relative path of non-empty segments without `.`
 * or `..`.
 */
export function photoTargetPath(layout: string, info: PhotoPathInfo): string {
  const path = layout.replace(PLACEHOLDER, (whole, name: string) => {
    switch (name) {
      case "yyyy":
        return pad(info.date.year, 4);
      case "mm":
        return pad(info.date.month, 2);
      case "dd":
        return pad(info.date.day, 2);
      case "name":
        return info.name;
      case "camera":
        return info.camera ?? "unknown";
      default:
        throw new SourceError(`layout ${JSON.stringify(layout)}: unknown placeholder ${whole}`);
    }
  });
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === ".." || segment.includes("\0")) {
      throw new SourceError(
        `layout ${JSON.stringify(layout)} gives ${JSON.stringify(path)}, not a relative path`,
      );
    }
  }
  return path;
}

/**
 * The camera as one path segment: EXIF Make and Model (the Make left out when
 * the Model already starts with its first word), with separators and control
 * and reserved characters replaced by `_` and spaces collapsed; "unknown"
 * when neither is present or nothing is left.
 */
export function cameraSegment(make?: string, model?: string): string {
  const clean = (s: string | undefined) => (s ?? "").replace(/\0.*$/s, "").trim();
  const mk = clean(make);
  const md = clean(model);
  const firstWord = mk.split(/\s+/)[0].toLowerCase();
  const joined = mk === ""
    ? md
    : md === ""
    ? mk
    : md.toLowerCase().startsWith(firstWord)
    ? md
    : `${mk} ${md}`;
  // deno-lint-ignore no-control-regex
  const safe = joined.replace(/[\u0000-\u001f\u007f/\\:*?"<>|]/g, "_").replace(/\s+/g, " ")
    .replace(/^[\s.]+|[\s.]+$/g, "");
  return safe === "" ? "unknown" : safe;
}

/** Parses an EXIF (`2019:07:04 12:34:56`) or XMP (`2019-07-04T12:34:56+02:00`) date as written. */
export function parseCaptureDate(value: unknown): CaptureDate | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d{4})[:-](\d{2})[:-](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?/.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map((s) => Number(s ?? 0));
  if (year < 1800 || month < 1 || month > 12 || day < 1) return undefined;
  if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  return { year, month, day, hour, minute, second };
}

/**
 * The capture date of a file with no date in its metadata: its mtime, in
 * UTC (not the host's time zone: the same files are filed the same way on
 * any host).
 *
 * @example
 * ```ts
 * import { fileTimeCaptureDate } from "./photos.ts";
 * const d = fileTimeCaptureDate(Date.UTC(2024, 4, 2, 23, 30));
 * if (d.year !== 2024 || d.month !== 5 || d.day !== 2 || d.hour !== 23) throw new Error();
 * ```
 */
export function fileTimeCaptureDate(ms: number): CaptureDate {
  const d = new Date(ms);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}

/** The note of a photo placed by its file time. */
export const DATED_BY_FILE_TIME = "dated by its file time (UTC): no capture date in its metadata";

async function readHead(absPath: string, length: number): Promise<Uint8Array> {
  const file = await Deno.open(absPath, { read: true });
  try {
    const buf = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return buf.subarray(0, filled);
  } finally {
    file.close();
  }
}

const EXIFR_OPTIONS = {
  ifd0: { pick: ["Make", "Model", "ModifyDate"] },
  exif: { pick: ["DateTimeOriginal", "CreateDate"] },
  xmp: true,
  gps: false,
  ifd1: false,
  interop: false,
  makerNote: false,
  userComment: false,
  icc: false,
  iptc: false,
  jfif: false,
  ihdr: false,
  mergeOutput: false,
  reviveValues: false,
  translateValues: false,
  silentErrors: true,
};

type Blocks = Record<string, Record<string, unknown> | undefined>;

function metadataOf(out: Blocks | undefined): PhotoMetadata {
  const meta: PhotoMetadata = {};
  if (!out) return meta;
  const blocks = [out.exif, out.ifd0, out.xmp, ...Object.values(out)]
    .filter((b): b is Record<string, unknown> => typeof b === "object" && b !== null);
  for (const tag of ["DateTimeOriginal", "CreateDate", "ModifyDate"]) {
    for (const block of blocks) {
      meta.date ??= parseCaptureDate(block[tag]);
    }
    if (meta.date) break;
  }
  if (typeof out.ifd0?.Make === "string") meta.make = out.ifd0.Make;
  if (typeof out.ifd0?.Model === "string") meta.model = out.ifd0.Model;
  return meta;
}

async function parseHead(head: Uint8Array): Promise<Blocks | undefined> {
  if (head.length < 4) return undefined;
  try {
    return await exifr.parse(head, EXIFR_OPTIONS) as Blocks | undefined;
  } catch {
    return undefined; // unknown format or unreadable metadata
  }
}

/**
 * Reads the capture date and camera of a media file with `exifr`, from its
 * first 64 KiB, and from its first 256 KiB when that gave no date and the
 * metadata looked cut off or absent. Never reads more than that; videos are
 * not read at all. Resolves to `{}` when there is nothing usable.
 */
export async function readPhotoMetadata(absPath: string): Promise<PhotoMetadata> {
  const name = absPath.slice(Math.max(absPath.lastIndexOf("/"), absPath.lastIndexOf("\\")) + 1);
  if (VIDEO_EXTENSIONS.has(extensionOf(name))) return {};
  const head = await readHead(absPath, FIRST_HEAD);
  let out = await parseHead(head);
  let meta = metadataOf(out);
  const cutOff = out === undefined || out.errors !== undefined || out.ifd0 === undefined;
  if (!meta.date && cutOff && head.length === FIRST_HEAD) {
    out = await parseHead(await readHead(absPath, FULL_HEAD));
    meta = metadataOf(out);
  }
  return meta;
}

/** SHA-256 (hex) of a whole local file, read in pieces. */
async function hashFile(absPath: string, signal?: AbortSignal): Promise<string> {
  const file = await Deno.open(absPath, { read: true });
  try {
    const h = sha256Stream();
    const buf = new Uint8Array(READ_PIECE);
    for (;;) {
      signal?.throwIfAborted();
      const n = await file.read(buf);
      if (n === null) break;
      h.update(buf.subarray(0, n));
    }
    return h.hex();
  } finally {
    file.close();
  }
}

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

interface Sidecar {
  file: LocalFile;
  /** Absolute source path. */
  source: string;
  /** Lower-case extension: xmp, aae or json. */
  kind: string;
  /** Whether it was named after the photo's full name (`IMG_1.jpg.json`) or its stem. */
  afterFullName: boolean;
  /** The sidecar's name after the part that names its photo (e.g. `.xmp`). */
  suffix: string;
  /** Came from a collapsed duplicate: always named after the kept photo. */
  inherited: boolean;
}

interface Media {
  file: LocalFile;
  source: string;
  name: string;
  sidecars: Sidecar[];
  sha256?: string;
}

/**
 * Media files from local roots, placed by capture date, with their sidecars;
 * exact duplicates collapsed to the first (by root order, then path).
 */
export class PhotosSource implements Source {
  /** Always `"photos"`. */
  readonly kind = "photos";
  /** `photos ROOT, ROOT…`. */
  readonly description: string;
  /** The roots, in priority order. */
  readonly roots: readonly string[];
  /** The target layout. */
  readonly layout: string;
  /** Whether exact duplicates are collapsed. */
  readonly dedupe: boolean;

  /** Checks the roots (absolute, at least one) and the layout (known placeholders, `{name}` in the last segment). */
  constructor(options: PhotosSourceOptions) {
    if (options.roots.length === 0) throw new SourceError("photos: no roots given");
    for (const root of options.roots) {
      if (!isAbsolutePath(root)) throw new SourceError(`folder ${root} is not an absolute path`);
    }
    const layout = options.layout ?? DEFAULT_PHOTO_LAYOUT;
    const last = layout.slice(layout.lastIndexOf("/") + 1);
    if (!last.includes("{name}")) {
      throw new SourceError(
        `layout ${JSON.stringify(layout)} must have {name} in its last segment`,
      );
    }
    photoTargetPath(layout, { date: { year: 2000, month: 1, day: 1 }, name: "x.jpg" });
    this.roots = [...options.roots];
    this.layout = layout;
    this.dedupe = options.dedupe ?? true;
    this.description = `photos ${options.roots.join(", ")}`;
  }

  /**
   * Lists the media files and their sidecars: each kept media file followed
   * by its sidecars, in root order then path order. Reports orphan sidecars
   * ("sidecar without a photo, skipped") and collapsed duplicates
   * ("duplicate of SOURCE, skipped", with `duplicateOf` = SOURCE: not
   * problems), each with `path` = the skipped file's absolute source path. Throws a {@linkcode SourceError} when a root is
   * missing or not a directory.
   */
  async *list(
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): AsyncGenerator<SourceEntry> {
    const medias = await this.#scan(report, signal);
    const kept = this.dedupe ? await this.#dedupe(medias, report, signal) : medias;
    const used = new Set<string>();
    // Metadata is read ahead (a few files at a time) and consumed in order.
    const pending: Promise<PhotoMetadata>[] = [];
    let next = 0;
    const readAhead = () => {
      while (pending.length < CONCURRENCY && next < kept.length) {
        pending.push(readPhotoMetadata(kept[next++].file.absPath).catch(() => ({})));
      }
    };
    try {
      for (const media of kept) {
        signal?.throwIfAborted();
        readAhead();
        const meta = await pending.shift()!;
        for (const entry of this.#place(media, meta, used)) yield entry;
      }
    } finally {
      await Promise.allSettled(pending);
    }
  }

  /** Walks the roots; returns the media files with their own sidecars attached. */
  async #scan(
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): Promise<Media[]> {
    const medias: Media[] = [];
    const accept = (name: string) => {
      const ext = extensionOf(name);
      return PHOTO_EXTENSIONS.has(ext) || VIDEO_EXTENSIONS.has(ext) || SIDECAR_EXTENSIONS.has(ext);
    };
    for (const root of this.roots) {
      // Per directory: its media files and sidecars, in name order.
      const dirs = new Map<string, { medias: Media[]; sidecars: LocalFile[] }>();
      const rootReport = (p: SourceProblem) =>
        report({ path: joinLocalPath(root, p.path), message: p.message });
      for await (const file of walkLocalFiles(root, { accept, signal }, rootReport)) {
        const slash = file.relPath.lastIndexOf("/");
        const dir = file.relPath.slice(0, Math.max(slash, 0));
        const name = file.relPath.slice(slash + 1);
        let group = dirs.get(dir);
        if (!group) dirs.set(dir, group = { medias: [], sidecars: [] });
        if (SIDECAR_EXTENSIONS.has(extensionOf(name))) {
          group.sidecars.push(file);
        } else {
          const media: Media = { file, source: file.absPath, name, sidecars: [] };
          group.medias.push(media);
          medias.push(media);
        }
      }
      for (const group of dirs.values()) {
        for (const file of group.sidecars) {
          const name = file.relPath.slice(file.relPath.lastIndexOf("/") + 1);
          const sidecar = attachSidecar(file, name, group.medias);
          if (!sidecar) report({ path: file.absPath, message: ORPHAN_SIDECAR, skipped: true });
        }
      }
    }
    return medias;
  }

  /** Collapses media files with identical content; returns the kept ones in order. */
  async #dedupe(
    medias: Media[],
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): Promise<Media[]> {
    const bySize = new Map<number, Media[]>();
    for (const m of medias) {
      const same = bySize.get(m.file.size);
      if (same) same.push(m);
      else bySize.set(m.file.size, [m]);
    }
    const toHash = [...bySize.values()].filter((g) => g.length > 1).flat();
    await mapLimit(toHash, 4, async (m) => {
      try {
        m.sha256 = await hashFile(m.file.absPath, signal);
      } catch {
        // Kept as a file of its own: reading it will report the problem.
        signal?.throwIfAborted();
      }
    });
    const firstByContent = new Map<string, Media>();
    const kept: Media[] = [];
    for (const m of medias) {
      const id = m.sha256 === undefined ? undefined : `${m.file.size}:${m.sha256}`;
      const first = id === undefined ? undefined : firstByContent.get(id);
      if (id === undefined || first === undefined) {
        if (id !== undefined) firstByContent.set(id, m);
        kept.push(m);
        continue;
      }
      report({
        path: m.source,
        message: `duplicate of ${first.source}, skipped`,
        duplicateOf: first.source,
      });
      for (const sidecar of m.sidecars) {
        const own = first.sidecars.find((s) => s.kind === sidecar.kind);
        if (own && await sameContent(own.file, sidecar.file)) {
          report({
            path: sidecar.source,
            message: `sidecar of duplicate ${m.source}: same as ${own.source}, skipped`,
            duplicateOf: own.source,
          });
        } else if (own) {
          report({
            path: sidecar.source,
            message:
              `sidecar of duplicate ${m.source} skipped: ${first.source} has its own .${sidecar.kind}`,
            skipped: true,
          });
        } else {
          first.sidecars.push({ ...sidecar, inherited: true });
        }
      }
    }
    return kept;
  }

  /** Target paths for a media file and its sidecars, free in `used`; marks them used. */
  #place(media: Media, meta: PhotoMetadata, used: Set<string>): SourceEntry[] {
    const date = meta.date ?? fileTimeCaptureDate(media.file.mtimeMs);
    const camera = cameraSegment(meta.make, meta.model);
    const dot = media.name.lastIndexOf(".");
    const stem = media.name.slice(0, dot);
    const ext = media.name.slice(dot);
    for (let n = 1;; n++) {
      const name = n === 1 ? media.name : `${stem} (${n})${ext}`;
      const path = photoTargetPath(this.layout, { date, name, camera });
      const dir = path.slice(0, path.lastIndexOf("/") + 1);
      const sidecarPaths = media.sidecars.map((s) => {
        if (n === 1 && !s.inherited) {
          return dir + s.file.relPath.slice(s.file.relPath.lastIndexOf("/") + 1);
        }
        return dir + (s.afterFullName ? name : stemOf(name)) + s.suffix;
      });
      const all = [path, ...sidecarPaths].map((p) => p.toLowerCase());
      if (all.some((p) => used.has(p)) || new Set(all).size !== all.length) continue;
      for (const p of all) used.add(p);
      const entry = localFileEntry(media.file, path, media.sha256);
      if (!meta.date) entry.note = DATED_BY_FILE_TIME;
      return [entry, ...media.sidecars.map((s, i) => localFileEntry(s.file, sidecarPaths[i]))];
    }
  }
}

/**
 * Attaches a sidecar to the media file it names among `medias` (same
 * directory, name order): `IMG_1.jpg.json` names `IMG_1.jpg`, `IMG_1.xmp`
 * names `IMG_1.*`; exact names first, then ignoring case. Returns the sidecar,
 * or undefined when it names no media file.
 */
function attachSidecar(file: LocalFile, name: string, medias: Media[]): Sidecar | undefined {
  const stem = stemOf(name);
  const lower = stem.toLowerCase();
  const tries: Array<[boolean, (m: Media) => boolean]> = [
    [true, (m) => m.name === stem],
    [false, (m) => stemOf(m.name) === stem],
    [true, (m) => m.name.toLowerCase() === lower],
    [false, (m) => stemOf(m.name).toLowerCase() === lower],
  ];
  for (const [afterFullName, test] of tries) {
    const media = medias.find(test);
    if (!media) continue;
    const sidecar: Sidecar = {
      file,
      source: file.absPath,
      kind: extensionOf(name),
      afterFullName,
      suffix: name.slice(stem.length),
      inherited: false,
    };
    media.sidecars.push(sidecar);
    return sidecar;
  }
  return undefined;
}

/** Whether two (small: sidecar) files have the same bytes; false when either cannot be read. */
async function sameContent(a: LocalFile, b: LocalFile): Promise<boolean> {
  if (a.size !== b.size || a.size > 16 * 1024 * 1024) return false;
  try {
    const [x, y] = await Promise.all([Deno.readFile(a.absPath), Deno.readFile(b.absPath)]);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  } catch {
    return false;
  }
}

/** Creates a {@linkcode PhotosSource}. */
export function photosSource(options: PhotosSourceOptions): PhotosSource {
  return new PhotosSource(options);
}
