/**
 * Cluster benchmarks (issue 3):
 *
 * 1. Aggregate payload throughput of a put with N = 1, 2, 4, 8 hosted nodes
 *    paced at 115200 baud, R = 1 and 2, as a fraction of N/R × line rate.
 * 2. `pifs ls -l` of a directory of 10,000 files (from the index) against
 *    `ls -l` of the same tree on the local disk.
 *
 *   deno run -A bench/cluster_bench.ts [--quick] [--seconds 60] [--nodes 1,2,4,8] [--copies 1,2]
 *     [--ls-files 10000] [--skip-ls] [--file-kib 32] [--files-per-node K] [--no-zip]
 *     [--skip-put] [--skip-placement] [--lazy-journal-bytes B] [--per-pi]
 *
 * `--quick`: 2 seconds per configuration, N = 1, 2, 4, and 2,000 files for ls.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { PutQueue } from "../store/put.ts";
import { Store } from "../store/store.ts";
import { placeChunk } from "../store/placement.ts";
import { decodeJournal, encodeEntry, expandEntries } from "../store/namespace.ts";
import { opt, quick, random } from "./_util.ts";

const args = Deno.args;
const SECONDS = Number(opt("--seconds", quick ? "2" : "60"));
const NODES = opt("--nodes", quick ? "1,2,4" : "1,2,4,8").split(",").map(Number);
const COPIES = opt("--copies", "1,2").split(",").map(Number);
const LS_FILES = Number(opt("--ls-files", quick ? "2000" : "10000"));
const BAUD = Number(opt("--baud", "115200"));
/** File size: small enough that each node gets many, so placement evens out. */
const FILE = Number(opt("--file-kib", "32")) * 1024;
/** Files in flight per Pi (default: what `pifs put` keeps, see store/put.ts). */
const PER_NODE = args.includes("--files-per-node")
  ? Number(opt("--files-per-node", ""))
  : undefined;
/** Lazy journal followers (`StoreOptions.lazyJournalBytes`; 0: every append to every Pi). */
const LAZY = args.includes("--lazy-journal-bytes")
  ? Number(opt("--lazy-journal-bytes", ""))
  : undefined;
const PIFS = new URL("../pifs", import.meta.url).pathname;

const rows: string[][] = [];
for (const n of args.includes("--skip-put") ? [] : NODES) {
  for (const r of COPIES) {
    if (r > n) continue;
    const dir = await Deno.makeTempDir({ prefix: "pifs-cbench-" });
    try {
      await simUp(dir, { nodes: n, baud: BAUD, cardSize: "64M" });
      const s = await Store.open(dir, {
        copies: r,
        zipJournal: !args.includes("--no-zip"),
        lazyJournalBytes: LAZY,
      });
      const line = BAUD / 10;
      // The same scheduler as `pifs put` (store/put.ts).
      const done: number[] = [];
      const q = new PutQueue(s, {
        filesPerNode: PER_NODE,
        onFile: () => done.push(performance.now()),
      });
      // Enough for SECONDS of the ideal aggregate rate with the queue full,
      // plus what the queue holds (--quick: SECONDS in all, no sustained rate).
      const files = Math.max(n, Math.round((line * n / r * SECONDS) / FILE)) +
        (quick ? 0 : q.fileSlots);
      const data = Array.from({ length: files }, () => random(FILE));
      const journal0 = Math.max(...s.up().map((st) => st.journalLength));
      const wire0 = new Map(s.up().map((st) => [st.entry.id, st.client!.bytesWritten]));
      const t0 = performance.now();
      let lastQueued = t0;
      // Four times a second: which Pis have chunk bytes queued (their line
      // has work). A Pi with none while the put has files to start is idle.
      const ids = s.up().map((st) => st.entry.id);
      const samples: [number, boolean[]][] = [];
      const sampler = setInterval(() => {
        samples.push([performance.now(), ids.map((id) => s.queuedBytes(id) > 0)]);
      }, 250);
      try {
        for (let i = 0; i < files; i++) {
          await q.add(`/b/f${i}`, () => Promise.resolve(ReadableStream.from([data[i]])), {
            size: FILE,
            mode: 0o644,
            mtime: Date.now(),
          });
        }
        lastQueued = performance.now();
        await q.finish();
      } catch (e) {
        clearInterval(sampler);
        rows.push([
          String(n),
          String(r),
          "-",
          "-",
          `failed: ${(e as Error).message}`,
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
        ]);
        console.error(`N=${n} R=${r}: failed: ${(e as Error).message}`);
        await s.close();
        continue;
      }
      clearInterval(sampler);
      const secs = (performance.now() - t0) / 1000;
      const payload = files * FILE;
      const ideal = line * n / r;
      // Sustained: the rate files landed at while the put still had files
      // to start (the queue full): the least-squares slope of landed
      // bytes over time, from the first landing until the last file was
      // queued (group commits land files in bursts; a slope over the whole
      // staircase is not moved by where a window's edges fall).
      const pts = done.filter((t) => t <= lastQueued);
      const windowSecs = pts.length > 2 ? (pts[pts.length - 1] - pts[0]) / 1000 : 0;
      let sustained = "-";
      if (windowSecs > 20) {
        const mt = pts.reduce((a, t) => a + t, 0) / pts.length, my = (pts.length - 1) / 2;
        let num = 0, den = 0;
        pts.forEach((t, i) => (num += (t - mt) * (i - my), den += (t - mt) ** 2));
        sustained = (((num / den) * 1000 * FILE) / ideal).toFixed(3);
      }
      const inWindow = samples.filter(([t]) => pts.length && t >= pts[0] && t <= lastQueued);
      const leastFed = inWindow.length
        ? Math.min(
          ...ids.map((_, k) => inWindow.filter(([, b]) => b[k]).length / inWindow.length),
        ).toFixed(3)
        : "-";
      // Journal bytes per file on a Pi: all it was sent during the put
      // (checkpoint entries included), and, as plain lines, the entries a
      // checkpoint left (a long put checkpoints and trims the journal).
      // A Pi that took every append (lazy followers skip some).
      const first = s.up().reduce((a, b) => (b.journalLength > a.journalLength ? b : a));
      const j = decodeJournal(await first.client!.journalRead(first.journalStart), "any");
      const puts = expandEntries(j).filter((e) => e.op === "put").length || 1;
      const plain = expandEntries(j).reduce((a, e) => a + encodeEntry(e).length, 0);
      const jb = (first.journalLength - journal0) / files;
      // Placement is hashing: with few chunks one node gets more than its
      // share, and the busiest link bounds the whole put. Bytes each node holds:
      const perNode = new Map<number, number>();
      for (const st of s.up()) {
        for (const c of await st.client!.listChunks()) {
          perNode.set(st.entry.id, (perNode.get(st.entry.id) ?? 0) + c.size);
        }
      }
      const busiest = Math.max(...perNode.values());
      // Everything sent to the busiest Pi (frames, journal, checkpoint
      // objects) over the chunk bytes it holds.
      const top = [...perNode].find(([, b]) => b === busiest)![0];
      const topWire = s.nodes.get(top)!.client!.bytesWritten - wire0.get(top)!;
      if (args.includes("--per-pi")) {
        for (const st of s.up()) {
          const id = st.entry.id;
          console.error(
            `  Pi ${id}: chunk bytes ${perNode.get(id)}, wire/payload ${
              ((st.client!.bytesWritten - wire0.get(id)!) / perNode.get(id)!).toFixed(4)
            }, journal ${st.journalLength - journal0} bytes${id === top ? " (busiest)" : ""}`,
          );
        }
      }
      const mean = [...perNode.values()].reduce((a, b) => a + b, 0) / n;
      rows.push([
        String(n),
        String(r),
        `${(payload / 1024).toFixed(0)} KiB`,
        `${secs.toFixed(1)} s`,
        ((payload / secs) / ideal).toFixed(3),
        windowSecs > 20 ? `${sustained} (${windowSecs.toFixed(0)} s)` : "-",
        windowSecs > 20 ? leastFed : "-",
        (mean / busiest).toFixed(3),
        ((busiest / line) / secs).toFixed(3),
        (topWire / busiest).toFixed(4),
        `${jb.toFixed(0)} (${(plain / puts).toFixed(0)})`,
      ]);
      console.error(`N=${n} R=${r}: ${((payload / secs) / ideal).toFixed(3)}`);
      await s.close();
    } finally {
      await simDown(dir).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  }
}

console.log(
  `\nAggregate put throughput, hosted nodes paced at ${BAUD} baud, ${FILE / 1024} KiB files, ` +
    `as a fraction of N/R x line rate (${BAUD / 10} B/s).\n` +
    `"whole put": all files over the whole time. "sustained": the rate files landed at while the ` +
    `put still had files to start (least-squares slope; the window in brackets).\n` +
    `"least fed Pi": the share of the window the Pi with the least work had chunk bytes queued.\n` +
    `"placement": the mean Pi's bytes over the busiest Pi's, which bounds the whole put.\n` +
    `"busiest Pi wire/payload": bytes sent to that Pi over the chunk bytes it holds.\n` +
    `Lazy journal followers: ${
      LAZY === 0 ? "off" : `from ${LAZY ?? "the default"} bytes queued`
    }.\n`,
);
const head = [
  "N",
  "R",
  "payload",
  "time",
  "whole put",
  "sustained (window)",
  "least fed Pi (window)",
  "placement: mean/busiest",
  "busiest link busy",
  "busiest Pi wire/payload",
  "journal B/file sent (plain)",
];
const all = [head, ...rows];
const w = head.map((_, i) => Math.max(...all.map((x) => x[i].length)));
for (const x of all) console.log(x.map((c, i) => c.padEnd(w[i])).join("  "));

// How the placement bound of a whole put grows toward 1 with its size: the
// mean Pi's copies over the busiest Pi's, for equal files of one chunk each
// placed by the real placement function (no wire; 20 random puts each).
if (!args.includes("--skip-placement")) {
  const sizes = [300, 3_000, 30_000];
  console.log(
    `\nPlacement bound of a whole put (mean Pi / busiest Pi, equal Pis, one chunk per file; ` +
      `mean of 20 puts of random chunk ids):\n`,
  );
  const ph = ["N", "R", ...sizes.map((k) => `${k} files`)];
  const prow: string[][] = [];
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  for (const n of NODES.filter((k) => k >= 2)) {
    for (const r of [1, 2]) {
      if (r > n) continue;
      const nodes = Array.from({ length: n }, (_, id) => ({ id, weight: 1 }));
      const cells = sizes.map((k) => {
        let sum = 0;
        for (let t = 0; t < 20; t++) {
          const count = new Array(n).fill(0);
          for (let i = 0; i < k; i++) {
            for (const id of placeChunk(hex(random(32)), nodes, r)) count[id]++;
          }
          sum += (k * r / n) / Math.max(...count);
        }
        return (sum / 20).toFixed(3);
      });
      prow.push([String(n), String(r), ...cells]);
    }
  }
  const pall = [ph, ...prow];
  const pw = ph.map((_, i) => Math.max(...pall.map((x) => x[i].length)));
  for (const x of pall) console.log(x.map((c, i) => c.padEnd(pw[i])).join("  "));
}

if (!args.includes("--skip-ls")) {
  // ls -l of LS_FILES files: from the index, against the local disk.
  const dir = await Deno.makeTempDir({ prefix: "pifs-lsbench-" });
  try {
    // 256 MiB cards: 10,000 journal entries need more log than a 64 MiB
    // card's (the journal is not trimmed by checkpoints yet).
    await simUp(dir, { nodes: 3, baud: 0, cardSize: "256M" });
    const s = await Store.open(dir);
    const local = `${dir}/local`;
    await Deno.mkdir(local);
    const empty = new Uint8Array(0);
    let next = 0;
    const worker = async () => {
      while (next < LS_FILES) {
        const name = `file${String(next++).padStart(5, "0")}`;
        await Deno.writeFile(`${local}/${name}`, empty);
        await s.putStream(`/many/${name}`, ReadableStream.from([empty]), {
          mode: 0o644,
          mtime: Date.now(),
        });
      }
    };
    // Many at once: their journal entries go out in groups.
    await Promise.all(Array.from({ length: 64 }, worker));
    await s.close();
    const time = async (cmd: string, a: string[]) => {
      const t0 = performance.now();
      const o = await new Deno.Command(cmd, { args: a, stdout: "piped" }).output();
      if (!o.success) throw new Error(`${cmd} failed`);
      return (performance.now() - t0) / 1000;
    };
    const tp = await time(PIFS, ["ls", "-l", "/many", "--cluster", dir]);
    const tl = await time("ls", ["-l", local]);
    console.log(
      `\nls -l of ${LS_FILES} files: pifs (index, including start-up and connecting to 3 nodes) ` +
        `${tp.toFixed(2)} s; local ls -l ${tl.toFixed(3)} s; ratio ${(tp / tl).toFixed(1)}`,
    );
  } finally {
    await simDown(dir).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}
