/**
 * A library of many small files synced again: what an unchanged re-sync, a
 * re-sync after one file changed, and a `pifs diff` cost. Everything runs
 * through the CLI (`./pifs`), so the same program measures any version.
 *
 *   deno run -A bench/resync_bench.ts [--quick] [--files 10000] [--kib 2] [--nodes 3]
 *     [--copies 2] [--baud 115200] [--first-baud 3000000] [--card-size 1G]
 *
 * (`--quick`: `--files 2000`.) A library of `--files` files of about
 * `--kib` KiB, 100 to a directory, is synced to `--nodes` hosted nodes with
 * `--copies` copies; the first sync runs with the lines paced at
 * `--first-baud` (only to save time: it is not measured), then the nodes
 * restart paced at `--baud` and the library is synced again unchanged,
 * then again after one file changed. Reported: each re-sync's bytes on the
 * wires against the data's bytes, its whole command's seconds, and the
 * seconds of `pifs diff` between the last two snapshots, each beside
 * `pifs status` (what any command costs: start, open the cluster, close).
 */
import { opt, quick, random } from "./_util.ts";

const files = Number(opt("--files", quick ? "2000" : "10000"));
const kib = Number(opt("--kib", "2"));
const nodes = opt("--nodes", "3");
const copies = opt("--copies", "2");
const baud = opt("--baud", "115200");
const firstBaud = opt("--first-baud", "3000000");
// Each chunk takes a record in a log sized 1/64 of the store (issue 22): 1 GiB cards hold
// 10,000 small files with 2 copies on 3 Pis; 256 MiB cards do not.
const cardSize = opt("--card-size", "1G");
const PIFS = new URL("../pifs", import.meta.url).pathname;

async function pifs(...args: string[]): Promise<{ out: string; secs: number }> {
  const t0 = performance.now();
  const o = await new Deno.Command(PIFS, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const secs = (performance.now() - t0) / 1000;
  const out = new TextDecoder().decode(o.stdout);
  if (!o.success) {
    throw new Error(`pifs ${args.join(" ")}: ${new TextDecoder().decode(o.stderr).trim()}`);
  }
  return { out, secs };
}

/** The summary of `pifs sync --json` (its last line). */
async function sync(c: string, spec: string) {
  const r = await pifs("sync", "--cluster", c, "--json", spec);
  const s = JSON.parse(r.out.trim().split("\n").pop()!);
  return { ...s, secs: r.secs } as Record<string, number> & { secs: number };
}

const dir = await Deno.makeTempDir({ prefix: "pifs-resync-" });
const c = `${dir}/c`;
try {
  let data = 0;
  for (let i = 0; i < files; i++) {
    const d = `${dir}/lib/d${String(Math.floor(i / 100)).padStart(3, "0")}`;
    if (i % 100 === 0) await Deno.mkdir(d, { recursive: true });
    const b = random(Math.round(kib * 1024 * (0.5 + ((i * 7919) % 1000) / 1000)));
    data += b.length;
    await Deno.writeFile(`${d}/f${i}.bin`, b);
  }
  const spec = `${dir}/lib.yaml`;
  await Deno.writeTextFile(
    spec,
    `name: lib\ntarget: /lib\ncopies: ${copies}\nsources:\n  - folder: ${dir}/lib\n`,
  );
  await pifs(
    "sim",
    "up",
    "--dir",
    c,
    "--nodes",
    nodes,
    "--card-size",
    cardSize,
    "--baud",
    firstBaud,
  );
  console.error(`resync: first sync of ${files} files (${(data / 1e6).toFixed(1)} MB)`);
  const first = await sync(c, spec);
  if (first.files_new !== files) throw new Error(`first sync: ${JSON.stringify(first)}`);
  await pifs("sim", "down", "--dir", c);
  await pifs("sim", "up", "--dir", c, "--baud", baud);
  console.error(`resync: unchanged re-sync at ${baud} baud`);
  const again = await sync(c, spec);
  if (again.files_unchanged !== files) throw new Error(`re-sync: ${JSON.stringify(again)}`);
  const victim = `${dir}/lib/d000/f0.bin`;
  const size = (await Deno.stat(victim)).size;
  await Deno.writeFile(victim, random(size));
  console.error("resync: one file changed");
  const one = await sync(c, spec);
  if (one.files_changed !== 1) throw new Error(`one change: ${JSON.stringify(one)}`);
  const snaps = JSON.parse((await pifs("snapshots", "--cluster", c, "--json")).out) as {
    name: string;
  }[];
  const [a, b] = snaps.slice(-2).map((s) => s.name);
  const diff = await pifs("diff", "--cluster", c, a, b);
  // What any command costs here (start, open the cluster, close): `status`.
  const base = await pifs("status", "--cluster", c);
  const changes = diff.out.trim().split("\n").filter(Boolean);
  if (changes.length !== 1) throw new Error(`diff: ${diff.out}`);
  console.log(
    `Library: ${files} files of about ${kib} KiB (${(data / 1e6).toFixed(2)} MB), 100 to a ` +
      `directory; ${nodes} hosted nodes at ${baud} baud, ${copies} copies:\n`,
  );
  console.log(
    "| unchanged re-sync: wire / data | its command | one file changed: wire / (copies × file) | its command | `pifs diff` of those two snapshots | `pifs status` |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  console.log(
    `| ${(again.wire_bytes / data).toExponential(2)} (${again.wire_bytes} B) | ${
      again.secs.toFixed(1)
    } s | ${
      (one.wire_bytes / (Number(copies) * size)).toFixed(2)
    } (${one.wire_bytes} B for ${size} B) | ${one.secs.toFixed(1)} s | ${
      diff.secs.toFixed(2)
    } s | ${base.secs.toFixed(2)} s |`,
  );
} finally {
  await pifs("sim", "down", "--dir", c).catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
