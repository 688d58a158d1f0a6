/**
 * What a short command pays for a node whose journal is behind (a lazy
 * follower after a long put, or a node that was away): the time of
 * `pifs ls /` with one node K entries behind, against the same command once
 * every node holds the whole journal. Opening the cluster queues the
 * catch-up in the background (`docs/CLUSTER.md` §5), so the two should be
 * close; a store that caught up before it served a command made the first
 * wait for the lines at the line rate.
 *
 *   deno run -A bench/catchup_bench.ts [--quick] [--entries 900] [--baud 115200] [--runs 3]
 *
 * Three hosted nodes; node 2 is killed, the entries (mkdir, about 67 bytes
 * each as journal lines) are committed to the two others, and node 2 is
 * started again. Each run builds that state anew.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";
import { opt, quick } from "./_util.ts";

const ENTRIES = Number(opt("--entries", quick ? "300" : "900"));
const BAUD = Number(opt("--baud", "115200"));
const RUNS = Number(opt("--runs", quick ? "1" : "3"));
const PIFS = new URL("../pifs", import.meta.url).pathname;
/** Plain lines (about 67 bytes an entry): the lag of a few hundred files' packed put entries. */
const opts = { copies: 1, checkpointEntries: 0, zipJournal: false };

/** Wall time of `pifs ls / --cluster dir`, in seconds (it must succeed). */
async function timeLs(dir: string): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command(PIFS, {
    args: ["ls", "/", "--cluster", dir],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`pifs ls: ${new TextDecoder().decode(r.stderr)}`);
  return (performance.now() - t0) / 1000;
}

const rows: string[][] = [];
for (let run = 1; run <= RUNS; run++) {
  const dir = await Deno.makeTempDir({ prefix: "pifs-catchup-bench-" });
  try {
    await simUp(dir, { nodes: 3, baud: BAUD, cardSize: "64M" });
    const s = await Store.open(dir, opts);
    let lag;
    try {
      await s.commit({ op: "mkdir", p: "/d", mode: 0o755, mtime: 1 });
      const had = s.nodes.get(2)!.journalLength;
      const c = await readClusterFile(dir);
      Deno.kill(c.nodes[2].pid!, "SIGKILL");
      await Promise.all(
        Array.from(
          { length: ENTRIES },
          (_, i) => s.commit({ op: "mkdir", p: `/d/directory-${i}`, mode: 0o755, mtime: 2 }),
        ),
      );
      lag = s.nodes.get(0)!.journalLength - had;
    } finally {
      await s.close();
    }
    await simUp(dir); // node 2 back
    const behind = await timeLs(dir);
    // Every node up to date, then the same command again.
    const s2 = await Store.open(dir, opts);
    try {
      await s2.catchUp();
    } finally {
      await s2.close();
    }
    const inSync = await timeLs(dir);
    rows.push([
      String(run),
      String(ENTRIES),
      String(lag),
      ((lag * 10) / BAUD).toFixed(1),
      behind.toFixed(2),
      inSync.toFixed(2),
      (behind / inSync).toFixed(2),
    ]);
    console.error(`run ${run}: ls ${behind.toFixed(2)} s behind, ${inSync.toFixed(2)} s in sync`);
  } finally {
    await simDown(dir).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

console.log(
  `\n\`pifs ls /\` with one of 3 hosted nodes (${BAUD} baud) behind by the entries below, ` +
    `against the same command with every journal whole. "line time": the lines it lacks at ` +
    `the line rate.\n`,
);
const head = [
  "run",
  "entries",
  "bytes behind",
  "line time (s)",
  "ls behind (s)",
  "ls in sync (s)",
  "ratio",
];
console.log(`| ${head.join(" | ")} |`);
console.log(`| ${head.map(() => "-").join(" | ")} |`);
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
