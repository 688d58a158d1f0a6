/**
 * The cluster as one store: chunks replicated on R distinct Pis, a namespace
 * kept as a journal on the Pis, and the host's index as a cache of both.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { chunkId } from "../ids.ts";
import { NodeClient, NodeError, type NodeInfo } from "../link/client.ts";
import { MAX_DATA, ProtocolError, Status } from "../link/codec.ts";
import { type SerialPort, tryLockFile } from "../link/serial.ts";
import { type ClusterFile, type NodeEntry, openNodePort, readClusterFile } from "./cluster.ts";
import { type CheckpointRow, type Entry, Index } from "./index_db.ts";
import {
  canZip,
  type CheckpointObject,
  checkWritable,
  decodeCheckpoint,
  decodeJournal,
  decodeManifest,
  decodeSnapshot,
  type DistributiveOmit,
  encodeEntry,
  encodeManifest,
  encodeObject,
  entryPaths,
  type JournalEntry,
  JournalError,
  type Manifest,
  parentOf,
  type SnapshotObject,
  zipEntries,
} from "./namespace.ts";
import { buildTrees, entryOf, pool, readTreeAll } from "./trees.ts";
import { objectId } from "../ids.ts";
import { inSnapshots, type NamespaceView, snapshotContents, SnapshotView } from "./snapshots.ts";
import { type PlacementNode, rankNodes } from "./placement.ts";

/** Bytes per chunk when files are cut into fixed-size pieces (content-defined chunking: `pifs sync`). */
export const CHUNK_SIZE = 256 * 1024;

/**
 * A checkpoint is written automatically after a commit once this many
 * journal entries were applied since the last one (`StoreOptions.checkpointEntries`,
 * environment `PIFS_CHECKPOINT_ENTRIES`; 0: never automatically).
 */
export const CHECKPOINT_ENTRIES = 1000;
/**
 * A node with this many bytes of chunk copies queued (about 11 s of a
 * 115200-baud line) is busy enough that a journal append may skip it while
 * a quorum of the others takes it (`StoreOptions.lazyJournalBytes`). The
 * busiest Pi paces a put, and the journal goes to every node that takes it:
 * at 8 Pis and 32 KiB files, about 2 % of a Pi's line.
 */
export const LAZY_JOURNAL_BYTES = 128 * 1024;
/**
 * … or once the journal grew by this many bytes since the last one
 * (`StoreOptions.checkpointBytes`, environment `PIFS_CHECKPOINT_BYTES`; 0: no byte limit).
 */
export const CHECKPOINT_BYTES = 512 * 1024;

/**
 * Bytes per append of the background catch-up (whole lines; a longer line
 * alone): what a commit or a close may wait for, 0.18 s of a 115200-baud
 * line, against 1.4 s for a full frame.
 */
const CATCH_UP_PART = 2048;

/** Bytes of a file's chunks `fileStream` reads ahead, at most (beyond the one it waits for). */
export const READ_AHEAD_BYTES = 32 * 1024 * 1024;

/** Too few nodes answer for the copies or the journal quorum asked for. */
export class QuorumError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "QUORUM";
  /** The error's name. */
  override name = "QuorumError";
}

/**
 * Nodes answered that their cards are full (ENOSPC): they are up, and named
 * in {@linkcode NoSpaceError.nodes}; what could not be stored is in the message.
 */
export class NoSpaceError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "ENOSPC";
  /** The error's name. */
  override name = "NoSpaceError";
  /** The ids of the nodes that said their card is full. */
  readonly nodes: number[];
  /** `message` names what was not stored; `nodes` the full nodes. */
  constructor(message: string, nodes: number[], options?: ErrorOptions) {
    super(message, options);
    this.nodes = nodes;
  }
}

/** Another program (another pifs command) holds some of the cluster's serial lines. */
export class ClusterBusyError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "CLUSTER_BUSY";
  /** The error's name. */
  override name = "ClusterBusyError";
  /** The cluster directory. */
  readonly dir: string;
  /** The cluster in `dir` is busy. */
  constructor(message: string, dir = "") {
    super(message);
    this.dir = dir;
  }
}

/**
 * Takes the cluster's lock (an exclusive `flock` on `DIR/lines.lock`): one
 * pifs command at a time drives a cluster's lines. Waits up to `waitMs`,
 * refreshing `DIR/lines.waiting` meanwhile (long background work such as a
 * rebalance sees it and stops early to let this command run); then throws
 * {@linkcode ClusterBusyError}.
 */
export async function lockCluster(dir: string, waitMs = 0): Promise<{ release(): void }> {
  const lockPath = `${dir}/lines.lock`;
  await Deno.writeFile(lockPath, new Uint8Array(), { append: true });
  const end = Date.now() + waitMs;
  const waiting = `${dir}/lines.waiting`;
  let waited = false;
  try {
    for (;;) {
      const lock = tryLockFile(lockPath);
      if (lock) return lock;
      if (Date.now() >= end) {
        throw new ClusterBusyError(
          `another pifs command is using this cluster (${lockPath}); wait for it to finish`,
          dir,
        );
      }
      await Deno.writeTextFile(waiting, `${Deno.pid}\n`);
      waited = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    if (waited) {
      const who = await Deno.readTextFile(waiting).catch(() => "");
      if (who === `${Deno.pid}\n`) await Deno.remove(waiting).catch(() => {});
    }
  }
}

/** Options of {@linkcode Store.open}. */
export interface StoreOptions {
  /** How long to wait for another program to let go of the serial lines (ms, default 0). */
  busyWaitMs?: number;
  /** Copies of each chunk (default 2, at most the number of nodes). */
  copies?: number;
  /** Accept fewer copies than asked when nodes are down (recorded for repair). */
  degraded?: boolean;
  /** Base timeout of a node's answer in ms (default 800, plus the line time of what is in flight). */
  timeoutMs?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
  /** Entries since the last checkpoint that trigger one after a commit (default {@linkcode CHECKPOINT_ENTRIES}; 0: never). */
  checkpointEntries?: number;
  /** Journal bytes since the last checkpoint that trigger one (default {@linkcode CHECKPOINT_BYTES}; 0: no limit). */
  checkpointBytes?: number;
  /**
   * Only read: the nodes' journals are not brought up to date, and every
   * write (a commit, a chunk) is refused with {@linkcode ReadOnlyError}.
   * `pifs recover` opens card images this way.
   */
  readOnly?: boolean;
  /**
   * Pack runs of entries committed together into one deflated journal line
   * ({@linkcode ZipEntry}; default true). Off, every entry is a plain line,
   * as hosts before packing wrote them (both kinds read back the same).
   */
  zipJournal?: boolean;
  /**
   * Lazy followers: a journal append skips the answering nodes with at
   * least this many bytes of chunk copies queued (the busiest first), as
   * many as the quorum can spare; they catch up at the next checkpoint or
   * open, or at once when the others fall short of the quorum (default
   * {@linkcode LAZY_JOURNAL_BYTES}; 0: every append goes to every node).
   */
  lazyJournalBytes?: number;
}

/** A namespace operation (mkdir, rm, mv, ...) that its rules refuse. */
export class NamespaceError extends PifsError {
  /** Which rule refused it: `ENOENT`, `EEXIST`, `ENOTDIR`, `EISDIR`, `ENOTEMPTY` or `EINVAL`. */
  override readonly code: string;
  /** The error's name. */
  override name = "NamespaceError";
  /** Like a bad argument: the CLI exits with 2. */
  override readonly exitCode: number = 2;
  /**
   * A namespace operation refused by its rules; `code` says which, as the
   * POSIX errno a file system would give: `ENOENT`, `EEXIST`, `ENOTDIR`,
   * `EISDIR`, `ENOTEMPTY` or `EINVAL`.
   */
  constructor(
    message: string,
    code: "ENOENT" | "EEXIST" | "ENOTDIR" | "EISDIR" | "ENOTEMPTY" | "EINVAL",
  ) {
    super(message);
    this.code = code;
  }
}

/**
 * A write asked of a store opened with `readOnly`.
 *
 * @example
 * ```ts
 * import { ReadOnlyError } from "./store.ts";
 * const e = new ReadOnlyError("commit");
 * if (!e.message.includes("read-only")) throw e;
 * ```
 */
export class ReadOnlyError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "READ_ONLY";
  /** The error's name. */
  override name = "ReadOnlyError";
  /** A write (`what`) refused by a read-only store. */
  constructor(what: string) {
    super(`${what}: the store is open read-only`);
  }
}

/** What {@linkcode Store.checkpoint} did. */
export interface CheckpointResult {
  /** Generation. */
  gen: number;
  /** Id of its root object. */
  root: string;
  /** Sequence number of its `ckpt` entry. */
  s: number;
  /** Journal offset of its `ckpt` entry: where the journals now start. */
  offset: number;
  /** Objects it consists of (root, trees, parts). */
  objects: number;
  /** Of those, objects sent to nodes (the others were stored already: unchanged directories). */
  objectsNew: number;
  /** Nodes whose journal was trimmed to `offset`. */
  trimmed: number[];
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
  /** End of its journal (an absolute offset). */
  journalLength: number;
  /** First byte its journal still holds (trimmed before). */
  journalStart: number;
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
  /** A `snap` entry: every object its snapshot holds (recorded for gc). */
  held?: readonly string[];
  /** A job run alone between commits (a checkpoint) instead of an entry. */
  task?: () => Promise<unknown>;
  resolve: (v?: unknown) => void;
  reject: (e: unknown) => void;
}

/** A checkpoint built from the index: its objects by id, children before parents. */
interface BuiltCheckpoint {
  root: string;
  objects: Map<string, Uint8Array>;
}

function envCount(name: string): number | undefined {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`${name}='${v}': must be a whole number`);
  return Number(v);
}

/** `fn`, called at most once however often the result is called. */
function once(fn: (() => void) | undefined): () => void {
  return () => {
    const f = fn;
    fn = undefined;
    f?.();
  };
}

/** One node's queue: `n` tasks at a time, the bytes they carry counted. */
class Semaphore {
  #n: number;
  #free: number;
  #waiters: (() => void)[] = [];
  #bytes = 0;
  #done: () => void;
  /** `done` is called each time a task ends. */
  constructor(n: number, done: () => void = () => {}) {
    this.#n = n;
    this.#free = n;
    this.#done = done;
  }
  /** Tasks running or waiting. */
  get load(): number {
    return this.#n - this.#free + this.#waiters.length;
  }
  /** Bytes the tasks running or waiting carry. */
  get bytes(): number {
    return this.#bytes;
  }
  /**
   * Runs `fn` when a slot is free; an `urgent` task waits ahead of the
   * others. `bytes` counts in {@linkcode Semaphore.bytes} until it ends.
   */
  async run<T>(fn: () => Promise<T>, urgent = false, bytes = 0): Promise<T> {
    this.#bytes += bytes;
    try {
      while (this.#free === 0) {
        await new Promise<void>((r) => urgent ? this.#waiters.unshift(r) : this.#waiters.push(r));
      }
      this.#free--;
      try {
        return await fn();
      } finally {
        this.#free++;
        this.#waiters.shift()?.();
      }
    } finally {
      this.#bytes -= bytes;
      this.#done();
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
  /** Copies per chunk: `--copies` when given, else 2; at most the number of nodes. */
  get copies(): number {
    return Math.min(this.#opts.copies ?? 2, this.cluster.nodes.length);
  }
  /** While a command borrows this open store ({@linkcode Store.lend}): the owner's options. */
  #lender: StoreOptions | null = null;
  /** Open stores lent to commands run in this process, by real cluster directory. */
  static #lent = new Map<string, Store>();
  #opts: StoreOptions;
  #slots = new Map<number, Semaphore>();
  /** Waiting for the next task on any node to end ({@linkcode Store.copyLanded}). */
  #landed: (() => void)[] = [];
  #queue: QueuedEntry[] = [];
  #committing = false;
  #storing = new Map<string, Promise<{ id: string; nodes: number[]; sent: boolean }>>();
  #drained: Promise<void> = Promise.resolve();
  #ckptEntries: number;
  #ckptBytes: number;
  #autoCkptFailed = false;
  /** `close()` began: a background catch-up stops after the append on the line. */
  #closing = false;
  #crashAt: string | undefined;
  /** The cluster lock (DIR/lines.lock) while open. */
  #lock: { release(): void } | null = null;
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
    this.nodes = new Map(
      cluster.nodes.map((e) => [e.id, { entry: e, journalLength: 0, journalStart: 0 }]),
    );
    this.#ckptEntries = opts.checkpointEntries ?? envCount("PIFS_CHECKPOINT_ENTRIES") ??
      CHECKPOINT_ENTRIES;
    this.#ckptBytes = opts.checkpointBytes ?? envCount("PIFS_CHECKPOINT_BYTES") ??
      CHECKPOINT_BYTES;
    // Fault injection for the tests: the process kills itself at that point
    // of a checkpoint, as a host losing power would stop.
    this.#crashAt = Deno.env.get("PIFS_CRASH_AT") || undefined;
    // Up to 3 chunks in progress per node (the node holds 4 pending puts).
    const landed = () => {
      for (const w of this.#landed.splice(0)) w();
    };
    for (const n of cluster.nodes) this.#slots.set(n.id, new Semaphore(3, landed));
  }

  /**
   * Opens the cluster in `dir`: connects to every node (those that do not
   * answer are marked down), opens the index (`dir/index.db`, rebuilt from
   * the cards when missing) and brings it and every node's journal up to
   * date.
   */
  static async open(dir: string, opts: StoreOptions = {}): Promise<Store> {
    const lent = Store.#lent.get(await Deno.realPath(dir).catch(() => dir));
    if (lent && !opts.readOnly) return lent.#borrow(opts);
    const cluster = await readClusterFile(dir);
    const path = `${dir}/index.db`;
    const fresh = !(await Deno.stat(path).then(() => true, () => false));
    const s = new Store(dir, cluster, Index.open(path), opts);
    // The default R=2 becomes 1 on a one-node cluster; an R asked for must fit.
    if (opts.copies !== undefined && opts.copies > cluster.nodes.length) {
      await s.close();
      throw new QuorumError(
        `--copies ${opts.copies}: the cluster has only ${cluster.nodes.length} nodes`,
      );
    }
    try {
      // One pifs command at a time on a cluster: two on the same lines
      // would take each other's bytes, and two writers could commit
      // different entries on different nodes. Wait up to busyWaitMs.
      s.#lock = await lockCluster(dir, opts.busyWaitMs ?? 0);
      await s.#connectAll();
      if (fresh) opts.log?.("no index on this host: rebuilding it from the cards");
      await s.#syncJournal(fresh);
      // A node recorded as lost for good is not used even if it answers.
      for (const id of s.index.forgotten()) {
        const st = s.nodes.get(id);
        if (!st) continue;
        await st.client?.close().catch(() => {});
        st.client = undefined;
        st.error = "forgotten (recorded as lost for good)";
      }
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  async #connectAll() {
    const ports = new Map<NodeState, SerialPort>();
    for (const st of [...this.nodes.values()].sort((a, b) => a.entry.id - b.entry.id)) {
      try {
        ports.set(st, await openNodePort(this.dir, this.cluster, st.entry));
      } catch (e) {
        st.error = (e as Error).message;
      }
    }
    await Promise.all([...ports].map(async ([st, port]) => {
      try {
        st.client = await NodeClient.connect(port, {
          baud: this.cluster.baud || 115200,
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
        st.journalStart = st.info.journalStart;
      } catch (e) {
        st.error = (e as Error).message;
        if (st.client) await st.client.close().catch(() => {});
        else await port.close().catch(() => {});
        st.client = undefined;
      }
    }));
  }

  /**
   * Whether another pifs command has been waiting for this cluster in the
   * last 2 seconds (it refreshes `DIR/lines.waiting` while it waits). Long
   * background work (rebalance, drain) stops early to let it run.
   */
  othersWaiting(): boolean {
    try {
      const st = Deno.statSync(`${this.dir}/lines.waiting`);
      return Date.now() - (st.mtime?.getTime() ?? 0) < 2000;
    } catch {
      return false;
    }
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
    // Requests still in flight when the store closes fail: that is not the node.
    if (this.#closing && e instanceof ProtocolError) return;
    st.error = (e as Error).message ?? String(e);
    this.#opts.log?.(`node ${st.entry.id} is down: ${st.error}`);
    const c = st.client;
    st.client = undefined;
    c?.close().catch(() => {});
  }

  /** Journal quorum: a majority of the cluster's nodes, and at least R. */
  quorum(): number {
    // Forgotten nodes (lost for good) no longer count.
    const n = this.nodes.size - this.index.forgotten().length;
    return Math.max(Math.floor(n / 2) + 1, Math.min(this.copies, n));
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
    // A fresh index, or one whose next entry the nodes no longer hold (they
    // were trimmed past it by a checkpoint it never saw): load the last
    // checkpoint and replay what follows it.
    const reload = rebuild || longest.journalStart > applied;
    if (reload) {
      await this.#relist();
      await this.#loadFromJournal(longest);
    } else if (longest.journalLength > applied) {
      const tail = await longest.client!.journalRead(applied);
      await this.#applyRead(decodeJournal(tail, this.index.lastSeq() + 1), applied);
    }
    await this.#fillMissing();
    // Nodes behind (a lazy follower after a long put, a node that was away)
    // are caught up in the background, between commits: a command does not
    // wait for lines it does not need (a quorum holds every entry).
    if (!this.#opts.readOnly) this.#queueCatchUp();
  }

  /** Applies entries read from a journal, the first at offset `at`, each in its own transaction. */
  async #applyRead(entries: JournalEntry[], at: number) {
    for (const e of entries) {
      const len = encodeEntry(e).length;
      if (e.op === "ckpt") {
        await this.#adoptCheckpoint(e, at);
      } else {
        this.index.tx(() => {
          this.index.apply(e);
          this.index.setMeta("journal_bytes", String(at + len));
        });
      }
      at += len;
    }
  }

  /**
   * Rebuilds the namespace from a node's journal: from its last `ckpt` entry
   * (the namespace loaded from the checkpoint's objects, then the entries
   * after it), or, with none, from entry 1.
   */
  async #loadFromJournal(st: NodeState) {
    const start = st.journalStart;
    const bytes = await st.client!.journalRead(start);
    const entries = decodeJournal(bytes, start === 0 ? 1 : "any");
    const offsets: number[] = [];
    let at = start;
    for (const e of entries) offsets.push(at), at += encodeEntry(e).length;
    let k = entries.length - 1;
    while (k >= 0 && entries[k].op !== "ckpt") k--;
    if (k < 0) {
      if (start > 0) {
        throw new JournalError(
          `node ${st.entry.id}: its journal starts at byte ${start} without a checkpoint entry`,
        );
      }
      this.index.tx(() => this.index.resetNamespace(0, 0));
      await this.#applyRead(entries, 0);
      return;
    }
    const ck = entries[k] as Extract<JournalEntry, { op: "ckpt" }>;
    await this.#loadCheckpoint(ck, offsets[k]);
    await this.#applyRead(entries.slice(k + 1), offsets[k + 1] ?? at);
  }

  /** Reads a checkpoint's root and tree objects; returns the root, the entries and every object id. */
  async #readCheckpoint(
    ck: { gen: number; root: string; s: number },
  ): Promise<{ obj: CheckpointObject; entries: Entry[]; objects: string[] }> {
    const obj = decodeCheckpoint(await this.getObject(ck.root), ck.root);
    if (obj.gen !== ck.gen || obj.s !== ck.s) {
      throw new JournalError(
        `checkpoint ${
          ck.root.slice(0, 12)
        }: object says generation ${obj.gen} at entry ${obj.s}, ` +
          `its entry generation ${ck.gen} at ${ck.s}`,
      );
    }
    const limit = Math.max(2, 2 * this.up().length);
    const t = await readTreeAll(obj.tree, (id) => this.getObject(id), limit);
    const objects = [ck.root, ...t.objects];
    const entries: Entry[] = t.items.map(({ path, entry }) => entryOf(`/${path}`, entry));
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { obj, entries, objects };
  }

  /**
   * Replaces the index's namespace with the checkpoint `ck` names, whose
   * entry lies at journal offset `offset`.
   */
  async #loadCheckpoint(ck: Extract<JournalEntry, { op: "ckpt" }>, offset: number) {
    this.#opts.log?.(`loading checkpoint ${ck.gen} (entry ${ck.s})`);
    const { obj, entries, objects } = await this.#readCheckpoint(ck);
    const len = encodeEntry(ck).length;
    this.index.tx(() => {
      this.index.resetNamespace(ck.s - 1, offset);
      for (const e of entries) this.index.insertEntry(e);
      for (const [p, c] of obj.policies) this.index.setPolicy(p, c);
      for (const n of obj.forgotten ?? []) this.index.setForgotten(n);
      if (obj.rootAttr) this.index.setAttr("/", obj.rootAttr[0], obj.rootAttr[1]);
      for (const [name, job, target, root, time, files, bytes] of obj.snapshots) {
        this.index.insertSnapshot({ name, job, target, root, time, files, bytes });
      }
      this.index.apply(ck);
      this.index.setMeta("journal_bytes", String(offset + len));
      this.index.setCheckpoint({ gen: ck.gen, root: ck.root, s: ck.s, offset }, objects);
    });
  }

  /**
   * Applies a `ckpt` entry read from a journal on top of the entries before
   * it. The namespace is then what the checkpoint holds: if the index builds
   * the same root object, only the checkpoint is recorded; otherwise (an
   * index that differs, e.g. in an mtime) the checkpoint is loaded.
   */
  async #adoptCheckpoint(ck: Extract<JournalEntry, { op: "ckpt" }>, offset: number) {
    const built = this.#buildCheckpoint(ck.gen, ck.s);
    if (built.root !== ck.root) return await this.#loadCheckpoint(ck, offset);
    const len = encodeEntry(ck).length;
    this.index.tx(() => {
      this.index.apply(ck);
      this.index.setMeta("journal_bytes", String(offset + len));
      this.index.setCheckpoint(
        { gen: ck.gen, root: ck.root, s: ck.s, offset },
        [...built.objects.keys()],
      );
    });
  }

  /**
   * Fetches what the namespace names but the index does not know yet: the
   * manifests of live files (whose chunk lists `gc` must see) and the objects
   * of live snapshots. Done after replay, so files removed meanwhile cost
   * nothing (and their manifests may be gone).
   */
  async #fillMissing(): Promise<number> {
    const limit = Math.max(2, 2 * this.up().length);
    const failed: string[] = [];
    await pool(this.index.missingManifests(), limit, async (id) => {
      try {
        const m = await this.#fetchManifest(id);
        this.index.tx(() => this.index.setManifest(id, m));
      } catch (e) {
        failed.push(`manifest ${id.slice(0, 12)}: ${(e as Error).message}`);
      }
    });
    for (const root of this.index.missingSnapshots()) {
      try {
        const { held } = await snapshotContents(this, root);
        this.index.tx(() => this.index.setSnapshotHeld(root, held));
      } catch (e) {
        failed.push(`snapshot object ${root.slice(0, 12)}: ${(e as Error).message}`);
      }
    }
    // Not fatal here (the files whose manifest is missing fail when read);
    // gc refuses to run until they are known.
    for (const f of failed.slice(0, 5)) this.#opts.log?.(`cannot read ${f}`);
    if (failed.length > 5) this.#opts.log?.(`… and ${failed.length - 5} more`);
    return failed.length;
  }

  /**
   * Fetches the manifests of live files and the objects of live snapshots
   * the index lacks; throws {@linkcode QuorumError} if some cannot be read
   * (`gc` must know every chunk they hold before deleting anything).
   */
  async fillMissing(): Promise<void> {
    const n = await this.#fillMissing();
    if (n > 0) {
      throw new QuorumError(
        `${n} manifests or snapshot objects cannot be read from the nodes that answer ` +
          `(down: ${this.#downList()}); refusing to decide what is garbage`,
      );
    }
  }

  /**
   * Deletes every chunk nothing holds (no live file, no live snapshot, not
   * the current checkpoint) that was first stored more than `graceMs` ago
   * (a put may still need a younger one). First re-learns what the nodes
   * really hold (a host killed between a node's commit and its own index
   * update must not leave a chunk nobody deletes) and fetches every live
   * file's and snapshot's chunk list: if some cannot be read, nothing is
   * deleted ({@linkcode QuorumError}).
   */
  async gc(graceMs: number): Promise<{ chunks: number; copiesDeleted: number }> {
    if (this.#opts.readOnly) throw new ReadOnlyError("gc");
    await this.relist();
    await this.fillMissing();
    const dead = this.index.unreferenced(Date.now() - graceMs);
    let copiesDeleted = 0;
    for (const c of dead) {
      for (const nid of c.nodes) {
        const st = this.nodes.get(nid);
        if (!st?.client) continue;
        await st.client.deleteChunk(c.id);
        this.index.removeLocation(c.id, nid);
        copiesDeleted++;
      }
    }
    return { chunks: dead.length, copiesDeleted };
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

  /**
   * Brings the journal of every node that answers up to the index's: a node
   * that still holds entries before the last checkpoint is trimmed to it
   * (TRIM past its end when it lacks entries the index no longer has: its
   * journal then starts empty at the checkpoint), then gets the lines it lacks.
   * Runs between commits, like a checkpoint, and resolves when done. A store
   * does this by itself after it opens, in the background and only while
   * nothing else waits; this waits for all of it.
   */
  async catchUp(): Promise<void> {
    if (this.#opts.readOnly) throw new ReadOnlyError("journal catch-up");
    await this.#task(() => this.#catchUp());
  }

  /**
   * Queues a background catch-up, if nodes are behind: appends of at most
   * {@linkcode CATCH_UP_PART} bytes, giving way to commits that wait (it
   * queues itself again behind them) and stopping when the store closes.
   * Open queues it once; only the task itself queues it again, so there is
   * never more than one.
   */
  #queueCatchUp() {
    if (this.#closing || !this.#behind().length) return;
    this.#task(async () => {
      if (await this.#catchUp(() => this.#closing || this.#queue.length > 0)) this.#queueCatchUp();
    }).catch((e) => this.#opts.log?.(`journal catch-up: ${(e as Error).message}`));
  }

  /** Nodes that answer and lack journal lines the index holds (or still hold trimmed ones). */
  #behind(): NodeState[] {
    const applied = this.#appliedBytes();
    const start = this.index.journalStart();
    return this.up().filter((st) =>
      st.journalStart < start || (st.journalLength < applied && st.journalLength >= start)
    );
  }

  /**
   * Catches up the nodes behind (see {@linkcode Store.catchUp}). With
   * `giveWay`, asked before each node's first request and after each
   * append: true stops there, and the result is true if a node was left
   * behind that way.
   */
  async #catchUp(giveWay?: () => boolean): Promise<boolean> {
    const applied = this.#appliedBytes();
    const start = this.index.journalStart();
    let stopped = false;
    // Side by side: each node's journal is its own (lazy followers can lack
    // a checkpoint's worth of lines after a long put).
    await Promise.all(
      this.#behind().map(async (st) => {
        const lacking = () => st.journalLength < applied && st.journalLength >= start;
        if (giveWay?.()) return void (stopped = true);
        try {
          if (st.journalStart < start) {
            const r = await st.client!.journalTrim(start);
            st.journalStart = r.start;
            st.journalLength = r.length;
          }
        } catch (err) {
          if (!(err instanceof NodeError)) {
            this.#markDown(st, err);
            return;
          }
          // Refused (a diverged journal, or firmware without JOURNAL_TRIM):
          // it keeps its old entries; it can still take the new ones if it
          // holds everything up to the checkpoint.
          this.#opts.log?.(`node ${st.entry.id}: ${(err as Error).message}`);
        }
        if (!lacking()) return;
        try {
          if (!(await this.#appendMissing(st, giveWay))) {
            this.#opts.log?.(
              `node ${st.entry.id}: its journal ends at byte ${st.journalLength}, inside an entry`,
            );
          } else if (lacking()) stopped = true; // gave way part-way
        } catch (err) {
          this.#markDown(st, err);
        }
      }),
    );
    return stopped;
  }

  // ---- checkpoints ----

  /** Copies of each checkpoint object: R, at least 2 when there are 2 nodes or more. */
  #checkpointCopies(): number {
    return Math.min(Math.max(this.copies, 2), this.nodes.size);
  }

  /**
   * The namespace in the index as checkpoint objects: a tree object per
   * directory (entries by name; a large one in content-defined parts,
   * {@linkcode splitTree}), then the root object for generation `gen`
   * whose `ckpt` entry is `s`. Unchanged directories give the same ids.
   */
  #buildCheckpoint(gen: number, s: number): BuiltCheckpoint {
    const objects = new Map<string, Uint8Array>();
    const tree = buildTrees(this.index.walk("/"), "/", objects);
    // The root's mode and mtime, when changed (chmod or touch of a mount's root).
    const r0 = this.index.get("/");
    const rootAttr: [number, number] | undefined = r0 && (r0.mode !== 0o755 || r0.mtime !== 0)
      ? [r0.mode, r0.mtime]
      : undefined;
    const ckpt: CheckpointObject = {
      v: 1,
      kind: "ckpt",
      gen,
      s,
      tree,
      policies: this.index.policies().map((r) => [r.path, r.copies]),
      // Only when there are any: older checkpoints keep their ids.
      ...(this.index.forgotten().length ? { forgotten: this.index.forgotten() } : {}),
      ...(rootAttr ? { rootAttr } : {}),
      snapshots: this.index.snapshots().sort((a, b) => (a.name < b.name ? -1 : 1)).map((r) => [
        r.name,
        r.job,
        r.target,
        r.root,
        r.time,
        r.files,
        r.bytes,
      ]),
    };
    const bytes = encodeObject(ckpt);
    const root = objectId(bytes);
    objects.set(root, bytes);
    return { root, objects };
  }

  /**
   * Writes a checkpoint: the namespace as content-addressed objects (stored
   * with {@linkcode Store.copies}, at least 2), then the `ckpt` entry naming
   * them (committed alone, with the usual quorum), then JOURNAL_TRIM to its
   * offset on every node that answers. Commits wait meanwhile.
   */
  checkpoint(): Promise<CheckpointResult> {
    return this.#task(() => this.#checkpointNow());
  }

  /** Runs `fn` alone between commits (queued behind those waiting), resolving with its result. */
  #task<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        entry: undefined as never,
        task: fn,
        resolve: resolve as (v?: unknown) => void,
        reject,
      });
      if (!this.#committing) this.#drained = this.#drain();
    });
  }

  /** Dies here if the tests asked for it (PIFS_CRASH_AT). */
  #crashPoint(name: string) {
    if (this.#crashAt === name) Deno.kill(Deno.pid, "SIGKILL");
  }

  async #checkpointNow(): Promise<CheckpointResult> {
    const gen = (this.index.checkpoint()?.gen ?? 0) + 1;
    const s = this.index.lastSeq() + 1;
    const built = this.#buildCheckpoint(gen, s);
    const copies = this.#checkpointCopies();
    let objectsNew = 0;
    const limit = Math.max(2, 2 * this.up().length);
    const ids = [...built.objects.keys()]; // children before parents, the root last
    // Ahead of the data chunks queued for the Pis: commits wait for this.
    await pool(ids.slice(0, -1), limit, async (id) => {
      const r = await this.storeObject(built.objects.get(id)!, { id, copies });
      if (r.sent) objectsNew++;
    });
    const r = await this.storeObject(built.objects.get(built.root)!, { id: built.root, copies });
    if (r.sent) objectsNew++;
    this.#crashPoint("ckpt-objects");
    const entry = { op: "ckpt", gen, root: built.root, s } as JournalEntry;
    const offset = this.#appliedBytes();
    const row: CheckpointRow = { gen, root: built.root, s, offset };
    await this.#append([entry], [encodeEntry(entry)], [undefined], [undefined], () => {
      this.index.setCheckpoint(row, ids);
    });
    this.#crashPoint("ckpt-commit");
    const before = new Map(this.up().map((st) => [st.entry.id, st.journalStart]));
    await this.#catchUp();
    const trimmed = this.up().filter((st) =>
      st.journalStart === offset && (before.get(st.entry.id) ?? 0) < offset
    ).map((st) => st.entry.id);
    this.#opts.log?.(
      `checkpoint ${gen} at entry ${s}: ${ids.length} objects (${objectsNew} new), ` +
        `journals trimmed to byte ${offset} on nodes ${trimmed.join(", ") || "none"}`,
    );
    return { gen, root: built.root, s, offset, objects: ids.length, objectsNew, trimmed };
  }

  /** Whether enough was committed since the last checkpoint to write another. */
  #checkpointDue(): boolean {
    const since = this.index.lastSeq() - (this.index.checkpoint()?.s ?? 0);
    const bytes = this.#appliedBytes() - this.index.journalStart();
    return (this.#ckptEntries > 0 && since >= this.#ckptEntries) ||
      (this.#ckptBytes > 0 && this.#ckptEntries > 0 && bytes >= this.#ckptBytes);
  }

  // ---- the namespace: its operations, each rule checked here once ----

  /** The entry at `path`, or a {@linkcode NamespaceError} (`ENOENT`). */
  #need(path: string): Entry {
    const e = this.index.get(path);
    if (!e) throw new NamespaceError(`${path}: no such file or directory in the store`, "ENOENT");
    return e;
  }

  /**
   * Makes the directory `path` and its missing parents (nothing if it is a
   * directory already). Refused where a file or link is in the way.
   */
  async mkdir(path: string, opts: { mode?: number; mtime?: number } = {}): Promise<void> {
    const e = this.index.get(path);
    if (e && e.type !== "d") {
      throw new NamespaceError(`${path}: a file of that name exists`, "EEXIST");
    }
    for (let q = parentOf(path); q !== "/"; q = parentOf(q)) {
      const t = this.index.get(q)?.type;
      if (t && t !== "d") throw new NamespaceError(`${q}: is a file, not a directory`, "ENOTDIR");
    }
    if (e) return;
    await this.commit({
      op: "mkdir",
      p: path,
      mode: opts.mode ?? 0o755,
      mtime: opts.mtime ?? Date.now(),
    });
  }

  /**
   * Removes a file, a link, an empty directory, or (`recursive`) a
   * directory and everything under it. The space returns at the next gc.
   */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    if (path === "/") throw new NamespaceError("refusing to remove /", "EINVAL");
    const e = this.#need(path);
    if (e.type === "d" && !opts.recursive && this.index.list(path).length > 0) {
      throw new NamespaceError(
        `${path}: is a directory that is not empty (remove it recursively)`,
        "ENOTEMPTY",
      );
    }
    await this.commit({ op: "rm", p: path });
  }

  /**
   * Renames `from` to `to`, as POSIX rename does: a file or link replaces a
   * file or link; a directory replaces an empty directory; nothing moves
   * into itself.
   */
  async move(from: string, to: string): Promise<void> {
    if (from === "/") throw new NamespaceError("cannot move /", "EINVAL");
    const a = this.#need(from);
    if (to === from) return;
    if (to.startsWith(from + "/")) {
      throw new NamespaceError(`cannot move ${from} into itself (${to})`, "EINVAL");
    }
    const b = this.index.get(to);
    if (b?.type === "d") {
      if (a.type !== "d") throw new NamespaceError(`${to}: is a directory`, "EISDIR");
      if (this.index.list(to).length) {
        throw new NamespaceError(`${to}: is a directory that is not empty`, "ENOTEMPTY");
      }
    } else if (b && a.type === "d") {
      throw new NamespaceError(`${to}: is not a directory`, "ENOTDIR");
    }
    await this.commit({ op: "mv", p: from, to, mtime: Date.now() });
  }

  /** Sets the mode bits and/or the modification time of `path` (nothing if it does not exist). */
  async setAttr(path: string, attr: { mode?: number; mtime?: number }): Promise<void> {
    await this.commit({
      op: "attr",
      p: path,
      ...(attr.mode !== undefined ? { mode: attr.mode } : {}),
      ...(attr.mtime !== undefined ? { mtime: attr.mtime } : {}),
    });
  }

  /** Makes `path` a symbolic link to `target` (kept as given, never empty). */
  async symlink(path: string, target: string, mtime: number = Date.now()): Promise<void> {
    if (target.length === 0) {
      throw new NamespaceError(`${path}: empty symbolic link target`, "ENOENT");
    }
    await this.commit({ op: "symlink", p: path, target, mtime });
  }

  /** The copies rule at `path` (0: removed): new files at or under it get `copies` copies. */
  async setCopies(path: string, copies: number): Promise<void> {
    await this.commit({ op: "copies", p: path, copies });
  }

  /**
   * Capacity and free bytes of the cluster's cards, summed: asked now of
   * the nodes that answer (INFO), a node down counted with what it said at
   * open, a node without a store not at all. Asking changes nothing else
   * (placement weighs nodes by what they said at open).
   */
  async space(): Promise<{ capacity: number; free: number }> {
    const infos = await Promise.all([...this.nodes.values()].map(async (st) => {
      if (!st.client) return st.info;
      try {
        return await st.client.info();
      } catch {
        return st.info;
      }
    }));
    let capacity = 0, free = 0;
    for (const i of infos) {
      if (!i || i.status !== 0) continue;
      capacity += i.capacity;
      free += i.free;
    }
    return { capacity, free };
  }

  /**
   * The namespace `path` is read from: the store's own (its index), or under
   * `/.snapshots` a snapshot's, read-only (undefined: no such snapshot).
   */
  async view(path: string): Promise<NamespaceView | undefined> {
    if (!inSnapshots(path)) return this.index;
    return await SnapshotView.open(this, this.index.snapshots(), path);
  }

  /** Reads a snapshot object by its id. */
  async snapshotObject(id: string): Promise<SnapshotObject> {
    return decodeSnapshot(await this.getObject(id), id);
  }

  /**
   * Reads a metadata object (a tree, a snapshot record, a checkpoint's
   * root): the host's copy when it has one (checked against its id), else
   * the nodes', which is then kept. A diff or a snapshot's listing reads the
   * same trees again and again; over a 115200-baud line each costs seconds.
   */
  async getObject(id: string): Promise<Uint8Array> {
    const kept = this.index.cachedObject(id);
    if (kept && objectId(kept) === id) return kept;
    const b = await this.getChunk(id);
    this.index.cacheObject(id, b);
    return b;
  }

  /** Stores a metadata object (urgently: others wait on it) and keeps the host's copy. */
  async storeObject(
    data: Uint8Array,
    opts: { id?: string; copies?: number } = {},
  ): Promise<{ id: string; sent: boolean }> {
    const r = await this.storeChunk(data, { ...opts, urgent: true });
    this.index.cacheObject(r.id, data);
    return r;
  }

  async #fetchManifest(id: string): Promise<Manifest> {
    const bytes = await this.getChunk(id);
    return decodeManifest(bytes, id);
  }

  /**
   * Appends an entry to the journals of a quorum of nodes, then applies it
   * to the index. Throws {@linkcode QuorumError} if too few nodes took it.
   * A file's entry comes with its manifest; a `snap` entry with the ids of
   * every object its snapshot holds (trees and manifests, kept by gc).
   */
  commit(
    entry: DistributiveOmit<JournalEntry, "s">,
    manifest?: Manifest,
    held?: readonly string[],
  ): Promise<void> {
    if (this.#opts.readOnly) return Promise.reject(new ReadOnlyError(`commit of ${entry.op}`));
    try {
      for (const p of entryPaths(entry)) checkWritable(p);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ entry, manifest, held, resolve: () => resolve(), reject });
      if (!this.#committing) this.#drained = this.#drain();
    });
  }

  // Group commit: entries that wait while an append is on the line go out
  // together in the next one (up to one frame), so many small files cost a
  // round trip per batch, not per file. Entries stay whole JSON lines, so a
  // journal reads the same however it was batched. A task (a checkpoint)
  // runs alone, between batches.
  async #drain() {
    this.#committing = true;
    while (this.#queue.length) {
      if (this.#queue[0].task) {
        const q = this.#queue.shift()!;
        try {
          q.resolve(await q.task!());
        } catch (err) {
          q.reject(err);
        }
        continue;
      }
      const batch: { q: QueuedEntry; e: JournalEntry; b: Uint8Array }[] = [];
      let size = 0;
      let seq = this.index.lastSeq() + 1;
      while (this.#queue.length && !this.#queue[0].task) {
        const q = this.#queue[0];
        const e = { ...q.entry, s: seq } as JournalEntry;
        const b = encodeEntry(e);
        if (batch.length && size + b.length > MAX_DATA) break;
        batch.push({ q, e, b });
        size += b.length;
        seq++;
        this.#queue.shift();
      }
      // A run of two or more entries that can be packed goes out as one
      // deflated line (a "z" entry): many small files cost a third of the
      // journal bytes, and the journal goes to every node.
      const lines: Uint8Array[] = [];
      const records: JournalEntry[] = [];
      const manifests: (Manifest | undefined | (Manifest | undefined)[])[] = [];
      const helds: (readonly string[] | undefined)[] = [];
      for (let i = 0; i < batch.length;) {
        let j = i;
        while (j < batch.length && canZip(batch[j].e) && !batch[j].q.held) j++;
        if (this.#opts.zipJournal !== false && j - i >= 2) {
          const run = batch.slice(i, j);
          const z = zipEntries(run.map((x) => x.e));
          const zb = encodeEntry(z);
          if (zb.length < run.reduce((a, x) => a + x.b.length, 0)) {
            records.push(z), lines.push(zb), helds.push(undefined);
            manifests.push(run.map((x) => x.q.manifest));
            i = j;
            continue;
          }
        }
        for (const x of batch.slice(i, Math.max(j, i + 1))) {
          records.push(x.e), lines.push(x.b);
          manifests.push(x.q.manifest), helds.push(x.q.held);
        }
        i = Math.max(j, i + 1);
      }
      try {
        await this.#append(records, lines, manifests, helds);
      } catch (err) {
        for (const x of batch) x.q.reject(err);
        continue;
      }
      // Enough entries since the last checkpoint: write one now, before the
      // commits that triggered it return (so a command does not end in the
      // middle of it). A failure is reported and not retried this session;
      // the commits themselves stand.
      if (!this.#autoCkptFailed && this.#checkpointDue()) {
        try {
          await this.#checkpointNow();
        } catch (err) {
          this.#autoCkptFailed = true;
          this.#opts.log?.(
            `checkpoint failed (retried by a later session): ${(err as Error).message}`,
          );
        }
      }
      for (const x of batch) x.q.resolve();
    }
    this.#committing = false;
  }

  async #append(
    entries: JournalEntry[],
    lines: Uint8Array[],
    manifests: (Manifest | undefined | (Manifest | undefined)[])[],
    helds: (readonly string[] | undefined)[],
    alsoInTx?: () => void,
  ) {
    const bytes = concat(lines);
    const applied = this.#appliedBytes();
    const up = this.up();
    let ok = 0;
    const e0 = entries[0];
    const last = entries[entries.length - 1];
    const lastS = last.op === "z" ? last.s + last.n - 1 : last.s;
    const what = entries.length === 1 && lastS === e0.s
      ? `journal entry ${e0.s} (${e0.op}${
        "p" in e0 ? ` ${e0.p}` : "name" in e0 ? ` ${e0.name}` : e0.op === "ckpt" ? ` ${e0.gen}` : ""
      })`
      : `journal entries ${e0.s}..${lastS}`;
    const quorum = this.quorum();
    const full: number[] = [];
    // Sends the entries to a node that holds the journal up to `applied`;
    // one that lacks entries since the last checkpoint gets those first
    // (`behind`: a lazy follower, needed now).
    const send = async (st: NodeState, behind = false) => {
      try {
        // Not where a line of ours starts: #catchUp's business.
        if (behind && !(await this.#appendMissing(st))) return;
        if (st.journalLength !== applied) return;
        st.journalLength = await st.client!.journalAppend(applied, bytes);
        ok++;
      } catch (err) {
        // A node that answered with an error (its journal differs, it is
        // full) is not down: it just does not count towards the quorum.
        if (err instanceof NodeError) {
          if (err.status === Status.ENOSPC) full.push(st.entry.id);
          this.#opts.log?.(`node ${st.entry.id}: ${what} refused: ${(err as Error).message}`);
        } else this.#markDown(st, err);
      }
    };
    // The nodes that hold the journal so far take the entries, but for the
    // busiest ones the quorum can spare (lazy followers; a `ckpt` entry goes
    // to all). Nodes behind are caught up later (checkpoint, open)...
    const inSync = up.filter((st) => st.journalLength === applied);
    const lazy = entries[0].op === "ckpt" ? [] : this.#lazyFollowers(inSync, quorum);
    await Promise.all(inSync.filter((st) => !lazy.includes(st)).map((st) => send(st)));
    // ... unless the others fell short: then they take the entries now,
    // those behind with the ones they lack.
    if (ok < quorum) {
      await Promise.all(
        this.up().filter((st) => !inSync.includes(st) || lazy.includes(st)).map((st) =>
          send(st, st.journalLength !== applied)
        ),
      );
    }
    if (ok < quorum) {
      const reached = `${what} reached ${ok} of ${this.nodes.size} nodes; ${quorum} needed`;
      if (full.length > 0) {
        throw new NoSpaceError(
          `${reached}: no space left for the journal on node${full.length > 1 ? "s" : ""} ` +
            `${full.sort((a, b) => a - b).join(", ")} (ENOSPC)` +
            (this.#downList() === "none" ? "" : ` (down: ${this.#downList()})`),
          full,
        );
      }
      throw new QuorumError(`${reached} (down: ${this.#downList()})`);
    }
    if (entries[0].op === "ckpt") this.#crashPoint("ckpt-append");
    this.index.tx(() => {
      entries.forEach((e, i) => {
        const m = manifests[i];
        if (Array.isArray(m)) this.index.apply(e, undefined, helds[i], m);
        else this.index.apply(e, m, helds[i]);
      });
      this.index.setMeta("journal_bytes", String(applied + bytes.length));
      alsoInTx?.();
    });
  }

  /**
   * Of the nodes in `inSync`, those a journal append may skip: the busiest
   * (at least `lazyJournalBytes` of chunk copies queued), no more than leaves
   * `quorum` to take it.
   */
  #lazyFollowers(inSync: NodeState[], quorum: number): NodeState[] {
    const min = this.#opts.lazyJournalBytes ?? LAZY_JOURNAL_BYTES;
    if (min <= 0 || inSync.length <= quorum) return [];
    const q = (st: NodeState) => this.queuedBytes(st.entry.id);
    return inSync.filter((st) => q(st) >= min).sort((a, b) => q(b) - q(a))
      .slice(0, inSync.length - quorum);
  }

  /**
   * Appends to node `st` the journal lines it lacks since the last
   * checkpoint, whole lines packed into as few appends as fit in a frame
   * (link errors are thrown). False when its journal does not end where one
   * of the lines starts. `giveWay`, asked after each append, stops it there.
   */
  async #appendMissing(st: NodeState, giveWay?: () => boolean): Promise<boolean> {
    const lines = this.#linesSince(st.journalLength);
    if (!lines) return false;
    // Giving way, in small appends: a commit or a close waits for the one on the line.
    for (const part of packLines(lines, giveWay ? CATCH_UP_PART : MAX_DATA)) {
      st.journalLength = await st.client!.journalAppend(st.journalLength, part);
      if (giveWay?.()) break;
    }
    return true;
  }

  /**
   * The journal lines (as the index holds them) from offset `from` to the
   * end, or null when `from` is not where one of them starts.
   */
  #linesSince(from: number): Uint8Array[] | null {
    const lines: Uint8Array[] = [];
    let off = this.index.journalStart();
    for (const e of this.index.journal()) {
      const b = encodeEntry(e);
      if (off >= from) lines.push(b);
      off += b.length;
    }
    if (off !== this.#appliedBytes()) return null;
    const first = off - lines.reduce((a, b) => a + b.length, 0);
    return first === from ? lines : null;
  }

  #downList(): string {
    const d = [...this.nodes.values()].filter((s) => !s.client);
    return d.length ? d.map((s) => `${s.entry.id} (${s.error})`).join(", ") : "none";
  }

  // ---- chunks ----

  /**
   * The nodes placement ranks, weighted by capacity: every node of the
   * cluster but those forgotten (lost for good) and those in `exclude`.
   */
  placementNodes(exclude: Iterable<number> = []): PlacementNode[] {
    const ex = new Set(exclude);
    return this.#weights().filter((n) => !ex.has(n.id));
  }

  // A node's weight is the capacity recorded when it joined (cluster.json),
  // so placement is the same whether it answers now or not, and whatever
  // INFO said since; a cluster made before that was recorded uses INFO.
  #weights(): PlacementNode[] {
    const gone = new Set(this.index.forgotten());
    return [...this.nodes.values()].filter((s) => !gone.has(s.entry.id)).map((s) => ({
      id: s.entry.id,
      weight: Math.max(1, s.entry.capacity ?? s.info?.capacity ?? 1),
    }));
  }

  /**
   * Stores a chunk on R distinct nodes (placement order, skipping nodes that
   * are down); resolves once R copies are committed. Returns whether any
   * bytes were sent.
   */
  async storeChunk(
    data: Uint8Array,
    opts: { id?: string; copies?: number; urgent?: boolean; onQueued?: () => void } = {},
  ): Promise<{ id: string; nodes: number[]; sent: boolean }> {
    if (this.#opts.readOnly) throw new ReadOnlyError("storing a chunk");
    const queued = once(opts.onQueued);
    try {
      const id = opts.id ?? await chunkId(data);
      const copies = opts.copies ?? this.copies;
      // The same chunk already on its way (two files sharing it): wait for it.
      const running = this.#storing.get(id);
      if (running) {
        queued();
        await running.catch(() => {});
        if (this.index.locations(id).length >= copies) {
          return { id, nodes: this.index.locations(id), sent: false };
        }
      }
      const p = this.#storeChunk(id, data, copies, opts.urgent ?? false, queued);
      this.#storing.set(id, p);
      try {
        return await p;
      } finally {
        if (this.#storing.get(id) === p) this.#storing.delete(id);
      }
    } finally {
      queued();
    }
  }

  async #storeChunk(
    id: string,
    data: Uint8Array,
    copies: number,
    urgent: boolean,
    queued: () => void,
  ): Promise<{ id: string; nodes: number[]; sent: boolean }> {
    const have = this.index.locations(id);
    if (have.length >= copies) return { id, nodes: have, sent: false };
    const ranked = rankNodes(id, this.#weights());
    const holders = new Set(have);
    const tried = new Set<number>();
    const full: number[] = [];
    let sent = false;
    // The copies go out in parallel, to the best-ranked nodes that answer;
    // a node that fails, or whose card is full, hands its copy to the next
    // one in rank (a full node is not down: it still serves what it holds).
    while (holders.size < copies) {
      const targets = ranked.filter((nid) =>
        !holders.has(nid) && !tried.has(nid) && this.nodes.get(nid)!.client
      ).slice(0, copies - holders.size);
      if (targets.length === 0) break;
      const sends = targets.map(async (nid) => {
        tried.add(nid);
        const st = this.nodes.get(nid)!;
        try {
          const r = await this.#slots.get(nid)!.run(
            () => this.#client(st).putChunk(data, { id }),
            urgent,
            data.length,
          );
          if (!r.existed) sent = true;
          this.index.addLocation(id, data.length, nid);
          holders.add(nid);
        } catch (e) {
          if (e instanceof NodeError && e.status === Status.ENOSPC) full.push(nid);
          else if (e instanceof NodeError) throw e; // the node said no: bad data
          else this.#markDown(st, e);
        }
      });
      queued(); // every copy of this round is counted in its node's queue
      await Promise.all(sends);
    }
    if (holders.size < copies && !(this.#opts.degraded && holders.size > 0)) {
      const what =
        `chunk ${id.slice(0, 12)} (${data.length} bytes): ${holders.size} of ${copies} ` +
        `copies stored`;
      if (full.length > 0) {
        throw new NoSpaceError(
          `${what}: no space left on node${full.length > 1 ? "s" : ""} ${
            full.sort((a, b) => a - b).join(", ")
          } (ENOSPC)` +
            (this.#downList() === "none" ? "" : ` (down: ${this.#downList()})`),
          full,
        );
      }
      throw new QuorumError(`${what} (down: ${this.#downList()})`);
    }
    return { id, nodes: [...holders], sent };
  }

  /**
   * Bytes of chunk copies waiting for or on their way to node `id`: how long
   * its link stays busy with what is queued now.
   */
  queuedBytes(id: number): number {
    return this.#slots.get(id)?.bytes ?? 0;
  }

  /**
   * Whether some answering node has less than `lowWater` bytes of chunk
   * copies queued (default 128 KiB, about 11 s of a 115200-baud line): its
   * link runs dry soon unless more work is started for it.
   */
  starved(lowWater: number = 128 * 1024): boolean {
    return this.up().some((st) => this.queuedBytes(st.entry.id) < lowWater);
  }

  /** Resolves when the next chunk copy (or read) on any node lands or fails. */
  copyLanded(): Promise<void> {
    return new Promise((r) => this.#landed.push(r));
  }

  /** Reads a chunk from any node that holds it (hash checked). */
  async getChunk(id: string): Promise<Uint8Array> {
    let nodes = this.index.locations(id);
    if (nodes.length === 0) nodes = rankNodes(id, this.#weights()); // not indexed yet: ask
    else {
      // Reads spread over the copies: the least busy holder first, ties
      // broken by the chunk id, so a file's chunks come from every Pi that
      // holds them, not all from the lowest-numbered one.
      const load = (n: number) => this.#slots.get(n)?.load ?? 0;
      const salt = parseInt(id.slice(0, 8), 16);
      const tie = (n: number) => Math.imul(salt ^ (n + 1), 0x9e3779b1) >>> 0;
      nodes = [...nodes].sort((a, b) => load(a) - load(b) || tie(a) - tie(b));
    }
    const errors: string[] = [];
    for (const nid of nodes) {
      const st = this.nodes.get(nid);
      if (!st?.client) continue;
      try {
        return await this.#slots.get(nid)!.run(() => this.#client(st).getChunk(id));
      } catch (e) {
        errors.push(`node ${nid}: ${(e as Error).message}`);
        if (!(e instanceof NodeError)) this.#markDown(st, e);
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
    meta: {
      mode: number;
      mtime: number;
      copies?: number;
      onBytes?: (n: number) => void;
      /** Called once its first chunk is in its Pis' queues (or it has none to send). */
      onQueued?: () => void;
    },
    stats?: PutStats,
  ): Promise<Manifest> {
    const copies = meta.copies ?? this.copies;
    const queued = once(meta.onQueued);
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
        const r = await this.storeChunk(buf, { copies, onQueued: queued });
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
    queued();
    await Promise.all(inflight);
    if (failure) throw failure;
    const manifest: Manifest = { v: 1, size, chunks };
    const mbytes = encodeManifest(manifest);
    // The manifest goes ahead of the data chunks queued for its Pis: the
    // file is whole once its own chunks are, not after the queue drains.
    const m = await this.storeChunk(mbytes, { copies, urgent: true });
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
    const ahead: { p: Promise<Uint8Array>; size: number }[] = [];
    // Two chunks in flight per node that answers, so no line idles between
    // one chunk and the next (3 hosted Pis at 921600, R=2: 0.79 of the
    // three lines with one per node, 0.99 with two), within 32 MiB.
    const depth = Math.max(2, 2 * this.up().length);
    const bytes = () => ahead.reduce((a, x) => a + x.size, 0);
    return new ReadableStream<Uint8Array>({
      pull: async (ctl) => {
        while (
          i < manifest.chunks.length &&
          (ahead.length === 0 || (ahead.length < depth && bytes() < READ_AHEAD_BYTES))
        ) {
          const [id, size] = manifest.chunks[i++];
          const p = this.getChunk(id).then((b) => {
            if (b.length !== size) {
              throw new Error(`chunk ${id}: ${b.length} bytes, expected ${size}`);
            }
            return b;
          });
          p.catch(() => {});
          ahead.push({ p, size });
        }
        if (ahead.length === 0) return ctl.close();
        ctl.enqueue(await ahead.shift()!.p);
      },
    });
  }

  /**
   * Lends this open store to the commands this process runs for others
   * (`pifs serve`, a mount): until the returned function is called,
   * `Store.open` of the same cluster directory returns this store, with
   * the caller's `copies`, `degraded` and `log`, and its `close` gives it
   * back instead of closing it. One borrower at a time.
   */
  static async lend(dir: string, store: Store): Promise<() => void> {
    const key = await Deno.realPath(dir);
    Store.#lent.set(key, store);
    return () => {
      if (Store.#lent.get(key) === store) Store.#lent.delete(key);
    };
  }

  #borrow(opts: StoreOptions): Store {
    if (this.#lender) {
      throw new ClusterBusyError(`the cluster in ${this.dir} is lent to another command`, this.dir);
    }
    if (opts.copies !== undefined && opts.copies > this.cluster.nodes.length) {
      throw new QuorumError(
        `--copies ${opts.copies}: the cluster has only ${this.cluster.nodes.length} nodes`,
      );
    }
    this.#lender = this.#opts;
    this.#opts = {
      ...this.#opts,
      copies: opts.copies,
      degraded: opts.degraded,
      log: opts.log ?? this.#opts.log,
    };
    return this;
  }

  /** Ends every session and closes the index (after the commits in progress). */
  async close(): Promise<void> {
    if (this.#lender) {
      // Borrowed: the commands this borrower queued finish, then it goes back.
      await this.#drained.catch(() => {});
      this.#opts = this.#lender;
      this.#lender = null;
      return;
    }
    this.#closing = true; // a background catch-up stops; the next open goes on with it
    await this.#drained.catch(() => {});
    await Promise.all(this.up().map((s) => s.client!.close().catch(() => {})));
    this.index.close();
    this.#lock?.release();
    this.#lock = null;
  }
}

/** Whole lines concatenated into parts of at most `max` bytes (a longer line alone). */
function packLines(lines: Uint8Array[], max: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let run: Uint8Array[] = [], size = 0;
  const flush = () => {
    if (run.length) parts.push(concat(run)), run = [], size = 0;
  };
  for (const l of lines) {
    if (size + l.length > max) flush();
    run.push(l), size += l.length;
  }
  flush();
  return parts;
}

/** The parts one after another, in one buffer. */
function concat(parts: Uint8Array[]): Uint8Array {
  const b = new Uint8Array(parts.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const x of parts) b.set(x, o), o += x.length;
  return b;
}

export type { DistributiveOmit } from "./namespace.ts";
