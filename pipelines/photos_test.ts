import assert from "node:assert/strict";
import exifr from "exifr";
import { type SourceEntry, SourceError, type SourceProblem } from "./source.ts";
import {
  cameraSegment,
  fileTimeCaptureDate,
  ORPHAN_SIDECAR,
  parseCaptureDate,
  photosSource,
  type PhotosSourceOptions,
  photoTargetPath,
  readPhotoMetadata,
} from "./photos.ts";

// ---------------------------------------------------------------- JPEG builder

/** What goes into a test JPEG. */
interface JpegSpec {
  /** EXIF Make/Model/DateTimeOriginal; no APP1 segment when undefined. */
  exif?: { make?: string; model?: string; dateTimeOriginal?: string };
  /** Bytes of APPn filler segments before the EXIF (to push it past the first read). */
  fillerBefore?: number;
  /** A byte that makes the image data differ between otherwise equal files. */
  salt?: number;
}

/** Little-endian byte writer. */
class Bytes {
  readonly out: number[] = [];
  u8(...v: number[]): this {
    this.out.push(...v);
    return this;
  }
  u16(v: number): this {
    return this.u8(v & 0xff, (v >> 8) & 0xff);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
}

/** A JPEG segment: marker, big-endian length (including itself), payload. */
function segment(marker: number, payload: number[]): number[] {
  const len = payload.length + 2;
  return [0xff, marker, len >> 8, len & 0xff, ...payload];
}

/** A little-endian TIFF block: IFD0 (Make, Model, ExifIFD pointer), ExifIFD (DateTimeOriginal). */
function tiffBlock(exif: NonNullable<JpegSpec["exif"]>): number[] {
  const ascii = (s: string) => [...new TextEncoder().encode(s), 0];
  const ifd0Tags: Array<[number, number[]]> = [];
  if (exif.make !== undefined) ifd0Tags.push([0x010f, ascii(exif.make)]);
  if (exif.model !== undefined) ifd0Tags.push([0x0110, ascii(exif.model)]);
  const exifTags: Array<[number, number[]]> = [];
  if (exif.dateTimeOriginal !== undefined) {
    exifTags.push([0x9003, ascii(exif.dateTimeOriginal)]);
  }
  const ifdSize = (n: number) => 2 + 12 * n + 4;
  const ifd0At = 8;
  const exifAt = ifd0At + ifdSize(ifd0Tags.length + 1);
  let dataAt = exifAt + ifdSize(exifTags.length);
  const data: number[] = [];
  const b = new Bytes().u8(0x49, 0x49).u16(42).u32(ifd0At);
  const writeIfd = (tags: Array<[number, number[]]>, exifPointer: boolean) => {
    b.u16(tags.length + (exifPointer ? 1 : 0));
    for (const [tag, value] of tags) {
      b.u16(tag).u16(2).u32(value.length); // ASCII
      if (value.length <= 4) {
        b.u8(...value, ...new Array(4 - value.length).fill(0));
      } else {
        b.u32(dataAt + data.length);
        data.push(...value);
      }
    }
    if (exifPointer) b.u16(0x8769).u16(4).u32(1).u32(exifAt); // LONG
    b.u32(0); // no next IFD
  };
  writeIfd(ifd0Tags, true);
  writeIfd(exifTags, false);
  dataAt = b.out.length;
  assert.deepStrictEqual(dataAt, exifAt + ifdSize(exifTags.length));
  return [...b.out, ...data];
}

/** A small baseline JPEG (8x8 grey) with an optional EXIF APP1 segment. */
function buildJpeg(spec: JpegSpec = {}): Uint8Array<ArrayBuffer> {
  const out: number[] = [0xff, 0xd8]; // SOI
  out.push(...segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])); // JFIF
  let filler = spec.fillerBefore ?? 0;
  while (filler > 0) {
    const n = Math.min(filler, 60000);
    out.push(...segment(0xe2, new Array(n).fill(0x20)));
    filler -= n;
  }
  if (spec.exif) {
    out.push(...segment(0xe1, [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiffBlock(spec.exif)]));
  }
  out.push(...segment(0xdb, [0, ...new Array(64).fill(1)])); // DQT, table 0
  out.push(...segment(0xc0, [8, 0, 8, 0, 8, 1, 1, 0x11, 0])); // SOF0 8x8, 1 component
  const huffman = (cls: number) => [cls, 1, ...new Array(15).fill(0), 0]; // one 1-bit code -> 0
  out.push(...segment(0xc4, huffman(0x00)), ...segment(0xc4, huffman(0x10))); // DHT DC, AC
  out.push(...segment(0xda, [1, 1, 0x00, 0, 63, 0])); // SOS
  out.push(0x00, spec.salt ?? 0); // entropy-coded data
  out.push(0xff, 0xd9); // EOI
  return new Uint8Array(out);
}

const CANON = { make: "Canon", model: "Canon EOS 5D", dateTimeOriginal: "2019:07:04 12:34:56" };

// ---------------------------------------------------------------- helpers

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pifs_photos_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function put(path: string, bytes: Uint8Array | string, mtime?: Date): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (typeof bytes === "string") await Deno.writeTextFile(path, bytes);
  else await Deno.writeFile(path, bytes);
  if (mtime) await Deno.utime(path, mtime, mtime);
}

async function collect(
  options: PhotosSourceOptions,
): Promise<{ entries: SourceEntry[]; problems: SourceProblem[] }> {
  const problems: SourceProblem[] = [];
  const entries: SourceEntry[] = [];
  for await (const entry of photosSource(options).list((p) => problems.push(p))) {
    entries.push(entry);
  }
  return { entries, problems };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function ymd(mtime: Date): string {
  const d = fileTimeCaptureDate(mtime.getTime());
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.year, 4)}/${p(d.month)}/${p(d.day)}`;
}

// ---------------------------------------------------------------- tests

Deno.test("photos: the test JPEG builder's bytes are parsed by exifr", async () => {
  const jpeg = buildJpeg({ exif: CANON });
  const out = await exifr.parse(jpeg, { reviveValues: false });
  assert.deepStrictEqual(
    [out.Make, out.Model, out.DateTimeOriginal],
    ["Canon", "Canon EOS 5D", "2019:07:04 12:34:56"],
  );
  assert.deepStrictEqual(await exifr.parse(buildJpeg(), { reviveValues: false }), undefined);
});

Deno.test("photos: photoTargetPath fills zero-padded fields, name and camera; rejects bad layouts", () => {
  const date = { year: 2019, month: 7, day: 4 };
  assert.deepStrictEqual(
    photoTargetPath("{yyyy}/{mm}/{dd}/{name}", { date, name: "a.jpg" }),
    "2019/07/04/a.jpg",
  );
  assert.deepStrictEqual(
    photoTargetPath("{camera}/{yyyy}-{mm}/{name}", {
      date: { year: 812, month: 12, day: 31 },
      name: "b.png",
    }),
    "unknown/0812-12/b.png",
  );
  assert.deepStrictEqual(
    photoTargetPath("{camera}/{name}", { date, name: "c.jpg", camera: "Pixel 7" }),
    "Pixel 7/c.jpg",
  );
  for (const layout of ["{yyyy}/{hh}/{name}", "/{yyyy}/{name}", "{yyyy}//{name}", "../{name}"]) {
    let err: unknown;
    try {
      photoTargetPath(layout, { date, name: "a.jpg" });
    } catch (e) {
      err = e;
    }
    assert(err instanceof SourceError, `${layout}: ${err}`);
  }
  assert.deepStrictEqual(cameraSegment("NIKON CORPORATION", "NIKON D750"), "NIKON D750");
  assert.deepStrictEqual(cameraSegment("Apple", "iPhone 12 Pro"), "Apple iPhone 12 Pro");
  assert.deepStrictEqual(cameraSegment(" Odd/Make ", "Mo:del\u0001 "), "Odd_Make Mo_del_");
  assert.deepStrictEqual(cameraSegment(undefined, undefined), "unknown");
  assert.deepStrictEqual(cameraSegment("..", ""), "unknown");
  assert.deepStrictEqual(parseCaptureDate("2019:07:04 12:34:56")?.hour, 12);
  assert.deepStrictEqual(parseCaptureDate("2018-01-02T03:04:05+02:00")?.hour, 3); // as written
  assert.deepStrictEqual(parseCaptureDate("0000:00:00 00:00:00"), undefined);
  assert.deepStrictEqual(parseCaptureDate("2019:02:30 00:00:00"), undefined);
});

Deno.test("photos: EXIF date and camera place the photo; the layout's {camera} is Make+Model", async () => {
  await withTempDir(async (root) => {
    const jpeg = buildJpeg({ exif: CANON });
    await put(`${root}/DCIM/IMG_1.jpg`, jpeg, new Date(2001, 0, 1));
    await put(
      `${root}/DCIM/nikon.JPG`,
      buildJpeg({
        exif: {
          make: "NIKON CORPORATION",
          model: "NIKON D750",
          dateTimeOriginal: "2020:12:31 23:59:59",
        },
      }),
    );
    await put(`${root}/DCIM/notes.txt`, "ignored silently");

    const { entries, problems } = await collect({ roots: [root] });
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "2019/07/04/IMG_1.jpg",
      "2020/12/31/nikon.JPG",
    ]);
    const info = await Deno.stat(`${root}/DCIM/IMG_1.jpg`);
    const e = entries[0];
    assert.deepStrictEqual([e.size, e.mtimeMs, e.mode, e.key], [
      jpeg.length,
      info.mtime!.getTime(),
      info.mode! & 0o7777,
      `${info.dev}:${info.ino}`,
    ]);
    assert.deepStrictEqual(await readAll(await e.open()), jpeg);
    assert.deepStrictEqual(await readAll(await e.open(10)), jpeg.subarray(10));

    const byCamera = await collect({ roots: [root], layout: "{camera}/{yyyy}-{mm}/{name}" });
    assert.deepStrictEqual(byCamera.entries.map((e) => e.path), [
      "Canon EOS 5D/2019-07/IMG_1.jpg",
      "NIKON D750/2020-12/nikon.JPG",
    ]);
  });
});

Deno.test("photos: EXIF beyond the first 64 KiB is found in the first 256 KiB", async () => {
  await withTempDir(async (root) => {
    await put(`${root}/far.jpg`, buildJpeg({ exif: CANON, fillerBefore: 100_000 }));
    // The first 64 KiB alone do not give the date.
    const head = (await Deno.readFile(`${root}/far.jpg`)).subarray(0, 64 * 1024);
    const first = await exifr.parse(head, { reviveValues: false }).catch(() => undefined);
    assert.deepStrictEqual(first?.DateTimeOriginal, undefined);
    const meta = await readPhotoMetadata(`${root}/far.jpg`);
    assert.deepStrictEqual(meta.date, {
      year: 2019,
      month: 7,
      day: 4,
      hour: 12,
      minute: 34,
      second: 56,
    });
    assert.deepStrictEqual([meta.make, meta.model], ["Canon", "Canon EOS 5D"]);
  });
});

Deno.test("photos: without EXIF (photo or video) the mtime dates the file and {camera} is unknown", async () => {
  await withTempDir(async (root) => {
    const mtime = new Date(2015, 2, 9, 10, 20, 30);
    await put(`${root}/plain.jpg`, buildJpeg(), mtime);
    // An MP4 head (ftyp isom) followed by 1 MiB: not parsed, placed by mtime.
    const video = new Uint8Array(1 << 20);
    video.set([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d, 0, 0, 2, 0]);
    const videoTime = new Date(2016, 10, 20, 8, 0, 0);
    await put(`${root}/clips/clip.MP4`, video, videoTime);
    await put(`${root}/clips/old.mov`, "not really a movie", videoTime);

    const { entries, problems } = await collect({
      roots: [root],
      layout: "{yyyy}/{mm}/{dd}/{camera}/{name}",
    });
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      `${ymd(videoTime)}/unknown/clip.MP4`,
      `${ymd(videoTime)}/unknown/old.mov`,
      `${ymd(mtime)}/unknown/plain.jpg`,
    ]);
    assert.deepStrictEqual(entries[0].size, video.length);
    assert.deepStrictEqual(await readPhotoMetadata(`${root}/clips/clip.MP4`), {});
  });
});

Deno.test("photos: sidecars follow their photo; an orphan sidecar is reported", async () => {
  await withTempDir(async (root) => {
    await put(`${root}/a/IMG_1.jpg`, buildJpeg({ exif: CANON }));
    await put(`${root}/a/IMG_1.xmp`, "<xmp/>");
    await put(`${root}/a/IMG_1.jpg.json`, "{}");
    await put(`${root}/a/IMG_9.XMP`, "<orphan/>");
    const mtime = new Date(2012, 5, 6, 7, 8, 9);
    await put(
      `${root}/b/scan.png`,
      new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      mtime,
    );
    await put(`${root}/b/scan.aae`, "<plist/>");

    const { entries, problems } = await collect({ roots: [root] });
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "2019/07/04/IMG_1.jpg",
      "2019/07/04/IMG_1.jpg.json",
      "2019/07/04/IMG_1.xmp",
      `${ymd(mtime)}/scan.png`,
      `${ymd(mtime)}/scan.aae`,
    ]);
    assert.deepStrictEqual(problems, [{
      path: `${root}/a/IMG_9.XMP`,
      message: ORPHAN_SIDECAR,
      skipped: true,
    }]);
    const xmp = entries.find((e) => e.path.endsWith(".xmp"))!;
    assert.deepStrictEqual(new TextDecoder().decode(await readAll(await xmp.open())), "<xmp/>");
  });
});

Deno.test("photos: an exact duplicate in a second root is collapsed and reported; its sidecar moves", async () => {
  await withTempDir(async (dir) => {
    const [r1, r2] = [`${dir}/one`, `${dir}/two`];
    const jpeg = buildJpeg({ exif: CANON });
    await put(`${r1}/a/IMG_1.jpg`, jpeg);
    await put(`${r2}/IMG_1 copy.jpg`, jpeg);
    await put(`${r2}/IMG_1 copy.xmp`, "<from-dup/>");
    await put(`${r2}/IMG_1 copy.jpg.json`, "{}");
    await put(`${r1}/a/IMG_1.jpg.json`, '{"own":1}');
    // Same size, other content: not a duplicate.
    await put(`${r2}/other.jpg`, buildJpeg({ exif: CANON, salt: 1 }));

    const { entries, problems } = await collect({ roots: [r1, r2] });
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "2019/07/04/IMG_1.jpg",
      "2019/07/04/IMG_1.jpg.json",
      "2019/07/04/IMG_1.xmp", // the duplicate's, named after the kept photo
      "2019/07/04/other.jpg",
    ]);
    assert.deepStrictEqual(problems.map((p) => [p.path, p.message.replace(dir, "DIR")]), [
      [`${r2}/IMG_1 copy.jpg`, `duplicate of DIR/one/a/IMG_1.jpg, skipped`],
      [
        `${r2}/IMG_1 copy.jpg.json`,
        `sidecar of duplicate DIR/two/IMG_1 copy.jpg skipped: ${r1}/a/IMG_1.jpg has its own .json`,
      ],
    ]);
    const hex = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", jpeg)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    assert.deepStrictEqual(entries[0].sha256, hex);
    assert.deepStrictEqual(
      new TextDecoder().decode(await readAll(await entries[2].open())),
      "<from-dup/>",
    );

    // With dedupe off both are kept.
    const all = await collect({ roots: [r1, r2], dedupe: false });
    assert.deepStrictEqual(all.problems, []);
    assert.deepStrictEqual(all.entries.map((e) => e.path), [
      "2019/07/04/IMG_1.jpg",
      "2019/07/04/IMG_1.jpg.json",
      "2019/07/04/IMG_1 copy.jpg",
      "2019/07/04/IMG_1 copy.jpg.json",
      "2019/07/04/IMG_1 copy.xmp",
      "2019/07/04/other.jpg",
    ]);
  });
});

Deno.test("photos: different photos with the same name and date get distinct paths, in root then path order", async () => {
  await withTempDir(async (dir) => {
    const [r1, r2] = [`${dir}/r1`, `${dir}/r2`];
    await put(`${r2}/IMG_1.jpg`, buildJpeg({ exif: { ...CANON, model: "Canon EOS R" } }));
    await put(`${r1}/z/IMG_1.jpg`, buildJpeg({ exif: CANON, salt: 2 }));
    await put(`${r1}/z/IMG_1.xmp`, "<z/>");
    await put(`${r1}/b/img_1.JPG`, buildJpeg({ exif: CANON, salt: 3 }));
    await put(`${r1}/b/img_1.xmp`, "<b/>");

    const { entries, problems } = await collect({ roots: [r1, r2] });
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "2019/07/04/img_1.JPG",
      "2019/07/04/img_1.xmp",
      "2019/07/04/IMG_1 (2).jpg",
      "2019/07/04/IMG_1 (2).xmp",
      "2019/07/04/IMG_1 (3).jpg",
    ]);
    const moved = entries[3];
    assert.deepStrictEqual(new TextDecoder().decode(await readAll(await moved.open())), "<z/>");

    // The same run again gives the same paths.
    const again = await collect({ roots: [r1, r2] });
    assert.deepStrictEqual(again.entries.map((e) => e.path), entries.map((e) => e.path));
  });
});

Deno.test("photos: a missing root is a SourceError; bad options are rejected", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(() => collect({ roots: [dir, `${dir}/missing`] }), (err) => {
      assert(err instanceof SourceError, String(err));
      assert(err.message.includes(`${dir}/missing`), err.message);
      return true;
    });
    for (
      const options of [{ roots: [] }, { roots: ["rel"] }, { roots: [dir], layout: "{yyyy}/{mm}" }]
    ) {
      let e: unknown;
      try {
        photosSource(options);
      } catch (x) {
        e = x;
      }
      assert(e instanceof SourceError, `${JSON.stringify(options)}: ${e}`);
    }
  });
});
