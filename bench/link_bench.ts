/**
 * `deno task bench:link` (the first section of `deno task bench`): payload
 * throughput of one link for chunk put and get, as a fraction of the line rate (baud/10 bytes/s for 8N1), against ZMODEM
 * (lrzsz `sz`/`rz`) moving the same bytes over an equally paced link
 * (`pifs-link`, the same pacing code as the hosted node), in the same run.
 *
 *   deno task bench:link [--quick] [--baud 115200,921600] [--chunk 262144]
 *
 * @module
 */
import { simDown, simUp } from "../sim/sim.ts";
import { connectNode } from "../store/cluster.ts";
import { run } from "../card/run.ts";
import { opt, quick, random } from "./_util.ts";

const bauds = opt("--baud", "115200,921600").split(",").map(Number);
const chunkSize = Number(opt("--chunk", "262144"));
const frameData = Number(opt("--frame", "4096"));
const REPO = new URL("..", import.meta.url).pathname;

/** Seconds of payload per run, so each measurement lasts about this long. */
const SECONDS = quick ? 4 : 20;

async function pifsLinkZmodem(dir: string, baud: number, data: Uint8Array): Promise<number> {
  await run("make", ["-s", "-C", `${REPO}firmware`, "build/pifs-link"]);
  const a = `${dir}/za`, b = `${dir}/zb`;
  const link = new Deno.Command(`${REPO}firmware/build/pifs-link`, {
    args: ["--a", a, "--b", b, "--baud", String(baud)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (let i = 0; i < 200 && !(await Deno.lstat(b).then(() => true, () => false)); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await Deno.writeFile(`${dir}/z.bin`, data);
    await Deno.mkdir(`${dir}/rx`, { recursive: true });
    await run("stty", ["-F", a, "raw", "-echo"]);
    await run("stty", ["-F", b, "raw", "-echo"]);
    const t0 = performance.now();
    const rz = new Deno.Command("sh", {
      args: ["-c", `cd '${dir}/rx' && exec rz -b -y <'${b}' >'${b}' 2>/dev/null`],
    }).spawn();
    const sz = await new Deno.Command("sh", {
      args: ["-c", `exec sz -b '${dir}/z.bin' <'${a}' >'${a}' 2>/dev/null`],
    }).output();
    const rzs = await rz.status;
    const secs = (performance.now() - t0) / 1000;
    if (!sz.success || !rzs.success) throw new Error(`sz/rz failed at ${baud} baud`);
    const got = await Deno.readFile(`${dir}/rx/z.bin`);
    if (got.length !== data.length || !got.every((x, i) => x === data[i])) {
      throw new Error("rz received different bytes");
    }
    return data.length / secs;
  } finally {
    link.kill("SIGTERM");
    await link.status;
  }
}

const rows: string[][] = [];
for (const baud of bauds) {
  const line = baud / 10;
  const size = Math.max(chunkSize, Math.round((line * SECONDS) / chunkSize) * chunkSize);
  const dir = await Deno.makeTempDir({ prefix: "pifs-bench-" });
  try {
    const c = await simUp(dir, { nodes: 1, baud, cardSize: "64M" });
    const client = await connectNode(dir, c, c.nodes[0], { frameData });
    const data = random(size);
    const chunks: Uint8Array[] = [];
    for (let o = 0; o < size; o += chunkSize) chunks.push(data.subarray(o, o + chunkSize));
    const ids: string[] = [];
    const w0 = client.bytesWritten;
    let t0 = performance.now();
    for (const ch of chunks) ids.push((await client.putChunk(ch)).id);
    const putRate = size / ((performance.now() - t0) / 1000);
    const wire = client.bytesWritten - w0;
    t0 = performance.now();
    for (const [i, id] of ids.entries()) {
      const back = await client.getChunk(id);
      if (back.length !== chunks[i].length) throw new Error("short read");
    }
    const getRate = size / ((performance.now() - t0) / 1000);
    await client.close();
    await simDown(dir);
    const zRate = await pifsLinkZmodem(dir, baud, data);
    rows.push([
      String(baud),
      `${(size / 1024).toFixed(0)} KiB`,
      (putRate / line).toFixed(3),
      (getRate / line).toFixed(3),
      (zRate / line).toFixed(3),
      (size / wire).toFixed(4),
    ]);
    console.error(`baud ${baud}: done`);
  } finally {
    await simDown(dir).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

console.log(
  `\nOne link, hosted node paced at baud/10 B/s; chunks of ${chunkSize / 1024} KiB, ` +
    `${frameData} B per data frame. Fractions of the line rate:\n`,
);
const head = ["baud", "payload", "put", "get", "zmodem (sz/rz)", "payload/wire bytes (put)"];
const all = [head, ...rows];
const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
for (const r of all) console.log(r.map((x, i) => x.padEnd(w[i])).join("  "));
