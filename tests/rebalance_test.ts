/**
 * Pis joining and leaving: `sim up --add` / `node add`, `rebalance` (only
 * the new Pi's share moves, every file readable at every moment, a power
 * cut mid-way converges) and `node drain`.
 */
import { ok, pifs, rand, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { Store } from "../store/store.ts";
import { rebalance } from "../store/rebalance.ts";
import { readClusterFile } from "../store/cluster.ts";

/** Writes `n` small files (one chunk each) and two larger ones under DIR/src. */
async function source(dir: string, n: number): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  await Deno.mkdir(`${dir}/src/big`, { recursive: true });
  for (let i = 0; i < n; i++) files.set(`f${i}`, rand(6000 + (i % 7) * 300, 1000 + i));
  files.set("big/a.bin", rand(600_000, 5));
  files.set("big/b.bin", rand(300_000, 6));
  for (const [name, data] of files) await Deno.writeFile(`${dir}/src/${name}`, data);
  return files;
}

/** Bytes of chunk data on each node, from the nodes' own listings. */
async function perNode(s: Store): Promise<Map<number, number>> {
  const m = new Map<number, number>();
  for (const st of s.up()) {
    let b = 0;
    for (const c of await st.client!.listChunks()) b += c.size;
    m.set(st.entry.id, b);
  }
  return m;
}

async function readAll(s: Store, files: Map<string, Uint8Array>, names: string[]) {
  for (const name of names) {
    const e = s.index.get(`/d/${name}`);
    assert(e?.manifest, `/d/${name} missing`);
    const got = new Uint8Array(
      await new Response(s.fileStream(await s.manifestOf(e.manifest!))).arrayBuffer(),
    );
    assert.deepStrictEqual(got, files.get(name)!, name);
  }
}

Deno.test("rebalance: a 4th Pi joins and gets its capacity share, only onto it, every file readable throughout", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const files = await source(dir, 800);
    await ok("put", `${dir}/src/.`, "/d", "--cluster", dir);
    const before = await Store.open(dir);
    const old = await perNode(before);
    await before.close();

    const add = await pifs("sim", "up", "--dir", dir, "--add", "1");
    assert.deepStrictEqual(add.code, 0, add.err);
    const c = await readClusterFile(dir);
    assert.deepStrictEqual(c.nodes.map((n) => n.id), [0, 1, 2, 3]);
    assert.deepStrictEqual(c.nodes[3].tty, "node3.tty");

    const dry = JSON.parse(await ok("rebalance", "--dry-run", "--json", "--cluster", dir));
    assert(dry.copied > 100, `dry run: ${dry.copied} copies`);

    const s = await Store.open(dir);
    try {
      // After every move, every chunk still has its 2 copies, and a few
      // files (a different few each time, the large ones often) read back.
      const names = [...files.keys()];
      let k = 0;
      const r = await rebalance(s, {
        onMove: async (done, _total, _bytes, id) => {
          // The chunk just moved: on both Pis the index says, with the right bytes.
          const where = s.index.locations(id);
          assert(where.length >= 2, `chunk ${id} on ${where} after move ${done}`);
          if (done % 10) return;
          const pick = [names[k++ % names.length], names[(k * 37) % names.length]];
          if (done % 50 === 0) pick.push("big/a.bin");
          await readAll(s, files, pick);
        },
      });
      assert.deepStrictEqual(r.failed, []);
      assert.deepStrictEqual(r.copied, dry.copied);
      // Copies went only onto the new Pi; the old ones only lost some.
      for (const n of r.nodes) {
        if (n.node === 3) assert(n.gained > 0 && n.lost === 0, JSON.stringify(n));
        else assert.deepStrictEqual(n.gained, 0, `node ${n.node} gained copies`);
      }
      const now = await perNode(s);
      const total = [...now.values()].reduce((a, b) => a + b, 0);
      assert.deepStrictEqual(
        total,
        [...old.values()].reduce((a, b) => a + b, 0),
        "bytes stored changed",
      );
      const caps = new Map(s.up().map((st) => [st.entry.id, st.info!.capacity]));
      const capTotal = [...caps.values()].reduce((a, b) => a + b, 0);
      for (const [id, bytes] of now) {
        const want = total * caps.get(id)! / capTotal;
        assert(
          Math.abs(bytes - want) <= 0.1 * want,
          `node ${id}: ${bytes} bytes, its capacity share is ${want.toFixed(0)}`,
        );
      }
      // The theoretical minimum is the new Pi's bytes: each had to cross once.
      assert.deepStrictEqual(r.bytesCopied, now.get(3));
      await readAll(s, files, names);
    } finally {
      await s.close();
    }
    const again = JSON.parse(await ok("rebalance", "--json", "--cluster", dir));
    assert.deepStrictEqual([again.chunks, again.copied, again.deleted], [0, 0, 0]);
    const scrub = JSON.parse(await ok("scrub", "--json", "--cluster", dir));
    assert.deepStrictEqual([scrub.missing.length, scrub.over.length, scrub.lost.length], [0, 0, 0]);
  });
});

Deno.test("rebalance: the new Pi killed mid-way, then the host killed mid-way: reruns converge, nothing lost", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const files = await source(dir, 300);
    await ok("put", `${dir}/src/.`, "/d", "--cluster", dir);
    await ok("sim", "up", "--dir", dir, "--add", "1");
    const c = await readClusterFile(dir);
    const pidOf = async (id: number) =>
      (await readClusterFile(dir)).nodes.find((n) => n.id === id)!.pid!;

    // 1. The new Pi loses power while copies are being written to it.
    const slow = new Deno.Command(new URL("../pifs", import.meta.url).pathname, {
      args: ["rebalance", "--bwlimit", "100k", "--cluster", dir],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await new Promise((r) => setTimeout(r, 1500));
    Deno.kill(await pidOf(3), "SIGKILL");
    const st1 = await slow.output();
    assert(st1.code !== 0, "rebalance went on as if nothing happened");
    await ok("sim", "up", "--dir", dir);

    // 2. The host itself killed mid-way.
    const host = new Deno.Command(new URL("../pifs", import.meta.url).pathname, {
      args: ["rebalance", "--bwlimit", "100k", "--cluster", dir],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 1500));
    host.kill("SIGKILL");
    await host.status;

    const done = JSON.parse(await ok("rebalance", "--json", "--cluster", dir));
    assert.deepStrictEqual(done.failed, []);
    assert(done.copied > 0, "the killed runs had already finished: nothing was interrupted");
    const again = JSON.parse(await ok("rebalance", "--json", "--cluster", dir));
    assert.deepStrictEqual(again.chunks, 0);
    const scrub = JSON.parse(await ok("scrub", "--json", "--cluster", dir));
    assert.deepStrictEqual([scrub.missing.length, scrub.over.length, scrub.lost.length], [0, 0, 0]);
    for (const n of scrub.nodes) assert.deepStrictEqual(n.damaged, []);
    await ok("get", "/d", `${dir}/back`, "--cluster", dir);
    for (const [name, data] of files) {
      assert.deepStrictEqual(await Deno.readFile(`${dir}/back/${name}`), data, name);
    }
    assert.deepStrictEqual(c.nodes.length, 4);
  });
});

Deno.test("node drain: every chunk gets its copies on the others, the Pi is retired, and the cluster works without it", async () => {
  await withSim(["--nodes", "4"], async (dir) => {
    const files = await source(dir, 200);
    await ok("put", `${dir}/src/.`, "/d", "--cluster", dir);
    const bad = await pifs("node", "drain", "9", "--cluster", dir);
    assert.deepStrictEqual(bad.code, 1);
    assert(bad.err.includes("node 9: not in this cluster"), bad.err);

    const r = JSON.parse(await ok("node", "drain", "2", "--json", "--cluster", dir));
    assert.deepStrictEqual(r.retired, true);
    assert.deepStrictEqual(r.failed, []);
    assert(r.copied > 50, `${r.copied} copies`);
    // Retired: the Pi can go. Everything reads back, scrub is clean without it.
    Deno.kill((await readClusterFile(dir)).nodes[2].pid!, "SIGKILL");
    await ok("get", "/d", `${dir}/back`, "--cluster", dir);
    for (const [name, data] of files) {
      assert.deepStrictEqual(await Deno.readFile(`${dir}/back/${name}`), data, name);
    }
    const scrub = JSON.parse(await ok("scrub", "--json", "--cluster", dir));
    assert.deepStrictEqual([scrub.missing.length, scrub.lost.length], [0, 0]);
    // New writes work with a quorum of the 3 left and place nothing on it.
    await Deno.writeFile(`${dir}/late`, rand(50_000, 77));
    await ok("put", `${dir}/late`, "/late", "--cluster", dir);
    // status names it retired, and its silence is no failure.
    const st = await pifs("status", "--cluster", dir);
    assert.deepStrictEqual(st.code, 0, st.out + st.err);
    assert(/node 2: retired/.test(st.out), st.out);
    const again = await pifs("node", "drain", "2", "--cluster", dir);
    assert.deepStrictEqual(again.code, 1);
    assert(again.err.includes("already forgotten or drained"), again.err);
  });
});

Deno.test("rebalance: stops between moves to let a command waiting for the cluster run, and a rerun finishes", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    await source(dir, 300);
    await ok("put", `${dir}/src/.`, "/d", "--cluster", dir);
    await ok("sim", "up", "--dir", dir, "--add", "1");
    const s = await Store.open(dir);
    let closed = false;
    try {
      const run = rebalance(s, { bwlimit: 50_000, yieldTo: () => s.othersWaiting() });
      await new Promise((r) => setTimeout(r, 1500));
      // A second opener (as the daemon's sync job) waits for the cluster lock.
      const t0 = Date.now();
      const waiter = Store.open(dir, { busyWaitMs: 60_000 });
      const r = await run;
      assert(r.yielded && r.stopped, JSON.stringify(r));
      assert(r.copied > 0, "nothing moved before the waiter came");
      await s.close();
      closed = true;
      const s2 = await waiter;
      const waited = Date.now() - t0;
      await s2.close();
      assert(waited < 15_000, `the waiting command got the cluster after ${waited} ms`);
    } finally {
      if (!closed) await s.close();
    }
    const done = JSON.parse(await ok("rebalance", "--json", "--cluster", dir));
    assert.deepStrictEqual([done.yielded, done.failed.length], [false, 0]);
    assert(done.copied > 0, "the first run had moved everything");
    const again = JSON.parse(await ok("rebalance", "--json", "--cluster", dir));
    assert.deepStrictEqual(again.chunks, 0);
  });
});
