/**
 * Packed journal lines ("z" entries) on hosted nodes: entries committed
 * together go out as one deflated line; every node's journal is the same
 * bytes, a node that was down catches up byte for byte, a host that lost its
 * index rebuilds the same namespace, and journals written with and without
 * packing read back alike.
 */
import { ok, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { readClusterFile } from "../store/cluster.ts";
import { Store, type StoreOptions } from "../store/store.ts";
import { PutQueue } from "../store/put.ts";
import { decodeJournal, encodeEntry, expandEntries } from "../store/namespace.ts";

/** `n` small files under `dir`, many in flight at once (as `pifs put` stores a tree). */
async function putMany(s: Store, dir: string, n: number, from = 0) {
  const q = new PutQueue(s);
  q.mkdir(dir, 0o750, 1_700_000_000_000);
  for (let i = from; i < from + n; i++) {
    const body = new TextEncoder().encode(`file ${i}\n`.repeat(1 + (i % 7)));
    await q.add(`${dir}/sub${i % 3}/f${i}`, () => Promise.resolve(new Blob([body]).stream()), {
      size: body.length,
      mode: 0o640,
      mtime: 1_700_000_000_000 + i,
    });
  }
  await q.finish();
  // Every copy that was queued for a Pi is accounted as gone once stored.
  for (const st of s.nodes.values()) assert.deepStrictEqual(s.queuedBytes(st.entry.id), 0);
}

async function journals(s: Store): Promise<Uint8Array[]> {
  return await Promise.all(s.up().map((st) => st.client!.journalRead(0)));
}

async function dropIndex(dir: string) {
  for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
    await Deno.remove(`${dir}/${f}`).catch(() => {});
  }
}

async function listing(dir: string, opts: StoreOptions = {}) {
  const s = await Store.open(dir, { checkpointEntries: 0, ...opts });
  let entries;
  try {
    entries = s.index.walk("/");
  } finally {
    await s.close();
  }
  return { entries, ls: await ok("ls", "-lR", "/", "--cluster", dir) };
}

Deno.test("journal: files committed together are packed into z lines; journals are the same bytes everywhere, a node that was down catches up byte for byte, attach rebuilds the same", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { checkpointEntries: 0 });
    let plainBytes = 0, zipBytes = 0;
    try {
      // 80 entries queued at once: the first goes alone, the other 79 in
      // one append, as one packed line.
      await Promise.all(
        Array.from({ length: 80 }, (_, i) =>
          s.commit({
            op: "put",
            p: `/many/batch/f${i}`,
            m: (i + 1).toString(16).padStart(64, "0"),
            size: 0,
            mode: 0o644,
            mtime: 1_700_000_000_000 + i,
            copies: 2,
          })),
      );
      const one = decodeJournal((await journals(s))[0]);
      assert.deepStrictEqual(one.map((e) => e.op), ["put", "z"]);
      const packed = encodeEntry(one[1]).length;
      const plain = expandEntries([one[1]]).reduce((a, e) => a + encodeEntry(e).length, 0);
      assert(packed < 0.5 * plain, `79 entries: ${packed} bytes packed, ${plain} plain`);
      await putMany(s, "/many", 120);
      const [j0, j1, j2] = await journals(s);
      assert.deepStrictEqual(j1, j0);
      assert.deepStrictEqual(j2, j0);
      const lines = decodeJournal(j0);
      const entries = expandEntries(lines);
      assert(lines.some((e) => e.op === "z"), "no packed line");
      assert.deepStrictEqual(entries.filter((e) => e.op === "put").length, 200);
      assert.deepStrictEqual(entries.map((e) => e.s), entries.map((_, i) => i + 1));
      assert.deepStrictEqual(s.index.lastSeq(), entries.length);
      plainBytes = entries.reduce((a, e) => a + encodeEntry(e).length, 0);
      zipBytes = j0.length;
    } finally {
      await s.close();
    }
    // Files land a few at a time on unpaced lines: smaller runs, less gained.
    assert(zipBytes < 0.8 * plainBytes, `${zipBytes} bytes packed, ${plainBytes} plain`);

    // Node 2 misses the next files; opening the cluster catches it up (in
    // the background; catchUp waits for all of it).
    const c = await readClusterFile(dir);
    Deno.kill(c.nodes[2].pid!, "SIGKILL");
    const s1 = await Store.open(dir, { checkpointEntries: 0 });
    try {
      await putMany(s1, "/later", 60, 1000);
    } finally {
      await s1.close();
    }
    await ok("sim", "up", "--dir", dir);
    const before = await listing(dir);
    const s2 = await Store.open(dir, { checkpointEntries: 0 });
    try {
      await s2.catchUp();
      const [j0, j1, j2] = await journals(s2);
      assert.deepStrictEqual(j1, j0);
      assert.deepStrictEqual(j2, j0);
      assert.deepStrictEqual(
        expandEntries(decodeJournal(j2)).filter((e) => e.op === "put").length,
        260,
      );
    } finally {
      await s2.close();
    }
    assert(before.ls.includes("f1059"), before.ls);

    // A host that lost its index rebuilds the same namespace from the cards.
    await dropIndex(dir);
    const after = await listing(dir);
    assert.deepStrictEqual(after.entries, before.entries);
    assert.deepStrictEqual(after.ls, before.ls);
  });
});

Deno.test("journal: plain and packed lines mix; a journal written both ways reads back as the same namespace", async () => {
  await withSim(["--nodes", "2"], async (dir) => {
    for (const [k, zipJournal] of [[0, false], [1, true], [2, false]] as const) {
      const s = await Store.open(dir, { checkpointEntries: 0, copies: 1, zipJournal });
      try {
        await putMany(s, `/round${k}`, 40, 100 * k);
        await s.commit({ op: "rm", p: `/round${k}/sub1` });
      } finally {
        await s.close();
      }
    }
    const s = await Store.open(dir, { checkpointEntries: 0 });
    try {
      const lines = decodeJournal((await journals(s))[0]);
      const zipped = lines.filter((e) => e.op === "z").length;
      assert(zipped > 0 && zipped < lines.length, `${zipped} of ${lines.length} packed`);
    } finally {
      await s.close();
    }
    const before = await listing(dir);
    const kept = [0, 1, 2].flatMap((k) =>
      Array.from({ length: 40 }, (_, j) => 100 * k + j).filter((i) => i % 3 !== 1)
    );
    assert.deepStrictEqual(before.entries.filter((e) => e.type === "f").length, kept.length);
    assert(!before.entries.some((e) => e.path.includes("/sub1")), "an rm was lost");
    await dropIndex(dir);
    const after = await listing(dir);
    assert.deepStrictEqual(after.entries, before.entries);
  });
});
