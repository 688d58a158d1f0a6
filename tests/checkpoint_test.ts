/**
 * Namespace checkpoints and journal trimming on hosted nodes: without them a
 * journal fills a node's log; with them the journals start at the last
 * checkpoint, the log stays bounded, and a host that lost its index (or sees
 * only a node that was down across a checkpoint) rebuilds the same namespace.
 * The host killed at each step of a checkpoint leaves a namespace that
 * reopens the same; gc keeps the current checkpoint's objects only.
 */
import { ok, PIFS, pifs, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { readClusterFile } from "../store/cluster.ts";
import { NoSpaceError, Store } from "../store/store.ts";
import {
  decodeCheckpoint,
  decodeJournal,
  decodeTree,
  encodeSnapshot,
  type SnapshotV1,
} from "../store/namespace.ts";

/** Runs `pifs ARGS` with extra environment variables. */
async function pifsEnv(env: Record<string, string>, ...args: string[]) {
  const o = await new Deno.Command(PIFS, { args, env, stdin: "null" }).output();
  return {
    code: o.code,
    signal: o.signal,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}

const enc = new TextEncoder();
const contents = [0, 1, 2, 3].map((k) => enc.encode(`content ${k}\n`.repeat(50 + k * 300)));

/**
 * `n` namespace changes: mkdir, put (4 distinct contents, so chunks stay
 * few), mv, rm, copies rules and now and then a snapshot. Each commit is
 * awaited alone: one journal record each, the worst case for a node's log.
 */
async function workload(s: Store, n: number, from = 0) {
  for (let i = from; i < from + n; i++) {
    const t = `/t${i % 13}`;
    switch (i % 8) {
      case 0:
      case 4:
        await s.commit({ op: "mkdir", p: `${t}/d${i}`, mode: 0o750, mtime: 1_700_000_000_000 + i });
        break;
      case 1:
      case 5:
        await s.putStream(`${t}/f${i}`, new Blob([contents[i % 4]]).stream(), {
          mode: 0o640,
          mtime: 1_700_000_000_000 + i,
        });
        break;
      case 2:
        if (s.index.get(`${t}/f${i - 1}`)) {
          await s.commit({ op: "mv", p: `${t}/f${i - 1}`, to: `/moved/m${i}/f`, mtime: 1234 + i });
        }
        break;
      case 3:
        if (s.index.get(`${t}/d${i - 3}`)) await s.commit({ op: "rm", p: `${t}/d${i - 3}` });
        break;
      case 6:
        await s.commit({ op: "copies", p: t, copies: 1 + (i % 3 === 0 ? 1 : 0) });
        break;
      case 7:
        if (i % 5 === 0) await snapshot(s, `snap${i}`, t, 1_700_000_000_000 + i);
        else if (s.index.get(`/moved/m${i - 5}`)) {
          await s.commit({ op: "rm", p: `/moved/m${i - 5}` });
        }
        break;
    }
  }
}

/**
 * A snapshot of `target` in the first format (every file's row in one
 * object), as `pifs sync` took them before snapshots became trees: such
 * snapshots, already on cards, must stay readable.
 */
async function snapshot(s: Store, name: string, target: string, time: number) {
  const files: SnapshotV1["files"] = [];
  let bytes = 0;
  for (const e of s.index.walk(target)) {
    if (e.type !== "f") continue;
    files.push([e.path.slice(target.length + 1), e.manifest!, e.size, e.mode, e.mtime]);
    bytes += e.size;
  }
  const obj: SnapshotV1 = { v: 1, name, target, time, files };
  const r = await s.storeChunk(encodeSnapshot(obj));
  await s.commit(
    {
      op: "snap",
      name,
      job: "job",
      target,
      root: r.id,
      time,
      files: files.length,
      bytes,
    },
    undefined,
    files.map((f) => f[1]),
  );
}

/** Everything a host knows of the namespace: entries, rules, snapshots, and `ls -lR`. */
async function dump(dir: string, env: Record<string, string> = {}) {
  const s = await Store.open(dir, { checkpointEntries: 0 });
  let d;
  try {
    d = {
      entries: s.index.walk("/"),
      policies: s.index.policies(),
      snapshots: s.index.snapshots(),
    };
  } finally {
    await s.close();
  }
  const ls = await pifsEnv(env, "ls", "-lR", "/", "--cluster", dir);
  assert.deepStrictEqual(ls.code, 0, ls.err);
  return { ...d, ls: ls.out };
}

async function infos(dir: string) {
  const st = JSON.parse(await ok("status", "--json", "--cluster", dir));
  return st.nodes as {
    id: number;
    answers: boolean;
    journal_bytes: number;
    journal_start: number;
    log_used: number;
    log_half: number;
  }[];
}

async function dropIndex(dir: string) {
  for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
    await Deno.remove(`${dir}/${f}`).catch(() => {});
  }
}

Deno.test("checkpoint: without it a journal fills a node's log; with them more changes leave the log bounded and attach rebuilds the same namespace", async () => {
  // 64 MiB cards: log halves of 1951 sectors, one sector per journal record.
  let without = 0;
  await withSim(["--nodes", "2"], async (dir) => {
    const s = await Store.open(dir, { checkpointEntries: 0 });
    try {
      for (;;) {
        try {
          await s.commit({ op: "mkdir", p: `/d${without}`, mode: 0o755, mtime: without });
        } catch (e) {
          // A full log is a full card, named as such: not a node down.
          assert(e instanceof NoSpaceError, String(e));
          assert.deepStrictEqual(e.nodes, [0, 1]);
          break;
        }
        without++;
        assert(without < 5000, "the journal never filled the log");
      }
    } finally {
      await s.close();
    }
    const n = await infos(dir);
    console.log(
      `without checkpoints: ${without} entries fill the log (${n[0].log_used}/${
        n[0].log_half
      } sectors)`,
    );
    assert(n.every((x) => x.journal_start === 0));
  });
  assert(without > 500 && without < 5000, `${without} entries`);

  await withSim(["--nodes", "3"], async (dir) => {
    // More changes than filled the log without checkpoints.
    const ops = without * 2;
    let entries = 0;
    const s = await Store.open(dir, { checkpointEntries: 200 });
    let gen = 0;
    try {
      await workload(s, ops);
      gen = s.index.checkpoint()?.gen ?? 0;
      entries = s.index.lastSeq();
      // Every node's journal starts at the last checkpoint's entry.
      for (const st of s.up()) {
        const i = await st.client!.info();
        assert.deepStrictEqual(i.journalStart, s.index.journalStart(), `node ${st.entry.id}`);
        assert(i.journalStart > 0);
      }
    } finally {
      await s.close();
    }
    assert(gen >= 5, `only ${gen} checkpoints`);
    assert(entries > without, `${entries} entries, ${without} filled the log without checkpoints`);
    const n = await infos(dir);
    for (const x of n) {
      assert(x.journal_start > 0, JSON.stringify(x));
      assert(x.log_used < x.log_half, JSON.stringify(x));
    }
    const held = Math.max(...n.map((x) => x.journal_bytes - x.journal_start));
    console.log(
      `with checkpoints every 200 entries: ${entries} entries, ${gen} checkpoints; journals ` +
        `${n.map((x) => `${x.journal_start}..${x.journal_bytes}`).join(", ")}; log ` +
        `${n.map((x) => `${x.log_used}/${x.log_half}`).join(", ")} sectors`,
    );
    assert(held < n[0].journal_bytes / 4, `journals hold ${held} bytes`);

    // The host loses its index: attach rebuilds the same namespace, rules,
    // snapshots and listing from the last checkpoint and the entries after it.
    const before = await dump(dir);
    assert(before.snapshots.length > 3 && before.policies.length > 3);
    assert(before.entries.length > 200, `${before.entries.length} entries`);
    await dropIndex(dir);
    const att = await pifs("attach", "--cluster", dir);
    assert.deepStrictEqual(att.code, 0, att.err);
    assert(/loading checkpoint/.test(att.err), att.err);
    const after = await dump(dir);
    assert.deepStrictEqual(after, before);
    for (const f of ["/t1/f1", "/moved/m10/f", "/t5/f5"]) {
      const e = before.entries.find((x) => x.path === f);
      if (!e) continue;
      const got = enc.encode(await ok("cat", f, "--cluster", dir));
      assert.deepStrictEqual(got.length, e.size, f);
    }
    const out = await ok("cat", "/t1/f1", "--cluster", dir);
    assert.deepStrictEqual(out, new TextDecoder().decode(contents[1]));
  });
});

Deno.test("checkpoint: a node down across a checkpoint is trimmed and caught up; its journal equals the others and a new host without node 0 rebuilds the same", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s0 = await Store.open(dir, { checkpointEntries: 0 });
    try {
      await workload(s0, 60);
    } finally {
      await s0.close();
    }
    const c = await readClusterFile(dir);
    Deno.kill(c.nodes[2].pid!, "SIGKILL");
    const s1 = await Store.open(dir, { checkpointEntries: 0 });
    let ck;
    try {
      await workload(s1, 40, 60);
      ck = await s1.checkpoint(); // quorum 2 of 3
      assert.deepStrictEqual(ck.trimmed, [0, 1]);
      await workload(s1, 30, 100);
    } finally {
      await s1.close();
    }
    await ok("sim", "up", "--dir", dir); // node 2 back, its journal behind the checkpoint
    const n2 = (await infos(dir))[2];
    assert.deepStrictEqual(n2.journal_start, 0);
    assert(n2.journal_bytes < ck.offset, JSON.stringify(n2));
    // Opening the cluster catches it up, in the background while nothing
    // waits: TRIM to the checkpoint, then the checkpoint entry and
    // everything after it.
    const sc = await Store.open(dir, { checkpointEntries: 0 });
    try {
      const t0 = Date.now();
      while (sc.nodes.get(2)!.journalLength !== sc.nodes.get(0)!.journalLength) {
        assert(Date.now() - t0 < 20_000, "node 2 was not caught up within 20 s");
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await sc.close();
    }
    const before = await dump(dir);
    const n = await infos(dir);
    assert.deepStrictEqual(n[2].journal_start, ck.offset);
    assert.deepStrictEqual(n[2].journal_bytes, n[0].journal_bytes);
    assert.deepStrictEqual(n[2].journal_start, n[0].journal_start);
    // Its journal is now byte for byte the others' from the checkpoint on,
    // and decodes to the index's entries from the checkpoint entry on.
    const s2 = await Store.open(dir, { checkpointEntries: 0 });
    try {
      const [j0, j2] = await Promise.all(
        [0, 2].map((k) => s2.nodes.get(k)!.client!.journalRead(ck.offset)),
      );
      assert.deepStrictEqual(j2, j0);
      const rows = s2.index.journal();
      assert.deepStrictEqual(rows[0].op, "ckpt");
      assert.deepStrictEqual(decodeJournal(j2, "any"), rows);
    } finally {
      await s2.close();
    }
    // A new host that cannot reach node 0 (whose journal and copies the
    // checkpoint went to) rebuilds the same namespace.
    const c2 = await readClusterFile(dir);
    Deno.kill(c2.nodes[0].pid!, "SIGKILL");
    await dropIndex(dir);
    const after = await dump(dir);
    assert.deepStrictEqual(after, before);
    await ok("sim", "up", "--dir", dir);
  });
});

Deno.test("checkpoint: the host killed at each step of a checkpoint; the namespace reopens the same and a later checkpoint succeeds", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { checkpointEntries: 0 });
    try {
      await workload(s, 50);
    } finally {
      await s.close();
    }
    let gen = 0;
    for (const point of ["ckpt-objects", "ckpt-append", "ckpt-commit"]) {
      // something new since the last checkpoint
      const s1 = await Store.open(dir, { checkpointEntries: 0 });
      try {
        await workload(s1, 8, 50 + gen * 8);
      } finally {
        await s1.close();
      }
      const before = await dump(dir);
      const r = await pifsEnv({ PIFS_CRASH_AT: point }, "checkpoint", "--cluster", dir);
      assert.deepStrictEqual(r.signal, "SIGKILL", `checkpoint at ${point}: ${r.code} ${r.err}`);
      // The namespace reopens the same (the index, and one rebuilt from the cards).
      assert.deepStrictEqual(await dump(dir), before, `after a kill at ${point}`);
      const s2 = await Store.open(dir, { checkpointEntries: 0 });
      const landed = s2.index.checkpoint()?.gen ?? 0;
      await s2.close();
      // Killed before the entry: no checkpoint; after it: the checkpoint stands.
      assert.deepStrictEqual(landed, point === "ckpt-objects" ? gen : gen + 1, point);
      gen = landed;
      await dropIndex(dir);
      assert.deepStrictEqual(await dump(dir), before, `attach after a kill at ${point}`);
      // The next checkpoint succeeds and every node is trimmed to it.
      const ck = JSON.parse(await ok("checkpoint", "--json", "--cluster", dir));
      assert.deepStrictEqual(ck.gen, gen + 1);
      gen = ck.gen;
      assert.deepStrictEqual(ck.trimmed.length + ck.down.length, 3);
      const n = await infos(dir);
      assert(n.every((x) => x.journal_start === ck.offset), JSON.stringify(n));
      assert.deepStrictEqual(await dump(dir), before);
    }
  });
});

Deno.test("checkpoint: gc after a second checkpoint deletes the first one's unreferenced objects, never the current ones", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { checkpointEntries: 0 });
    let first: string[], second: string[];
    try {
      await workload(s, 40);
      await s.checkpoint();
      first = s.index.checkpointObjects();
      await s.commit({ op: "mkdir", p: "/t3/new", mode: 0o755, mtime: 5 });
      await s.commit({ op: "rm", p: "/t5" });
      await s.checkpoint();
      second = s.index.checkpointObjects();
    } finally {
      await s.close();
    }
    const gone = first.filter((id) => !second.includes(id));
    const kept = first.filter((id) => second.includes(id));
    // Changed: the root object, / , /t3 (and /t5 is gone); unchanged directories dedup.
    assert(gone.length >= 3, `gone ${gone.length}`);
    assert(kept.length >= 5, `kept ${kept.length} of ${first.length}`);
    const before = await dump(dir);
    const gc = JSON.parse(await ok("gc", "--grace", "0", "--json", "--cluster", dir));
    assert(gc.chunks >= gone.length, JSON.stringify(gc));
    const s2 = await Store.open(dir, { checkpointEntries: 0 });
    try {
      const held = new Set<string>();
      for (const st of s2.up()) for (const c of await st.client!.listChunks()) held.add(c.id);
      for (const id of second) assert(held.has(id), `current checkpoint object ${id} deleted`);
      for (const id of gone) assert(!held.has(id), `old checkpoint object ${id} kept`);
    } finally {
      await s2.close();
    }
    // The checkpoint left is whole: a new host loads it.
    await dropIndex(dir);
    assert.deepStrictEqual(await dump(dir), before);
  });
});

Deno.test("checkpoint: a directory of 1,200 files is stored in parts; one file added sends one small part, not the listing; attach reads it back the same", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir, { checkpointEntries: 0 });
    const sizes = new Map<string, number>();
    const held = async () => {
      for (const st of s.up()) {
        for (const c of await st.client!.listChunks()) sizes.set(c.id, c.size);
      }
    };
    /** The tree object of /big in the current checkpoint, and the ids of its parts. */
    const bigTree = async () => {
      const root = s.index.checkpoint()!.root;
      const ck = decodeCheckpoint(await s.getChunk(root), root);
      const top = decodeTree(await s.getChunk(ck.tree), ck.tree);
      assert("entries" in top);
      const big = top.entries.find((e) => e[0] === "big")!;
      const t = decodeTree(await s.getChunk(big[5]), big[5]);
      return { id: big[5], parts: "parts" in t ? t.parts : [] };
    };
    let first: string[], second: string[], bigBytes: number, newBytes: number;
    try {
      const data = enc.encode("one photo\n");
      let next = 0;
      const worker = async () => {
        while (next < 1200) {
          const i = next++;
          await s.putStream(
            `/big/IMG_${String(i).padStart(5, "0")}.JPG`,
            ReadableStream.from([data]),
            {
              mode: 0o644,
              mtime: 1_700_000_000_000 + i,
            },
          );
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker)); // group commits
      await s.checkpoint();
      first = s.index.checkpointObjects();
      const t1 = await bigTree();
      assert(t1.parts.length >= 3, `/big in ${t1.parts.length} parts`);
      await held();
      bigBytes = t1.parts.reduce((a, id) => a + sizes.get(id)!, 0);
      await s.putStream("/big/IMG_01200.JPG", ReadableStream.from([data]), {
        mode: 0o644,
        mtime: 7,
      });
      await s.checkpoint();
      second = s.index.checkpointObjects();
      const t2 = await bigTree();
      const changed = t2.parts.filter((id) => !t1.parts.includes(id));
      assert(changed.length >= 1 && changed.length <= 2, `${changed.length} parts changed`);
      await held();
      newBytes = second.filter((id) => !first.includes(id)).reduce(
        (a, id) => a + sizes.get(id)!,
        0,
      );
    } finally {
      await s.close();
    }
    // What the second checkpoint sent: the changed part, /big's list of
    // parts, / and the root; one copy of /big's listing was ~130 KB.
    assert(bigBytes > 100_000, `/big listing ${bigBytes} bytes`);
    assert(newBytes < bigBytes / 5, `second checkpoint wrote ${newBytes} new bytes of ${bigBytes}`);
    const before = await dump(dir);
    assert(before.ls.includes("IMG_01200.JPG") && before.ls.includes("IMG_00000.JPG"));
    await dropIndex(dir);
    assert.deepStrictEqual(await dump(dir), before);
  });
});

Deno.test("checkpoint: --help, --json and a clear error without nodes", async () => {
  const h = await pifs("checkpoint", "--help");
  assert.deepStrictEqual(h.code, 0);
  assert(/trim/.test(h.out) && /--json/.test(h.out), h.out);
  await withSim(["--nodes", "2"], async (dir) => {
    const r = JSON.parse(await ok("checkpoint", "--json", "--cluster", dir));
    assert.deepStrictEqual(r.gen, 1);
    assert.deepStrictEqual(r.s, 1); // an empty namespace: the entry is the first
    await ok("sim", "down", "--dir", dir);
    const down = await pifs("checkpoint", "--cluster", dir);
    assert(down.code !== 0 && /no node answers/.test(down.err), down.err);
  });
});
