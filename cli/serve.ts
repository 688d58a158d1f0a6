/**
 * `pifs serve`: hold the cluster open and run other pifs commands for them.
 *
 * @module
 */
import { type Command, Option } from "commander";
import { clusterDir } from "../store/cluster.ts";
import { Store } from "../store/store.ts";
import { serveCommands } from "./_serve.ts";
import { info } from "./_util.ts";

/** Adds `serve` to `program`; `run` runs a command line (the CLI's `main`). */
export function registerServe(program: Command, run: (argv: string[]) => Promise<number>): void {
  program.command("serve")
    .description(
      "hold the cluster open (connected, journal applied) until SIGINT or SIGTERM; meanwhile " +
        "other pifs commands on this cluster (put, get, ls, sync, scrub, …) are run here, one " +
        "at a time, instead of failing because the cluster is busy. A mount does the same",
    )
    .addOption(new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)"))
    .action(async (o) => {
      const dir = clusterDir(o.cluster);
      const store = await Store.open(dir, { log: info });
      const server = await serveCommands(dir, store, run, info);
      info(`serving the cluster in ${dir}: other pifs commands on it run here; Ctrl-C stops`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        Deno.addSignalListener("SIGINT", stop);
        Deno.addSignalListener("SIGTERM", stop);
      });
      info("stopping: waiting for the command in progress");
      await server.close();
      await store.close();
    });
}
