/**
 * Runs of sync jobs on one host: a lock so that one job at a time writes to a
 * cluster, and a log of every run (`DIR/jobs.log`, JSON lines) that
 * `pifs jobs` lists.
 *
 * @module
 */
import type { SyncSummary } from "./engine.ts";

/** One line of `jobs.log`. */
export interface RunRecord {
  /** Job name. */
  job: string;
  /** Job file. */
  spec: string;
  /** Start and end, ISO 8601. */
  start: string;
  /** End of the run. */
  end: string;
  /** `ok`: every file stored; `partial`: some failed; `failed`: the run stopped. */
  outcome: "ok" | "partial" | "failed";
  /** What started it. */
  trigger: "sync" | "schedule";
  /** The summary (ok, partial). */
  summary?: Omit<SyncSummary, "problems"> & { problems: number };
  /** Why it stopped (failed). */
  error?: string;
}

/** Another process holds the cluster's sync lock. */
export class LockedError extends Error {
  /** The error's name. */
  override name = "LockedError";
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound) && (e as Error).name !== "ESRCH" &&
      !/ESRCH|No such process/.test((e as Error).message);
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
