/**
 * End-to-end sync benchmark on paced hosted nodes, and the host's chunking
 * and hashing against just reading.
 *
 *   deno run -A bench/sync_e2e_bench.ts [--quick] [--nodes 4] [--copies 1] [--baud 921600]
 *     [--mib 16] [--host-mib 512]
 *
 * (`--quick`: `--mib 4 --host-mib 128`.)
 *
 * 1. Host: a `--host-mib` MiB file on the local disk read three ways, in one run:
 *    read only; read + content-defined chunking; read + chunking + SHA-256
 *    of every chunk (what `pifs sync` does before anything crosses a wire).
 * 2. A folder of one file of `--mib` MiB synced to `--nodes` hosted nodes
 *    paced at `--baud`, `--copies` copies: payload throughput as a fraction
 *    of N/R × line rate (baud/10 B/s per link); an unchanged re-sync; a
 *    re-sync after 10 % of the file (in the middle) changed.
 */
import { Chunker, defineJob, openCluster, sync } from "../mod.ts";
import { chunkId } from "../link/client.ts";
import { simDown, simUp } from "../sim/sim.ts";
import { opt, quick } from "./_util.ts";

const nodes = Number(opt("--nodes", "4"));
const copies = Number(opt("--copies", "1"));
const baud = Number(opt("--baud", "921600"));
const mib = Number(opt("--mib", quick ? "4" : "16"));
const hostMib = Math.max(8, Math.round(Number(opt("--host-mib", quick ? "128" : "512")) / 8) * 8);
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

const dir = await Deno.makeTempDir({ prefix: "pifs-e2e-bench-" });
try {
  // ---- 1. host: read, chunk, hash ----
  const big = `${dir}/big.bin`;
  {
    const f = await Deno.open(big, { write: true, create: true });
    const b = new Uint8Array(8 * MiB);
    for (let i = 0; i < hostMib / 8; i++) {
      fill(b, 1000 + i);
      await f.write(b);
    }
    f.close();
  }
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
  console.log(`# sync end-to-end bench, deno ${Deno.version.deno}\n`);
  console.log(`Host, ${hostMib} MiB from the page cache, one run:\n`);
  console.log("| read | read + chunk | read + chunk + SHA-256 |");
  console.log("| --- | --- | --- |");
  console.log(
    `| ${read.toFixed(0)} MB/s (1.00) | ${chunked.toFixed(0)} MB/s (${
      (chunked / read).toFixed(2)
    }) | ${hashed.toFixed(0)} MB/s (${(hashed / read).toFixed(2)}) |\n`,
  );

  // ---- 2. paced cluster ----
  const cdir = `${dir}/c`;
  await simUp(cdir, { nodes, baud, cardSize: "256M" });
  await Deno.mkdir(`${dir}/src`);
  const data = new Uint8Array(mib * MiB);
  fill(data, 7);
  await Deno.writeFile(`${dir}/src/data.bin`, data);
  const store = await openCluster(cdir, { copies });
  try {
    const job = defineJob({
      name: "e2e",
      target: "/e2e",
      copies,
      sources: [{ kind: "folder", path: `${dir}/src`, followSymlinks: false }],
    });
    const t0 = performance.now();
    const first = await sync(store, job);
    const secs = (performance.now() - t0) / 1000;
    const line = (nodes / copies) * (baud / 10);
    const again = await sync(store, job);
    // 10 % of the file, in the middle, changed.
    const tenth = Math.floor(data.length / 10 / 8) * 8;
    fill(
      data.subarray(
        Math.floor(data.length / 2) - tenth / 2,
        Math.floor(data.length / 2) + tenth / 2,
      ),
      99,
    );
    await Deno.writeFile(`${dir}/src/data.bin`, data);
    const changed = await sync(store, job);
    console.log(
      `Cluster: ${nodes} hosted nodes at ${baud} baud, copies ${copies}, one ${mib} MiB file:\n`,
    );
    console.log(
      "| first sync: payload / (N/R × line rate) | unchanged re-sync: wire / file | 10 % changed: wire / file | dedup ratio after the change |",
    );
    console.log("| --- | --- | --- | --- |");
    console.log(
      `| ${(data.length / secs / line).toFixed(3)} (${secs.toFixed(1)} s) | ${
        (again.wire_bytes / data.length).toExponential(2)
      } | ${
        (changed.wire_bytes / data.length).toFixed(3)
      } (${changed.chunks_new} chunks new, ${changed.chunks_deduplicated} deduplicated) | ${changed.dedup_ratio} |`,
    );
    if (first.files_new !== 1) throw new Error(`first sync: ${JSON.stringify(first)}`);
  } finally {
    await store.close();
    await simDown(cdir).catch(() => {});
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
