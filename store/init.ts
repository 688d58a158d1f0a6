/**
 * Making a cluster from the Pis at some serial ports (`pifs init`), and
 * asking what answers at a port (`pifs ports`). `pifs sim up` makes its
 * clusters through {@linkcode formatCluster} too, so every test that starts
 * a simulated cluster goes through the same checks and formatting.
 *
 * Nothing is formatted until every Pi has answered and every card has been
 * found fit: a card that holds a pifs store (this cluster's or another's)
 * is refused unless `force`, with what would be destroyed; a card that is
 * damaged or not FAT32 is refused with the node's reason.
 *
 * @example
 * ```ts ignore
 * import { initCluster } from "./init.ts";
 * const c = await initCluster("cluster", ["/dev/ttyUSB0", "/dev/ttyUSB1"]);
 * console.log(`cluster ${c.cluster_id}: ${c.nodes.length} nodes`);
 * ```
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import { PifsError } from "../errors.ts";
import { fromHex, NodeClient, type NodeInfo, TimeoutError, toHex } from "../link/client.ts";
import { Status, statusToStr } from "../link/codec.ts";
import { devicePath, listPorts, SerialPort } from "../link/serial.ts";
import {
  type ClusterFile,
  connectNode,
  nearestBaud,
  type NodeEntry,
  resolveIn,
  writeClusterFile,
} from "./cluster.ts";

/** A cluster cannot be made from these ports (nothing was formatted). */
export class InitError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "INIT";
  /** The error's name. */
  override name = "InitError";
}

/** What to check when nothing answers at a port: the usual causes, in order. */
export const NO_ANSWER_HINT = "check the wiring (adapter TX to the Pi's RX, header pin 10; " +
  "adapter RX to the Pi's TX, pin 8; GND to pin 6; 3.3 V adapters only), that the Pi has " +
  "power, and that its card boots the pifs firmware (pifs card init)";

/** Options of {@linkcode formatCluster} and {@linkcode initCluster}. */
export interface FormatClusterOptions {
  /** Format cards that hold a pifs store (theirs is lost). */
  force?: boolean;
  /** Free space left on each card's FAT volume, bytes (default 1 MiB). */
  reserveBytes?: number;
  /** How long to wait for each Pi's HELLO, ms (default 3000). */
  timeoutMs?: number;
  /** Tries of each HELLO (default: the client's; `initCluster` makes it 2). */
  helloRetries?: number;
  /**
   * Refuse two ports that answer with the same board serial: the same Pi at
   * two paths that are not links to one another (`initCluster`; 0, unknown,
   * is not compared; emulated Pis may all report one serial).
   */
  distinctBoards?: boolean;
  /** Progress messages. */
  log?: (msg: string) => void;
}

interface Found {
  node: NodeEntry;
  client: NodeClient;
  info: NodeInfo;
}

/**
 * Formats the card of every node of `draft` (a cluster file whose nodes'
 * ports answer) into the cluster `draft.cluster_id`, each with its node id,
 * and writes `DIR/cluster.json`. Every Pi is asked first; any refusal (no
 * answer, a card with a store, a damaged card) throws {@linkcode InitError}
 * naming every port concerned, before anything is written to any card.
 */
export async function formatCluster(
  dir: string,
  draft: ClusterFile,
  opts: FormatClusterOptions = {},
): Promise<ClusterFile> {
  const log = opts.log ?? (() => {});
  const found: Found[] = [];
  const problems: string[] = [];
  try {
    // 1. Every Pi answers, and says what its card holds.
    await Promise.all(draft.nodes.map(async (node) => {
      const port = resolveIn(dir, node.tty);
      let client: NodeClient;
      try {
        client = await connectNode(dir, draft, node, {
          timeoutMs: opts.timeoutMs ?? 3000,
          helloRetries: opts.helloRetries,
        });
      } catch (e) {
        problems.push(`${port}: no pifs node answers (${(e as Error).message}): ${NO_ANSWER_HINT}`);
        return;
      }
      found.push({ node, client, info: await client.info() });
    }));
    const serials = new Map<bigint, string>();
    for (const f of found.sort((a, b) => a.node.id - b.node.id)) {
      const port = resolveIn(dir, f.node.tty), i = f.info;
      const serial = f.client.hello.serial;
      if (opts.distinctBoards && serial !== 0n) {
        const other = serials.get(serial);
        if (other) {
          problems.push(`${port} and ${other} answer with the same Pi (board serial ${serial})`);
        }
        serials.set(serial, port);
      }
      if (i.status === Status.OK) {
        const whose = i.clusterId === draft.cluster_id
          ? "this cluster's"
          : `cluster ${i.clusterId}'s`;
        const what = `${port}: its card holds a pifs store (${whose}, node ${i.nodeId}, ` +
          `${i.chunks} chunk${i.chunks === 1 ? "" : "s"}, ${i.capacity - i.free} bytes)`;
        if (!opts.force) problems.push(`${what}: pifs never formats over a store without --force`);
        else log(`${what}: formatting over it (--force)`);
      } else if (i.status === Status.ECORRUPT && opts.force) {
        log(`${port}: its card's store is damaged: formatting over it (--force)`);
      } else if (i.status !== Status.EUNFORMATTED) {
        problems.push(`${port}: its card cannot be used: ${statusToStr(i.status)}`);
      }
    }
    if (problems.length) {
      throw new InitError(
        `nothing was formatted: ${problems.length} of ${draft.nodes.length} Pis cannot join:\n  ` +
          problems.join("\n  "),
      );
    }
    // 2. Every card formatted, side by side.
    await Promise.all(found.map(async (f) => {
      const r = await f.client.format({
        clusterId: fromHex(draft.cluster_id),
        nodeId: f.node.id,
        reserveBytes: opts.reserveBytes ?? 1024 * 1024,
        force: opts.force && f.info.status !== Status.EUNFORMATTED,
      });
      if (r.status !== Status.OK) {
        throw new InitError(
          `${resolveIn(dir, f.node.tty)}: FORMAT failed: ${statusToStr(r.status)}`,
        );
      }
      f.node.capacity = r.capacity; // its placement weight, recorded in cluster.json
      log(`node ${f.node.id} formatted: ${formatBytes(r.capacity)} for chunks`);
    }));
  } finally {
    await Promise.all(found.map((f) => f.client.close().catch(() => {})));
  }
  await writeClusterFile(dir, draft);
  return draft;
}

/** Options of {@linkcode initCluster}. */
export interface InitClusterOptions extends FormatClusterOptions {
  /** Line rate of the ports (default 115200, what a freshly booted Pi listens at). */
  baud?: number;
}

/**
 * Creates the cluster `DIR` from the Pis at `ports` (in order: node ids 0,
 * 1, ...): refuses a DIR that holds a cluster, a port given twice or the
 * same Pi at two paths; then {@linkcode formatCluster}. `cluster.json`
 * records each port by its stable `/dev/serial/by-id/` name where it has one.
 */
export async function initCluster(
  dir: string,
  ports: string[],
  opts: InitClusterOptions = {},
): Promise<ClusterFile> {
  if (ports.length === 0) throw new InitError("no --port given: name the port of each Pi");
  if (await Deno.stat(`${dir}/cluster.json`).then(() => true, () => false)) {
    throw new InitError(`${dir} holds a cluster already (cluster.json): choose another directory`);
  }
  const realOf = new Map<string, string>(); // port as given -> the device it is
  const portOf = new Map<string, string>(); // device -> port as given
  for (const p of ports) {
    const r = await devicePath(p);
    if (r === null) throw new InitError(`${p}: no such port (see pifs ports)`);
    const other = portOf.get(r);
    if (other !== undefined) {
      throw new InitError(
        other === p ? `${p}: given twice` : `${p} and ${other} are the same port (${r})`,
      );
    }
    portOf.set(r, p);
    realOf.set(p, r);
  }
  const byId = await byIdNames();
  const abs = (p: string) => (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`);
  const draft: ClusterFile = {
    version: 1,
    cluster_id: toHex(crypto.getRandomValues(new Uint8Array(16))),
    baud: opts.baud ?? 115200,
    created: new Date().toISOString(),
    nodes: ports.map((p, id) => ({ id, tty: byId.get(realOf.get(p)!) ?? abs(p) })),
  };
  const existed = await Deno.stat(dir).then(() => true, () => false);
  await Deno.mkdir(dir, { recursive: true });
  // A port where nothing answers is named after two HELLOs, not after a long wait.
  const o = { ...opts, helloRetries: opts.helloRetries ?? 2, distinctBoards: true };
  try {
    return await formatCluster(dir, draft, o);
  } catch (e) {
    // A refused init leaves nothing behind: the directory it made goes
    // (only if still empty: never anything a user put there).
    if (!existed) await Deno.remove(dir).catch(() => {});
    throw e;
  }
}

/** `/dev/serial/by-id/` names by the device they point to. */
async function byIdNames(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const link of await listPorts()) {
    if (!link.startsWith("/dev/serial/by-id/")) continue;
    const target = await devicePath(link);
    if (target) out.set(target, link);
  }
  return out;
}

/** What answers at a serial port. */
export interface PortProbe {
  /** The port's path. */
  port: string;
  /** Its stable name, when it has one. */
  byId?: string;
  /** `node`: pifs node firmware; `bootloader`: the pifs bootloader; `nothing`: no answer; `other`: bytes that are not pifs frames, or the port cannot be opened. */
  kind: "node" | "bootloader" | "nothing" | "other";
  /** Board ("raspi3b", "raspi0", "hosted"), for a node or bootloader. */
  board?: string;
  /** Firmware version, for a node or bootloader. */
  firmware?: string;
  /** The card's state: `ok` (a store), or why not. */
  card?: string;
  /** The cluster its card belongs to, and its node id there. */
  clusterId?: string;
  /** Its node id in that cluster. */
  nodeId?: number;
  /** What went wrong, for `other`. */
  detail?: string;
}

/**
 * Asks the Pi at `port` who it is (HELLO, then INFO for a node), at `baud`
 * (default 115200), waiting `timeoutMs` (default 1500).
 */
export async function probePort(
  port: string,
  opts: { baud?: number; timeoutMs?: number } = {},
): Promise<PortProbe> {
  const baud = opts.baud ?? 115200;
  let link: SerialPort;
  try {
    link = await SerialPort.open(port, { baud: nearestBaud(baud) });
  } catch (e) {
    return { port, kind: "other", detail: `cannot open: ${(e as Error).message}` };
  }
  let client: NodeClient;
  try {
    client = await NodeClient.connect(link, {
      baud,
      timeoutMs: opts.timeoutMs ?? 1500,
      helloRetries: 1,
    });
  } catch (e) {
    await link.close().catch(() => {});
    return e instanceof TimeoutError
      ? { port, kind: "nothing" }
      : { port, kind: "other", detail: (e as Error).message };
  }
  try {
    const h = client.hello;
    if (h.firmware.startsWith("boot-")) {
      return { port, kind: "bootloader", board: h.board, firmware: h.firmware };
    }
    const i = await client.info();
    return {
      port,
      kind: "node",
      board: h.board,
      firmware: h.firmware,
      card: i.status === Status.OK ? "ok" : statusToStr(i.status),
      ...(i.status === Status.OK ? { clusterId: i.clusterId, nodeId: i.nodeId } : {}),
    };
  } catch (e) {
    return { port, kind: "other", detail: (e as Error).message };
  } finally {
    await client.close().catch(() => {});
  }
}

/** Every serial port of this host ({@linkcode listPorts}), each probed. */
export async function probePorts(
  opts: { baud?: number; timeoutMs?: number; ports?: string[] } = {},
): Promise<PortProbe[]> {
  const all = opts.ports ?? await listPorts();
  const byId = await byIdNames();
  // A by-id name is shown beside its device, not probed twice.
  const devices = all.filter((p) => !p.startsWith("/dev/serial/by-id/"));
  return await Promise.all(devices.map(async (p) => {
    const r = await probePort(p, opts);
    const id = byId.get(await devicePath(p) ?? p);
    return id ? { ...r, byId: id } : r;
  }));
}
