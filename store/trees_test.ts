/**
 * The tree writer and reader (store/trees.ts) and snapshots made of trees
 * (store/snapshots.ts), on an in-memory object store: shared ids, what an
 * unchanged or a one-file change costs, a directory of 150,000 files, and a
 * tree diff that reads only what differs and agrees with the flat diff.
 */
import assert from "node:assert/strict";
import type { Entry } from "./index_db.ts";
import { decodeSnapshot, decodeTree, TREE_PART_BYTES } from "./namespace.ts";
import { type SnapshotStore, writeSnapshot } from "./snapshots.ts";
import { diffSnapshots, snapshotContents } from "./snapshots.ts";
import { buildTrees, diffFiles, diffTrees, readTreeFiles, type SnapshotFile } from "./trees.ts";
import { objectId } from "../ids.ts";

const file = (path: string, manifest: string, size = 100, mode = 0o644, mtime = 1): Entry => ({
  path,
  type: "f",
  size,
  mode,
  mtime,
  manifest,
  copies: 0,
});
const dir = (path: string): Entry => ({
  path,
  type: "d",
  size: 0,
  mode: 0o755,
  mtime: 0,
  manifest: null,
  copies: 0,
});

/** A library: `n` files spread over years and months, as a photo library is. */
function library(n: number, root = "/photos"): Entry[] {
  const out: Entry[] = [dir(root)];
  const dirs = new Set<string>();
  for (let i = 0; i < n; i++) {
    const d = `${root}/${2000 + (i % 20)}/${String(1 + (i % 12)).padStart(2, "0")}`;
    for (const p of [d.slice(0, d.lastIndexOf("/")), d]) {
      if (!dirs.has(p)) dirs.add(p), out.push(dir(p));
    }
    out.push(file(`${d}/img_${i}.jpg`, `m${i}`, 2000 + i));
  }
  return out;
}

/** An object store in memory that counts what is sent and read. */
class MemStore implements SnapshotStore {
  objects = new Map<string, Uint8Array>();
  sent = 0;
  reads = 0;
  getObject(id: string): Promise<Uint8Array> {
    this.reads++;
    const b = this.objects.get(id);
    return b ? Promise.resolve(b) : Promise.reject(new Error(`no object ${id}`));
  }
  async snapshotObject(id: string) {
    return decodeSnapshot(await this.getObject(id), id);
  }
  storeObject(data: Uint8Array, opts: { id?: string }) {
    const id = opts.id ?? objectId(data);
    const sent = !this.objects.has(id);
    if (sent) this.objects.set(id, data), this.sent += data.length;
    return Promise.resolve({ id, sent });
  }
}

Deno.test("trees: equal directories give equal ids; a change rewrites only the trees on its path", () => {
  const a = new Map<string, Uint8Array>();
  const lib = library(5000);
  const r1 = buildTrees(lib, "/photos", a);
  const b = new Map<string, Uint8Array>();
  assert.equal(buildTrees(lib, "/photos", b), r1);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  // One file changed: its month, its year and the root are new, nothing else.
  const changed = lib.map((e) =>
    e.path === "/photos/2003/04/img_3.jpg" ? { ...e, manifest: "x" } : e
  );
  const c = new Map<string, Uint8Array>();
  const r2 = buildTrees(changed, "/photos", c);
  assert.notEqual(r2, r1);
  const fresh = [...c.keys()].filter((id) => !a.has(id));
  assert.equal(fresh.length, 3, `new objects: ${fresh.length}`);
});

Deno.test("trees: a directory of 150,000 files is cut into parts; every file reads back", async () => {
  const n = 150_000;
  const entries: Entry[] = [dir("/big")];
  for (let i = 0; i < n; i++) entries.push(file(`/big/f${i}`, `m${i}`, i));
  const objects = new Map<string, Uint8Array>();
  const root = buildTrees(entries, "/big", objects);
  const top = decodeTree(objects.get(root)!, root);
  assert("parts" in top, "a 150,000-entry directory is one tree object");
  assert(top.parts.length > 10, `${top.parts.length} parts`);
  for (const b of objects.values()) assert(b.length <= 2 * TREE_PART_BYTES, `${b.length} bytes`);
  const back = await readTreeFiles(root, (id) => Promise.resolve(objects.get(id)!));
  assert.equal(back.files.length, n);
  const names = new Set(back.files.map((f) => f.path));
  for (let i = 0; i < n; i += 7919) assert(names.has(`f${i}`), `f${i}`);
  assert.equal(back.held.length, objects.size + n); // every tree and part, every manifest
});

Deno.test("snapshots: an unchanged tree costs one small record; one changed file, the trees on its path", async () => {
  const s = new MemStore();
  const lib = library(10_000);
  const snap = (name: string, entries: Entry[], time: number) =>
    writeSnapshot(s, { name, job: "photos", target: "/photos", time, copies: 2, entries });
  const first = await snap("a", lib, 1);
  assert.equal(first.row.files, 10_000);
  assert.equal(first.row.bytes, lib.reduce((x, e) => x + e.size, 0));
  const after1 = s.sent;
  const again = await snap("b", lib, 2);
  assert.equal(again.sent, 1); // the record alone
  assert(s.sent - after1 < 300, `unchanged: ${s.sent - after1} bytes`);
  assert.equal(again.obj.tree, first.obj.tree);
  const changed = lib.map((e) =>
    e.path === "/photos/2007/08/img_7.jpg" ? { ...e, manifest: "y" } : e
  );
  const before = s.sent;
  const third = await snap("c", changed, 3);
  assert.equal(third.sent, 4); // month, year, root trees and the record
  // Its month holds 1/60 of the library (20 years × 12 months share 60
  // directories): the bytes sent are that month's tree and a little more.
  const bound = after1 / 60 + 4096;
  assert(s.sent - before < bound, `one change: ${s.sent - before} bytes, bound ${bound}`);
  // What each snapshot holds (gc): every tree and every manifest.
  const held = new Set(third.held);
  assert(held.has("y") && !held.has("m7"));
  assert.equal((await snapshotContents(s, third.row.root)).files.length, 10_000);
});

Deno.test("snapshots: diff reads only the trees that differ, and agrees with the flat diff", async () => {
  const s = new MemStore();
  const n = 100_000;
  const lib = library(n);
  const a = await writeSnapshot(s, {
    name: "a",
    job: "j",
    target: "/photos",
    time: 1,
    copies: 1,
    entries: lib,
  });
  const changed = lib.map((e) =>
    e.path === "/photos/2011/12/img_11.jpg" ? { ...e, manifest: "z" } : e
  );
  const b = await writeSnapshot(s, {
    name: "b",
    job: "j",
    target: "/photos",
    time: 2,
    copies: 1,
    entries: changed,
  });
  s.reads = 0;
  const d = await diffSnapshots(s, a.row.root, b.row.root);
  assert.deepEqual(d, [{
    kind: "M",
    path: "2011/12/img_11.jpg",
    size: lib.find((e) => e.path.endsWith("/img_11.jpg"))!.size,
  }]);
  assert(s.reads <= 10, `${s.reads} objects read for a one-file diff of ${n} files`);
});

Deno.test("trees: diffTrees gives what diffFiles gives, over random changes", async () => {
  let x = 0x5eed21;
  const rnd = (k: number) => {
    x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
    return (x >>> 0) % k;
  };
  for (let round = 0; round < 20; round++) {
    const lib = library(300 + rnd(300), "/t");
    const objects = new Map<string, Uint8Array>();
    const get = (id: string) => Promise.resolve(objects.get(id)!);
    let changed = lib.filter((e) => !(e.type === "f" && rnd(20) === 0)); // removed
    changed = changed.map((e) => {
      if (e.type !== "f") return e;
      const r = rnd(30);
      return r === 0 ? { ...e, manifest: `${e.manifest}'` } : r === 1 ? { ...e, mode: 0o600 } : e;
    });
    for (let k = rnd(10); k > 0; k--) changed.push(file(`/t/new${round}_${k}.txt`, `n${k}`));
    if (rnd(2)) changed = changed.filter((e) => !e.path.startsWith("/t/2005")); // a whole year gone
    changed.push(dir("/t/fresh"), file("/t/fresh/a", "fa"), file("/t/fresh/b", "fb"));
    const ra = buildTrees(lib, "/t", objects), rb = buildTrees(changed, "/t", objects);
    const flat = async (root: string): Promise<SnapshotFile[]> =>
      (await readTreeFiles(root, get)).files.map((f) => f.file);
    const want = diffFiles(await flat(ra), await flat(rb));
    assert.deepEqual(await diffTrees(ra, rb, get), want, `round ${round}`);
    assert(want.length > 0);
  }
});
