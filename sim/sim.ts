/**
 * `pifs sim`: a cluster of emulated Pis on this machine. Each node is the
 * hosted node (the firmware's C core built for the host) serving a card image
 * over a pty, optionally paced at a baud rate like a real UART.
 *
 * @module
 */
import { fromHex, toHex } from "../link/client.ts";
import {
  type ClusterFile,
  connectNode,
  readClusterFile,
  resolveIn,
  writeClusterFile,
} from "../store/cluster.ts";
import { makeCard, parseSize } from "./card.ts";
import { run } from "./_run.ts";

/** Options of {@linkcode simUp}. */
export interface SimUpOptions {
  /** Number of nodes (for a new cluster). */
  nodes?: number;
  /** Card size such as "64M" (a power of two). */
  cardSize?: string;
  /** Line rate; 0 = unpaced. */
  baud?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/** A bad `sim` request. */
export class SimError extends Error {
  override name = "SimError";
}

const REPO = new URL("..", import.meta.url).pathname;

/** Path of the hosted node binary, built on first use. */
export async function nodeBinary(): Promise<string> {
  const env = Deno.env.get("PIFS_NODE_BIN");
  if (env) return env;
  const bin = `${REPO}firmware/build/pifs-node`;
  await run("make", ["-s", "-C", `${REPO}firmware`, "build/pifs-node"]);
  return bin;
}

/** Whether `pid` is a running hosted node (asked of `ps`: Deno allows /proc only with -A). */
export async function isNodeProcess(pid: number | null | undefined): Promise<boolean> {
  if (!pid) return false;
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=,args=", "-p", String(pid)],
    stdout: "piped",
    stderr: "null",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim();
  return out.success && line.includes("pifs-node") && !line.startsWith("Z");
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms: number) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new SimError(`timed out after ${ms} ms waiting for ${what}`);
}

async function startNode(dir: string, c: ClusterFile, i: number): Promise<number> {
  const n = c.nodes[i];
  const bin = await nodeBinary();
  const tty = resolveIn(dir, n.tty);
  await Deno.remove(tty).catch(() => {});
  const args = [
    "--card",
    resolveIn(dir, n.card!),
    "--pty-link",
    tty,
    "--baud",
    String(c.baud),
  ];
  const log = resolveIn(dir, n.log ?? `node${n.id}.log`);
  // setsid: the node outlives this command and ignores the terminal's signals.
  const quoted = [bin, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const child = new Deno.Command("sh", {
    args: ["-c", `exec setsid ${quoted} >>'${log.replaceAll("'", `'\\''`)}' 2>&1`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  const pid = child.pid;
  let exited = false;
  child.status.then(() => exited = true);
  await waitFor(`node ${n.id} to create its pty (log: ${log})`, async () => {
    if (exited) {
      const text = await Deno.readTextFile(log).catch(() => "");
      throw new SimError(`node ${n.id} exited at start: ${text.trim().split("\n").pop()}`);
    }
    return await Deno.lstat(tty).then(() => true, () => false);
  }, 10000);
  return pid;
}

/**
 * Starts a simulated cluster in `dir`: new card images and a FORMAT for each
 * node when `dir` holds no cluster yet, else the existing nodes on their
 * existing cards (nothing is re-formatted). Writes `dir/cluster.json`.
 */
export async function simUp(dir: string, opts: SimUpOptions = {}): Promise<ClusterFile> {
  const log = opts.log ?? (() => {});
  await Deno.mkdir(dir, { recursive: true });
  let c: ClusterFile;
  let fresh = false;
  const exists = await Deno.stat(`${dir}/cluster.json`).then(() => true, () => false);
  if (exists) {
    c = await readClusterFile(dir);
    if (opts.nodes !== undefined && opts.nodes !== c.nodes.length) {
      throw new SimError(
        `${dir} already holds a cluster of ${c.nodes.length} nodes; --nodes ${opts.nodes} does not match (adding nodes comes with \`node add\`)`,
      );
    }
    if (opts.baud !== undefined) c.baud = opts.baud;
  } else {
    const nodes = opts.nodes ?? 3;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) {
      throw new SimError(`--nodes ${nodes}: must be a whole number from 1 to 64`);
    }
    const size = parseSize(opts.cardSize ?? "64M");
    const baud = opts.baud ?? 0;
    if (!Number.isInteger(baud) || baud < 0) throw new SimError(`--baud ${baud}: not a baud rate`);
    c = {
      version: 1,
      cluster_id: toHex(crypto.getRandomValues(new Uint8Array(16))),
      baud,
      created: new Date().toISOString(),
      sim: { card_size: size },
      nodes: [],
    };
    for (let i = 0; i < nodes; i++) {
      const card = `node${i}.img`;
      log(`making card ${card} (${size / 1024 ** 2} MiB, FAT32)`);
      await makeCard(resolveIn(dir, card), size, { label: `PIFS${i}` });
      c.nodes.push({
        id: i,
        tty: `node${i}.tty`,
        card,
        pid: null,
        log: `node${i}.log`,
        board: "hosted",
      });
    }
    fresh = true;
  }
  for (let i = 0; i < c.nodes.length; i++) {
    const n = c.nodes[i];
    if (await isNodeProcess(n.pid)) {
      log(`node ${n.id} already running (pid ${n.pid})`);
      continue;
    }
    if (!n.card) throw new SimError(`node ${n.id} has no card in ${dir}/cluster.json`);
    n.pid = await startNode(dir, c, i);
    log(`node ${n.id} up: pid ${n.pid}, tty ${resolveIn(dir, n.tty)}`);
  }
  await writeClusterFile(dir, c);
  for (const n of c.nodes) {
    const client = await connectNode(dir, c, n, { timeoutMs: 3000 });
    try {
      if (fresh) {
        const info = await client.format({
          clusterId: fromHex(c.cluster_id),
          nodeId: n.id,
          reserveBytes: 1024 * 1024,
        });
        log(`node ${n.id} formatted: ${(info.capacity / 1024 ** 2).toFixed(1)} MiB for chunks`);
      } else {
        const info = await client.info();
        if (info.status !== 0 || info.clusterId !== c.cluster_id) {
          throw new SimError(
            `node ${n.id}: card ${n.card} is not this cluster's (status ${info.status}, cluster ${info.clusterId})`,
          );
        }
      }
    } finally {
      await client.close();
    }
  }
  return c;
}

/** Stops the nodes of the cluster in `dir` (SIGTERM, then SIGKILL after 5 s). */
export async function simDown(dir: string, log: (m: string) => void = () => {}): Promise<void> {
  const c = await readClusterFile(dir);
  for (const n of c.nodes) {
    if (!(await isNodeProcess(n.pid))) {
      n.pid = null;
      continue;
    }
    Deno.kill(n.pid!, "SIGTERM");
    try {
      await waitFor(`node ${n.id} to stop`, async () => !(await isNodeProcess(n.pid)), 5000);
    } catch {
      Deno.kill(n.pid!, "SIGKILL");
      await waitFor(`node ${n.id} to die`, async () => !(await isNodeProcess(n.pid)), 2000);
    }
    log(`node ${n.id} stopped`);
    n.pid = null;
  }
  await writeClusterFile(dir, c);
}
