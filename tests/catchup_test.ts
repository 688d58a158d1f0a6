/**
 * Journal catch-up in the background: a node that was away is brought up
 * to date between commits after the cluster opens, without a command
 * waiting for it. A commit goes ahead of it, closing stops it between two
 * appends, and the next open (or `Store.catchUp`) goes on from there; the
 * journal it ends with is the others', byte for byte.
 */
import { ok, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";
import { decodeJournal } from "../store/namespace.ts";

Deno.test("journal: a node that was away catches up in the background; a commit goes first, close stops it, catchUp finishes it byte for byte", async () => {
  await withSim(["--nodes", "3", "--baud", "921600"], async (dir) => {
    const opts = { copies: 1, checkpointEntries: 0, zipJournal: false };
    // Node 2 killed; 900 entries (about 60 KB of lines, four frames) go to
    // the two others.
    const s0 = await Store.open(dir, opts);
    try {
      await s0.commit({ op: "mkdir", p: "/d", mode: 0o755, mtime: 1 });
      const c = await readClusterFile(dir);
      Deno.kill(c.nodes[2].pid!, "SIGKILL");
      await Promise.all(
        Array.from(
          { length: 900 },
          (_, i) => s0.commit({ op: "mkdir", p: `/d/directory-${i}`, mode: 0o755, mtime: 2 }),
        ),
      );
    } finally {
      await s0.close();
    }
    await ok("sim", "up", "--dir", dir); // node 2 back, 900 entries behind

    const behindBy = (s: Store) => s.nodes.get(0)!.journalLength - s.nodes.get(2)!.journalLength;
    // Open, then a commit at once: it does not wait for the catch-up, which
    // gives way to it after at most one append; then close stops it.
    const s1 = await Store.open(dir, opts);
    let lag0, lag1;
    try {
      assert.deepStrictEqual(s1.up().length, 3);
      lag0 = behindBy(s1);
      assert(lag0 > 48_000, `node 2 is ${lag0} bytes behind`);
      await s1.commit({ op: "mkdir", p: "/d/first", mode: 0o755, mtime: 3 });
      lag1 = behindBy(s1);
      // At most one background append (2 KiB) went ahead of it.
      assert(
        lag1 >= lag0 - 2 * 2048,
        `node 2 is ${lag1} bytes behind after the commit (was ${lag0})`,
      );
    } finally {
      await s1.close();
    }
    // `pifs status` says how far behind (and does not catch it up).
    const st = JSON.parse(await ok("status", "--json", "--cluster", dir)).nodes as {
      journal_bytes: number;
      journal_behind: number;
    }[];
    assert.deepStrictEqual(
      st.map((n) => n.journal_behind > 0),
      [false, false, true],
      JSON.stringify(st),
    );
    assert.deepStrictEqual(st[2].journal_behind, st[0].journal_bytes - st[2].journal_bytes);
    assert(/\(\d+ behind\)/.test(await ok("status", "--cluster", dir)), "no 'behind' in status");
    // Closing stopped it part-way: still behind, its journal whole lines.
    const s2 = await Store.open(dir, opts);
    try {
      const lag2 = behindBy(s2);
      assert(lag2 > 0, `node 2 caught up before close stopped it (was ${lag1} behind)`);
      const j = await s2.nodes.get(2)!.client!.journalRead(0);
      assert.deepStrictEqual(j.length, s2.nodes.get(2)!.journalLength);
      decodeJournal(j, "any"); // whole lines
      // Left open, it finishes by itself; catchUp waits for it.
      await s2.catchUp();
      assert.deepStrictEqual(behindBy(s2), 0);
      const [j0, j2] = await Promise.all(
        [0, 2].map((k) => s2.nodes.get(k)!.client!.journalRead(0)),
      );
      assert.deepStrictEqual(j2, j0);
      assert(s2.index.get("/d/first"));
      assert(s2.index.get("/d/directory-899"));
    } finally {
      await s2.close();
    }
  });
});
