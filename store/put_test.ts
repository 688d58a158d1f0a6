import assert from "node:assert/strict";
import { PutQueue } from "./put.ts";
import type { Store } from "./store.ts";

/**
 * A stand-in for the parts of a Store a PutQueue uses: `nodes` answering
 * Pis; each put takes `ms` (or what `place` says) and fails for the paths in
 * `failing`. A file's bytes count in the queue of the Pi `place` gives (Pi 0
 * by default) while it is stored. It records how many puts ran at once and
 * the order of commits and puts.
 */
function fakeStore(
  nodes: number,
  ms: number,
  failing: Set<string> = new Set(),
  place: (path: string) => { node: number; ms: number } = () => ({ node: 0, ms }),
) {
  const log: string[] = [];
  let running = 0, peak = 0;
  const queued = new Array(nodes).fill(0);
  let landed: (() => void)[] = [];
  const fake = {
    up: () => Array.from({ length: nodes }, (_, id) => ({ entry: { id } })),
    copiesFor: () => 2,
    queuedBytes: (id: number) => queued[id],
    starved: (low = 128 * 1024) => queued.some((b) => b < low),
    copyLanded: () => new Promise<void>((r) => landed.push(r)),
    commit: (e: { op: string; p: string }) => {
      log.push(`${e.op} ${e.p}`);
      return Promise.resolve();
    },
    async putStream(
      path: string,
      source: ReadableStream<Uint8Array>,
      meta: { copies: number; onQueued?: () => void },
    ) {
      running++;
      peak = Math.max(peak, running);
      const at = place(path);
      let n = 0;
      try {
        for await (const b of source) n += b.length;
        queued[at.node] += n;
        meta.onQueued?.();
        await new Promise((r) => setTimeout(r, at.ms));
        if (failing.has(path)) throw new Error(`${path}: the node said no`);
        log.push(`put ${path} ${n} copies ${meta.copies}`);
      } finally {
        queued[at.node] -= n;
        running--;
        const w = landed;
        landed = [];
        for (const r of w) r();
      }
    },
  };
  return { store: fake as unknown as Store, log, peak: () => peak };
}

const bytes = (n: number) => () => Promise.resolve(ReadableStream.from([new Uint8Array(n)]));

Deno.test("PutQueue keeps filesPerNode x Pis files in flight and stores every one", async () => {
  const f = fakeStore(3, 5);
  const landed: string[] = [];
  const q = new PutQueue(f.store, {
    filesPerNode: 2,
    lowWater: 0, // no Pi is ever short: exactly the slots
    onFile: (p) => landed.push(p),
  });
  assert.deepStrictEqual(q.fileSlots, 6);
  for (let i = 0; i < 40; i++) {
    await q.add(`/d/f${i}`, bytes(i), { size: i, mode: 0o644, mtime: 0 });
    assert(q.running <= 6, `${q.running} files in flight`);
  }
  await q.finish();
  assert.deepStrictEqual(f.peak(), 6);
  assert.deepStrictEqual(landed.length, 40);
  assert.deepStrictEqual(new Set(landed).size, 40);
  for (let i = 0; i < 40; i++) assert(f.log.includes(`put /d/f${i} ${i} copies 2`), `f${i}`);
});

Deno.test("PutQueue bounds the bytes in flight, but a file larger than the bound still goes", async () => {
  const f = fakeStore(4, 5);
  const q = new PutQueue(f.store, { filesPerNode: 64, bytesAhead: 1000, lowWater: 1 << 20 });
  for (let i = 0; i < 10; i++) {
    await q.add(`/f${i}`, bytes(400), { size: 400, mode: 0o644, mtime: 0 });
  }
  await q.add("/big", bytes(5000), { size: 5000, mode: 0o644, mtime: 0 });
  await q.finish();
  assert.deepStrictEqual(f.peak(), 2); // 2 x 400 fit in 1000 bytes, 3 do not
  assert(f.log.includes("put /big 5000 copies 2"));
});

Deno.test("PutQueue: the first failure stops the queue and is thrown; no file starts after it", async () => {
  const f = fakeStore(1, 2, new Set(["/f3"]));
  const q = new PutQueue(f.store, { filesPerNode: 1, bytesAhead: 1 << 20, lowWater: 0 });
  let thrown: unknown;
  let added = 0;
  try {
    for (let i = 0; i < 20; i++) {
      await q.add(`/f${i}`, bytes(1), { size: 1, mode: 0o644, mtime: 0, copies: 1 });
      added++;
    }
  } catch (e) {
    thrown = e;
  }
  assert(thrown instanceof Error && thrown.message === "/f3: the node said no", String(thrown));
  // 4 slots (the least): /f0../f7 may have started before /f3 failed, never /f8 on.
  assert(added >= 4 && added <= 8, `${added} added`);
  let again: unknown;
  await q.finish().catch((e) => again = e);
  assert.deepStrictEqual(again, thrown);
  assert(!f.log.some((l) => /put \/f(8|9|1\d)/.test(l)), f.log.join(", "));
});

Deno.test("PutQueue.mkdir does not wait, and its entry is queued before the files under it", async () => {
  const f = fakeStore(2, 1);
  const q = new PutQueue(f.store);
  q.mkdir("/a", 0o755, 0);
  await q.add("/a/x", bytes(3), { size: 3, mode: 0o644, mtime: 0 });
  await q.finish();
  assert.deepStrictEqual(f.log, ["mkdir /a", "put /a/x 3 copies 2"]);
});

Deno.test("PutQueue: a Pi with nothing queued gets more files beyond the slots, up to the most", async () => {
  // 4 Pis, 1 file each (4 slots). The first 4 files all go to Pi 0 and
  // take long; the others go to Pis 1-3 and are quick. Without more files
  // than slots, Pis 1-3 would idle until a slow file landed.
  const slow = 300;
  const f = fakeStore(
    4,
    0,
    new Set(),
    (p) =>
      p.startsWith("/slow") ? { node: 0, ms: slow } : { node: 1 + Number(p.slice(5)) % 3, ms: 20 },
  );
  const landed: [string, number][] = [];
  const t0 = performance.now();
  const q = new PutQueue(f.store, {
    filesPerNode: 1,
    maxFilesPerNode: 3,
    lowWater: 10,
    onFile: (p) => landed.push([p, performance.now() - t0]),
  });
  assert.deepStrictEqual([q.fileSlots, q.maxFiles], [4, 12]);
  let most = 0;
  for (let i = 0; i < 4; i++) {
    await q.add(`/slow${i}`, bytes(100), { size: 100, mode: 0o644, mtime: 0 });
  }
  for (let i = 0; i < 30; i++) {
    await q.add(`/fast${i}`, bytes(100), { size: 100, mode: 0o644, mtime: 0 });
    most = Math.max(most, q.running);
  }
  await q.finish();
  assert.deepStrictEqual(landed.length, 34);
  // Pis 1-3 were fed while Pi 0 was busy: fast files landed before any slow one.
  const firstSlow = Math.min(...landed.filter(([p]) => p.startsWith("/slow")).map(([, t]) => t));
  const fastBefore = landed.filter(([p, t]) => p.startsWith("/fast") && t < firstSlow).length;
  assert(fastBefore >= 20, `${fastBefore} fast files landed before the first slow one`);
  // Never more than maxFilesPerNode x Pis in flight.
  assert(most <= 12 && f.peak() <= 12, `${most}, ${f.peak()} in flight`);
  assert(f.peak() > 4, `${f.peak()} in flight`);
});

Deno.test("PutQueue: with no Pi short of bytes, files beyond the slots wait", async () => {
  // Every file goes to Pi 0, and the others are never used: they are short,
  // but with the low-water mark at 0 nothing counts as short.
  const f = fakeStore(4, 10);
  const q = new PutQueue(f.store, { filesPerNode: 1, maxFilesPerNode: 3, lowWater: 0 });
  for (let i = 0; i < 12; i++) {
    await q.add(`/f${i}`, bytes(10), { size: 10, mode: 0o644, mtime: 0 });
  }
  await q.finish();
  assert.deepStrictEqual(f.peak(), 4);
});
