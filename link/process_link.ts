/**
 * A {@linkcode ByteLink} over a child process's stdin/stdout: the hosted node
 * run with `--stdio`. Used by tests and benchmarks that need no pty.
 *
 * @module
 */
import type { ByteLink } from "./client.ts";

/** A running child process that is also a link to it. */
export interface ProcessLink extends ByteLink {
  /** The child. */
  child: Deno.ChildProcess;
}

/**
 * Starts `cmd args...` with piped stdio and returns it as a link; its stderr
 * is passed through.
 *
 * @example
 * ```ts ignore
 * import { spawnLink } from "./process_link.ts";
 * const link = spawnLink("firmware/build/pifs-node", ["--stdio", "--card", "card.img"]);
 * await link.close();
 * ```
 */
export function spawnLink(cmd: string, args: string[]): ProcessLink {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  let closed = false;
  return {
    child,
    readable: child.stdout,
    async write(data: Uint8Array) {
      await writer.write(data);
    },
    async close() {
      if (closed) return;
      closed = true;
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}
