/**
 * The cluster description, `DIR/cluster.json`, and connections to its nodes.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { z } from "zod";
import { type ClientOptions, NodeClient } from "../link/client.ts";
import { SerialPort } from "../link/serial.ts";

/** One node of a cluster, as `cluster.json` lists it. */
export interface NodeEntry {
  /** Node id within the cluster. */
  id: number;
  /** Its serial port (a pty for a simulated node), relative to the cluster directory or absolute. */
  tty: string;
  /** Card image of a simulated node. */
  card?: string;
  /** Process id of a simulated node while it runs. */
  pid?: number | null;
  /** Log file of a simulated node. */
  log?: string;
  /**
   * Board name. A simulated node is the hosted node for `hosted` (or none),
   * an emulated Pi (QEMU) for `raspi3b` or `raspi0`.
   */
  board?: string;
  /**
   * The emulated line (`pifs-link`) between `tty` (host side) and the node of
   * a simulated cluster with faults.
   */
  link?: LinkEntry;
  /**
   * Bytes for chunks its store had when it joined (was formatted): its weight
   * in placement, the same whether it answers or not. Absent from clusters
   * made before it was recorded: the node's INFO at open is used.
   */
  capacity?: number;
}

/** A simulated node's emulated line, as `cluster.json` records it. */
export interface LinkEntry {
  /** Process id of `pifs-link` while it runs. */
  pid: number | null;
  /** The node's side of the line, relative to the cluster directory or absolute. */
  line: string;
  /** Line rate (0: unpaced). */
  baud: number;
  /** Bit error rate. */
  ber: number;
  /** Byte drop rate. */
  drop: number;
  /** Seed of its fault generator. */
  seed?: number;
  /** Its log file. */
  log: string;
}

/** The content of `cluster.json`. */
export interface ClusterFile {
  /** Format version: 1. */
  version: 1;
  /** 16-byte cluster id, hex. */
  cluster_id: string;
  /** Line rate of the links (0: unpaced simulation). */
  baud: number;
  /** The nodes, in order. */
  nodes: NodeEntry[];
  /** When the cluster was made. */
  created?: string;
  /** Settings of a simulated cluster. */
  sim?: {
    card_size: number;
    /** Emulated Pis (QEMU) stop by themselves after this many seconds. */
    qemu_limit_s?: number;
  };
  /** Faults of a simulated cluster's lines (each node then sits behind a `pifs-link`). */
  faults?: { ber: number; drop: number; seed?: number };
}

const NodeEntrySchema = z.object({
  id: z.number().int().min(0),
  tty: z.string().min(1),
  card: z.string().min(1).optional(),
  pid: z.number().int().positive().nullable().optional(),
  log: z.string().optional(),
  board: z.string().optional(),
  capacity: z.number().int().min(0).optional(),
  link: z.object({
    pid: z.number().int().positive().nullable(),
    line: z.string().min(1),
    baud: z.number().int().min(0),
    ber: z.number().min(0).max(1),
    drop: z.number().min(0).max(1),
    seed: z.number().int().min(0).optional(),
    log: z.string().min(1),
  }).optional(),
});

const ClusterFileSchema: z.ZodType<ClusterFile> = z.object({
  version: z.literal(1),
  cluster_id: z.string().regex(/^[0-9a-f]{32}$/, "must be 32 lowercase hex digits"),
  baud: z.number().int().min(0),
  nodes: z.array(NodeEntrySchema),
  created: z.string().optional(),
  sim: z.object({
    card_size: z.number().int().positive(),
    qemu_limit_s: z.number().int().positive().optional(),
  }).optional(),
  faults: z.object({
    ber: z.number().min(0).max(1),
    drop: z.number().min(0).max(1),
    seed: z.number().int().min(0).optional(),
  }).optional(),
});

/** A cluster directory that is missing or not valid. */
export class ClusterError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "CLUSTER";
  /** The error's name. */
  override name = "ClusterError";
  /** The cluster directory. */
  readonly dir: string;
  /** A problem with the cluster at `dir`. */
  constructor(dir: string, message: string) {
    super(message);
    this.dir = dir;
  }
}

/** The cluster directory from `--cluster` or `PIFS_CLUSTER`. */
export function clusterDir(option?: string): string {
  const dir = option ?? Deno.env.get("PIFS_CLUSTER");
  if (!dir) {
    throw new ClusterError(
      "",
      "no cluster given: pass --cluster DIR or set PIFS_CLUSTER=DIR (make one with `pifs sim up --dir DIR`)",
    );
  }
  return dir;
}

/**
 * Reads and validates `DIR/cluster.json`; errors name the file and the field.
 *
 * @example
 * ```ts
 * import { readClusterFile } from "./cluster.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/cluster.json`, '{"version": 1}');
 * try {
 *   await readClusterFile(dir);
 *   throw new Error("accepted a bad cluster.json");
 * } catch (e) {
 *   if (!String(e).includes("cluster_id")) throw e;
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function readClusterFile(dir: string): Promise<ClusterFile> {
  const path = `${dir}/cluster.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const what = await Deno.stat(dir).then(
        (s) => s.isDirectory ? "is not a pifs cluster (no cluster.json)" : "is not a directory",
        () => "does not exist",
      );
      throw new ClusterError(dir, `${dir} ${what}`);
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ClusterError(dir, `${path}: not valid JSON: ${(e as Error).message}`);
  }
  const r = ClusterFileSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue.path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("")
      .replace(/^\./, "");
    throw new ClusterError(dir, `${path}: ${where || "(top)"}: ${issue.message}`);
  }
  return r.data;
}

/** Writes `DIR/cluster.json` atomically (write to a temporary file, rename). */
export async function writeClusterFile(dir: string, c: ClusterFile): Promise<void> {
  const tmp = `${dir}/.cluster.json.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(c, null, 2) + "\n");
  await Deno.rename(tmp, `${dir}/cluster.json`);
}

/** Resolves a path in `cluster.json`, which may be relative to the cluster directory. */
export function resolveIn(dir: string, p: string): string {
  return p.startsWith("/") ? p : `${dir}/${p}`;
}

/** Opens node `node`'s serial line at the cluster's line rate. */
export async function openNodePort(
  dir: string,
  cluster: ClusterFile,
  node: NodeEntry,
): Promise<SerialPort> {
  const baud = cluster.baud || 115200;
  return await SerialPort.open(resolveIn(dir, node.tty), { baud: nearestBaud(baud) });
}

/** Connects to one node of a cluster over its tty. */
export async function connectNode(
  dir: string,
  cluster: ClusterFile,
  node: NodeEntry,
  opts: ClientOptions = {},
): Promise<NodeClient> {
  const port = await openNodePort(dir, cluster, node);
  return await NodeClient.connect(port, { baud: cluster.baud || 115200, ...opts });
}

const STANDARD_BAUDS = [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000];

/** The termios speed to ask for: a pty ignores it, a real port needs a standard one. */
export function nearestBaud(b: number): number {
  return STANDARD_BAUDS.includes(b) ? b : 115200;
}
