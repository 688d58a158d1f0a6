/**
 * A client for one node: pipelined requests within the node's receive
 * window, retransmission after a NAK or a timeout, and the high-level
 * operations (resumable chunk put, verified get, list, journal).
 *
 * @module
 */
import { chunkId } from "../ids.ts";
import { formatBytes } from "../units.ts";
import { PifsError } from "../errors.ts";
import {
  encodeFrame,
  FLAG_RESPONSE,
  type Frame,
  FrameParser,
  MAX_DATA,
  Op,
  opToStr,
  PROTOCOL_VERSION,
  ProtocolError,
  Reader,
  Status,
  statusToStr,
  wireSize,
  Writer,
} from "./codec.ts";

/** A byte stream to a node: a serial port, a pty, or a child's stdio. */
export interface ByteLink {
  /** Bytes from the node. */
  readable: ReadableStream<Uint8Array>;
  /** Sends bytes to the node (resolves once written). */
  write(data: Uint8Array): Promise<void>;
  /** Closes the link. */
  close(): Promise<void>;
}

/** Options of {@linkcode NodeClient.connect}. */
export interface ClientOptions {
  /** Line rate in baud, used to scale timeouts (default 115200). */
  baud?: number;
  /** Base response timeout in ms, on top of the time the bytes need on the line (default 1500). */
  timeoutMs?: number;
  /** Retransmissions of one request before it fails (default 8). */
  retries?: number;
  /** Retransmissions of the opening HELLO (default: `retries`): keep it small to find a dead node fast. */
  helloRetries?: number;
  /** Data bytes per PUT_DATA / GET frame (default 4096, at most 16384). */
  frameData?: number;
  /** Called with every byte count written, for wire accounting. */
  onWrite?: (bytes: number) => void;
}

/** A failed request: names the node, the operation and the status. */
export class NodeError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "NODE";
  /** The error's name. */
  override name = "NodeError";
  /** The operation's name. */
  readonly op: string;
  /** The node's status code ({@linkcode Status}). */
  readonly status: number;
  /** A node error for `op` with `status`. */
  constructor(op: string, status: number, detail = "") {
    super(`${op}: ${statusToStr(status)}${detail ? ` (${detail})` : ""}`);
    this.op = op;
    this.status = status;
  }
}

/** The node did not answer in time, even after retransmissions. */
export class TimeoutError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "TIMEOUT";
  /** The error's name. */
  override name = "TimeoutError";
}

/** A GET answered with another length than asked: likely the answer to another request. */
class WrongLengthError extends ProtocolError {}

/** What HELLO reports. */
export interface Hello {
  /** Protocol version. */
  protocol: number;
  /** Receive window in bytes. */
  window: number;
  /** Largest data part of a frame. */
  maxData: number;
  /** Board serial number. */
  serial: bigint;
  /** Card state: 0, or why the node has no store (a {@linkcode Status}). */
  cardStatus: number;
  /** Bytes of a put the node holds past a gap (a lost frame). */
  putAhead: number;
  /** Board name ("hosted", "raspi3b", "raspi0"). */
  board: string;
  /** Firmware version. */
  firmware: string;
}

const SD_INIT_STEPS: Record<number, string> = {
  [-1]: "controller reset",
  [-2]: "SD clock at 400 kHz",
  [-3]: "CMD0: the card does not answer",
  [-4]: "ACMD41: no answer",
  [-5]: "ACMD41: the card never became ready",
  [-6]: "CMD2: card id",
  [-7]: "CMD3: card address",
  [-8]: "CMD9: card size",
  [-9]: "CMD7: select",
  [-10]: "CMD16: block length",
  [-11]: "SD clock at 25 MHz",
  [-12]: "the card reports no capacity",
};

/**
 * The failed step of a Pi's SD card initialisation (INFO's `cardInitStep`),
 * in words, e.g. `-3` → `step -3, CMD0: the card does not answer`.
 *
 * @example
 * ```ts
 * import { sdInitStepText } from "./client.ts";
 * if (!sdInitStepText(-5).includes("never became ready")) throw new Error();
 * ```
 */
export function sdInitStepText(step: number): string {
  return `step ${step}${SD_INIT_STEPS[step] ? `, ${SD_INIT_STEPS[step]}` : ""}`;
}

/** What a Pi reports of its SD card (INFO; see docs/PROTOCOL.md). */
export interface SdCardInfo {
  /** The card's capacity in bytes (the whole card, not the store). */
  bytes: number;
  /** CID: manufacturer id (assigned by the SD Association). */
  manufacturerId: number;
  /** CID: OEM/application id, two ASCII characters. */
  oemId: string;
  /** CID: product name, five ASCII characters. */
  product: string;
  /** CID: product revision, as `n.m`. */
  revision: string;
  /** CID: serial number, 8 hex digits. */
  serial: string;
  /** CID: manufacturing month, `YYYY-MM` (null: not given). */
  manufactured: string | null;
  /** From the SD status: `class 0/2/4/6/10` (null: the card did not say). */
  speedClass: string | null;
  /** From the SD status: the UHS speed grade, 0, 1 or 3 (null: not said). */
  uhsGrade: number | null;
  /** Data lines in use: 1 or 4. */
  busWidth: number;
  /** SDHC/SDXC (block addressed) rather than SDSC. */
  highCapacity: boolean;
  /** The SD clock in use, in Hz. */
  clockHz: number;
}

/** What a Pi reports of its CPU (INFO). */
export interface CpuInfo {
  /** The instruction cache is on. */
  instructionCache: boolean;
  /** The data cache is on (it needs the MMU, which the firmware leaves off). */
  dataCache: boolean;
  /** Misaligned accesses fault (an alignment-checked build). */
  alignmentChecks: boolean;
  /** Branch prediction is on. */
  branchPrediction: boolean;
  /** SHA-256 over RAM, measured at boot, in MB/s (0: not measured). */
  sha256MBps: number;
}

const SPEED_CLASSES = ["class 0", "class 2", "class 4", "class 6", "class 10"];

/**
 * INFO's bytes 128..163: a Pi's SD card (only when it has one: all zero on
 * a hosted node) and its CPU (only when measured).
 */
function parsePi(r: Reader): { sdCard?: SdCardInfo; cpu?: CpuInfo } {
  if (r.left < 36) return {}; // an older node's answer ends before them
  const ascii = (b: Uint8Array) =>
    String.fromCharCode(...b).replace(/[^\x20-\x7e]/g, "?").trimEnd();
  const bytes = r.u64(), mid = r.u8(), oem = r.bytes(2), pnm = r.bytes(5), prv = r.u8();
  const speed = r.u8(), mdt = r.u16(), psn = r.u32(), uhs = r.u8(), width = r.u8();
  const hc = r.u8(), flags = r.u8(), clockHz = r.u32(), kbps = r.u32();
  const out: { sdCard?: SdCardInfo; cpu?: CpuInfo } = {};
  if (bytes > 0) {
    out.sdCard = {
      bytes,
      manufacturerId: mid,
      oemId: ascii(oem),
      product: ascii(pnm),
      revision: `${prv >> 4}.${prv & 15}`,
      serial: psn.toString(16).padStart(8, "0"),
      manufactured: mdt ? `${2000 + (mdt >> 4)}-${String(mdt & 15).padStart(2, "0")}` : null,
      speedClass: speed === 0xff ? null : SPEED_CLASSES[speed] ?? `code ${speed}`,
      uhsGrade: uhs === 0xff ? null : uhs,
      busWidth: width,
      highCapacity: hc !== 0,
      clockHz,
    };
  }
  if (flags || kbps) {
    out.cpu = {
      instructionCache: (flags & 1) !== 0,
      dataCache: (flags & 2) !== 0,
      alignmentChecks: (flags & 4) !== 0,
      branchPrediction: (flags & 8) !== 0,
      sha256MBps: kbps / 1000,
    };
  }
  return out;
}

/** What a Pi said of its SD card, in a few words: `SC16G (mfr 0x03, 16 GiB, class 10, U1, 4-bit at 25 MHz)`. */
export function sdCardText(c: SdCardInfo): string {
  const size = formatBytes(c.bytes);
  return `${c.product || "?"} (mfr 0x${c.manufacturerId.toString(16).padStart(2, "0")}, ${size}, ${
    c.speedClass ?? "class unknown"
  }${c.uhsGrade ? `, U${c.uhsGrade}` : ""}, ${c.busWidth}-bit at ${
    Math.round(c.clockHz / 1e5) / 10
  } MHz)`;
}

/** What INFO (and FORMAT) report. */
export interface NodeInfo {
  /** 0 when the node has a store, else why not ({@linkcode Status}). */
  status: number;
  /** Cluster id (hex). */
  clusterId: string;
  /** Node id within the cluster. */
  nodeId: number;
  /** Bytes available for chunk data. */
  capacity: number;
  /** Bytes of chunk data still free. */
  free: number;
  /** Committed chunks. */
  chunks: number;
  /** End of the metadata journal: an absolute offset (bytes ever appended, trimmed ones included). */
  journalLength: number;
  /** First journal byte the node still holds (0 until a JOURNAL_TRIM; 0 from a node that does not report it). */
  journalStart: number;
  /** The board's revision code from the Pi's mailbox (0: unknown, e.g. a hosted node). */
  boardRevision: number;
  /**
   * The SD card's start-up on a Pi: 0, or the step of its initialisation
   * that failed last ({@linkcode sdInitStepText} names it).
   */
  cardInitStep: number;
  /** Initialisations of the SD card that failed before the last one (it is tried 3 times). */
  cardInitTries: number;
  /** RAM the node's CPU has, from the Pi's mailbox (0: unknown). */
  memoryBytes: number;
  /** First sector of PIFS/STORE.DAT on the card. */
  storeLba: number;
  /** Size of PIFS/STORE.DAT in sectors. */
  storeSectors: number;
  /** Sectors used in the active log half. */
  logUsed: number;
  /** Sectors in one log half. */
  logHalf: number;
  /** Superblock generation. */
  generation: number;
  /** Log epoch. */
  epoch: number;
  /** Frames the node accepted since boot. */
  framesOk: number;
  /** Frames the node rejected since boot (CRC, length). */
  framesBad: number;
  /** NAKs the node sent since boot (payload CRC errors). */
  naks: number;
  /** Bytes the node received from the host since boot. */
  bytesIn: number;
  /** A Pi's SD card: its CID, capacity and speed (absent: a hosted node, or older firmware). */
  sdCard?: SdCardInfo;
  /** A Pi's CPU: caches and its SHA-256 speed (absent: a hosted node, or older firmware). */
  cpu?: CpuInfo;
}

/** Options of {@linkcode NodeClient.format}. */
export interface FormatOptions {
  /** 16-byte cluster id. */
  clusterId: Uint8Array;
  /** Node id within the cluster. */
  nodeId: number;
  /** Store size in bytes (0: all free space but `reserveBytes`). */
  sizeBytes?: number;
  /** Free space to leave on the FAT volume when sizing by free space. */
  reserveBytes?: number;
  /** Re-format a card of another cluster (destroys its store). */
  force?: boolean;
}

/** A chunk on a node. */
export interface ChunkEntry {
  /** Chunk id: hex SHA-256 of its content. */
  id: string;
  /** Size in bytes. */
  size: number;
}

/** Options of {@linkcode NodeClient.request}. */
export interface RequestOptions {
  /** Expected size of the reply, for the timeout (default 64). */
  replyBytes?: number;
  /** Time the node may need to do the work (ms), added to the timeout. */
  workMs?: number;
  /** Abandons the request. */
  signal?: AbortSignal;
  /** Retransmissions before it fails (default: the client's). */
  retries?: number;
}

/** Smallest data frame on a lossy line: with 0.1 % of bytes lost, three in
 * four 256-byte frames get through, against one in two of 512 bytes. */
const MIN_FRAME = 256;

interface Pending {
  /** Its request id. */
  id: number;
  retries: number;
  /** Retries were not set by the caller: keep trying while the node is heard. */
  patient: boolean;
  bytes: Uint8Array;
  /** Order of the last transmission among all sent by this client. */
  sentSeq: number;
  replyBytes: number;
  workMs: number;
  op: number;
  tries: number;
  timer?: ReturnType<typeof setTimeout>;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
}

/**
 * Hex form of bytes.
 *
 * @example
 * ```ts
 * import { toHex } from "./client.ts";
 * if (toHex(new Uint8Array([1, 171])) !== "01ab") throw new Error();
 * ```
 */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Bytes of a hex string; throws a RangeError naming the bad input.
 *
 * @example
 * ```ts
 * import { fromHex } from "./client.ts";
 * if (fromHex("01ab")[1] !== 171) throw new Error();
 * ```
 */
export function fromHex(hex: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new RangeError(`not a hex string: '${hex}'`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Talks to one node over a {@linkcode ByteLink}.
 *
 * @example
 * ```ts ignore
 * import { NodeClient } from "./client.ts";
 * import { SerialPort } from "./serial.ts";
 * const port = await SerialPort.open("/dev/ttyUSB0", { baud: 115200 });
 * const node = await NodeClient.connect(port, { baud: 115200 });
 * console.log(await node.info());
 * await node.close();
 * ```
 */
export class NodeClient {
  #link: ByteLink;
  #parser = new FrameParser();
  #pending = new Map<number, Pending>();
  // A random first request id: answers still on the line from a previous
  // session (a host that died) are not taken for this session's.
  #nextId = 1 + (crypto.getRandomValues(new Uint16Array(1))[0] % 0xfffe);
  #inflight = 0;
  #sendSeq = 0;
  #replies = 0;
  #waiters: (() => void)[] = [];
  #closed = false;
  /** When the node was last heard from (a response, damaged or not). */
  #lastHeard = 0;
  /** When each request id last stopped being pending (ms, performance.now()). */
  #freedAt = new Float64Array(0x10000);
  #readerDone: Promise<void>;
  #opts: Required<Omit<ClientOptions, "onWrite" | "helloRetries">> & Pick<ClientOptions, "onWrite">;
  #writeChain: Promise<void> = Promise.resolve();
  /** What the node said in HELLO. */
  hello!: Hello;
  /** Bytes this client has written to the link. */
  bytesWritten = 0;
  /** Requests sent again after a NAK or a timeout. */
  retransmissions = 0;
  /** Data frames in flight during a put: halved on a loss, grown by one per clean window. */
  #cwnd = 0;
  /** Data bytes per frame: halved on a loss (to MIN_FRAME), doubled after clean windows. */
  #frame = 0;

  private constructor(link: ByteLink, opts: ClientOptions) {
    this.#link = link;
    this.#opts = {
      baud: opts.baud ?? 115200,
      timeoutMs: opts.timeoutMs ?? 1500,
      retries: opts.retries ?? 8,
      frameData: Math.min(opts.frameData ?? 4096, MAX_DATA),
      onWrite: opts.onWrite,
    };
    this.#readerDone = this.#readLoop();
  }

  /** Opens a session: HELLO, retried until the node answers. */
  static async connect(link: ByteLink, opts: ClientOptions = {}): Promise<NodeClient> {
    const c = new NodeClient(link, opts);
    try {
      c.hello = c.#parseHello(
        await c.request(Op.HELLO, new Uint8Array(), { retries: opts.helloRetries }),
      );
      if (c.hello.protocol !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          `node speaks protocol v${c.hello.protocol}, this host v${PROTOCOL_VERSION}`,
        );
      }
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  async #readLoop(): Promise<void> {
    const reader = this.#link.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#parser.push(value);
        for (let ev = this.#parser.next(); ev; ev = this.#parser.next()) {
          const flags = ev.kind === "frame" ? ev.frame.flags : ev.flags;
          if (flags & FLAG_RESPONSE) this.#lastHeard = performance.now();
          if (ev.kind === "frame") {
            if (!(ev.frame.flags & FLAG_RESPONSE)) continue;
            const p = this.#pending.get(ev.frame.reqid);
            if (!p) continue; // a late answer to a request already answered
            if (ev.frame.op === Op.NAK) this.#retransmit(ev.frame.reqid, p);
            else if (ev.frame.op === p.op) this.#settle(ev.frame.reqid, p, ev.frame);
          } else {
            // A damaged response: ask again rather than wait for the timeout.
            const p = this.#pending.get(ev.reqid);
            if (p && ev.flags & FLAG_RESPONSE) this.#retransmit(ev.reqid, p);
          }
        }
      }
    } catch (e) {
      if (!this.#closed) this.#failAll(e instanceof Error ? e : new Error(String(e)));
    } finally {
      reader.releaseLock();
    }
    if (!this.#closed) this.#failAll(new ProtocolError("the link to the node closed"));
  }

  #failAll(e: Error) {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
      this.#release(p);
      p.reject(e);
    }
  }

  #settle(id: number, p: Pending, f: Frame) {
    clearTimeout(p.timer);
    this.#pending.delete(id);
    this.#release(p);
    p.resolve(f);
    // Fast retransmit: the node answers in order, so a request sent before
    // this one and still unanswered was lost on the way, or its answer was.
    for (const [qid, q] of this.#pending) {
      if (q.sentSeq < p.sentSeq) this.#retransmit(qid, q, true);
    }
  }

  #release(p: Pending) {
    this.#freedAt[p.id] = performance.now();
    this.#inflight -= p.bytes.length;
    this.#replies -= p.replyBytes;
    const w = this.#waiters;
    this.#waiters = [];
    for (const fn of w) fn();
  }

  #timeoutFor(p: Pending): number {
    // Time for everything in flight, both ways, to cross the line, the
    // node's work, and slack.
    const lineMs = ((this.#inflight + this.#replies) * 10 * 1000) / this.#opts.baud;
    return this.#opts.timeoutMs + 2 * lineMs + p.workMs;
  }

  #arm(id: number, p: Pending) {
    clearTimeout(p.timer);
    p.timer = setTimeout(() => this.#retransmit(id, p, true), this.#timeoutFor(p));
  }

  #retransmit(id: number, p: Pending, timedOut = false) {
    if (!this.#pending.has(id)) return;
    // A noisy line is not a dead node: while damaged or good frames keep
    // coming from the node, a request with the default patience goes on
    // (up to 32 times its retries) instead of failing the operation.
    const heard = performance.now() - this.#lastHeard < 4 * this.#opts.timeoutMs;
    if (p.tries >= p.retries && !(p.patient && heard && p.tries < 32 * p.retries)) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
      this.#release(p);
      p.reject(
        timedOut
          ? new TimeoutError(`${opToStr(p.op)}: no answer after ${p.tries + 1} tries`)
          : new ProtocolError(`${opToStr(p.op)}: rejected ${p.tries + 1} times (CRC errors)`),
      );
      return;
    }
    p.tries++;
    this.retransmissions++;
    p.sentSeq = ++this.#sendSeq;
    this.#send(p.bytes, id).catch((e) => this.#failAll(e));
    this.#arm(id, p);
  }

  #send(bytes: Uint8Array, id: number): Promise<void> {
    this.#writeChain = this.#writeChain.then(async () => {
      // A request abandoned while it waited in the queue is not sent at all.
      if (this.#pending.get(id)?.bytes !== bytes) return;
      await this.#link.write(bytes);
      this.bytesWritten += bytes.length;
      this.#opts.onWrite?.(bytes.length);
    });
    return this.#writeChain;
  }

  /**
   * Sends one request and resolves with its response frame, waiting for room
   * in the node's receive window first. An aborted request stops being
   * retransmitted, frees its window share and rejects with the signal's reason.
   */
  async request(op: number, payload: Uint8Array, opts: RequestOptions = {}): Promise<Frame> {
    if (this.#closed) throw new ProtocolError("the client is closed");
    const size = wireSize(payload.length);
    const window = this.hello?.window ?? size;
    while (this.#inflight > 0 && this.#inflight + size > window) {
      await new Promise<void>((r) => this.#waiters.push(r));
      if (this.#closed) throw new ProtocolError("the client is closed");
    }
    opts.signal?.throwIfAborted();
    // An id is not reused while a late answer to its last request may still
    // be on the line (a retransmitted request is answered twice; an abandoned
    // one may be answered after all): such an answer would settle the new one.
    const now = performance.now(), quiet = 4 * this.#opts.timeoutMs + 2000;
    let id = this.#nextId;
    for (let k = 0; k < 0xffff; k++) {
      if (!this.#pending.has(id) && !(now - (this.#freedAt[id] || -Infinity) < quiet)) break;
      id = (id % 0xffff) + 1;
    }
    while (this.#pending.has(id)) id = (id % 0xffff) + 1;
    this.#nextId = (id % 0xffff) + 1;
    const bytes = encodeFrame({ op, flags: 0, reqid: id, payload });
    const replyBytes = opts.replyBytes ?? 64;
    this.#inflight += bytes.length;
    this.#replies += replyBytes;
    const done = new Promise<Frame>((resolve, reject) => {
      const p: Pending = {
        id,
        retries: opts.retries ?? this.#opts.retries,
        patient: opts.retries === undefined,
        bytes,
        sentSeq: ++this.#sendSeq,
        replyBytes,
        workMs: opts.workMs ?? 0,
        op,
        tries: 0,
        resolve,
        reject,
      };
      this.#pending.set(id, p);
      this.#arm(id, p);
      opts.signal?.addEventListener("abort", () => {
        if (this.#pending.get(id) !== p) return;
        clearTimeout(p.timer);
        this.#pending.delete(id);
        this.#release(p);
        reject(opts.signal!.reason);
      }, { once: true });
    });
    this.#send(bytes, id).catch((e) => this.#failAll(e));
    return await done;
  }

  /**
   * Sends a request and returns its status and a reader over the rest of the
   * response; a status other than OK or one of `opts.accept` throws a
   * {@linkcode NodeError}.
   */
  async call(
    op: number,
    payload: Uint8Array,
    opts: RequestOptions & { accept?: number[] } = {},
  ): Promise<[number, Reader]> {
    const f = await this.request(op, payload, opts);
    const r = new Reader(f.payload);
    const status = r.i32();
    if (status !== Status.OK && !(opts.accept ?? []).includes(status)) {
      throw new NodeError(opToStr(op), status);
    }
    return [status, r];
  }

  #parseHello(f: Frame): Hello {
    const r = new Reader(f.payload);
    const status = r.i32();
    if (status !== 0) throw new NodeError("HELLO", status);
    const protocol = r.u16();
    r.u16();
    const window = r.u32(), maxData = r.u32();
    const serialLo = BigInt(r.u32()), serialHi = BigInt(r.u32());
    const cardStatus = r.i32(), putAhead = r.u32();
    const board = r.str(), firmware = r.str();
    return {
      protocol,
      window,
      maxData,
      serial: serialLo | (serialHi << 32n),
      cardStatus,
      putAhead,
      board,
      firmware,
    };
  }

  static #parseInfo(r: Reader, status: number): NodeInfo {
    return {
      status,
      clusterId: toHex(r.bytes(16)),
      nodeId: r.u32(),
      capacity: r.u64(),
      free: r.u64(),
      chunks: r.u32(),
      journalLength: r.u64(),
      storeLba: r.u64(),
      storeSectors: r.u64(),
      logUsed: r.u32(),
      logHalf: r.u32(),
      generation: r.u32(),
      epoch: r.u32(),
      framesOk: r.u32(),
      framesBad: r.u32(),
      naks: r.u32(),
      bytesIn: r.u64(),
      // Appended to the layout later: an older node's answer ends before it.
      journalStart: r.left >= 8 ? r.u64() : 0,
      boardRevision: r.left >= 4 ? r.u32() : 0,
      memoryBytes: r.left >= 4 ? r.u32() : 0,
      cardInitStep: r.left >= 4 ? r.i32() : 0,
      cardInitTries: r.left >= 4 ? r.u32() : 0,
      ...parsePi(r),
    };
  }

  /** INFO: the node's store and counters. `status` tells why there is no store. */
  async info(): Promise<NodeInfo> {
    const f = await this.request(Op.INFO, new Uint8Array(), { replyBytes: 164 });
    const r = new Reader(f.payload);
    return NodeClient.#parseInfo(r, r.i32());
  }

  /** FORMAT: creates PIFS/STORE.DAT and a fresh store (or opens it if it is this cluster's). */
  format(opts: FormatOptions): Promise<NodeInfo> {
    return this.#format(opts, opts.force ? 1 : 0);
  }

  /**
   * Grows this cluster's store in place over the free clusters after it, to
   * `sizeBytes` (0: all but `reserveBytes` of them). Chunks stay as they are.
   */
  grow(opts: Omit<FormatOptions, "force">): Promise<NodeInfo> {
    return this.#format(opts, 2);
  }

  async #format(opts: FormatOptions, flags: number): Promise<NodeInfo> {
    if (opts.clusterId.length !== 16) throw new RangeError("cluster id must be 16 bytes");
    const now = new Date();
    const fatDate = ((now.getUTCFullYear() - 1980) << 9) | ((now.getUTCMonth() + 1) << 5) |
      now.getUTCDate();
    const fatTime = (now.getUTCHours() << 11) | (now.getUTCMinutes() << 5) |
      (now.getUTCSeconds() >> 1);
    const nonce = crypto.getRandomValues(new Uint32Array(1))[0];
    const w = new Writer(48).u32(flags).bytes(opts.clusterId).u32(opts.nodeId)
      .u64(Math.floor((opts.sizeBytes ?? 0) / 512)).u64(Math.floor((opts.reserveBytes ?? 0) / 512))
      .u32(nonce).u16(fatDate).u16(fatTime);
    // The node scans the FAT for free space and writes the store's start.
    const f = await this.request(Op.FORMAT, w.done(), { workMs: 30000, replyBytes: 164 });
    const r = new Reader(f.payload);
    const status = r.i32();
    if (status !== 0) throw new NodeError(flags & 2 ? "FORMAT (grow)" : "FORMAT", status);
    return NodeClient.#parseInfo(r, status);
  }

  /**
   * Stores a chunk: its id is the SHA-256 of `data`. Resumes where the node
   * says it stands; returns the id and whether the node already had it.
   */
  async putChunk(
    data: Uint8Array,
    opts: { id?: string; onProgress?: (sent: number) => void } = {},
  ): Promise<{ id: string; existed: boolean; resumedAt: number }> {
    const id = opts.id ?? await chunkId(data);
    const idb = fromHex(id);
    for (let attempt = 0;; attempt++) {
      const [st, r] = await this.call(
        Op.PUT_BEGIN,
        new Writer(36).bytes(idb).u32(data.length).done(),
        { accept: [Status.EEXIST] },
      );
      if (st === Status.EEXIST) return { id, existed: true, resumedAt: data.length };
      const handle = r.u32();
      const resumedAt = r.u32();
      let have = resumedAt;
      const maxFrame = this.#opts.frameData;
      // In flight: what the node's window holds, but no more than about half
      // a second of the line, so that small requests (a journal entry, the
      // next chunk's BEGIN) do not queue for seconds behind bulk data.
      const maxWnd = () =>
        Math.max(
          2,
          Math.floor(
            Math.min(this.hello.window, this.#opts.baud / 10 / 2) / (this.#frame + 26),
          ),
        );
      if (!this.#frame) this.#frame = maxFrame;
      if (!this.#cwnd) this.#cwnd = maxWnd();
      let clean = 0; // frames answered since the last loss
      // Selective repeat: frames go out in order, pipelined within the
      // window, each retransmitted on its own when it or its answer is lost
      // (NAK, damaged answer, fast retransmit, timeout). The node holds the
      // frames after a lost one (up to `putAhead` bytes past what it has in
      // order), so a loss costs one frame, not the round. ERANGE (past what
      // it can hold) or ENOENT (the put vanished) end the round; the next
      // starts where the node stands.
      const ahead = Math.max(this.hello.putAhead ?? 0, MIN_FRAME);
      let stalls = 0;
      let vanished = false;
      while (have < data.length) {
        const round = new AbortController();
        const startedAt = have;
        let rewind = false, failure: unknown;
        const inflight = new Set<Promise<void>>();
        // Waits for an answer. A lost frame with no later frame in flight
        // (the last of a chunk, or of a full window) has no later answer to
        // resend it, only its timeout: after a quiet spell, a small probe
        // (HELLO) gets an answer that resends everything before it at once.
        const waitOrProbe = async () => {
          const quiet = 50 + (2 * (this.#frame + 64) * 10 * 1000) / this.#opts.baud;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const elapsed = new Promise<"quiet">((r) => timer = setTimeout(() => r("quiet"), quiet));
          const first = await Promise.race([...inflight, elapsed]);
          clearTimeout(timer);
          if (first === "quiet" && inflight.size) {
            await this.call(Op.HELLO, new Uint8Array(), { retries: 0 }).catch(() => {});
          }
        };
        let off = have;
        while (off < data.length && !rewind && failure === undefined) {
          const step = this.#frame;
          const end = Math.min(off + step, data.length);
          // Room: frames in flight within cwnd, bytes past `have` within ahead.
          if (inflight.size && (inflight.size >= Math.max(4, this.#cwnd) || end - have > ahead)) {
            await waitOrProbe();
            continue;
          }
          const piece = data.subarray(off, end);
          const payload = new Writer(8 + piece.length).u32(handle).u32(off).bytes(piece).done();
          const before = this.retransmissions;
          // A frame above the smallest size is sent twice at most: past that,
          // frames this size do not get through this line, and the round
          // ends to go on with smaller ones. The smallest are patient.
          const small = piece.length <= MIN_FRAME;
          const p: Promise<void> = this.call(Op.PUT_DATA, payload, {
            accept: [Status.ERANGE],
            signal: round.signal,
            retries: small ? undefined : 1,
          }).then(([s, rr]) => {
            const h = rr.u32();
            if (h > have) have = h;
            opts.onProgress?.(have);
            if (s === Status.ERANGE) {
              rewind = true;
              round.abort(new DOMException("rewind", "AbortError"));
            }
            if (this.retransmissions > before) {
              // Bytes lost on the line, not congestion: smaller frames get
              // through more often; as many stay in flight, so the frames
              // after a lost one keep coming and their answers resend it.
              this.#frame = Math.max(MIN_FRAME, Math.floor(this.#frame / 2));
              clean = 0;
            } else if (++clean >= Math.max(16, this.#cwnd)) {
              // Sixteen clean answers in a row: the line may take more.
              clean = 0;
              this.#gain(maxFrame, maxWnd());
            }
          }, (e) => {
            if (round.signal.aborted && e === round.signal.reason) return;
            if (!small && (e instanceof TimeoutError || e instanceof ProtocolError)) {
              this.#frame = Math.max(MIN_FRAME, Math.floor(this.#frame / 2));
              clean = 0;
              rewind = true;
              round.abort(new DOMException("rewind", "AbortError"));
              return;
            }
            if (failure === undefined) failure = e;
            round.abort(new DOMException("failed", "AbortError"));
          }).finally(() => inflight.delete(p));
          inflight.add(p);
          off = end;
        }
        while (inflight.size && !rewind && failure === undefined) await waitOrProbe();
        await Promise.all(inflight);
        if (failure !== undefined) {
          // The pending put vanished (node restarted, or evicted): begin again.
          if (failure instanceof NodeError && failure.status === Status.ENOENT && attempt < 3) {
            vanished = true;
            break;
          }
          throw failure;
        }
        if (have <= startedAt && ++stalls > 4 * this.#opts.retries) {
          throw new ProtocolError(`PUT_DATA of ${id}: no progress at byte ${have}`);
        }
        if (have > startedAt) stalls = 0;
      }
      if (vanished) continue; // begin again
      try {
        // The node reads the chunk back from the card and hashes it.
        await this.call(Op.PUT_COMMIT, new Writer(4).u32(handle).done(), { workMs: 2000 });
      } catch (e) {
        // A commit whose answer was lost and then repeated finds no pending put.
        if (e instanceof NodeError && e.status === Status.ENOENT && await this.has(id)) {
          return { id, existed: false, resumedAt };
        }
        throw e;
      }
      return { id, existed: false, resumedAt };
    }
  }

  // Additive increase, multiplicative decrease, as TCP does: a line that
  // loses frames gets fewer and smaller ones in flight, a clean one the most
  // the node's window allows.
  #loss() {
    this.#cwnd = Math.max(1, Math.floor(this.#cwnd / 2));
    this.#frame = Math.max(MIN_FRAME, Math.floor(this.#frame / 2));
  }

  #gain(maxFrame: number, maxWnd: number) {
    if (this.#frame < maxFrame) this.#frame = Math.min(maxFrame, this.#frame * 2);
    else this.#cwnd = Math.min(maxWnd, this.#cwnd + 1);
  }

  /** Reads a whole chunk (pipelined GETs) and checks its hash. */
  async getChunk(id: string): Promise<Uint8Array> {
    const idb = fromHex(id);
    const maxFrame = this.#opts.frameData;
    if (!this.#frame) this.#frame = maxFrame;
    const step = this.#frame;
    const retrans = this.retransmissions;
    const first = await this.#get(idb, 0, 0);
    const size = first.size;
    const out = new Uint8Array(size);
    const parts: Promise<void>[] = [];
    // Replies are what fills the line here: keep about a window of them coming.
    const maxOut = Math.max(2, Math.floor(this.hello.window / (step + 26)));
    for (let off = 0; off < size; off += step) {
      const n = Math.min(step, size - off);
      const p = this.#getRange(idb, off, n, out);
      p.catch(() => {});
      parts.push(p);
      if (parts.length >= maxOut) await parts[parts.length - maxOut];
    }
    await Promise.all(parts);
    // Damaged replies shrink the next chunk's frames; clean ones grow them.
    if (this.retransmissions > retrans) {
      this.#frame = Math.max(MIN_FRAME, Math.floor(this.#frame / 2));
    } else if (this.#frame < maxFrame) this.#frame = Math.min(maxFrame, this.#frame * 2);
    const got = await chunkId(out);
    if (got !== id) throw new NodeError("GET", Status.EBADHASH, `chunk ${id} read back as ${got}`);
    return out;
  }

  // Reads bytes off..off+n of a chunk into out. A reply that does not get
  // through twice is asked for again in halves, down to MIN_FRAME, where the
  // client's full patience applies: a noisy line costs time, not the read.
  async #getRange(
    id: Uint8Array,
    off: number,
    n: number,
    out: Uint8Array,
    mismatches = 0,
  ): Promise<void> {
    const small = n <= MIN_FRAME;
    try {
      const g = await this.#get(id, off, n, small ? undefined : 1);
      if (g.data.length !== n) {
        throw new WrongLengthError(`GET @${off}: ${g.data.length} bytes for ${n} asked`);
      }
      out.set(g.data, off);
    } catch (e) {
      if (small && e instanceof WrongLengthError && mismatches < 3) {
        // Not the answer to this request: ask again (the chunk's hash is checked at the end).
        return await this.#getRange(id, off, n, out, mismatches + 1);
      }
      if (small || !(e instanceof TimeoutError || e instanceof ProtocolError)) throw e;
      this.#frame = Math.max(MIN_FRAME, Math.floor(Math.min(this.#frame, n) / 2));
      const half = Math.max(MIN_FRAME, Math.ceil(n / 2));
      for (let o = off; o < off + n; o += half) {
        await this.#getRange(id, o, Math.min(half, off + n - o), out);
      }
    }
  }

  async #get(
    id: Uint8Array,
    off: number,
    n: number,
    retries?: number,
  ): Promise<{ size: number; data: Uint8Array }> {
    // The first read of a chunk makes the node verify all of it (8 MiB at most).
    const [, r] = await this.call(Op.GET, new Writer(40).bytes(id).u32(off).u32(n).done(), {
      retries,
      replyBytes: n + 30,
      workMs: off === 0 ? 2000 : 0,
    });
    const size = r.u32();
    return { size, data: r.rest() };
  }

  /** Whether the node holds a chunk. */
  async has(id: string): Promise<boolean> {
    return (await this.hasMany([id]))[0] !== undefined;
  }

  /** Sizes of the chunks the node holds among `ids` (undefined where absent). */
  async hasMany(ids: string[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = [];
    for (let i = 0; i < ids.length; i += 256) {
      const batch = ids.slice(i, i + 256);
      const w = new Writer(4 + 32 * batch.length).u32(batch.length);
      for (const id of batch) w.bytes(fromHex(id));
      const [, r] = await this.call(Op.HAS, w.done(), { replyBytes: 8 + 4 * batch.length + 18 });
      const n = r.u32();
      for (let k = 0; k < n; k++) {
        const size = r.u32();
        out.push(size === 0 ? undefined : size);
      }
    }
    return out;
  }

  /** Every chunk on the node, paged. */
  async listChunks(): Promise<ChunkEntry[]> {
    const out: ChunkEntry[] = [];
    let cursor = 0;
    while (cursor !== 0xffffffff) {
      const [, r] = await this.call(Op.LIST, new Writer(8).u32(cursor).u32(400).done(), {
        replyBytes: 12 + 36 * 400 + 18,
      });
      cursor = r.u32();
      const n = r.u32();
      for (let i = 0; i < n; i++) out.push({ id: toHex(r.bytes(32)), size: r.u32() });
    }
    return out;
  }

  /** Deletes a chunk; false if the node did not have it. */
  async deleteChunk(id: string): Promise<boolean> {
    const [st] = await this.call(Op.DELETE, fromHex(id), { accept: [Status.ENOENT] });
    return st === Status.OK;
  }

  /** Size of a chunk, or undefined. */
  async stat(id: string): Promise<number | undefined> {
    const [st, r] = await this.call(Op.STAT, fromHex(id), { accept: [Status.ENOENT] });
    return st === Status.OK ? r.u32() : undefined;
  }

  /** Appends to the metadata journal if it is `expected` bytes long; returns the new length. */
  async journalAppend(expected: number, data: Uint8Array): Promise<number> {
    const payload = new Writer(8 + data.length).u64(expected).bytes(data).done();
    const [st, r] = await this.call(Op.JOURNAL_APPEND, payload, { accept: [Status.ECONFLICT] });
    const len = r.u64();
    if (st === Status.ECONFLICT) {
      // Our own append whose answer was lost shows up as this exact length.
      if (len === expected + data.length) return len;
      throw new NodeError("JOURNAL_APPEND", st, `journal is ${len} bytes, expected ${expected}`);
    }
    return len;
  }

  /**
   * Forgets the journal before `offset` (JOURNAL_TRIM): a record boundary of
   * the node's journal, or past its end (the journal is then empty at
   * `offset` and takes its next append there). Returns the journal's start
   * and length after the request.
   */
  async journalTrim(offset: number): Promise<{ start: number; length: number }> {
    const [st, r] = await this.call(Op.JOURNAL_TRIM, new Writer(8).u64(offset).done(), {
      accept: [Status.EINVAL],
      replyBytes: 40,
    });
    const start = r.u64(), length = r.u64();
    if (st !== Status.OK) {
      throw new NodeError(
        "JOURNAL_TRIM",
        st,
        `offset ${offset} is not a record boundary of the journal [${start}, ${length}) or lies before it`,
      );
    }
    return { start, length };
  }

  /** Reads the journal from `offset` (at least its start) to its end. */
  async journalRead(offset = 0): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const [, r] = await this.call(
        Op.JOURNAL_READ,
        new Writer(12).u64(offset).u32(MAX_DATA).done(),
        { replyBytes: MAX_DATA + 30 },
      );
      const len = r.u64();
      const data = r.rest();
      parts.push(data);
      total += data.length;
      offset += data.length;
      if (offset >= len || data.length === 0) break;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** Verifies every chunk on the node against its hash; returns the damaged ones. */
  async scrub(): Promise<{ checked: number; bad: { id: string; status: number }[] }> {
    let cursor = 0, checked = 0;
    const bad: { id: string; status: number }[] = [];
    while (cursor !== 0xffffffff) {
      // 16 chunks of up to 8 MiB are read and hashed on the node per request.
      const [, r] = await this.call(Op.SCRUB, new Writer(8).u32(cursor).u32(16).done(), {
        replyBytes: 16 + 36 * 16 + 18,
        workMs: 30000,
      });
      cursor = r.u32();
      checked += r.u32();
      const n = r.u32();
      for (let i = 0; i < n; i++) bad.push({ id: toHex(r.bytes(32)), status: r.i32() });
    }
    return { checked, bad };
  }

  /** Ends the session and closes the link. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#failAll(new ProtocolError("the client is closed"));
    for (const w of this.#waiters) w();
    await this.#writeChain.catch(() => {});
    await this.#link.close();
    await this.#readerDone.catch(() => {});
  }
}
