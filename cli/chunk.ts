/**
 * `pifs chunk`: low-level chunk operations on one node.
 *
 * @module
 */
import { type Command, Option } from "commander";
import { Progress } from "./_progress.ts";
import { checkId, intOption, readLocal, UsageError, withNode } from "./_util.ts";

/** Adds `chunk put|get|ls|rm` to `program`. */
export function registerChunk(program: Command): void {
  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");
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
}
