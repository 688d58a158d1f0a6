/**
 * The mount's disk cache on its own: bounded at every moment (also with
 * puts at once), kept across opens, a damaged file never served.
 */
import { DiskChunkCache } from "../fuse/disk_cache.ts";
import { chunkId } from "../ids.ts";
import { rand } from "./_cli.ts";
import assert from "node:assert/strict";

async function onDisk(dir: string): Promise<{ n: number; bytes: number }> {
  let n = 0, bytes = 0;
  for await (const e of Deno.readDir(dir)) {
    // A file can be renamed or deleted while this looks (the watch below).
    const size = await Deno.stat(`${dir}/${e.name}`).then((s) => s.size, () => -1);
    if (size >= 0) n++, bytes += size;
  }
  return { n, bytes };
}

Deno.test("disk cache: bounded even with many puts at once; kept across opens; damage found, not served", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-dcache-" });
  try {
    const chunks = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const data = rand(100_000, 500 + i);
        return { id: await chunkId(data), data };
      }),
    );
    const c = await DiskChunkCache.open(dir, 350_000);
    // All at once, as read-ahead does; the bound holds whenever one of them is written.
    let peak = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        peak = Math.max(peak, (await onDisk(dir).catch(() => ({ bytes: 0 }))).bytes);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    await Promise.all(chunks.map((x) => c.put(x.id, x.data)));
    watching = false;
    await watcher;
    const d = await onDisk(dir);
    assert(d.bytes <= 350_000 && d.n >= 1, JSON.stringify(d));
    assert(peak <= 350_000, `the directory held ${peak} bytes`);
    assert.deepStrictEqual(c.bytes, d.bytes);

    // One at a time: the most recent three stay; an older one is a miss.
    for (const x of chunks) await c.put(x.id, x.data);
    const last = chunks.slice(-3);
    for (const x of last) assert.deepStrictEqual(await c.get(x.id), x.data);
    assert.deepStrictEqual(await c.get(chunks[0].id), undefined);

    // Kept across opens; a leftover .part file goes.
    await Deno.writeFile(`${dir}/${"ab".repeat(32)}.part`, new Uint8Array(10));
    const c2 = await DiskChunkCache.open(dir, 350_000);
    assert.deepStrictEqual(c2.size, 3);
    assert.deepStrictEqual(await c2.get(last[0].id), last[0].data);
    assert(!(await Deno.lstat(`${dir}/${"ab".repeat(32)}.part`).then(() => true, () => false)));

    // A flipped byte: not served, deleted, counted.
    const f = `${dir}/${last[1].id}`;
    const b = await Deno.readFile(f);
    b[5] ^= 1;
    await Deno.writeFile(f, b);
    assert.deepStrictEqual(await c2.get(last[1].id), undefined);
    assert.deepStrictEqual(c2.damaged, 1);
    assert(!(await Deno.lstat(f).then(() => true, () => false)), "the damaged file stayed");
    // Reopened smaller: trimmed to the new bound at once.
    const c3 = await DiskChunkCache.open(dir, 150_000);
    assert(c3.bytes <= 150_000 && (await onDisk(dir)).bytes <= 150_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
