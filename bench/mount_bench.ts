/**
 * The mount (issue 6), on a 3-Pi R=2 cluster of hosted nodes paced at
 * 921600 baud:
 *
 * 1. Sequential read of a file through the mount against `pifs get` of it.
 * 2. Sequential write through the mount (`cp`) against `pifs put` (when the
 *    mount takes writes).
 * 3. Reading data already read (cached) through the mount against reading
 *    a local copy through a FUSE passthrough of a local directory (bindfs).
 * 4. `ls -lR` of many files through the mount against the same tree on the
 *    local disk.
 *
 *   deno run -A bench/mount_bench.ts [--quick] [--mib 4] [--baud 921600] [--files 10000]
 *
 * The data is put unpaced (it is not what is measured); then the cluster is
 * restarted at the baud rate. Every ratio compares two timings of this run.
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { Store } from "../store/store.ts";
import { opt, quick, random } from "./_util.ts";

const MIB = Number(opt("--mib", quick ? "1" : "4"));
const BAUD = Number(opt("--baud", "921600"));
const FILES = Number(opt("--files", quick ? "2000" : "10000"));
const PIFS = new URL("../pifs", import.meta.url).pathname;

async function sh(cmd: string, a: string[], okCodes = [0]): Promise<{ secs: number; out: string }> {
  const t0 = performance.now();
  const o = await new Deno.Command(cmd, { args: a, stdout: "piped", stderr: "piped" }).output();
  const secs = (performance.now() - t0) / 1000;
  if (!okCodes.includes(o.code)) {
    throw new Error(`${cmd} ${a.join(" ")}: exit ${o.code}: ${new TextDecoder().decode(o.stderr)}`);
  }
  return { secs, out: new TextDecoder().decode(o.stdout) };
}

/** Runs `fn`, which returns the seconds of what it measured, as `sh` reports them. */
async function timed(fn: () => Promise<number>): Promise<{ secs: number }> {
  return { secs: await fn() };
}

const rows: string[][] = [["measure", "mount", "baseline", "ratio (baseline time / mount time)"]];
const dir = await Deno.makeTempDir({ prefix: "pifs-mbench-" });
const mnt = `${dir}/mnt`;
let mounted = false;
try {
  await Deno.mkdir(mnt);
  await Deno.mkdir(`${dir}/local/many`, { recursive: true });
  const big = random(MIB * 1024 * 1024);
  const small = random(1024 * 1024);
  await Deno.writeFile(`${dir}/local/big.bin`, big);
  await Deno.writeFile(`${dir}/local/small.bin`, small);
  await simUp(`${dir}/c`, { nodes: 3, baud: 0, cardSize: "256M" });
  {
    const s = await Store.open(`${dir}/c`, { copies: 2 });
    await s.putStream("/big.bin", ReadableStream.from([big]), { mode: 0o644, mtime: Date.now() });
    await s.putStream("/small.bin", ReadableStream.from([small]), {
      mode: 0o644,
      mtime: Date.now(),
    });
    const empty = new Uint8Array(0);
    let next = 0;
    const worker = async () => {
      while (next < FILES) {
        const name = `file${String(next++).padStart(5, "0")}`;
        await Deno.writeFile(`${dir}/local/many/${name}`, empty);
        await s.putStream(`/many/${name}`, ReadableStream.from([empty]), {
          mode: 0o644,
          mtime: Date.now(),
        });
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    await s.close();
  }
  await simDown(`${dir}/c`);
  await simUp(`${dir}/c`, { baud: BAUD });
  const cl = ["--cluster", `${dir}/c`];

  // 1. Sequential read. The baseline is what `pifs get` does once the
  // cluster is open (start-up left out of both).
  const get = await timed(async () => {
    const s = await Store.open(`${dir}/c`);
    try {
      const e = s.index.get("/big.bin")!;
      const f = await Deno.open(`${dir}/got.bin`, { write: true, create: true, truncate: true });
      const t0 = performance.now();
      await s.fileStream(await s.manifestOf(e.manifest!)).pipeTo(f.writable);
      return (performance.now() - t0) / 1000;
    } finally {
      await s.close();
    }
  });
  await sh(PIFS, ["mount", mnt, ...cl]);
  mounted = true;
  const rd = await sh("dd", [`if=${mnt}/big.bin`, "of=/dev/null", "bs=128k"]);
  rows.push([
    `sequential read, ${MIB} MiB (baseline: pifs get, cluster open)`,
    `${rd.secs.toFixed(2)} s`,
    `${get.secs.toFixed(2)} s`,
    (get.secs / rd.secs).toFixed(3),
  ]);

  // 3. Cached: the small file read twice; the second read is measured.
  await sh("dd", [`if=${mnt}/small.bin`, "of=/dev/null", "bs=128k"]);
  const cached = await sh("dd", [`if=${mnt}/small.bin`, "of=/dev/null", "bs=128k"]);

  // 2. Sequential write (if the mount takes writes).
  await Deno.writeFile(`${dir}/local/w.bin`, random(MIB * 1024 * 1024));
  // dd with fsync at the end: the mount commits the file (chunks and its
  // entry on the Pis) before fsync returns, as `pifs put` has when it ends.
  const cp = await sh("dd", [
    `if=${dir}/local/w.bin`,
    `of=${mnt}/w.bin`,
    "bs=1M",
    "conv=fsync",
  ], [0, 1]);
  const writable = await Deno.stat(`${mnt}/w.bin`).then(() => true, () => false);
  await sh(PIFS, ["umount", mnt]);
  mounted = false;
  if (writable) {
    // What `pifs put` does once the cluster is open.
    const put = await timed(async () => {
      const s = await Store.open(`${dir}/c`);
      try {
        const data = random(MIB * 1024 * 1024); // other bytes: nothing deduplicated against w.bin
        const t0 = performance.now();
        await s.putStream("/w2.bin", ReadableStream.from([data]), {
          mode: 0o644,
          mtime: Date.now(),
        });
        return (performance.now() - t0) / 1000;
      } finally {
        await s.close();
      }
    });
    rows.push([
      `sequential write, ${MIB} MiB (baseline: pifs put, cluster open)`,
      `${cp.secs.toFixed(2)} s`,
      `${put.secs.toFixed(2)} s`,
      (put.secs / cp.secs).toFixed(3),
    ]);
  } else {
    rows.push([`sequential write (baseline: pifs put)`, "read-only mount", "-", "-"]);
  }

  // 3. (baseline) A FUSE passthrough of the local directory.
  const bind = `${dir}/bind`;
  await Deno.mkdir(bind);
  const haveBindfs = await sh("bindfs", ["--version"]).then(() => true, () => false);
  if (haveBindfs) {
    await sh("bindfs", [`${dir}/local`, bind]);
    try {
      await sh("dd", [`if=${bind}/small.bin`, "of=/dev/null", "bs=128k"]);
      const pt = await sh("dd", [`if=${bind}/small.bin`, "of=/dev/null", "bs=128k"]);
      rows.push([
        "cached read of 1 MiB (baseline: bindfs passthrough, warm)",
        `${(cached.secs * 1000).toFixed(1)} ms`,
        `${(pt.secs * 1000).toFixed(1)} ms`,
        (pt.secs / cached.secs).toFixed(3),
      ]);
    } finally {
      await sh("fusermount3", ["-u", bind]).catch(() => {});
    }
  } else {
    rows.push(["cached read of 1 MiB (bindfs not installed)", `${cached.secs}`, "-", "-"]);
  }

  // 4. ls -lR of many files.
  await sh(PIFS, ["mount", mnt, ...cl]);
  mounted = true;
  await sh("ls", ["-lR", `${dir}/local/many`]); // the local tree's inodes warm, as the mount's index is
  const lsLocal = await sh("ls", ["-lR", `${dir}/local/many`]);
  const lsMount = await sh("ls", ["-lR", `${mnt}/many`]);
  const lsMount2 = await sh("ls", ["-lR", `${mnt}/many`]);
  rows.push([
    `ls -lR of ${FILES} files, first (baseline: local disk, warm)`,
    `${lsMount.secs.toFixed(3)} s`,
    `${lsLocal.secs.toFixed(3)} s`,
    (lsLocal.secs / lsMount.secs).toFixed(3),
  ]);
  rows.push([
    `ls -lR of ${FILES} files, again`,
    `${lsMount2.secs.toFixed(3)} s`,
    `${lsLocal.secs.toFixed(3)} s`,
    (lsLocal.secs / lsMount2.secs).toFixed(3),
  ]);
  const lines = lsMount.out.trim().split("\n").length;
  if (lines < FILES) throw new Error(`ls -lR through the mount listed ${lines} lines`);
} finally {
  if (mounted) await sh(PIFS, ["umount", mnt]).catch(() => {});
  await simDown(`${dir}/c`).catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

console.log(
  `\nThe mount on 3 hosted Pis, R=2, lines paced at ${BAUD} baud (ratio > 1: the mount is faster):\n`,
);
const w = rows[0].map((_, i) => Math.max(...rows.map((x) => x[i].length)));
for (const x of rows) console.log(x.map((c, i) => c.padEnd(w[i])).join("  "));
