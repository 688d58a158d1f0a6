/**
 * End to end: `pifs sim up --nodes 3`, 200 chunks of random sizes put and read
 * back bit-exact through the real CLI and library, `status --json`, `sim
 * down`, then every card fsck-clean with its boot files intact.
 */
import { pifs } from "./_cli.ts";
import { chunkId } from "../ids.ts";
import { readClusterFile } from "../store/cluster.ts";
import { connectNode } from "../store/cluster.ts";
import assert from "node:assert/strict";
import { assertBootFilesIntact, assertFsckClean } from "./_cards.ts";

/**
 * `PIFS_TEST_QEMU=raspi3b|raspi0|mixed` runs it on emulated Pis instead of
 * hosted nodes (`deno task test:qemu` does, with `mixed`), each QEMU under a
 * run-time limit.
 */
const QEMU = Deno.env.get("PIFS_TEST_QEMU");
const SIM_ARGS = QEMU ? ["--qemu", QEMU, "--qemu-limit", "900"] : [];
const BOARDS = QEMU === "mixed"
  ? ["raspi3b", "raspi0", "raspi3b"]
  : QEMU
  ? [QEMU, QEMU, QEMU]
  : ["hosted", "hosted", "hosted"];

Deno.test(`sim e2e${QEMU ? ` (QEMU ${QEMU})` : ""}: 3 nodes, 200 chunks, status, down, fsck`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-e2e-" });
  try {
    const up = await pifs("sim", "up", "--dir", dir, "--nodes", "3", ...SIM_ARGS);
    assert.deepStrictEqual(up.code, 0, up.err);
    const c = await readClusterFile(dir);
    assert.deepStrictEqual(c.nodes.map((n) => n.id), [0, 1, 2]);

    // 200 chunks of random sizes spread over the nodes, pipelined per node.
    // An emulated Pi's UART is slow, so on QEMU the big ones are smaller
    // (still many frames each): 0.8-0.9 MB per Pi each way, not 4.5-6.2 MB
    // (which took over 6 minutes).
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
    const big = QEMU ? 40_000 : 300_000;
    const chunks: { node: number; data: Uint8Array; id: string }[] = [];
    for (let i = 0; i < 200; i++) {
      const size = 1 + (rnd(4) === 0 ? rnd(big) : rnd(9000));
      const data = new Uint8Array(size);
      for (let k = 0; k < size; k += 65536) {
        crypto.getRandomValues(data.subarray(k, Math.min(size, k + 65536)));
      }
      chunks.push({ node: i % 3, data, id: await chunkId(data) });
    }
    const clients = await Promise.all(c.nodes.map((n) => connectNode(dir, c, n)));
    try {
      await Promise.all(clients.map(async (cl, k) => {
        for (const ch of chunks.filter((x) => x.node === k)) {
          const r = await cl.putChunk(ch.data);
          assert.deepStrictEqual(r.id, ch.id);
          assert(!r.existed);
        }
      }));
      for (const ch of chunks) {
        const back = await clients[ch.node].getChunk(ch.id);
        assert(back.length === ch.data.length && back.every((b, i) => b === ch.data[i]), ch.id);
      }
      // Each node lists exactly its chunks.
      for (let k = 0; k < 3; k++) {
        const ids = (await clients[k].listChunks()).map((e) => e.id).sort();
        assert.deepStrictEqual(ids, chunks.filter((x) => x.node === k).map((x) => x.id).sort());
      }
    } finally {
      await Promise.all(clients.map((cl) => cl.close()));
    }

    // A chunk through the CLI, and back.
    const file = `${dir}/one.bin`;
    await Deno.writeFile(file, chunks[4].data);
    const put = await pifs("chunk", "put", file, "--cluster", dir, "--node", "2", "--json");
    assert.deepStrictEqual(put.code, 0, put.err);
    assert.deepStrictEqual(JSON.parse(put.out).id, chunks[4].id);
    const get = await pifs(
      "chunk",
      "get",
      chunks[4].id,
      `${dir}/back.bin`,
      "--cluster",
      dir,
      "--node",
      "2",
    );
    assert.deepStrictEqual(get.code, 0, get.err);
    assert.deepStrictEqual(await Deno.readFile(`${dir}/back.bin`), chunks[4].data);

    const st = await pifs("status", "--cluster", dir, "--json");
    assert.deepStrictEqual(st.code, 0, st.err);
    const status = JSON.parse(st.out);
    assert.deepStrictEqual(status.nodes.length, 3);
    for (const [k, n] of status.nodes.entries()) {
      assert.deepStrictEqual(n.id, k);
      assert.deepStrictEqual(n.answers, true);
      assert.deepStrictEqual(n.board, BOARDS[k]);
      assert.deepStrictEqual(n.card, "ok");
      assert.deepStrictEqual(n.cluster_ok, true);
      const mine = chunks.filter((x) => x.node === k);
      const extra = k === 2 ? 1 : 0; // chunk 4 (node 1's) was put on node 2 too
      assert.deepStrictEqual(n.chunks, mine.length + extra);
      const used = mine.reduce((a, x) => a + Math.ceil(x.data.length / 512) * 512, 0) +
        (extra ? Math.ceil(chunks[4].data.length / 512) * 512 : 0);
      assert.deepStrictEqual(n.capacity - n.free, used, `node ${k}: free space accounted exactly`);
    }

    const down = await pifs("sim", "down", "--dir", dir);
    assert.deepStrictEqual(down.code, 0, down.err);
    for (const n of c.nodes) {
      await assertFsckClean(`${dir}/${n.card}`);
      await assertBootFilesIntact(`${dir}/${n.card}`);
    }

    // Up again on the same cards: nothing re-formatted, every chunk still there.
    const again = await pifs("sim", "up", "--dir", dir);
    assert.deepStrictEqual(again.code, 0, again.err);
    const ls = await pifs("chunk", "ls", "--cluster", dir, "--node", "1", "--json");
    assert.deepStrictEqual(ls.code, 0, ls.err);
    assert.deepStrictEqual(
      JSON.parse(ls.out).map((e: { id: string }) => e.id).sort(),
      chunks.filter((x) => x.node === 1).map((x) => x.id).sort(),
    );
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});
