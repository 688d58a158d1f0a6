/**
 * The sync engine keeps every Pi's line fed (sync/engine.ts, `Feed`): while
 * a Pi has little queued it reads more files than its usual slots, up to its
 * bound, and an http source keeps to its slots (one download each). The
 * store's per-Pi queues are given back, and every file reads back.
 */
import { withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { Store } from "../store/store.ts";
import { defineJob, sync } from "../sync/api.ts";
import type { Source, SourceEntry } from "../pipelines/source.ts";

/** `n` files of a few KiB (one chunk each); counts the files between their open and their "file" event. */
function counted(kind: string, n: number) {
  const bodies = Array.from(
    { length: n },
    (_, i) => new Uint8Array(3000 + 17 * i).map((_, k) => (k * 13 + i) & 0xff),
  );
  const state = { open: 0, peak: 0 };
  const source: Source = {
    kind,
    description: `${n} generated files`,
    async *list() {
      for (let i = 0; i < n; i++) {
        const body = bodies[i];
        const e: SourceEntry = {
          path: `f${i}`,
          size: body.length,
          mtimeMs: 1_700_000_000_000,
          key: `k${i}`,
          open: () => {
            state.open++;
            state.peak = Math.max(state.peak, state.open);
            return Promise.resolve(ReadableStream.from([body.slice()]));
          },
        };
        yield e;
      }
    },
  };
  return { source, bodies, state, done: () => state.open-- };
}

async function run(kind: string, lowWater: number | undefined) {
  let result: { peak: number; up: number } = { peak: 0, up: 0 };
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { copies: 2 });
    try {
      const c = counted(kind, 80);
      const job = defineJob({ name: "feed", target: "/feed", sources: [c.source] });
      const sum = await sync(s, job, {
        lowWater,
        onEvent: (e) => {
          if (e.event === "file") c.done();
        },
      });
      assert.deepStrictEqual(sum.files_new, 80);
      assert.deepStrictEqual(c.state.open, 0, "files opened but never finished");
      for (const st of s.up()) {
        assert.deepStrictEqual(s.queuedBytes(st.entry.id), 0, `node ${st.entry.id}`);
      }
      for (let i = 0; i < 80; i += 19) {
        const m = await s.manifestOf(s.index.get(`/feed/f${i}`)!.manifest!);
        const back = new Uint8Array(await new Response(s.fileStream(m)).arrayBuffer());
        assert.deepStrictEqual(back, c.bodies[i], `/feed/f${i}`);
      }
      result = { peak: c.state.peak, up: s.up().length };
    } finally {
      await s.close();
    }
  });
  return result;
}

Deno.test("sync feed: more files than the 4 slots are read while a Pi has little queued, at most 4 per Pi", async () => {
  // Unpaced hosted nodes drain their queues at once, so some Pi always has
  // less than 128 KiB queued and the run reads ahead for it.
  const { peak, up } = await run("folder", undefined);
  assert(peak > 4, `at most ${peak} files in flight: none beyond the 4 slots`);
  assert(peak <= 4 * up, `${peak} files in flight, more than 4 per Pi (${4 * up})`);
});

Deno.test("sync feed: with no Pi short of work, and from an http source, 4 files at a time", async () => {
  // lowWater 0: no Pi ever has less than 0 bytes queued, so nothing is
  // started beyond the slots (the rule before the feed, for comparison).
  assert((await run("folder", 0)).peak <= 4, "files beyond the slots with no Pi short");
  // Downloads: the source's own bound, whatever the Pis' queues.
  assert((await run("http", undefined)).peak <= 4, "downloads beyond the slots");
});
