/**
 * Snapshots: taking one, reading its files, and comparing two. A snapshot
 * is a small record (format 2) naming the tree of its target, written by
 * the tree writer checkpoints use ({@linkcode buildTrees}); an unchanged
 * re-sync therefore stores the record and nothing else. Snapshots of the
 * first format (every file's row in one object) are still read.
 *
 * @module
 */
import type { Entry, SnapshotRow } from "./index_db.ts";
import {
  encodeSnapshot,
  parentOf,
  type SnapshotObject,
  SNAPSHOTS_DIR,
  type SnapshotV2,
} from "./namespace.ts";
import {
  buildTrees,
  diffFiles,
  diffTrees,
  entryOf,
  pool,
  readTreeAll,
  readTreeFiles,
  type SnapshotChange,
  type SnapshotFile,
} from "./trees.ts";

/** What snapshots need of the store: reading and writing its metadata objects. */
export interface SnapshotStore {
  /** Reads a metadata object (a tree) by id. */
  getObject(id: string): Promise<Uint8Array>;
  /** Reads a snapshot object by id. */
  snapshotObject(id: string): Promise<SnapshotObject>;
  /** Stores a metadata object with `copies` copies, unless the cluster holds enough already. */
  storeObject(
    data: Uint8Array,
    opts: { id?: string; copies?: number },
  ): Promise<{ id: string; sent: boolean }>;
}

/** A snapshot's files (by path, relative to its target) and every object it holds (for gc). */
export async function snapshotContents(
  store: SnapshotStore,
  root: string,
): Promise<{ obj: SnapshotObject; files: SnapshotFile[]; held: string[] }> {
  const obj = await store.snapshotObject(root);
  if (obj.v === 1) return { obj, files: obj.files, held: obj.files.map((f) => f[1]) };
  const t = await readTreeFiles(obj.tree, (id) => store.getObject(id));
  return { obj, files: t.files.map((f) => f.file), held: t.held };
}

/**
 * What changed from snapshot `a` to snapshot `b` (their object ids). Two
 * snapshots of format 2 are compared tree by tree, reading only subtrees
 * whose ids differ.
 */
export async function diffSnapshots(
  store: SnapshotStore,
  a: string,
  b: string,
): Promise<SnapshotChange[]> {
  const [oa, ob] = await Promise.all([store.snapshotObject(a), store.snapshotObject(b)]);
  if (oa.v === 2 && ob.v === 2) return diffTrees(oa.tree, ob.tree, (id) => store.getObject(id));
  const [fa, fb] = await Promise.all([snapshotContents(store, a), snapshotContents(store, b)]);
  return diffFiles(fa.files, fb.files);
}

/** A snapshot written by {@linkcode writeSnapshot}: its row, and the ids it holds. */
export interface WrittenSnapshot {
  /** The row its `snap` journal entry carries. */
  row: SnapshotRow;
  /** The snapshot object. */
  obj: SnapshotV2;
  /** Every object it holds: its trees and its files' manifests (recorded for gc). */
  held: string[];
  /** Objects that had to be sent (an unchanged tree: only the snapshot record). */
  sent: number;
}

/**
 * Writes a snapshot of `target` (from `entries`, `target` and everything
 * under it): its trees, children before parents (each stored only if the
 * cluster does not hold enough copies yet), then the snapshot record. The
 * caller commits the `snap` entry.
 */
export async function writeSnapshot(
  store: SnapshotStore,
  s: { name: string; job: string; target: string; time: number; copies: number; entries: Entry[] },
): Promise<WrittenSnapshot> {
  const objects = new Map<string, Uint8Array>();
  const tree = buildTrees(s.entries, s.target, objects);
  let sent = 0, files = 0, bytes = 0;
  const held = [...objects.keys()];
  for (const e of s.entries) {
    if (e.type !== "f" || !e.manifest) continue;
    files++, bytes += e.size;
    held.push(e.manifest);
  }
  // Side by side (a snapshot's first trees are many; each copy waits for its
  // commit), the record last: a record never names a tree not yet stored.
  await pool([...objects], 8, async ([id, data]) => {
    if ((await store.storeObject(data, { id, copies: s.copies })).sent) sent++;
  });
  const obj: SnapshotV2 = {
    v: 2,
    kind: "snap",
    name: s.name,
    target: s.target,
    time: s.time,
    tree,
  };
  const r = await store.storeObject(encodeSnapshot(obj), { copies: s.copies });
  if (r.sent) sent++;
  return {
    row: { name: s.name, job: s.job, target: s.target, root: r.id, time: s.time, files, bytes },
    obj,
    held,
    sent,
  };
}

/** Whether `path` (normalised) is `/.snapshots` or lies under it. */
export function inSnapshots(path: string): boolean {
  return path === `/${SNAPSHOTS_DIR}` || path.startsWith(`/${SNAPSHOTS_DIR}/`);
}

/** A read-only namespace: what `ls`, `get` and `cat` read (the store's, or a snapshot's). */
export interface NamespaceView {
  /** The entry at `path`, if any. */
  get(path: string): Entry | undefined;
  /** A directory's entries, by name. */
  list(dir: string): Entry[];
  /** Every entry under (and including) `dir`, in path order. */
  walk(dir: string): Entry[];
}

const byPath = (a: Entry, b: Entry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * `/.snapshots` as the mount shows it, for `ls`, `get`, `cat` and `restore`:
 * `/.snapshots` lists the snapshots, `/.snapshots/NAME` is the snapshot's
 * target as it was (its files, directories and links, with their modes and
 * times; a first-format snapshot holds files only, its directories made up
 * with the snapshot's time). Only the snapshot a path names is read.
 */
export class SnapshotView implements NamespaceView {
  #entries = new Map<string, Entry>();
  #children = new Map<string, Entry[]>();

  private constructor(entries: Entry[]) {
    for (const e of entries.sort(byPath)) {
      this.#entries.set(e.path, e);
      if (e.path === "/") continue;
      const p = parentOf(e.path);
      let l = this.#children.get(p);
      if (!l) this.#children.set(p, l = []);
      l.push(e);
    }
  }

  /**
   * The view of `path`: the list of snapshots for `/.snapshots`, else the
   * snapshot `path` names (undefined: no such snapshot).
   */
  static async open(
    store: SnapshotStore,
    snapshots: SnapshotRow[],
    path: string,
  ): Promise<SnapshotView | undefined> {
    const top = `/${SNAPSHOTS_DIR}`;
    const dir = (p: string, mtime: number, mode = 0o755): Entry => ({
      path: p,
      type: "d",
      size: 0,
      mode,
      mtime,
      manifest: null,
      copies: 0,
    });
    const name = path.slice(top.length + 1).split("/")[0];
    if (!name) {
      const newest = Math.max(0, ...snapshots.map((r) => r.time));
      return new SnapshotView([
        dir(top, newest, 0o555),
        ...snapshots.map((r) => dir(`${top}/${r.name}`, r.time, 0o555)),
      ]);
    }
    const row = snapshots.find((r) => r.name === name);
    if (!row) return undefined;
    const base = `${top}/${name}`;
    const entries: Entry[] = [dir(top, row.time, 0o555), dir(base, row.time, 0o555)];
    const obj = await store.snapshotObject(row.root);
    if (obj.v === 2) {
      const t = await readTreeAll(obj.tree, (id) => store.getObject(id));
      for (const { path: rel, entry } of t.items) entries.push(entryOf(`${base}/${rel}`, entry));
    } else {
      const dirs = new Set<string>();
      for (const [rel, manifest, size, mode, mtime] of obj.files) {
        const p = `${base}/${rel}`;
        for (let d = parentOf(p); d !== base && !dirs.has(d); d = parentOf(d)) {
          dirs.add(d);
          entries.push(dir(d, row.time));
        }
        entries.push({ path: p, type: "f", size, mode, mtime, manifest, copies: 0 });
      }
    }
    return new SnapshotView(entries);
  }

  get(path: string): Entry | undefined {
    const e = this.#entries.get(path);
    return e && { ...e };
  }

  list(dir: string): Entry[] {
    return (this.#children.get(dir) ?? []).map((e) => ({ ...e }));
  }

  walk(dir: string): Entry[] {
    const e = this.#entries.get(dir);
    if (!e) return [];
    const out: Entry[] = [];
    const visit = (x: Entry) => {
      out.push({ ...x });
      for (const c of this.#children.get(x.path) ?? []) visit(c);
    };
    visit(e);
    return out.sort(byPath);
  }
}
