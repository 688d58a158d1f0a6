/**
 * Sync benchmark: memory against file size, and wire bytes against change.
 *
 *   deno run -A --v8-flags=--max-semi-space-size=2 bench/sync_bench.ts [--quick]
 *     [--sizes 256,1024,4096] [--nodes 3]
 *
 * (`--quick`: `--sizes 64,512`.) Three unpaced hosted nodes, copies 1. For
 * each size (MiB), one file of that size from a generated source (nothing is
 * written to the local disk but the cards) is synced; the peak RSS of this
 * process during the three runs below is sampled every 50 ms, and compared with the
 * issue's budget of 256 MiB and with the smallest size's. Then the same
 * source again (unchanged), and with 1 MiB changed in the middle: bytes on
 * the wires as a fraction of the file. The cards are sparse files of about
 * 2.5 × the largest size / nodes: check the free space for large sizes.
 */
import { defineJob, openCluster, type Source, sync } from "../mod.ts";
import { simDown, simUp } from "../sim/sim.ts";
import { opt, quick } from "./_util.ts";

const sizes = opt("--sizes", quick ? "64,512" : "256,1024,4096").split(",").map(Number);
const MiB = 1024 * 1024;
/** The bound on a sync's resident memory. */
const BUDGET = 256 * MiB;
const nodes = Number(opt("--nodes", "3"));

/** A file of `size` bytes of xorshift output, with `edit` MiB at the middle changed. */
function generated(name: string, size: number, edit: number): Source {
  return {
    kind: "generated",
    description: `${name}: ${size} bytes`,
    async *list() {
      yield {
        path: name,
        size,
        mtimeMs: edit,
        key: `gen:${name}:${edit}`,
        freshPieces: true, // a new buffer per piece, never used again
        open: () => {
          let off = 0;
          let x = size ^ 0x9e3779b9; // a different stream per file
          return Promise.resolve(
            new ReadableStream<Uint8Array>({
              pull(c) {
                if (off >= size) return c.close();
                const n = Math.min(MiB, size - off);
                const b = new Uint8Array(n);
                const w = new Uint32Array(b.buffer, 0, n >> 2);
                for (let i = 0; i < w.length; i++) {
                  x ^= x << 13;
                  x ^= x >>> 17;
                  x ^= x << 5;
                  w[i] = x;
                }
                const mid = Math.floor(size / 2 / MiB) * MiB;
                if (edit && off === mid) b.fill(edit & 0xff);
                off += n;
                c.enqueue(b);
              },
            }, { highWaterMark: 1 }),
          );
        },
      };
    },
  };
}

const dir = await Deno.makeTempDir({ prefix: "pifs-sync-bench-" });
const maxMiB = Math.max(...sizes);
const card = 2 ** Math.ceil(Math.log2((maxMiB * 2.5 / nodes + 64) * MiB));
console.log(
  `# sync bench: ${nodes} unpaced hosted nodes, copies 1, cards ${
    card / MiB
  } MiB, deno ${Deno.version.deno}\n`,
);
console.log(
  "| file | peak RSS | peak RSS / 256 MiB budget | peak RSS / first row's | " +
    "peak JS heap + external | wire bytes / file | " +
    "unchanged re-sync wire / file | 1 MiB edit: wire bytes (× 1 MiB) |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
let firstPeak = 0;
try {
  await simUp(dir, { nodes, cardSize: `${card / MiB}M` });
  for (const size of sizes) {
    const store = await openCluster(dir, { copies: 1 });
    try {
      const name = `f${size}.bin`;
      let peak = 0, heap = 0;
      const timer = setInterval(() => {
        const m = Deno.memoryUsage();
        peak = Math.max(peak, m.rss);
        heap = Math.max(heap, m.heapUsed + m.external);
      }, 50);
      const job = (edit: number) =>
        defineJob({
          name: `bench${size}`,
          target: "/bench",
          copies: 1,
          sources: [generated(name, size * MiB, edit)],
        });
      const first = await sync(store, job(0));
      const again = await sync(store, job(0));
      const edit = await sync(store, job(1)); // reads the whole file again
      clearInterval(timer);
      firstPeak ||= peak;
      console.log(
        `| ${size} MiB | ${(peak / MiB).toFixed(0)} MiB | ${(peak / BUDGET).toFixed(2)} | ${
          (peak / firstPeak).toFixed(2)
        } | ${(heap / MiB).toFixed(0)} MiB | ${(first.wire_bytes / (size * MiB)).toFixed(4)} | ${
          (again.wire_bytes / (size * MiB)).toExponential(2)
        } | ${edit.wire_bytes} (${(edit.wire_bytes / MiB).toFixed(2)}) |`,
      );
    } finally {
      await store.close();
    }
  }
} finally {
  await simDown(dir).catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
