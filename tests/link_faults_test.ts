/**
 * The client over a faulty line: `pifs-link` flips bits and drops bytes
 * between the host and a hosted node. Every chunk must still go in and come
 * back bit-exact, through NAKs, timeouts and retransmissions.
 */
import { chunkId } from "../ids.ts";
import { type ClientOptions, NodeClient } from "../link/client.ts";
import { SerialPort } from "../link/serial.ts";
import { makeCard } from "../card/card.ts";
import { run } from "../card/run.ts";
import assert from "node:assert/strict";

const FW = new URL("../firmware/", import.meta.url).pathname;

async function waitPath(p: string) {
  for (let i = 0; i < 500; i++) {
    if (await Deno.lstat(p).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${p} did not appear`);
}

/**
 * A hosted node behind `pifs-link LINKARGS`, a client connected to it, a
 * fresh store; fn runs with the client; everything is stopped afterwards.
 */
async function overLink(
  linkArgs: string[],
  opts: ClientOptions,
  fn: (client: NodeClient) => Promise<void>,
): Promise<string> {
  await run("make", ["-s", "-C", FW, "build/pifs-node", "build/pifs-link"]);
  const dir = await Deno.makeTempDir({ prefix: "pifs-faults-" });
  const card = `${dir}/card.img`;
  await makeCard(card, 64 * 1024 * 1024);
  const link = new Deno.Command(`${FW}build/pifs-link`, {
    args: ["--a", `${dir}/host`, "--b", `${dir}/node`, ...linkArgs],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await waitPath(`${dir}/node`);
  const node = new Deno.Command(`${FW}build/pifs-node`, {
    args: ["--card", card, "--tty", `${dir}/node`, "--no-sync"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let client: NodeClient | undefined;
  let err = "";
  try {
    const port = await SerialPort.open(`${dir}/host`);
    client = await NodeClient.connect(port, opts);
    await client.format({ clusterId: new Uint8Array(16).fill(9), nodeId: 0 });
    await fn(client);
  } finally {
    await client?.close();
    node.kill("SIGTERM");
    await node.status;
    link.kill("SIGTERM");
    err = new TextDecoder().decode((await link.output()).stderr);
    await Deno.remove(dir, { recursive: true });
  }
  return err;
}

Deno.test("link faults: bit errors and dropped bytes, every chunk bit-exact", async () => {
  const args = ["--baud", "0", "--ber", "2e-5", "--drop", "2e-5", "--seed", "7"];
  const err = await overLink(
    args,
    { baud: 921600, timeoutMs: 300, retries: 30 },
    async (client) => {
      let seed = 3;
      const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < 16; i++) {
        const c = new Uint8Array(1 + rnd(120_000));
        crypto.getRandomValues(c.subarray(0, Math.min(c.length, 65536)));
        if (c.length > 65536) crypto.getRandomValues(c.subarray(65536));
        chunks.push(c);
      }
      const ids: string[] = [];
      for (const c of chunks) ids.push((await client.putChunk(c)).id);
      for (const [i, c] of chunks.entries()) {
        assert.deepStrictEqual(ids[i], await chunkId(c));
        const back = await client.getChunk(ids[i]);
        assert(back.length === c.length && back.every((x, k) => x === c[k]), `chunk ${i} differs`);
      }
      const listed = (await client.listChunks()).map((e) => e.id).sort();
      assert.deepStrictEqual(listed, [...new Set(ids)].sort());
      // The faults really happened, and were repaired by retransmission.
      assert(client.retransmissions > 0, "no retransmission: the faults did not bite");
      const info = await client.info();
      assert(info.framesBad > 0, "the node saw no bad frame");
    },
  );
  assert(/bits flipped/.test(err), err);
});

Deno.test("link faults: latency and stalls, every chunk bit-exact", async () => {
  const args = [
    "--baud",
    "921600",
    "--latency-ms",
    "40",
    "--stall-every-ms",
    "700",
    "--stall-ms",
    "250",
  ];
  await overLink(args, { baud: 921600 }, async (client) => {
    for (let i = 0; i < 6; i++) {
      const c = crypto.getRandomValues(new Uint8Array(40_000 + i * 4_000));
      const r = await client.putChunk(c);
      const back = await client.getChunk(r.id);
      assert(back.length === c.length && back.every((x, k) => x === c[k]), `chunk ${i} differs`);
    }
  });
});
