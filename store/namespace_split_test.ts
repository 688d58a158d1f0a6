import assert from "node:assert/strict";
import {
  splitTree,
  TREE_PART_BYTES,
  TREE_PART_ENTRIES,
  TREE_SPLIT_BYTES,
  type TreeEntry,
} from "./namespace.ts";

const MANIFEST = "ab".repeat(32);

/** `n` files named like a camera's, sorted by name as a tree object holds them. */
function files(n: number, from = 0): TreeEntry[] {
  return Array.from(
    { length: n },
    (
      _,
      i,
    ): TreeEntry => [
      `IMG_${String(from + i).padStart(5, "0")}.JPG`,
      "f",
      3_000_000,
      0o644,
      1_700_000_000_000 + i,
      MANIFEST,
      2,
    ],
  );
}

const byName = (a: TreeEntry, b: TreeEntry) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
const key = (p: TreeEntry[]) => JSON.stringify(p);
const jsonBytes = (l: TreeEntry[]) => l.reduce((a, t) => a + JSON.stringify(t).length + 1, 0);

Deno.test("splitTree: a directory up to TREE_SPLIT_BYTES is one part, as it always was", () => {
  assert.deepStrictEqual(splitTree([]), [[]]);
  const few = files(100);
  assert(jsonBytes(few) <= TREE_SPLIT_BYTES);
  assert.deepStrictEqual(splitTree(few), [few]);
});

Deno.test("splitTree: a large directory is cut by names into parts of about TREE_PART_ENTRIES; they concatenate to the listing", () => {
  const list = files(20_000);
  assert(jsonBytes(list) > TREE_SPLIT_BYTES);
  const parts = splitTree(list);
  assert.deepStrictEqual(parts.flat(), list);
  assert(parts.every((p) => p.length > 0), "no empty part");
  const mean = list.length / parts.length;
  assert(mean > TREE_PART_ENTRIES / 2 && mean < TREE_PART_ENTRIES * 2, `mean part ${mean} entries`);
  // The same names give the same cuts whatever else the entries say.
  const touched = list.map((t): TreeEntry => [t[0], t[1], 1, 0o600, 5, "cd".repeat(32), 1]);
  assert.deepStrictEqual(splitTree(touched).map((p) => p.length), parts.map((p) => p.length));
});

Deno.test("splitTree: a file added, changed or removed changes one or two parts of a large directory", () => {
  const list = files(5_000);
  const before = new Set(splitTree(list).map(key));
  const changedParts = (l: TreeEntry[]) => splitTree(l).filter((p) => !before.has(key(p))).length;
  // Added in the middle (a name between two others), and at the end.
  const mid: TreeEntry = ["IMG_02500a.JPG", "f", 1, 0o644, 1, MANIFEST, 2];
  const added = [...list, mid].sort(byName);
  assert(changedParts(added) >= 1 && changedParts(added) <= 2, `added: ${changedParts(added)}`);
  const appended = [...list, ...files(3, 5_000)];
  assert(changedParts(appended) <= 2, `appended: ${changedParts(appended)}`);
  // One entry's mtime changed: exactly the part holding it.
  const changed = list.map((t, i): TreeEntry =>
    i === 1234 ? [t[0], t[1], t[2], t[3], 99, t[5], t[6]] : t
  );
  assert.deepStrictEqual(changedParts(changed), 1);
  // One removed.
  const removed = list.filter((_, i) => i !== 4321);
  assert(
    changedParts(removed) >= 1 && changedParts(removed) <= 2,
    `removed: ${changedParts(removed)}`,
  );
});

Deno.test("splitTree: no part exceeds TREE_PART_BYTES, however rarely names hash to a cut", () => {
  // Names of 200 KB: about 20 entries reach the byte limit, far fewer than
  // the TREE_PART_ENTRIES between cuts by name on average.
  const long: TreeEntry[] = Array.from(
    { length: 3_000 },
    (
      _,
      i,
    ): TreeEntry => [
      `${String(i).padStart(6, "0")}${"x".repeat(2000)}`,
      "f",
      1,
      0o644,
      1,
      MANIFEST,
      2,
    ],
  );
  const parts = splitTree(long);
  assert.deepStrictEqual(parts.flat(), long);
  assert(parts.length >= 5, `${parts.length} parts of 20 MB`);
  for (const p of parts) assert(jsonBytes(p) <= TREE_PART_BYTES, `part of ${jsonBytes(p)} bytes`);
});
