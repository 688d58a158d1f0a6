/**
 * Card images for emulated Pis: an MBR with one FAT32 partition (type 0x0C at
 * 1 MiB, as the Raspberry Pi imager lays out a card), formatted by
 * `mkfs.fat`, with stand-in Pi boot files copied in by mtools.
 *
 * @module
 */
import { run } from "./_run.ts";

/** Sectors before the first partition (1 MiB, as on a real Pi card). */
export const PARTITION_START = 2048;

/** The Pi boot files that every card carries and pifs never changes. */
export const BOOT_FILES = ["bootcode.bin", "start.elf", "fixup.dat", "config.txt", "kernel8.img"];

/** A bad card size or an image that could not be made. */
export class CardError extends Error {
  /** The error's name. */
  override name = "CardError";
}

/**
 * Parses a size such as `64M`, `1G`, `512K` or `1048576` into bytes.
 *
 * @example
 * ```ts
 * import { parseSize } from "./card.ts";
 * if (parseSize("64M") !== 64 * 1024 * 1024) throw new Error();
 * ```
 */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new CardError(`not a size: '${text}' (use e.g. 64M, 1G)`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[
    m[2].toUpperCase() as "" | "K" | "M" | "G" | "T"
  ];
  return Number(m[1]) * mult;
}

function stand_in(name: string): Uint8Array {
  // Recognisable, deterministic content so a test can prove it is unchanged.
  const head = new TextEncoder().encode(`pifs stand-in for the Raspberry Pi file ${name}\n`);
  const out = new Uint8Array(4096 + name.length * 97);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  out.set(head, 0);
  return out;
}

/** The bytes of each stand-in boot file, by name. */
export function bootFileContents(): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const f of BOOT_FILES) {
    if (f === "config.txt") {
      m.set(
        f,
        new TextEncoder().encode("# pifs card\narm_64bit=1\nenable_uart=1\nkernel=kernel8.img\n"),
      );
    } else m.set(f, stand_in(f));
  }
  return m;
}

/** mtools' image argument for the FAT volume of a card made by {@linkcode makeCard}. */
export function mtoolsImage(path: string): string {
  return `${path}@@${PARTITION_START * 512}`;
}

/**
 * Makes a card image of `size` bytes (a power of two, at least 64 MiB, so
 * QEMU's Pi can use it): MBR, a FAT32 partition and the stand-in boot files.
 * Refuses to overwrite an existing file.
 */
export async function makeCard(path: string, size: number, opts: { label?: string } = {}) {
  if (!Number.isInteger(size) || size < 64 * 1024 ** 2 || (size & (size - 1)) !== 0) {
    throw new CardError(
      `card size ${size} bytes: must be a power of two of at least 64 MiB (QEMU needs a power of two)`,
    );
  }
  try {
    await Deno.lstat(path);
    throw new CardError(`card image ${path} already exists: not overwriting it`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const f = await Deno.open(path, { createNew: true, write: true });
  try {
    await f.truncate(size);
    const total = size / 512;
    const mbr = new Uint8Array(512);
    const v = new DataView(mbr.buffer);
    v.setUint32(440, crypto.getRandomValues(new Uint32Array(1))[0], true); // disk signature
    const e = 446;
    mbr[e] = 0x00; // not bootable: the Pi's firmware does not look
    // CHS fields: "use LBA" markers, as modern tools write them.
    mbr.set([0xfe, 0xff, 0xff], e + 1);
    mbr[e + 4] = 0x0c; // FAT32 (LBA)
    mbr.set([0xfe, 0xff, 0xff], e + 5);
    v.setUint32(e + 8, PARTITION_START, true);
    v.setUint32(e + 12, total - PARTITION_START, true);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    await f.write(mbr);
  } finally {
    f.close();
  }
  const partSectors = size / 512 - PARTITION_START;
  // 512-byte clusters keep small cards FAT32 (>= 65525 clusters); larger cards get 4 KiB.
  let spc = 1;
  while (spc < 8 && partSectors / (spc * 2) >= 4 * 65536) spc *= 2;
  await run("mkfs.fat", [
    "-F",
    "32",
    "-s",
    String(spc),
    "-n",
    (opts.label ?? "PIFS").slice(0, 11).toUpperCase(),
    "--offset",
    String(PARTITION_START),
    path,
    String(partSectors / 2),
  ]);
  const dir = await Deno.makeTempDir({ prefix: "pifs-boot-" });
  try {
    const files: string[] = [];
    for (const [name, bytes] of bootFileContents()) {
      await Deno.writeFile(`${dir}/${name}`, bytes);
      files.push(`${dir}/${name}`);
    }
    await run("mcopy", ["-i", mtoolsImage(path), ...files, "::/"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
