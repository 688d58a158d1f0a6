/**
 * A Pi joining the cluster: `pifs node add PORT` (and `sim up --add`).
 *
 * The Pi at PORT must hold a card without a pifs store (a card made by
 * `pifs card init`, or any FAT32 card), or one this same command formatted
 * before it was interrupted. It is formatted with the next node id, recorded
 * in `cluster.json`, and its journal is brought up to the others'. No chunk
 * moves: `pifs rebalance` then moves onto it exactly its share.
 *
 * @example
 * ```ts ignore
 * import { addNode } from "./membership.ts";
 * const r = await addNode("cluster", "/dev/ttyUSB3");
 * console.log(`node ${r.id}: ${r.capacity} bytes for chunks`);
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { fromHex } from "../link/client.ts";
import { Status, statusToStr } from "../link/codec.ts";
import {
  connectNode,
  type NodeEntry,
  readClusterFile,
  resolveIn,
  writeClusterFile,
} from "./cluster.ts";
import { Store } from "./store.ts";

/** Options of {@linkcode addNode}. */
export interface AddNodeOptions {
  /** More fields of its `cluster.json` entry (a simulated node's card, pid, log, board). */
  entry?: Omit<NodeEntry, "id" | "tty">;
  /** The port as `cluster.json` records it (default: PORT made absolute). */
  recordTty?: string;
  /** Free space left on the card's FAT volume, bytes (default 1 MiB). */
  reserveBytes?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/** What {@linkcode addNode} did. */
export interface AddNodeResult {
  /** The new node's id. */
  id: number;
  /** Its port, as recorded. */
  tty: string;
  /** Bytes for chunk data on its card. */
  capacity: number;
  /** Its card had been formatted by an earlier, interrupted add (nothing formatted now). */
  resumed: boolean;
}

/** A Pi that cannot join: its port is a member already, its card holds another store. */
export class NodeAddError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "NODE_ADD";
  /** The error's name. */
  override name = "NodeAddError";
}

/**
 * Formats the Pi at `tty` into the cluster in `dir` and records it. Holds
 * the cluster lock while it works (one command at a time).
 */
export async function addNode(
  dir: string,
  tty: string,
  opts: AddNodeOptions = {},
): Promise<AddNodeResult> {
  const log = opts.log ?? (() => {});
  const port = tty.startsWith("/") ? tty : `${Deno.cwd()}/${tty}`;
  const s = await Store.open(dir, { log });
  let result: AddNodeResult;
  try {
    const c = s.cluster;
    const same = c.nodes.find((n) => resolveIn(dir, n.tty) === port || n.tty === tty);
    if (same) throw new NodeAddError(`${tty}: already the port of node ${same.id}`);
    let id = Math.max(-1, ...c.nodes.map((n) => n.id)) + 1;
    let client;
    try {
      client = await connectNode(dir, c, { id, tty: port }, { timeoutMs: 3000 });
    } catch (e) {
      throw new NodeAddError(`${tty}: no pifs node answers there: ${(e as Error).message}`);
    }
    try {
      const info = await client.info();
      let resumed = false;
      let capacity = info.capacity;
      if (info.status === Status.OK) {
        if (info.clusterId !== c.cluster_id) {
          throw new NodeAddError(
            `${tty}: its card holds the store of another cluster (${info.clusterId}); ` +
              "pifs never formats over a store: wipe the card with `pifs card init --force` " +
              "if its data is not needed",
          );
        }
        const member = c.nodes.find((n) => n.id === info.nodeId);
        if (member) {
          const retired = s.index.forgotten().includes(info.nodeId);
          throw new NodeAddError(
            `${tty}: its card is node ${info.nodeId} of this cluster` +
              (retired
                ? ", drained or forgotten: a retired card does not come back; wipe it with " +
                  "`pifs card init --force` to add it as a new Pi"
                : ` already (port ${member.tty})`),
          );
        }
        // Formatted by an add that stopped before recording it: adopt it.
        id = info.nodeId;
        resumed = true;
        log(`${tty}: its card was formatted as node ${id} by an earlier add; recording it`);
      } else if (info.status === Status.EUNFORMATTED) {
        log(`${tty}: formatting its card as node ${id}`);
        const f = await client.format({
          clusterId: fromHex(c.cluster_id),
          nodeId: id,
          reserveBytes: opts.reserveBytes ?? 1024 * 1024,
        });
        capacity = f.capacity;
      } else {
        throw new NodeAddError(`${tty}: its card cannot be used: ${statusToStr(info.status)}`);
      }
      // Recorded last: a crash before this leaves a formatted card the next add adopts.
      const fresh = await readClusterFile(dir);
      fresh.nodes.push({ id, tty: opts.recordTty ?? port, ...opts.entry, capacity });
      await writeClusterFile(dir, fresh);
      result = { id, tty: port, capacity, resumed };
    } finally {
      await client.close();
    }
  } finally {
    await s.close();
  }
  // Opening the cluster brings every answering node's journal up to date.
  log(`node ${result.id}: catching up its journal`);
  const s2 = await Store.open(dir, { log });
  await s2.close();
  return result;
}
