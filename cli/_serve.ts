/**
 * Commands run by the process that holds the cluster open.
 *
 * One pifs command at a time holds a cluster's lines (`DIR/lines.lock`). A
 * process that keeps the cluster open for long — `pifs serve`, a mount —
 * listens on `DIR/cmd.sock`; a command that finds the cluster busy sends
 * its arguments there, and the holder runs it in its own process on the
 * open store ({@linkcode Store.lend}), streaming back its output and exit
 * code. So `pifs sync`, `put`, `ls` … work while the cluster is mounted,
 * and what they commit is in the mount's index the moment it commits.
 *
 * Commands run there one at a time, in the holder's process: their
 * standard output and error (console and `Deno.stdout`/`Deno.stderr`) are
 * captured for the duration, the working directory is the caller's, and
 * `PIFS_CLUSTER` is the caller's.
 *
 * Wire format: the request is one line of JSON
 * `{"argv": [...], "cwd": "...", "cluster": "..."}`; the answer is frames of
 * a type byte (`o` standard output, `e` standard error, `x` exit code as
 * text), a u32 big-endian length and that many bytes, ending with `x`.
 *
 * @module
 */
import { Store } from "../store/store.ts";

/** Commands a holder runs for others: those that work on an open cluster. */
export const FORWARDED = new Set([
  "put",
  "get",
  "ls",
  "cat",
  "rm",
  "mv",
  "mkdir",
  "du",
  "copies",
  "gc",
  "checkpoint",
  "sync",
  "snapshots",
  "diff",
  "scrub",
  "repair",
  "rebalance",
  "node",
  "status",
]);

/** The socket of the cluster in `dir`. */
export function socketPath(dir: string): string {
  return `${dir}/cmd.sock`;
}

/** Whether a process (`pifs serve`, a mount) holds the cluster in `dir` and runs commands for others. */
export async function holderPresent(dir: string): Promise<boolean> {
  return await Deno.lstat(socketPath(dir)).then(() => true, () => false);
}

interface Request {
  argv: string[];
  cwd: string;
  cluster?: string;
}

type Runner = (argv: string[]) => Promise<number>;

let running = false;

/** Whether this process is running a command for another (which must then not forward again). */
export function runningForOthers(): boolean {
  return running;
}

const enc = new TextEncoder();

function frame(type: string, body: Uint8Array): Uint8Array {
  const f = new Uint8Array(5 + body.length);
  f[0] = type.charCodeAt(0);
  new DataView(f.buffer).setUint32(1, body.length);
  f.set(body, 5);
  return f;
}

function text(args: unknown[]): string {
  return args.map((a) => (typeof a === "string" ? a : Deno.inspect(a))).join(" ") + "\n";
}

/** A running command server; `close` stops listening and waits for the command in progress. */
export interface CommandServer {
  /** The socket path. */
  path: string;
  /** Stops listening, waits for the command in progress, gives the store back. */
  close(): Promise<void>;
}

/**
 * Lends `store` (open on the cluster in `dir`) to the commands others send
 * to `DIR/cmd.sock`, and runs each with `run` (the CLI's `main`); `after`
 * runs after each, before its exit code is sent (a mount drops the
 * kernel's caches there).
 */
export async function serveCommands(
  dir: string,
  store: Store,
  run: Runner,
  log: (msg: string) => void = () => {},
  after: () => Promise<void> = () => Promise.resolve(),
): Promise<CommandServer> {
  const path = socketPath(dir);
  await Deno.remove(path).catch(() => {}); // left by a holder that died
  const listener = Deno.listen({ transport: "unix", path });
  const unlend = await Store.lend(dir, store);
  let queue: Promise<void> = Promise.resolve();
  const handle = async (conn: Deno.Conn) => {
    const w = conn.writable.getWriter();
    const send = (type: string, b: Uint8Array) => w.write(frame(type, b)).catch(() => {});
    try {
      const req = await readRequest(conn);
      if (!Array.isArray(req.argv) || !req.argv.every((a) => typeof a === "string")) {
        throw new Error("bad request");
      }
      if (!FORWARDED.has(req.argv[0])) {
        await send("e", enc.encode(`pifs: ${req.argv[0]}: not run for others by this holder\n`));
        await send("x", enc.encode("2"));
        return;
      }
      // One at a time: the output capture, the directory and the environment are the process's.
      const mine = queue.then(() => runCaptured(req, run, send, log, after));
      queue = mine.catch(() => {});
      await mine;
    } catch (e) {
      await send("e", enc.encode(`pifs: ${(e as Error).message}\n`));
      await send("x", enc.encode("1"));
    } finally {
      await w.close().catch(() => {});
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) handle(conn);
    } catch { /* closed */ }
  })();
  log(`serving commands on ${path}`);
  return {
    path,
    async close() {
      unlend();
      try {
        listener.close();
      } catch { /* closed */ }
      await accepting;
      await queue;
      await Deno.remove(path).catch(() => {});
    },
  };
}

async function readRequest(conn: Deno.Conn): Promise<Request> {
  const buf: number[] = [];
  const b = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(b);
    if (n === null) throw new Error("the request ended early");
    for (let i = 0; i < n; i++) {
      if (b[i] === 10) return JSON.parse(new TextDecoder().decode(new Uint8Array(buf))) as Request;
      buf.push(b[i]);
    }
    if (buf.length > 1 << 20) throw new Error("request too long");
  }
}

async function runCaptured(
  req: Request,
  run: Runner,
  send: (type: string, b: Uint8Array) => Promise<void>,
  log: (msg: string) => void,
  after: () => Promise<void>,
): Promise<void> {
  const saved = {
    log: console.log,
    info: console.info,
    warn: console.warn,
    error: console.error,
    out: Deno.stdout.write,
    outSync: Deno.stdout.writeSync,
    err: Deno.stderr.write,
    errSync: Deno.stderr.writeSync,
    cwd: Deno.cwd(),
    cluster: Deno.env.get("PIFS_CLUSTER"),
    exitCode: Deno.exitCode,
  };
  const pending: Promise<void>[] = [];
  const out = (b: Uint8Array) => pending.push(send("o", b.slice()));
  const err = (b: Uint8Array) => pending.push(send("e", b.slice()));
  const stdout = Deno.stdout as unknown as Record<string, unknown>;
  const stderr = Deno.stderr as unknown as Record<string, unknown>;
  console.log = console.info = (...a: unknown[]) => out(enc.encode(text(a)));
  console.warn = console.error = (...a: unknown[]) => err(enc.encode(text(a)));
  stdout.write = (b: Uint8Array) => (out(b), Promise.resolve(b.length));
  stdout.writeSync = (b: Uint8Array) => (out(b), b.length);
  stderr.write = (b: Uint8Array) => (err(b), Promise.resolve(b.length));
  stderr.writeSync = (b: Uint8Array) => (err(b), b.length);
  let code = 1;
  running = true;
  try {
    Deno.chdir(req.cwd);
    if (req.cluster) Deno.env.set("PIFS_CLUSTER", req.cluster);
    else Deno.env.delete("PIFS_CLUSTER");
    Deno.exitCode = 0;
    code = await run(req.argv);
  } catch (e) {
    err(enc.encode(`pifs: ${(e as Error).message}\n`));
  } finally {
    running = false;
    console.log = saved.log;
    console.info = saved.info;
    console.warn = saved.warn;
    console.error = saved.error;
    stdout.write = saved.out;
    stdout.writeSync = saved.outSync;
    stderr.write = saved.err;
    stderr.writeSync = saved.errSync;
    Deno.chdir(saved.cwd);
    if (saved.cluster === undefined) Deno.env.delete("PIFS_CLUSTER");
    else Deno.env.set("PIFS_CLUSTER", saved.cluster);
    Deno.exitCode = saved.exitCode;
  }
  await Promise.all(pending);
  log(`ran for another command: pifs ${req.argv.join(" ")} (exit ${code})`);
  // Before the caller hears the exit code (its output no longer captured).
  await after().catch((e) => log(`after pifs ${req.argv[0]}: ${(e as Error).message}`));
  await send("x", enc.encode(String(code)));
}

/**
 * Sends `argv` to the holder of the cluster in `dir`, copying its output
 * here; its exit code, or null when nothing serves the cluster there.
 */
export async function forwardCommand(dir: string, argv: string[]): Promise<number | null> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socketPath(dir) });
  } catch {
    return null;
  }
  try {
    const req: Request = { argv, cwd: Deno.cwd(), cluster: Deno.env.get("PIFS_CLUSTER") };
    await conn.write(enc.encode(JSON.stringify(req) + "\n"));
    // Buffered reads of exactly n bytes (null at the end of the stream).
    let pendingBytes = new Uint8Array(0);
    const chunk = new Uint8Array(65536);
    const exact = async (n: number): Promise<Uint8Array | null> => {
      while (pendingBytes.length < n) {
        const k = await conn.read(chunk);
        if (k === null) return null;
        const joined = new Uint8Array(pendingBytes.length + k);
        joined.set(pendingBytes);
        joined.set(chunk.subarray(0, k), pendingBytes.length);
        pendingBytes = joined;
      }
      const out = pendingBytes.slice(0, n);
      pendingBytes = pendingBytes.slice(n);
      return out;
    };
    for (;;) {
      const head = await exact(5);
      if (!head) throw new Error(`the holder of ${dir} ended the command without an exit code`);
      const len = new DataView(head.buffer, head.byteOffset).getUint32(1);
      const body = len ? await exact(len) : new Uint8Array();
      if (!body) throw new Error(`the holder of ${dir} ended the command mid-way`);
      const t = String.fromCharCode(head[0]);
      if (t === "o") await writeAll(Deno.stdout, body);
      else if (t === "e") await writeAll(Deno.stderr, body);
      else if (t === "x") return Number(new TextDecoder().decode(body));
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

async function writeAll(w: { write(b: Uint8Array): Promise<number> }, b: Uint8Array) {
  let off = 0;
  while (off < b.length) off += await w.write(b.subarray(off));
}
