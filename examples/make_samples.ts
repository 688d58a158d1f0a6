/**
 * Makes the sample data the examples sync: a small photo library and a small
 * HTTP dataset, the same bytes on every run (everything comes from seeded
 * generators and fixed dates).
 *
 * ```sh
 * deno run --allow-write --allow-read examples/make_samples.ts [DIR]
 * ```
 *
 * DIR defaults to this `examples/` folder, where `photos.yaml` and
 * `dataset.yaml` expect the samples. It creates:
 *
 * - `DIR/sample-photos/`: JPEGs with EXIF `DateTimeOriginal`, `Make` and
 *   `Model` taken on three different days, one exact duplicate in
 *   `backup/`, an `.xmp` sidecar next to its photo, and a PNG without EXIF
 *   (placed by its mtime).
 * - `DIR/sample-dataset/`: three files of pseudo-random bytes and
 *   `manifest.json` naming them (relative URLs, sizes and SHA-256), as
 *   `examples/serve_dataset.ts` serves it.
 *
 * Both folders are replaced if they exist.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** A photo of the sample library. */
interface SamplePhoto {
  /** Path under `sample-photos/`. */
  path: string;
  /** EXIF DateTimeOriginal, as a camera writes it. */
  taken: string;
  /** EXIF Make. */
  make: string;
  /** EXIF Model. */
  model: string;
}

/** The sample library's JPEGs (the duplicate and the PNG are added after them). */
export const SAMPLE_PHOTOS: readonly SamplePhoto[] = [
  {
    path: "2023-summer/IMG_0001.jpg",
    taken: "2023:07:14 10:21:05",
    make: "Canon",
    model: "Canon EOS R6",
  },
  {
    path: "2023-summer/IMG_0002.jpg",
    taken: "2023:07:14 18:45:12",
    make: "Canon",
    model: "Canon EOS R6",
  },
  {
    path: "2024-hike/DSC_0101.jpg",
    taken: "2024:05:02 09:03:44",
    make: "NIKON CORPORATION",
    model: "NIKON Z 6",
  },
  {
    path: "2024-hike/DSC_0102.jpg",
    taken: "2024:05:02 11:30:00",
    make: "NIKON CORPORATION",
    model: "NIKON Z 6",
  },
  {
    path: "phone/PXL_20241224_171500.jpg",
    taken: "2024:12:24 17:15:00",
    make: "Google",
    model: "Pixel 8",
  },
];

/** The exact duplicate (of the first photo), in a subfolder. */
export const SAMPLE_DUPLICATE = "backup/IMG_0001.jpg";
/** The XMP sidecar, next to the second photo. */
export const SAMPLE_SIDECAR = "2023-summer/IMG_0002.xmp";
/** The PNG without EXIF, placed by its mtime. */
export const SAMPLE_PNG = "screenshots/Screenshot_2025-01-10.png";
/** The PNG's mtime: noon UTC, so its local day is the same in most time zones. */
export const SAMPLE_PNG_MTIME = new Date("2025-01-10T12:00:00Z");

/** The dataset's files: name and size. */
export const SAMPLE_DATASET: readonly { name: string; size: number }[] = [
  { name: "train-00000.bin", size: 200_000 },
  { name: "train-00001.bin", size: 150_000 },
  { name: "valid-00000.bin", size: 120_000 },
];

// ------------------------------------------------------------------ generators

/** Deterministic pseudo-random bytes (mulberry32, seeded). */
export function seededBytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    t = (t ^ (t >>> 14)) >>> 0;
    for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = (t >>> (8 * k)) & 0xff;
  }
  return out;
}

function ascii(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

/** A JPEG segment: marker, big-endian length (including itself), payload. */
function segment(marker: number, payload: number[]): number[] {
  const len = payload.length + 2;
  return [0xff, marker, len >> 8, len & 0xff, ...payload];
}

/** A little-endian TIFF block: IFD0 (Make, Model, ExifIFD pointer), ExifIFD (DateTimeOriginal). */
function exifTiff(make: string, model: string, taken: string): number[] {
  const out: number[] = [];
  const u16 = (v: number) => out.push(v & 0xff, (v >> 8) & 0xff);
  const u32 = (v: number) => (u16(v & 0xffff), u16(v >>> 16));
  const z = (s: string) => [...ascii(s), 0];
  const ifd0: [number, number[]][] = [[0x010f, z(make)], [0x0110, z(model)]];
  const exif: [number, number[]][] = [[0x9003, z(taken)]];
  const ifdSize = (n: number) => 2 + 12 * n + 4;
  const ifd0At = 8;
  const exifAt = ifd0At + ifdSize(ifd0.length + 1);
  const dataAt = exifAt + ifdSize(exif.length);
  const data: number[] = [];
  out.push(0x49, 0x49); // "II": little-endian
  u16(42);
  u32(ifd0At);
  const writeIfd = (tags: [number, number[]][], exifPointer: boolean) => {
    u16(tags.length + (exifPointer ? 1 : 0));
    for (const [tag, value] of tags) {
      u16(tag);
      u16(2); // ASCII
      u32(value.length);
      if (value.length <= 4) out.push(...value, ...new Array(4 - value.length).fill(0));
      else {
        u32(dataAt + data.length);
        data.push(...value);
      }
    }
    if (exifPointer) (u16(0x8769), u16(4), u32(1), u32(exifAt)); // ExifIFD pointer, LONG
    u32(0); // no next IFD
  };
  writeIfd(ifd0, true);
  writeIfd(exif, false);
  return [...out, ...data];
}

/** A small baseline JPEG (one 8×8 grey block) with an EXIF APP1 segment and a comment. */
function jpeg(photo: SamplePhoto): Uint8Array<ArrayBuffer> {
  const out: number[] = [0xff, 0xd8]; // SOI
  out.push(...segment(0xe0, [...ascii("JFIF"), 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])); // APP0 JFIF
  out.push(
    ...segment(0xe1, [...ascii("Exif"), 0, 0, ...exifTiff(photo.make, photo.model, photo.taken)]),
  );
  out.push(...segment(0xfe, ascii(`pifs sample photo ${photo.path}`))); // COM
  out.push(...segment(0xdb, [0, ...new Array(64).fill(1)])); // DQT, table 0
  out.push(...segment(0xc0, [8, 0, 8, 0, 8, 1, 1, 0x11, 0])); // SOF0: 8×8, one component
  const huffman = (cls: number) => [cls, 1, ...new Array(15).fill(0), 0]; // one 1-bit code: 0
  out.push(...segment(0xc4, huffman(0x00)), ...segment(0xc4, huffman(0x10))); // DHT DC, AC
  out.push(...segment(0xda, [1, 1, 0x00, 0, 63, 0])); // SOS
  out.push(0x00, 0x00); // entropy-coded data: DC 0, end of block
  out.push(0xff, 0xd9); // EOI
  return new Uint8Array(out);
}

/** An XMP sidecar with a rating and a title, as photo editors write them. */
function xmp(title: string): string {
  return `<?xpacket begin="\u{feff}" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmp:Rating="4">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">${title}</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
`;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function zlib(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = ReadableStream.from([data]).pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A 16×16 grey-gradient PNG, without any EXIF. */
async function png(): Promise<Uint8Array<ArrayBuffer>> {
  const w = 16, h = 16;
  const raw = new Uint8Array(h * (w + 1));
  for (let y = 0; y < h; y++) {
    raw[y * (w + 1)] = 0; // filter: none
    for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = (x + y) * 8;
  }
  const chunk = (type: string, data: Uint8Array): number[] => {
    const body = new Uint8Array([...ascii(type), ...data]);
    const n = data.length, crc = crc32(body);
    return [
      n >>> 24,
      (n >>> 16) & 0xff,
      (n >>> 8) & 0xff,
      n & 0xff,
      ...body,
      crc >>> 24,
      (crc >>> 16) & 0xff,
      (crc >>> 8) & 0xff,
      crc & 0xff,
    ];
  };
  const ihdr = new Uint8Array([0, 0, 0, w, 0, 0, 0, h, 8, 0, 0, 0, 0]); // 8-bit grey
  return new Uint8Array([
    0x89,
    ...ascii("PNG"),
    0x0d,
    0x0a,
    0x1a,
    0x0a,
    ...chunk("IHDR", ihdr),
    ...chunk("IDAT", await zlib(raw)),
    ...chunk("IEND", new Uint8Array()),
  ]);
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The EXIF date as a local Date (the JPEG's mtime, as a camera would leave it). */
function exifDate(taken: string): Date {
  const [y, mo, d, h, mi, s] = taken.split(/[: ]/).map(Number);
  return new Date(y, mo - 1, d, h, mi, s);
}

async function write(path: string, bytes: Uint8Array | string, mtime?: Date): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (typeof bytes === "string") await Deno.writeTextFile(path, bytes);
  else await Deno.writeFile(path, bytes);
  if (mtime) await Deno.utime(path, mtime, mtime);
}

// ------------------------------------------------------------------ main

/** Writes `DIR/sample-photos/` and `DIR/sample-dataset/` (replacing them); returns their paths. */
export async function makeSamples(dir: string): Promise<{ photos: string; dataset: string }> {
  const photos = `${dir.replace(/\/+$/, "")}/sample-photos`;
  const dataset = `${dir.replace(/\/+$/, "")}/sample-dataset`;
  for (const d of [photos, dataset]) await Deno.remove(d, { recursive: true }).catch(() => {});

  for (const p of SAMPLE_PHOTOS) await write(`${photos}/${p.path}`, jpeg(p), exifDate(p.taken));
  const first = SAMPLE_PHOTOS[0];
  await write(`${photos}/${SAMPLE_DUPLICATE}`, jpeg(first), exifDate(first.taken));
  const edited = new Date(exifDate(SAMPLE_PHOTOS[1].taken).getTime() + 3600_000);
  await write(`${photos}/${SAMPLE_SIDECAR}`, xmp("Sunset at the lake"), edited);
  await write(`${photos}/${SAMPLE_PNG}`, await png(), SAMPLE_PNG_MTIME);

  const published = new Date("2024-06-01T00:00:00Z");
  const files = [];
  for (const [i, f] of SAMPLE_DATASET.entries()) {
    const bytes = seededBytes(f.size, 0x5eed + i);
    await write(`${dataset}/${f.name}`, bytes, published);
    files.push({ url: f.name, path: f.name, size: f.size, sha256: await sha256Hex(bytes) });
  }
  await write(`${dataset}/manifest.json`, JSON.stringify({ files }, null, 2) + "\n", published);
  return { photos, dataset };
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? fileURLToPath(new URL(".", import.meta.url));
  const { photos, dataset } = await makeSamples(dir);
  console.log(
    `${photos}: ${SAMPLE_PHOTOS.length + 2} photos (one a duplicate) and 1 sidecar\n` +
      `${dataset}: ${SAMPLE_DATASET.length} files and manifest.json`,
  );
}
