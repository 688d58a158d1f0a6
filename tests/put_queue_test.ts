/**
 * The put scheduler on a real store (hosted nodes): files beyond the slots
 * start while a Pi has little queued, the store counts each Pi's queued
 * bytes and gives them back as copies land, and every file reads back.
 */
import { withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { Store } from "../store/store.ts";
import { PutQueue } from "../store/put.ts";

Deno.test("put queue: more files than slots start while the Pis have little queued; queued bytes all given back", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { copies: 2 });
    try {
      // 4 slots (the least); the Pis' lines are fast, so each has far less
      // than the default 128 KiB queued and more files start.
      const q = new PutQueue(s, { filesPerNode: 1, maxFilesPerNode: 8 });
      assert.deepStrictEqual([q.fileSlots, q.maxFiles], [4, 24]);
      const ids = s.up().map((st) => st.entry.id);
      let peak = 0, sawQueued = 0;
      const bodies: Uint8Array[] = [];
      for (let i = 0; i < 150; i++) {
        const body = new Uint8Array(3000 + i).map((_, k) => (k * 7 + i) & 0xff);
        bodies.push(body);
        await q.add(`/q/f${i}`, () => Promise.resolve(ReadableStream.from([body])), {
          size: body.length,
          mode: 0o644,
          mtime: 1_700_000_000_000,
        });
        peak = Math.max(peak, q.running);
        sawQueued = Math.max(sawQueued, ...ids.map((id) => s.queuedBytes(id)));
        assert(q.running <= 24, `${q.running} files in flight, at most 24`);
      }
      await q.finish();
      assert(peak > 4, `at most ${peak} files in flight: none beyond the 4 slots`);
      assert(sawQueued > 0, "no Pi ever had bytes queued");
      for (const id of ids) assert.deepStrictEqual(s.queuedBytes(id), 0, `node ${id}`);
      for (let i = 0; i < 150; i += 37) {
        const m = await s.manifestOf(s.index.get(`/q/f${i}`)!.manifest!);
        const back = new Uint8Array(await new Response(s.fileStream(m)).arrayBuffer());
        assert.deepStrictEqual(back, bodies[i], `/q/f${i}`);
      }
    } finally {
      await s.close();
    }
  });
});
