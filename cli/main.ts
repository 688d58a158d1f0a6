/**
 * The `pifs` command line.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { isOsError, PifsError } from "../errors.ts";
import { registerCard } from "./card.ts";
import { registerChunk } from "./chunk.ts";
import { registerDeploy } from "./deploy.ts";
import { registerFiles } from "./files.ts";
import { registerInit } from "./init.ts";
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

/** Builds the command tree (exported for tests of `--help`). */
export function buildCli(): Command {
  const program = new Command("pifs")
    .description(
      "pifs: a distributed store on a drawer of Raspberry Pis, driven over their UARTs",
    )
    .version("0.1.0")
    .option("--debug", "on an error, also print its stack trace (or set PIFS_DEBUG=1)")
    // One line for a usage error, as for any other (not the whole help).
    .showHelpAfterError("(see pifs --help, or pifs COMMAND --help)")
    .configureOutput({
      outputError: (str, write) => write(str.replace(/^error: /, "pifs: ")),
    })
    .exitOverride();

  registerSim(program);
  registerInit(program);
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

/**
 * Runs the CLI with `args`; returns the exit code. Whatever fails is printed
 * as one line on stderr by {@linkcode reportError}; `--debug` (anywhere
 * before `--`) or `PIFS_DEBUG=1` adds the stack.
 */
export async function main(args: string[]): Promise<number> {
  const end = args.indexOf("--");
  const debug = args.slice(0, end < 0 ? args.length : end).includes("--debug") ||
    debugFromEnv();
  if (debug) args = args.filter((a, i) => a !== "--debug" || (end >= 0 && i > end));
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
      try {
        const code = await forwardCommand(e.dir, args);
        if (code !== null) return code;
      } catch (f) {
        return reportError(args[0], f, debug);
      }
    } else if (
      e instanceof ClusterBusyError && e.dir &&
      await holderPresent(e.dir)
    ) {
      console.error(
        `pifs: ${args[0]}: the cluster is held open by \`pifs serve\` or a mount ` +
          `(${socketPath(e.dir)}), which runs ${[...FORWARDED].join(", ")} for others but not ` +
          `${args[0]}: stop it first`,
      );
      return 1;
    }
    return reportError(args[0], e, debug);
  }
}

function debugFromEnv(): boolean {
  try {
    const v = Deno.env.get("PIFS_DEBUG");
    return v !== undefined && v !== "" && v !== "0";
  } catch {
    return false; // no env permission
  }
}

/** The exit status of a command whose standard output was closed (as a shell shows SIGPIPE). */
export const EXIT_BROKEN_PIPE = 141;

/**
 * Prints `e` as the one line `pifs: COMMAND: WHAT WENT WRONG` on stderr (the
 * message of a {@linkcode PifsError} says where: file, node, field) and
 * returns the exit code: 2 for a usage error, 1 otherwise. An error pifs did
 * not expect is named as such, still on one line; `debug` adds the stack. A
 * closed standard output ends the command quietly, as coreutils do.
 *
 * @example
 * ```ts
 * import { reportError } from "./main.ts";
 * import { UsageError } from "./_util.ts";
 * const saved = console.error;
 * let printed = "";
 * console.error = (s: string) => printed += s;
 * try {
 *   if (reportError("put", new UsageError("--copies 9: at most 8"), false) !== 2) throw new Error();
 * } finally {
 *   console.error = saved;
 * }
 * if (printed !== "pifs: put: --copies 9: at most 8") throw new Error(printed);
 * ```
 */
export function reportError(command: string | undefined, e: unknown, debug: boolean): number {
  if (e instanceof Deno.errors.BrokenPipe) return EXIT_BROKEN_PIPE;
  const where = command && !command.startsWith("-") ? `pifs: ${command}: ` : "pifs: ";
  let line: string;
  if (e instanceof PifsError) line = e.message;
  else if (isOsError(e)) line = e.message; // its message names the call and the path
  else {
    const first = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    line = `unexpected ${e instanceof Error ? e.name : "error"}: ${first}` +
      (debug ? "" : " (a bug in pifs: run again with --debug for the stack, and report it)");
  }
  console.error(`${where}${line}`);
  if (debug && e instanceof Error && e.stack) console.error(e.stack);
  return e instanceof PifsError ? e.exitCode : 1;
}

/**
 * Runs the CLI as a program: one error line and exit 1 for anything that
 * escapes (an unhandled rejection included), never a stack trace unless
 * `--debug`.
 */
async function run(): Promise<never> {
  const args = Deno.args;
  const debug = args.includes("--debug") || debugFromEnv();
  const fatal = (e: unknown) => Deno.exit(reportError(args[0], e, debug));
  globalThis.addEventListener("unhandledrejection", (ev) => {
    ev.preventDefault();
    fatal(ev.reason);
  });
  globalThis.addEventListener("error", (ev) => {
    ev.preventDefault();
    fatal(ev.error);
  });
  Deno.exit(await main(args));
}

if (import.meta.main) {
  await run();
}
