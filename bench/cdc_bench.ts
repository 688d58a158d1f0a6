/**
 * Content-defined chunker benchmark (`sync/cdc.ts`):
 *
 *   deno run -A bench/cdc_bench.ts [--quick] [--size 256] [--edit-size 100]
 *
 * (`--quick`: `--size 64 --edit-size 32`.)
 *
 * For avg 64 KiB, 256 KiB, 1 MiB and 4 MiB (min avg/4, max avg*4 but at most
 * 8 MiB) it prints two markdown tables:
 *
 * 1. speed and sizes on `--size` MiB of seeded pseudo-random data: boundary
 *    search alone (`cutPoint` over one buffer), the incremental `Chunker` fed
 *    1 MiB pieces, SHA-256 of every chunk (`crypto.subtle.digest`), and the
 *    ratio of hashing time to chunking time (> 1: hashing is the bottleneck);
 *    the chunk count and the mean, smallest and largest chunk;
 * 2. how many chunks (and bytes) of a `--edit-size` MiB buffer are new after
 *    (a) overwriting 1 MiB in the middle and (b) inserting 100 bytes in the
 *    middle (mean and max over the middle and 4 more places around it): what
 *    a sync would have to send.
 *
 * Throughputs are the best of a few runs. MB = 10^6 bytes.
 *
 * @module
 */
import { type CdcOptions, Chunker, cutPoint, DEFAULT_CDC, MAX_CHUNK } from "../sync/cdc.ts";

const KiB = 1024, MiB = 1024 * KiB;
const args = Deno.args;
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes("--quick");
const SIZE = opt("--size", quick ? 64 : 256) * MiB;
const EDIT_SIZE = opt("--edit-size", quick ? 32 : 100) * MiB;
const RUNS = 3;
const SEED = 0xbe9c4;
const AVGS = [64 * KiB, 256 * KiB, MiB, 4 * MiB];

/** n bytes from a seeded xorshift32, so every run sees the same data. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < n; i++) out[i] = (i * 131) & 255;
  return out;
}

function optionsFor(avg: number): CdcOptions {
  return { min: avg / 4, avg, max: Math.min(avg * 4, MAX_CHUNK) };
}

/** Chunk end offsets of data by cutPoint(). */
function cutEnds(data: Uint8Array, o: CdcOptions): number[] {
  const out: number[] = [];
  for (let at = 0; at < data.length;) out.push(at = cutPoint(data, at, data.length, o));
  return out;
}

/** Chunks of data through a Chunker fed `piece`-byte arrays. */
function chunkerRun(data: Uint8Array, o: CdcOptions, piece: number): Uint8Array[] {
  const ch = new Chunker(o);
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += piece) {
    for (const c of ch.push(data.subarray(at, at + piece))) out.push(c);
  }
  const last = ch.finish();
  if (last) out.push(last);
  return out;
}

function chunksOf(data: Uint8Array, o: CdcOptions): Uint8Array[] {
  let at = 0;
  return cutEnds(data, o).map((e) => data.subarray(at, at = e));
}

function digest(c: Uint8Array): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", c as Uint8Array<ArrayBuffer>);
}

function hex(b: ArrayBuffer): string {
  return Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Best time in ms of `runs` calls of fn. */
async function best(runs: number, fn: () => unknown): Promise<number> {
  let t = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

/** Chunks (count, bytes) of `after` whose SHA-256 is not a chunk of `before`. */
async function changed(before: Uint8Array, after: Uint8Array, o: CdcOptions) {
  const old = new Set<string>();
  for (const c of chunksOf(before, o)) old.add(hex(await digest(c)));
  let count = 0, bytes = 0;
  for (const c of chunksOf(after, o)) {
    if (!old.has(hex(await digest(c)))) {
      count++;
      bytes += c.length;
    }
  }
  return { count, bytes };
}

const fmtSize = (n: number) =>
  n >= MiB ? `${+(n / MiB).toFixed(2)} MiB` : n >= KiB ? `${+(n / KiB).toFixed(1)} KiB` : `${n} B`;
const mbps = (bytes: number, ms: number) => (bytes / 1e3 / ms).toFixed(0);

const cpu = (() => {
  try {
    return /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? "?";
  } catch {
    return "?";
  }
})();
console.log(
  `# CDC bench: ${fmtSize(SIZE)} of seeded random data, deno ${Deno.version.deno}, ` +
    `v8 ${Deno.version.v8}, ${cpu}\n`,
);

const data = randomBytes(SIZE, SEED);

const speed: string[] = [
  "| avg | min / max | chunks | mean (× avg) | smallest | largest | cutPoint MB/s | Chunker MB/s (1 MiB pushes) | SHA-256 MB/s | SHA-256 time / cutPoint time |",
  "|---|---|---|---|---|---|---|---|---|---|",
];
for (const avg of AVGS) {
  const o = optionsFor(avg);
  let ends: number[] = [];
  const tCut = await best(RUNS, () => ends = cutEnds(data, o));
  let viaChunker: Uint8Array[] = [];
  const tChunker = await best(RUNS, () => viaChunker = chunkerRun(data, o, MiB));
  if (viaChunker.length !== ends.length) throw new Error("Chunker and cutPoint disagree");
  const chunks = chunksOf(data, o);
  const tSha = await best(2, async () => {
    for (const c of chunks) await digest(c);
  });
  const sizes = chunks.map((c) => c.length);
  const full = sizes.slice(0, -1);
  const mean = SIZE / sizes.length;
  speed.push(
    `| ${fmtSize(avg)}${o.avg === DEFAULT_CDC.avg ? " (default)" : ""} | ` +
      `${fmtSize(o.min)} / ${fmtSize(o.max)} | ${sizes.length} | ` +
      `${fmtSize(Math.round(mean))} (${(mean / avg).toFixed(2)}) | ` +
      `${fmtSize(Math.min(...full))} | ${fmtSize(Math.max(...full))} | ` +
      `${mbps(SIZE, tCut)} | ${mbps(SIZE, tChunker)} (${
        (tCut / tChunker).toFixed(2)
      }× cutPoint) | ` +
      `${mbps(SIZE, tSha)} | ${(tSha / tCut).toFixed(2)} |`,
  );
}
console.log(speed.join("\n"));

const base = data.subarray(0, EDIT_SIZE);
const mid = EDIT_SIZE >> 1;
/** Edit offsets: the middle, then 4 more around it (one edit is a sample of one). */
const EDIT_AT = [0, -2, -1, 1, 2].map((k) =>
  mid + k * Math.floor(EDIT_SIZE / 9) + (k & 1) * 333_333
);

function overwrite(at: number): Uint8Array {
  const b = base.slice();
  b.set(randomBytes(MiB, SEED ^ at), at);
  return b;
}

function insert(at: number): Uint8Array {
  const b = new Uint8Array(EDIT_SIZE + 100);
  b.set(base.subarray(0, at));
  b.set(randomBytes(100, SEED ^ at), at);
  b.set(base.subarray(at), at + 100);
  return b;
}

/** "mean (max)" of the changed chunks and bytes over the edits. */
async function editStats(o: CdcOptions, edit: (at: number) => Uint8Array) {
  const runs: { count: number; bytes: number }[] = [];
  for (const at of EDIT_AT) runs.push(await changed(base, edit(at), o));
  const mean = (f: (r: { count: number; bytes: number }) => number) =>
    runs.reduce((s, r) => s + f(r), 0) / runs.length;
  return {
    count: mean((r) => r.count),
    maxCount: Math.max(...runs.map((r) => r.count)),
    bytes: mean((r) => r.bytes),
    maxBytes: Math.max(...runs.map((r) => r.bytes)),
  };
}

const edits: string[] = [
  "",
  `Chunks of an edited ${fmtSize(EDIT_SIZE)} buffer whose SHA-256 is not among the original's, ` +
  `mean (max) over ${EDIT_AT.length} edits at and around the middle; new bytes also as a ` +
  "multiple of the edit (a) or of avg (b):",
  "",
  "| avg | chunks of original | (a) overwrite 1 MiB: new chunks | new bytes (× 1 MiB) | (b) insert 100 B: new chunks | new bytes (× avg) |",
  "|---|---|---|---|---|---|",
];
for (const avg of AVGS) {
  const o = optionsFor(avg);
  const a = await editStats(o, overwrite);
  const b = await editStats(o, insert);
  edits.push(
    `| ${fmtSize(avg)} | ${cutEnds(base, o).length} | ${a.count.toFixed(1)} (${a.maxCount}) | ` +
      `${fmtSize(Math.round(a.bytes))} (${(a.bytes / MiB).toFixed(2)}) ` +
      `(max ${fmtSize(a.maxBytes)}) | ${b.count.toFixed(1)} (${b.maxCount}) | ` +
      `${fmtSize(Math.round(b.bytes))} (${(b.bytes / avg).toFixed(2)}) ` +
      `(max ${fmtSize(b.maxBytes)}) |`,
  );
}
console.log(edits.join("\n"));
