/**
 * Helpers shared by the CLI's commands.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import type { NodeClient } from "../link/client.ts";
import {
  clusterDir,
  type ClusterFile,
  connectNode,
  type NodeEntry,
  readClusterFile,
} from "../store/cluster.ts";

/** A bad command-line argument: printed without a stack trace. */
export class UsageError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "USAGE";
  /** A usage error: the CLI exits with 2. */
  override readonly exitCode: number = 2;
  /** The error's name. */
  override name = "UsageError";
}

/** Prints a progress or status message on stderr. */
export function info(msg: string): void {
  console.error(msg);
}

/** A commander parser for a whole-number option within min..max. */
export function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new UsageError(`${name} '${v}': must be a whole number from ${min} to ${max}`);
    }
    return Number(v);
  };
}

/** Runs fn with the cluster from --cluster or PIFS_CLUSTER. */
export async function withCluster<T>(
  opts: { cluster?: string },
  fn: (dir: string, c: ClusterFile) => Promise<T>,
): Promise<T> {
  const dir = clusterDir(opts.cluster);
  return await fn(dir, await readClusterFile(dir));
}

/** The node --node K names (default 0). */
export function pickNode(c: ClusterFile, k: number | undefined): NodeEntry {
  const id = k ?? 0;
  const n = c.nodes.find((x) => x.id === id);
  if (!n) {
    throw new UsageError(
      `--node ${id}: the cluster has no such node (nodes: ${c.nodes.map((x) => x.id).join(", ")})`,
    );
  }
  return n;
}

/** Runs fn with a client connected to the node --node K names. */
export async function withNode<T>(
  opts: { cluster?: string; node?: number },
  fn: (client: NodeClient, n: NodeEntry) => Promise<T>,
): Promise<T> {
  return await withCluster(opts, async (dir, c) => {
    const n = pickNode(c, opts.node);
    const client = await connectNode(dir, c, n);
    try {
      return await fn(client, n);
    } finally {
      await client.close();
    }
  });
}

/** Throws a UsageError unless id is a chunk id. */
export function checkId(id: string): void {
  if (!/^[0-9a-f]{64}$/.test(id)) {
    throw new UsageError(`chunk id '${id}': must be 64 lowercase hex digits (a SHA-256)`);
  }
}

/** Reads a local file, with clear errors for a missing path or a directory. */
export async function readLocal(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`${path}: no such file`);
    if (e instanceof Deno.errors.IsADirectory) throw new UsageError(`${path}: is a directory`);
    throw e;
  }
}
