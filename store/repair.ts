/**
 * Scrub and repair: every Pi verifies its own chunks against their hashes
 * on its card (SCRUB: no chunk data crosses the wire), the host checks that
 * every chunk something needs has its copies, and repair re-makes missing
 * and damaged copies from healthy ones, onto the Pis placement chooses.
 * Both are safe to interrupt and run again.
 *
 * @module
 */
import { chunkId } from "../ids.ts";
import type { Store } from "./store.ts";

/** One Pi's part of a scrub. */
export interface NodeScrub {
  /** Node id. */
  node: number;
  /** Chunks it verified (0 when not asked to). */
  checked: number;
  /** Chunks whose bytes on its card no longer match their id. */
  damaged: string[];
  /** Why it could not be scrubbed (down, failed). */
  error?: string;
}

/** A chunk without the copies it should have, or with more. */
export interface ChunkProblem {
  /** Chunk id. */
  id: string;
  /** Copies it should have. */
  want: number;
  /** Nodes that hold a healthy copy (or one on a node that is down, which counts as held). */
  healthy: number[];
  /** Nodes whose copy is damaged. */
  damaged: number[];
}

/** What {@linkcode scrub} found. */
export interface ScrubReport {
  /** Per node: chunks verified and those found damaged. */
  nodes: NodeScrub[];
  /** Chunks something needs (files, snapshots, the checkpoint). */
  referenced: number;
  /** Needed chunks with fewer healthy copies than they should have (including damaged ones). */
  missing: ChunkProblem[];
  /** Needed chunks with more copies than they should have. */
  over: ChunkProblem[];
  /** Needed chunks with no healthy copy anywhere: data lost unless a down Pi returns. */
  lost: ChunkProblem[];
}

/** Options of {@linkcode scrub}. */
export interface ScrubOptions {
  /** Verify only this node's card (the copy check still covers every node). */
  node?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/**
 * Scrubs the cluster: each Pi that answers (or only `node`) verifies every
 * chunk on its card; then every needed chunk's copies are counted. The
 * index's record of where copies are is brought up to date from the Pis'
 * lists on the way.
 */
export async function scrub(store: Store, opts: ScrubOptions = {}): Promise<ScrubReport> {
  const up = store.up();
  if (opts.node !== undefined && !store.nodes.has(opts.node)) {
    throw new Error(`--node ${opts.node}: no such node in this cluster`);
  }
  const nodes: NodeScrub[] = [];
  const listed = new Map<number, Set<string>>();
  const damagedOn = new Map<string, Set<number>>();
  const forgotten = new Set(store.index.forgotten());
  await Promise.all([...store.nodes.values()].map(async (st) => {
    const id = st.entry.id;
    if (forgotten.has(id)) return; // lost for good: nothing to verify there
    if (!st.client) {
      if (opts.node === undefined || opts.node === id) {
        nodes.push({
          node: id,
          checked: 0,
          damaged: [],
          error: `down: ${st.error ?? "no answer"}`,
        });
      }
      return;
    }
    try {
      const list = await st.client.listChunks();
      listed.set(id, new Set(list.map((c) => c.id)));
      for (const c of list) store.index.addLocation(c.id, c.size, id);
      if (opts.node !== undefined && opts.node !== id) return;
      opts.log?.(`node ${id}: verifying ${list.length} chunks on its card`);
      const r = await st.client.scrub();
      for (const b of r.bad) {
        if (!damagedOn.has(b.id)) damagedOn.set(b.id, new Set());
        damagedOn.get(b.id)!.add(id);
      }
      nodes.push({ node: id, checked: r.checked, damaged: r.bad.map((b) => b.id).sort() });
    } catch (e) {
      nodes.push({ node: id, checked: 0, damaged: [], error: (e as Error).message });
    }
  }));
  nodes.sort((a, b) => a.node - b.node);
  const upIds = new Set(up.map((s) => s.entry.id));
  const referenced = store.index.referenced();
  // A copy the index places on a node that answers but does not list it is gone.
  for (const { id: cid } of referenced) {
    for (const n of store.index.locations(cid)) {
      if (listed.get(n) && !listed.get(n)!.has(cid)) store.index.removeLocation(cid, n);
    }
  }
  const report: ScrubReport = {
    nodes,
    referenced: 0,
    missing: [],
    over: [],
    lost: [],
  };
  for (const { id, copies } of referenced) {
    report.referenced++;
    const want = Math.min(copies || store.copies, store.nodes.size);
    const holders = store.index.locations(id);
    const damaged = holders.filter((n) => upIds.has(n) && damagedOn.get(id)?.has(n));
    const healthy = holders.filter((n) => !damaged.includes(n));
    const p: ChunkProblem = { id, want, healthy, damaged };
    if (healthy.length === 0) report.lost.push(p);
    else if (healthy.length < want) report.missing.push(p);
    else if (healthy.length > want) report.over.push(p);
  }
  return report;
}

/** What {@linkcode repair} did. */
export interface RepairResult {
  /** The scrub it started from. */
  scrub: ScrubReport;
  /** Damaged copies deleted from their Pis. */
  deleted: number;
  /** Copies made (for damaged and missing ones). */
  copied: number;
  /** Chunks it could not repair, and why. */
  failed: { id: string; error: string }[];
}

/** Options of {@linkcode repair}. */
export interface RepairOptions extends ScrubOptions {
  /** Called after each chunk short of copies is dealt with. */
  onChunk?: (done: number, total: number) => void;
  /**
   * A scrub of this same open store, just made (the daemon's): repair works
   * from it instead of scrubbing again. Nothing may have changed the cluster
   * in between (the store stays open, so no other command can).
   */
  report?: ScrubReport;
  /** Chunks repaired at once (default 4; 1: one after the other). */
  parallel?: number;
}

/**
 * Repairs what a scrub finds: each damaged copy is deleted from its Pi, and
 * every chunk short of copies gets new ones from a healthy copy (read and
 * hash-checked), on the Pis placement ranks first among those that answer
 * and lack it. A chunk with no healthy copy cannot be repaired and is
 * reported. Interrupted, it leaves nothing half done that a rerun does not
 * finish.
 */
export async function repair(
  store: Store,
  opts: RepairOptions = {},
): Promise<RepairResult> {
  const report = opts.report ?? await scrub(store, opts);
  const result: RepairResult = { scrub: report, deleted: 0, copied: 0, failed: [] };
  const todo = report.missing;
  let done = 0;
  let next = 0;
  // Fault injection for the tests: the process kills itself right after
  // deleting the first damaged copy, as a host losing power would stop.
  const crashAfterDelete = Deno.env.get("PIFS_CRASH_AT") === "repair-deleted";
  const one = async (p: ChunkProblem) => {
    for (const n of p.damaged) {
      await store.nodes.get(n)!.client!.deleteChunk(p.id);
      store.index.removeLocation(p.id, n);
      result.deleted++;
      if (crashAfterDelete) Deno.kill(Deno.pid, "SIGKILL");
    }
    const source = p.healthy.map((n) => store.nodes.get(n)!).find((st) => st.client);
    if (!source) throw new Error("its healthy copies are all on Pis that are down");
    const data = await source.client!.getChunk(p.id);
    if (await chunkId(data) !== p.id) {
      throw new Error(`node ${source.entry.id}'s copy is damaged`);
    }
    const before = store.index.locations(p.id).length;
    const r = await store.storeChunk(data, { id: p.id, copies: p.want });
    result.copied += r.nodes.length - before;
  };
  // A few chunks at a time, so that reading one chunk from its healthy copy
  // overlaps writing the one before to its new Pi (each on its own line).
  const worker = async () => {
    while (next < todo.length) {
      const p = todo[next++];
      try {
        await one(p);
      } catch (e) {
        result.failed.push({ id: p.id, error: (e as Error).message });
      }
      opts.onChunk?.(++done, todo.length);
    }
  };
  const parallel = Math.max(1, Math.floor(opts.parallel ?? 4));
  await Promise.all(Array.from({ length: Math.min(parallel, todo.length) }, worker));
  for (const p of report.lost) {
    result.failed.push({ id: p.id, error: "no healthy copy on any Pi" });
  }
  return result;
}
