/**
 * `pifs scrub` and `pifs repair`.
 *
 * @module
 */
import { type Command, Option } from "commander";
import { repair, scrub, type ScrubReport } from "../store/repair.ts";
import { Store } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { info, intOption, UsageError } from "./_util.ts";

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

/** Adds `scrub`, `repair` and `node forget` to `program`. */
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
  const node = program.command("node").description("the cluster's Pis");
  node.command("forget")
    .description(
      "record Pi K as lost for good (a dead Pi or card): its copies no longer count, placement " +
        "and the journal quorum leave it out, and every chunk it held gets its copies back " +
        "from the others (repair)",
    )
    .argument("<k>", "node id", (v: string) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) {
        throw new UsageError(`node '${v}': not a node id`);
      }
      return n;
    })
    .addOption(clusterOpt())
    .option("--json", "what was done, as JSON")
    .action(async (k: number, o) => {
      const s = await Store.open(clusterDir(o.cluster), { log: o.json ? undefined : info });
      try {
        const st = s.nodes.get(k);
        if (!st) throw new UsageError(`node ${k}: no such node in this cluster`);
        if (s.index.forgotten().includes(k)) {
          throw new UsageError(`node ${k} is already forgotten`);
        }
        if (st.client) {
          throw new UsageError(
            `node ${k} answers: it is not lost. Forgetting a working Pi would drop its copies ` +
              `while they are still good; to retire it, \`pifs node drain ${k}\` copies them off first`,
          );
        }
        const left = s.nodes.size - s.index.forgotten().length - 1;
        if (left < 1) throw new UsageError(`node ${k} is the last node of the cluster`);
        await s.commit({ op: "forget", node: k });
        if (!o.json) info(`node ${k} forgotten; repairing the copies it held`);
        const r = await repair(s, {
          onChunk: o.json ? undefined : (d, t) => {
            if (d === t || d % 50 === 0) info(`repaired ${d} of ${t} chunks`);
          },
        });
        if (o.json) console.log(JSON.stringify({ forgotten: k, repair: r }));
        else {
          console.log(
            `node ${k} forgotten: ${r.copied} copies made, ${r.failed.length} chunks not repaired`,
          );
          for (const f of r.failed.slice(0, 20)) console.log(`  ${f.id.slice(0, 16)}: ${f.error}`);
        }
        if (r.failed.length) Deno.exitCode = 1;
      } finally {
        await s.close();
      }
    });
}
