/**
 * `pifs sync`, `pifs schema`, `pifs snapshots`, `pifs diff`.
 *
 * @module
 */
import type { Command } from "commander";
import { Store } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { loadSpec, SpecError, specJsonSchema } from "../sync/spec.ts";
import { diffSnapshots, runJob, type SyncSummary } from "../sync/engine.ts";
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
      const jobs = [];
      for (const f of specs) {
        try {
          jobs.push(...await loadSpec(f));
        } catch (e) {
          if (e instanceof SpecError) throw new UsageError(e.message);
          throw e;
        }
      }
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
      const store = await openStore(o.cluster);
      let failed = false;
      try {
        for (const job of chosen) {
          let read = 0;
          const bar = o.json ? undefined : new MultiProgress(() => [
            [job.name, read],
            ...[...store.nodes.values()].map((st): [string, number] => [
              `node ${st.entry.id}${st.client ? "" : " DOWN"}`,
              st.client?.bytesWritten ?? 0,
            ]),
          ]);
          let sum: SyncSummary;
          try {
            sum = await runJob(store, job, {
              onBytes: (n) => read += n,
              onEvent: o.json ? (e) => console.log(JSON.stringify(e)) : undefined,
            });
          } finally {
            bar?.done();
          }
          if (o.json) {
            const { problems: _p, ...rest } = sum;
            console.log(JSON.stringify({ ...rest, problems: sum.problems.length }));
          } else console.log(summaryText(sum));
          if (sum.files_failed) failed = true;
        }
      } finally {
        await store.close();
      }
      if (failed) Deno.exitCode = 1;
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
