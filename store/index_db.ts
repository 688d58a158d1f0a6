/**
 * The host's index: a SQLite cache (Deno's `node:sqlite`) of the namespace,
 * the chunks and where their copies are. Everything in it can be rebuilt from
 * the cards (`pifs attach`): it is never the only copy of anything.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { baseName, type JournalEntry, type Manifest, parentOf } from "./namespace.ts";

/** One file or directory of the namespace. */
export interface Entry {
  /** Absolute path. */
  path: string;
  /** "f" file, "d" directory. */
  type: "f" | "d";
  /** Bytes (0 for a directory). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, ms since the epoch. */
  mtime: number;
  /** Manifest chunk id (files). */
  manifest: string | null;
  /** Copies kept of each chunk (files). */
  copies: number;
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
`;

/** The index of one cluster. */
export class Index {
  #db: DatabaseSync;

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
    const r = this.#db.prepare("SELECT v FROM meta WHERE k = ?").get(k) as
      | { v: string }
      | undefined;
    return r?.v;
  }

  /** Sets a metadata value. */
  setMeta(k: string, v: string): void {
    this.#db.prepare("INSERT OR REPLACE INTO meta VALUES (?, ?)").run(k, v);
  }

  /** Sequence number of the last journal entry applied (0 for none). */
  lastSeq(): number {
    const r = this.#db.prepare("SELECT max(s) AS s FROM journal").get() as { s: number | null };
    return r.s ?? 0;
  }

  /** The journal entries applied, from `from` on. */
  journal(from = 1): JournalEntry[] {
    return (this.#db.prepare("SELECT entry FROM journal WHERE s >= ? ORDER BY s").all(from) as {
      entry: string;
    }[]).map((r) => JSON.parse(r.entry));
  }

  // ---- namespace ----

  /** The entry at a normalised path. */
  get(path: string): Entry | undefined {
    const r = this.#db.prepare(
      "SELECT path, type, size, mode, mtime, manifest, copies FROM entries WHERE path = ?",
    ).get(path) as Entry | undefined;
    return r ? { ...r } : undefined;
  }

  /** The children of a directory, by name. */
  list(dir: string): Entry[] {
    return (this.#db.prepare(
      "SELECT path, type, size, mode, mtime, manifest, copies FROM entries WHERE parent = ? ORDER BY name",
    ).all(dir) as unknown as Entry[]).map((r) => ({ ...r }));
  }

  /** Every entry under (and including) `dir`, in path order. */
  walk(dir: string): Entry[] {
    const like = dir === "/" ? "/%" : `${escapeLike(dir)}/%`;
    return (this.#db.prepare(
      "SELECT path, type, size, mode, mtime, manifest, copies FROM entries " +
        "WHERE path = ? OR path LIKE ? ESCAPE '\\' ORDER BY path",
    ).all(dir, like) as unknown as Entry[]).map((r) => ({ ...r }));
  }

  /**
   * Applies one journal entry (in sequence order). `manifest` gives the
   * chunk list of a `put`'s manifest.
   */
  apply(e: JournalEntry, manifest?: Manifest): void {
    if (e.s !== this.lastSeq() + 1) {
      throw new Error(`journal entry ${e.s} applied after ${this.lastSeq()}`);
    }
    this.#db.prepare("INSERT INTO journal VALUES (?, ?)").run(e.s, JSON.stringify(e));
    switch (e.op) {
      case "mkdir":
        this.#mkdirs(e.p, e.mode, e.mtime);
        break;
      case "put": {
        this.#mkdirs(parentOf(e.p), 0o755, e.mtime);
        this.#removeTree(e.p);
        this.#db.prepare("INSERT INTO entries VALUES (?, ?, ?, 'f', ?, ?, ?, ?, ?)").run(
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
      case "mv":
        this.#move(e.p, e.to);
        break;
    }
  }

  /** Records the chunk list of a manifest. */
  setManifest(id: string, m: Manifest): void {
    const ins = this.#db.prepare("INSERT OR REPLACE INTO manifests VALUES (?, ?, ?)");
    m.chunks.forEach(([cid], i) => ins.run(id, i, cid));
  }

  /** Whether the chunk list of a manifest is known. */
  hasManifest(id: string): boolean {
    return !!this.#db.prepare("SELECT 1 FROM manifests WHERE manifest = ? LIMIT 1").get(id);
  }

  /** Manifests of live files whose chunk lists are not known yet. */
  missingManifests(): string[] {
    return (this.#db.prepare(
      "SELECT DISTINCT e.manifest AS m FROM entries e WHERE e.type = 'f' AND " +
        "NOT EXISTS (SELECT 1 FROM manifests x WHERE x.manifest = e.manifest)",
    ).all() as { m: string }[]).map((r) => r.m);
  }

  #mkdirs(path: string, mode: number, mtime: number) {
    if (path === "/") return;
    const cur = this.get(path);
    if (cur) return;
    this.#mkdirs(parentOf(path), 0o755, mtime);
    this.#db.prepare("INSERT INTO entries VALUES (?, ?, ?, 'd', 0, ?, ?, NULL, 0)").run(
      path,
      parentOf(path),
      baseName(path),
      mode,
      mtime,
    );
  }

  #removeTree(path: string) {
    if (path === "/") {
      this.#db.prepare("DELETE FROM entries WHERE path != '/'").run();
      return;
    }
    this.#db.prepare("DELETE FROM entries WHERE path = ? OR path LIKE ? ESCAPE '\\'").run(
      path,
      `${escapeLike(path)}/%`,
    );
  }

  #move(from: string, to: string) {
    this.#removeTree(to);
    this.#mkdirs(parentOf(to), 0o755, Date.now());
    for (const e of this.walk(from)) {
      const np = to + e.path.slice(from.length);
      this.#db.prepare("UPDATE entries SET path = ?, parent = ?, name = ? WHERE path = ?").run(
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
    this.#db.prepare("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?)").run(id, size, Date.now());
    this.#db.prepare("INSERT OR IGNORE INTO locations VALUES (?, ?)").run(id, node);
  }

  /** Forgets that `node` holds chunk `id`. */
  removeLocation(id: string, node: number): void {
    this.#db.prepare("DELETE FROM locations WHERE id = ? AND node = ?").run(id, node);
    this.#db.prepare(
      "DELETE FROM chunks WHERE id = ? AND NOT EXISTS (SELECT 1 FROM locations WHERE id = ?)",
    ).run(id, id);
  }

  /** Forgets every location on `node` (before re-listing it). */
  clearNode(node: number): void {
    this.#db.prepare("DELETE FROM locations WHERE node = ?").run(node);
  }

  /** Nodes that hold chunk `id`. */
  locations(id: string): number[] {
    return (this.#db.prepare("SELECT node FROM locations WHERE id = ? ORDER BY node").all(id) as {
      node: number;
    }[]).map((r) => r.node);
  }

  /** Size of a known chunk. */
  chunkSize(id: string): number | undefined {
    const r = this.#db.prepare("SELECT size FROM chunks WHERE id = ?").get(id) as
      | { size: number }
      | undefined;
    return r?.size;
  }

  /**
   * Chunks that no live file references (neither as data nor as its
   * manifest), first seen before `before` (ms).
   */
  unreferenced(before: number): { id: string; nodes: number[] }[] {
    const rows = this.#db.prepare(
      "SELECT c.id AS id FROM chunks c WHERE c.seen < ? " +
        "AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.manifest = c.id) " +
        "AND NOT EXISTS (SELECT 1 FROM manifests m JOIN entries e ON e.manifest = m.manifest " +
        "WHERE m.id = c.id)",
    ).all(before) as { id: string }[];
    return rows.map((r) => ({ id: r.id, nodes: this.locations(r.id) }));
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
