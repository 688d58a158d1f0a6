/**
 * A cluster with damaged chunk copies, for the scrub and repair tests: a
 * tree put at R=2 on 4 hosted nodes, then a byte flipped inside every data
 * chunk on node 1's card (found in the image by its bytes).
 *
 * @module
 */
import { ok, pifs, rand } from "./_cli.ts";
import { chunkId } from "../ids.ts";
import { DatabaseSync } from "node:sqlite";
import assert from "node:assert/strict";

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
export async function damagedCluster(
  dir: string,
): Promise<{ files: Record<string, Uint8Array>; pieces: { id: string; data: Uint8Array }[] }> {
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
  assert.deepStrictEqual(clean.code, 0, clean.err + clean.out);
  const r0 = JSON.parse(clean.out);
  assert.deepStrictEqual([r0.missing.length, r0.lost.length, r0.over.length], [0, 0, 0]);
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

/** `pifs get /t` into DIR/OUT gives back every file of `files` bit-exact. */
export async function assertTree(dir: string, files: Record<string, Uint8Array>, out: string) {
  await ok("get", "/t", `${dir}/${out}`, "--cluster", dir);
  for (const [name, data] of Object.entries(files)) {
    assert.deepStrictEqual(await Deno.readFile(`${dir}/${out}/${name}`), data, name);
  }
}

/** `pifs scrub` exits 0: nothing short of copies, lost, or damaged on any Pi. */
export async function assertScrubClean(dir: string) {
  const after = await pifs("scrub", "--cluster", dir, "--json");
  assert.deepStrictEqual(after.code, 0, after.err + after.out);
  const r = JSON.parse(after.out);
  assert.deepStrictEqual([r.missing.length, r.lost.length], [0, 0]);
  for (const n of r.nodes) assert.deepStrictEqual(n.damaged, []);
}
