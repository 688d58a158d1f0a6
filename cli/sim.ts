/**
 * `pifs sim`: emulated Pis on this machine.
 *
 * @module
 */
import type { Command } from "commander";
import { formatLinkStats, LinkError, type LinkStats, startLink } from "../sim/link.ts";
import { simDown, SimError, simUp } from "../sim/sim.ts";
import { info, intOption, UsageError } from "./_util.ts";

/** A commander parser for a probability (0..1, e.g. `1e-5`). */
function probability(name: string) {
  return (v: string): number => {
    const p = Number(v);
    if (v.trim() === "" || !Number.isFinite(p) || p < 0 || p > 1) {
      throw new UsageError(`${name} '${v}': must be a probability within 0..1 (e.g. 1e-5)`);
    }
    return p;
  };
}

/** Runs fn; a LinkError comes out as a SimError (which the CLI prints without a stack). */
async function linkErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof LinkError) throw new SimError(e.message, { cause: e });
    throw e;
  }
}

/** Adds `sim up`, `sim down` and `sim link` to `program`. */
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
    .option(
      "--ber <p>",
      "flip each bit on the lines with probability p: each node then sits behind a pifs-link " +
        "(kept in cluster.json, restarted with the cluster)",
      probability("--ber"),
    )
    .option(
      "--drop <p>",
      "lose each byte on the lines with probability p (as --ber)",
      probability("--drop"),
    )
    .option(
      "--link-seed <s>",
      "seed of the lines' faults; node K gets s+K (default 1+K)",
      intOption("--link-seed", 0, Number.MAX_SAFE_INTEGER),
    )
    .option(
      "--qemu <board>",
      "emulated Pis instead of hosted nodes: raspi3b, raspi0, or mixed (alternately)",
      (v: string) => {
        if (v !== "raspi3b" && v !== "raspi0" && v !== "mixed") {
          throw new UsageError(`--qemu '${v}': must be raspi3b, raspi0 or mixed`);
        }
        return v;
      },
    )
    .option(
      "--qemu-limit <seconds>",
      "emulated Pis stop by themselves after this long (default: no limit)",
      intOption("--qemu-limit", 1, 31_536_000),
    )
    .option(
      "--add <n>",
      "add n new Pis (new cards, hosted nodes) to the running cluster, as `pifs node add` " +
        "does; then `pifs rebalance` moves their share onto them",
      intOption("--add", 1, 63),
    )
    .option("--json", "print cluster.json")
    .action(async (o) => {
      const c = await linkErrors(() =>
        simUp(o.dir, {
          add: o.add,
          qemu: o.qemu,
          qemuLimitS: o.qemuLimit,
          nodes: o.nodes,
          cardSize: o.cardSize,
          baud: o.baud,
          ber: o.ber,
          drop: o.drop,
          linkSeed: o.linkSeed,
          log: o.json ? undefined : info,
        })
      );
      if (o.json) console.log(JSON.stringify(c));
      else {info(
          `cluster ${c.cluster_id}: ${c.nodes.length} nodes up; export PIFS_CLUSTER=${o.dir}`,
        );}
    });
  sim.command("down")
    .description("stop the simulated cluster's nodes and their links (their cards stay)")
    .requiredOption("--dir <dir>", "cluster directory")
    .action(async (o) => {
      await simDown(o.dir, info);
    });
  sim.command("link")
    .description(
      "emulate a serial line: two new ptys, linked from paths A and B, relaying bytes both " +
        "ways at the baud rate with bit errors and dropped bytes, until SIGINT or SIGTERM; " +
        "then print its counters",
    )
    .requiredOption("--a <path>", "path of side a (a symlink to a new pty)")
    .requiredOption("--b <path>", "path of side b")
    .option(
      "--baud <rate>",
      "carry rate/10 bytes/s each way (default: unpaced)",
      intOption("--baud", 0, 100_000_000),
    )
    .option("--ber <p>", "flip each bit with probability p", probability("--ber"))
    .option("--drop <p>", "lose each byte with probability p", probability("--drop"))
    .option("--seed <s>", "seed of the faults", intOption("--seed", 0, Number.MAX_SAFE_INTEGER))
    .option("--latency-ms <ms>", "delay every byte", intOption("--latency-ms", 0, 600_000))
    .option(
      "--stall-every-ms <ms>",
      "period of stalls (with --stall-ms)",
      intOption("--stall-every-ms", 1, 3_600_000),
    )
    .option("--stall-ms <ms>", "length of each stall", intOption("--stall-ms", 1, 3_600_000))
    .option("--json", "print the counters as JSON")
    .action(async (o) => {
      const link = await linkErrors(() =>
        startLink({
          a: o.a,
          b: o.b,
          baud: o.baud,
          ber: o.ber,
          drop: o.drop,
          seed: o.seed,
          latencyMs: o.latencyMs,
          stallEveryMs: o.stallEveryMs,
          stallMs: o.stallMs,
        })
      );
      info(`link up (pid ${link.pid}): ${o.a} <-> ${o.b}; stop with Ctrl-C or SIGTERM`);
      let signalled!: () => void;
      let gotSignal = false;
      const signal = new Promise<void>((r) => signalled = r).then(() => gotSignal = true);
      const signals = ["SIGINT", "SIGTERM"] as const;
      for (const s of signals) Deno.addSignalListener(s, signalled);
      let stats: LinkStats;
      try {
        await Promise.race([signal, link.exited]);
        stats = await linkErrors(() => link.stop());
        if (!gotSignal) info("pifs-link exited by itself");
      } finally {
        for (const s of signals) Deno.removeSignalListener(s, signalled);
      }
      if (o.json) console.log(JSON.stringify(stats));
      else console.log(formatLinkStats(stats));
    });
}
