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

/** Runs `pifs ARGS...` and returns its standard output; fails the test on a non-zero exit. */
export async function ok(...args: string[]): Promise<string> {
  const r = await pifs(...args);
  if (r.code !== 0) throw new Error(`pifs ${args.join(" ")}: exit ${r.code}: ${r.err}`);
  return r.out;
}

/**
 * Runs `fn` on a new simulated cluster (`pifs sim up --dir DIR SIMARGS`) in
 * a temporary directory; the cluster is stopped and the directory removed
 * afterwards, whatever happens. With `sub`, the cluster is in `DIR/sub` and
 * `fn` gets DIR (room beside it for sources and job files).
 */
export async function withSim(
  simArgs: string[],
  fn: (dir: string) => Promise<void>,
  prefix = "pifs-test-",
  sub?: string,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const cluster = sub ? `${dir}/${sub}` : dir;
  try {
    await ok("sim", "up", "--dir", cluster, ...simArgs);
    await fn(dir);
  } finally {
    await pifs("sim", "down", "--dir", cluster);
    await Deno.remove(dir, { recursive: true });
  }
}

/** `n` pseudo-random bytes from `seed` (xorshift): the same bytes for the same seed. */
export function rand(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
