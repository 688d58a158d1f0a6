/**
 * Pis joining and leaving: `pifs node add`, `pifs node drain`, `pifs rebalance`.
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import { type Command, Option } from "commander";
import { clusterDir } from "../store/cluster.ts";
import { addNode } from "../store/membership.ts";
import {
  drain,
  rebalance,
  type RebalanceOptions,
  type RebalanceResult,
} from "../store/rebalance.ts";
import { Store } from "../store/store.ts";
import { info, UsageError } from "./_util.ts";

/** Parses a rate such as `20000`, `20k`, `1.5M` (bytes per second; k = 1024). */
export function parseRate(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)(?:i?B)?(?:\/s)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag} '${v}': not a rate (bytes per second, e.g. 20k or 1.5M)`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()]!;
  const n = Number(m[1]) * mult;
  if (!(n > 0)) throw new UsageError(`${flag} '${v}': must be more than 0`);
  return n;
}

function parseSeconds(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag} '${v}': not a duration (e.g. 90, 90s, 15m, 2h)`);
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] ?? "s"]!;
  if (!(n > 0)) throw new UsageError(`${flag} '${v}': must be more than 0`);
  return n;
}

function nodeId(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) {
    throw new UsageError(`node '${v}': not a node id`);
  }
  return n;
}

function moveOptions(
  s: Store,
  o: { bwlimit?: number; maxDuration?: number; dryRun?: boolean; json?: boolean; yield?: boolean },
) {
  let last = 0;
  const opts: RebalanceOptions = {
    // Commander's --no-yield sets yield to false.
    yieldTo: o.yield === false ? undefined : () => s.othersWaiting(),
    bwlimit: o.bwlimit,
    maxDurationS: o.maxDuration,
    dryRun: !!o.dryRun,
    log: o.json ? undefined : info,
    onMove: o.json ? undefined : (done, total, bytes) => {
      const now = Date.now();
      if (done === total || now - last > 1000) {
        last = now;
        info(`${done} of ${total} chunks moved, ${formatBytes(bytes)} copied`);
      }
    },
  };
  return opts;
}

function summary(r: RebalanceResult, dry: boolean): string[] {
  const out = [
    `${r.chunks} chunks ${dry ? "would move" : "to move"}: ${r.copied} copies ${
      dry ? "to make" : "made"
    } (${formatBytes(r.bytesCopied)}), ${r.deleted} ${dry ? "to delete" : "deleted"} (${
      formatBytes(r.bytesDeleted)
    })` + (dry ? "" : ` in ${r.seconds.toFixed(1)} s`),
  ];
  for (const n of r.nodes) {
    out.push(`  node ${n.node}: +${n.gained} copies (${formatBytes(n.bytesGained)}), -${n.lost}`);
  }
  if (r.yielded) out.push("stopped to let a waiting pifs command run: run it again afterwards");
  else if (r.stopped) out.push("stopped at --max-duration: run it again to go on");
  for (const f of r.failed.slice(0, 20)) out.push(`  failed ${f.id.slice(0, 16)}: ${f.error}`);
  if (r.failed.length > 20) out.push(`  … and ${r.failed.length - 20} more`);
  return out;
}

/** Adds `node add`, `node drain` and `rebalance` to `program` (after `node forget` is registered). */
export function registerNodes(program: Command): void {
  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");
  const node = program.commands.find((c) => c.name() === "node") ??
    program.command("node").description("the cluster's Pis");
  const moveFlags = (c: Command) =>
    c.option(
      "--bwlimit <rate>",
      "copy at most this many bytes per second (e.g. 20k, 1M), leaving the lines room",
      (v: string) => parseRate("--bwlimit", v),
    )
      .option(
        "--max-duration <time>",
        "stop starting moves after this long (e.g. 30m); run again to go on",
        (v: string) => parseSeconds("--max-duration", v),
      )
      .option("--dry-run", "only report what would move")
      .option(
        "--no-yield",
        "go on when another pifs command (a sync) waits for the cluster; by default the move " +
          "stops then, so syncs keep priority",
      );

  node.command("add")
    .description(
      "format the Pi at PORT into the cluster as a new node (its card must hold no pifs store) " +
        "and bring its journal up to date; no data moves until `pifs rebalance`",
    )
    .argument("<port>", "the new Pi's serial port (e.g. /dev/ttyUSB3)")
    .addOption(clusterOpt())
    .option("--json", "what was done, as JSON")
    .action(async (port: string, o) => {
      const dir = clusterDir(o.cluster);
      const r = await addNode(dir, port, { log: o.json ? undefined : info });
      if (o.json) console.log(JSON.stringify(r));
      else {
        console.log(
          `node ${r.id} added on ${r.tty}: ${formatBytes(r.capacity)} for chunks` +
            (r.resumed ? " (formatted by an earlier, interrupted add)" : "") +
            `; run \`pifs rebalance\` to move its share of the data onto it`,
        );
      }
    });

  moveFlags(
    node.command("drain")
      .description(
        "copy every chunk on Pi K to the other Pis (where placement puts it without K), then " +
          "record K as retired: it leaves placement and the quorum. Nothing is deleted from K. " +
          "Safe to interrupt and rerun",
      )
      .argument("<k>", "node id", nodeId)
      .addOption(clusterOpt())
      .option("--json", "what was done, as JSON"),
  ).action(async (k: number, o) => {
    const s = await Store.open(clusterDir(o.cluster), { log: o.json ? undefined : info });
    try {
      const r = await drain(s, k, moveOptions(s, o));
      if (o.json) console.log(JSON.stringify(r));
      else {
        for (const l of summary(r, !!o.dryRun)) console.log(l);
        if (r.retired) console.log(`node ${k} is drained and retired; its Pi can be unplugged`);
        else if (!o.dryRun) {
          console.log(`node ${k} is not retired yet: run \`pifs node drain ${k}\` again`);
        }
      }
      if (!o.dryRun && !r.retired) Deno.exitCode = 1;
    } finally {
      await s.close();
    }
  });

  moveFlags(
    program.command("rebalance")
      .description(
        "move copies to where placement puts them now (after `pifs node add`: exactly the new " +
          "Pi's share moves onto it). A copy is made before any other is deleted, so every " +
          "file stays readable throughout. Safe to interrupt and rerun",
      )
      .addOption(clusterOpt())
      .option("--json", "what was done, as JSON"),
  ).action(async (o) => {
    const s = await Store.open(clusterDir(o.cluster), { log: o.json ? undefined : info });
    try {
      const r = await rebalance(s, moveOptions(s, o));
      if (o.json) console.log(JSON.stringify(r));
      else for (const l of summary(r, !!o.dryRun)) console.log(l);
      if (r.failed.length || r.stopped) Deno.exitCode = 1;
    } finally {
      await s.close();
    }
  });
}
