/**
 * What the benchmark programs share: their command-line options and random
 * data.
 *
 * @module
 */

/** The value after `--name` on the command line, or `def`. */
export function opt(name: string, def: string): string {
  const i = Deno.args.indexOf(name);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

/** Whether `--quick` was given: each benchmark then measures less. */
export const quick: boolean = Deno.args.includes("--quick");

/** `n` random bytes (incompressible, never deduplicated). */
export function random(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}
