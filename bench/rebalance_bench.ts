/**
 * Rebalance (issue 7): a 4th Pi joins a 3-Pi R=2 cluster paced at 115200
 * baud; `rebalance` moves its share onto it. Reports the bytes moved against
 * the theoretical minimum (the bytes the new Pi should hold: its capacity
 * share of every copy), the new Pi's share against its capacity share, and
 * the move's throughput against the new Pi's line rate (every copy crosses
 * that one line, so it bounds the move).
 *
 *   deno run -A bench/rebalance_bench.ts [--quick] [--mib 1] [--baud 115200] [--file-kib 16]
 *
 * The data is put unpaced (it is not what is measured), then the cluster is
 * restarted at the baud rate, the Pi added and the rebalance timed.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { Store } from "../store/store.ts";
import { rebalance } from "../store/rebalance.ts";
import { opt, quick } from "./_util.ts";

const MIB = Number(opt("--mib", quick ? "0.5" : "1.5"));
const BAUD = Number(opt("--baud", "115200"));
const FILE = Number(opt("--file-kib", "16")) * 1024;

const dir = await Deno.makeTempDir({ prefix: "pifs-rbbench-" });
try {
  await simUp(dir, { nodes: 3, baud: 0, cardSize: "64M" });
  {
    const s = await Store.open(dir, { copies: 2 });
    const files = Math.ceil(MIB * 1024 * 1024 / FILE);
    let next = 0;
    const worker = async () => {
      while (next < files) {
        const i = next++;
        const b = new Uint8Array(FILE);
        crypto.getRandomValues(b.subarray(0, Math.min(FILE, 65536)));
        for (let o = 65536; o < FILE; o += 65536) {
          crypto.getRandomValues(b.subarray(o, Math.min(FILE, o + 65536)));
        }
        await s.putStream(`/b/f${i}`, ReadableStream.from([b]), { mode: 0o644, mtime: Date.now() });
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await s.close();
  }
  await simDown(dir);
  await simUp(dir, { baud: BAUD });
  await simUp(dir, { add: 1 });
  const s = await Store.open(dir);
  try {
    const r = await rebalance(s);
    const bytes = new Map<number, number>();
    for (const st of s.up()) {
      let b = 0;
      for (const c of await st.client!.listChunks()) b += c.size;
      bytes.set(st.entry.id, b);
    }
    const total = [...bytes.values()].reduce((a, b) => a + b, 0);
    const caps = new Map(s.up().map((st) => [st.entry.id, st.info!.capacity]));
    const capTotal = [...caps.values()].reduce((a, b) => a + b, 0);
    const added = Math.max(...bytes.keys());
    const share = total * caps.get(added)! / capTotal;
    const line = BAUD / 10;
    console.log(
      `\nRebalance after a 4th Pi joined a 3-Pi R=2 cluster (${MIB} MiB of ${
        FILE / 1024
      } KiB files, ${total} bytes of copies), lines paced at ${BAUD} baud:\n`,
    );
    const rows = [
      ["measure", "value"],
      ["bytes copied", String(r.bytesCopied)],
      ["bytes copied / bytes the new Pi holds", (r.bytesCopied / bytes.get(added)!).toFixed(3)],
      ["bytes copied / its capacity share (the minimum)", (r.bytesCopied / share).toFixed(3)],
      ...[...bytes].map(([id, b]) => [
        `node ${id}: bytes held / capacity share`,
        (b / (total * caps.get(id)! / capTotal)).toFixed(3),
      ]),
      ["copies deleted from the old Pis", String(r.deleted)],
      ["time", `${r.seconds.toFixed(1)} s`],
      ["throughput / the new Pi's line rate", ((r.bytesCopied / r.seconds) / line).toFixed(3)],
    ];
    const w = [0, 1].map((i) => Math.max(...rows.map((x) => x[i].length)));
    for (const x of rows) console.log(x.map((c, i) => c.padEnd(w[i])).join("  "));
  } finally {
    await s.close();
  }
} finally {
  await simDown(dir).catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
