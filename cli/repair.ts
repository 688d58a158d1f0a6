/**
 * `pifs scrub` and `pifs repair`.
 *
 * @module
 */
import { type Command, Option } from "commander";
import { repair, scrub, type ScrubReport } from "../store/repair.ts";
import { Store } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { info, intOption } from "./_util.ts";

function summary(r: ScrubReport): string[] {
  const out: string[] = [];
  for (const n of r.nodes) {
    out.push(
      n.error
        ? `node ${n.node}: not scrubbed (${n.error})`
        : `node ${n.node}: ${n.checked} chunks verified, ${n.damaged.length} damaged`,
    );
  }
  out.push(
    `${r.referenced} chunks needed: ${r.missing.length} short of copies ` +
      `(${r.missing.filter((p) => p.damaged.length).length} with damaged copies), ` +
      `${r.over.length} with more copies than needed, ${r.lost.length} with no healthy copy`,
  );
  for (const p of [...r.missing, ...r.lost].slice(0, 20)) {
    out.push(
      `  ${p.id.slice(0, 16)}: ${p.healthy.length} of ${p.want} healthy` +
        (p.damaged.length ? `, damaged on node ${p.damaged.join(", ")}` : ""),
    );
  }
  return out;
}

/** Adds `scrub` and `repair` to `program`. */
export function registerRepair(program: Command): void {
  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");
  program.command("scrub")
    .description(
      "each Pi verifies the chunks on its card against their hashes (no data crosses the " +
        "wire); then every chunk a file, snapshot or checkpoint needs is checked for its " +
        "copies. Exit code 1 if anything is damaged, missing or lost",
    )
    .addOption(clusterOpt())
    .option("--node <k>", "verify only this Pi's card", intOption("--node", 0, 1 << 20))
    .option("--json", "the report as JSON")
    .action(async (o) => {
      const s = await Store.open(clusterDir(o.cluster), { log: o.json ? undefined : info });
      try {
        const r = await scrub(s, { node: o.node, log: o.json ? undefined : info });
        if (o.json) console.log(JSON.stringify(r));
        else for (const l of summary(r)) console.log(l);
        const bad = r.missing.length + r.lost.length +
          r.nodes.filter((n) => n.error || n.damaged.length).length;
        if (bad) Deno.exitCode = 1;
      } finally {
        await s.close();
      }
    });
  program.command("repair")
    .description(
      "re-make damaged and missing copies from healthy ones, on the Pis placement chooses " +
        "(scrubs first); safe to interrupt and run again. Exit code 1 if a chunk could not " +
        "be repaired",
    )
    .addOption(clusterOpt())
    .option("--json", "what was done, as JSON")
    .action(async (o) => {
      const s = await Store.open(clusterDir(o.cluster), { log: o.json ? undefined : info });
      try {
        const r = await repair(s, {
          log: o.json ? undefined : info,
          onChunk: o.json ? undefined : (d, t) => {
            if (d === t || d % 50 === 0) info(`repaired ${d} of ${t} chunks`);
          },
        });
        if (o.json) console.log(JSON.stringify(r));
        else {
          for (const l of summary(r.scrub)) console.log(l);
          console.log(
            `repair: ${r.deleted} damaged copies deleted, ${r.copied} copies made, ` +
              `${r.failed.length} chunks not repaired`,
          );
          for (const f of r.failed.slice(0, 20)) console.log(`  ${f.id.slice(0, 16)}: ${f.error}`);
        }
        if (r.failed.length) Deno.exitCode = 1;
      } finally {
        await s.close();
      }
    });
}
