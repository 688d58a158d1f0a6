/**
 * Runs of sync jobs on one host: a lock so that one job at a time writes to a
 * cluster, and a log of every run (`DIR/jobs.log`, JSON lines) that
 * `pifs jobs` lists.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import type { SyncSummary } from "./engine.ts";

/** What a scrub the daemon ran found (a `jobs.log` line of kind `scrub`). */
export interface ScrubRecord {
  /** Per Pi: chunks verified on its card, how many were damaged, or why it was not scrubbed. */
  nodes: { node: number; checked: number; damaged: number; error?: string }[];
  /** Chunks a file, snapshot or the checkpoint needs. */
  referenced: number;
  /** Needed chunks short of healthy copies (including those with a damaged copy). */
  missing: number;
  /** Of those, the ones with a damaged copy. */
  damaged: number;
  /** Needed chunks with no healthy copy anywhere. */
  lost: number;
  /** Needed chunks with more copies than they should have. */
  over: number;
  /** The first chunks (up to 20) short of copies or lost: id, healthy copies of wanted, damaged on. */
  problems: { id: string; healthy: number; want: number; damaged: number[] }[];
}

/** What a repair the daemon ran did (a `jobs.log` line of kind `repair`). */
export interface RepairRecord {
  /** Damaged copies deleted from their Pis. */
  deleted: number;
  /** Copies made. */
  copied: number;
  /** Chunks it could not repair. */
  failed: number;
  /** The first of those (up to 20), and why. */
  errors: { id: string; error: string }[];
}

/** One line of `jobs.log`. */
export interface RunRecord {
  /**
   * What ran: a sync job (also when absent, as in lines written before
   * scrubs were logged), or the daemon's scheduled scrub or the repair it
   * started.
   */
  kind?: "sync" | "scrub" | "repair";
  /** Job name (`scrub` or `repair` for those kinds). */
  job: string;
  /** Job file (empty for a scrub or repair). */
  spec: string;
  /** Start and end, ISO 8601. */
  start: string;
  /** End of the run. */
  end: string;
  /**
   * Sync: `ok`: every file stored; `partial`: some failed; `failed`: the run
   * stopped. Scrub: `ok`: nothing wrong; `partial`: it found something wrong,
   * or could not verify a Pi; `failed`: it could not run. Repair: `ok`: every
   * chunk repaired; `partial`: some could not be; `failed`: it stopped.
   */
  outcome: "ok" | "partial" | "failed";
  /** What started it: `pifs sync`, the daemon's schedule, or (a repair) the scrub before it. */
  trigger: "sync" | "schedule" | "scrub";
  /** The summary (ok, partial). */
  summary?: Omit<SyncSummary, "problems" | "notes"> & { problems: number; notes?: number };
  /** What a scrub found. */
  scrub?: ScrubRecord;
  /** What a repair did. */
  repair?: RepairRecord;
  /** Why it stopped (failed). */
  error?: string;
}

/** Another process holds the cluster's sync lock. */
export class LockedError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "LOCKED";
  /** The error's name. */
  override name = "LockedError";
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound); // ESRCH: no such process
  }
}

/**
 * Runs fn holding `DIR/sync.lock` (created exclusively, holding our pid). A
 * lock left by a process that died is taken over; one held by a live
 * process is a {@linkcode LockedError} naming it, unless `wait` is set, in
 * which case it waits for it.
 */
export async function withSyncLock<T>(
  dir: string,
  fn: () => Promise<T>,
  opts: { wait?: boolean } = {},
): Promise<T> {
  const path = `${dir}/sync.lock`;
  for (;;) {
    try {
      const f = await Deno.open(path, { write: true, createNew: true });
      await f.write(new TextEncoder().encode(`${Deno.pid}\n`));
      f.close();
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      const pid = Number((await Deno.readTextFile(path).catch(() => "")).trim());
      if (!pid || !alive(pid)) {
        await Deno.remove(path).catch(() => {});
        continue; // stale: its process is gone
      }
      if (!opts.wait) {
        throw new LockedError(
          `${path}: a sync of this cluster is running (pid ${pid}); wait for it or stop it`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** Appends a run to `DIR/jobs.log`. */
export async function logRun(dir: string, r: RunRecord): Promise<void> {
  await Deno.writeTextFile(`${dir}/jobs.log`, JSON.stringify(r) + "\n", { append: true });
}

/** The runs in `DIR/jobs.log`, oldest first (a damaged line is skipped). */
export async function readRuns(dir: string): Promise<RunRecord[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(`${dir}/jobs.log`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: RunRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // a line cut by a crash: the runs around it still count
    }
  }
  return out;
}
