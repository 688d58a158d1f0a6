/**
 * The cluster as one store: chunks replicated on R distinct Pis, a namespace
 * kept as a journal on the Pis, and the host's index as a cache of both.
 *
 * @module
 */
import { chunkId, type NodeClient, type NodeInfo } from "../link/client.ts";
import { MAX_DATA } from "../link/codec.ts";
import { type ClusterFile, connectNode, type NodeEntry, readClusterFile } from "./cluster.ts";
import { Index } from "./index_db.ts";
import {
  decodeJournal,
  decodeManifest,
  decodeSnapshot,
  encodeEntry,
  encodeManifest,
  type JournalEntry,
  type Manifest,
  type SnapshotObject,
} from "./namespace.ts";
import { type PlacementNode, rankNodes } from "./placement.ts";

/** Bytes per chunk when files are cut into fixed-size pieces (content-defined chunking: `pifs sync`). */
export const CHUNK_SIZE = 256 * 1024;

/** Too few nodes answer for the copies or the journal quorum asked for. */
export class QuorumError extends Error {
  /** The error's name. */
  override name = "QuorumError";
}

/** Options of {@linkcode Store.open}. */
export interface StoreOptions {
  /** Copies of each chunk (default 2, at most the number of nodes). */
  copies?: number;
  /** Accept fewer copies than asked when nodes are down (recorded for repair). */
  degraded?: boolean;
  /** Base timeout of a node's answer in ms (default 800, plus the line time of what is in flight). */
  timeoutMs?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/** One node as the store sees it. */
export interface NodeState {
  /** Its entry in cluster.json. */
  entry: NodeEntry;
  /** A session, while it answers. */
  client?: NodeClient;
  /** What it reported at open. */
  info?: NodeInfo;
  /** Why it is down. */
  error?: string;
  /** Bytes of its journal. */
  journalLength: number;
}

/** What a put did. */
export interface PutStats {
  /** Files stored. */
  files: number;
  /** Bytes read from local files. */
  bytesRead: number;
  /** Chunks sent to at least one node. */
  chunksNew: number;
  /** Chunks already stored with enough copies. */
  chunksDeduplicated: number;
}

interface QueuedEntry {
  entry: DistributiveOmit<JournalEntry, "s">;
  manifest?: Manifest;
  snapshot?: SnapshotObject;
  resolve: () => void;
  reject: (e: unknown) => void;
}

class Semaphore {
  #free: number;
  #waiters: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#free === 0) await new Promise<void>((r) => this.#waiters.push(r));
    this.#free--;
    try {
      return await fn();
    } finally {
      this.#free++;
      this.#waiters.shift()?.();
    }
  }
}

/** The cluster in `dir`, opened. Close it when done. */
export class Store {
  /** The cluster directory. */
  readonly dir: string;
  /** Its description. */
  readonly cluster: ClusterFile;
  /** Copies of each chunk of a new file at `path`: `--copies` when given, else
   * the nearest per-path rule (`pifs copies`), else the default (2), at most
   * the number of nodes. */
  copiesFor(path: string): number {
    if (this.#opts.copies !== undefined) return this.copies;
    return Math.min(this.index.copiesFor(path) ?? this.copies, this.nodes.size);
  }

  /** The host's index. */
  readonly index: Index;
  /** The nodes by id. */
  readonly nodes: Map<number, NodeState>;
  /** Copies per chunk. */
  readonly copies: number;
  #opts: StoreOptions;
  #slots = new Map<number, Semaphore>();
  #queue: QueuedEntry[] = [];
  #committing = false;
  #storing = new Map<string, Promise<{ id: string; nodes: number[]; sent: boolean }>>();
  /** Bytes this host wrote to all links. */
  get wireBytes(): number {
    let n = 0;
    for (const s of this.nodes.values()) n += s.client?.bytesWritten ?? 0;
    return n;
  }

  private constructor(dir: string, cluster: ClusterFile, index: Index, opts: StoreOptions) {
    this.dir = dir;
    this.cluster = cluster;
    this.index = index;
    this.#opts = opts;
    this.nodes = new Map(cluster.nodes.map((e) => [e.id, { entry: e, journalLength: 0 }]));
    this.copies = Math.min(opts.copies ?? 2, cluster.nodes.length);
    // Up to 3 chunks in progress per node (the node holds 4 pending puts).
    for (const n of cluster.nodes) this.#slots.set(n.id, new Semaphore(3));
  }

  /**
   * Opens the cluster in `dir`: connects to every node (those that do not
   * answer are marked down), opens the index (`dir/index.db`, rebuilt from
   * the cards when missing) and brings it and every node's journal up to
   * date.
   */
  static async open(dir: string, opts: StoreOptions = {}): Promise<Store> {
    const cluster = await readClusterFile(dir);
    const path = `${dir}/index.db`;
    const fresh = !(await Deno.stat(path).then(() => true, () => false));
    const s = new Store(dir, cluster, Index.open(path), opts);
    if ((opts.copies ?? 2) > cluster.nodes.length) {
      await s.close();
      throw new QuorumError(
        `--copies ${opts.copies}: the cluster has only ${cluster.nodes.length} nodes`,
      );
    }
    try {
      await s.#connectAll();
      if (fresh) opts.log?.("no index on this host: rebuilding it from the cards");
      await s.#syncJournal(fresh);
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  async #connectAll() {
    await Promise.all([...this.nodes.values()].map(async (st) => {
      try {
        st.client = await connectNode(this.dir, this.cluster, st.entry, {
          // A node that is down costs a few short HELLOs, not a long wait;
          // one that answered gets the usual patience with a slow line.
          timeoutMs: this.#opts.timeoutMs ?? 800,
          helloRetries: 3,
        });
        st.info = await st.client.info();
        if (st.info.status !== 0) throw new Error(`card: status ${st.info.status}`);
        if (st.info.clusterId !== this.cluster.cluster_id) {
          throw new Error(`card belongs to cluster ${st.info.clusterId}`);
        }
        if (st.info.nodeId !== st.entry.id) {
          // A stale tty path now leading to another node: never talk to it as this one.
          throw new Error(`${st.entry.tty} answers as node ${st.info.nodeId}`);
        }
        st.journalLength = st.info.journalLength;
      } catch (e) {
        st.error = (e as Error).message;
        await st.client?.close().catch(() => {});
        st.client = undefined;
      }
    }));
  }

  /** Nodes that answer. */
  up(): NodeState[] {
    return [...this.nodes.values()].filter((s) => s.client);
  }

  /** The node's session; it may have gone down while a request waited its turn. */
  #client(st: NodeState): NodeClient {
    if (!st.client) throw new Error(`node ${st.entry.id} is down (${st.error})`);
    return st.client;
  }

  #markDown(st: NodeState, e: unknown) {
    if (!st.client) return; // already down
    st.error = (e as Error).message ?? String(e);
    this.#opts.log?.(`node ${st.entry.id} is down: ${st.error}`);
    const c = st.client;
    st.client = undefined;
    c?.close().catch(() => {});
  }

  /** Journal quorum: a majority of the cluster's nodes, and at least R. */
  quorum(): number {
    return Math.max(Math.floor(this.nodes.size / 2) + 1, this.copies);
  }

  // ---- journal ----

  /** Bytes of the journal the index has applied. */
  #appliedBytes(): number {
    return Number(this.index.meta("journal_bytes") ?? "0");
  }

  async #syncJournal(rebuild: boolean) {
    const up = this.up();
    if (up.length === 0) throw new QuorumError("no node answers");
    // The longest journal holds every committed entry (single writer: the
    // journals are prefixes of one sequence).
    const longest = up.reduce((a, b) => (b.journalLength > a.journalLength ? b : a));
    const applied = this.#appliedBytes();
    if (longest.journalLength > applied) {
      const tail = await longest.client!.journalRead(applied);
      const entries = decodeJournal(tail, this.index.lastSeq() + 1);
      for (const e of entries) {
        const m = e.op === "put" ? await this.#fetchManifest(e.m) : undefined;
        const snap = e.op === "snap" ? await this.snapshotObject(e.root) : undefined;
        this.index.tx(() => {
          this.index.apply(e, m, snap);
          this.index.setMeta(
            "journal_bytes",
            String(this.#appliedBytes() + encodeEntry(e).length),
          );
        });
      }
    }
    if (rebuild) await this.#relist();
    await this.#catchUp();
  }

  /** Re-learns where every chunk is, from each answering node's LIST. */
  relist(): Promise<void> {
    return this.#relist();
  }

  async #relist() {
    for (const st of this.up()) {
      const list = await st.client!.listChunks();
      this.index.tx(() => {
        this.index.clearNode(st.entry.id);
        for (const c of list) this.index.addLocation(c.id, c.size, st.entry.id);
      });
    }
  }

  /** Appends to each answering node the entries its journal lacks. */
  async #catchUp() {
    const applied = this.#appliedBytes();
    for (const st of this.up()) {
      if (st.journalLength >= applied) continue;
      let len = st.journalLength;
      // Entries are whole records: find the first one the node lacks.
      let off = 0;
      for (const e of this.index.journal()) {
        const b = encodeEntry(e);
        if (off >= len) {
          try {
            len = await st.client!.journalAppend(len, b);
          } catch (err) {
            this.#markDown(st, err);
            break;
          }
        }
        off += b.length;
      }
      st.journalLength = len;
    }
  }

  /** Reads a snapshot object by its id. */
  async snapshotObject(id: string): Promise<SnapshotObject> {
    return decodeSnapshot(await this.getChunk(id), id);
  }

  async #fetchManifest(id: string): Promise<Manifest> {
    const bytes = await this.getChunk(id);
    return decodeManifest(bytes, id);
  }

  /**
   * Appends an entry to the journals of a quorum of nodes, then applies it
   * to the index. Throws {@linkcode QuorumError} if too few nodes took it.
   */
  commit(
    entry: DistributiveOmit<JournalEntry, "s">,
    manifest?: Manifest,
    snapshot?: SnapshotObject,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ entry, manifest, snapshot, resolve, reject });
      if (!this.#committing) this.#drain();
    });
  }

  // Group commit: entries that wait while an append is on the line go out
  // together in the next one (up to one frame), so many small files cost a
  // round trip per batch, not per file. Entries stay whole JSON lines, so a
  // journal reads the same however it was batched.
  async #drain() {
    this.#committing = true;
    while (this.#queue.length) {
      const batch: { q: QueuedEntry; e: JournalEntry; b: Uint8Array }[] = [];
      let size = 0;
      let seq = this.index.lastSeq() + 1;
      while (this.#queue.length) {
        const q = this.#queue[0];
        const e = { ...q.entry, s: seq } as JournalEntry;
        const b = encodeEntry(e);
        if (batch.length && size + b.length > MAX_DATA) break;
        batch.push({ q, e, b });
        size += b.length;
        seq++;
        this.#queue.shift();
      }
      try {
        await this.#append(
          batch.map((x) => x.e),
          batch.map((x) => x.b),
          batch.map((x) => x.q.manifest),
          batch.map((x) => x.q.snapshot),
        );
        for (const x of batch) x.q.resolve();
      } catch (err) {
        for (const x of batch) x.q.reject(err);
      }
    }
    this.#committing = false;
  }

  async #append(
    entries: JournalEntry[],
    lines: Uint8Array[],
    manifests: (Manifest | undefined)[],
    snapshots: (SnapshotObject | undefined)[],
  ) {
    const bytes = new Uint8Array(lines.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const b of lines) bytes.set(b, o), o += b.length;
    const applied = this.#appliedBytes();
    const up = this.up();
    let ok = 0;
    const what = entries.length === 1
      ? `journal entry ${entries[0].s} (${entries[0].op} ${
        "p" in entries[0] ? entries[0].p : entries[0].name
      })`
      : `journal entries ${entries[0].s}..${entries[entries.length - 1].s}`;
    await Promise.all(up.map(async (st) => {
      try {
        if (st.journalLength !== applied) return; // behind: caught up later
        st.journalLength = await st.client!.journalAppend(applied, bytes);
        ok++;
      } catch (err) {
        // A node that answered with an error (its journal differs, it is
        // full) is not down: it just does not count towards the quorum.
        if ((err as Error).name === "NodeError") {
          this.#opts.log?.(`node ${st.entry.id}: ${what} refused: ${(err as Error).message}`);
        } else this.#markDown(st, err);
      }
    }));
    if (ok < this.quorum()) {
      throw new QuorumError(
        `${what} reached ${ok} of ${this.nodes.size} nodes; ` +
          `${this.quorum()} needed (down: ${this.#downList()})`,
      );
    }
    this.index.tx(() => {
      entries.forEach((e, i) => this.index.apply(e, manifests[i], snapshots[i]));
      this.index.setMeta("journal_bytes", String(applied + bytes.length));
    });
  }

  #downList(): string {
    const d = [...this.nodes.values()].filter((s) => !s.client);
    return d.length ? d.map((s) => `${s.entry.id} (${s.error})`).join(", ") : "none";
  }

  // ---- chunks ----

  #weights(): PlacementNode[] {
    return [...this.nodes.values()].map((s) => ({
      id: s.entry.id,
      weight: Math.max(1, s.info?.capacity ?? 1),
    }));
  }

  /**
   * Stores a chunk on R distinct nodes (placement order, skipping nodes that
   * are down); resolves once R copies are committed. Returns whether any
   * bytes were sent.
   */
  async storeChunk(
    data: Uint8Array,
    opts: { id?: string; copies?: number } = {},
  ): Promise<{ id: string; nodes: number[]; sent: boolean }> {
    const id = opts.id ?? await chunkId(data);
    const copies = opts.copies ?? this.copies;
    // The same chunk already on its way (two files sharing it): wait for it.
    const running = this.#storing.get(id);
    if (running) {
      await running.catch(() => {});
      if (this.index.locations(id).length >= copies) {
        return { id, nodes: this.index.locations(id), sent: false };
      }
    }
    const p = this.#storeChunk(id, data, copies);
    this.#storing.set(id, p);
    try {
      return await p;
    } finally {
      if (this.#storing.get(id) === p) this.#storing.delete(id);
    }
  }

  async #storeChunk(
    id: string,
    data: Uint8Array,
    copies: number,
  ): Promise<{ id: string; nodes: number[]; sent: boolean }> {
    const have = this.index.locations(id);
    if (have.length >= copies) return { id, nodes: have, sent: false };
    const ranked = rankNodes(id, this.#weights());
    const holders = new Set(have);
    const tried = new Set<number>();
    let sent = false;
    // The copies go out in parallel, to the best-ranked nodes that answer;
    // a node that fails hands its copy to the next one in rank.
    while (holders.size < copies) {
      const targets = ranked.filter((nid) =>
        !holders.has(nid) && !tried.has(nid) && this.nodes.get(nid)!.client
      ).slice(0, copies - holders.size);
      if (targets.length === 0) break;
      await Promise.all(targets.map(async (nid) => {
        tried.add(nid);
        const st = this.nodes.get(nid)!;
        try {
          const r = await this.#slots.get(nid)!.run(() => this.#client(st).putChunk(data, { id }));
          if (!r.existed) sent = true;
          this.index.addLocation(id, data.length, nid);
          holders.add(nid);
        } catch (e) {
          if ((e as Error).name === "NodeError") throw e; // the node said no: full, bad data
          this.#markDown(st, e);
        }
      }));
    }
    if (holders.size < copies && !(this.#opts.degraded && holders.size > 0)) {
      throw new QuorumError(
        `chunk ${
          id.slice(0, 12)
        }: ${holders.size} of ${copies} copies stored (down: ${this.#downList()})`,
      );
    }
    return { id, nodes: [...holders], sent };
  }

  /** Reads a chunk from any node that holds it (hash checked). */
  async getChunk(id: string): Promise<Uint8Array> {
    let nodes = this.index.locations(id);
    if (nodes.length === 0) nodes = rankNodes(id, this.#weights()); // not indexed yet: ask
    const errors: string[] = [];
    for (const nid of nodes) {
      const st = this.nodes.get(nid);
      if (!st?.client) continue;
      try {
        return await this.#slots.get(nid)!.run(() => this.#client(st).getChunk(id));
      } catch (e) {
        errors.push(`node ${nid}: ${(e as Error).message}`);
        if ((e as Error).name !== "NodeError") this.#markDown(st, e);
      }
    }
    throw new QuorumError(
      `chunk ${id.slice(0, 12)}: no answering node has it${
        errors.length ? ` (${errors.join("; ")})` : ""
      }`,
    );
  }

  // ---- files ----

  /**
   * Stores bytes from `source` as the file `path` (chunks first, then the
   * manifest, then the journal entry: a file is visible only whole).
   */
  async putStream(
    path: string,
    source: ReadableStream<Uint8Array>,
    meta: { mode: number; mtime: number; copies?: number; onBytes?: (n: number) => void },
    stats?: PutStats,
  ): Promise<Manifest> {
    const copies = meta.copies ?? this.copies;
    const chunks: [string, number][] = [];
    const inflight: Promise<void>[] = [];
    const limit = Math.max(2, 2 * this.up().length);
    let size = 0;
    let failure: unknown;
    const flush = async (buf: Uint8Array) => {
      const idx = chunks.length;
      chunks.push(["", buf.length]);
      size += buf.length;
      if (stats) stats.bytesRead += buf.length;
      const p = (async () => {
        const r = await this.storeChunk(buf, { copies });
        chunks[idx][0] = r.id;
        if (stats) r.sent ? stats.chunksNew++ : stats.chunksDeduplicated++;
        meta.onBytes?.(buf.length);
      })().catch((e) => {
        failure ??= e;
      });
      inflight.push(p);
      if (inflight.length >= limit) await inflight[inflight.length - limit];
      if (failure) throw failure;
    };
    let pending = new Uint8Array(CHUNK_SIZE);
    let fill = 0;
    for await (const piece of source) {
      let off = 0;
      while (off < piece.length) {
        const k = Math.min(CHUNK_SIZE - fill, piece.length - off);
        pending.set(piece.subarray(off, off + k), fill);
        fill += k;
        off += k;
        if (fill === CHUNK_SIZE) {
          await flush(pending);
          pending = new Uint8Array(CHUNK_SIZE);
          fill = 0;
        }
      }
    }
    if (fill > 0 || chunks.length === 0) {
      if (fill > 0) await flush(pending.slice(0, fill));
    }
    await Promise.all(inflight);
    if (failure) throw failure;
    const manifest: Manifest = { v: 1, size, chunks };
    const mbytes = encodeManifest(manifest);
    const m = await this.storeChunk(mbytes, { copies });
    this.index.setManifest(m.id, manifest);
    await this.commit({
      op: "put",
      p: path,
      m: m.id,
      size,
      mode: meta.mode,
      mtime: meta.mtime,
      copies,
    }, manifest);
    if (stats) stats.files++;
    return manifest;
  }

  /** The chunk list of a file's manifest. */
  async manifestOf(manifestId: string): Promise<Manifest> {
    return await this.#fetchManifest(manifestId);
  }

  /** The bytes of a file, chunk by chunk, with a few chunks read ahead. */
  fileStream(manifest: Manifest): ReadableStream<Uint8Array> {
    let i = 0;
    const ahead: Promise<Uint8Array>[] = [];
    const depth = Math.max(2, this.up().length);
    return new ReadableStream<Uint8Array>({
      pull: async (ctl) => {
        while (ahead.length < depth && i < manifest.chunks.length) {
          const [id, size] = manifest.chunks[i++];
          const p = this.getChunk(id).then((b) => {
            if (b.length !== size) {
              throw new Error(`chunk ${id}: ${b.length} bytes, expected ${size}`);
            }
            return b;
          });
          p.catch(() => {});
          ahead.push(p);
        }
        if (ahead.length === 0) return ctl.close();
        ctl.enqueue(await ahead.shift()!);
      },
    });
  }

  /** Ends every session and closes the index. */
  async close(): Promise<void> {
    await Promise.all(this.up().map((s) => s.client!.close().catch(() => {})));
    this.index.close();
  }
}

/** Omit over each member of a union. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
