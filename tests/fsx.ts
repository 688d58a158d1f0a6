/**
 * An fsx-style file system exerciser: random reads, writes at random offsets
 * (holes included), truncates that grow and shrink, fsyncs, stats and
 * close/re-open (sometimes with O_APPEND or O_TRUNC) on one file under test,
 * each mirrored on a shadow copy in a local temporary file. Every read is
 * compared with the shadow's, and the whole file at every re-open and at the
 * end. The first difference is reported with the offset and the log of the
 * operations that led to it.
 *
 * As a program:
 *
 * ```sh
 * deno run -A tests/fsx.ts FILE [--ops N] [--seed S] [--max-size BYTES]
 * ```
 *
 * The seed is printed (`FSX_SEED` or `--seed` sets it), so a failure can be replayed.
 *
 * @module
 */

/** Options of {@linkcode fsx}. */
export interface FsxOptions {
  /** The file under test (created, or truncated). */
  file: string;
  /** Operations to run (default 10,000). */
  ops?: number;
  /** Random seed (default: from the clock). */
  seed?: number;
  /** Largest file size the operations make (default 1 MiB). */
  maxSize?: number;
  /** Largest read or write (default 64 KiB). */
  maxIo?: number;
  /** Progress and the seed. */
  log?: (msg: string) => void;
  /** Where to copy the shadow at the end (to compare the file with later, e.g. after a remount). */
  keepShadow?: string;
  /**
   * Self-test of the exerciser: after this operation, one byte of the file
   * under test (not of the shadow) is flipped behind its back; the run must
   * then fail.
   */
  faultAfter?: number;
}

/** What a run did. */
export interface FsxResult {
  /** The seed used. */
  seed: number;
  /** Operations run, by kind. */
  counts: Record<string, number>;
  /** Operations run. */
  ops: number;
  /** Milliseconds taken. */
  ms: number;
  /** Largest size the file reached. */
  maxReached: number;
}

/** A difference between the file under test and its shadow. */
export class FsxMismatch extends Error {
  /** The error's name. */
  override name = "FsxMismatch";
}

/** mulberry32: a small seeded generator (the same seed, the same run). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function readFull(f: Deno.FsFile, off: number, len: number): Promise<Uint8Array> {
  const out = new Uint8Array(len);
  await f.seek(off, Deno.SeekMode.Start);
  let at = 0;
  while (at < len) {
    const n = await f.read(out.subarray(at));
    if (n === null || n === 0) break;
    at += n;
  }
  return out.subarray(0, at);
}

async function writeFull(f: Deno.FsFile, off: number | null, data: Uint8Array): Promise<void> {
  if (off !== null) await f.seek(off, Deno.SeekMode.Start);
  let at = 0;
  while (at < data.length) at += await f.write(data.subarray(at));
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * Runs the exerciser on `opts.file` against a shadow in a temporary file;
 * throws {@linkcode FsxMismatch} at the first difference.
 */
export async function fsx(opts: FsxOptions): Promise<FsxResult> {
  const seed = (opts.seed ?? Date.now() % 2 ** 31) >>> 0;
  const nOps = opts.ops ?? 10_000;
  const maxSize = opts.maxSize ?? 1 << 20;
  const maxIo = opts.maxIo ?? 64 * 1024;
  const log = opts.log ?? ((m: string) => console.error(m));
  log(`fsx: seed ${seed} (set FSX_SEED or --seed to replay), ${nOps} operations on ${opts.file}`);
  const rnd = rng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const shadowDir = await Deno.makeTempDir({ prefix: "pifs-fsx-" });
  const shadowPath = `${shadowDir}/shadow`;
  const history: string[] = [];
  const counts: Record<string, number> = {};
  let size = 0;
  let maxReached = 0;
  let append = false;
  const t0 = performance.now();
  const rw = { read: true, write: true };
  let f = await Deno.open(opts.file, { ...rw, create: true, truncate: true });
  let s = await Deno.open(shadowPath, { ...rw, create: true, truncate: true });

  const fail = (i: number, what: string): never => {
    const tail = history.slice(-60);
    throw new FsxMismatch(
      `fsx (seed ${seed}): operation ${i}: ${what}\n` +
        `the last ${tail.length} of ${history.length} operations:\n  ${tail.join("\n  ")}`,
    );
  };
  const compareAll = async (i: number, why: string) => {
    const st = await Deno.stat(opts.file);
    if (st.size !== size) fail(i, `${why}: size ${st.size}, shadow ${size}`);
    const a = await readFull(f, 0, size + 1);
    const b = await readFull(s, 0, size + 1);
    const d = firstDiff(a, b);
    if (d >= 0) {
      fail(
        i,
        `${why}: whole file differs at byte ${d} (file ${a.length} bytes, shadow ${b.length}; ` +
          `got ${a[d]}, want ${b[d]})`,
      );
    }
  };
  const data = (len: number) => {
    const b = new Uint8Array(len);
    let x = int(2 ** 31) | 1;
    for (let k = 0; k < len; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[k] = x & 0xff;
    }
    return b;
  };

  try {
    for (let i = 1; i <= nOps; i++) {
      const p = rnd();
      let op: string;
      if (p < 0.33) {
        // read, sometimes across the end
        const off = int(size + 1 + (int(8) === 0 ? 4096 : 0));
        const len = 1 + int(int(10) === 0 ? maxIo : 4096);
        op = `read ${off} +${len}`;
        history.push(op);
        const a = await readFull(f, off, len);
        const b = await readFull(s, off, len);
        const d = firstDiff(a, b);
        if (d >= 0) {
          fail(
            i,
            `${op}: got ${a.length} bytes, shadow ${b.length}; first difference at byte ` +
              `${off + d} (got ${a[d]}, want ${b[d]})`,
          );
        }
        counts.read = (counts.read ?? 0) + 1;
      } else if (p < 0.7) {
        // write at a random offset (a hole when past the end), or appended
        const len = 1 + int(int(10) === 0 ? maxIo : 8192);
        let off = int(Math.min(maxSize - len, size + 2 * 4096));
        if (off < 0) off = 0;
        if (append && size + len > maxSize) {
          op = `truncate 0 (append handle full)`;
          history.push(op);
          await f.truncate(0);
          await s.truncate(0);
          size = 0;
        }
        const b = data(len);
        op = append ? `write(append) +${len} at ${size}` : `write ${off} +${len}`;
        history.push(op);
        await writeFull(f, append ? null : off, b);
        await writeFull(s, append ? null : off, b);
        size = append ? size + len : Math.max(size, off + len);
        counts.write = (counts.write ?? 0) + 1;
      } else if (p < 0.82) {
        // truncate: shrink or grow
        const to = int(2) ? int(size + 1) : int(maxSize + 1);
        op = `truncate ${to} (from ${size})`;
        history.push(op);
        await f.truncate(to);
        await s.truncate(to);
        size = to;
        counts.truncate = (counts.truncate ?? 0) + 1;
      } else if (p < 0.9) {
        op = `stat`;
        history.push(op);
        const st = await f.stat();
        if (st.size !== size) fail(i, `stat: size ${st.size}, shadow ${size}`);
        const st2 = await Deno.stat(opts.file);
        if (st2.size !== size) fail(i, `stat by path: size ${st2.size}, shadow ${size}`);
        counts.stat = (counts.stat ?? 0) + 1;
      } else if (p < 0.94) {
        op = `fsync`;
        history.push(op);
        await f.sync();
        counts.fsync = (counts.fsync ?? 0) + 1;
      } else {
        // close and re-open: what was committed is read back
        const how = int(20);
        const mode = how === 0 ? "trunc" : how < 3 ? "append" : "rw";
        op = `close, reopen ${mode}`;
        history.push(op);
        f.close();
        s.close();
        const o = mode === "trunc"
          ? { ...rw, truncate: true }
          : mode === "append"
          ? { read: true, append: true }
          : rw;
        f = await Deno.open(opts.file, o);
        s = await Deno.open(shadowPath, o);
        append = mode === "append";
        if (mode === "trunc") size = 0;
        await compareAll(i, `after ${op}`);
        counts.reopen = (counts.reopen ?? 0) + 1;
      }
      if (i === opts.faultAfter && size > 0) {
        const at = int(size);
        const [old] = await readFull(f, at, 1);
        const g = await Deno.open(opts.file, { write: true });
        await writeFull(g, at, new Uint8Array([old ^ 0xff]));
        g.close();
        history.push(`(fault injected: byte ${at} flipped)`);
      }
      if (size > maxReached) maxReached = size;
      if (i % 2000 === 0) log(`fsx: ${i} operations, file ${size} bytes`);
    }
    await compareAll(nOps, "at the end");
    f.close();
    s.close();
    f = await Deno.open(opts.file, { read: true });
    s = await Deno.open(shadowPath, { read: true });
    await compareAll(nOps, "at the end, re-opened");
    if (opts.keepShadow) await Deno.copyFile(shadowPath, opts.keepShadow);
  } finally {
    try {
      f.close();
    } catch { /* closed */ }
    try {
      s.close();
    } catch { /* closed */ }
    await Deno.remove(shadowDir, { recursive: true }).catch(() => {});
  }
  const ms = performance.now() - t0;
  log(`fsx: ${nOps} operations in ${(ms / 1000).toFixed(1)} s, no difference (seed ${seed})`);
  return { seed, counts, ops: nOps, ms, maxReached };
}

if (import.meta.main) {
  const args = [...Deno.args];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined) throw new Error(`${name}: a value is needed`);
    args.splice(i, 2);
    return v;
  };
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) {
      console.error(`fsx: ${name} '${v}': a whole number is needed`);
      Deno.exit(2);
    }
    return Number(v);
  };
  const ops = num("--ops", flag("--ops"));
  const seed = num("--seed", flag("--seed") ?? Deno.env.get("FSX_SEED"));
  const maxSize = num("--max-size", flag("--max-size"));
  if (args.length !== 1 || args[0].startsWith("-")) {
    console.error(
      "usage: deno run -A tests/fsx.ts FILE [--ops N] [--seed S] [--max-size BYTES]\n" +
        "  FILE is created (or truncated) and exercised against a shadow copy; " +
        "the seed is printed (FSX_SEED sets it too)",
    );
    Deno.exit(2);
  }
  try {
    const r = await fsx({ file: args[0], ops, seed, maxSize });
    console.log(JSON.stringify({ seed: r.seed, ops: r.ops, ms: Math.round(r.ms), ...r.counts }));
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
