/**
 * pifs cards: an MBR with one FAT32 partition (type 0x0C at 1 MiB, as the
 * Raspberry Pi imager lays out a card), formatted by `mkfs.fat`, holding the
 * Pi boot files (stand-ins or the user's), a `config.txt` that boots the pifs
 * bootloader on a Pi 3 (`kernel8.img`, AArch64) and a Pi Zero/1
 * (`kernel.img`), and the node firmware the bootloader loads
 * (`PIFS/NODE8.IMG`, `PIFS/NODE.IMG`, each padded to {@linkcode NODE_SLOT}).
 *
 * One implementation serves both `pifs card init` ({@linkcode initCard}: a
 * block device or an image file, refused while it holds data unless forced)
 * and `pifs sim up` ({@linkcode makeCard}: a new image for an emulated Pi).
 * Everything is written through `mkfs.fat` and mtools; nothing is mounted.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { crc32c } from "../link/crc32c.ts";
import { run } from "./run.ts";
import { formatBytes } from "../units.ts";

/** Sectors before the first partition (1 MiB, as on a real Pi card). */
export const PARTITION_START = 2048;

/** The smallest card: 64 MiB (QEMU's Pi needs a power of two; FAT32 needs 65525 clusters). */
export const MIN_CARD_SIZE = 64 * 1024 ** 2;

/** Size of each installed node image on the card: padded so `deploy --install` can overwrite it in place. */
export const NODE_SLOT = 1024 ** 2;

/**
 * The Raspberry Pi boot files that every card made with stand-ins carries and
 * pifs never changes (`config.txt` is pifs's own, {@linkcode PIFS_CONFIG_TXT}).
 * The pifs bootloader (`kernel8.img`, `kernel.img`) is not among them: it
 * comes from the firmware build, {@linkcode firmwareFiles}.
 */
export const BOOT_FILES = ["bootcode.bin", "start.elf", "fixup.dat", "config.txt"];

/** Where {@linkcode firmwareFiles}' images go on the card. */
export const FIRMWARE_ON_CARD = {
  kernel8: "kernel8.img",
  kernel: "kernel.img",
  node8: "PIFS/NODE8.IMG",
  node: "PIFS/NODE.IMG",
} as const;

/** The `config.txt` of a pifs card: each board boots its pifs bootloader with the PL011 UART on GPIO 14/15. */
export const PIFS_CONFIG_TXT = [
  "# pifs card: the Pi's firmware starts the pifs bootloader, which loads",
  "# the node firmware from PIFS/NODE8.IMG (Pi 3) or PIFS/NODE.IMG (Pi Zero/1).",
  "[all]",
  "enable_uart=1",
  "# The PL011 UART on GPIO 14/15, not on Bluetooth (Pi 3, Pi Zero W).",
  "dtoverlay=disable-bt",
  "[pi3]",
  "arm_64bit=1",
  "kernel=kernel8.img",
  "[pi0]",
  "kernel=kernel.img",
  "# The Zero 2 W is a Pi 3's chip on a Zero's board: [pi0] matches it too, so",
  "# this section comes after that one and gives it the AArch64 image.",
  "[pi02]",
  "arm_64bit=1",
  "kernel=kernel8.img",
  "[pi1]",
  "kernel=kernel.img",
  "# Pi 2, Pi 4, Pi 400, CM4 and Pi 5 are not supported: no pifs image runs there.",
  "[all]",
  "",
].join("\n");

/** Where a user finds the Raspberry Pi's own boot files. */
export const BOOT_FILES_WHERE =
  "the boot/ folder of the Raspberry Pi firmware repository, or the boot partition of a " +
  "Raspberry Pi OS image";

/** A bad card, a bad size, or a card that could not be made. */
export class CardError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "CARD";
  /** The error's name. */
  override name = "CardError";
}

/** The card holds data and `force` was not given: nothing was written. */
export class CardHoldsDataError extends CardError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "CARD_HOLDS_DATA";
  /** What is on the card. */
  readonly survey: CardSurvey;
  /** A refusal to overwrite `survey`. */
  constructor(message: string, survey: CardSurvey) {
    super(message);
    this.survey = survey;
  }
}

/** Throws a CardError unless `size` is a card size QEMU's Pi can use: a power of two ≥ 64 MiB. */
export function checkImageSize(size: number): void {
  let p = MIN_CARD_SIZE;
  while (p < size) p *= 2;
  if (!Number.isSafeInteger(size) || p !== size) {
    throw new CardError(
      `card size ${size} bytes${
        Number.isFinite(size) ? ` (${formatBytes(size)})` : ""
      }: must be a power of two of at least 64 MiB ` +
        `(QEMU needs a power of two), e.g. 64M, 128M, 1G`,
    );
  }
}

function standIn(name: string): Uint8Array {
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

/**
 * Builds `target` of the Pi firmware (`make -C firmware`) and returns the
 * build directory. With `PIFS_FIRMWARE_ALIGN_CHECK=1` the images are the
 * alignment-checked ones (`firmware/build/align`, built with
 * `-DPI_ALIGN_CHECK`: every misaligned access faults, as on a real Pi with
 * its MMU off, where QEMU would let it pass); the emulated-Pi tests run on
 * them too.
 */
export async function buildFirmware(target: string): Promise<string> {
  let check = false;
  try {
    check = Deno.env.get("PIFS_FIRMWARE_ALIGN_CHECK") === "1";
  } catch { /* no env permission: the usual images */ }
  const args = check ? ["B=build/align", "PI_EXTRA=-DPI_ALIGN_CHECK"] : [];
  try {
    await run("make", [
      "-s",
      "-C",
      FIRMWARE,
      ...args,
      target.replace(/^build\//, check ? "build/align/" : "build/"),
    ]);
  } catch (e) {
    throw new CardError(
      `building the Pi firmware (make -C firmware ${target}) failed: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return `${FIRMWARE}/build${check ? "/align" : ""}`;
}

/** The bytes of each stand-in boot file ({@linkcode BOOT_FILES}), by name. */
export function bootFileContents(): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const f of BOOT_FILES) {
    m.set(f, f === "config.txt" ? new TextEncoder().encode(PIFS_CONFIG_TXT) : standIn(f));
  }
  return m;
}

/** mtools' image argument for the FAT volume `offset` bytes into a card (default: the partition {@linkcode makeCard} makes). */
export function mtoolsImage(path: string, offset = PARTITION_START * 512): string {
  return offset ? `${path}@@${offset}` : path;
}

const FIRMWARE = new URL("../firmware", import.meta.url).pathname;

/**
 * Path of the hosted node binary (the node core built for this host, which
 * serves a card image over a pty or a tty), built on first use;
 * `PIFS_NODE_BIN` names another.
 */
export async function nodeBinary(): Promise<string> {
  const env = Deno.env.get("PIFS_NODE_BIN");
  if (env) return env;
  await run("make", ["-s", "-C", FIRMWARE, "build/pifs-node"]);
  return `${FIRMWARE}/build/pifs-node`;
}

/** Host paths of the images a card carries ({@linkcode FIRMWARE_ON_CARD} says where). */
export interface FirmwareFiles {
  /** The pifs bootloader for the Pi 3 (AArch64): `kernel8.img`. */
  kernel8: string;
  /** The pifs bootloader for the Pi Zero/1 (ARMv6): `kernel.img`. */
  kernel: string;
  /** The node firmware for the Pi 3: `PIFS/NODE8.IMG`. */
  node8: string;
  /** The node firmware for the Pi Zero/1: `PIFS/NODE.IMG`. */
  node: string;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * The firmware images a card carries, built first (`make -s -C firmware pi`).
 * The one place that names them: `card init`, `sim up` and the tests all ask here.
 */
export async function firmwareFiles(): Promise<FirmwareFiles> {
  const b = await buildFirmware("pi");
  const f: FirmwareFiles = {
    kernel8: `${b}/pi3/boot.img`,
    kernel: `${b}/pi0/boot.img`,
    node8: `${b}/pi3/node.img`,
    node: `${b}/pi0/node.img`,
  };
  for (const p of Object.values(f)) {
    if (!(await isFile(p))) throw new CardError(`firmware image ${p} missing after make`);
  }
  return f;
}

// ---------------------------------------------------------------------------
// What is on a card now

/** A pifs store found on a card: the current superblock of `PIFS/STORE.DAT` (docs/SPEC.md §3). */
export interface StoreInfo {
  /** Path on the volume. */
  path: string;
  /** Cluster the card belongs to (32 hex digits), or null without a valid superblock. */
  clusterId: string | null;
  /** Node number within that cluster, or null. */
  nodeId: number | null;
}

/** A FAT volume found on a card, with what it holds. */
export interface FatVolume {
  /** Where: "partition N" or "whole card" (no partition table). */
  where: string;
  /** Byte offset of its boot sector. */
  offset: number;
  /** Its volume label, if any. */
  label: string;
  /** Paths of its files (not directories), as mtools lists them, without `::/`. */
  files: string[];
  /** Number of directories. */
  dirs: number;
  /** Total bytes of its files, or null if mtools' summary could not be read. */
  bytes: number | null;
  /** Why mtools could not list it (the volume then counts as holding data). */
  error?: string;
  /** The pifs store among its files. */
  store?: StoreInfo;
}

/** Everything on a card that `card init` would destroy. */
export interface CardSurvey {
  /** FAT volumes (MBR partitions or a partitionless volume). */
  volumes: FatVolume[];
  /** Other data pifs cannot list: non-FAT partitions, a GPT, unknown bytes. */
  other: string[];
}

/** Whether a survey found anything worth keeping. */
export function holdsData(s: CardSurvey): boolean {
  return s.other.length > 0 || s.volumes.some((v) => v.files.length > 0 || v.error);
}

const FAT_TYPES = new Set([0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e]);

/** Whether a 512-byte sector is a FAT boot sector (jump, sane BPB, signature). */
function isFatBootSector(s: Uint8Array): boolean {
  if (s.length < 512 || s[510] !== 0x55 || s[511] !== 0xaa) return false;
  if (s[0] !== 0xeb && s[0] !== 0xe9) return false;
  const v = new DataView(s.buffer, s.byteOffset, 512);
  const bps = v.getUint16(11, true);
  const spc = s[13];
  return [512, 1024, 2048, 4096].includes(bps) && spc > 0 && (spc & (spc - 1)) === 0 &&
    v.getUint16(14, true) > 0 && s[16] > 0;
}

function fatLabel(s: Uint8Array): string {
  const fat32 = new DataView(s.buffer, s.byteOffset, 512).getUint16(22, true) === 0;
  const at = fat32 ? 71 : 43;
  const text = new TextDecoder("latin1").decode(s.subarray(at, at + 11)).trim();
  return text === "NO NAME" ? "" : text;
}

/** Runs `cmd`, feeding it `input`; its stdout as bytes. Throws a CardError with its stderr on failure. */
async function runBytes(cmd: string, args: string[], input?: Uint8Array): Promise<Uint8Array> {
  const p = new Deno.Command(cmd, {
    args,
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input) {
    const w = p.stdin.getWriter();
    await w.write(input);
    await w.close();
  }
  const out = await p.output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new CardError(`${[cmd, ...args].join(" ")}: exit ${out.code}${err ? `: ${err}` : ""}`);
  }
  return out.stdout;
}

/**
 * Reads `n` bytes at `offset` of a card (fewer at its end). Through `dd`:
 * Deno lets a program open a device under /dev only with --allow-all.
 */
async function readAt(path: string, offset: number, n: number): Promise<Uint8Array> {
  return await runBytes("dd", [
    `if=${path}`,
    "bs=64K",
    `skip=${offset}`,
    `count=${n}`,
    "iflag=skip_bytes,count_bytes",
    "status=none",
  ]);
}

/** Writes `data` at `offset` of a block device, flushed (through `dd`, as {@linkcode readAt}). */
async function writeDeviceAt(path: string, offset: number, data: Uint8Array): Promise<void> {
  await runBytes("dd", [
    `of=${path}`,
    "bs=64K",
    `seek=${offset}`,
    "oflag=seek_bytes",
    "conv=notrunc,fsync",
    "status=none",
  ], data);
}

/** What is at `path`, following symlinks (through `stat` when Deno may not look, under /dev). */
async function pathKind(
  path: string,
): Promise<{ kind: "missing" | "dir" | "file" | "block" | "other"; size: number }> {
  try {
    const st = await Deno.stat(path);
    const kind = st.isDirectory ? "dir" : st.isFile ? "file" : st.isBlockDevice ? "block" : "other";
    return { kind, size: st.size };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { kind: "missing", size: 0 };
    if (!(e instanceof Deno.errors.NotCapable)) throw e;
  }
  const out = await new Deno.Command("stat", {
    args: ["-L", "-c", "%F|%s", path],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr);
    if (/No such file/.test(err)) return { kind: "missing", size: 0 };
    throw new CardError(`stat ${path}: ${err.trim()}`);
  }
  const [type, size] = text.split("|");
  const kind = type === "directory"
    ? "dir"
    : type.startsWith("regular")
    ? "file"
    : type === "block special file"
    ? "block"
    : "other";
  return { kind, size: Number(size) };
}

async function mtools(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // A foreign volume may have a geometry mtools would otherwise refuse.
    env: { MTOOLS_SKIP_CHECK: "1" },
  }).output();
  const dec = new TextDecoder();
  return { ok: out.success, out: dec.decode(out.stdout), err: dec.decode(out.stderr).trim() };
}

/** Reads the first `n` bytes of a file on a FAT volume through `mtype`, without reading the rest. */
async function mtypeHead(img: string, file: string, n: number): Promise<Uint8Array> {
  const p = new Deno.Command("mtype", {
    args: ["-i", img, file],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { MTOOLS_SKIP_CHECK: "1" },
  }).spawn();
  const buf = new Uint8Array(n);
  let got = 0;
  const reader = p.stdout.getReader();
  try {
    while (got < n) {
      const r = await reader.read();
      if (r.done) break;
      const take = Math.min(r.value.length, n - got);
      buf.set(r.value.subarray(0, take), got);
      got += take;
    }
  } finally {
    await reader.cancel().catch(() => {});
    try {
      p.kill("SIGKILL");
    } catch { /* already exited */ }
    await p.status;
  }
  return buf.subarray(0, got);
}

/** The current superblock of a STORE.DAT's first two sectors (docs/SPEC.md §3): the valid slot with the highest generation. */
export function readStoreSuperblock(
  head: Uint8Array,
): { clusterId: string; nodeId: number } | null {
  let best: { gen: number; clusterId: string; nodeId: number } | null = null;
  for (let slot = 0; slot < 2; slot++) {
    const s = head.subarray(slot * 512, slot * 512 + 512);
    if (s.length < 512) break;
    const v = new DataView(s.buffer, s.byteOffset, 512);
    const magic = new TextDecoder("latin1").decode(s.subarray(0, 8));
    if (magic !== "PIFSSTOR" || v.getUint32(8, true) !== 1) continue;
    if (crc32c(s.subarray(0, 508)) !== v.getUint32(508, true)) continue;
    const gen = v.getUint32(12, true);
    if (best && gen <= best.gen) continue;
    best = {
      gen,
      clusterId: [...s.subarray(16, 32)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      nodeId: v.getUint32(32, true),
    };
  }
  return best && { clusterId: best.clusterId, nodeId: best.nodeId };
}

/** Lists a FAT volume with mtools. */
async function listVolume(path: string, offset: number, where: string): Promise<FatVolume> {
  const img = mtoolsImage(path, offset);
  const boot = await readAt(path, offset, 512);
  const vol: FatVolume = { where, offset, label: fatLabel(boot), files: [], dirs: 0, bytes: 0 };
  const bare = await mtools("mdir", ["-/", "-a", "-b", "-i", img, "::"]);
  if (!bare.ok) {
    // mdir fails with 'File "::" not found' on a volume without a single entry.
    if (/not found/.test(bare.err) && !bare.out.trim()) return vol;
    vol.error = bare.err || "mdir failed";
    vol.bytes = null;
    return vol;
  }
  for (const line of bare.out.split("\n")) {
    const p = line.replace(/\r$/, "");
    if (!p.startsWith("::/")) continue;
    if (p.endsWith("/")) vol.dirs++;
    else vol.files.push(p.slice(3));
  }
  // Total bytes: the summary of the long listing ("Total files listed:" when recursive).
  const long = await mtools("mdir", ["-/", "-a", "-i", img, "::"]);
  const lines = long.out.split("\n");
  const total = lines.findIndex((l) => l.startsWith("Total files listed:"));
  const summary = total >= 0
    ? lines[total + 1]
    : lines.filter((l) => /\bfiles?\s+[\d ]+ bytes\s*$/.test(l)).at(-1);
  const m = summary && /files?\s+([\d ]+?) bytes\s*$/.exec(summary);
  vol.bytes = m ? Number(m[1].replace(/ /g, "")) : null;
  const store = vol.files.find((f) => f.toUpperCase() === "PIFS/STORE.DAT");
  if (store) {
    const sb = readStoreSuperblock(await mtypeHead(img, `::/${store}`, 1024));
    vol.store = { path: store, clusterId: sb?.clusterId ?? null, nodeId: sb?.nodeId ?? null };
  }
  return vol;
}

function nonZeroSectors(b: Uint8Array): number {
  let n = 0;
  for (let s = 0; s < b.length; s += 512) {
    if (b.subarray(s, s + 512).some((x) => x !== 0)) n++;
  }
  return n;
}

/**
 * What a card holds: its FAT volumes (listed with mtools; nothing is mounted)
 * and any other data in its partition table or its first MiB.
 */
export async function surveyCard(path: string): Promise<CardSurvey> {
  const head = await readAt(path, 0, 1024 ** 2);
  const s: CardSurvey = { volumes: [], other: [] };
  if (head.every((b) => b === 0)) return s;
  const mib = (sectors: number) => `${(sectors / 2048).toFixed(sectors % 2048 ? 1 : 0)} MiB`;
  if (isFatBootSector(head)) {
    s.volumes.push(await listVolume(path, 0, "whole card (no partition table)"));
    return s;
  }
  if (head[510] !== 0x55 || head[511] !== 0xaa) {
    s.other.push(
      `${nonZeroSectors(head)} non-zero sectors in the first MiB that are neither a partition ` +
        `table nor a FAT volume`,
    );
    return s;
  }
  const v = new DataView(head.buffer, head.byteOffset, 512);
  let firstStart = 2048;
  for (let i = 0; i < 4; i++) {
    const e = 446 + 16 * i;
    const type = head[e + 4];
    const start = v.getUint32(e + 8, true);
    const count = v.getUint32(e + 12, true);
    if (type === 0 || count === 0) continue;
    firstStart = Math.min(firstStart, start);
    const what = `partition ${i + 1} (type 0x${type.toString(16).padStart(2, "0")}, ${mib(count)})`;
    if (type === 0xee) {
      s.other.push(`a GPT partition table (protective MBR partition ${i + 1})`);
      continue;
    }
    const boot = FAT_TYPES.has(type) ? await readAt(path, start * 512, 512) : new Uint8Array();
    if (isFatBootSector(boot)) {
      s.volumes.push(await listVolume(path, start * 512, `partition ${i + 1}`));
    } else s.other.push(`${what}: not a FAT volume, pifs cannot list it`);
  }
  const gap = nonZeroSectors(head.subarray(512, Math.max(512, firstStart * 512)));
  if (gap) {
    s.other.push(`${gap} non-zero sectors between the partition table and the first partition`);
  }
  return s;
}

/** The lines that say what a survey found: what `--force` would destroy. */
export function describeSurvey(s: CardSurvey, maxPaths = 20): string[] {
  const out: string[] = [];
  for (const v of s.volumes) {
    const name = `FAT volume on ${v.where}${v.label ? ` (label ${v.label})` : ""}`;
    if (v.error) {
      out.push(`${name}: mtools cannot list it: ${v.error}`);
      continue;
    }
    const bytes = v.bytes === null ? "" : `, ${v.bytes} bytes (${formatBytes(v.bytes)})`;
    out.push(`${name}: ${v.files.length} files in ${v.dirs + 1} directories${bytes}`);
    if (v.store) {
      out.push(
        v.store.clusterId
          ? `  a pifs store: ${v.store.path} of cluster ${v.store.clusterId}, node ${v.store.nodeId}`
          : `  a pifs store: ${v.store.path} (no valid superblock)`,
      );
    }
    for (const f of v.files.slice(0, maxPaths)) out.push(`  ${f}`);
    if (v.files.length > maxPaths) out.push(`  ... and ${v.files.length - maxPaths} more files`);
  }
  for (const o of s.other) out.push(o);
  return out;
}

// ---------------------------------------------------------------------------
// Where a card goes

/** A card to write: a block device or an image file. */
export interface CardTarget {
  /** The path as given. */
  path: string;
  /** A block device, or an image file. */
  kind: "device" | "file";
  /** Whether the path exists (a new image file does not). */
  exists: boolean;
  /** Size of the card in bytes. */
  size: number;
  /** Notes for the user (e.g. an image QEMU cannot use). */
  notes: string[];
}

function isPowerOfTwo(n: number): boolean {
  let p = 1;
  while (p < n) p *= 2;
  return p === n;
}

function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** A block device as `lsblk -J -b -o NAME,PATH,TYPE,SIZE,RO,MOUNTPOINT,PKNAME` describes it. */
export interface LsblkDev {
  /** Kernel name (sdb). */
  name: string;
  /** Device path (/dev/sdb). */
  path: string;
  /** disk, part, loop, crypt, lvm, rom... */
  type: string;
  /** Size in bytes. */
  size: number | string;
  /** Read-only. */
  ro: boolean | string;
  /** Where it is mounted (or [SWAP]). */
  mountpoint: string | null;
  /** Kernel name of the parent (for a partition). */
  pkname?: string | null;
  /** Partitions, and devices built on it (LVM, dm-crypt, RAID). */
  children?: LsblkDev[];
}

/**
 * Why the whole device `tree` must not be written: it, a partition of it, or
 * anything built on it is mounted (per lsblk or per `mounts`, whose sources
 * are resolved device paths), or something (LVM, dm-crypt, RAID) is built on it.
 */
export function deviceProblems(
  tree: LsblkDev,
  mounts: { source: string; target: string }[],
): string[] {
  const all: LsblkDev[] = [];
  const walk = (d: LsblkDev) => {
    all.push(d);
    for (const c of d.children ?? []) walk(c);
  };
  walk(tree);
  const problems: string[] = [];
  const mounted = new Set<string>();
  for (const d of all) {
    if (d.mountpoint) {
      problems.push(`${d.path} is mounted on ${d.mountpoint}`);
      mounted.add(d.path);
    }
    if (d !== tree && d.type !== "part") problems.push(`${d.path} (${d.type}) is built on it`);
  }
  const names = new Set(all.map((d) => d.path));
  for (const m of mounts) {
    if (names.has(m.source) && !mounted.has(m.source)) {
      problems.push(`${m.source} is mounted on ${m.target}`);
      mounted.add(m.source);
    }
  }
  return problems;
}

/** The mounts in /proc/mounts whose source is a device, with the source resolved (symlinks under /dev/disk). */
async function deviceMounts(): Promise<{ source: string; target: string }[]> {
  const text = await run("cat", ["/proc/mounts"]).catch(() => "");
  const unescape = (f: string) =>
    f.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const rows = text.split("\n").map((l) => l.split(" ")).filter((f) => f[0]?.startsWith("/dev/"))
    .map((f) => ({ source: unescape(f[0]), target: unescape(f[1] ?? "") }));
  if (!rows.length) return rows;
  const real = (await run("realpath", ["-m", "--", ...rows.map((r) => r.source)]).catch(() => ""))
    .split("\n");
  return rows.map((r, i) => ({ source: real[i] || r.source, target: r.target }));
}

/** The size of the whole block device `path`, or a CardError if it is a partition, read-only, mounted or in use. */
async function checkDevice(path: string): Promise<number> {
  const real = (await run("realpath", ["-m", "--", path])).trim() || path;
  let tree: LsblkDev;
  try {
    const out = await run("lsblk", [
      "-J",
      "-b",
      "-o",
      "NAME,PATH,TYPE,SIZE,RO,MOUNTPOINT,PKNAME",
      real,
    ]);
    tree = JSON.parse(out).blockdevices[0];
  } catch (e) {
    throw new CardError(`${path}: lsblk cannot describe it: ${(e as Error).message}`);
  }
  if (tree.type === "part") {
    throw new CardError(
      `${path} is a partition${tree.pkname ? ` of /dev/${tree.pkname}` : ""}: ` +
        `give the whole card${tree.pkname ? ` (/dev/${tree.pkname})` : ""}`,
    );
  }
  if (tree.ro === true || tree.ro === "1") {
    throw new CardError(`${path} is read-only (is the card's write-protect switch on?)`);
  }
  const problems = deviceProblems(tree, await deviceMounts());
  if (problems.length) {
    throw new CardError(
      `${path} is in use: ${problems.join("; ")}. Unmount it first; nothing was written`,
    );
  }
  let size = Number(tree.size);
  if (!Number.isFinite(size) || size <= 0) {
    size = Number((await run("blockdev", ["--getsize64", real])).trim());
  }
  return size;
}

/**
 * Checks `path` as a card: an existing block device (not mounted, no mounted
 * partition), an existing image file (keeps its size), or a new image file
 * (needs `size`). Writes nothing.
 */
export async function cardTarget(path: string, size?: number): Promise<CardTarget> {
  if (!path) throw new CardError("no card path given");
  const st = await pathKind(path);
  if (st.kind === "missing") {
    const parent = dirname(path);
    const pst = await pathKind(parent);
    if (pst.kind === "missing") throw new CardError(`${path}: directory ${parent} does not exist`);
    if (pst.kind !== "dir") throw new CardError(`${path}: ${parent} is not a directory`);
    if (path.startsWith("/dev/")) {
      throw new CardError(`${path}: no such device (is the card reader plugged in? see lsblk)`);
    }
    if (size === undefined) {
      throw new CardError(
        `${path} does not exist: give --size to make a new image file (e.g. --size 64M)`,
      );
    }
    checkImageSize(size);
    return { path, kind: "file", exists: false, size, notes: [] };
  }
  if (st.kind === "dir") {
    throw new CardError(
      `${path} is a directory: give a block device (e.g. /dev/sdX) or an image file`,
    );
  }
  if (st.kind === "block") {
    const devSize = await checkDevice(path);
    if (size !== undefined && size !== devSize) {
      throw new CardError(
        `--size ${size}: ${path} is a block device of ${devSize} bytes; its size is its own`,
      );
    }
    if (devSize < MIN_CARD_SIZE) {
      throw new CardError(`${path} holds ${devSize} bytes: a pifs card needs at least 64 MiB`);
    }
    return { path, kind: "device", exists: true, size: devSize, notes: [] };
  }
  if (st.kind !== "file") {
    throw new CardError(`${path} is neither a block device nor a regular file`);
  }
  const notes: string[] = [];
  let cardSize = st.size;
  if (size !== undefined && size !== st.size) {
    if (st.size !== 0) {
      throw new CardError(
        `--size ${size}: ${path} exists (${st.size} bytes) and keeps its size; ` +
          `remove it first to make an image of another size`,
      );
    }
    checkImageSize(size);
    cardSize = size;
  }
  if (cardSize < MIN_CARD_SIZE || cardSize % 512 !== 0) {
    throw new CardError(
      `${path} is ${cardSize} bytes: a pifs card image needs at least 64 MiB in whole ` +
        `512-byte sectors` + (cardSize === 0 ? " (give --size to size an empty file)" : ""),
    );
  }
  if (!isPowerOfTwo(cardSize)) {
    notes.push(`${path} is ${cardSize} bytes, not a power of two: QEMU's Pi cannot use it`);
  }
  return { path, kind: "file", exists: true, size: cardSize, notes };
}

// ---------------------------------------------------------------------------
// Writing a card

/** A file written to a card. */
export interface CardFile {
  /** Path on the FAT volume. */
  path: string;
  /** Its size on the card. */
  bytes: number;
  /** Where it came from (a host path, or "stand-in" / "pifs"). */
  source: string;
}

/** What `card init` wrote. */
export interface CardSummary {
  /** The card's path. */
  path: string;
  /** A block device or an image file. */
  kind: "device" | "file";
  /** Card size in bytes. */
  size: number;
  /** The FAT32 partition. */
  partition: { index: 1; type: "0x0c"; start: number; sectors: number; label: string };
  /** Where the Pi boot files came from: a directory, or "stand-ins". */
  boot_files: string;
  /** Every file written. */
  files: CardFile[];
  /** What was on the card before (when it held data and `force` was given). */
  replaced?: string[];
  /** Notes for the user. */
  notes: string[];
}

/** Options of {@linkcode initCard}. */
export interface CardOptions {
  /** Size of a new image file (a power of two ≥ 64 MiB). */
  size?: number;
  /** A directory whose tree is copied to the card as the Pi boot files (default: stand-ins). */
  bootFiles?: string;
  /** Overwrite a card that holds data. */
  force?: boolean;
  /** The FAT volume label (default PIFS). */
  label?: string;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/** Names the user's boot tree may not bring: pifs writes them (compared case-insensitively, as FAT does). */
const PIFS_OWNS = new Set(["KERNEL8.IMG", "KERNEL.IMG", "PIFS"]);

interface BootTree {
  /** Top-level host paths to copy (mcopy -s). */
  entries: string[];
  /** Every file, relative path and size. */
  files: { path: string; bytes: number; source: string }[];
  /** Whether the tree brings its own config.txt. */
  hasConfig: boolean;
  notes: string[];
}

/** Walks the user's boot tree: every file, refusing what FAT or pifs cannot take. */
async function readBootTree(dir: string, realCard = false): Promise<BootTree> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CardError(`--boot-files ${dir}: no such directory`);
    }
    throw e;
  }
  if (!st.isDirectory) throw new CardError(`--boot-files ${dir}: not a directory`);
  const tree: BootTree = { entries: [], files: [], hasConfig: false, notes: [] };
  const seen = new Set<string>();
  const walk = async (host: string, rel: string, depth: number) => {
    if (depth > 16) throw new CardError(`--boot-files ${dir}: nested too deep at ${rel}`);
    const names: string[] = [];
    for await (const e of Deno.readDir(host)) names.push(e.name);
    names.sort();
    const lower = new Set<string>();
    for (const name of names) {
      const hostPath = `${host}/${name}`;
      const relPath = rel ? `${rel}/${name}` : name;
      if (lower.has(name.toUpperCase())) {
        throw new CardError(
          `--boot-files ${dir}: ${relPath} differs from another name only in case; FAT cannot hold both`,
        );
      }
      lower.add(name.toUpperCase());
      if (!rel && PIFS_OWNS.has(name.toUpperCase())) {
        tree.notes.push(`${hostPath} not copied: pifs writes its own ${name}`);
        continue;
      }
      const s = await Deno.stat(hostPath);
      if (s.isDirectory) {
        const real = await Deno.realPath(hostPath);
        if (seen.has(real)) throw new CardError(`--boot-files ${dir}: ${relPath} loops back`);
        seen.add(real);
        if (!rel) tree.entries.push(hostPath);
        await walk(hostPath, relPath, depth + 1);
      } else if (s.isFile) {
        if (!rel) tree.entries.push(hostPath);
        if (!rel && name.toLowerCase() === "config.txt") tree.hasConfig = true;
        tree.files.push({ path: relPath, bytes: s.size, source: hostPath });
      } else {
        throw new CardError(`--boot-files ${dir}: ${relPath} is not a regular file or directory`);
      }
    }
  };
  await walk(dir, "", 0);
  const top = new Set(tree.files.filter((f) => !f.path.includes("/")).map((f) => f.path));
  const missing = ["bootcode.bin", "start.elf", "fixup.dat"].filter((f) => !top.has(f));
  if (missing.length && realCard) {
    throw new CardError(
      `--boot-files ${dir} has no ${missing.join(", ")}: a Pi would not boot this card, so ` +
        `nothing was written (${BOOT_FILES_WHERE})`,
    );
  }
  if (missing.length) {
    tree.notes.push(
      `--boot-files ${dir} has no ${missing.join(", ")}: a Pi will not boot this card`,
    );
  }
  if (tree.hasConfig) {
    const cfg = await Deno.readTextFile(
      tree.files.find((f) => f.path.toLowerCase() === "config.txt")!.source,
    );
    if (!/^\s*arm_64bit\s*=\s*1/m.test(cfg)) {
      tree.notes.push(`${dir}/config.txt has no arm_64bit=1: a Pi 3 will not boot kernel8.img`);
    }
    if (!/^\s*enable_uart\s*=\s*1/m.test(cfg)) {
      tree.notes.push(`${dir}/config.txt has no enable_uart=1`);
    }
  }
  return tree;
}

/** FAT32 sectors per cluster for a partition of `sectors` sectors. */
function sectorsPerCluster(sectors: number): number {
  // 512-byte clusters keep small cards FAT32 (>= 65525 clusters); larger cards get 4 KiB,
  // and huge ones whatever keeps the count below FAT32's limit.
  let spc = 1;
  while (spc < 8 && sectors / (spc * 2) >= 4 * 65536) spc *= 2;
  while (spc < 128 && sectors / spc > 0x0ffffff0) spc *= 2;
  return spc;
}

function mbr(partSectors: number): Uint8Array {
  const m = new Uint8Array(512);
  const v = new DataView(m.buffer);
  v.setUint32(440, crypto.getRandomValues(new Uint32Array(1))[0], true); // disk signature
  const e = 446;
  m[e] = 0x00; // not bootable: the Pi's firmware does not look
  // CHS fields: "use LBA" markers, as modern tools write them.
  m.set([0xfe, 0xff, 0xff], e + 1);
  m[e + 4] = 0x0c; // FAT32 (LBA)
  m.set([0xfe, 0xff, 0xff], e + 5);
  v.setUint32(e + 8, PARTITION_START, true);
  v.setUint32(e + 12, partSectors, true);
  m[510] = 0x55;
  m[511] = 0xaa;
  return m;
}

async function writeAll(f: Deno.FsFile, offset: number, data: Uint8Array) {
  await f.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < data.length) done += await f.write(data.subarray(done));
}

/**
 * Writes a pifs card onto a checked target: partition table, FAT32, the boot
 * files, config.txt, the bootloader and the node firmware. Everything that
 * could fail on input (the boot tree, the firmware) is checked before the
 * first byte is written.
 */
async function writeCard(
  t: CardTarget,
  opts: { bootFiles?: string; label?: string; log?: (m: string) => void; create?: boolean },
): Promise<CardSummary> {
  const log = opts.log ?? (() => {});
  const label = (opts.label ?? "PIFS").slice(0, 11).toUpperCase();
  const tree = opts.bootFiles ? await readBootTree(opts.bootFiles, t.kind === "device") : undefined;
  const fw = await firmwareFiles();
  const images = {
    kernel8: await Deno.readFile(fw.kernel8),
    kernel: await Deno.readFile(fw.kernel),
    node8: await Deno.readFile(fw.node8),
    node: await Deno.readFile(fw.node),
  };
  for (const k of ["node8", "node"] as const) {
    if (images[k].length > NODE_SLOT) {
      throw new CardError(
        `${fw[k]} is ${images[k].length} bytes: more than the ${NODE_SLOT}-byte slot ` +
          `${FIRMWARE_ON_CARD[k]} has on the card`,
      );
    }
  }
  const total = Math.floor(t.size / 512);
  const partSectors = Math.min(total - PARTITION_START, 0xffffffff - PARTITION_START) & ~7;
  const spc = sectorsPerCluster(partSectors);
  const treeBytes = tree?.files.reduce((a, f) => a + f.bytes, 0) ?? 0;
  // Leave room for the FATs, the firmware and the store the node makes at FORMAT.
  const room = partSectors * 512 * 0.9 - 4 * NODE_SLOT - 1024 ** 2;
  if (treeBytes > room) {
    throw new CardError(
      `--boot-files ${opts.bootFiles}: ${treeBytes} bytes do not fit on a ${t.size}-byte card`,
    );
  }

  const stage = await Deno.makeTempDir({ prefix: "pifs-card-" });
  let created = false;
  try {
    // Everything pifs writes, staged under the names it gets on the card.
    const files: CardFile[] = [];
    const rootFiles: string[] = [];
    const stageFile = async (name: string, bytes: Uint8Array, source: string, onCard: string) => {
      await Deno.writeFile(`${stage}/${name}`, bytes);
      files.push({ path: onCard, bytes: bytes.length, source });
      return `${stage}/${name}`;
    };
    if (!tree) {
      for (const [name, bytes] of bootFileContents()) {
        rootFiles.push(
          await stageFile(name, bytes, name === "config.txt" ? "pifs" : "stand-in", name),
        );
      }
    } else {
      files.push(...tree.files);
      if (!tree.hasConfig) {
        rootFiles.push(
          await stageFile(
            "config.txt",
            new TextEncoder().encode(PIFS_CONFIG_TXT),
            "pifs",
            "config.txt",
          ),
        );
      }
    }
    rootFiles.push(await stageFile("kernel8.img", images.kernel8, fw.kernel8, "kernel8.img"));
    rootFiles.push(await stageFile("kernel.img", images.kernel, fw.kernel, "kernel.img"));
    await Deno.mkdir(`${stage}/PIFS`);
    const pad = (b: Uint8Array) => {
      const out = new Uint8Array(NODE_SLOT);
      out.set(b);
      return out;
    };
    const nodeFiles = [
      await stageFile("PIFS/NODE8.IMG", pad(images.node8), fw.node8, FIRMWARE_ON_CARD.node8),
      await stageFile("PIFS/NODE.IMG", pad(images.node), fw.node, FIRMWARE_ON_CARD.node),
    ];

    // From here on the card is written; a new image that fails half-way is removed.
    log(`writing the partition table of ${t.path} (${formatBytes(t.size)})`);
    if (t.kind === "file") {
      const f = await Deno.open(t.path, {
        write: true,
        ...(opts.create ? { createNew: true } : {}),
      });
      created = opts.create === true;
      try {
        // A clean, sparse image of the card's size.
        await f.truncate(0);
        await f.truncate(t.size);
        await writeAll(f, 0, mbr(partSectors));
      } finally {
        f.close();
      }
    } else {
      // Old partition tables and signatures go: the first MiB, and the last (a backup GPT).
      const zeros = new Uint8Array(1024 ** 2);
      await writeDeviceAt(t.path, 0, zeros);
      if (t.size > 2 * zeros.length) {
        await writeDeviceAt(t.path, Math.floor(t.size / 512) * 512 - zeros.length, zeros);
      }
      await writeDeviceAt(t.path, 0, mbr(partSectors));
    }
    log(`formatting FAT32 at 1 MiB (${partSectors} sectors, ${spc * 512}-byte clusters)`);
    await run("mkfs.fat", [
      "-F",
      "32",
      "-s",
      String(spc),
      "-n",
      label,
      ...(t.kind === "device" ? ["-I"] : []),
      "--offset",
      String(PARTITION_START),
      t.path,
      String(partSectors / 2),
    ]);
    const img = mtoolsImage(t.path);
    if (tree) {
      log(
        `copying ${tree.files.length} boot files from ${opts.bootFiles} (${
          formatBytes(treeBytes)
        })`,
      );
      if (tree.entries.length) await run("mcopy", ["-s", "-m", "-i", img, ...tree.entries, "::/"]);
    } else log("copying the stand-in boot files");
    log("installing the pifs bootloader and node firmware");
    await run("mcopy", ["-i", img, ...rootFiles, "::/"]);
    await run("mmd", ["-i", img, "::/PIFS"]);
    await run("mcopy", ["-i", img, ...nodeFiles, "::/PIFS/"]);
    if (t.kind === "device") {
      await run("blockdev", ["--flushbufs", t.path]);
      // Let the kernel see the new partition (best effort: a loop device without partscan says no).
      await run("blockdev", ["--rereadpt", t.path]).catch(() => {});
    }
    return {
      path: t.path,
      kind: t.kind,
      size: t.size,
      partition: { index: 1, type: "0x0c", start: PARTITION_START, sectors: partSectors, label },
      boot_files: opts.bootFiles ?? "stand-ins",
      files,
      notes: [...t.notes, ...(tree?.notes ?? [])],
    };
  } catch (e) {
    if (created) await Deno.remove(t.path).catch(() => {});
    throw e;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

/**
 * Prepares a pifs card at `path`: a block device or an image file (new: give
 * `size`; existing: keeps its size). Refuses, writing nothing, a card that is
 * mounted or holds data (unless `force`), with what it would destroy.
 */
export async function initCard(path: string, opts: CardOptions = {}): Promise<CardSummary> {
  const t = await cardTarget(path, opts.size);
  // Stand-ins make images for QEMU and the hosted node; a real Pi needs its GPU's own files.
  if (t.kind === "device" && !opts.bootFiles) {
    throw new CardError(
      `${path}: a real card needs the Raspberry Pi's own boot files: give --boot-files DIR ` +
        `with bootcode.bin, start.elf and fixup.dat (${BOOT_FILES_WHERE}); nothing was written`,
    );
  }
  let replaced: string[] | undefined;
  if (t.exists) {
    let survey: CardSurvey;
    try {
      survey = await surveyCard(path);
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new CardError(`${path}: permission denied (run as root, or join the disk group)`);
      }
      throw e;
    }
    if (holdsData(survey)) {
      const lines = describeSurvey(survey);
      if (!opts.force) {
        throw new CardHoldsDataError(
          `${path} holds data; nothing was written. --force would destroy:\n  ` +
            lines.join("\n  "),
          survey,
        );
      }
      replaced = lines;
      opts.log?.(`--force: destroying what ${path} holds:\n  ${lines.join("\n  ")}`);
    }
  }
  const summary = await writeCard(t, {
    bootFiles: opts.bootFiles,
    label: opts.label,
    log: opts.log,
    create: !t.exists,
  });
  return replaced ? { ...summary, replaced } : summary;
}

/**
 * Makes a new card image of `size` bytes (a power of two, at least 64 MiB, so
 * QEMU's Pi can use it) for an emulated Pi: the same card as `pifs card init`
 * with the stand-in boot files. Refuses to overwrite an existing file.
 */
export async function makeCard(
  path: string,
  size: number,
  opts: { label?: string } = {},
): Promise<CardSummary> {
  checkImageSize(size);
  try {
    await Deno.lstat(path);
    throw new CardError(`card image ${path} already exists: not overwriting it`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const t: CardTarget = { path, kind: "file", exists: false, size, notes: [] };
  return await writeCard(t, { label: opts.label, create: true });
}
