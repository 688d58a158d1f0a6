/**
 * The pifs wire protocol v2 codec: frames, opcodes, status codes and a
 * streaming parser. A frame travels COBS-stuffed between 0x00 delimiters, so
 * a byte lost, added or flipped on the line costs that one frame. Byte layout in
 * `docs/PROTOCOL.md`; the C codec in `firmware/core/proto.c` passes the same
 * test vectors (`tests/vectors/frames.txt`).
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { crc32c } from "./crc32c.ts";

/** Protocol version spoken by this codec. */
export const PROTOCOL_VERSION = 2;
/** First magic byte of every frame. */
export const MAGIC0 = 0xa7;
/** Second magic byte of every frame. */
export const MAGIC1 = 0x1f;
/** Header bytes: magic(2) op(1) flags(1) reqid(2) len(4) header CRC(4). */
export const HEADER_SIZE = 14;
/** Trailer bytes: CRC-32C of the payload. */
export const TRAILER_SIZE = 4;
/** Largest payload a frame may carry. */
export const MAX_PAYLOAD: number = 16384 + 64;
/** Largest data part of PUT_DATA, GET and JOURNAL frames. */
export const MAX_DATA = 16384;
/** Raw (unstuffed) bytes of the largest frame. */
export const MAX_RAW: number = HEADER_SIZE + MAX_PAYLOAD + TRAILER_SIZE;
/** Flag bit set on responses. */
export const FLAG_RESPONSE = 0x01;

/** Opcodes: ASCII letters, so a hex dump of a trace reads as a story. */
export const Op = {
  HELLO: 0x48, // 'H'
  INFO: 0x49, // 'I'
  FORMAT: 0x46, // 'F'
  PUT_BEGIN: 0x42, // 'B'
  PUT_DATA: 0x44, // 'D'
  PUT_COMMIT: 0x43, // 'C'
  GET: 0x47, // 'G'
  HAS: 0x45, // 'E'
  LIST: 0x4c, // 'L'
  DELETE: 0x58, // 'X'
  JOURNAL_APPEND: 0x4a, // 'J'
  JOURNAL_READ: 0x52, // 'R'
  JOURNAL_TRIM: 0x50, // 'P' (prune)
  SCRUB: 0x53, // 'S'
  STAT: 0x54, // 'T'
  NAK: 0x4e, // 'N'
  REBOOT: 0x5a, // 'Z'
  // the bootloader's
  LOAD_BEGIN: 0x6c, // 'l'
  LOAD_DATA: 0x64, // 'd'
  LOAD_END: 0x65, // 'e'
} as const;

/** One of the {@linkcode Op} values. */
export type OpCode = typeof Op[keyof typeof Op];

/**
 * Name of an opcode, for traces and messages.
 *
 * @example
 * ```ts
 * import { Op, opToStr } from "./codec.ts";
 * if (opToStr(Op.GET) !== "GET") throw new Error();
 * ```
 */
export function opToStr(op: number): string {
  for (const [name, value] of Object.entries(Op)) if (value === op) return name;
  return `UNKNOWN(0x${op.toString(16).padStart(2, "0")})`;
}

/** Status codes, as the node's `enum pifs_err` (firmware/core/pifs.h). */
export const Status = {
  OK: 0,
  EIO: -1,
  EINVAL: -2,
  ENOENT: -3,
  EEXIST: -4,
  ENOSPC: -5,
  ENOMEM: -6,
  EBADHASH: -7,
  ECORRUPT: -8,
  ENOTFAT32: -9,
  EFAT1216: -10,
  EEXFAT: -11,
  EBADSIG: -12,
  ESECTOR: -13,
  EBPB: -14,
  EUNFORMATTED: -15,
  EWRONGCLUSTER: -16,
  ECONFLICT: -17,
  ERANGE: -18,
  EBUSY: -19,
  EPROTO: -20,
  ENOTDIR: -21,
} as const;

const STATUS_TEXT: Record<number, string> = {
  [-1]: "the card's block device failed",
  [-2]: "bad argument",
  [-3]: "not found",
  [-4]: "already exists",
  [-5]: "no space left on the card",
  [-6]: "the node is out of memory",
  [-7]: "content does not match its id",
  [-8]: "an on-card structure is damaged",
  [-9]: "no FAT32 volume on the card",
  [-10]: "the card's volume is FAT12/FAT16, not FAT32",
  [-11]: "the card's volume is exFAT, not FAT32",
  [-12]: "the card has no boot signature (0x55AA)",
  [-13]: "the card's sector size is not 512 bytes",
  [-14]: "the card's FAT32 boot sector (BPB) is inconsistent",
  [-15]: "the card holds no pifs store (run FORMAT)",
  [-16]: "the card's store belongs to another cluster",
  [-17]: "conditional operation lost (state changed)",
  [-18]: "offset or length out of range",
  [-19]: "too many pending operations",
  [-20]: "protocol violation",
  [-21]: "not a directory",
};

/**
 * Name and meaning of a status code.
 *
 * @example
 * ```ts
 * import { Status, statusToStr } from "./codec.ts";
 * if (!statusToStr(Status.ENOSPC).startsWith("ENOSPC")) throw new Error();
 * ```
 */
export function statusToStr(status: number): string {
  if (status === 0) return "OK";
  for (const [name, value] of Object.entries(Status)) {
    if (value === status) return `${name} (${STATUS_TEXT[status]})`;
  }
  return `status ${status}`;
}

/** A decoded frame. */
export interface Frame {
  /** Opcode. */
  op: number;
  /** Flags ({@linkcode FLAG_RESPONSE}). */
  flags: number;
  /** Request id that pairs a response with its request. */
  reqid: number;
  /** Payload bytes. */
  payload: Uint8Array;
}

/**
 * Wire bytes of a frame with a payload of `payloadLength` bytes, at most:
 * two delimiters and one COBS code byte per started 254 bytes.
 *
 * @example
 * ```ts
 * import { wireSize } from "./codec.ts";
 * if (wireSize(16384) !== 14 + 16384 + 4 + 64 + 3) throw new Error();
 * ```
 */
export function wireSize(payloadLength: number): number {
  const n = HEADER_SIZE + payloadLength + TRAILER_SIZE;
  return n + Math.floor(n / 254) + 3;
}

/**
 * The frame before stuffing: header, payload, payload CRC. Only tests and
 * tools that build damaged frames need it; {@linkcode encodeFrame} gives the
 * wire bytes.
 */
export function encodeRawFrame(frame: Frame, length = frame.payload.length): Uint8Array {
  const n = frame.payload.length;
  if (n > MAX_PAYLOAD) throw new RangeError(`frame payload of ${n} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(HEADER_SIZE + n + TRAILER_SIZE);
  const v = new DataView(out.buffer);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = frame.op;
  out[3] = frame.flags;
  v.setUint16(4, frame.reqid, true);
  v.setUint32(6, length, true);
  v.setUint32(10, crc32c(out.subarray(0, 10)), true);
  out.set(frame.payload, HEADER_SIZE);
  v.setUint32(HEADER_SIZE + n, crc32c(frame.payload), true);
  return out;
}

/**
 * COBS-stuffs raw bytes between two 0x00 delimiters: each run of up to 254
 * non-zero bytes gets a code byte (its length + 1) in front; a code below
 * 0xFF stands for a zero after its run, except at the end.
 *
 * @example
 * ```ts
 * import { stuff } from "./codec.ts";
 * const w = stuff(new Uint8Array([0x11, 0, 0x22]));
 * if (w.join() !== "0,2,17,2,34,0") throw new Error(w.join());
 * ```
 */
export function stuff(raw: Uint8Array): Uint8Array {
  const out = new Uint8Array(raw.length + Math.floor(raw.length / 254) + 3);
  let o = 1, codeAt = o++, code = 1;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (b !== 0) {
      out[o++] = b;
      code++;
    }
    if (b === 0 || code === 0xff) {
      out[codeAt] = code;
      codeAt = o++;
      code = 1;
    }
  }
  out[codeAt] = code;
  out[o++] = 0;
  return out.subarray(0, o);
}

/**
 * Encodes one frame as the bytes that go on the wire.
 *
 * @example
 * ```ts
 * import { encodeFrame, Op } from "./codec.ts";
 * const f = encodeFrame({ op: Op.HELLO, flags: 0, reqid: 1, payload: new Uint8Array() });
 * if (f.length !== 21 || f[0] !== 0 || f[20] !== 0) throw new Error();
 * ```
 */
export function encodeFrame(frame: Frame): Uint8Array {
  return stuff(encodeRawFrame(frame));
}

/** What the parser found. */
export type ParseEvent =
  | { kind: "frame"; frame: Frame }
  | { kind: "badcrc"; op: number; flags: number; reqid: number }
  | { kind: "toolong"; op: number; flags: number; reqid: number; length: number };

/**
 * Streaming frame parser: push bytes in, take events out. Bytes are
 * unstuffed as they arrive; each 0x00 ends a frame. A frame whose header CRC
 * fails is not a frame: its wire bytes are counted in
 * {@linkcode FrameParser.dropped}. A frame with a good header but anything
 * else wrong (a bad payload CRC, bytes lost or added) is a `badcrc` event.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameParser, Op } from "./codec.ts";
 * const p = new FrameParser();
 * const f = encodeFrame({ op: Op.INFO, flags: 0, reqid: 7, payload: new Uint8Array([1]) });
 * p.push(new Uint8Array([1, 2, 3, ...f]));
 * const ev = p.next();
 * if (ev?.kind !== "frame" || ev.frame.reqid !== 7 || p.dropped !== 4) throw new Error();
 * ```
 */
export class FrameParser {
  #raw = new Uint8Array(MAX_RAW);
  #len = 0;
  #wire = 0;
  #left = 0;
  #zero = false;
  #bad = false;
  #events: ParseEvent[] = [];
  #head = 0;
  /** Wire bytes of non-frames (garbage, headers hit by noise), each with its ending 0x00. */
  dropped = 0;

  /** Appends received bytes. */
  push(data: Uint8Array): void {
    const raw = this.#raw;
    for (let i = 0; i < data.length; i++) {
      const b = data[i];
      if (b === 0) {
        if (this.#wire !== 0) this.#end();
        continue;
      }
      this.#wire++;
      if (this.#left !== 0) {
        if (this.#len < raw.length) raw[this.#len++] = b;
        else this.#bad = true;
        this.#left--;
      } else {
        if (this.#zero) {
          if (this.#len < raw.length) raw[this.#len++] = 0;
          else this.#bad = true;
        }
        this.#zero = b !== 0xff;
        this.#left = b - 1;
      }
    }
  }

  /** A delimiter ended a frame: evaluate it. */
  #end(): void {
    const b = this.#raw, n = this.#len, wire = this.#wire + 1;
    const bad = this.#bad || this.#left !== 0;
    this.#len = this.#wire = this.#left = 0;
    this.#zero = this.#bad = false;
    const v = new DataView(b.buffer, b.byteOffset);
    if (
      n < HEADER_SIZE || b[0] !== MAGIC0 || b[1] !== MAGIC1 ||
      v.getUint32(10, true) !== crc32c(b.subarray(0, 10))
    ) {
      this.dropped += wire;
      return;
    }
    const op = b[2], flags = b[3], reqid = v.getUint16(4, true), length = v.getUint32(6, true);
    if (length > MAX_PAYLOAD) {
      this.#events.push({ kind: "toolong", op, flags, reqid, length });
    } else if (
      bad || n !== HEADER_SIZE + length + TRAILER_SIZE ||
      v.getUint32(HEADER_SIZE + length, true) !==
        crc32c(b.subarray(HEADER_SIZE, HEADER_SIZE + length))
    ) {
      this.#events.push({ kind: "badcrc", op, flags, reqid });
    } else {
      const payload = b.slice(HEADER_SIZE, HEADER_SIZE + length);
      this.#events.push({ kind: "frame", frame: { op, flags, reqid, payload } });
    }
  }

  /** Whether bytes of an unfinished frame are buffered. */
  get partial(): boolean {
    return this.#wire !== 0;
  }

  /** The next event, or `undefined` when more bytes are needed. */
  next(): ParseEvent | undefined {
    if (this.#head === this.#events.length) return undefined;
    const ev = this.#events[this.#head++];
    if (this.#head === this.#events.length) this.#events.length = this.#head = 0;
    return ev;
  }
}

/** Little-endian payload writer. */
export class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  /** A writer with room for `size` bytes. */
  constructor(size: number) {
    this.#buf = new Uint8Array(size);
    this.#view = new DataView(this.#buf.buffer);
  }
  /** Appends a u8. */
  u8(v: number): this {
    this.#view.setUint8(this.#pos, v);
    this.#pos += 1;
    return this;
  }
  /** Appends a u16. */
  u16(v: number): this {
    this.#view.setUint16(this.#pos, v, true);
    this.#pos += 2;
    return this;
  }
  /** Appends a u32. */
  u32(v: number): this {
    this.#view.setUint32(this.#pos, v >>> 0, true);
    this.#pos += 4;
    return this;
  }
  /** Appends a u64 from a bigint or a safe integer. */
  u64(v: bigint | number): this {
    this.#view.setBigUint64(this.#pos, BigInt(v), true);
    this.#pos += 8;
    return this;
  }
  /** Appends bytes. */
  bytes(b: Uint8Array): this {
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
    return this;
  }
  /** The bytes written so far. */
  done(): Uint8Array {
    return this.#buf.subarray(0, this.#pos);
  }
}

/** Little-endian payload reader; throws {@linkcode ProtocolError} past the end. */
export class Reader {
  #view: DataView;
  #buf: Uint8Array;
  /** Current offset. */
  pos = 0;
  /** Reads `buf`. */
  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  #need(n: number) {
    if (this.pos + n > this.#buf.length) {
      throw new ProtocolError(
        `payload too short: need ${this.pos + n} bytes, have ${this.#buf.length}`,
      );
    }
  }
  /** Reads a u8. */
  u8(): number {
    this.#need(1);
    return this.#view.getUint8(this.pos++);
  }
  /** Reads a u16. */
  u16(): number {
    this.#need(2);
    const v = this.#view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  /** Reads a u32. */
  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** Reads an i32. */
  i32(): number {
    this.#need(4);
    const v = this.#view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** Reads a u64 as a number (exact below 2^53). */
  u64(): number {
    this.#need(8);
    const v = this.#view.getBigUint64(this.pos, true);
    this.pos += 8;
    return Number(v);
  }
  /** Reads n bytes (a copy). */
  bytes(n: number): Uint8Array {
    this.#need(n);
    const b = this.#buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** Reads a u8-length-prefixed UTF-8 string. */
  str(): string {
    return new TextDecoder().decode(this.bytes(this.u8()));
  }
  /** How many bytes are not read yet. */
  get left(): number {
    return this.#buf.length - this.pos;
  }
  /** The bytes not read yet. */
  rest(): Uint8Array {
    const b = this.#buf.slice(this.pos);
    this.pos = this.#buf.length;
    return b;
  }
}

/** A malformed or unexpected frame from the node. */
export class ProtocolError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "PROTOCOL";
  /** The error's name. */
  override name = "ProtocolError";
}
