/**
 * An emulated serial line between two ptys, for tests and benchmarks: a thin
 * layer over the firmware's `pifs-link` relay. Bytes written to one side come
 * out of the other at baud/10 bytes/s each way (8N1), with optional bit
 * errors and dropped bytes.
 *
 * Latency and stalls are not emulated yet: `pifs-link` has no option for them.
 *
 * @example
 * ```ts ignore
 * import { startLink } from "./link.ts";
 * const link = await startLink({ a: "/tmp/host", b: "/tmp/node", baud: 115200, ber: 1e-5 });
 * // ... open /tmp/host and /tmp/node as serial ports ...
 * const stats = await link.stop();
 * console.log(stats.flipped, stats.dropped);
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { run } from "../card/run.ts";

/** Options of {@linkcode startLink}. */
export interface LinkOptions {
  /** Path of side a: a symlink to a new pty is made there. */
  a: string;
  /** Path of side b. */
  b: string;
  /** Line rate; each direction carries baud/10 bytes/s. 0 (the default): unpaced. */
  baud?: number;
  /** Probability that each bit is flipped, 0..1 (default 0). */
  ber?: number;
  /** Probability that each byte is lost, 0..1 (default 0). */
  drop?: number;
  /** Seed of the fault generator (a whole number; default: pifs-link's fixed one). */
  seed?: number;
  /** Delay of every byte, in ms (default 0). */
  latencyMs?: number;
  /** With `stallMs`: every this many ms the line stalls. */
  stallEveryMs?: number;
  /** How long each stall lasts, in ms: no byte passes either way. */
  stallMs?: number;
  /**
   * Start it in its own session (`setsid`) so that it outlives this process
   * and ignores the terminal's signals; its output goes to `log`.
   */
  detached?: boolean;
  /**
   * File that gets the relay's output (appended to). Without it a detached
   * link logs to a new temporary file, an attached one keeps its output in
   * memory.
   */
  log?: string;
}

/** What went one way through the link. */
export interface LinkDirectionStats {
  /** Bytes taken in from the sending side (dropped ones included). */
  bytes: number;
  /** Bits flipped. */
  flipped: number;
  /** Bytes dropped. */
  dropped: number;
}

/** The counters `pifs-link` prints when it stops. */
export interface LinkStats {
  /** From a to b. */
  aToB: LinkDirectionStats;
  /** From b to a. */
  bToA: LinkDirectionStats;
  /** Bits flipped, both ways. */
  flipped: number;
  /** Bytes dropped, both ways. */
  dropped: number;
}

/** A running link. */
export interface LinkHandle {
  /** Process id of `pifs-link`. */
  pid: number;
  /** Path of side a. */
  a: string;
  /** Path of side b. */
  b: string;
  /** The log file, if there is one. */
  log?: string;
  /** Resolves when the relay has exited, by itself or by `stop()`. */
  exited: Promise<void>;
  /**
   * Stops the relay (SIGTERM, then SIGKILL after 5 s; its paths are removed)
   * and returns its counters.
   *
   * @throws {LinkError} if it printed no counters (e.g. it had to be killed).
   */
  stop(): Promise<LinkStats>;
}

/** A bad link option, or a link that could not start or stop cleanly. */
export class LinkError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "LINK";
  /** The error's name. */
  override name = "LinkError";
}

const REPO = new URL("..", import.meta.url).pathname;

/** Path of the link emulator binary (`PIFS_LINK_BIN`, else built on first use). */
export async function linkBinary(): Promise<string> {
  const env = Deno.env.get("PIFS_LINK_BIN");
  if (env) return env;
  await run("make", ["-s", "-C", `${REPO}firmware`, "build/pifs-link"]);
  return `${REPO}firmware/build/pifs-link`;
}

/**
 * Checks link options; throws a {@linkcode LinkError} naming the bad value.
 *
 * @example
 * ```ts
 * import { checkLinkOptions, LinkError } from "./link.ts";
 * checkLinkOptions({ baud: 115200, ber: 1e-5, drop: 0 });
 * try {
 *   checkLinkOptions({ ber: 2 });
 *   throw new Error("accepted ber 2");
 * } catch (e) {
 *   if (!(e instanceof LinkError) || !e.message.includes("2")) throw e;
 * }
 * ```
 */
export function checkLinkOptions(
  o: Omit<LinkOptions, "a" | "b" | "detached" | "log">,
): void {
  if (o.baud !== undefined && !(Number.isSafeInteger(o.baud) && o.baud >= 0)) {
    throw new LinkError(`baud ${o.baud}: must be a whole number >= 0`);
  }
  for (const [name, p] of [["ber", o.ber], ["drop", o.drop]] as const) {
    if (p !== undefined && !(typeof p === "number" && p >= 0 && p <= 1)) {
      throw new LinkError(`${name} ${p}: must be a probability within 0..1`);
    }
  }
  if (o.seed !== undefined && !(Number.isSafeInteger(o.seed) && o.seed >= 0)) {
    throw new LinkError(`seed ${o.seed}: must be a whole number >= 0`);
  }
  for (
    const [name, v] of [["latency", o.latencyMs], ["stall period", o.stallEveryMs], [
      "stall",
      o.stallMs,
    ]] as const
  ) {
    if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 0)) {
      throw new LinkError(`${name} ${v} ms: must be a number of milliseconds >= 0`);
    }
  }
  if (o.stallMs && !(o.stallEveryMs && o.stallMs < o.stallEveryMs)) {
    throw new LinkError(
      `stall ${o.stallMs} ms: needs a stall period (stallEveryMs) longer than the stall`,
    );
  }
}

const STATS_LINE =
  /pifs-link: a->b (\d+) bytes \((\d+) bits flipped, (\d+) dropped\); b->a (\d+) bytes \((\d+), (\d+)\)/g;

/**
 * Parses the last counters line `pifs-link` printed in `text`, or null.
 *
 * @example
 * ```ts
 * import { parseLinkStats } from "./link.ts";
 * const s = parseLinkStats(
 *   "pifs-link: a->b 10 bytes (3 bits flipped, 1 dropped); b->a 20 bytes (0, 2)\n",
 * );
 * if (s?.flipped !== 3 || s.dropped !== 3 || s.bToA.bytes !== 20) throw new Error();
 * ```
 */
export function parseLinkStats(text: string): LinkStats | null {
  const m = [...text.matchAll(STATS_LINE)].pop();
  if (!m) return null;
  const n = m.slice(1).map(Number);
  const aToB = { bytes: n[0], flipped: n[1], dropped: n[2] };
  const bToA = { bytes: n[3], flipped: n[4], dropped: n[5] };
  return {
    aToB,
    bToA,
    flipped: aToB.flipped + bToA.flipped,
    dropped: aToB.dropped + bToA.dropped,
  };
}

/** Formats counters like `pifs-link` does. */
export function formatLinkStats(s: LinkStats): string {
  return `a->b ${s.aToB.bytes} bytes (${s.aToB.flipped} bits flipped, ${s.aToB.dropped} dropped); ` +
    `b->a ${s.bToA.bytes} bytes (${s.bToA.flipped} bits flipped, ${s.bToA.dropped} dropped)`;
}

/** Whether `pid` is a running process whose command line holds `name` (asked of `ps`). */
export async function isProcessNamed(
  pid: number | null | undefined,
  name: string,
): Promise<boolean> {
  if (!pid) return false;
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=,args=", "-p", String(pid)],
    stdout: "piped",
    stderr: "null",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim();
  return out.success && line.includes(name) && !line.startsWith("Z");
}

/** Whether `pid` is a running `pifs-link`. */
export function isLinkProcess(pid: number | null | undefined): Promise<boolean> {
  return isProcessNamed(pid, "pifs-link");
}

function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A process started by {@linkcode spawnDetached}. */
export interface DetachedProcess {
  /** Its process id. */
  pid: number;
  /** Whether it has exited (as far as this process has seen). */
  exited(): boolean;
  /** Resolves when it exits. */
  status: Promise<Deno.CommandStatus>;
}

/**
 * Starts `bin args...` in its own session (`setsid`), output appended to
 * `log`; it outlives this process and ignores the terminal's signals.
 */
export function spawnDetached(bin: string, args: string[], log: string): DetachedProcess {
  const quoted = [bin, ...args].map(shQuote).join(" ");
  const child = new Deno.Command("sh", {
    args: ["-c", `exec setsid ${quoted} >>${shQuote(log)} 2>&1`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  return { pid: child.pid, exited: () => done, status };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether `p` settles within `ms` (the timer is cleared either way). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function exists(p: string): Promise<boolean> {
  return await Deno.lstat(p).then(() => true, () => false);
}

/** Removes a stale symlink at `p`; refuses to replace anything else. */
async function clearPath(p: string): Promise<void> {
  const st = await Deno.lstat(p).catch(() => null);
  if (!st) return;
  if (!st.isSymlink) throw new LinkError(`${p} exists and is not a symlink: not replacing it`);
  await Deno.remove(p);
}

async function fileSize(p: string): Promise<number> {
  return await Deno.stat(p).then((s) => s.size, () => 0);
}

async function readFrom(p: string, offset: number): Promise<string> {
  const bytes = await Deno.readFile(p).catch(() => new Uint8Array());
  return new TextDecoder().decode(bytes.subarray(Math.min(offset, bytes.length)));
}

/**
 * Starts `pifs-link` between two new ptys linked from `a` and `b` (built on
 * first use) and resolves once both paths exist.
 *
 * @throws {LinkError} for a bad option (naming it), or if the relay exits at
 * start (with what it printed).
 */
export async function startLink(opts: LinkOptions): Promise<LinkHandle> {
  checkLinkOptions(opts);
  const { a, b } = opts;
  if (!a || !b) throw new LinkError(`need both paths a and b (got '${a ?? ""}' and '${b ?? ""}')`);
  if (a === b) throw new LinkError(`paths a and b are the same: ${a}`);
  const bin = await linkBinary();
  await clearPath(a);
  await clearPath(b);
  const args = ["--a", a, "--b", b, "--baud", String(opts.baud ?? 0)];
  if (opts.ber !== undefined) args.push("--ber", String(opts.ber));
  if (opts.drop !== undefined) args.push("--drop", String(opts.drop));
  if (opts.seed !== undefined) args.push("--seed", String(opts.seed));
  if (opts.latencyMs) args.push("--latency-ms", String(opts.latencyMs));
  if (opts.stallMs) {
    args.push("--stall-every-ms", String(opts.stallEveryMs), "--stall-ms", String(opts.stallMs));
  }

  let pid: number;
  let exitedNow: () => boolean;
  let status: Promise<unknown>;
  let output: () => Promise<string>;
  let log = opts.log;
  if (opts.detached) {
    log ??= await Deno.makeTempFile({ prefix: "pifs-link-", suffix: ".log" });
    const logPath = log;
    const offset = await fileSize(logPath);
    const p = spawnDetached(bin, args, logPath);
    pid = p.pid;
    exitedNow = p.exited;
    status = p.status;
    output = () => readFrom(logPath, offset);
  } else {
    const child = new Deno.Command(bin, { args, stdin: "null", stdout: "null", stderr: "piped" })
      .spawn();
    pid = child.pid;
    let text = "";
    const file = opts.log
      ? await Deno.open(opts.log, { append: true, create: true, write: true })
      : null;
    const reading = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        text += dec.decode(chunk, { stream: true });
        await file?.write(chunk);
      }
      file?.close();
    })();
    let done = false;
    status = Promise.all([child.status, reading]).then(() => done = true);
    exitedNow = () => done;
    output = () => Promise.resolve(text);
  }
  const exited = status.then(() => {});

  const handle: LinkHandle = {
    pid,
    a,
    b,
    log,
    exited,
    async stop(): Promise<LinkStats> {
      if (!exitedNow()) {
        try {
          Deno.kill(pid, "SIGTERM");
        } catch { /* already gone */ }
        if (!(await within(exited, 5000))) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* already gone */ }
        }
        await exited;
      }
      const text = await output();
      const stats = parseLinkStats(text);
      if (!stats) {
        throw new LinkError(
          `pifs-link ${pid} printed no counters${text.trim() ? `: ${text.trim()}` : ""}`,
        );
      }
      return stats;
    },
  };

  const end = Date.now() + 10000;
  while (!(await exists(a) && await exists(b))) {
    if (exitedNow()) {
      await exited;
      const text = (await output()).trim();
      throw new LinkError(
        `pifs-link exited at start${text ? `: ${text.split("\n")[0]}` : ""}${
          log ? ` (log: ${log})` : ""
        }`,
      );
    }
    if (Date.now() > end) {
      await handle.stop().catch(() => {});
      throw new LinkError(`timed out waiting for pifs-link to create ${a} and ${b}`);
    }
    await sleep(10);
  }
  return handle;
}
