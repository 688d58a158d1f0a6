/**
 * Cluster benchmarks (issue 3):
 *
 * 1. Aggregate payload throughput of a put with N = 1, 2, 4, 8 hosted nodes
 *    paced at 115200 baud, R = 1 and 2, as a fraction of N/R × line rate.
 * 2. `pifs ls -l` of a directory of 10,000 files (from the index) against
 *    `ls -l` of the same tree on the local disk.
 *
 *   deno run -A bench/cluster_bench.ts [--quick] [--seconds 8] [--nodes 1,2,4,8]
 *     [--ls-files 10000] [--skip-ls]
 *
 * `--quick`: 2 seconds per configuration, N = 1, 2, 4, and 2,000 files for ls.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { Store } from "../store/store.ts";
import { opt, quick, random } from "./_util.ts";

const args = Deno.args;
const SECONDS = Number(opt("--seconds", quick ? "2" : "8"));
const NODES = opt("--nodes", quick ? "1,2,4" : "1,2,4,8").split(",").map(Number);
const LS_FILES = Number(opt("--ls-files", quick ? "2000" : "10000"));
const BAUD = Number(opt("--baud", "115200"));
/** File size: small enough that each node gets many, so placement evens out. */
const FILE = Number(opt("--file-kib", "32")) * 1024;
const PIFS = new URL("../pifs", import.meta.url).pathname;

const rows: string[][] = [];
for (const n of args.includes("--skip-put") ? [] : NODES) {
  for (const r of [1, 2]) {
    if (r > n) continue;
    const dir = await Deno.makeTempDir({ prefix: "pifs-cbench-" });
    try {
      await simUp(dir, { nodes: n, baud: BAUD, cardSize: "64M" });
      const s = await Store.open(dir, { copies: r });
      const line = BAUD / 10;
      // Enough for SECONDS of the ideal aggregate rate.
      const files = Math.max(n, Math.round((line * n / r * SECONDS) / FILE));
      const data = Array.from({ length: files }, () => random(FILE));
      const t0 = performance.now();
      let next = 0;
      const worker = async () => {
        while (next < files) {
          const i = next++;
          await s.putStream(`/b/f${i}`, ReadableStream.from([data[i]]), {
            mode: 0o644,
            mtime: Date.now(),
          });
        }
      };
      try {
        await Promise.all(Array.from({ length: 16 * n }, worker)); // as `pifs put` does
      } catch (e) {
        rows.push([String(n), String(r), "-", "-", `failed: ${(e as Error).message}`, "-"]);
        console.error(`N=${n} R=${r}: failed: ${(e as Error).message}`);
        await s.close();
        continue;
      }
      const secs = (performance.now() - t0) / 1000;
      const payload = files * FILE;
      const ideal = line * n / r;
      // Placement is hashing: with few chunks one node gets more than its
      // share, and the busiest link bounds the time. Bytes each node holds:
      const perNode = new Map<number, number>();
      for (const st of s.up()) {
        for (const c of await st.client!.listChunks()) {
          perNode.set(st.entry.id, (perNode.get(st.entry.id) ?? 0) + c.size);
        }
      }
      const busiest = Math.max(...perNode.values());
      rows.push([
        String(n),
        String(r),
        `${(payload / 1024).toFixed(0)} KiB`,
        `${secs.toFixed(1)} s`,
        ((payload / secs) / ideal).toFixed(3),
        ((busiest / line) / secs).toFixed(3),
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
    `as a fraction of N/R x line rate (${BAUD / 10} B/s):\n`,
);
const head = ["N", "R", "payload", "time", "fraction of N/R x line", "busiest link's utilisation"];
const all = [head, ...rows];
const w = head.map((_, i) => Math.max(...all.map((x) => x[i].length)));
for (const x of all) console.log(x.map((c, i) => c.padEnd(w[i])).join("  "));

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
