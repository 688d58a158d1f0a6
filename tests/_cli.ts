/**
 * Runs the real `./pifs` command line, as a user would, for the tests.
 *
 * @module
 */

/** Path of the `pifs` entry point. */
export const PIFS: string = new URL("../pifs", import.meta.url).pathname;

/** What one run of `pifs` did. */
export interface PifsRun {
  /** Exit code. */
  code: number;
  /** Standard output. */
  out: string;
  /** Standard error. */
  err: string;
}

/** Runs `pifs ARGS...` with no standard input. */
export async function pifs(...args: string[]): Promise<PifsRun> {
  const o = await new Deno.Command(PIFS, { args, stdin: "null" }).output();
  return {
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}
