/**
 * `pifs sync`, `pifs schema`, `pifs snapshots`, `pifs diff`.
 *
 * @module
 */
import type { Command } from "commander";
import { Cron } from "croner";
import { Store } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { type JobSpec, loadSpec, SpecError, specJsonSchema } from "../sync/spec.ts";
import { diffSnapshots, runJob, type SyncOptions, type SyncSummary } from "../sync/engine.ts";
import { logRun, readRuns, type RunRecord, withSyncLock } from "../sync/runs.ts";
import { MultiProgress } from "./_progress.ts";
import { humanBytes, info, UsageError } from "./_util.ts";

async function openStore(cluster?: string, copies?: number): Promise<Store> {
  return await Store.open(clusterDir(cluster), { copies, log: info });
}

function summaryText(s: SyncSummary): string {
  const lines = [
    `${s.job}: ${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged` +
    (s.files_failed ? `, ${s.files_failed} FAILED` : "") + ` in ${s.seconds.toFixed(1)} s`,
    `  read ${humanBytes(s.bytes_read)}, sent ${humanBytes(s.wire_bytes)} on the wires; ` +
    `chunks ${s.chunks_new} new, ${s.chunks_deduplicated} deduplicated (ratio ${s.dedup_ratio})`,
  ];
  if (s.snapshot) lines.push(`  snapshot ${s.snapshot}`);
  if (s.snapshots_removed.length) {
    lines.push(`  retention removed ${s.snapshots_removed.join(", ")}`);
  }
  for (const p of s.problems) lines.push(`  problem: ${p.path}: ${p.message}`);
  return lines.join("\n");
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
    store = await Store.open(dir, { log: info });
  } catch (e) {
    const r = record({ error: (e as Error).message });
    await logRun(dir, r);
    return r;
  }
  let read = 0;
  const bar = json ? undefined : new MultiProgress(() => [
    [job.name, read],
    ...[...store.nodes.values()].map((st): [string, number] => [
      `node ${st.entry.id}${st.client ? "" : " DOWN"}`,
      st.client?.bytesWritten ?? 0,
    ]),
  ]);
  const opts: SyncOptions = {
    onBytes: (n) => read += n,
    onEvent: json ? (e) => console.log(JSON.stringify(e)) : undefined,
  };
  let r: RunRecord;
  try {
    const sum = await runJob(store, job, opts);
    bar?.done();
    const { problems: _p, ...rest } = sum;
    r = record({
      outcome: sum.files_failed ? "partial" : "ok",
      summary: { ...rest, problems: sum.problems.length },
    });
    if (json) console.log(JSON.stringify({ ...rest, problems: sum.problems.length }));
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
        }
        return;
      }
      const dir = clusterDir(o.cluster);
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
      "run every job of SPEC files on its cron schedule (one job at a time per cluster), " +
        "logging each run to DIR/jobs.log; stops cleanly on SIGINT/SIGTERM",
    )
    .argument("<specs...>", "job files (YAML)")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--json", "print events as JSON lines")
    .action(async (specs: string[], o) => {
      const dir = clusterDir(o.cluster);
      const jobs = (await loadJobs(specs)).filter((j) => {
        if (!j.schedule) info(`job ${j.name}: no schedule: not run by the daemon`);
        return !!j.schedule;
      });
      if (!jobs.length) throw new UsageError("no job has a schedule: nothing for the daemon to do");
      const queue: JobSpec[] = [];
      let wake: (() => void) | undefined;
      let stopping = false;
      const crons = jobs.map((job) =>
        new Cron(job.schedule!, { protect: true }, () => {
          if (!queue.includes(job)) queue.push(job); // a run still waiting is not queued twice
          wake?.();
        })
      );
      for (const [i, c] of crons.entries()) {
        info(`job ${jobs[i].name}: next run ${c.nextRun()?.toISOString() ?? "never"}`);
      }
      const stop = () => {
        stopping = true;
        for (const c of crons) c.stop();
        wake?.();
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      try {
        while (!stopping) {
          const job = queue.shift();
          if (!job) {
            await new Promise<void>((r) => wake = r);
            wake = undefined;
            continue;
          }
          const r = await withSyncLock(dir, () => runLogged(dir, job, "schedule", !!o.json), {
            wait: true,
          });
          if (r.outcome === "failed") info(`job ${job.name}: failed: ${r.error}`);
        }
      } finally {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
      info("daemon stopped");
    });

  program.command("jobs")
    .description("list the runs of sync jobs on this cluster (from DIR/jobs.log), oldest first")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--job <name>", "only this job's runs")
    .option("--json", "JSON output")
    .action(async (o) => {
      const runs = (await readRuns(clusterDir(o.cluster))).filter((r) => !o.job || r.job === o.job);
      if (o.json) console.log(JSON.stringify(runs));
      else {
        for (const r of runs) {
          const s = r.summary;
          console.log(
            `${r.start}  ${r.job.padEnd(12)} ${r.outcome.padEnd(7)} ${r.trigger.padEnd(8)} ` +
              (s
                ? `${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged, ` +
                  `${s.files_failed} failed; ${humanBytes(s.wire_bytes)} sent`
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
                humanBytes(r.bytes)
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
        const objs = [];
        for (const name of [a, b]) {
          const row = store.index.snapshot(name);
          if (!row) throw new UsageError(`${name}: no such snapshot (see pifs snapshots)`);
          objs.push(await store.snapshotObject(row.root));
        }
        const changes = diffSnapshots(objs[0], objs[1]);
        if (o.json) console.log(JSON.stringify(changes));
        else for (const c of changes) console.log(`${c.kind} ${c.path}`);
      } finally {
        await store.close();
      }
    });
}
