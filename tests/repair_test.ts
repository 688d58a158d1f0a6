/**
 * Scrub and repair through the real CLI: bytes flipped inside chunk data on
 * one card are all found by scrub, reads stay correct meanwhile (from the
 * other copy), and repair makes the copies whole again.
 */
import { pifs } from "./_cli.ts";
import { chunkId } from "../link/client.ts";
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals } from "./_assert.ts";

const CHUNK = 256 * 1024; // what `pifs put` cuts files into

async function ok(...args: string[]): Promise<string> {
  const r = await pifs(...args);
  assertEquals(r.code, 0, `pifs ${args.join(" ")}: ${r.err}`);
  return r.out;
}

function rand(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

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

Deno.test("repair: bytes flipped in chunk data on one card: scrub finds each, reads stay right, repair restores", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-repair-" });
  try {
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

    // Reads are right: each damaged copy fails its hash and the other is used.
    await ok("get", "/t", `${dir}/back1`, "--cluster", dir);
    for (const [name, data] of Object.entries(files)) {
      assertEquals(await Deno.readFile(`${dir}/back1/${name}`), data, name);
    }

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

    const after = await pifs("scrub", "--cluster", dir, "--json");
    assertEquals(after.code, 0, after.err + after.out);
    const r2 = JSON.parse(after.out);
    assertEquals([r2.missing.length, r2.lost.length], [0, 0]);
    for (const n of r2.nodes) assertEquals(n.damaged, []);
    // A second repair finds nothing to do.
    const again = JSON.parse(await ok("repair", "--cluster", dir, "--json"));
    assertEquals([again.deleted, again.copied, again.failed.length], [0, 0, 0]);
    await ok("get", "/t", `${dir}/back2`, "--cluster", dir);
    for (const [name, data] of Object.entries(files)) {
      assertEquals(await Deno.readFile(`${dir}/back2/${name}`), data, name);
    }
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});
