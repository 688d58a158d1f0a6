/**
 * Lazy journal followers (`StoreOptions.lazyJournalBytes`): an append skips
 * the busiest Pi while a quorum of the others takes it; when the others fall
 * short (a Pi killed), the one left behind is caught up and takes the entry
 * at once; a new host rebuilds the same namespace from what is left.
 */
import { rand, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";

/** Each answering node's journal length, as the node reports it, by node id. */
async function lengths(s: Store): Promise<Map<number, number>> {
  const m = new Map<number, number>();
  for (const st of s.up()) m.set(st.entry.id, (await st.client!.info()).journalLength);
  return m;
}

/**
 * Queues ~1 MiB of chunk copies over the three 921600-baud lines (a few
 * seconds of work each), commits five directories while they are queued,
 * and returns the nodes' journal lengths once the chunks have landed.
 */
async function commitWhileBusy(s: Store): Promise<Map<number, number>> {
  const ids = s.up().map((st) => st.entry.id);
  const stored = Promise.all(
    Array.from({ length: 24 }, (_, i) => s.storeChunk(rand(40_000, i + 1), { copies: 1 })),
  );
  const t0 = Date.now();
  while (ids.some((id) => s.queuedBytes(id) === 0)) {
    assert(Date.now() - t0 < 10_000, "the chunks never queued on every node");
    await new Promise((r) => setTimeout(r, 5));
  }
  for (let i = 0; i < 5; i++) {
    await s.commit({ op: "mkdir", p: `/d/m${i}`, mode: 0o755, mtime: 2 });
  }
  await stored;
  return await lengths(s);
}

Deno.test("journal: lazy followers — appends skip the busiest Pi while a quorum takes them; a Pi killed brings it back at once; a new host rebuilds the same", async () => {
  // Off: every append goes to every node, busy or not.
  await withSim(["--nodes", "3", "--baud", "921600"], async (dir) => {
    const s = await Store.open(dir, { copies: 1, checkpointEntries: 0, lazyJournalBytes: 0 });
    try {
      await s.commit({ op: "mkdir", p: "/d", mode: 0o755, mtime: 1 });
      const lens = [...(await commitWhileBusy(s)).values()];
      assert.deepStrictEqual(new Set(lens).size, 1, `journal lengths ${lens}`);
    } finally {
      await s.close();
    }
  });

  // On (any queued byte counts as busy): three nodes, a quorum of two, so
  // the first append while all three are busy skips one; it stays behind.
  await withSim(["--nodes", "3", "--baud", "921600"], async (dir) => {
    const s = await Store.open(dir, { copies: 1, checkpointEntries: 0, lazyJournalBytes: 1 });
    let before;
    try {
      await s.commit({ op: "mkdir", p: "/d", mode: 0o755, mtime: 1 });
      const all = (await lengths(s)).get(0)!;
      const lens = await commitWhileBusy(s);
      const full = Math.max(...lens.values());
      const behind = [...lens].filter(([, l]) => l < full).map(([id]) => id);
      assert.deepStrictEqual(behind.length, 1, `journal lengths ${[...lens]}`);
      const lazy = behind[0];
      assert(lens.get(lazy)! >= all, "the lazy node lost entries it had");
      // Every committed directory is in the index.
      for (let i = 0; i < 5; i++) assert(s.index.get(`/d/m${i}`), `/d/m${i}`);

      // One of the two that hold the whole journal is killed: the next
      // commit reaches only one of them, so the lazy node is caught up and
      // takes it; its journal is then the survivor's, byte for byte.
      const [killed, kept] = [...lens.keys()].filter((id) => id !== lazy);
      const c = await readClusterFile(dir);
      Deno.kill(c.nodes.find((n) => n.id === killed)!.pid!, "SIGKILL");
      await s.commit({ op: "mkdir", p: "/d/after", mode: 0o755, mtime: 3 });
      const [jl, jk] = await Promise.all(
        [lazy, kept].map((id) => s.nodes.get(id)!.client!.journalRead(0)),
      );
      assert(jk.length > full, "the commit did not reach the survivor");
      assert.deepStrictEqual(jl, jk);
      before = s.index.walk("/");
    } finally {
      await s.close();
    }
    // A new host (the index deleted), the killed node still down: the same
    // namespace, the last commit included.
    for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    const s2 = await Store.open(dir, { copies: 1, checkpointEntries: 0 });
    try {
      assert.deepStrictEqual(s2.up().length, 2);
      assert.deepStrictEqual(s2.index.walk("/"), before);
      assert(s2.index.get("/d/after"));
    } finally {
      await s2.close();
    }
  });
});
