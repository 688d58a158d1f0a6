/**
 * The `pifs` command line.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { NodeError } from "../link/client.ts";
import { registerCard } from "./card.ts";
import { registerChunk } from "./chunk.ts";
import { registerDeploy } from "./deploy.ts";
import { registerFiles } from "./files.ts";
import { registerNodes } from "./nodes.ts";
import { registerRecover } from "./recover.ts";
import { registerRepair } from "./repair.ts";
import { registerServe } from "./serve.ts";
import {
  forwardCommand,
  FORWARDED,
  holderPresent,
  runningForOthers,
  socketPath,
} from "./_serve.ts";
import { ClusterBusyError } from "../store/store.ts";
import { registerMount } from "./mount.ts";
import { registerSim } from "./sim.ts";
import { registerStatus } from "./status.ts";
import { registerSync } from "./sync.ts";
import { UsageError } from "./_util.ts";

/** Builds the command tree (exported for tests of `--help`). */
export function buildCli(): Command {
  const program = new Command("pifs")
    .description(
      "pifs: a distributed store on a drawer of Raspberry Pis, driven over their UARTs",
    )
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();

  registerSim(program);
  registerStatus(program);
  registerFiles(program);
  registerMount(program, main);
  registerSync(program);
  registerChunk(program);
  registerCard(program);
  registerDeploy(program);
  registerRepair(program);
  registerRecover(program);
  registerNodes(program);
  registerServe(program, main);

  return program;
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const program = buildCli();
    await program.parseAsync(args, { from: "user" });
    return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : 2;
    }
    // The cluster is held open by `pifs serve` or a mount: it runs the command.
    if (
      e instanceof ClusterBusyError && e.dir && FORWARDED.has(args[0]) && !runningForOthers()
    ) {
      const code = await forwardCommand(e.dir, args);
      if (code !== null) return code;
    } else if (
      e instanceof ClusterBusyError && e.dir &&
      await holderPresent(e.dir)
    ) {
      console.error(
        `pifs: the cluster is held open by \`pifs serve\` or a mount (${socketPath(e.dir)}), ` +
          `which runs ${[...FORWARDED].join(", ")} for others but not ${args[0]}: stop it first`,
      );
      return 1;
    }
    const err = e as Error;
    const known = err instanceof UsageError || err instanceof NodeError ||
      [
        "ClusterError",
        "SimError",
        "CardError",
        "CommandError",
        "SerialError",
        "TimeoutError",
        "ProtocolError",
        "UnsupportedBaudError",
        "QuorumError",
        "PathError",
        "JournalError",
        "PlacementError",
        "LinkError",
        "SourceError",
        "LockedError",
        "ClusterBusyError",
        "DeployError",
        "CardHoldsDataError",
        "RecoverError",
        "RebalanceError",
        "NodeAddError",
        "ReadOnlyError",
      ].includes(err.name);
    console.error(`pifs: ${known ? err.message : err.stack ?? err}`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
