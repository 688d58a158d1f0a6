/**
 * Deploying firmware to a Pi over its serial line: the node firmware is
 * asked to REBOOT (a watchdog reset), the Pi's bootloader is caught in its
 * listening window with HELLOs, the image goes over in LOAD_DATA frames, and
 * LOAD_END makes the Pi check it (header, board, CRC-32C), optionally install
 * it on the card, and run it. Then the new firmware must answer HELLO.
 * docs/PROTOCOL.md §9 has the bytes.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { Op, ProtocolError } from "./codec.ts";
import { type ByteLink, NodeClient, TimeoutError } from "./client.ts";
import { crc32c } from "./crc32c.ts";

/** What the header of a sealed firmware image says (firmware/pi/image.h). */
export interface ImageInfo {
  /** Board the image is for: `raspi3b` or `raspi0`. */
  board: string;
  /** `node` (node firmware) or `boot` (bootloader). */
  kind: "node" | "boot";
  /** Image size in bytes, as sealed. */
  size: number;
  /** Version string. */
  version: string;
}

/** A file that is not a pifs firmware image, or a Pi that refused one. */
export class DeployError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "DEPLOY";
  /** The error's name. */
  override name = "DeployError";
}

const HDR = 8;
const BOARDS: Record<number, string> = { 3: "raspi3b", 0: "raspi0" };

/**
 * Reads and checks an image's header and CRC; throws a {@linkcode DeployError}
 * naming what is wrong.
 *
 * @example
 * ```ts
 * import { DeployError, imageInfo } from "./deploy.ts";
 * try {
 *   imageInfo(new Uint8Array(100));
 *   throw new Error("accepted");
 * } catch (e) {
 *   if (!(e instanceof DeployError)) throw e;
 * }
 * ```
 */
export function imageInfo(img: Uint8Array): ImageInfo {
  const magic = new TextDecoder().decode(img.subarray(HDR, HDR + 8));
  if (img.length < HDR + 40 || magic !== "PIFSIMG1") {
    throw new DeployError("not a pifs firmware image (no PIFSIMG1 header at byte 8)");
  }
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const board = BOARDS[v.getUint32(HDR + 8, true)];
  const kindNo = v.getUint32(HDR + 12, true);
  const size = v.getUint32(HDR + 16, true);
  const crc = v.getUint32(HDR + 20, true);
  if (!board) throw new DeployError(`image for unknown board ${v.getUint32(HDR + 8, true)}`);
  if (kindNo !== 1 && kindNo !== 2) throw new DeployError(`image of unknown kind ${kindNo}`);
  if (size !== img.length) {
    throw new DeployError(`image is ${img.length} bytes but its header says ${size}`);
  }
  const copy = img.slice();
  copy.fill(0, HDR + 20, HDR + 24);
  if (crc32c(copy) !== crc) throw new DeployError("image damaged: its CRC-32C does not match");
  const version = new TextDecoder().decode(img.subarray(HDR + 24, HDR + 40)).replace(/\0+$/, "");
  return { board, kind: kindNo === 1 ? "node" : "boot", size, version };
}

/** Options of {@linkcode deployImage}. */
export interface DeployOptions {
  /** Line rate (for timeouts). */
  baud?: number;
  /** Also write the image to the card (PIFS/NODE8.IMG or PIFS/NODE.IMG). */
  install?: boolean;
  /** Send even an image the host finds wrong (to test that the Pi refuses it). */
  unchecked?: boolean;
  /** Bytes of the image sent so far. */
  onProgress?: (sent: number, total: number) => void;
  /** How long to wait for the bootloader after the reboot (ms, default 15000). */
  bootWaitMs?: number;
  /** How long to wait for the new firmware to answer (ms, default 10000). */
  runWaitMs?: number;
}

/** How one Pi's deploy went. */
export interface DeployResult {
  /** The Pi's board. */
  board: string;
  /** Bytes of the image sent. */
  bytes: number;
  /** Firmware it ran before. */
  before: string;
  /** Firmware it runs after (its HELLO). */
  after: string;
  /** Seconds for the image transfer alone (LOAD_BEGIN to LOAD_END's answer). */
  transferS: number;
  /** Bytes written to the line for the transfer. */
  wireBytes: number;
}

const isBoot = (fw: string) => fw.startsWith("boot-");

function status(f: { payload: Uint8Array }): number {
  return new DataView(f.payload.buffer, f.payload.byteOffset).getInt32(0, true);
}

/**
 * Sends an image to the Pi on `open()`'s line and runs it: `images` is the
 * image, or picks one by the Pi's board (`raspi3b`, `raspi0`). `open`
 * opens the line (once). Throws a
 * {@linkcode DeployError} saying where it failed.
 */
export async function deployImage(
  open: () => Promise<ByteLink>,
  images: Uint8Array | ((board: string) => Uint8Array | undefined),
  opts: DeployOptions = {},
): Promise<DeployResult> {
  const baud = opts.baud ?? 115200;
  // One session on the line from start to end: an emulated Pi's pty loses
  // what it sends while no one holds the line open, and the bootloader
  // listens for a second only.
  const c = await NodeClient.connect(await open(), { baud, helloRetries: 3, timeoutMs: 300 });
  try {
    const before = c.hello.firmware;
    const board = c.hello.board;
    const image = typeof images === "function" ? images(board) : images;
    if (!image) throw new DeployError(`no image given for a ${board}`);
    const info = opts.unchecked ? null : imageInfo(image);
    if (info && info.kind !== "node") {
      throw new DeployError("this is a bootloader image; deploy sends node firmware");
    }
    if (info && info.board !== board) {
      throw new DeployError(`image is for ${info.board}, this Pi is a ${board}`);
    }
    // 1. The node firmware is asked to reboot; the bootloader is caught in
    //    its listening window with a HELLO every few hundred ms.
    if (!isBoot(before)) {
      const r = await c.request(Op.REBOOT, new Uint8Array(), { retries: 3 });
      if (status(r) !== 0) {
        throw new DeployError(`the node cannot reboot into a bootloader (firmware ${before})`);
      }
      await untilFirmware(c, isBoot, opts.bootWaitMs ?? 15000, "the Pi's bootloader");
    }
    // 2. The image, one LOAD_DATA at a time.
    const t0 = performance.now();
    const w0 = c.bytesWritten;
    const begin = new Uint8Array(4);
    new DataView(begin.buffer).setUint32(0, image.length, true);
    let r = await c.request(Op.LOAD_BEGIN, begin);
    if (status(r) !== 0) throw new DeployError(`LOAD_BEGIN refused (status ${status(r)})`);
    const step = 16384;
    for (let off = 0; off < image.length;) {
      const n = Math.min(step, image.length - off);
      const p = new Uint8Array(4 + n);
      new DataView(p.buffer).setUint32(0, off, true);
      p.set(image.subarray(off, off + n), 4);
      r = await c.request(Op.LOAD_DATA, p, { replyBytes: 8 });
      const next = new DataView(r.payload.buffer, r.payload.byteOffset).getUint32(4, true);
      if (status(r) !== 0 && next === off) {
        throw new DeployError(`LOAD_DATA at ${off} refused (status ${status(r)})`);
      }
      off = next; // the Pi says where it is: a lost answer costs no resend
      opts.onProgress?.(off, image.length);
    }
    const end = new Uint8Array(4);
    new DataView(end.buffer).setUint32(0, (opts.install ? 1 : 0) | 2, true);
    r = await c.request(Op.LOAD_END, end, { workMs: opts.install ? 5000 : 500 });
    const st = status(r);
    if (st !== 0) {
      const why = st === -7
        ? "its CRC-32C does not match"
        : st === -2
        ? "not a node image for this board"
        : `status ${st}`;
      throw new DeployError(`the Pi refused the image: ${why}; it stays in its bootloader`);
    }
    const transferS = (performance.now() - t0) / 1000;
    const wireBytes = c.bytesWritten - w0;
    // 3. The new firmware must answer.
    const after = await untilFirmware(
      c,
      (fw) => !isBoot(fw),
      opts.runWaitMs ?? 10000,
      "the new firmware",
    );
    return { board, bytes: image.length, before, after, transferS, wireBytes };
  } finally {
    await c.close();
  }
}

/** The firmware named in a HELLO answer (docs/PROTOCOL.md §3). */
function helloFirmware(payload: Uint8Array): string {
  let o = 32;
  o += 1 + payload[o]; // board
  return new TextDecoder().decode(payload.subarray(o + 1, o + 1 + payload[o]));
}

/** Sends HELLO until the answer's firmware is `want`; returns it. */
async function untilFirmware(
  c: NodeClient,
  want: (fw: string) => boolean,
  ms: number,
  what: string,
): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await c.request(Op.HELLO, new Uint8Array(), { retries: 0 });
      const fw = helloFirmware(r.payload);
      if (want(fw)) return fw;
      await new Promise((res) => setTimeout(res, 100));
    } catch (e) {
      if (!(e instanceof ProtocolError || e instanceof TimeoutError)) throw e;
    }
    if (Date.now() > end) throw new DeployError(`${what} did not answer within ${ms / 1000} s`);
  }
}
