/**
 * Sync benchmark: memory against file size, and wire bytes against change.
 *
 *   deno run -A bench/sync_bench.ts [--sizes 256,1024] [--nodes 3]
 *
 * Three unpaced hosted nodes, copies 1. For each size (MiB), one file of
 * that size from a generated source is synced; the peak RSS of this process
 * during the run is sampled every 50 ms. Then the same source again
 * (unchanged), and with 1 MiB changed in the middle: bytes on the wires as a
 * fraction of the file.
 */
import { defineJob, openCluster, type Source, sync } from "../mod.ts";
import { simDown, simUp } from "../sim/sim.ts";

const args = Deno.args;
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const sizes = opt("--sizes", "256,1024").split(",").map(Number);
const nodes = Number(opt("--nodes", "3"));
const MiB = 1024 * 1024;

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
  "| file | peak RSS | peak JS heap + external | RSS / file | wire bytes / file | " +
    "unchanged re-sync wire / file | 1 MiB edit: wire bytes (× 1 MiB) |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
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
      clearInterval(timer);
      const again = await sync(store, job(0));
      const edit = await sync(store, job(1));
      console.log(
        `| ${size} MiB | ${(peak / MiB).toFixed(0)} MiB | ${(heap / MiB).toFixed(0)} MiB | ${
          (peak / (size * MiB)).toFixed(3)
        } | ${(first.wire_bytes / (size * MiB)).toFixed(4)} | ${
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
