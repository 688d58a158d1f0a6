/**
 * Lazy journal followers (`StoreOptions.lazyJournalBytes`): an append skips
 * the busiest Pi while a quorum of the others takes it; the Pi skipped
 * rejoins once its line has room; when the others fall short (a Pi killed),
 * the one left behind is caught up and takes the entry at once; a new host
 * rebuilds the same namespace from what is left.
 */
import { rand, withSim } from "./_cli.ts";
import { assert, assertEquals } from "./_assert.ts";
import { readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";

/** Each answering node's journal length, as the node reports it, by node id. */
async function lengths(s: Store): Promise<Map<number, number>> {
  const m = new Map<number, number>();
  for (const st of s.up()) m.set(st.entry.id, (await st.client!.info()).journalLength);
  return m;
}

/**
 * Queues ~1.9 MiB of chunk copies over the three 921600-baud lines (some
 * 7 s of work each) and waits until every node has bytes queued. Resolves
 * the returned promise when they have landed.
 */
async function busy(s: Store, seed: number): Promise<{ landed: Promise<unknown> }> {
  const ids = s.up().map((st) => st.entry.id);
  const stored = Promise.all(
    Array.from({ length: 48 }, (_, i) => s.storeChunk(rand(40_000, seed + i), { copies: 1 })),
  );
  stored.catch(() => {}); // a node killed below fails its copies
  const t0 = Date.now();
  while (ids.some((id) => s.queuedBytes(id) === 0)) {
    assert(Date.now() - t0 < 10_000, "the chunks never queued on every node");
    await new Promise((r) => setTimeout(r, 5));
  }
  return { landed: stored };
}

const mkdir = (s: Store, p: string) => s.commit({ op: "mkdir", p, mode: 0o755, mtime: 2 });

Deno.test("journal: lazy followers — appends skip the busiest Pi while a quorum takes them; it rejoins when idle; a Pi killed brings it back at once; a new host rebuilds the same", async () => {
  // Off: every append goes to every node, busy or not.
  await withSim(["--nodes", "3", "--baud", "921600"], async (dir) => {
    const s = await Store.open(dir, { copies: 1, checkpointEntries: 0, lazyJournalBytes: 0 });
    try {
      await mkdir(s, "/d");
      const { landed: stored } = await busy(s, 1);
      await mkdir(s, "/d/m0");
      const lens = [...(await lengths(s)).values()];
      assertEquals(new Set(lens).size, 1, `journal lengths ${lens}`);
      await stored;
    } finally {
      await s.close();
    }
  });

  // On (any queued byte counts as busy): three nodes, a quorum of two, so an
  // append while all three are busy skips the busiest.
  await withSim(["--nodes", "3", "--baud", "921600"], async (dir) => {
    const s = await Store.open(dir, { copies: 1, checkpointEntries: 0, lazyJournalBytes: 1 });
    let before;
    try {
      await mkdir(s, "/d");
      const all = (await lengths(s)).get(0)!;
      let stored = (await busy(s, 1)).landed;
      await mkdir(s, "/d/m0");
      let lens = await lengths(s);
      let full = Math.max(...lens.values());
      let behind = [...lens].filter(([, l]) => l < full).map(([id]) => id);
      assertEquals(behind.length, 1, `journal lengths ${[...lens]}`);
      assertEquals(lens.get(behind[0]), all, "the lazy node should hold what it had");

      // Its line idle again, the next append brings it up to date.
      await stored;
      await mkdir(s, "/d/m1");
      const j = await Promise.all(s.up().map((st) => st.client!.journalRead(0)));
      assert(j[0].length > full);
      for (const x of j) assertEquals(x, j[0]);

      // Busy again: one skipped. One of the two that hold the whole journal
      // is killed while the skipped one is still busy: the next commit
      // reaches only one of the others, so the lazy node is caught up and
      // takes it; its journal is then the survivor's, byte for byte.
      stored = (await busy(s, 100)).landed;
      await mkdir(s, "/d/m2");
      lens = await lengths(s);
      full = Math.max(...lens.values());
      behind = [...lens].filter(([, l]) => l < full).map(([id]) => id);
      assertEquals(behind.length, 1, `journal lengths ${[...lens]}`);
      const lazy = behind[0];
      const [killed, kept] = [...lens.keys()].filter((id) => id !== lazy);
      assert(s.queuedBytes(lazy) > 0, "the lazy node's line ran dry before the kill");
      const c = await readClusterFile(dir);
      Deno.kill(c.nodes.find((n) => n.id === killed)!.pid!, "SIGKILL");
      await mkdir(s, "/d/after");
      const [jl, jk] = await Promise.all(
        [lazy, kept].map((id) => s.nodes.get(id)!.client!.journalRead(0)),
      );
      assert(jk.length > full, "the commit did not reach the survivor");
      assertEquals(jl, jk);
      await stored.catch(() => {});
      for (const p of ["/d/m0", "/d/m1", "/d/m2", "/d/after"]) assert(s.index.get(p), p);
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
      assertEquals(s2.up().length, 2);
      assertEquals(s2.index.walk("/"), before);
    } finally {
      await s2.close();
    }
  });
});
