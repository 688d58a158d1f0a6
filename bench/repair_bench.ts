/**
 * Scrub and repair benchmarks (issue 7):
 *
 * 1. Scrub time per GiB on a hosted node: N MiB put on a 1-node unpaced
 *    cluster, then `scrub` timed (SCRUB runs on the node: it reads each chunk
 *    from its card and checks its SHA-256; no chunk data crosses the wire),
 *    against `sha256sum` of the same bytes in a file on the local disk (the
 *    hash the store names chunks by, `chunkId` in link/client.ts).
 * 2. Repair throughput against the line rate: a 3-node R=2 cluster paced at
 *    115200 baud, a byte flipped in every data chunk on node 1's card; the
 *    repair (from a scrub made just before, timed apart) deletes each damaged
 *    copy and makes it again from the healthy one: every repaired byte is
 *    read from one Pi (up its line) and written to another (down its line).
 *    Run once repairing one chunk at a time and once 4 at a time (the
 *    default of `repair`), the card damaged again in between.
 *
 *   deno run -A bench/repair_bench.ts [--quick] [--scrub-mib 256] [--repair-kib 1024]
 *     [--baud 115200] [--parallel 1,4] [--skip-scrub] [--skip-repair]
 *
 * `--quick`: 32 MiB scrubbed, 512 KiB put for the repair.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { Store } from "../store/store.ts";
import { repair, scrub } from "../store/repair.ts";
import { chunkId } from "../ids.ts";
import { opt, quick, random } from "./_util.ts";

const args = Deno.args;
const SCRUB_MIB = Number(opt("--scrub-mib", quick ? "32" : "256"));
const REPAIR_KIB = Number(opt("--repair-kib", quick ? "512" : "1024"));
const BAUD = Number(opt("--baud", "115200"));
/** Chunks repaired at once, one run each. */
const PARALLEL = opt("--parallel", "1,4").split(",").map(Number);
for (
  const [name, v] of [["--scrub-mib", SCRUB_MIB], ["--repair-kib", REPAIR_KIB], ["--baud", BAUD]]
) {
  if (!Number.isInteger(v) || (v as number) <= 0) {
    console.error(`repair_bench: ${name} ${v}: must be a whole number above 0`);
    Deno.exit(2);
  }
}
/** Files put for the scrub (each its own random bytes). */
const SCRUB_FILE = 8 * 1024 * 1024;
/** Files put for the repair: small, so that placement spreads many chunks. */
const REPAIR_FILE = 32 * 1024;

/** The smallest power-of-two card (in MiB, at least 64) with room for `bytes` and then some. */
function cardFor(bytes: number): string {
  let mib = 64;
  while (mib * 1024 * 1024 < bytes * 1.5 + 16 * 1024 * 1024) mib *= 2;
  return `${mib}M`;
}

function table(head: string[], rows: string[][]): void {
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((x) => x[i].length)));
  for (const x of all) console.log(x.map((c, i) => c.padEnd(w[i])).join("  "));
}

/**
 * Where `needle` lies whole in `hay` (a stale copy, such as a damaged one
 * whose sectors were freed, differs and is not listed).
 */
function findAll(hay: Uint8Array, needle: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = hay.indexOf(needle[0]); i >= 0; i = hay.indexOf(needle[0], i + 1)) {
    if (i + needle.length > hay.length) break;
    let k = 1;
    while (k < needle.length && hay[i + k] === needle[k]) k++;
    if (k === needle.length) out.push(i);
  }
  return out;
}

async function scrubBench(): Promise<void> {
  const bytes = SCRUB_MIB * 1024 * 1024;
  const dir = await Deno.makeTempDir({ prefix: "pifs-rbench-" });
  try {
    await simUp(dir, { nodes: 1, baud: 0, cardSize: cardFor(bytes) });
    const s = await Store.open(dir, { copies: 1 });
    // The same bytes go to the node and into one local file.
    const local = await Deno.open(`${dir}/local.bin`, { write: true, create: true });
    const t0 = performance.now();
    for (let off = 0, i = 0; off < bytes; off += SCRUB_FILE, i++) {
      const data = random(Math.min(SCRUB_FILE, bytes - off));
      await s.putStream(`/s/f${i}`, ReadableStream.from([data]), {
        mode: 0o644,
        mtime: Date.now(),
      });
      for (let w = 0; w < data.length;) w += await local.write(data.subarray(w));
    }
    local.close();
    const putS = (performance.now() - t0) / 1000;
    console.error(`scrub: ${SCRUB_MIB} MiB put in ${putS.toFixed(1)} s`);
    // Each timed 3 times; the median is reported (a short run is noisy).
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
    const scrubTimes: number[] = [];
    let checked = 0;
    for (let i = 0; i < 3; i++) {
      const t1 = performance.now();
      const r = await scrub(s);
      scrubTimes.push((performance.now() - t1) / 1000);
      const n = r.nodes[0];
      if (n.error || n.damaged.length || r.missing.length || r.lost.length) {
        throw new Error(`the scrub found problems: ${JSON.stringify(r).slice(0, 400)}`);
      }
      checked = n.checked;
    }
    await s.close();
    const scrubS = median(scrubTimes);
    // The reference: sha256sum of the same bytes (also just written: in the page cache, as
    // the card image is).
    const shaTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t2 = performance.now();
      const o = await new Deno.Command("sha256sum", { args: [`${dir}/local.bin`], stdout: "null" })
        .output();
      if (!o.success) throw new Error("sha256sum failed");
      shaTimes.push((performance.now() - t2) / 1000);
    }
    const shaS = median(shaTimes);
    const gib = bytes / 1024 ** 3;
    console.log(
      `\nScrub of one hosted node (unpaced, card image ${cardFor(bytes)}), ${SCRUB_MIB} MiB of ` +
        `${SCRUB_FILE / 1024 ** 2} MiB files in 256 KiB chunks, against sha256sum of the same ` +
        "bytes in one local file (median of 3 runs each; both in the page cache):\n",
    );
    table(["what", "chunks", "time", "s per GiB", "MiB/s", "ratio to sha256sum"], [
      [
        "pifs scrub (SCRUB on the node)",
        String(checked),
        `${scrubS.toFixed(2)} s`,
        (scrubS / gib).toFixed(2),
        (SCRUB_MIB / scrubS).toFixed(0),
        (scrubS / shaS).toFixed(2),
      ],
      [
        "sha256sum of the local file",
        "-",
        `${shaS.toFixed(2)} s`,
        (shaS / gib).toFixed(2),
        (SCRUB_MIB / shaS).toFixed(0),
        "1.00",
      ],
    ]);
  } finally {
    await simDown(dir).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

async function repairBench(): Promise<void> {
  const bytes = REPAIR_KIB * 1024;
  const line = BAUD / 10;
  const dir = await Deno.makeTempDir({ prefix: "pifs-rbench-" });
  try {
    // Filled unpaced (quick), then restarted paced for the repair.
    await simUp(dir, { nodes: 3, baud: 0, cardSize: "64M" });
    const s = await Store.open(dir, { copies: 2 });
    const files: Uint8Array[] = [];
    for (let off = 0, i = 0; off < bytes; off += REPAIR_FILE, i++) {
      const data = random(Math.min(REPAIR_FILE, bytes - off));
      files.push(data);
      await s.putStream(`/r/f${i}`, ReadableStream.from([data]), {
        mode: 0o644,
        mtime: Date.now(),
      });
    }
    const on1 = new Set((await s.nodes.get(1)!.client!.listChunks()).map((c) => c.id));
    await s.close();
    // Only data chunks are damaged (their bytes are known, so they can be found on the card).
    const victims: Uint8Array[] = [];
    for (const f of files) if (on1.has(await chunkId(f))) victims.push(f);
    if (victims.length === 0) throw new Error("node 1 holds no data chunk");
    const payload = victims.reduce((a, v) => a + v.length, 0);
    const rows: string[][] = [];
    for (const parallel of PARALLEL) {
      // Node 1's card damaged again (its chunks found by their bytes), nodes restarted paced.
      await simDown(dir);
      const card = `${dir}/node1.img`;
      const img = await Deno.readFile(card);
      for (const v of victims) {
        const at = findAll(img, v);
        if (at.length !== 1) throw new Error(`a chunk of node 1 is ${at.length} times on ${card}`);
        img[at[0] + (v.length >> 1)] ^= 0x5a;
      }
      await Deno.writeFile(card, img);
      console.error(
        `repair: ${victims.length} data chunks (${(payload / 1024).toFixed(0)} KiB) damaged on ` +
          `node 1; nodes restarted at ${BAUD} baud; repairing ${parallel} at a time`,
      );
      await simUp(dir, { baud: BAUD });
      const s = await Store.open(dir);
      try {
        const t0 = performance.now();
        const report = await scrub(s);
        const scrubS = (performance.now() - t0) / 1000;
        const damaged = report.missing.filter((p) => p.damaged.length).length;
        if (damaged !== victims.length) {
          throw new Error(`the scrub found ${damaged} damaged chunks, not ${victims.length}`);
        }
        const wrote0 = [...s.nodes.values()].map((st) => st.client?.bytesWritten ?? 0);
        const t1 = performance.now();
        const r = await repair(s, {
          report,
          parallel,
          onChunk: (d, t) => {
            if (d % 4 === 0 || d === t) console.error(`repair: ${d} of ${t} chunks`);
          },
        });
        const repS = (performance.now() - t1) / 1000;
        const wrote = [...s.nodes.values()].map((st, i) =>
          (st.client?.bytesWritten ?? 0) - wrote0[i]
        );
        if (r.failed.length || r.deleted !== victims.length) {
          throw new Error(`repair: ${r.deleted} deleted, failed: ${JSON.stringify(r.failed)}`);
        }
        const rate = payload / repS;
        rows.push([
          String(parallel),
          String(victims.length),
          `${(payload / 1024).toFixed(0)} KiB`,
          `${scrubS.toFixed(1)} s`,
          `${repS.toFixed(1)} s`,
          rate.toFixed(0),
          (rate / line).toFixed(3),
          wrote.map((w, i) => `${i}: ${w}`).join(", "),
        ]);
      } finally {
        await s.close();
      }
    }
    console.log(
      `\nRepair, 3 hosted nodes paced at ${BAUD} baud (line rate ${line} B/s each way), R=2, ` +
        `${files.length} files of ${REPAIR_FILE / 1024} KiB; every data chunk on node 1 ` +
        "damaged, then repaired (once one chunk at a time, once several at once):\n",
    );
    table(
      [
        "at once",
        "damaged chunks",
        "payload",
        "scrub first",
        "repair",
        "payload B/s",
        "fraction of line rate",
        "host→node bytes per node",
      ],
      rows,
    );
    console.log(
      "\nEach repaired byte crosses two lines: up from a Pi with the healthy copy, then down to " +
        "the Pi that gets the new one (here node 1, whose copies were damaged, as placement " +
        "ranks it first). One chunk at a time, each read whole (hash-checked) before it is " +
        "written, the ideal is 0.5 of the line rate (1/line s per byte on each line, one after " +
        "the other); several at once, the read of one overlaps the write of another, and the " +
        "ideal is 1.0: node 1's line, which every new copy goes down, is the bound.",
    );
  } finally {
    await simDown(dir).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

if (!args.includes("--skip-scrub")) await scrubBench();
if (!args.includes("--skip-repair")) await repairBench();
