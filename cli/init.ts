/**
 * `pifs ports` (what answers at each serial port of this host) and `pifs
 * init` (a cluster from the Pis at some ports).
 *
 * @module
 */
import type { Command } from "commander";
import { initCluster, type PortProbe, probePorts } from "../store/init.ts";
import { Store } from "../store/store.ts";
import { info, intOption } from "./_util.ts";

function probeText(p: PortProbe): string {
  const name = p.byId ? `${p.port} (${p.byId})` : p.port;
  switch (p.kind) {
    case "node":
      return `${name}: pifs node, ${p.board} fw ${p.firmware}, card ${p.card}` +
        (p.clusterId ? `, cluster ${p.clusterId} node ${p.nodeId}` : "");
    case "bootloader":
      return `${name}: pifs bootloader, ${p.board} ${p.firmware} (pifs deploy sends it firmware)`;
    case "nothing":
      return `${name}: nothing answers`;
    default:
      return `${name}: something else (${p.detail})`;
  }
}

/** Adds `ports` and `init` to `program`. */
export function registerInit(program: Command): void {
  program.command("ports")
    .description(
      "list this host's serial ports (/dev/ttyUSB*, ttyACM*, ttyAMA*, with their " +
        "/dev/serial/by-id names) and what answers at each: a pifs node (board, firmware, " +
        "card, cluster), a pifs bootloader, nothing, or something else",
    )
    .option("--port <path...>", "ask these ports instead (e.g. a pty)")
    .option("--baud <n>", "line rate to ask at", intOption("--baud", 1, 4_000_000), 115200)
    .option("--json", "JSON output")
    .action(async (o) => {
      const rows = await probePorts({ baud: o.baud, ports: o.port });
      if (o.json) console.log(JSON.stringify(rows));
      else if (rows.length === 0) {
        info("no serial ports: plug in a USB-serial adapter (see docs) or name one with --port");
      } else for (const r of rows) console.log(probeText(r));
    });

  program.command("init")
    .description(
      "create a cluster in DIR from the Pis at the given ports: each answers, each card is " +
        "checked (one holding a pifs store is refused unless --force), then formatted with a " +
        "node id; DIR/cluster.json records the ports (by their /dev/serial/by-id names)",
    )
    .argument("<dir>", "the new cluster directory")
    .requiredOption("--port <path...>", "the serial port of each Pi (repeat or list them)")
    .option(
      "--copies <r>",
      "copies of each chunk (a rule for /; default 2)",
      intOption("--copies", 1, 64),
    )
    .option("--baud <n>", "line rate", intOption("--baud", 1, 4_000_000), 115200)
    .option("--force", "format cards that hold a pifs store (its data is lost)")
    .option("--json", "print the cluster file")
    .action(async (dir: string, o) => {
      const c = await initCluster(dir, o.port, { baud: o.baud, force: !!o.force, log: info });
      if (o.copies !== undefined) {
        // (quietly: a new cluster's index is built from empty journals)
        const s = await Store.open(dir);
        try {
          await s.setCopies("/", o.copies);
        } finally {
          await s.close();
        }
      }
      if (o.json) console.log(JSON.stringify(c));
      info(`cluster ${c.cluster_id}: ${c.nodes.length} nodes`);
      for (const n of c.nodes) info(`  node ${n.id}: ${n.tty}`);
      console.log(`export PIFS_CLUSTER=${dir}`);
    });
}
