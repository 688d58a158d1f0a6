/**
 * `pifs sim`: a cluster of emulated Pis on this machine. Each node is the
 * hosted node (the firmware's C core built for the host) serving a card image
 * over a pty, optionally paced at a baud rate like a real UART.
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { NodeClient, TimeoutError, toHex } from "../link/client.ts";
import { statusToStr } from "../link/codec.ts";
import { SerialPort } from "../link/serial.ts";
import {
  type ClusterFile,
  connectNode,
  type LinkEntry,
  type NodeEntry,
  readClusterFile,
  resolveIn,
  writeClusterFile,
} from "../store/cluster.ts";
import { buildFirmware, makeCard, MIN_CARD_SIZE, nodeBinary } from "../card/card.ts";
import { formatBytes, parseSize } from "../units.ts";
import { addNode } from "../store/membership.ts";
import { formatCluster } from "../store/init.ts";
import {
  checkLinkOptions,
  formatLinkStats,
  isLinkProcess,
  isProcessNamed,
  parseLinkStats,
  spawnDetached,
  startLink,
} from "./link.ts";

/** Options of {@linkcode simUp}. */
export interface SimUpOptions {
  /** Number of nodes (for a new cluster). */
  nodes?: number;
  /** Card size such as "64M" (a power of two). */
  cardSize?: string;
  /** Line rate; 0 = unpaced. */
  baud?: number;
  /**
   * Bit error rate of each node's line. With it or {@linkcode drop}, each
   * node sits behind a `pifs-link` (which then also does the pacing); the
   * cluster keeps them, so restarting it restarts its links too.
   */
  ber?: number;
  /** Byte drop rate of each node's line (see {@linkcode ber}). */
  drop?: number;
  /** Seed of the links' faults; node K's link gets seed + K (default 1 + K). */
  linkSeed?: number;
  /**
   * Emulated Pis instead of hosted nodes: every node a QEMU `raspi3b` or
   * `raspi0` running the node firmware, or `mixed` (alternately, from raspi3b).
   */
  qemu?: QemuChoice;
  /** Emulated Pis stop by themselves after this many seconds (tests set it). */
  qemuLimitS?: number;
  /**
   * New Pis to add to an existing cluster: each gets a new card (of
   * {@linkcode cardSize}, else the cluster's size) and a hosted node, and
   * joins as `pifs node add` does. No chunk moves until `pifs rebalance`.
   */
  add?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

/** What `--qemu` takes. */
export type QemuChoice = "raspi3b" | "raspi0" | "mixed";

/**
 * The emulated boards: QEMU program and how it takes the image the Pi's
 * firmware would load from the card, the pifs bootloader (kernel8.img /
 * kernel.img; QEMU cannot read it from the card). The bootloader then loads
 * the node firmware from the card (PIFS/NODE8.IMG / PIFS/NODE.IMG), as on a
 * real Pi.
 */
const QEMU_BOARDS: Record<string, { bin: string; image: string; load: string }> = {
  // raspi3b: a raw image via -kernel is loaded at 0x80000 and entered as the
  // Pi's boot stub would (cores 1-3 in the spin table).
  raspi3b: { bin: "qemu-system-aarch64", image: "pi3/boot.img", load: "-kernel" },
  // raspi0: -bios loads the raw image at 0x8000 like the Pi's firmware does
  // (-kernel would load it at 0x10000).
  raspi0: { bin: "qemu-system-arm", image: "pi0/boot.img", load: "-bios" },
};

/** Whether a node entry is an emulated Pi. */
export function isQemuBoard(board: string | undefined): boolean {
  return board !== undefined && board in QEMU_BOARDS;
}

/** The board of node `i` for a `--qemu` choice. */
function qemuBoard(choice: QemuChoice, i: number): string {
  if (choice === "mixed") return i % 2 === 0 ? "raspi3b" : "raspi0";
  return choice;
}

/** Path of a board's bootloader image, built on first use. */
export async function firmwareImage(board: string): Promise<string> {
  const b = QEMU_BOARDS[board];
  if (!b) throw new SimError(`board '${board}': not an emulated Pi (raspi3b or raspi0)`);
  return `${await buildFirmware(`build/${b.image}`)}/${b.image}`;
}

/** A bad `sim` request. */
export class SimError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "SIM";
  /** The error's name. */
  override name = "SimError";
}

/**
 * Whether `pid` is a running hosted node or emulated Pi (asked of `ps`: Deno
 * allows /proc only with -A).
 */
export async function isNodeProcess(pid: number | null | undefined): Promise<boolean> {
  return await isProcessNamed(pid, "pifs-node") || await isProcessNamed(pid, "qemu-system-");
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms: number) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new SimError(`timed out after ${ms} ms waiting for ${what}`);
}

/** Stops `pid` if `alive` says it runs: SIGTERM, then SIGKILL after 5 s. Whether it ran. */
async function stopProcess(
  what: string,
  pid: number | null | undefined,
  alive: (pid: number | null | undefined) => Promise<boolean>,
): Promise<boolean> {
  if (!(await alive(pid))) return false;
  Deno.kill(pid!, "SIGTERM");
  try {
    await waitFor(`${what} to stop`, async () => !(await alive(pid)), 5000);
  } catch {
    Deno.kill(pid!, "SIGKILL");
    await waitFor(`${what} to die`, async () => !(await alive(pid)), 2000);
  }
  return true;
}

/** The pty QEMU reports for its first serial port, from its log after `offset`. */
async function qemuPty(log: string, offset: number): Promise<string | null> {
  const text = await Deno.readFile(log).then(
    (b) => new TextDecoder().decode(b.subarray(offset)),
    () => "",
  );
  return text.match(/char device redirected to (\/dev\/pts\/\d+)/)?.[1] ?? null;
}

/**
 * Boots node `i` as an emulated Pi: QEMU with the node firmware, the card
 * image as its SD card and its UART on a new pty (linked from the node's tty),
 * or on the node side of its `pifs-link`.
 */
async function startQemu(dir: string, c: ClusterFile, i: number): Promise<number> {
  const n = c.nodes[i];
  const board = QEMU_BOARDS[n.board!];
  const image = await firmwareImage(n.board!);
  const log = resolveIn(dir, n.log ?? `node${n.id}.log`);
  const card = resolveIn(dir, n.card!);
  const size = (await Deno.stat(card)).size;
  if (size & (size - 1)) {
    throw new SimError(`node ${n.id}: card ${card} is ${size} bytes; QEMU needs a power of two`);
  }
  // Behind a link, QEMU opens the link's node side as a host tty.
  const serial = n.link ? await Deno.realPath(resolveIn(dir, n.link.line)) : "pty";
  const args = [
    "-M",
    n.board!,
    board.load,
    image,
    "-drive",
    `if=sd,format=raw,file=${card}`,
    "-serial",
    serial,
    "-display",
    "none",
    "-monitor",
    "none",
    // no -no-reboot: a REBOOT (watchdog reset, as for `pifs deploy`) restarts
    // the emulated Pi, into its bootloader.
  ];
  const offset = await Deno.stat(log).then((s) => s.size, () => 0);
  const limit = c.sim?.qemu_limit_s;
  const p = limit
    ? spawnDetached("timeout", ["-k", "5", String(limit), board.bin, ...args], log)
    : spawnDetached(board.bin, args, log);
  const tty = resolveIn(dir, n.tty);
  if (!n.link) await Deno.remove(tty).catch(() => {});
  await waitFor(`node ${n.id} (QEMU ${n.board}) to start (log: ${log})`, async () => {
    if (p.exited()) {
      const text = await Deno.readTextFile(log).catch(() => "");
      throw new SimError(`node ${n.id} (QEMU) exited at start: ${text.trim().split("\n").pop()}`);
    }
    if (n.link) return true;
    const pty = await qemuPty(log, offset);
    if (!pty) return false;
    await Deno.symlink(pty, tty);
    return true;
  }, 20000);
  await untilNodeFirmware(n.id, tty, p.exited);
  return p.pid;
}

/**
 * Waits until the Pi on `tty` runs its node firmware: its bootloader answers
 * HELLO too (as `boot-…`) while it listens for a host, for about a second.
 * One that keeps answering as the bootloader has no runnable firmware.
 */
async function untilNodeFirmware(id: number, tty: string, exited: () => boolean): Promise<void> {
  const end = Date.now() + 30000;
  let bootSince = 0;
  for (;;) {
    if (exited()) throw new SimError(`node ${id} (QEMU) exited while booting`);
    let fw = "", card = 0;
    try {
      const c = await NodeClient.connect(await SerialPort.open(tty, { baud: 115200 }), {
        timeoutMs: 300,
        helloRetries: 1,
      });
      fw = c.hello.firmware;
      card = c.hello.cardStatus;
      await c.close();
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
    }
    if (fw && !fw.startsWith("boot-")) return;
    if (fw) {
      bootSince ||= Date.now();
      if (Date.now() - bootSince > 4000) {
        throw new SimError(
          `node ${id} stays in its bootloader: no runnable node firmware on its card (${
            statusToStr(card)
          })`,
        );
      }
    }
    if (Date.now() > end) throw new SimError(`node ${id} (QEMU) did not answer within 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function startNode(dir: string, c: ClusterFile, i: number): Promise<number> {
  const n = c.nodes[i];
  if (isQemuBoard(n.board)) return await startQemu(dir, c, i);
  const bin = await nodeBinary();
  const log = resolveIn(dir, n.log ?? `node${n.id}.log`);
  const card = resolveIn(dir, n.card!);
  if (n.link) {
    // Behind a link: the node opens the link's node side and runs unpaced
    // (pifs-link paces the line); it is up once it has opened its card.
    const line = resolveIn(dir, n.link.line);
    const offset = await Deno.stat(log).then((s) => s.size, () => 0);
    const p = spawnDetached(bin, ["--card", card, "--tty", line, "--baud", "0"], log);
    await waitFor(`node ${n.id} to start (log: ${log})`, async () => {
      const text = await Deno.readFile(log).then(
        (b) => new TextDecoder().decode(b.subarray(offset)),
        () => "",
      );
      if (p.exited()) {
        throw new SimError(`node ${n.id} exited at start: ${text.trim().split("\n").pop()}`);
      }
      return text.includes("pifs-node: card");
    }, 10000);
    return p.pid;
  }
  const tty = resolveIn(dir, n.tty);
  await Deno.remove(tty).catch(() => {});
  // setsid: the node outlives this command and ignores the terminal's signals.
  const p = spawnDetached(bin, ["--card", card, "--pty-link", tty, "--baud", String(c.baud)], log);
  await waitFor(`node ${n.id} to create its pty (log: ${log})`, async () => {
    if (p.exited()) {
      const text = await Deno.readTextFile(log).catch(() => "");
      throw new SimError(`node ${n.id} exited at start: ${text.trim().split("\n").pop()}`);
    }
    return await Deno.lstat(tty).then(() => true, () => false);
  }, 10000);
  return p.pid;
}

/** The link node `i` should sit behind, or null when the cluster has no faults. */
function wantedLink(c: ClusterFile, i: number): Omit<LinkEntry, "pid"> | null {
  const n = c.nodes[i];
  // QEMU does not pace its UART: an emulated Pi gets its line rate from a link.
  const paceQemu = isQemuBoard(n.board) && c.baud > 0;
  if (!c.faults && !paceQemu) return null;
  return {
    line: n.link?.line ?? `node${n.id}.line`,
    baud: c.baud,
    ber: c.faults?.ber ?? 0,
    drop: c.faults?.drop ?? 0,
    // Each node its own fault pattern, reproducible from the cluster's seed.
    seed: (c.faults?.seed ?? 1) + n.id,
    log: n.link?.log ?? `node${n.id}.link.log`,
  };
}

function sameLink(a: Omit<LinkEntry, "pid">, b: Omit<LinkEntry, "pid">): boolean {
  return a.line === b.line && a.baud === b.baud && a.ber === b.ber && a.drop === b.drop &&
    a.seed === b.seed && a.log === b.log;
}

/**
 * Starts a simulated cluster in `dir`: new card images and a FORMAT for each
 * node when `dir` holds no cluster yet, else the existing nodes on their
 * existing cards (nothing is re-formatted). Writes `dir/cluster.json`.
 */
export async function simUp(dir: string, opts: SimUpOptions = {}): Promise<ClusterFile> {
  const log = opts.log ?? (() => {});
  checkLinkOptions({ ber: opts.ber, drop: opts.drop, seed: opts.linkSeed });
  const faultsGiven = opts.ber !== undefined || opts.drop !== undefined;
  const seedAlone = (faults?: ClusterFile["faults"]) => {
    if (opts.linkSeed !== undefined && !faultsGiven && !faults) {
      throw new SimError(`--link-seed ${opts.linkSeed}: only with --ber or --drop`);
    }
  };
  await Deno.mkdir(dir, { recursive: true });
  let c: ClusterFile;
  let fresh = false;
  const exists = await Deno.stat(`${dir}/cluster.json`).then(() => true, () => false);
  if (exists) {
    c = await readClusterFile(dir);
    seedAlone(c.faults);
    if (opts.nodes !== undefined && opts.nodes !== c.nodes.length + (opts.add ?? 0)) {
      throw new SimError(
        `${dir} already holds a cluster of ${c.nodes.length} nodes; --nodes ${opts.nodes} does not match (adding nodes comes with \`node add\`)`,
      );
    }
    if (opts.baud !== undefined) c.baud = opts.baud;
    if (opts.qemu) {
      c.nodes.forEach((n, i) => {
        const want = qemuBoard(opts.qemu!, i);
        if (n.board !== want) {
          throw new SimError(
            `${dir}: node ${n.id} is a ${
              n.board ?? "hosted"
            } node; --qemu ${opts.qemu} would make it a ${want}`,
          );
        }
      });
    }
    if (opts.qemuLimitS !== undefined && c.sim) c.sim.qemu_limit_s = opts.qemuLimitS;
  } else {
    if (opts.add) throw new SimError(`--add: ${dir} holds no cluster to add Pis to`);
    seedAlone();
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
      sim: { card_size: size, ...(opts.qemuLimitS ? { qemu_limit_s: opts.qemuLimitS } : {}) },
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
        board: opts.qemu ? qemuBoard(opts.qemu, i) : "hosted",
      });
    }
    fresh = true;
  }
  if (faultsGiven || opts.linkSeed !== undefined) {
    c.faults = {
      ber: opts.ber ?? c.faults?.ber ?? 0,
      drop: opts.drop ?? c.faults?.drop ?? 0,
      seed: opts.linkSeed ?? c.faults?.seed,
    };
    if (c.faults.seed === undefined) delete c.faults.seed;
  }
  for (let i = 0; i < c.nodes.length; i++) {
    const n = c.nodes[i];
    const want = wantedLink(c, i);
    const nodeUp = await isNodeProcess(n.pid);
    const linkUp = await isLinkProcess(n.link?.pid);
    if (nodeUp && (want ? linkUp && sameLink(n.link!, want) : !linkUp)) {
      log(`node ${n.id} already running (pid ${n.pid})`);
      continue;
    }
    if (!n.card) throw new SimError(`node ${n.id} has no card in ${dir}/cluster.json`);
    // A node whose line is to change: stop it (and its old link) first.
    if (await stopProcess(`node ${n.id}`, n.pid, isNodeProcess)) {
      log(`node ${n.id} stopped to change its line`);
    }
    n.pid = null;
    if (n.link && await stopProcess(`node ${n.id}'s link`, n.link.pid, isLinkProcess)) {
      n.link.pid = null;
    }
    if (!want) {
      delete n.link;
      n.pid = await startNode(dir, c, i);
      log(`node ${n.id} up: pid ${n.pid}, tty ${resolveIn(dir, n.tty)}`);
      continue;
    }
    const link = await startLink({
      a: resolveIn(dir, n.tty),
      b: resolveIn(dir, want.line),
      baud: want.baud,
      ber: want.ber,
      drop: want.drop,
      seed: want.seed,
      detached: true,
      log: resolveIn(dir, want.log),
    });
    n.link = { pid: link.pid, ...want };
    try {
      n.pid = await startNode(dir, c, i);
    } catch (e) {
      await stopProcess(`node ${n.id}'s link`, link.pid, isLinkProcess);
      n.link.pid = null;
      throw e;
    }
    log(
      `node ${n.id} up: pid ${n.pid}, tty ${resolveIn(dir, n.tty)} through pifs-link ` +
        `pid ${link.pid} (ber ${want.ber}, drop ${want.drop}, baud ${want.baud})`,
    );
  }
  await writeClusterFile(dir, c);
  // A new cluster is made as `pifs init` makes one from real ports.
  if (fresh) await formatCluster(dir, c, { log, timeoutMs: 3000 });
  // An existing one: each card must still hold this cluster's store.
  for (const n of fresh ? [] : c.nodes) {
    const client = await connectNode(dir, c, n, { timeoutMs: 3000 });
    try {
      const info = await client.info();
      if (info.status !== 0) {
        throw new SimError(
          `node ${n.id}: card ${n.card} cannot be used: ${statusToStr(info.status)}; nothing ` +
            `was written to it`,
        );
      }
      if (info.clusterId !== c.cluster_id) {
        throw new SimError(
          `node ${n.id}: card ${n.card} holds another cluster's store (cluster ` +
            `${info.clusterId}, this one is ${c.cluster_id}); nothing was written to it`,
        );
      }
    } finally {
      await client.close();
    }
  }
  if (opts.add) return await addSimNodes(dir, c, opts.add, opts, log);
  return c;
}

/** Makes `count` new cards and hosted nodes and adds each to the cluster as `node add` does. */
async function addSimNodes(
  dir: string,
  c: ClusterFile,
  count: number,
  opts: SimUpOptions,
  log: (m: string) => void,
): Promise<ClusterFile> {
  if (!Number.isInteger(count) || count < 1 || count + c.nodes.length > 64) {
    throw new SimError(`--add ${count}: must be a whole number, at most 64 nodes in all`);
  }
  if (c.faults || c.nodes.some((n) => isQemuBoard(n.board))) {
    throw new SimError(
      "--add: only clusters of hosted nodes without line faults can take new Pis this way",
    );
  }
  const size = opts.cardSize ? parseSize(opts.cardSize) : c.sim?.card_size ?? MIN_CARD_SIZE;
  for (let k = 0; k < count; k++) {
    const id = Math.max(-1, ...c.nodes.map((n) => n.id)) + 1;
    const entry: NodeEntry = {
      id,
      tty: `node${id}.tty`,
      card: `node${id}.img`,
      pid: null,
      log: `node${id}.log`,
      board: "hosted",
    };
    log(`making card ${entry.card} (${size / 1024 ** 2} MiB, FAT32)`);
    await makeCard(resolveIn(dir, entry.card!), size, { label: `PIFS${id}` });
    // Started as the cluster's next node, then recorded by addNode.
    entry.pid = await startNode(dir, { ...c, nodes: [...c.nodes, entry] }, c.nodes.length);
    try {
      const r = await addNode(dir, resolveIn(dir, entry.tty), {
        log,
        // Recorded relative to the cluster directory, as sim up's own nodes are.
        recordTty: entry.tty,
        entry: { card: entry.card, pid: entry.pid, log: entry.log, board: "hosted" },
      });
      log(`node ${r.id} added: ${formatBytes(r.capacity)} for chunks`);
    } catch (e) {
      await stopProcess(`node ${id}`, entry.pid, isNodeProcess);
      throw e;
    }
    c = await readClusterFile(dir);
  }
  return c;
}

/**
 * Stops the nodes of the cluster in `dir`, and their links if they have any
 * (SIGTERM, then SIGKILL after 5 s).
 */
export async function simDown(dir: string, log: (m: string) => void = () => {}): Promise<void> {
  const c = await readClusterFile(dir);
  for (const n of c.nodes) {
    if (await stopProcess(`node ${n.id}`, n.pid, isNodeProcess)) log(`node ${n.id} stopped`);
    n.pid = null;
    if (!n.link) continue;
    if (await stopProcess(`node ${n.id}'s link`, n.link.pid, isLinkProcess)) {
      const text = await Deno.readTextFile(resolveIn(dir, n.link.log)).catch(() => "");
      const stats = parseLinkStats(text);
      log(`node ${n.id}'s link stopped${stats ? `: ${formatLinkStats(stats)}` : ""}`);
    }
    n.link.pid = null;
  }
  await writeClusterFile(dir, c);
}
