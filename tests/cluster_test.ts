/**
 * The cluster through the real CLI: R copies on distinct Pis, the namespace
 * on the Pis (attach rebuilds the same listing and contents), a Pi killed
 * during a put, and bad input refused with nothing written.
 */
import { ok, PIFS, pifs, rand, withSim } from "./_cli.ts";
import { readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";
import assert from "node:assert/strict";
import { assertFsckClean } from "./_cards.ts";

/** A local tree of files of mixed sizes, some identical (dedup). */
async function makeTree(root: string) {
  await Deno.mkdir(`${root}/docs/deep`, { recursive: true });
  await Deno.mkdir(`${root}/empty`, { recursive: true });
  await Deno.writeFile(`${root}/big.bin`, rand(900_000, 1));
  await Deno.writeFile(`${root}/docs/a.txt`, new TextEncoder().encode("alpha\n"));
  await Deno.writeFile(`${root}/docs/copy-of-big.bin`, rand(900_000, 1));
  await Deno.writeFile(`${root}/docs/deep/zero`, new Uint8Array(0));
  await Deno.writeFile(`${root}/docs/deep/mid.bin`, rand(300_000, 7));
  await Deno.chmod(`${root}/docs/a.txt`, 0o600);
}

async function* walkFiles(root: string): AsyncGenerator<string> {
  for await (const d of Deno.readDir(root)) {
    const p = `${root}/${d.name}`;
    if (d.isDirectory) yield* walkFiles(p);
    else yield p;
  }
}

async function diffTrees(a: string, b: string) {
  const r = await new Deno.Command("diff", { args: ["-r", a, b] }).output();
  assert(r.success, `diff -r ${a} ${b}:\n${new TextDecoder().decode(r.stdout)}`);
}

/**
 * Runs fn in a new simulated cluster (`sim up --dir DIR ...simArgs`), and
 * always stops its nodes and removes DIR afterwards.
 */
Deno.test("cluster: R=2 copies on distinct Pis, get, attach rebuilds the same tree", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const src = `${dir}/src`;
    await makeTree(src);
    const sum = JSON.parse(await ok("put", src, "/data", "--cluster", dir, "--json"));
    assert.deepStrictEqual(sum.files, 5);
    assert.deepStrictEqual(sum.bytes_read, 900_000 * 2 + 6 + 300_000);
    assert(sum.chunks_deduplicated >= 4, `identical file not deduplicated: ${JSON.stringify(sum)}`);

    // Every chunk of every file is on 2 distinct nodes, and those nodes have it.
    const c = await readClusterFile(dir);
    const s = await Store.open(dir);
    try {
      const onNode = new Map<number, Set<string>>();
      for (const st of s.up()) {
        onNode.set(st.entry.id, new Set((await st.client!.listChunks()).map((e) => e.id)));
      }
      let checked = 0;
      for (const e of s.index.walk("/data")) {
        if (e.type !== "f") continue;
        const m = await s.manifestOf(e.manifest!);
        for (const id of [e.manifest!, ...m.chunks.map((x) => x[0])]) {
          const locs = s.index.locations(id);
          assert.deepStrictEqual(new Set(locs).size, 2, `chunk ${id} on ${locs}`);
          for (const n of locs) assert(onNode.get(n)!.has(id), `node ${n} lacks ${id}`);
          checked++;
        }
      }
      assert(checked >= 10);
      // The journal is on every node, byte for byte.
      const lens = await Promise.all(
        s.up().map(async (st) => (await st.client!.info()).journalLength),
      );
      assert(lens.every((l) => l === lens[0] && l > 0), `journal lengths ${lens}`);
    } finally {
      await s.close();
    }

    // cp -r conventions: /data is the tree itself; into an existing dir, under its name.
    const out = `${dir}/out`;
    await ok("get", "/data", out, "--cluster", dir);
    await diffTrees(src, out);
    const st = await Deno.stat(`${out}/docs/a.txt`);
    assert.deepStrictEqual(st.mode! & 0o777, 0o600);
    assert.deepStrictEqual(
      st.mtime!.getTime(),
      (await Deno.stat(`${src}/docs/a.txt`)).mtime!.getTime(),
    );
    await Deno.mkdir(`${dir}/into`);
    await ok("get", "/data/docs", `${dir}/into`, "--cluster", dir);
    await diffTrees(`${src}/docs`, `${dir}/into/docs`);
    assert.deepStrictEqual(await ok("cat", "/data/docs/a.txt", "--cluster", dir), "alpha\n");

    // attach after losing the host's state: the same listing and contents.
    const before = await ok("ls", "-l", "/data/docs", "--cluster", dir);
    const beforeJson = await ok("ls", "/data/docs/deep", "--json", "--cluster", dir);
    for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    await ok("attach", "--cluster", dir);
    assert.deepStrictEqual(await ok("ls", "-l", "/data/docs", "--cluster", dir), before);
    assert.deepStrictEqual(
      await ok("ls", "/data/docs/deep", "--json", "--cluster", dir),
      beforeJson,
    );
    const again = `${dir}/again`;
    await ok("get", "/data", again, "--cluster", dir);
    await diffTrees(src, again);

    // rm, mv, gc: space comes back only for chunks nothing references.
    await ok("mv", "/data/docs/copy-of-big.bin", "/moved.bin", "--cluster", dir);
    await ok("rm", "-r", "/data", "--cluster", dir);
    const gc = JSON.parse(await ok("gc", "--grace", "0", "--json", "--cluster", dir));
    assert(gc.chunks > 0, "gc found nothing to delete");
    await ok("get", "/moved.bin", `${dir}/moved.bin`, "--cluster", dir); // its chunks survived
    assert.deepStrictEqual(await Deno.readFile(`${dir}/moved.bin`), rand(900_000, 1));

    await ok("sim", "down", "--dir", dir);
    for (const n of c.nodes) await assertFsckClean(`${dir}/${n.card}`);
  });
});

Deno.test("cluster: a Pi killed (kill -9) during a 50 MiB put, R=2 on 4 Pis; every acknowledged file reads back without it", async () => {
  // Unpaced, so that 50 MiB (100 MiB with R=2) takes seconds, not minutes.
  await withSim(["--nodes", "4"], async (dir) => {
    const c = await readClusterFile(dir);
    const src = `${dir}/src`;
    await Deno.mkdir(src);
    for (let i = 0; i < 10; i++) {
      await Deno.writeFile(`${src}/f${i}.bin`, rand(5 * 1024 * 1024, 100 + i));
    }
    const put = new Deno.Command(PIFS, {
      args: ["put", src, "/p", "--cluster", dir, "--json"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Kill a Pi once about a fifth of the data is on the cards (their
    // allocated blocks grow as the nodes write; asking the nodes would
    // share their ttys with the put).
    const onCards = async () => {
      let b = 0;
      for (const n of c.nodes) b += ((await Deno.stat(`${dir}/${n.card}`)).blocks ?? 0) * 512;
      return b;
    };
    const base = await onCards();
    for (let i = 0; i < 600 && (await onCards()) - base < 20 * 1024 * 1024; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    Deno.kill(c.nodes[1].pid!, "SIGKILL");
    const res = await put.output();
    const err = new TextDecoder().decode(res.stderr);
    // Completes (R=2 still possible on 3 nodes), or fails saying why.
    assert(res.success || /QuorumError|down|copies/.test(err), `put failed unclearly: ${err}`);
    const ls = JSON.parse(await ok("ls", "/p", "--json", "--cluster", dir));
    assert(ls.length > 0, "nothing was stored");
    for (const f of ls) {
      const out = `${dir}/${f.name}`;
      await ok("get", f.path, out, "--cluster", dir);
      assert.deepStrictEqual(await Deno.readFile(out), await Deno.readFile(`${src}/${f.name}`));
    }
    if (res.success) assert.deepStrictEqual(ls.length, 10);
    const status = JSON.parse((await pifs("status", "--json", "--cluster", dir)).out);
    assert.deepStrictEqual(
      status.nodes.map((n: { answers: boolean }) => n.answers),
      [true, false, true, true],
      JSON.stringify(status),
    );
  });
});

Deno.test("cluster: bad input is refused clearly and writes nothing", async () => {
  await withSim(["--nodes", "2"], async (dir) => {
    await Deno.writeFile(`${dir}/f`, new Uint8Array([1, 2, 3]));
    const journal = async () =>
      JSON.parse(await ok("status", "--json", "--cluster", dir)).nodes.map((
        n: { journal_bytes: number; chunks: number },
      ) => [n.journal_bytes, n.chunks]);
    await ok("ls", "--cluster", dir); // builds the index
    const before = await journal();
    const cases: [string[], RegExp][] = [
      [["put", `${dir}/f`, "/a/../b"], /'\.\.' is not allowed/],
      [["put", `${dir}/f`, "/a//b"], /empty name/],
      [["put", `${dir}/f`, "/" + "n".repeat(300)], /longer than 255 bytes/],
      [["put", `${dir}/missing`, "/x"], /no such local file/],
      [["mkdir", "/a/./b"], /'\.' is not allowed/],
      [["get", "/nothing", `${dir}/o`], /no such file or directory/],
      [["rm", "/"], /refusing to remove \//],
      [["put", `${dir}/f`, "/x", "--copies", "3"], /only 2 nodes/],
    ];
    for (const [args, re] of cases) {
      const r = await pifs(...args, "--cluster", dir);
      assert(r.code !== 0, `pifs ${args.join(" ")} succeeded`);
      assert(re.test(r.err), `pifs ${args.join(" ")}: ${r.err}`);
    }
    const notCluster = await pifs("ls", "--cluster", `${dir}/nowhere`);
    assert(notCluster.code !== 0 && /does not exist/.test(notCluster.err), notCluster.err);
    assert.deepStrictEqual(await journal(), before);
  });
});

Deno.test("cluster: the host killed at random points of a put; reruns converge, gc leaks nothing", async () => {
  // Paced (400 KB/s a link) so that a put lasts long enough to be cut.
  await withSim(["--nodes", "3", "--baud", "4000000"], async (dir) => {
    const src = `${dir}/src`;
    await Deno.mkdir(`${src}/sub`, { recursive: true });
    const files: Record<string, Uint8Array> = {};
    // Each trial changes every file, so each put has the whole tree to send.
    const writeTree = async (trial: number) => {
      for (let i = 0; i < 12; i++) {
        const rel = i % 3 === 0 ? `sub/f${i}` : `f${i}`;
        files[rel] = rand(30_000 + i * 20_000, 1000 * trial + i + 1);
        await Deno.writeFile(`${src}/${rel}`, files[rel]);
      }
    };
    let seed = 42;
    const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
    // A file visible in the store is whole: this trial's content or the last one's.
    let previous: Record<string, Uint8Array> = {};
    const checkVisibleWhole = async (trial: number) => {
      const out = `${dir}/check-${trial}`;
      const r = await pifs("get", "/src", out, "--cluster", dir);
      if (r.code !== 0) {
        assert(/no such file/.test(r.err), r.err); // nothing committed yet
        return;
      }
      for await (const f of walkFiles(out)) {
        const rel = f.slice(out.length + 1);
        const got = await Deno.readFile(f);
        const same = (w?: Uint8Array) =>
          !!w && got.length === w.length && got.every((b, i) => b === w[i]);
        assert(same(files[rel]) || same(previous[rel]), `trial ${trial}: /src/${rel} not whole`);
      }
      await Deno.remove(out, { recursive: true });
    };
    let killed = 0;
    for (let trial = 0; trial < 10; trial++) {
      await writeTree(trial);
      const put = new Deno.Command(PIFS, {
        args: ["put", src, "/", "--cluster", dir],
        stdout: "null",
        stderr: "null",
      }).spawn();
      await new Promise((r) => setTimeout(r, 250 + rnd(1000)));
      try {
        put.kill("SIGKILL");
        killed++;
      } catch { /* it had finished */ }
      const st = await put.status;
      if (st.success) killed--; // it had finished before the kill
      await checkVisibleWhole(trial);
      // The rerun converges to this trial's tree.
      await ok("put", src, "/", "--cluster", dir);
      previous = { ...files };
    }
    assert(killed >= 7, `only ${killed} of 10 puts were still running when killed`);
    const out = `${dir}/out`;
    await ok("get", "/src", out, "--cluster", dir);
    await diffTrees(src, out);
    await ok("gc", "--grace", "0", "--cluster", dir);
    // Every chunk left on the nodes is referenced, and has exactly 2 copies.
    const s = await Store.open(dir);
    try {
      const referenced = new Set<string>();
      for (const e of s.index.walk("/")) {
        if (e.type !== "f") continue;
        referenced.add(e.manifest!);
        for (const [id] of (await s.manifestOf(e.manifest!)).chunks) referenced.add(id);
      }
      const copies = new Map<string, number>();
      for (const st of s.up()) {
        for (const c of await st.client!.listChunks()) {
          assert(referenced.has(c.id), `node ${st.entry.id}: chunk ${c.id} leaked`);
          copies.set(c.id, (copies.get(c.id) ?? 0) + 1);
        }
      }
      for (const id of referenced) assert.deepStrictEqual(copies.get(id), 2, `copies of ${id}`);
    } finally {
      await s.close();
    }
  });
});

Deno.test("cluster: lines with bit error rate 1e-5 and 0.1 % dropped bytes; 20 MiB put and got back bit-exact", async () => {
  await withSim(
    ["--nodes", "4", "--ber", "1e-5", "--drop", "1e-3", "--link-seed", "11"],
    async (dir) => {
      const data = new Uint8Array(20 * 1024 * 1024);
      for (let o = 0; o < data.length; o += 65536) {
        crypto.getRandomValues(data.subarray(o, o + 65536));
      }
      await Deno.writeFile(`${dir}/in.bin`, data);
      await ok("put", `${dir}/in.bin`, "/noisy.bin", "--copies", "1", "--cluster", dir);
      await ok("get", "/noisy.bin", `${dir}/out.bin`, "--cluster", dir);
      const back = await Deno.readFile(`${dir}/out.bin`);
      assert.deepStrictEqual(back.length, data.length);
      assert(back.every((x, i) => x === data[i]), "20 MiB came back different");
      // The lines really were noisy: the links report what they did.
      const st = JSON.parse(await ok("status", "--cluster", dir, "--json"));
      const bad = st.nodes.reduce(
        (a: number, n: { frames_bad?: number }) => a + (n.frames_bad ?? 0),
        0,
      );
      assert(bad > 100, `the nodes saw only ${bad} bad frames`);
    },
  );
});

Deno.test("cluster: per-path copies: a rule on a directory gives its new files R copies; attach keeps the rule", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    await ok("copies", "/important", "3", "--cluster", dir);
    await Deno.writeFile(`${dir}/x.bin`, rand(600_000, 3));
    await ok("put", `${dir}/x.bin`, "/important/deep/x.bin", "--cluster", dir);
    await Deno.writeFile(`${dir}/y.bin`, rand(600_000, 4)); // other chunks than x's
    await ok("put", `${dir}/y.bin`, "/other/y.bin", "--cluster", dir);
    const where = async () => {
      const s = await Store.open(dir);
      try {
        const count = async (p: string) => {
          const e = s.index.get(p)!;
          const m = await s.manifestOf(e.manifest!);
          return [e.copies, ...m.chunks.map(([id]) => new Set(s.index.locations(id)).size)];
        };
        return [await count("/important/deep/x.bin"), await count("/other/y.bin")];
      } finally {
        await s.close();
      }
    };
    const [imp, other] = await where();
    assert(imp.length >= 3 && imp.every((n) => n === 3), `/important: ${imp}`);
    assert(other.every((n) => n === 2), `/other: ${other}`);
    assert.deepStrictEqual(
      JSON.parse(await ok("copies", "/important/deep", "--json", "--cluster", dir)),
      { path: "/important/deep", copies: 3 },
    );
    // The rule is a journal entry: a host that rebuilds its index knows it.
    for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
      await Deno.remove(`${dir}/${f}`).catch(() => {});
    }
    await ok("attach", "--cluster", dir);
    assert.deepStrictEqual(JSON.parse(await ok("copies", "--json", "--cluster", dir)), {
      default: 2,
      rules: [{ path: "/important", copies: 3 }],
    });
    // Bad values are refused; --clear removes the rule.
    for (const bad of ["0", "4", "x"]) {
      const r = await pifs("copies", "/important", bad, "--cluster", dir);
      assert.deepStrictEqual(r.code, 2, `copies ${bad}: ${r.err}`);
    }
    await ok("copies", "/important", "--clear", "--cluster", dir);
    assert.deepStrictEqual(
      JSON.parse(await ok("copies", "/important", "--json", "--cluster", dir)).copies,
      2,
    );
  });
});

Deno.test("cluster: a second command while one runs says the lines are busy and writes nothing", async () => {
  await withSim(["--nodes", "3", "--baud", "115200"], async (dir) => {
    await Deno.writeFile(`${dir}/a.bin`, rand(150_000, 5));
    const first = new Deno.Command(PIFS, {
      args: ["put", `${dir}/a.bin`, "/a.bin", "--cluster", dir],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      // Once the first holds the lines (its index exists), a second writer
      // and a reader are both refused at once, naming the line.
      const end = Date.now() + 20_000;
      while (
        Date.now() < end && !(await Deno.stat(`${dir}/index.db`).then(() => true, () => false))
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const second = await pifs("mkdir", "/b", "--cluster", dir);
      assert.deepStrictEqual(second.code, 1, second.err);
      assert(/another pifs command is using this cluster/.test(second.err), second.err);
      const third = await pifs("cat", "/a.bin", "--cluster", dir);
      assert.deepStrictEqual(third.code, 1, third.err);
      assert(/another pifs command is using this cluster/.test(third.err), third.err);
    } finally {
      const out = await first.output();
      assert.deepStrictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    }
    // Nothing of the second reached any Pi: /b is absent, the journals equal.
    assert.deepStrictEqual((await ok("ls", "/", "--cluster", dir)).trim(), "a.bin");
    const st = JSON.parse(await ok("status", "--cluster", dir, "--json"));
    const lengths = st.nodes.map((n: { journal_bytes: number }) => n.journal_bytes);
    assert.deepStrictEqual(new Set(lengths).size, 1, `journals ${lengths}`);
    assert.deepStrictEqual(
      (await ok("get", "/a.bin", `${dir}/back.bin`, "--cluster", dir)).length >= 0,
      true,
    );
    assert.deepStrictEqual(await Deno.readFile(`${dir}/back.bin`), rand(150_000, 5));
  });
});

Deno.test("cluster: asking for free space (a df on the mount) does not change where chunks go", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const s = await Store.open(dir);
    try {
      const said = [...s.nodes.values()].map((st) => st.info);
      const at = await s.space();
      await s.storeChunk(rand(200_000, 5), { copies: 2 });
      const now = await s.space();
      assert(now.free < at.free, `free ${now.free} after a put, ${at.free} before`);
      assert.deepStrictEqual(now.capacity, at.capacity);
      // Placement weighs each node by what it said at open: unchanged.
      assert.deepStrictEqual([...s.nodes.values()].map((st) => st.info), said);
      for (const [k, st] of [...s.nodes.values()].entries()) assert.equal(st.info, said[k]);
    } finally {
      await s.close();
    }
  });
});

Deno.test("cluster: placement weighs each node by the capacity recorded when it joined, whether it answers or not", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const c = await readClusterFile(dir);
    const weights = (s: Store) => s.placementNodes().map((n) => [n.id, n.weight]);
    const s1 = await Store.open(dir);
    let up: number[][];
    try {
      // cluster.json holds what FORMAT said; placement uses it.
      for (const n of c.nodes) {
        assert.deepStrictEqual(n.capacity, s1.nodes.get(n.id)!.info!.capacity);
        assert(n.capacity! > 50 * 1024 * 1024, `node ${n.id}: capacity ${n.capacity}`);
      }
      up = weights(s1);
      assert.deepStrictEqual(up, c.nodes.map((n) => [n.id, n.capacity]));
    } finally {
      await s1.close();
    }
    // Node 1 down at open: the same weights, so chunks rank as before.
    Deno.kill(c.nodes[1].pid!, "SIGKILL");
    await new Promise((r) => setTimeout(r, 200));
    const s2 = await Store.open(dir);
    try {
      assert.equal(s2.nodes.get(1)!.client, undefined);
      assert.deepStrictEqual(weights(s2), up);
    } finally {
      await s2.close();
    }
  });
});
