/**
 * `pifs sync`, `pifs schema`, `pifs snapshots`, `pifs diff`.
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import { type Command, Option } from "commander";
import { Cron } from "croner";
import { resolve } from "node:path";
import { printable } from "../errors.ts";
import { ClusterBusyError, Store } from "../store/store.ts";
import { clusterDir, readClusterFile } from "../store/cluster.ts";
import { type JobSpec, loadSpec, SpecError, specJsonSchema } from "../sync/spec.ts";
import { diffSnapshots } from "../store/snapshots.ts";
import {
  newSyncProgress,
  runJob,
  type SyncOptions,
  type SyncProgress,
  type SyncSummary,
} from "../sync/engine.ts";
import { logRun, readRuns, type RunRecord, withSyncLock } from "../sync/runs.ts";
import { estimateNodeTotals, MultiProgress, type ProgressRow } from "./_progress.ts";
import { info, UsageError } from "./_util.ts";
import { DEFAULT_SCRUB, maintenanceText, runScrub, scrubSchedule } from "./_maintenance.ts";
import { holderPresent, runningForOthers } from "./_serve.ts";

/** The scrub's name in the daemon's queue: no job can have it (job names start with a letter or digit). */
const SCRUB_TASK = "(scrub)";

async function openStore(cluster?: string, copies?: number): Promise<Store> {
  return await Store.open(clusterDir(cluster), { copies, log: info });
}

function summaryText(s: SyncSummary): string {
  const lines = [
    `${s.job}: ${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged` +
    (s.files_failed ? `, ${s.files_failed} FAILED` : "") +
    (s.files_skipped ? `, ${s.files_skipped} skipped` : "") +
    (s.duplicates ? `, ${s.duplicates} duplicate${s.duplicates === 1 ? "" : "s"} left out` : "") +
    ` in ${s.seconds.toFixed(1)} s`,
    `  read ${formatBytes(s.bytes_read)}, sent ${formatBytes(s.wire_bytes)} on the wires; ` +
    `chunks ${s.chunks_new} new, ${s.chunks_deduplicated} deduplicated (ratio ${s.dedup_ratio})`,
  ];
  if (s.snapshot) lines.push(`  snapshot ${s.snapshot}`);
  if (s.snapshots_removed.length) {
    lines.push(`  retention removed ${s.snapshots_removed.join(", ")}`);
  }
  const notes = new Map<string, string[]>();
  for (const n of s.notes) notes.set(n.note, [...(notes.get(n.note) ?? []), n.path]);
  for (const [note, paths] of notes) {
    const shown = paths.slice(0, 10).map(printable).join(", ");
    lines.push(`  ${paths.length} ${note}: ${shown}${paths.length > 10 ? `, …` : ""}`);
  }
  for (const p of s.problems) {
    lines.push(`  ${p.skipped ? "skipped" : "FAILED"}: ${printable(p.path)}: ${p.message}`);
  }
  if (s.files_failed) {
    lines.push(
      `  ${s.files_failed} file${s.files_failed === 1 ? " was" : "s were"} not stored: the run ` +
        `is partial (exit code 1)`,
    );
  }
  return lines.join("\n");
}

/**
 * The progress lines of a sync run: the job (files done of listed, bytes read
 * of the bytes it will read, ETA), then each Pi (bytes this run wrote to its
 * link, of an estimate of its total: see {@linkcode estimateNodeTotals}).
 */
export function syncRows(
  job: string,
  p: SyncProgress,
  nodes: { id: number; wire: number; up: boolean }[],
): ProgressRow[] {
  const totals = estimateNodeTotals(p, nodes.map((n) => n.wire), nodes.map((n) => n.up));
  const rows: ProgressRow[] = [{
    label: job,
    done: p.bytes_read,
    total: Math.max(0, p.bytes_listed - p.bytes_skipped),
    approx: !p.listing_done || p.sizes_unknown > 0,
    files: { done: p.files_done, total: p.files_listed, more: !p.listing_done },
  }];
  for (const [i, n] of nodes.entries()) {
    rows.push({
      label: `node ${n.id}`,
      done: n.wire,
      total: totals[i],
      approx: true,
      note: n.up ? undefined : "DOWN",
    });
  }
  return rows;
}

/**
 * What a run of `job` would find missing now: local source folders that do
 * not exist or are not directories (the job file is valid; the run would
 * fail on them).
 */
async function sourceWarnings(job: JobSpec): Promise<string[]> {
  const folders = job.sources.flatMap((s) =>
    s.kind === "folder" ? [s.path] : s.kind === "photos" ? s.paths : []
  );
  const out: string[] = [];
  for (const f of folders) {
    const st = await Deno.stat(f).catch(() => undefined);
    if (!st) out.push(`source folder ${f} does not exist (yet?)`);
    else if (!st.isDirectory) out.push(`source ${f} is not a directory`);
  }
  return out;
}

/** Loads every job of the spec files; a bad spec is a UsageError with all its issues. */
async function loadJobs(specs: string[]): Promise<JobSpec[]> {
  const jobs: JobSpec[] = [];
  for (const f of specs) {
    try {
      jobs.push(...await loadSpec(f));
    } catch (e) {
      if (e instanceof SpecError) throw new UsageError(e.message);
      throw e;
    }
  }
  const seen = new Map<string, string>();
  for (const j of jobs) {
    const other = seen.get(j.name);
    if (other) {
      throw new UsageError(`job ${j.name}: defined in ${other} and in ${j.specFile}`);
    }
    seen.set(j.name, j.specFile);
  }
  return jobs;
}

/**
 * Runs one job with a progress display (or JSON events), prints its summary
 * and appends the run to DIR/jobs.log. The caller holds the sync lock.
 */
async function runLogged(
  dir: string,
  job: JobSpec,
  trigger: RunRecord["trigger"],
  json: boolean,
): Promise<RunRecord> {
  const start = new Date().toISOString();
  const record = (r: Partial<RunRecord>): RunRecord => ({
    kind: "sync",
    job: job.name,
    spec: job.specFile,
    start,
    end: new Date().toISOString(),
    outcome: "failed",
    trigger,
    ...r,
  });
  let store: Store;
  try {
    // A scheduled run waits for a command that holds the lines (up to 10
    // minutes); a run by hand says at once that the cluster is busy.
    store = await Store.open(dir, {
      log: info,
      busyWaitMs: trigger === "schedule" ? 600_000 : 0,
    });
  } catch (e) {
    // Held open by `pifs serve` or a mount: the whole command runs there (main).
    if (
      trigger !== "schedule" && e instanceof ClusterBusyError && !runningForOthers() &&
      await holderPresent(dir)
    ) throw e;
    const r = record({ error: (e as Error).message });
    await logRun(dir, r);
    return r;
  }
  const progress = newSyncProgress();
  // Bytes this run wrote to each Pi's link (a reconnected Pi's client counts from 0).
  const links = [...store.nodes.values()].map((st) => ({
    st,
    client: st.client,
    base: st.client?.bytesWritten ?? 0,
    wire: 0,
  }));
  const bar = json ? undefined : new MultiProgress(() =>
    syncRows(
      job.name,
      progress,
      links.map((l) => {
        const c = l.st.client;
        if (c && c !== l.client) {
          l.base = c.bytesWritten - l.wire; // a new connection: go on from here
          l.client = c;
        }
        if (c) l.wire = c.bytesWritten - l.base;
        return { id: l.st.entry.id, wire: l.wire, up: !!c };
      }),
    )
  );
  const opts: SyncOptions = {
    progress,
    onEvent: json ? (e) => console.log(JSON.stringify(e)) : undefined,
  };
  let r: RunRecord;
  try {
    const sum = await runJob(store, job, opts);
    bar?.done();
    // In jobs.log and the last line: counts (the "done" event has the lists).
    const { problems: _p, notes: _n, ...rest } = sum;
    const counted = { ...rest, problems: sum.problems.length, notes: sum.notes.length };
    r = record({ outcome: sum.files_failed ? "partial" : "ok", summary: counted });
    if (json) console.log(JSON.stringify(counted));
    else console.log(summaryText(sum));
  } catch (e) {
    bar?.done();
    r = record({ error: (e as Error).message });
  } finally {
    await store.close();
  }
  await logRun(dir, r);
  return r;
}

/** A job file as the daemon last read it. */
interface WatchedSpec {
  /** Its mtime (ms) and size when read: a change of either reads it again. */
  stamp: string;
  /** Its jobs (the last valid version's, while it is invalid). */
  jobs: JobSpec[];
  /** Why the last read failed, while the file is invalid. */
  error?: string;
  /** One cron per job with a schedule. */
  crons: Cron[];
}

/**
 * The daemon's job files: read at start, read again when their mtime or size
 * changes (checked every `pollMs`, and before each run), each job on its cron
 * schedule. A file that becomes invalid is reported once in the log; its jobs
 * are then not run (each scheduled run is logged as failed, naming the error)
 * until it is valid again, and the other files' jobs go on.
 */
export class SpecWatcher {
  #files: string[];
  #log: (msg: string) => void;
  #pollMs: number;
  #specs = new Map<string, WatchedSpec>();
  /** Tasks that are not jobs (the scrub), each on its own cron, by queue name. */
  #tasks = new Map<string, Cron>();
  #queue: string[] = [];
  #wake?: () => void;
  #timer?: ReturnType<typeof setInterval>;
  #stopped = false;
  #refreshing?: Promise<void>;

  /** Watches `files` (relative to the working directory); messages go to `log`. */
  constructor(files: string[], log: (msg: string) => void, pollMs = 1000) {
    // Absolute, as the jobs' `specFile`: the jobs of a file are found by it.
    this.#files = files.map((f) => resolve(f));
    this.#log = log;
    this.#pollMs = pollMs;
  }

  static async #stamp(file: string): Promise<string> {
    try {
      const st = await Deno.stat(file);
      return `${st.mtime?.getTime() ?? 0}:${st.size}`;
    } catch (e) {
      return `error:${(e as Error).name}`;
    }
  }

  /** Reads every file (a bad one is a UsageError) and starts the schedules. */
  async start(): Promise<void> {
    const stamps = await Promise.all(this.#files.map((f) => SpecWatcher.#stamp(f)));
    const jobs = await loadJobs(this.#files);
    for (const [i, f] of this.#files.entries()) {
      const mine = jobs.filter((j) => j.specFile === f);
      this.#specs.set(f, { stamp: stamps[i], jobs: mine, crons: [] });
      this.#schedule(f);
    }
    this.#timer = setInterval(() => void this.refresh(), this.#pollMs);
  }

  /** Whether any job has a schedule. */
  scheduled(): boolean {
    return [...this.#specs.values()].some((s) => s.crons.length > 0);
  }

  /**
   * Queues `name` on the cron `pattern` too, as a job's schedule does (not
   * queued twice; run one at a time with the jobs, in the order due). Meant
   * for names no job can have (a job name starts with a letter or digit).
   */
  addTask(name: string, pattern: string, label = name): void {
    this.#tasks.get(name)?.stop();
    const c = new Cron(pattern, { protect: true }, () => {
      if (!this.#queue.includes(name)) this.#queue.push(name);
      this.#wake?.();
    });
    this.#tasks.set(name, c);
    this.#log(`${label}: ${pattern}: next run ${c.nextRun()?.toISOString() ?? "never"}`);
  }

  /** The current version of a job, by name. */
  job(name: string): JobSpec | undefined {
    for (const s of this.#specs.values()) {
      const j = s.jobs.find((x) => x.name === name);
      if (j) return j;
    }
    return undefined;
  }

  /** Why a job file is invalid now, or undefined. */
  invalid(file: string): string | undefined {
    return this.#specs.get(file)?.error;
  }

  /** The next job due (by name); undefined once stopped. */
  async next(): Promise<string | undefined> {
    while (!this.#stopped) {
      const name = this.#queue.shift();
      if (name !== undefined) return name;
      await new Promise<void>((r) => this.#wake = r);
      this.#wake = undefined;
    }
    return undefined;
  }

  /** Reads again the files whose mtime or size changed. */
  refresh(): Promise<void> {
    // One refresh at a time; a caller during one waits for it and checks again.
    const run = async () => {
      for (const f of this.#files) {
        if (this.#stopped) return;
        const stamp = await SpecWatcher.#stamp(f);
        const cur = this.#specs.get(f)!;
        if (stamp === cur.stamp) continue;
        cur.stamp = stamp;
        await this.#reload(f, cur);
      }
    };
    const p = (this.#refreshing ?? Promise.resolve()).then(run);
    this.#refreshing = p.finally(() => {
      if (this.#refreshing === p) this.#refreshing = undefined;
    });
    return p;
  }

  async #reload(file: string, cur: WatchedSpec): Promise<void> {
    let jobs: JobSpec[];
    try {
      jobs = await loadSpec(file);
      for (const j of jobs) {
        for (const [other, s] of this.#specs) {
          if (other !== file && !s.error && s.jobs.some((x) => x.name === j.name)) {
            throw new Error(`job ${j.name}: defined in ${other} and in ${file}`);
          }
        }
      }
    } catch (e) {
      const msg = (e as Error).message;
      if (cur.error !== msg) {
        this.#log(
          `${file}: changed and now invalid; its jobs are not run until it is fixed:\n${msg}`,
        );
      }
      cur.error = msg;
      return;
    }
    const was = cur.error !== undefined;
    cur.error = undefined;
    cur.jobs = jobs;
    this.#log(
      `${file}: ${was ? "fixed" : "changed"}, read again: ${
        jobs.map((j) => j.name).join(", ") || "no jobs"
      }`,
    );
    this.#schedule(file);
  }

  /** (Re)starts the crons of one file's jobs. */
  #schedule(file: string): void {
    const cur = this.#specs.get(file)!;
    for (const c of cur.crons) c.stop();
    cur.crons = [];
    // Queued runs of jobs that are gone, or lost their schedule, are dropped.
    const names = new Set(cur.jobs.filter((j) => j.schedule).map((j) => j.name));
    this.#queue = this.#queue.filter((n) =>
      names.has(n) || this.#tasks.has(n) || this.#scheduledElsewhere(file, n)
    );
    for (const job of cur.jobs) {
      if (!job.schedule) {
        this.#log(`job ${job.name}: no schedule: not run by the daemon`);
        continue;
      }
      const name = job.name;
      const c = new Cron(job.schedule, { protect: true }, () => {
        if (!this.#queue.includes(name)) this.#queue.push(name); // not queued twice
        this.#wake?.();
      });
      cur.crons.push(c);
      this.#log(`job ${name}: next run ${c.nextRun()?.toISOString() ?? "never"}`);
    }
  }

  /** Whether a file other than `file` has a scheduled job `name`. */
  #scheduledElsewhere(file: string, name: string): boolean {
    for (const [f, s] of this.#specs) {
      if (f !== file && s.jobs.some((j) => j.name === name && j.schedule)) return true;
    }
    return false;
  }

  /** Stops the schedules, the polling and {@linkcode SpecWatcher.next}. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const s of this.#specs.values()) for (const c of s.crons) c.stop();
    for (const c of this.#tasks.values()) c.stop();
    this.#wake?.();
  }
}

/** Registers the sync commands. */
export function registerSync(program: Command): void {
  program.command("sync")
    .description(
      "run the jobs of SPEC files: stream their sources into the store with " +
        "content-defined chunking and deduplication, then snapshot each target",
    )
    .argument("<specs...>", "job files (YAML)")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--check", "validate the job files only")
    .option("--job <name>", "run only this job")
    .option("--json", "print events as JSON lines; the last line is the summary")
    .action(async (specs: string[], o) => {
      const jobs = await loadJobs(specs);
      const chosen = o.job ? jobs.filter((j) => j.name === o.job) : jobs;
      if (o.job && chosen.length === 0) {
        throw new UsageError(`--job ${o.job}: no such job in ${specs.join(", ")}`);
      }
      if (o.check) {
        for (const j of chosen) {
          console.log(
            `${j.specFile}: job ${j.name} ok: ${j.sources.length} source(s) into ${j.target}`,
          );
          for (const w of await sourceWarnings(j)) {
            info(`${j.specFile}: job ${j.name}: warning: ${w}`);
          }
        }
        return;
      }
      const dir = clusterDir(o.cluster);
      await readClusterFile(dir); // no cluster there: say so, not that a lock file is missing
      let failed = false;
      await withSyncLock(dir, async () => {
        for (const job of chosen) {
          const r = await runLogged(dir, job, "sync", !!o.json);
          if (r.outcome !== "ok") failed = true;
          if (r.outcome === "failed") {
            console.error(`pifs: job ${job.name}: ${r.error}`);
            break;
          }
        }
      });
      if (failed) Deno.exitCode = 1;
    });

  program.command("daemon")
    .description(
      "run every job of SPEC files on its cron schedule, and scrub the cluster on its own " +
        "schedule (--scrub), repairing at once what the scrub finds short of copies (unless " +
        "--no-repair); one job, scrub or repair at a time per cluster, each logged to " +
        "DIR/jobs.log (see pifs jobs). An edited SPEC is read again (one that became invalid is " +
        "logged and its jobs wait until it is fixed); stops cleanly on SIGINT/SIGTERM",
    )
    .argument("[specs...]", "job files (YAML); none: the daemon only scrubs")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .addOption(
      new Option(
        "--scrub <cron>",
        "when to scrub (each Pi verifies its card; every needed chunk's copies counted): a " +
          "cron pattern (5 fields, or 6 with seconds first; local time), or off",
      ).argParser(scrubSchedule).default(DEFAULT_SCRUB, `"${DEFAULT_SCRUB}", Sundays at 03:00`),
    )
    .option("--no-repair", "only report what a scrub finds (in jobs.log); do not repair it")
    .option("--json", "print events as JSON lines")
    .action(async (specs: string[], o) => {
      const dir = clusterDir(o.cluster);
      await readClusterFile(dir); // no cluster there: say so now, not at the first run
      const scrubCron: string | undefined = o.scrub;
      if (specs.length === 0 && !scrubCron) {
        throw new UsageError("no job files and --scrub off: nothing for the daemon to do");
      }
      if (!scrubCron && !o.repair) {
        throw new UsageError("--no-repair: only with a scrub schedule (--scrub is off)");
      }
      const daemon = new SpecWatcher(specs, info);
      await daemon.start(); // bad specs at start are a usage error, as for sync
      if (!daemon.scheduled()) {
        if (!scrubCron) {
          daemon.stop();
          throw new UsageError("no job has a schedule: nothing for the daemon to do");
        }
        if (specs.length) info("no job has a schedule: the daemon only scrubs");
      }
      if (scrubCron) {
        daemon.addTask(SCRUB_TASK, scrubCron, `scrub${o.repair ? " and repair" : " (no repair)"}`);
      }
      let stopping = false;
      const stop = () => {
        stopping = true;
        daemon.stop();
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      try {
        while (!stopping) {
          const name = await daemon.next();
          if (name === undefined) break;
          if (name === SCRUB_TASK) {
            await withSyncLock(dir, () =>
              runScrub(dir, {
                repair: o.repair,
                log: info,
                onRecord: o.json ? (r) => console.log(JSON.stringify(r)) : undefined,
              }), { wait: true });
            continue;
          }
          // An edited spec is read again before its job runs.
          await daemon.refresh();
          const job = daemon.job(name);
          if (!job) continue; // removed from its spec meanwhile
          let r: RunRecord;
          const invalid = daemon.invalid(job.specFile);
          if (invalid) {
            const now = new Date().toISOString();
            r = {
              job: name,
              spec: job.specFile,
              start: now,
              end: now,
              outcome: "failed",
              trigger: "schedule",
              error: `not run: the job file is invalid: ${invalid}`,
            };
            await logRun(dir, r);
          } else {
            r = await withSyncLock(dir, () => runLogged(dir, job, "schedule", !!o.json), {
              wait: true,
            });
          }
          if (r.outcome === "failed") info(`job ${name}: failed: ${r.error}`);
        }
      } finally {
        daemon.stop();
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
      info("daemon stopped");
    });

  program.command("jobs")
    .description(
      "list the runs of sync jobs, and the daemon's scrubs and repairs, on this cluster " +
        "(from DIR/jobs.log), oldest first",
    )
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--job <name>", "only this job's runs")
    .option("--json", "JSON output")
    .action(async (o) => {
      const dir = clusterDir(o.cluster);
      await readClusterFile(dir); // no cluster there: say so, not "no runs"
      const runs = (await readRuns(dir)).filter((r) => !o.job || r.job === o.job);
      if (o.json) console.log(JSON.stringify(runs));
      else {
        for (const r of runs) {
          const s = r.summary;
          console.log(
            `${r.start}  ${r.job.padEnd(12)} ${r.outcome.padEnd(7)} ${r.trigger.padEnd(8)} ` +
              (r.scrub || r.repair
                ? maintenanceText(r)
                : s
                ? `${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged, ` +
                  `${s.files_failed} failed; ${formatBytes(s.wire_bytes)} sent`
                : r.error ?? ""),
          );
        }
      }
    });

  program.command("schema")
    .description("print the JSON Schema of job files (for editors)")
    .action(() => {
      console.log(JSON.stringify(specJsonSchema(), null, 2));
    });

  program.command("snapshots")
    .description("list snapshots (oldest first)")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--job <name>", "only this job's")
    .option("--json", "JSON output")
    .action(async (o) => {
      const store = await openStore(o.cluster);
      try {
        const rows = store.index.snapshots(o.job);
        if (o.json) console.log(JSON.stringify(rows));
        else {
          for (const r of rows) {
            console.log(
              `${r.name}  ${new Date(r.time).toISOString()}  ${r.target}  ${r.files} files  ${
                formatBytes(r.bytes)
              }`,
            );
          }
        }
      } finally {
        await store.close();
      }
    });

  program.command("diff")
    .description(
      "what changed from snapshot SNAP1 to SNAP2 (+ added, - removed, M content, m mode/time)",
    )
    .argument("<snap1>", "older snapshot")
    .argument("<snap2>", "newer snapshot")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--json", "JSON output")
    .action(async (a: string, b: string, o) => {
      const store = await openStore(o.cluster);
      try {
        const roots = [a, b].map((name) => {
          const row = store.index.snapshot(name);
          if (!row) throw new UsageError(`${name}: no such snapshot (see pifs snapshots)`);
          return row.root;
        });
        const changes = await diffSnapshots(store, roots[0], roots[1]);
        if (o.json) console.log(JSON.stringify(changes));
        else for (const c of changes) console.log(`${c.kind} ${c.path}`);
      } finally {
        await store.close();
      }
    });
}
