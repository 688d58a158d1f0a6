/**
 * `pifs init` and `pifs ports` on Pis started by hand: hosted nodes on their
 * own ptys (each a port as a real adapter is, with a card made by `pifs card
 * init`), made into a cluster the way a user with real boards does it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { nodeBinary } from "../card/card.ts";
import { ok, pifs, rand } from "./_cli.ts";

interface HandNode {
  tty: string;
  card: string;
  child: Deno.ChildProcess;
}

/** Starts a hosted node on a new card `DIR/NAME.img`, its port `DIR/NAME.tty`. */
async function startByHand(dir: string, name: string): Promise<HandNode> {
  const card = `${dir}/${name}.img`, tty = `${dir}/${name}.tty`;
  await ok("card", "init", card, "--size", "64M");
  const child = new Deno.Command(await nodeBinary(), {
    args: ["--card", card, "--pty-link", tty, "--baud", "0"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100 && !(await Deno.lstat(tty).catch(() => null)); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert(await Deno.lstat(tty).catch(() => null), `${name}: no pty`);
  return { tty, card, child };
}

async function withHandNodes(
  n: number,
  fn: (dir: string, nodes: HandNode[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pifs-init-" });
  const nodes: HandNode[] = [];
  try {
    for (let i = 0; i < n; i++) nodes.push(await startByHand(dir, `pi${i}`));
    await fn(dir, nodes);
  } finally {
    for (const x of nodes) {
      try {
        x.child.kill("SIGTERM");
      } catch { /* gone */ }
      await x.child.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("init: three Pis on their ports become a cluster; ports says what answers", async () => {
  await withHandNodes(3, async (dir, nodes) => {
    const before = JSON.parse(await ok("ports", "--json", "--port", ...nodes.map((x) => x.tty)));
    assert.deepStrictEqual(
      before.map((p: { kind: string; card: string }) => [p.kind, p.card]),
      [
        ["node", "EUNFORMATTED (the card holds no pifs store (run FORMAT))"],
        ...Array(2).fill(
          ["node", "EUNFORMATTED (the card holds no pifs store (run FORMAT))"],
        ),
      ],
    );
    const c = `${dir}/cluster`;
    const r = await pifs("init", c, "--port", ...nodes.map((x) => x.tty), "--copies", "2");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), `export PIFS_CLUSTER=${c}`);
    const file = JSON.parse(await Deno.readTextFile(`${c}/cluster.json`));
    assert.deepStrictEqual(file.nodes.map((n: { id: number; tty: string }) => [n.id, n.tty]), [
      [0, nodes[0].tty],
      [1, nodes[1].tty],
      [2, nodes[2].tty],
    ]);
    assert.equal(file.baud, 115200);
    // The cluster works: a put and a get, and ports now names its cluster.
    await Deno.writeFile(`${dir}/data.bin`, rand(300_000, 1));
    await ok("put", "--cluster", c, `${dir}/data.bin`, "/data.bin");
    await ok("get", "--cluster", c, "/data.bin", `${dir}/back.bin`);
    assert.deepStrictEqual(await Deno.readFile(`${dir}/back.bin`), rand(300_000, 1));
    assert.equal((await ok("copies", "--cluster", c, "/")).trim().split(/\s+/).pop(), "2");
    const after = JSON.parse(await ok("ports", "--json", "--port", nodes[1].tty));
    assert.deepStrictEqual(
      [after[0].kind, after[0].card, after[0].clusterId, after[0].nodeId],
      ["node", "ok", file.cluster_id, 1],
    );
    // Again on the same Pis: their cards hold this store now; nothing is formatted.
    const again = await pifs("init", `${dir}/other`, "--port", nodes[0].tty);
    assert.equal(again.code, 1);
    assert.match(
      again.err,
      /its card holds a pifs store \(cluster [0-9a-f]+'s, node 0, \d+ chunks, /,
    );
    assert.match(again.err, /pifs never formats over a store without --force/);
    // Nothing is left behind, not even the directory init made.
    assert.equal(await Deno.stat(`${dir}/other`).catch(() => null), null);
    assert.equal((await pifs("status", "--cluster", c)).code, 0, "the first cluster is intact");
  });
});

Deno.test("init: refusals name the port and write nothing: silence, twice, a link to the same, a store", async () => {
  await withHandNodes(2, async (dir, nodes) => {
    // A port where nothing answers: one end of a pty pair nobody reads.
    const socat = new Deno.Command("socat", {
      args: [`pty,link=${dir}/silent.tty,raw,echo=0`, `pty,link=${dir}/other-end.tty,raw,echo=0`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      for (let i = 0; i < 100 && !(await Deno.lstat(`${dir}/silent.tty`).catch(() => null)); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const silent = await pifs("init", `${dir}/c1`, "--port", nodes[0].tty, `${dir}/silent.tty`);
      assert.equal(silent.code, 1, silent.err);
      assert.match(silent.err, /silent\.tty: no pifs node answers .*check the wiring/);
      assert.match(silent.err, /nothing was formatted: 1 of 2 Pis cannot join/);
      const probe = JSON.parse(await ok("ports", "--json", "--port", `${dir}/silent.tty`));
      assert.equal(probe[0].kind, "nothing");
    } finally {
      socat.kill("SIGTERM");
      await socat.status;
    }
    // The node that did answer was not formatted.
    const p0 = JSON.parse(await ok("ports", "--json", "--port", nodes[0].tty));
    assert.match(p0[0].card, /^EUNFORMATTED/);

    const twice = await pifs("init", `${dir}/c2`, "--port", nodes[0].tty, nodes[0].tty);
    assert.equal(twice.code, 1);
    assert.match(twice.err, /pi0\.tty: given twice/);
    await Deno.symlink(nodes[1].tty, `${dir}/alias.tty`);
    const alias = await pifs("init", `${dir}/c3`, "--port", nodes[1].tty, `${dir}/alias.tty`);
    assert.equal(alias.code, 1);
    assert.match(alias.err, /alias\.tty and .*pi1\.tty are the same port/);
    const none = await pifs("init", `${dir}/c4`, "--port", `${dir}/no-such.tty`);
    assert.equal(none.code, 1);
    assert.match(none.err, /no-such\.tty: no such port/);

    // A card of another cluster: refused, then taken with --force.
    await ok("init", `${dir}/first`, "--port", nodes[1].tty);
    const foreign = await pifs("init", `${dir}/second`, "--port", nodes[0].tty, nodes[1].tty);
    assert.equal(foreign.code, 1);
    assert.match(
      foreign.err,
      /pi1\.tty: its card holds a pifs store \(cluster [0-9a-f]+'s, node 0/,
    );
    assert.match(
      await ok("ports", "--json", "--port", nodes[0].tty),
      /EUNFORMATTED/,
      "a refused init formatted the other Pi",
    );
    const forced = await pifs(
      "init",
      `${dir}/second`,
      "--port",
      nodes[0].tty,
      nodes[1].tty,
      "--force",
    );
    assert.equal(forced.code, 0, forced.err);
    assert.match(forced.err, /formatting over it \(--force\)/);
    const existing = await pifs("init", `${dir}/second`, "--port", nodes[0].tty);
    assert.equal(existing.code, 1);
    assert.match(existing.err, /holds a cluster already/);
    for (const r of [twice, alias, none, foreign, existing]) {
      assert(!/^\s+at /m.test(r.err), r.err);
    }
  });
});
