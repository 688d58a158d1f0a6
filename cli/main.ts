/**
 * The `pifs` command line.
 *
 * @module
 */
import { Command, CommanderError, Option } from "commander";
import { type NodeClient, NodeError } from "../link/client.ts";
import { statusToStr } from "../link/codec.ts";
import {
  clusterDir,
  type ClusterFile,
  connectNode,
  type NodeEntry,
  readClusterFile,
} from "../store/cluster.ts";
import { simDown, simUp } from "../sim/sim.ts";
import { Progress } from "./_progress.ts";

/** A bad command-line argument: printed without a stack trace. */
export class UsageError extends Error {
  override name = "UsageError";
}

function info(msg: string) {
  console.error(msg);
}

function intOption(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new UsageError(`${name} '${v}': must be a whole number from ${min} to ${max}`);
    }
    return Number(v);
  };
}

async function withCluster<T>(
  opts: { cluster?: string },
  fn: (dir: string, c: ClusterFile) => Promise<T>,
): Promise<T> {
  const dir = clusterDir(opts.cluster);
  return await fn(dir, await readClusterFile(dir));
}

function pickNode(c: ClusterFile, k: number | undefined): NodeEntry {
  const id = k ?? 0;
  const n = c.nodes.find((x) => x.id === id);
  if (!n) {
    throw new UsageError(
      `--node ${id}: the cluster has no such node (nodes: ${c.nodes.map((x) => x.id).join(", ")})`,
    );
  }
  return n;
}

async function withNode<T>(
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

function humanBytes(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** Builds the command tree (exported for tests of `--help`). */
export function buildCli(): Command {
  const program = new Command("pifs")
    .description(
      "pifs: a distributed store on a drawer of Raspberry Pis, driven over their UARTs",
    )
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();

  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");

  // ---- sim ----
  const sim = program.command("sim").description("emulated Pis on this machine");
  sim.command("up")
    .description(
      "start a simulated cluster in DIR: new FAT32 card images, hosted nodes on ptys, " +
        "DIR/cluster.json; on a DIR that holds a cluster, restart its nodes on their cards",
    )
    .requiredOption("--dir <dir>", "cluster directory")
    .option("--nodes <n>", "number of nodes (new cluster; default 3)", intOption("--nodes", 1, 64))
    .option("--card-size <size>", "card image size, a power of two (default 64M)")
    .option(
      "--baud <rate>",
      "pace each link at rate/10 bytes/s like a real UART (default: unpaced)",
      intOption("--baud", 0, 100_000_000),
    )
    .option("--json", "print cluster.json")
    .action(async (o) => {
      const c = await simUp(o.dir, {
        nodes: o.nodes,
        cardSize: o.cardSize,
        baud: o.baud,
        log: o.json ? undefined : info,
      });
      if (o.json) console.log(JSON.stringify(c));
      else {info(
          `cluster ${c.cluster_id}: ${c.nodes.length} nodes up; export PIFS_CLUSTER=${o.dir}`,
        );}
    });
  sim.command("down")
    .description("stop the simulated cluster's nodes (their cards stay)")
    .requiredOption("--dir <dir>", "cluster directory")
    .action(async (o) => {
      await simDown(o.dir, info);
    });

  // ---- status ----
  program.command("status")
    .description("each node: id, board, firmware, capacity, free, chunks, and whether it answers")
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      const rows = await withCluster(o, async (dir, c) => {
        return await Promise.all(c.nodes.map(async (n) => {
          const row: Record<string, unknown> = { id: n.id, tty: n.tty, answers: false };
          let client: NodeClient | undefined;
          try {
            client = await connectNode(dir, c, n, { timeoutMs: 1000, retries: 2 });
            const i = await client.info();
            Object.assign(row, {
              answers: true,
              board: client.hello.board,
              firmware: client.hello.firmware,
              card: i.status === 0 ? "ok" : statusToStr(i.status),
              cluster_ok: i.clusterId === c.cluster_id,
              capacity: i.capacity,
              free: i.free,
              chunks: i.chunks,
              journal_bytes: i.journalLength,
            });
          } catch (e) {
            row.error = (e as Error).message;
          } finally {
            await client?.close();
          }
          return row;
        }));
      });
      if (o.json) {
        console.log(JSON.stringify({ nodes: rows }));
      } else {
        for (const r of rows) {
          console.log(
            r.answers
              ? `node ${r.id}: ${r.board} fw ${r.firmware}, card ${r.card}, ${
                humanBytes(r.free as number)
              } free of ${humanBytes(r.capacity as number)}, ${r.chunks} chunks`
              : `node ${r.id}: DOWN (${r.error})`,
          );
        }
      }
      if (rows.some((r) => !r.answers)) Deno.exitCode = 1;
    });

  // ---- chunk ----
  const chunk = program.command("chunk").description("low-level chunk operations on one node");
  const nodeOpt = () =>
    new Option("--node <k>", "node id (default 0)").argParser(intOption("--node", 0, 1 << 30));
  chunk.command("put")
    .description("store FILE as one chunk; prints its id (SHA-256)")
    .argument("<file>")
    .addOption(clusterOpt())
    .addOption(nodeOpt())
    .option("--json", "machine-readable output")
    .action(async (file, o) => {
      const data = await readLocal(file);
      const r = await withNode(o, async (client) => {
        const bar = new Progress(`put ${file}`, data.length);
        try {
          return await client.putChunk(data, { onProgress: (n) => bar.update(n) });
        } finally {
          bar.done();
        }
      });
      if (o.json) console.log(JSON.stringify({ id: r.id, size: data.length, existed: r.existed }));
      else console.log(r.id);
    });
  chunk.command("get")
    .description("write chunk ID to OUT (its hash is checked)")
    .argument("<id>")
    .argument("<out>")
    .addOption(clusterOpt())
    .addOption(nodeOpt())
    .action(async (id, out, o) => {
      checkId(id);
      const data = await withNode(o, (client) => client.getChunk(id));
      await Deno.writeFile(out, data);
    });
  chunk.command("ls")
    .description("list the chunks on a node")
    .addOption(clusterOpt())
    .addOption(nodeOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      const list = await withNode(o, (client) => client.listChunks());
      list.sort((a, b) => a.id < b.id ? -1 : 1);
      if (o.json) console.log(JSON.stringify(list));
      else for (const e of list) console.log(`${e.id} ${e.size}`);
    });
  chunk.command("rm")
    .description("delete chunk ID from a node")
    .argument("<id>")
    .addOption(clusterOpt())
    .addOption(nodeOpt())
    .action(async (id, o) => {
      checkId(id);
      const gone = await withNode(o, (client) => client.deleteChunk(id));
      if (!gone) throw new UsageError(`chunk ${id}: not on node ${o.node ?? 0}`);
    });
  return program;
}

function checkId(id: string) {
  if (!/^[0-9a-f]{64}$/.test(id)) {
    throw new UsageError(`chunk id '${id}': must be 64 lowercase hex digits (a SHA-256)`);
  }
}

async function readLocal(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`${path}: no such file`);
    if (e instanceof Deno.errors.IsADirectory) throw new UsageError(`${path}: is a directory`);
    throw e;
  }
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(args, { from: "user" });
    return typeof Deno.exitCode === "number" ? Deno.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : 2;
    }
    const err = e as Error;
    const known = err instanceof UsageError || err instanceof NodeError ||
      [
        "ClusterError",
        "SimError",
        "CardError",
        "CommandError",
        "SerialError",
        "TimeoutError",
        "ProtocolError",
        "UnsupportedBaudError",
      ].includes(err.name);
    console.error(`pifs: ${known ? err.message : err.stack ?? err}`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
