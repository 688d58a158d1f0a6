/** Runs an external program and throws a clear error when it fails. */
import { PifsError } from "../errors.ts";
export class CommandError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "COMMAND";
  /** The error's name. */
  override name = "CommandError";
  /** The command line that failed. */
  readonly command: string;
  /** A failure of `command`. */
  constructor(command: string, message: string) {
    super(message);
    this.command = command;
  }
}

/** Runs `cmd args...`, returning its stdout; throws CommandError with its stderr on failure. */
export async function run(cmd: string, args: string[]): Promise<string> {
  const line = [cmd, ...args].join(" ");
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CommandError(line, `${cmd}: not installed (run scripts/setup.sh)`);
    }
    throw e;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new CommandError(line, `${line}: exit ${out.code}${err ? `: ${err}` : ""}`);
  }
  return new TextDecoder().decode(out.stdout);
}
