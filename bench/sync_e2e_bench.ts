/**
 * End-to-end sync benchmark on paced hosted nodes, and the host's chunking
 * and hashing against just reading.
 *
 *   deno run -A bench/sync_e2e_bench.ts [--quick] [--nodes 4] [--copies 1] [--baud 921600]
 *     [--mib 16] [--files 1] [--chunk-kib 1024] [--host-mib 512] [--skip-host]
 *
 * (`--quick`: `--mib 4 --host-mib 128`.)
 *
 * 1. Host: a `--host-mib` MiB file on the local disk read three ways, in one run:
 *    read only; read + content-defined chunking; read + chunking + SHA-256
 *    of every chunk (what `pifs sync` does before anything crosses a wire).
 * 2. A folder of `--mib` MiB in `--files` equal files (default one) synced to
 *    `--nodes` hosted nodes paced at `--baud`, `--copies` copies, chunks of
 *    `--chunk-kib` KiB on average (default 1024): payload throughput as a
 *    fraction of N/R × line rate (baud/10 B/s per link); how well the Pis
 *    were fed while the source was still being read (the share of 4 Hz
 *    samples in which the least fed Pi, and the mean Pi, had chunk bytes
 *    queued); the placement bound (the mean Pi's bytes over the busiest
 *    Pi's, which bounds the whole sync); an unchanged re-sync; a re-sync
 *    after 10 % of the first file (in the middle) changed.
 */
import { Chunker, defineJob, newSyncProgress, openCluster, sync } from "../mod.ts";
import { chunkId } from "../ids.ts";
import { simDown, simUp } from "../sim/sim.ts";
import { opt, quick } from "./_util.ts";

const nodes = Number(opt("--nodes", "4"));
const copies = Number(opt("--copies", "1"));
const baud = Number(opt("--baud", "921600"));
const mib = Number(opt("--mib", quick ? "4" : "16"));
const hostMib = Math.max(8, Math.round(Number(opt("--host-mib", quick ? "128" : "512")) / 8) * 8);
const files = Math.max(1, Number(opt("--files", "1")));
const chunkAvg = Number(opt("--chunk-kib", "1024")) * 1024;
const skipHost = Deno.args.includes("--skip-host");
const MiB = 1024 * 1024;

function fill(b: Uint8Array, seed: number) {
  const w = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x;
  }
}

/** Reads a file from the page cache three ways: read; read + chunk; read + chunk + SHA-256. */
async function hostPasses(big: string) {
  const f = await Deno.open(big, { write: true, create: true });
  const b = new Uint8Array(8 * MiB);
  for (let i = 0; i < hostMib / 8; i++) {
    fill(b, 1000 + i);
    await f.write(b);
  }
  f.close();
  const pass = async (chunk: boolean, hash: boolean) => {
    const t0 = performance.now();
    const c = new Chunker();
    let n = 0;
    const f = await Deno.open(big);
    for await (const piece of f.readable) {
      n += piece.length;
      if (!chunk) continue;
      for (const ch of c.push(piece)) if (hash) await chunkId(ch);
    }
    const last = chunk ? c.finish() : undefined;
    if (last && hash) await chunkId(last);
    return n / MiB / ((performance.now() - t0) / 1000);
  };
  await pass(false, false); // page cache warm
  const read = await pass(false, false);
  const chunked = await pass(true, false);
  const hashed = await pass(true, true);
  await Deno.remove(big);
  console.log(`Host, ${hostMib} MiB from the page cache, one run:\n`);
  console.log("| read | read + chunk | read + chunk + SHA-256 |");
  console.log("| --- | --- | --- |");
  console.log(
    `| ${read.toFixed(0)} MB/s (1.00) | ${chunked.toFixed(0)} MB/s (${
      (chunked / read).toFixed(2)
    }) | ${hashed.toFixed(0)} MB/s (${(hashed / read).toFixed(2)}) |\n`,
  );
}

const dir = await Deno.makeTempDir({ prefix: "pifs-e2e-bench-" });
try {
  console.log(`# sync end-to-end bench, deno ${Deno.version.deno}\n`);
  // ---- 1. host: read, chunk, hash ----
  if (!skipHost) await hostPasses(`${dir}/big.bin`);

  // ---- 2. paced cluster ----
  const cdir = `${dir}/c`;
  await simUp(cdir, { nodes, baud, cardSize: "256M" });
  await Deno.mkdir(`${dir}/src`);
  const per = Math.floor((mib * MiB) / files / 8) * 8;
  const bodies = Array.from({ length: files }, (_, i) => {
    const b = new Uint8Array(per);
    fill(b, 7 + i);
    return b;
  });
  const name = (i: number) => `data${String(i).padStart(5, "0")}.bin`;
  for (let i = 0; i < files; i++) await Deno.writeFile(`${dir}/src/${name(i)}`, bodies[i]);
  const total = per * files;
  const store = await openCluster(cdir, { copies });
  try {
    const job = defineJob({
      name: "e2e",
      target: "/e2e",
      copies,
      chunking: { avg: chunkAvg },
      sources: [{ kind: "folder", path: `${dir}/src`, followSymlinks: false }],
    });
    // Four times a second, which Pis have chunk bytes queued (their line has
    // work), while the source is still being read (more work can start).
    const ids = store.up().map((st) => st.entry.id);
    const progress = newSyncProgress();
    const samples: boolean[][] = [];
    const sampler = setInterval(() => {
      if (progress.bytes_read < total) samples.push(ids.map((id) => store.queuedBytes(id) > 0));
    }, 250);
    const t0 = performance.now();
    let first;
    try {
      first = await sync(store, job, { progress });
    } finally {
      clearInterval(sampler);
    }
    const secs = (performance.now() - t0) / 1000;
    const line = (nodes / copies) * (baud / 10);
    // From the first sample with work queued (the first chunk read and hashed).
    const k0 = samples.findIndex((x) => x.some(Boolean));
    const win = k0 < 0 ? [] : samples.slice(k0);
    const fed = ids.map((_, k) => win.filter((x) => x[k]).length / Math.max(1, win.length));
    const perNode: number[] = [];
    for (const st of store.up()) {
      perNode.push((await st.client!.listChunks()).reduce((a, c) => a + c.size, 0));
    }
    const placement = perNode.reduce((a, b) => a + b, 0) / nodes / Math.max(...perNode);
    const again = await sync(store, job);
    // 10 % of the first file, in the middle, changed.
    const data = bodies[0];
    const tenth = Math.floor(data.length / 10 / 8) * 8;
    fill(
      data.subarray(
        Math.floor(data.length / 2) - tenth / 2,
        Math.floor(data.length / 2) + tenth / 2,
      ),
      99,
    );
    await Deno.writeFile(`${dir}/src/${name(0)}`, data);
    const changed = await sync(store, job);
    console.log(
      `Cluster: ${nodes} hosted nodes at ${baud} baud, copies ${copies}, ${files} file(s) of ${
        (per / MiB).toFixed(3)
      } MiB, chunks of ${chunkAvg / 1024} KiB on average:\n`,
    );
    console.log(
      "| first sync: payload / (N/R × line rate) | fed while reading: least / mean Pi (samples) | placement: mean/busiest | unchanged re-sync: wire / data | 10 % of a file changed: wire / file | dedup ratio after the change |",
    );
    console.log("| --- | --- | --- | --- | --- | --- |");
    console.log(
      `| ${(total / secs / line).toFixed(3)} (${secs.toFixed(1)} s) | ${
        Math.min(...fed).toFixed(3)
      } / ${(fed.reduce((a, b) => a + b, 0) / fed.length).toFixed(3)} (${win.length}) | ${
        placement.toFixed(3)
      } | ${(again.wire_bytes / total).toExponential(2)} | ${
        (changed.wire_bytes / data.length).toFixed(3)
      } (${changed.chunks_new} chunks new, ${changed.chunks_deduplicated} deduplicated) | ${changed.dedup_ratio} |`,
    );
    if (first.files_new !== files) throw new Error(`first sync: ${JSON.stringify(first)}`);
  } finally {
    await store.close();
    await simDown(cdir).catch(() => {});
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
