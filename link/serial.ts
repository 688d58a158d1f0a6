/**
 * A small serial-port layer for Deno on Linux and macOS, over Deno FFI on
 * libc. It opens a tty (a USB-serial adapter, a Pi's UART or a pty), puts it
 * in raw mode at a given speed and exposes a {@link ReadableStream} of the
 * bytes that arrive plus a `write` that writes all bytes.
 *
 * Nothing here blocks the JS thread: the port is opened `O_NONBLOCK`, waiting
 * for data or for room to write is done by `poll()` declared `nonblocking` in
 * `Deno.dlopen` (it runs on a worker thread) with a short timeout, and the
 * `read()`/`write()` calls themselves are made only when they cannot block.
 * See `link/SERIAL.md` for the design.
 *
 * Requires `--allow-ffi` (and `--allow-read` for {@link listPorts}).
 *
 * @example
 * ```ts ignore
 * import { listPorts, SerialPort } from "./serial.ts";
 *
 * const [path] = await listPorts();
 * const port = await SerialPort.open(path, { baud: 115200 });
 * await port.write(new TextEncoder().encode("hello\n"));
 * for await (const chunk of port.readable) console.log(chunk);
 * await port.close();
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";

const IS_DARWIN = Deno.build.os === "darwin";

/** Per-OS libc constants; the values differ between Linux and macOS. */
interface Constants {
  libc: string;
  errnoSymbol: string;
  O_RDWR: number;
  O_NOCTTY: number;
  O_NONBLOCK: number;
  O_CLOEXEC: number;
  TCSANOW: number;
  TCIFLUSH: number;
  EAGAIN: number;
  EINTR: number;
  EIO: number;
  ENXIO: number;
  /** Offset of `c_cc` in `struct termios`. */
  C_CC_OFFSET: number;
  /** Offset of `c_cflag` in `struct termios` (its low 32 bits on macOS). */
  C_CFLAG_OFFSET: number;
  CSTOPB: number;
  CREAD: number;
  CLOCAL: number;
  CRTSCTS: number;
  VMIN: number;
  VTIME: number;
  /** Supported baud rates and their `Bxxx` (`speed_t`) values. */
  bauds: ReadonlyMap<number, number>;
}

const LINUX: Constants = {
  libc: "libc.so.6",
  errnoSymbol: "__errno_location",
  O_RDWR: 0o2,
  O_NOCTTY: 0o400,
  O_NONBLOCK: 0o4000,
  O_CLOEXEC: 0o2000000,
  TCSANOW: 0,
  TCIFLUSH: 0,
  EAGAIN: 11,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  // c_iflag, c_oflag, c_cflag, c_lflag (4 x u32), c_line (u8), then c_cc[32].
  C_CC_OFFSET: 17,
  C_CFLAG_OFFSET: 8,
  CSTOPB: 0o100,
  CREAD: 0o200,
  CLOCAL: 0o4000,
  CRTSCTS: 0o20000000000,
  VMIN: 6,
  VTIME: 5,
  bauds: new Map([
    [50, 0o1],
    [75, 0o2],
    [110, 0o3],
    [134, 0o4],
    [150, 0o5],
    [200, 0o6],
    [300, 0o7],
    [600, 0o10],
    [1200, 0o11],
    [1800, 0o12],
    [2400, 0o13],
    [4800, 0o14],
    [9600, 0o15],
    [19200, 0o16],
    [38400, 0o17],
    [57600, 0o10001],
    [115200, 0o10002],
    [230400, 0o10003],
    [460800, 0o10004],
    [500000, 0o10005],
    [576000, 0o10006],
    [921600, 0o10007],
    [1000000, 0o10010],
    [1152000, 0o10011],
    [1500000, 0o10012],
    [2000000, 0o10013],
    [2500000, 0o10014],
    [3000000, 0o10015],
    [3500000, 0o10016],
    [4000000, 0o10017],
  ]),
};

const DARWIN: Constants = {
  libc: "/usr/lib/libSystem.B.dylib",
  errnoSymbol: "__error",
  O_RDWR: 0x2,
  O_NOCTTY: 0x20000,
  O_NONBLOCK: 0x4,
  O_CLOEXEC: 0x1000000,
  TCSANOW: 0,
  TCIFLUSH: 1,
  EAGAIN: 35,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  // c_iflag, c_oflag, c_cflag, c_lflag are unsigned long (4 x 8 bytes).
  C_CC_OFFSET: 32,
  C_CFLAG_OFFSET: 16,
  CSTOPB: 0x400,
  CREAD: 0x800,
  CLOCAL: 0x8000,
  CRTSCTS: 0x30000, // CCTS_OFLOW | CRTS_IFLOW
  VMIN: 16,
  VTIME: 17,
  // On macOS Bxxx is the rate itself. Rates above 230400 need the
  // IOSSIOSPEED ioctl, which this module does not do.
  bauds: new Map(
    [
      50,
      75,
      110,
      134,
      150,
      200,
      300,
      600,
      1200,
      1800,
      2400,
      4800,
      7200,
      9600,
      14400,
      19200,
      28800,
      38400,
      57600,
      76800,
      115200,
      230400,
    ].map((b) => [b, b]),
  ),
};

const C: Constants = IS_DARWIN ? DARWIN : LINUX;
/** flock(2) operations: the same values on Linux and macOS. */
const LOCK_EX = 2, LOCK_NB = 4;

const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLNVAL = 0x20;
/** How long one `poll()`/`select()` waits; bounds how long `close()` takes. */
const POLL_TIMEOUT_MS = 50;
/** `FD_SETSIZE` on Linux and macOS: select() handles fds below it. */
const FD_SETSIZE = 1024;
/** Size of the reusable read buffer. */
const READ_BUFFER_SIZE = 64 * 1024;
/** Generous size for `struct termios` (60 bytes on glibc, 72 on macOS). */
const TERMIOS_SIZE = 256;

function symbols() {
  // speed_t is unsigned int on glibc and unsigned long on macOS; nfds_t is
  // unsigned long on Linux and unsigned int on macOS.
  const speedT = IS_DARWIN ? "u64" : "u32";
  const nfdsT = IS_DARWIN ? "u32" : "usize";
  return {
    // open() is variadic; without O_CREAT the mode is never read, so it is
    // declared with two fixed parameters (also right for Apple arm64, where
    // variadic arguments go on the stack).
    open: { parameters: ["buffer", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    // read/write are made on the O_NONBLOCK fd, so they never block (EAGAIN
    // means: wait with poll/select, then try again). They run on the JS
    // thread so that errno can be read right after them: errno is
    // thread-local, and it is lost for calls declared `nonblocking`, which
    // run on a worker thread.
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    // Waiting happens here, on a worker thread, with a short timeout.
    poll: {
      parameters: ["buffer", nfdsT, "i32"],
      result: "i32",
      nonblocking: true,
    },
    // Same function, on the JS thread, timeout 0: used to learn errno when
    // the worker-thread poll() failed.
    pollNow: {
      name: "poll",
      parameters: ["buffer", nfdsT, "i32"],
      result: "i32",
    },
    // macOS poll() does not support devices (it answers POLLNVAL for ttys),
    // so there the wait is done with select() instead.
    select: {
      parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
      result: "i32",
      nonblocking: true,
    },
    selectNow: {
      name: "select",
      parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
      result: "i32",
    },
    flock: { parameters: ["i32", "i32"], result: "i32" },
    tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
    tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
    cfmakeraw: { parameters: ["buffer"], result: "void" },
    cfsetispeed: { parameters: ["buffer", speedT], result: "i32" },
    cfsetospeed: { parameters: ["buffer", speedT], result: "i32" },
    tcflush: { parameters: ["i32", "i32"], result: "i32" },
    strerror: { parameters: ["i32"], result: "pointer" },
    errnoLocation: { name: C.errnoSymbol, parameters: [], result: "pointer" },
  } as const;
}

type Libc = ReturnType<typeof symbols>;
let libcCache: Deno.DynamicLibrary<Libc>["symbols"] | undefined;

/** Opens libc once; it stays loaded for the life of the process. */
function libc(): Deno.DynamicLibrary<Libc>["symbols"] {
  libcCache ??= Deno.dlopen(C.libc, symbols()).symbols;
  return libcCache;
}

/** errno of the JS thread; read it right after the failing call. */
function errno(): number {
  const p = libc().errnoLocation();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function strerror(code: number): string {
  const p = libc().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** Options for {@link SerialError}. */
export interface SerialErrorOptions extends ErrorOptions {
  /** The port's path. */
  path: string;
  /** The libc call that failed, if any (e.g. `"tcgetattr"`). */
  call?: string;
  /** The `errno` the call left, if any. */
  errno?: number;
}

/**
 * A serial port operation failed. `path` names the port; for a failed libc
 * call, `call` names it and `errno` is the error number (the message carries
 * the `strerror` text).
 *
 * @example
 * ```ts ignore
 * try {
 *   await SerialPort.open("/dev/ttyUSB9");
 * } catch (e) {
 *   if (e instanceof SerialError) console.log(e.path, e.call, e.errno);
 * }
 * ```
 */
export class SerialError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "SERIAL";
  /** The port's path. */
  readonly path: string;
  /** The libc call that failed, if any. */
  readonly call: string | undefined;
  /** The `errno` the call left, if any. */
  readonly errno: number | undefined;

  /** Makes an error with `message` about the port in `options.path`. */
  constructor(message: string, options: SerialErrorOptions) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "SerialError";
    this.path = options.path;
    this.call = options.call;
    this.errno = options.errno;
  }

  /**
   * Makes the error for libc call `call` on the port at `path` that failed
   * with `code` (default: the current errno).
   */
  static fromErrno(
    call: string,
    path: string,
    options: { errno?: number } = {},
  ): SerialError {
    const code = options.errno ?? errno();
    return new SerialError(
      `${call}(${JSON.stringify(path)}) failed: ${strerror(code)} (errno ${code})`,
      { path, call, errno: code },
    );
  }
}

/**
 * Takes an exclusive `flock` on the existing file at `path` without waiting:
 * a handle to release it, or null when another process holds it. The lock
 * goes with the process, so one that dies leaves nothing behind.
 */
export function tryLockFile(path: string): { release(): void } | null {
  const lib = libc();
  const fd = lib.open(cString(path), C.O_RDWR | C.O_CLOEXEC);
  if (fd < 0) throw SerialError.fromErrno("open", path);
  if (lib.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const code = errno();
    lib.close(fd);
    if (code === C.EAGAIN) return null;
    throw SerialError.fromErrno("flock", path, { errno: code });
  }
  let open = true;
  return {
    release() {
      if (open) lib.close(fd);
      open = false;
    },
  };
}

/** The baud rate given to {@link SerialPort.open} is not supported here. */
export class UnsupportedBaudError extends SerialError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "UNSUPPORTED_BAUD";
  /** The rejected baud rate. */
  readonly baud: number;

  /** Makes the error for `baud` on the port at `path`. */
  constructor(path: string, baud: number) {
    super(
      `unsupported baud rate ${baud} for ${JSON.stringify(path)} on ${Deno.build.os}; supported: ${
        [...C.bauds.keys()].join(", ")
      }`,
      { path },
    );
    this.name = "UnsupportedBaudError";
    this.baud = baud;
  }
}

/** Options for {@link SerialPort.open}. */
export interface SerialOptions {
  /**
   * Line speed in bits per second; must be one of the rates the OS has a
   * `Bxxx` constant for. A pty ignores it, but it is set anyway.
   *
   * @default {115200}
   */
  baud?: number;
  /**
   * How to wait for the port to become readable or writable (off the JS
   * thread, 50 ms at a time). `poll` on Linux; `select` on macOS, whose
   * poll() does not support ttys. A poll() that answers POLLNVAL switches to
   * select() by itself.
   *
   * @default {"poll" on Linux, "select" on macOS}
   */
  wait?: WaitMethod;
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** How {@link SerialPort} waits until the port can be read or written. */
export type WaitMethod = "poll" | "select";

/**
 * Waits, off the JS thread and for at most {@link POLL_TIMEOUT_MS}, until one
 * fd is readable or writable, with poll() or select(). Each waiter owns its
 * buffers, so a read waiter and a write waiter can wait at the same time.
 */
class Waiter {
  readonly #fd: number;
  readonly #write: boolean;
  #method: WaitMethod;
  /** `struct pollfd { int fd; short events; short revents; }` */
  readonly #pollfd = new Uint8Array(8);
  /** `fd_set`: 1024 bits; fd's bit is at byte fd >> 3 on Linux and macOS. */
  readonly #fdset = new Uint8Array(FD_SETSIZE / 8);
  /**
   * `struct timeval`: tv_sec (8 bytes) then tv_usec (8 bytes on Linux, 4 and
   * padding on macOS; written little-endian, so both read it right).
   */
  readonly #timeval = new Uint8Array(16);

  constructor(fd: number, write: boolean, method: WaitMethod) {
    this.#fd = fd;
    this.#write = write;
    this.#method = method;
    const view = new DataView(this.#pollfd.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, write ? POLLOUT : POLLIN, true);
  }

  /** Waits until ready or timed out; throws SerialError if the call fails. */
  async wait(path: string): Promise<void> {
    for (;;) {
      const n = this.#method === "poll" ? await this.#poll() : await this.#select();
      if (n >= 0) return;
      // errno of the worker thread is out of reach: ask again here, without
      // waiting, to learn it (EINTR is the only expected one: try again).
      if (
        this.#method === "poll" ? this.#pollNow() >= 0 : this.#selectNow() >= 0
      ) {
        return;
      }
      const code = errno();
      if (code !== C.EINTR) {
        throw SerialError.fromErrno(this.#method, path, { errno: code });
      }
    }
  }

  async #poll(): Promise<number> {
    const n = await libc().poll(this.#pollfd, 1, POLL_TIMEOUT_MS);
    // Some systems (macOS for ttys) answer POLLNVAL for an fd that is open
    // but not pollable: use select() from now on rather than spin.
    if (
      n > 0 && (this.#pollfd[6] & POLLNVAL) !== 0 && this.#fd < FD_SETSIZE
    ) {
      this.#method = "select";
    }
    return n;
  }

  #pollNow(): number {
    return libc().pollNow(this.#pollfd, 1, 0);
  }

  #prepareSelect(timeoutMs: number): void {
    this.#fdset.fill(0);
    this.#fdset[this.#fd >> 3] = 1 << (this.#fd & 7);
    const tv = new DataView(this.#timeval.buffer);
    tv.setBigInt64(0, 0n, true);
    tv.setBigInt64(8, BigInt(timeoutMs * 1000), true);
  }

  #select(): Promise<number> {
    this.#prepareSelect(POLL_TIMEOUT_MS);
    const set = this.#fdset;
    return this.#write
      ? libc().select(this.#fd + 1, null, set, null, this.#timeval)
      : libc().select(this.#fd + 1, set, null, null, this.#timeval);
  }

  #selectNow(): number {
    this.#prepareSelect(0);
    const set = this.#fdset;
    return this.#write
      ? libc().selectNow(this.#fd + 1, null, set, null, this.#timeval)
      : libc().selectNow(this.#fd + 1, set, null, null, this.#timeval);
  }
}

/**
 * An open serial port in raw mode.
 *
 * Read the bytes that arrive from {@link SerialPort.readable}; send with
 * {@link SerialPort.write}; release it with {@link SerialPort.close}.
 *
 * @example
 * ```ts ignore
 * const port = await SerialPort.open("/dev/ttyUSB0", { baud: 921600 });
 * await port.write(new Uint8Array([1, 2, 3]));
 * const { value } = await port.readable.getReader().read();
 * await port.close();
 * ```
 */
export class SerialPort {
  /** The path the port was opened from. */
  readonly path: string;
  /**
   * The bytes as they arrive, one chunk per `read()` (each chunk is its own
   * copy). It is pulled: it reads ahead at most one chunk, and otherwise
   * leaves the bytes in the OS buffers (where flow control, if any, applies)
   * until the stream is read. It closes when the port is closed, or at end
   * of input (EOF, or EIO/ENXIO: the device or the pty's other side went
   * away); it errors with a {@link SerialError} on any other read failure.
   * Cancelling it stops reading; the port stays open until `close()`.
   */
  readonly readable: ReadableStream<Uint8Array>;

  #fd: number;
  #closing = false;
  #readDone = false;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** The read in progress, awaited by close(). */
  #pulling: Promise<void> = Promise.resolve();
  /** The tail of the queue of writes, awaited by close(). */
  #writing: Promise<void> = Promise.resolve();
  #readBuffer: Uint8Array<ArrayBuffer> = new Uint8Array(READ_BUFFER_SIZE);
  #readWaiter: Waiter;
  #writeWaiter: Waiter;

  private constructor(path: string, fd: number, method: WaitMethod) {
    this.path = path;
    this.#fd = fd;
    this.#readWaiter = new Waiter(fd, false, method);
    this.#writeWaiter = new Waiter(fd, true, method);
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#pulling = this.#pull();
        return this.#pulling;
      },
      cancel: () => {
        this.#readDone = true;
      },
    });
  }

  /**
   * Opens the tty at `path` (`O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK`),
   * makes it raw (`cfmakeraw`) 8N1 without flow control (`CLOCAL | CREAD`,
   * no `CSTOPB`, no `CRTSCTS`), sets its input and output speed to
   * `options.baud`, sets VMIN = 1 and VTIME = 0, applies that with
   * `tcsetattr(TCSANOW)` and discards pending input. `options.wait` picks
   * how the port waits for data or room to write (see {@link SerialOptions}).
   *
   * @throws {UnsupportedBaudError} if the baud rate has no `Bxxx` constant.
   * @throws {SerialError} naming the libc call, the path and errno if a call
   * fails: e.g. `open` for a missing path, `tcgetattr` for a file that is
   * not a tty.
   */
  static open(path: string, options: SerialOptions = {}): Promise<SerialPort> {
    try {
      return Promise.resolve(SerialPort.#openSync(path, options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  static #openSync(path: string, options: SerialOptions): SerialPort {
    const baud = options.baud ?? 115200;
    const speed = C.bauds.get(baud);
    if (speed === undefined) throw new UnsupportedBaudError(path, baud);
    const method = options.wait ?? (IS_DARWIN ? "select" : "poll");
    const lib = libc();
    const fd = lib.open(
      cString(path),
      C.O_RDWR | C.O_NOCTTY | C.O_CLOEXEC | C.O_NONBLOCK,
    );
    if (fd < 0) throw SerialError.fromErrno("open", path);
    try {
      const termios = new Uint8Array(TERMIOS_SIZE);
      if (lib.tcgetattr(fd, termios) !== 0) {
        throw SerialError.fromErrno("tcgetattr", path);
      }
      lib.cfmakeraw(termios);
      // cfmakeraw gives 8 data bits, no parity; also make it one stop bit,
      // no hardware flow control, receiver on, modem lines ignored: 8N1 as
      // a Pi's UART expects, whatever the tty was left with.
      const flags = new DataView(termios.buffer);
      const cflag = flags.getUint32(C.C_CFLAG_OFFSET, true);
      flags.setUint32(
        C.C_CFLAG_OFFSET,
        ((cflag & ~(C.CSTOPB | C.CRTSCTS)) | C.CREAD | C.CLOCAL) >>> 0,
        true,
      );
      if (lib.cfsetispeed(termios, speed) !== 0) {
        throw SerialError.fromErrno("cfsetispeed", path);
      }
      if (lib.cfsetospeed(termios, speed) !== 0) {
        throw SerialError.fromErrno("cfsetospeed", path);
      }
      // The fd is non-blocking, so these only matter to other users of the
      // tty; VMIN = 1, VTIME = 0 is the usual "return as soon as a byte is
      // there" setting.
      termios[C.C_CC_OFFSET + C.VMIN] = 1;
      termios[C.C_CC_OFFSET + C.VTIME] = 0;
      if (lib.tcsetattr(fd, C.TCSANOW, termios) !== 0) {
        throw SerialError.fromErrno("tcsetattr", path);
      }
      if (lib.tcflush(fd, C.TCIFLUSH) !== 0) {
        throw SerialError.fromErrno("tcflush", path);
      }
      if (method === "select" && fd >= FD_SETSIZE) {
        throw new SerialError(
          `fd ${fd} of ${JSON.stringify(path)} is too large for select()`,
          { path, call: "select" },
        );
      }
    } catch (e) {
      lib.close(fd);
      throw e;
    }
    return new SerialPort(path, fd, method);
  }

  /** Whether {@link SerialPort.close} has been called. */
  get closed(): boolean {
    return this.#closing;
  }

  /** Reads one chunk into the stream, or ends or errors the stream. */
  async #pull(): Promise<void> {
    const lib = libc();
    const buf = this.#readBuffer;
    try {
      while (!this.#closing && !this.#readDone) {
        const n = Number(lib.read(this.#fd, buf, BigInt(buf.length)));
        if (n > 0) {
          this.#controller.enqueue(buf.slice(0, n));
          return;
        }
        if (n === 0) return this.#endRead(); // EOF
        const code = errno();
        if (code === C.EAGAIN || code === C.EINTR) {
          await this.#readWaiter.wait(this.path);
          continue;
        }
        if (code === C.EIO || code === C.ENXIO) return this.#endRead();
        throw SerialError.fromErrno("read", this.path, { errno: code });
      }
    } catch (e) {
      this.#readDone = true;
      this.#controller.error(e);
    }
  }

  #endRead(): void {
    if (this.#readDone) return;
    this.#readDone = true;
    try {
      this.#controller.close();
    } catch {
      // already closed, errored or cancelled
    }
  }

  /**
   * Writes all of `data`, in order after any earlier writes that are still
   * going. Partial writes are continued; when the port cannot take more
   * (EAGAIN) it waits with `poll()`/`select()` off the JS thread.
   *
   * @throws {SerialError} naming `write` and errno if the write fails, or if
   * the port is or gets closed before all bytes are written.
   */
  write(data: Uint8Array): Promise<void> {
    if (this.#closing) {
      return Promise.reject(
        new SerialError(`${this.path} is closed`, { path: this.path }),
      );
    }
    const result = this.#writing.then(() => this.#writeAll(data));
    this.#writing = result.catch(() => {});
    return result;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    const lib = libc();
    // FFI "buffer" wants a view over an ArrayBuffer; copy anything else
    // (e.g. a view over a SharedArrayBuffer).
    let rest: Uint8Array<ArrayBuffer> = data.buffer instanceof ArrayBuffer
      ? data as Uint8Array<ArrayBuffer>
      : new Uint8Array(data);
    while (rest.length > 0) {
      if (this.#closing) {
        throw new SerialError(
          `${this.path} was closed with ${rest.length} bytes not written`,
          { path: this.path },
        );
      }
      const n = Number(lib.write(this.#fd, rest, BigInt(rest.length)));
      if (n >= 0) {
        rest = rest.subarray(n);
        continue;
      }
      const code = errno();
      if (code === C.EAGAIN) {
        await this.#writeWaiter.wait(this.path);
      } else if (code !== C.EINTR) {
        throw SerialError.fromErrno("write", this.path, { errno: code });
      }
    }
  }

  /**
   * Closes the port: ends {@link SerialPort.readable} (chunks already queued
   * can still be read), fails writes still in progress, and closes the fd.
   * It resolves within about one poll timeout (50 ms), so a reader waiting
   * for data does not keep the process alive. Calling it again is a no-op.
   *
   * @throws {SerialError} naming `close` if `close()` of the fd fails.
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // Let the in-flight waits (bounded by POLL_TIMEOUT_MS) finish
    // before the fd goes away, so they never see a closed or reused fd.
    await Promise.allSettled([this.#pulling, this.#writing]);
    this.#endRead();
    if (libc().close(this.#fd) !== 0) {
      throw SerialError.fromErrno("close", this.path);
    }
  }
}

/**
 * Lists the serial ports that exist: on Linux `/dev/ttyUSB*`,
 * `/dev/ttyACM*`, `/dev/ttyAMA*` and `/dev/serial/by-id/*` (the by-id
 * entries whose target exists); on macOS `/dev/cu.*`. Sorted by name.
 *
 * @example
 * ```ts ignore
 * console.log(await listPorts()); // e.g. ["/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_..."]
 * ```
 */
export async function listPorts(): Promise<string[]> {
  const ports: string[] = [];
  const prefixes = IS_DARWIN ? ["cu."] : ["ttyUSB", "ttyACM", "ttyAMA"];
  for (const name of await listDevDir("/dev")) {
    if (prefixes.some((p) => name.startsWith(p))) ports.push(`/dev/${name}`);
  }
  ports.sort(byName);
  if (!IS_DARWIN) {
    const byId: string[] = [];
    for (const name of await listDevDir("/dev/serial/by-id")) {
      const path = `/dev/serial/by-id/${name}`;
      // Dangling links (an adapter just unplugged) are left out.
      if (await devicePath(path)) byId.push(path);
    }
    ports.push(...byId.sort(byName));
  }
  return ports;
}

/**
 * The names in a directory under /dev ([] if it does not exist). Deno's own
 * file calls need --allow-all for /dev; `ls` needs only --allow-run.
 */
async function listDevDir(dir: string): Promise<string[]> {
  const o = await new Deno.Command("ls", { args: ["-1", dir], stdout: "piped", stderr: "null" })
    .output();
  if (!o.success) return [];
  return new TextDecoder().decode(o.stdout).split("\n").filter((n) => n !== "");
}

/**
 * The device a port path leads to, following symbolic links (a
 * `/dev/serial/by-id/` name, a link to a pty), or null when it leads
 * nowhere. Uses `readlink -e` for the reason of {@linkcode listPorts}.
 *
 * @example
 * ```ts ignore
 * import { devicePath } from "./serial.ts";
 * console.log(await devicePath("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0")); // /dev/ttyUSB0
 * ```
 */
export async function devicePath(path: string): Promise<string | null> {
  const o = await new Deno.Command("readlink", {
    args: ["-e", "--", path],
    stdout: "piped",
    stderr: "null",
  }).output();
  return o.success ? new TextDecoder().decode(o.stdout).trim() : null;
}

function byName(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}
