/**
 * The host's index: a SQLite cache (Deno's `node:sqlite`) of the namespace,
 * the chunks and where their copies are. Everything in it can be rebuilt from
 * the cards (`pifs attach`): it is never the only copy of anything.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { baseName, type JournalEntry, type Manifest, parentOf, unzipEntry } from "./namespace.ts";

/** One file or directory of the namespace. */
export interface Entry {
  /** Absolute path. */
  path: string;
  /** "f" file, "d" directory, "l" symbolic link. */
  type: "f" | "d" | "l";
  /** Bytes (0 for a directory; a symbolic link: its target's length in UTF-8). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, ms since the epoch. */
  mtime: number;
  /** Manifest chunk id (files). */
  manifest: string | null;
  /** Copies kept of each chunk (files). */
  copies: number;
  /** What a symbolic link points to (links only). */
  target?: string;
}

/** The columns an {@linkcode Entry} is read from (a link's target is kept in `manifest`). */
const ENTRY_COLS = "path, type, size, mode, mtime, manifest, copies";

/** An entry from its row: a symbolic link's target moves from `manifest` to `target`. */
function entryOf(r: Entry): Entry {
  if (r.type !== "l") return { ...r };
  return { ...r, manifest: null, target: r.manifest ?? "" };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  path TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
  size INTEGER NOT NULL, mode INTEGER NOT NULL, mtime INTEGER NOT NULL,
  manifest TEXT, copies INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent, name);
CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY, size INTEGER NOT NULL, seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS locations (id TEXT NOT NULL, node INTEGER NOT NULL, PRIMARY KEY (id, node));
CREATE TABLE IF NOT EXISTS manifests (manifest TEXT NOT NULL, idx INTEGER NOT NULL, id TEXT NOT NULL,
  PRIMARY KEY (manifest, idx));
CREATE INDEX IF NOT EXISTS manifests_id ON manifests(id);
CREATE TABLE IF NOT EXISTS journal (s INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (name TEXT PRIMARY KEY, job TEXT NOT NULL, target TEXT NOT NULL,
  root TEXT NOT NULL, time INTEGER NOT NULL, files INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snap_manifests (root TEXT NOT NULL, manifest TEXT NOT NULL,
  PRIMARY KEY (root, manifest));
CREATE TABLE IF NOT EXISTS policies (path TEXT PRIMARY KEY, copies INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS manifest_known (manifest TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS snap_known (root TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ckpt_objects (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS forgotten (node INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sync_cache (job TEXT NOT NULL, path TEXT NOT NULL, key TEXT NOT NULL,
  size INTEGER NOT NULL, mtime INTEGER NOT NULL, manifest TEXT NOT NULL, PRIMARY KEY (job, path));
`;

/** A snapshot as the index knows it. */
export interface SnapshotRow {
  /** Unique name. */
  name: string;
  /** Job that made it. */
  job: string;
  /** Store directory it captured. */
  target: string;
  /** Id of its snapshot object. */
  root: string;
  /** When it was taken (ms). */
  time: number;
  /** Files in it. */
  files: number;
  /** Their bytes. */
  bytes: number;
}

/** The checkpoint the index was last brought to (the last `ckpt` entry applied). */
export interface CheckpointRow {
  /** Generation. */
  gen: number;
  /** Id of the checkpoint (root) object. */
  root: string;
  /** Sequence number of its `ckpt` entry. */
  s: number;
  /** Journal offset of its `ckpt` entry (where the nodes' journals are trimmed to). */
  offset: number;
}

/** What the sync engine remembers of a source file it stored. */
export interface SyncCacheRow {
  /** The source's identity of the file (e.g. dev:ino). */
  key: string;
  /** Size when stored. */
  size: number;
  /** Modification time when stored (ms). */
  mtime: number;
  /** Manifest it was stored as. */
  manifest: string;
}

/** The index of one cluster. */
export class Index {
  #db: DatabaseSync;
  /** Prepared statements by their SQL: preparing one costs more than running it. */
  #stmts = new Map<string, StatementSync>();

  /** The statement for `sql`, prepared once. */
  #q(sql: string): StatementSync {
    let st = this.#stmts.get(sql);
    if (!st) this.#stmts.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  private constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    db.exec(SCHEMA);
    if (!this.get("/")) {
      db.prepare(
        "INSERT INTO entries VALUES ('/', '', '', 'd', 0, 493, 0, NULL, 0)",
      ).run();
    }
  }

  /** Opens (creating if needed) the index at `path` (":memory:" for tests). */
  static open(path: string): Index {
    return new Index(new DatabaseSync(path));
  }

  /** Closes the database. */
  close(): void {
    this.#db.close();
  }

  /** Runs fn in one transaction. */
  tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN");
    try {
      const r = fn();
      this.#db.exec("COMMIT");
      return r;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  /** A metadata value. */
  meta(k: string): string | undefined {
    const r = this.#q("SELECT v FROM meta WHERE k = ?").get(k) as
      | { v: string }
      | undefined;
    return r?.v;
  }

  /** Sets a metadata value. */
  setMeta(k: string, v: string): void {
    this.#q("INSERT OR REPLACE INTO meta VALUES (?, ?)").run(k, v);
  }

  /** Sequence number of the last journal entry applied (0 for none). */
  lastSeq(): number {
    const r = this.#q("SELECT s, entry FROM journal ORDER BY s DESC LIMIT 1").get() as
      | { s: number; entry: string }
      | undefined;
    // The entries before a checkpoint loaded from the cards were never here.
    if (!r) return Number(this.meta("base_seq") ?? "0");
    // A packed row ("z", written as {"op":"z","n":N,…}) stands for its N entries.
    const z = /^\{"op":"z","n":(\d+),/.exec(r.entry);
    return z ? r.s + Number(z[1]) - 1 : r.s;
  }

  /** Journal offset of the first entry the index holds (the last checkpoint's, else 0). */
  journalStart(): number {
    return Number(this.meta("journal_start") ?? "0");
  }

  /** The last checkpoint applied, if any. */
  checkpoint(): CheckpointRow | undefined {
    const v = this.meta("ckpt");
    return v ? JSON.parse(v) : undefined;
  }

  /**
   * Records that the `ckpt` entry `c` is applied: the journal rows before it
   * are dropped (the nodes forget them too), and `objects` (its root and
   * tree objects) are what `gc` keeps for it.
   */
  setCheckpoint(c: CheckpointRow, objects: string[]): void {
    this.#q("DELETE FROM journal WHERE s < ?").run(c.s);
    this.setMeta("ckpt", JSON.stringify(c));
    this.setMeta("journal_start", String(c.offset));
    this.#q("DELETE FROM ckpt_objects").run();
    const ins = this.#q("INSERT OR IGNORE INTO ckpt_objects VALUES (?)");
    for (const id of objects) ins.run(id);
  }

  /** The current checkpoint's objects. */
  checkpointObjects(): string[] {
    return (this.#q("SELECT id FROM ckpt_objects ORDER BY id").all() as { id: string }[])
      .map((r) => r.id);
  }

  /**
   * Empties the namespace (entries, journal, snapshots, copies rules) before
   * a checkpoint is loaded into it: the next entry applied is `baseSeq` + 1,
   * at journal offset `offset`. Chunks, locations and manifests stay (they
   * are facts about content, whatever names it).
   */
  resetNamespace(baseSeq: number, offset: number): void {
    for (
      const t of [
        "journal",
        "snapshots",
        "snap_manifests",
        "snap_known",
        "policies",
        "ckpt_objects",
        "forgotten",
      ]
    ) this.#db.exec(`DELETE FROM ${t}`);
    this.#q("DELETE FROM entries WHERE path != '/'").run();
    this.#q("UPDATE entries SET mode = 493, mtime = 0 WHERE path = '/'").run();
    this.#q("DELETE FROM meta WHERE k = 'ckpt'").run();
    this.setMeta("base_seq", String(baseSeq));
    this.setMeta("journal_start", String(offset));
    this.setMeta("journal_bytes", String(offset));
  }

  /** Inserts one entry as it is (loading a checkpoint; parents first). */
  insertEntry(e: Entry): void {
    if (e.path === "/") return;
    this.#q("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").run(
      e.path,
      parentOf(e.path),
      baseName(e.path),
      e.type,
      e.size,
      e.mode,
      e.mtime,
      e.type === "l" ? e.target ?? "" : e.manifest,
      e.copies,
    );
  }

  /** Sets the mode and/or mtime of the entry at `path` (an `attr` entry; the root from a checkpoint). */
  setAttr(path: string, mode?: number, mtime?: number): void {
    if (mode !== undefined) {
      this.#q("UPDATE entries SET mode = ? WHERE path = ?").run(mode, path);
    }
    if (mtime !== undefined) {
      this.#q("UPDATE entries SET mtime = ? WHERE path = ?").run(mtime, path);
    }
  }

  /** Inserts a snapshot row (loading a checkpoint). */
  insertSnapshot(r: SnapshotRow): void {
    this.#q("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)").run(
      r.name,
      r.job,
      r.target,
      r.root,
      r.time,
      r.files,
      r.bytes,
    );
  }

  /** Sets a copies rule (loading a checkpoint). */
  setPolicy(path: string, copies: number): void {
    this.#q("INSERT OR REPLACE INTO policies VALUES (?, ?)").run(path, copies);
  }

  /** The journal entries applied, from `from` on. */
  journal(from = 1): JournalEntry[] {
    return (this.#q("SELECT entry FROM journal WHERE s >= ? ORDER BY s").all(from) as {
      entry: string;
    }[]).map((r) => JSON.parse(r.entry));
  }

  // ---- namespace ----

  /** The entry at a normalised path. */
  get(path: string): Entry | undefined {
    const r = this.#q(`SELECT ${ENTRY_COLS} FROM entries WHERE path = ?`).get(path) as
      | Entry
      | undefined;
    return r ? entryOf(r) : undefined;
  }

  /** The children of a directory, by name. */
  list(dir: string): Entry[] {
    return (this.#q(
      `SELECT ${ENTRY_COLS} FROM entries WHERE parent = ? ORDER BY name`,
    ).all(dir) as unknown as Entry[]).map(entryOf);
  }

  /** Every entry under (and including) `dir`, in path order. */
  walk(dir: string): Entry[] {
    const like = dir === "/" ? "/%" : `${escapeLike(dir)}/%`;
    return (this.#q(
      `SELECT ${ENTRY_COLS} FROM entries ` +
        "WHERE path = ? OR path LIKE ? ESCAPE '\\' ORDER BY path",
    ).all(dir, like) as unknown as Entry[]).map(entryOf);
  }

  /**
   * Applies one journal entry (in sequence order). `manifest` gives the
   * chunk list of a `put`'s manifest.
   */
  apply(
    e: JournalEntry,
    manifest?: Manifest,
    held?: readonly string[],
    manifests?: (Manifest | undefined)[],
  ): void {
    if (e.s !== this.lastSeq() + 1) {
      throw new Error(`journal entry ${e.s} applied after ${this.lastSeq()}`);
    }
    // One row per journal line: catch-up sends a lagging node these lines
    // as they are, so its journal is byte for byte the others'.
    this.#q("INSERT INTO journal VALUES (?, ?)").run(e.s, JSON.stringify(e));
    if (e.op === "z") {
      // The entries a packed line holds; `manifests` gives their puts' manifests.
      unzipEntry(e).forEach((x, i) => this.#effect(x, manifests?.[i]));
    } else this.#effect(e, manifest, held);
  }

  #effect(e: JournalEntry, manifest?: Manifest, held?: readonly string[]): void {
    switch (e.op) {
      case "mkdir":
        this.#mkdirs(e.p, e.mode, e.mtime);
        break;
      case "put": {
        this.#mkdirs(parentOf(e.p), 0o755, e.mtime);
        this.#removeTree(e.p);
        this.#q("INSERT INTO entries VALUES (?, ?, ?, 'f', ?, ?, ?, ?, ?)").run(
          e.p,
          parentOf(e.p),
          baseName(e.p),
          e.size,
          e.mode,
          e.mtime,
          e.m,
          e.copies,
        );
        if (manifest) this.setManifest(e.m, manifest);
        break;
      }
      case "rm":
        this.#removeTree(e.p);
        break;
      case "attr":
        this.setAttr(e.p, e.mode, e.mtime);
        break;
      case "symlink":
        this.#mkdirs(parentOf(e.p), 0o755, e.mtime);
        this.#removeTree(e.p);
        // The target is kept in the manifest column (see entryOf).
        this.#q("INSERT INTO entries VALUES (?, ?, ?, 'l', ?, 511, ?, ?, 0)").run(
          e.p,
          parentOf(e.p),
          baseName(e.p),
          new TextEncoder().encode(e.target).length,
          e.mtime,
          e.target,
        );
        break;
      case "mv":
        this.#move(e.p, e.to, e.mtime ?? Date.now());
        break;
      case "snap": {
        const { name, job, target, root, time, files, bytes } = e;
        this.insertSnapshot({ name, job, target, root, time, files, bytes });
        if (held) this.setSnapshotHeld(e.root, held);
        break;
      }
      case "snaprm":
        this.#q("DELETE FROM snapshots WHERE name = ?").run(e.name);
        break;
      case "forget":
        this.setForgotten(e.node);
        break;
      case "copies":
        if (e.copies > 0) {
          this.#q("INSERT OR REPLACE INTO policies VALUES (?, ?)").run(e.p, e.copies);
        } else this.#q("DELETE FROM policies WHERE path = ?").run(e.p);
        break;
    }
  }

  /**
   * Keeps a copy of a metadata object (a tree, a snapshot record) the host
   * wrote or read, so that reading it again (a diff, a snapshot's files, a
   * checkpoint) costs no wire. Content-addressed: never stale; dropped with
   * the chunk's last copy.
   */
  cacheObject(id: string, data: Uint8Array): void {
    this.#q("INSERT OR IGNORE INTO objects VALUES (?, ?)").run(id, data);
  }

  /** A metadata object from the host's copy, if it has one. */
  cachedObject(id: string): Uint8Array | undefined {
    const r = this.#q("SELECT data FROM objects WHERE id = ?").get(id) as
      | { data: Uint8Array }
      | undefined;
    return r?.data;
  }

  /** Records node `node` as lost for good: its copies are forgotten with it. */
  setForgotten(node: number): void {
    this.#q("INSERT OR IGNORE INTO forgotten VALUES (?)").run(node);
    this.#q("DELETE FROM locations WHERE node = ?").run(node);
  }

  /** Nodes recorded as lost for good, ascending. */
  forgotten(): number[] {
    return (this.#q("SELECT node FROM forgotten ORDER BY node").all() as {
      node: number;
    }[]).map((r) => r.node);
  }

  /** The per-path copies rules, by path. */
  policies(): { path: string; copies: number }[] {
    return this.#q("SELECT path, copies FROM policies ORDER BY path").all() as {
      path: string;
      copies: number;
    }[];
  }

  /** Copies the nearest rule at or above `path` asks for (undefined: no rule). */
  copiesFor(path: string): number | undefined {
    const get = this.#q("SELECT copies FROM policies WHERE path = ?");
    for (let p = path;; p = parentOf(p)) {
      const r = get.get(p) as { copies: number } | undefined;
      if (r) return r.copies;
      if (p === "/") return undefined;
    }
  }

  /**
   * Records every object the snapshot `root` holds, for gc: its files'
   * manifests, and (format 2) its trees. Kept in `snap_manifests`, whose
   * rows gc keeps, with the chunks of those that are manifests.
   */
  setSnapshotHeld(root: string, held: Iterable<string>): void {
    const ins = this.#q("INSERT OR IGNORE INTO snap_manifests VALUES (?, ?)");
    for (const id of held) ins.run(root, id);
    this.#q("INSERT OR IGNORE INTO snap_known VALUES (?)").run(root);
  }

  /** Objects of live snapshots whose manifests are not recorded yet. */
  missingSnapshots(): string[] {
    return (this.#q(
      "SELECT DISTINCT s.root AS r FROM snapshots s WHERE " +
        "NOT EXISTS (SELECT 1 FROM snap_known k WHERE k.root = s.root) AND " +
        "NOT EXISTS (SELECT 1 FROM snap_manifests m WHERE m.root = s.root)",
    ).all() as { r: string }[]).map((r) => r.r);
  }

  /** Snapshots, oldest first (of one job, when given). */
  snapshots(job?: string): SnapshotRow[] {
    return (job === undefined
      ? this.#q("SELECT * FROM snapshots ORDER BY time, name").all()
      : this.#q("SELECT * FROM snapshots WHERE job = ? ORDER BY time, name").all(
        job,
      )) as unknown as SnapshotRow[];
  }

  /** One snapshot by name. */
  snapshot(name: string): SnapshotRow | undefined {
    return this.#q("SELECT * FROM snapshots WHERE name = ?").get(name) as unknown as
      | SnapshotRow
      | undefined;
  }

  /** What the sync engine stored for `path` of `job`. */
  syncCacheGet(job: string, path: string): SyncCacheRow | undefined {
    return this.#q(
      "SELECT key, size, mtime, manifest FROM sync_cache WHERE job = ? AND path = ?",
    ).get(job, path) as unknown as SyncCacheRow | undefined;
  }

  /** Remembers what the sync engine stored for `path` of `job`. */
  syncCacheSet(job: string, path: string, r: SyncCacheRow): void {
    this.#q("INSERT OR REPLACE INTO sync_cache VALUES (?, ?, ?, ?, ?, ?)").run(
      job,
      path,
      r.key,
      r.size,
      r.mtime,
      r.manifest,
    );
  }

  /** Records the chunk list of a manifest. */
  setManifest(id: string, m: Manifest): void {
    const ins = this.#q("INSERT OR REPLACE INTO manifests VALUES (?, ?, ?)");
    m.chunks.forEach(([cid], i) => ins.run(id, i, cid));
    this.#q("INSERT OR IGNORE INTO manifest_known VALUES (?)").run(id);
  }

  /** Whether the chunk list of a manifest is known. */
  hasManifest(id: string): boolean {
    return !!this.#q("SELECT 1 FROM manifests WHERE manifest = ? LIMIT 1").get(id);
  }

  /** Manifests of live files whose chunk lists are not known yet. */
  missingManifests(): string[] {
    return (this.#q(
      "SELECT DISTINCT e.manifest AS m FROM entries e WHERE e.type = 'f' AND " +
        "NOT EXISTS (SELECT 1 FROM manifest_known k WHERE k.manifest = e.manifest) AND " +
        "NOT EXISTS (SELECT 1 FROM manifests x WHERE x.manifest = e.manifest)",
    ).all() as { m: string }[]).map((r) => r.m);
  }

  #mkdirs(path: string, mode: number, mtime: number) {
    if (path === "/") return;
    const cur = this.get(path);
    if (cur) return;
    this.#mkdirs(parentOf(path), 0o755, mtime);
    this.#q("INSERT INTO entries VALUES (?, ?, ?, 'd', 0, ?, ?, NULL, 0)").run(
      path,
      parentOf(path),
      baseName(path),
      mode,
      mtime,
    );
  }

  #removeTree(path: string) {
    if (path === "/") {
      this.#q("DELETE FROM entries WHERE path != '/'").run();
      return;
    }
    this.#q("DELETE FROM entries WHERE path = ? OR path LIKE ? ESCAPE '\\'").run(
      path,
      `${escapeLike(path)}/%`,
    );
  }

  #move(from: string, to: string, mtime: number) {
    this.#removeTree(to);
    this.#mkdirs(parentOf(to), 0o755, mtime);
    for (const e of this.walk(from)) {
      const np = to + e.path.slice(from.length);
      this.#q("UPDATE entries SET path = ?, parent = ?, name = ? WHERE path = ?").run(
        np,
        parentOf(np),
        baseName(np),
        e.path,
      );
    }
  }

  // ---- chunks ----

  /** Records that `node` holds chunk `id`. */
  addLocation(id: string, size: number, node: number): void {
    this.#q("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?)").run(id, size, Date.now());
    this.#q("INSERT OR IGNORE INTO locations VALUES (?, ?)").run(id, node);
  }

  /** Forgets that `node` holds chunk `id`. */
  removeLocation(id: string, node: number): void {
    this.#q("DELETE FROM locations WHERE id = ? AND node = ?").run(id, node);
    for (const t of ["chunks", "objects"]) {
      this.#q(
        `DELETE FROM ${t} WHERE id = ? AND NOT EXISTS (SELECT 1 FROM locations WHERE id = ?)`,
      ).run(id, id);
    }
  }

  /** Forgets every location on `node` (before re-listing it). */
  clearNode(node: number): void {
    this.#q("DELETE FROM locations WHERE node = ?").run(node);
  }

  /** Nodes that hold chunk `id`. */
  locations(id: string): number[] {
    return (this.#q("SELECT node FROM locations WHERE id = ? ORDER BY node").all(id) as {
      node: number;
    }[]).map((r) => r.node);
  }

  /** Size of a known chunk. */
  chunkSize(id: string): number | undefined {
    const r = this.#q("SELECT size FROM chunks WHERE id = ?").get(id) as
      | { size: number }
      | undefined;
    return r?.size;
  }

  /**
   * Chunks that no live file references (neither as data nor as its
   * manifest), no live snapshot holds and that are not an object of the
   * current checkpoint, first seen before `before` (ms).
   */
  unreferenced(before: number): { id: string; nodes: number[] }[] {
    // Live files and snapshots both hold their manifests and chunks.
    const rows = this.#q(
      "WITH held(m) AS (SELECT manifest FROM entries WHERE type = 'f' " +
        "UNION SELECT sm.manifest FROM snap_manifests sm JOIN snapshots s ON s.root = sm.root) " +
        "SELECT c.id AS id FROM chunks c WHERE c.seen < ? " +
        "AND NOT EXISTS (SELECT 1 FROM held h WHERE h.m = c.id) " +
        "AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.root = c.id) " +
        "AND NOT EXISTS (SELECT 1 FROM ckpt_objects k WHERE k.id = c.id) " +
        "AND NOT EXISTS (SELECT 1 FROM manifests m JOIN held h ON h.m = m.manifest " +
        "WHERE m.id = c.id)",
    ).all(before) as { id: string }[];
    return rows.map((r) => ({ id: r.id, nodes: this.locations(r.id) }));
  }

  /**
   * Every chunk something still needs, with the copies it should have: a
   * live file's manifest and data (the file's copies), a live snapshot's
   * object, manifests and data, and the current checkpoint's objects (0:
   * the cluster's default).
   */
  referenced(): { id: string; copies: number }[] {
    return this.#q(
      "WITH files(m, r) AS (SELECT manifest, copies FROM entries WHERE type = 'f'), " +
        "snaps(m) AS (SELECT sm.manifest FROM snap_manifests sm JOIN snapshots s ON s.root = sm.root), " +
        "refs(id, r) AS (SELECT m, r FROM files " +
        "UNION ALL SELECT mm.id, f.r FROM manifests mm JOIN files f ON f.m = mm.manifest " +
        "UNION ALL SELECT root, 0 FROM snapshots " +
        "UNION ALL SELECT m, 0 FROM snaps " +
        "UNION ALL SELECT mm.id, 0 FROM manifests mm JOIN snaps ON snaps.m = mm.manifest " +
        "UNION ALL SELECT id, 0 FROM ckpt_objects) " +
        "SELECT id, MAX(r) AS copies FROM refs WHERE id IS NOT NULL GROUP BY id ORDER BY id",
    ).all() as { id: string; copies: number }[];
  }

  /** Bytes and chunks referenced by live files under `dir`: logical and unique. */
  usage(dir: string): { files: number; bytes: number } {
    const files = this.walk(dir).filter((e) => e.type === "f");
    return { files: files.length, bytes: files.reduce((a, e) => a + e.size, 0) };
  }
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => "\\" + c);
}
