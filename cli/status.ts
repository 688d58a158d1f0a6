/**
 * `pifs status`.
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import { type Command, Option } from "commander";
import { type NodeClient, sdCardText, sdInitStepText } from "../link/client.ts";
import { statusToStr } from "../link/codec.ts";
import { connectNode } from "../store/cluster.ts";
import { withCluster } from "./_util.ts";
import { lockCluster, Store } from "../store/store.ts";
import { runningForOthers } from "./_serve.ts";
import { DatabaseSync } from "node:sqlite";

/**
 * Nodes the host's index records as retired (drained) or lost for good
 * (forgotten); none when there is no index yet (it is only a cache).
 */
function retiredNodes(dir: string): Set<number> {
  try {
    const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
    try {
      return new Set(
        (db.prepare("SELECT node FROM forgotten").all() as { node: number }[]).map((r) => r.node),
      );
    } finally {
      db.close();
    }
  } catch {
    return new Set();
  }
}

/** Adds `status` to `program`. */
export function registerStatus(program: Command): void {
  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");
  program.command("status")
    .description(
      "each node: id, board, firmware, capacity, free, chunks, and whether it answers " +
        "(retired nodes are listed as such); exit 1 if a node in use does not answer",
    )
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      const rows = await withCluster(o, async (dir, c) => {
        const retired = retiredNodes(dir);
        // Run for another command by the cluster's holder (`pifs serve`, a
        // mount): its open sessions are asked, never a second one on a line.
        const held = runningForOthers() ? await Store.open(dir) : undefined;
        // Otherwise the lines are taken as every command takes them.
        const lock = held ? null : await lockCluster(dir);
        try {
          return await Promise.all(c.nodes.map(async (n) => {
            const row: Record<string, unknown> = { id: n.id, tty: n.tty, answers: false };
            if (retired.has(n.id)) {
              // Drained or lost for good: the cluster no longer uses it.
              row.retired = true;
              return row;
            }
            let client: NodeClient | undefined;
            const own = held?.nodes.get(n.id)?.client;
            try {
              if (held && !own) throw new Error(held.nodes.get(n.id)?.error ?? "down");
              client = own ??
                await connectNode(dir, c, n, { timeoutMs: 1000, helloRetries: 2, retries: 2 });
              const i = await client.info();
              // A tty path can lead to another Pi (a re-enumerated USB adapter,
              // a reused pty): only this cluster's node K counts as node K.
              if (i.status === 0 && (i.clusterId !== c.cluster_id || i.nodeId !== n.id)) {
                throw new Error(
                  `${n.tty} answers as node ${i.nodeId} of cluster ${i.clusterId}, not node ${n.id} of this cluster`,
                );
              }
              Object.assign(row, {
                answers: true,
                board: client.hello.board,
                firmware: client.hello.firmware,
                card: i.status === 0 ? "ok" : statusToStr(i.status) +
                  (i.cardInitStep
                    ? ` (SD start-up failed at ${sdInitStepText(i.cardInitStep)})`
                    : ""),
                card_init_step: i.cardInitStep,
                card_init_tries: i.cardInitTries,
                cluster_ok: i.clusterId === c.cluster_id,
                capacity: i.capacity,
                free: i.free,
                chunks: i.chunks,
                journal_bytes: i.journalLength,
                journal_start: i.journalStart,
                board_revision: i.boardRevision,
                memory: i.memoryBytes,
                log_used: i.logUsed,
                log_half: i.logHalf,
                frames_ok: i.framesOk,
                frames_bad: i.framesBad,
                naks: i.naks,
                bytes_in: i.bytesIn,
              });
              // What a Pi says of its SD card and CPU (a hosted node has neither).
              if (i.sdCard) {
                const sd = i.sdCard;
                row.sd_card = {
                  bytes: sd.bytes,
                  manufacturer_id: sd.manufacturerId,
                  oem_id: sd.oemId,
                  product: sd.product,
                  revision: sd.revision,
                  serial: sd.serial,
                  manufactured: sd.manufactured,
                  speed_class: sd.speedClass,
                  uhs_grade: sd.uhsGrade,
                  bus_width: sd.busWidth,
                  high_capacity: sd.highCapacity,
                  clock_hz: sd.clockHz,
                };
                row.sd_card_text = sdCardText(sd);
              }
              if (i.cpu) {
                row.cpu = {
                  instruction_cache: i.cpu.instructionCache,
                  data_cache: i.cpu.dataCache,
                  alignment_checks: i.cpu.alignmentChecks,
                  branch_prediction: i.cpu.branchPrediction,
                  sha256_mb_s: i.cpu.sha256MBps,
                };
              }
            } catch (e) {
              row.error = (e as Error).message;
            } finally {
              if (client !== own) await client?.close();
            }
            return row;
          }));
        } finally {
          lock?.release();
          await held?.close();
        }
      });
      // A journal shorter than the longest one lacks lines a quorum holds (a
      // lazy follower, a node that was away): caught up in the background
      // by the next session that stays open, or trimmed by a checkpoint.
      const longest = Math.max(0, ...rows.map((r) => (r.journal_bytes as number) ?? 0));
      for (const r of rows) {
        if (r.answers) r.journal_behind = longest - (r.journal_bytes as number);
      }
      if (o.json) {
        console.log(JSON.stringify({ nodes: rows }));
      } else {
        for (const r of rows) {
          const pi = r.sd_card_text || r.cpu
            ? `\n  SD card ${r.sd_card_text ?? "unknown"}${
              r.cpu
                ? `; SHA-256 ${(r.cpu as { sha256_mb_s: number }).sha256_mb_s.toFixed(1)} MB/s`
                : ""
            }`
            : "";
          console.log(
            r.retired
              ? `node ${r.id}: retired (drained or forgotten; no longer used)`
              : r.answers
              ? `node ${r.id}: ${r.board} fw ${r.firmware}, card ${r.card}, ${
                formatBytes(r.free as number)
              } free of ${
                formatBytes(r.capacity as number)
              }, ${r.chunks} chunks, journal bytes ${r.journal_start}..${r.journal_bytes}${
                r.journal_behind ? ` (${r.journal_behind} behind)` : ""
              }, log ${r.log_used}/${r.log_half} sectors${pi}`
              : `node ${r.id}: DOWN (${r.error})`,
          );
        }
      }
      if (rows.some((r) => !r.answers && !r.retired)) Deno.exitCode = 1;
    });
}
