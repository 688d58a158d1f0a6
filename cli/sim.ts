/**
 * `pifs sim`: emulated Pis on this machine.
 *
 * @module
 */
import type { Command } from "commander";
import { simDown, simUp } from "../sim/sim.ts";
import { info, intOption } from "./_util.ts";

/** Adds `sim up` and `sim down` to `program`. */
export function registerSim(program: Command): void {
  const sim = program.command("sim").description("emulated Pis on this machine");
  sim.command("up")
    .description(
      "start a simulated cluster in DIR: new FAT32 card images, hosted nodes on ptys, " +
        "DIR/cluster.json; on a DIR that holds a cluster, restart its nodes on their cards",
    )
    .requiredOption("--dir <dir>", "cluster directory")
    .option("--nodes <n>", "number of nodes (new cluster; default 3)", intOption("--nodes", 1, 64))
    .option("--card-size <size>", "card image size, a power of two (default 64M)")
    .option(
      "--baud <rate>",
      "pace each link at rate/10 bytes/s like a real UART (default: unpaced)",
      intOption("--baud", 0, 100_000_000),
    )
    .option("--json", "print cluster.json")
    .action(async (o) => {
      const c = await simUp(o.dir, {
        nodes: o.nodes,
        cardSize: o.cardSize,
        baud: o.baud,
        log: o.json ? undefined : info,
      });
      if (o.json) console.log(JSON.stringify(c));
      else {info(
          `cluster ${c.cluster_id}: ${c.nodes.length} nodes up; export PIFS_CLUSTER=${o.dir}`,
        );}
    });
  sim.command("down")
    .description("stop the simulated cluster's nodes (their cards stay)")
    .requiredOption("--dir <dir>", "cluster directory")
    .action(async (o) => {
      await simDown(o.dir, info);
    });
}
