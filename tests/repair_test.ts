/**
 * Scrub and repair through the real CLI: bytes flipped inside chunk data on
 * one card are all found by scrub, reads stay correct meanwhile (from the
 * other copy), and repair makes the copies whole again.
 */
import { ok, PIFS, pifs, rand } from "./_cli.ts";
import { chunkId } from "../link/client.ts";
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals } from "./_assert.ts";

const CHUNK = 256 * 1024; // what `pifs put` cuts files into

/** Where `needle` starts in `hay`, or -1. */
function find(hay: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  for (
    let i = hay.indexOf(first);
    i >= 0 && i + needle.length <= hay.length;
    i = hay.indexOf(first, i + 1)
  ) {
    let k = 1;
    while (k < needle.length && hay[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
  }
  return -1;
}

/** A 4-Pi cluster with a tree put at R=2, and a byte flipped in every data chunk on node 1's card. */
async function damagedCluster(dir: string) {
  await ok("sim", "up", "--dir", dir, "--nodes", "4");
  const files: Record<string, Uint8Array> = {};
  await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
  for (let i = 0; i < 6; i++) {
    const name = i % 2 ? `sub/f${i}.bin` : `f${i}.bin`;
    files[name] = rand(200_000 + i * 150_000, 100 + i);
    await Deno.writeFile(`${dir}/src/${name}`, files[name]);
  }
  await ok("put", `${dir}/src`, "/t", "--cluster", dir, "--copies", "2");
  const clean = await pifs("scrub", "--cluster", dir, "--json");
  assertEquals(clean.code, 0, clean.err + clean.out);
  const r0 = JSON.parse(clean.out);
  assertEquals([r0.missing.length, r0.lost.length, r0.over.length], [0, 0, 0]);
  assert(r0.referenced > 12, `${r0.referenced} chunks referenced`);

  // The data chunks on node 1, from the host's index.
  const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
  const onNode1 = new Set(
    (db.prepare("SELECT id FROM locations WHERE node = 1").all() as { id: string }[]).map((r) =>
      r.id
    ),
  );
  db.close();
  const pieces: { id: string; data: Uint8Array }[] = [];
  for (const data of Object.values(files)) {
    for (let off = 0; off < data.length; off += CHUNK) {
      const piece = data.subarray(off, Math.min(data.length, off + CHUNK));
      const id = await chunkId(piece);
      if (onNode1.has(id)) pieces.push({ id, data: piece });
    }
  }
  assert(pieces.length >= 3, `only ${pieces.length} data chunks on node 1`);

  // Node 1 off; one byte flipped in the middle of each of its data chunks.
  await ok("sim", "down", "--dir", dir);
  const card = `${dir}/node1.img`;
  const img = await Deno.readFile(card);
  for (const p of pieces) {
    const at = find(img, p.data.subarray(0, 64));
    assert(at >= 0, `chunk ${p.id} not found on ${card}`);
    img[at + Math.floor(p.data.length / 2)] ^= 0x5a;
  }
  await Deno.writeFile(card, img);
  await ok("sim", "up", "--dir", dir);
  return { files, pieces };
}

async function assertTree(dir: string, files: Record<string, Uint8Array>, out: string) {
  await ok("get", "/t", `${dir}/${out}`, "--cluster", dir);
  for (const [name, data] of Object.entries(files)) {
    assertEquals(await Deno.readFile(`${dir}/${out}/${name}`), data, name);
  }
}

async function assertScrubClean(dir: string) {
  const after = await pifs("scrub", "--cluster", dir, "--json");
  assertEquals(after.code, 0, after.err + after.out);
  const r = JSON.parse(after.out);
  assertEquals([r.missing.length, r.lost.length], [0, 0]);
  for (const n of r.nodes) assertEquals(n.damaged, []);
}

Deno.test("repair: bytes flipped in chunk data on one card: scrub finds each, reads stay right, repair restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-repair-" });
  try {
    const { files, pieces } = await damagedCluster(dir);
    // Reads are right: each damaged copy fails its hash and the other is used.
    await assertTree(dir, files, "back1");

    const found = await pifs("scrub", "--cluster", dir, "--json");
    assertEquals(found.code, 1, found.err);
    const r1 = JSON.parse(found.out);
    const node1 = r1.nodes.find((n: { node: number }) => n.node === 1);
    assertEquals(node1.damaged, pieces.map((p) => p.id).sort());
    for (const n of r1.nodes) if (n.node !== 1) assertEquals(n.damaged, []);
    assertEquals(
      r1.missing.map((p: { id: string }) => p.id).sort(),
      pieces.map((p) => p.id).sort(),
    );
    assertEquals(r1.lost, []);

    const fixed = await pifs("repair", "--cluster", dir, "--json");
    assertEquals(fixed.code, 0, fixed.err + fixed.out);
    const rr = JSON.parse(fixed.out);
    assertEquals(rr.deleted, pieces.length);
    assert(rr.copied >= pieces.length, `${rr.copied} copies made`);
    await assertScrubClean(dir);
    // A second repair finds nothing to do.
    const again = JSON.parse(await ok("repair", "--cluster", dir, "--json"));
    assertEquals([again.deleted, again.copied, again.failed.length], [0, 0, 0]);
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
    assertEquals(crash.signal, "SIGKILL");
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
    assertEquals(fixed.code, 0, fixed.err + fixed.out);
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
    assertEquals(forgot.code, 0, forgot.err + forgot.out);
    const fr = JSON.parse(forgot.out);
    assert(fr.repair.copied > 0, "nothing was copied");
    assertEquals(fr.repair.failed, []);
    await assertScrubClean(dir);
    const r = JSON.parse((await pifs("scrub", "--cluster", dir, "--json")).out);
    assertEquals(r.nodes.map((n: { node: number }) => n.node), [0, 1, 3]); // 2 is not scrubbed
    // Every needed chunk: 2 copies, none on node 2.
    const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
    const rows = db.prepare(
      "SELECT id, COUNT(*) AS n, SUM(node = 2) AS on2 FROM locations GROUP BY id",
    )
      .all() as { n: number; on2: number }[];
    db.close();
    for (const row of rows) assertEquals([row.n >= 2, row.on2], [true, 0]);
    await assertTree(dir, files, "back");
    // A host that rebuilds its index from the cards keeps node 2 forgotten.
    await ok("attach", "--cluster", dir);
    await assertScrubClean(dir);
    await assertTree(dir, files, "back2");
    const again = await pifs("node", "forget", "2", "--cluster", dir);
    assertEquals(again.code, 2, again.err);
    assert(/already forgotten/.test(again.err), again.err);
    const alive = await pifs("node", "forget", "1", "--cluster", dir);
    assertEquals(alive.code, 2, alive.err);
    assert(/node 1 answers: it is not lost/.test(alive.err), alive.err);
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});
