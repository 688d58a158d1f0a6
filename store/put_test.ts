import { assert, assertEquals } from "../tests/_assert.ts";
import { PutQueue } from "./put.ts";
import type { Store } from "./store.ts";

/**
 * A stand-in for the parts of a Store a PutQueue uses: `nodes` answering
 * Pis; each put takes `ms` and fails for the paths in `failing`. It records
 * how many puts ran at once and the order of commits and puts.
 */
function fakeStore(nodes: number, ms: number, failing: Set<string> = new Set()) {
  const log: string[] = [];
  let running = 0, peak = 0;
  const fake = {
    up: () => Array.from({ length: nodes }, () => ({})),
    copiesFor: () => 2,
    commit: (e: { op: string; p: string }) => {
      log.push(`${e.op} ${e.p}`);
      return Promise.resolve();
    },
    async putStream(path: string, source: ReadableStream<Uint8Array>, meta: { copies: number }) {
      running++;
      peak = Math.max(peak, running);
      try {
        let n = 0;
        for await (const b of source) n += b.length;
        await new Promise((r) => setTimeout(r, ms));
        if (failing.has(path)) throw new Error(`${path}: the node said no`);
        log.push(`put ${path} ${n} copies ${meta.copies}`);
      } finally {
        running--;
      }
    },
  };
  return { store: fake as unknown as Store, log, peak: () => peak };
}

const bytes = (n: number) => () => Promise.resolve(ReadableStream.from([new Uint8Array(n)]));

Deno.test("PutQueue keeps filesPerNode x Pis files in flight and stores every one", async () => {
  const f = fakeStore(3, 5);
  const landed: string[] = [];
  const q = new PutQueue(f.store, { filesPerNode: 2, onFile: (p) => landed.push(p) });
  assertEquals(q.fileSlots, 6);
  for (let i = 0; i < 40; i++) {
    await q.add(`/d/f${i}`, bytes(i), { size: i, mode: 0o644, mtime: 0 });
    assert(q.running <= 6, `${q.running} files in flight`);
  }
  await q.finish();
  assertEquals(f.peak(), 6);
  assertEquals(landed.length, 40);
  assertEquals(new Set(landed).size, 40);
  for (let i = 0; i < 40; i++) assert(f.log.includes(`put /d/f${i} ${i} copies 2`), `f${i}`);
});

Deno.test("PutQueue bounds the bytes in flight, but a file larger than the bound still goes", async () => {
  const f = fakeStore(4, 5);
  const q = new PutQueue(f.store, { filesPerNode: 64, bytesAhead: 1000 });
  for (let i = 0; i < 10; i++) {
    await q.add(`/f${i}`, bytes(400), { size: 400, mode: 0o644, mtime: 0 });
  }
  await q.add("/big", bytes(5000), { size: 5000, mode: 0o644, mtime: 0 });
  await q.finish();
  assertEquals(f.peak(), 2); // 2 x 400 fit in 1000 bytes, 3 do not
  assert(f.log.includes("put /big 5000 copies 2"));
});

Deno.test("PutQueue: the first failure stops the queue and is thrown; no file starts after it", async () => {
  const f = fakeStore(1, 2, new Set(["/f3"]));
  const q = new PutQueue(f.store, { filesPerNode: 1, bytesAhead: 1 << 20 });
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
  assertEquals(again, thrown);
  assert(!f.log.some((l) => /put \/f(8|9|1\d)/.test(l)), f.log.join(", "));
});

Deno.test("PutQueue.mkdir does not wait, and its entry is queued before the files under it", async () => {
  const f = fakeStore(2, 1);
  const q = new PutQueue(f.store);
  q.mkdir("/a", 0o755, 0);
  await q.add("/a/x", bytes(3), { size: 3, mode: 0o644, mtime: 0 });
  await q.finish();
  assertEquals(f.log, ["mkdir /a", "put /a/x 3 copies 2"]);
});
