/**
 * `pifs recover`: the whole namespace and every file from card images alone.
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import type { Command } from "commander";
import { recover } from "../store/recover.ts";
import { info } from "./_util.ts";

/** Adds `recover` to `program`. */
export function registerRecover(program: Command): void {
  program.command("recover")
    .description(
      "rebuild every file of a cluster from its card images alone (no Pi, no host state): " +
        "each image is read through a read-only node, the namespace comes from the cards' " +
        "checkpoint and journal, every chunk is checked against its hash and read from any " +
        "card that holds a healthy copy. Never writes to the cards. Exit code 1 if any file " +
        "could not be rebuilt (each is listed)",
    )
    .argument("<card...>", "card images (or card devices) of the cluster's Pis, one per Pi")
    .requiredOption("--out <dir>", "where the tree is written: a new or empty directory")
    .option("--snapshots", "also write every snapshot, under OUT/.snapshots/NAME/")
    .option("--json", "the report as JSON")
    .action(async (cards: string[], o) => {
      const quiet = !!o.json;
      let last = 0;
      const r = await recover(cards, {
        out: o.out,
        snapshots: !!o.snapshots,
        log: quiet ? undefined : info,
        progress: quiet ? undefined : (done, total, bytes) => {
          const now = Date.now();
          if (done === total || now - last > 1000) {
            last = now;
            info(`${done}/${total} files, ${formatBytes(bytes)}`);
          }
        },
      });
      if (o.json) console.log(JSON.stringify(r));
      else {
        console.log(
          `recovered cluster ${r.cluster} into ${o.out}: ${r.files} files, ${r.dirs} directories, ` +
            `${formatBytes(r.bytes)}` + (r.links ? `, ${r.links} symbolic links` : "") +
            (o.snapshots ? `, ${r.snapshots} snapshots` : ""),
        );
        for (const c of r.cards) {
          if (c.error) console.log(`  ${c.card}: not used: ${c.error}`);
        }
        if (r.failed.length) {
          console.log(`could not rebuild ${r.failed.length}:`);
          for (const f of r.failed) console.log(`  ${f.path}: ${f.error}`);
        }
      }
      if (r.failed.length) Deno.exitCode = 1;
    });
}
