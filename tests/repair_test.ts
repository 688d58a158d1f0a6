/**
 * Scrub and repair through the real CLI: bytes flipped inside chunk data on
 * one card are all found by scrub, reads stay correct meanwhile (from the
 * other copy), and repair makes the copies whole again.
 */
import { ok, PIFS, pifs, rand } from "./_cli.ts";
import { DatabaseSync } from "node:sqlite";
import assert from "node:assert/strict";
import { assertScrubClean, assertTree, damagedCluster } from "./_damage.ts";

Deno.test("repair: bytes flipped in chunk data on one card: scrub finds each, reads stay right, repair restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-repair-" });
  try {
    const { files, pieces } = await damagedCluster(dir);
    // Reads are right: each damaged copy fails its hash and the other is used.
    await assertTree(dir, files, "back1");

    const found = await pifs("scrub", "--cluster", dir, "--json");
    assert.deepStrictEqual(found.code, 1, found.err);
    const r1 = JSON.parse(found.out);
    const node1 = r1.nodes.find((n: { node: number }) => n.node === 1);
    assert.deepStrictEqual(node1.damaged, pieces.map((p) => p.id).sort());
    for (const n of r1.nodes) if (n.node !== 1) assert.deepStrictEqual(n.damaged, []);
    assert.deepStrictEqual(
      r1.missing.map((p: { id: string }) => p.id).sort(),
      pieces.map((p) => p.id).sort(),
    );
    assert.deepStrictEqual(r1.lost, []);

    const fixed = await pifs("repair", "--cluster", dir, "--json");
    assert.deepStrictEqual(fixed.code, 0, fixed.err + fixed.out);
    const rr = JSON.parse(fixed.out);
    assert.deepStrictEqual(rr.deleted, pieces.length);
    assert(rr.copied >= pieces.length, `${rr.copied} copies made`);
    await assertScrubClean(dir);
    // A second repair finds nothing to do.
    const again = JSON.parse(await ok("repair", "--cluster", dir, "--json"));
    assert.deepStrictEqual([again.deleted, again.copied, again.failed.length], [0, 0, 0]);
    await assertTree(dir, files, "back2");
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repair: the host and then a Pi killed during a repair; reruns converge, nothing lost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-repair-" });
  try {
    const { files } = await damagedCluster(dir);
    const cluster = JSON.parse(await Deno.readTextFile(`${dir}/cluster.json`));
    const onNode1 = () => {
      const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
      try {
        return (db.prepare("SELECT COUNT(*) AS n FROM locations WHERE node = 1").get() as {
          n: number;
        }).n;
      } finally {
        db.close();
      }
    };
    // The host dies right after deleting the first damaged copy: that chunk
    // now has one copy fewer than before the repair.
    const crash = await new Deno.Command(PIFS, {
      args: ["repair", "--cluster", dir],
      env: { PIFS_CRASH_AT: "repair-deleted" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    assert.deepStrictEqual(crash.signal, "SIGKILL");
    // Then node 1 loses power while the repair writes copies back to it.
    const before = onNode1();
    const run = new Deno.Command(PIFS, {
      args: ["repair", "--cluster", dir],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const end = Date.now() + 60_000;
    while (Date.now() < end && onNode1() <= before) await new Promise((r) => setTimeout(r, 20));
    assert(onNode1() > before, "the repair wrote nothing to node 1");
    Deno.kill(cluster.nodes[1].pid, "SIGKILL");
    await run.status;
    await ok("sim", "up", "--dir", dir); // power back on
    // Whatever was left half done, a rerun finishes it.
    const fixed = await pifs("repair", "--cluster", dir, "--json");
    assert.deepStrictEqual(fixed.code, 0, fixed.err + fixed.out);
    await assertScrubClean(dir);
    await assertTree(dir, files, "back");
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repair: a Pi lost for good (its card deleted): node forget brings every chunk back to 2 copies; attach keeps it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-repair-" });
  try {
    await ok("sim", "up", "--dir", dir, "--nodes", "4");
    const files: Record<string, Uint8Array> = {};
    await Deno.mkdir(`${dir}/src`, { recursive: true });
    for (let i = 0; i < 8; i++) {
      files[`f${i}.bin`] = rand(100_000 + i * 90_000, 300 + i);
      await Deno.writeFile(`${dir}/src/f${i}.bin`, files[`f${i}.bin`]);
    }
    await ok("put", `${dir}/src`, "/t", "--cluster", dir, "--copies", "2");
    // Node 2 dies and its card is lost.
    const cluster = JSON.parse(await Deno.readTextFile(`${dir}/cluster.json`));
    Deno.kill(cluster.nodes[2].pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 200));
    await Deno.remove(`${dir}/node2.img`);
    // Refused while it answers; forgotten once it does not.
    const forgot = await pifs("node", "forget", "2", "--cluster", dir, "--json");
    assert.deepStrictEqual(forgot.code, 0, forgot.err + forgot.out);
    const fr = JSON.parse(forgot.out);
    assert(fr.repair.copied > 0, "nothing was copied");
    assert.deepStrictEqual(fr.repair.failed, []);
    await assertScrubClean(dir);
    const r = JSON.parse((await pifs("scrub", "--cluster", dir, "--json")).out);
    assert.deepStrictEqual(r.nodes.map((n: { node: number }) => n.node), [0, 1, 3]); // 2 is not scrubbed
    // Every needed chunk: 2 copies, none on node 2.
    const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
    const rows = db.prepare(
      "SELECT id, COUNT(*) AS n, SUM(node = 2) AS on2 FROM locations GROUP BY id",
    )
      .all() as { n: number; on2: number }[];
    db.close();
    for (const row of rows) assert.deepStrictEqual([row.n >= 2, row.on2], [true, 0]);
    await assertTree(dir, files, "back");
    // A host that rebuilds its index from the cards keeps node 2 forgotten.
    await ok("attach", "--cluster", dir);
    await assertScrubClean(dir);
    await assertTree(dir, files, "back2");
    const again = await pifs("node", "forget", "2", "--cluster", dir);
    assert.deepStrictEqual(again.code, 2, again.err);
    assert(/already forgotten/.test(again.err), again.err);
    const alive = await pifs("node", "forget", "1", "--cluster", dir);
    assert.deepStrictEqual(alive.code, 2, alive.err);
    assert(/node 1 answers: it is not lost/.test(alive.err), alive.err);
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});
