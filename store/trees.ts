/**
 * Trees: a directory as a content-addressed object, as git and restic keep
 * them. This module is their one writer and one reader: checkpoints and
 * snapshots both store their namespace as trees, so a directory that did not
 * change keeps its id, and two snapshots (or a snapshot and a checkpoint) of
 * an unchanged directory share its objects. A large directory is cut into
 * content-defined parts ({@linkcode splitTree}): a change in it rewrites the
 * part that holds the entry and the tree that lists the parts.
 *
 * @example
 * ```ts
 * import { buildTrees, readTreeFiles } from "./trees.ts";
 * const e = (path: string, type: "f" | "d") => ({
 *   path, type, size: 1, mode: 0o644, mtime: 0, manifest: type === "f" ? "m" : null, copies: 0,
 * });
 * const objects = new Map<string, Uint8Array>();
 * const root = buildTrees([e("/a", "d"), e("/a/x", "f")], "/", objects);
 * const files = await readTreeFiles(root, async (id) => objects.get(id)!);
 * if (files.files[0].path !== "a/x") throw new Error();
 * ```
 *
 * @module
 */
import { objectId } from "../ids.ts";
import type { Entry } from "./index_db.ts";
import {
  decodeTree,
  encodeObject,
  JournalError,
  parentOf,
  splitTree,
  type TreeEntry,
  type TreeObject,
} from "./namespace.ts";

/** Reads an object by its id (from the nodes, or a test's map). */
export type GetObject = (id: string) => Promise<Uint8Array>;

/** Runs fn over items with at most `n` at a time; the first failure is thrown. */
export async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  let failure: unknown;
  const worker = async () => {
    while (i < items.length && failure === undefined) {
      const x = items[i++];
      try {
        await fn(x);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  if (failure !== undefined) throw failure;
}

const byName = (a: TreeEntry, b: TreeEntry) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/**
 * Writes the tree objects of the directory `root` from `entries` (absolute
 * paths: `root` and everything under it, as the index's `walk` gives them)
 * into `objects`, children before parents; returns the id of `root`'s tree.
 * Equal directories give equal ids.
 */
export function buildTrees(
  entries: readonly Entry[],
  root: string,
  objects: Map<string, Uint8Array>,
): string {
  const put = (o: TreeObject): string => {
    const b = encodeObject(o);
    const id = objectId(b);
    objects.set(id, b);
    return id;
  };
  const children = new Map<string, Entry[]>();
  const dirs = new Set<string>([root]);
  for (const e of entries) {
    if (e.path === root) continue;
    if (e.type === "d") dirs.add(e.path);
    const p = parentOf(e.path);
    let l = children.get(p);
    if (!l) children.set(p, l = []);
    l.push(e);
  }
  // Deepest directories first, so a directory's children have their ids.
  const depth = (p: string) => (p === "/" ? 0 : p.split("/").length - 1);
  const order = [...dirs].sort((a, b) => depth(b) - depth(a));
  const treeId = new Map<string, string>();
  const name = (p: string) => p.slice(p.lastIndexOf("/") + 1);
  for (const d of order) {
    const list = (children.get(d) ?? []).map((e): TreeEntry => [
      name(e.path),
      e.type,
      e.size,
      e.mode,
      e.mtime,
      e.type === "f" ? e.manifest ?? "" : e.type === "l" ? e.target ?? "" : treeId.get(e.path)!,
      e.type === "f" ? e.copies : 0,
    ]);
    list.sort(byName);
    const parts = splitTree(list);
    treeId.set(
      d,
      parts.length === 1 ? put({ v: 1, kind: "tree", entries: parts[0] }) : put({
        v: 1,
        kind: "tree",
        parts: parts.map((x) => put({ v: 1, kind: "tree", entries: x })),
      }),
    );
  }
  return treeId.get(root)!;
}

/** One directory's tree: its entries by name, and the ids of the objects it took (the tree and its parts). */
export async function readTree(
  id: string,
  get: GetObject,
  limit = 4,
  skipParts?: ReadonlySet<string>,
): Promise<{ entries: TreeEntry[]; objects: string[]; parts: string[] }> {
  const tree = decodeTree(await get(id), id);
  if (!("parts" in tree)) return { entries: tree.entries, objects: [id], parts: [] };
  // A large directory's parts, read side by side, kept in order.
  const wanted = tree.parts.filter((p) => !skipParts?.has(p));
  const got = new Map<string, TreeEntry[]>();
  await pool(wanted, limit, async (pid) => {
    const part = decodeTree(await get(pid), pid);
    if (!("entries" in part)) {
      throw new JournalError(`tree part ${pid.slice(0, 12)}: has parts itself`);
    }
    got.set(pid, part.entries);
  });
  return {
    entries: wanted.flatMap((p) => got.get(p)!),
    objects: [id, ...tree.parts],
    parts: tree.parts,
  };
}

/** An entry found by {@linkcode readTreeAll}: its path relative to the top ("a/b"). */
export interface TreeItem {
  /** Path relative to the tree's top, without a leading slash. */
  path: string;
  /** The entry as its directory's tree holds it. */
  entry: TreeEntry;
}

/**
 * Every entry under the tree `root`, level by level (directories read side
 * by side, at most `limit` at a time), with the ids of every object read.
 */
export async function readTreeAll(
  root: string,
  get: GetObject,
  limit = 4,
): Promise<{ items: TreeItem[]; objects: string[] }> {
  const items: TreeItem[] = [];
  const objects: string[] = [];
  let level: { path: string; id: string }[] = [{ path: "", id: root }];
  while (level.length) {
    const next: { path: string; id: string }[] = [];
    await pool(level, limit, async (d) => {
      const t = await readTree(d.id, get, limit);
      objects.push(...t.objects);
      for (const entry of t.entries) {
        const path = d.path ? `${d.path}/${entry[0]}` : entry[0];
        items.push({ path, entry });
        if (entry[1] === "d") next.push({ path, id: entry[5] });
      }
    });
    level = next;
  }
  items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { items, objects };
}

/** The index entry a tree holds at `path` (absolute): the inverse of {@linkcode buildTrees}. */
export function entryOf(path: string, entry: TreeEntry): Entry {
  const [, type, size, mode, mtime, id, copies] = entry;
  return {
    path,
    type,
    size,
    mode,
    mtime,
    manifest: type === "f" ? id : null,
    copies,
    ...(type === "l" ? { target: id } : {}),
  };
}

/** A file in a snapshot: path relative to its target, manifest id, size, mode, mtime. */
export type SnapshotFile = [string, string, number, number, number];

/** The files under the tree `root` (by path), and every object the tree holds: its trees and the files' manifests. */
export async function readTreeFiles(
  root: string,
  get: GetObject,
  limit = 4,
): Promise<{ files: { path: string; file: SnapshotFile }[]; held: string[] }> {
  const { items, objects } = await readTreeAll(root, get, limit);
  // A file entry without a manifest (a put that never finished) holds nothing.
  const files = items.filter((i) => i.entry[1] === "f" && i.entry[5]).map((i) => ({
    path: i.path,
    file: [i.path, i.entry[5], i.entry[2], i.entry[3], i.entry[4]] as SnapshotFile,
  }));
  return { files, held: [...objects, ...files.map((f) => f.file[1])] };
}

/** One difference between two snapshots. */
export interface SnapshotChange {
  /** `+` added, `-` removed, `M` content changed, `m` only mode or mtime changed. */
  kind: "+" | "-" | "M" | "m";
  /** Path relative to the snapshots' target. */
  path: string;
  /** Size in the newer snapshot (or the older, when removed). */
  size: number;
}

/** The differences between two flat lists of files (by path), sorted by path. */
export function diffFiles(
  a: readonly SnapshotFile[],
  b: readonly SnapshotFile[],
): SnapshotChange[] {
  const before = new Map(a.map((f) => [f[0], f]));
  const after = new Map(b.map((f) => [f[0], f]));
  const out: SnapshotChange[] = [];
  for (const [p, f] of after) {
    const o = before.get(p);
    if (!o) out.push({ kind: "+", path: p, size: f[2] });
    else if (o[1] !== f[1]) out.push({ kind: "M", path: p, size: f[2] });
    else if (o[3] !== f[3] || o[4] !== f[4]) out.push({ kind: "m", path: p, size: f[2] });
  }
  for (const [p, f] of before) if (!after.has(p)) out.push({ kind: "-", path: p, size: f[2] });
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

/**
 * The file differences between the trees `a` and `b`, reading only what
 * differs: a subtree (or a part of a large directory) with the same id on
 * both sides is skipped unread, so two snapshots of 100,000 files that
 * differ in one file cost the trees on that file's path.
 */
export async function diffTrees(
  a: string,
  b: string,
  getObject: GetObject,
): Promise<SnapshotChange[]> {
  const memo = new Map<string, Promise<Uint8Array>>(); // each object read once
  const get: GetObject = (id) => {
    let p = memo.get(id);
    if (!p) memo.set(id, p = getObject(id));
    return p;
  };
  const out: SnapshotChange[] = [];
  const files = async (id: string, prefix: string) =>
    (await readTreeFiles(id, get)).files.map((f) => ({ ...f, path: `${prefix}${f.path}` }));
  const walk = async (x: string, y: string, prefix: string): Promise<void> => {
    if (x === y) return;
    // Parts both sides share hold the same entries: neither is read.
    const px = decodeTree(await get(x), x), py = decodeTree(await get(y), y);
    const shared = new Set(
      "parts" in px && "parts" in py ? px.parts.filter((p) => py.parts.includes(p)) : [],
    );
    const [tx, ty] = await Promise.all([readTree(x, get, 4, shared), readTree(y, get, 4, shared)]);
    const before = new Map(tx.entries.map((e) => [e[0], e]));
    const after = new Map(ty.entries.map((e) => [e[0], e]));
    const gone = async (e: TreeEntry, kind: "+" | "-") => {
      const p = prefix + e[0];
      if (e[1] === "f") out.push({ kind, path: p, size: e[2] });
      else if (e[1] === "d") {
        for (const f of await files(e[5], `${p}/`)) {
          out.push({ kind, path: f.path, size: f.file[2] });
        }
      }
    };
    for (const [n, o] of before) {
      const f = after.get(n);
      if (!f || f[1] !== o[1]) await gone(o, "-");
    }
    for (const [n, f] of after) {
      const o = before.get(n);
      if (!o || o[1] !== f[1]) await gone(f, "+");
      else if (f[1] === "d") await walk(o[5], f[5], `${prefix}${n}/`);
      else if (f[1] === "f") {
        if (o[5] !== f[5]) out.push({ kind: "M", path: prefix + n, size: f[2] });
        else if (o[3] !== f[3] || o[4] !== f[4]) {
          out.push({ kind: "m", path: prefix + n, size: f[2] });
        }
      }
    }
  };
  await walk(a, b, "");
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}
