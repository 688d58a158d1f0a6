/**
 * `pifs recover`: every file of a cluster rebuilt from its card images
 * alone (no Pi, no host state), with one Pi's card lost, and the cards
 * never written to.
 */
import { ok, pifs, rand, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { Store } from "../store/store.ts";

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every file and directory under `root`: relative path → type, mode, mtime (s) and bytes. */
async function tree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}${rel}`)) {
      const p = `${rel}/${e.name}`;
      if (e.isSymlink) {
        out.set(p, `l ${await Deno.readLink(`${root}${p}`)}`);
        continue;
      }
      const st = await Deno.stat(`${root}${p}`);
      const mt = Math.floor(st.mtime!.getTime() / 1000);
      if (e.isDirectory) {
        out.set(p, `d ${(st.mode! & 0o7777).toString(8)} ${mt}`);
        await walk(p);
      } else {
        out.set(p, `f ${(st.mode! & 0o7777).toString(8)} ${mt} ${await sha256(`${root}${p}`)}`);
      }
    }
  };
  await walk("");
  return out;
}

Deno.test("recover: a 4-Pi R=2 cluster that lost a card is rebuilt bit-exact from the other 3 images, which stay unchanged", async () => {
  await withSim(["--nodes", "4"], async (dir) => {
    // A tree with nested directories, modes and times; some of it before a
    // checkpoint, the rest (and a rm and a mv) in the journal after it.
    const src = `${dir}/src`;
    await Deno.mkdir(`${src}/a/b`, { recursive: true });
    await Deno.mkdir(`${src}/empty`);
    const files: [string, number, number][] = [
      ["top.bin", 700_000, 0o644],
      ["a/small.txt", 10, 0o600],
      ["a/zero", 0, 0o644],
      ["a/b/big.bin", 1_300_000, 0o755],
      ["a/b/mid.bin", 300_001, 0o640],
    ];
    for (const [i, [name, size, mode]] of files.entries()) {
      await Deno.writeFile(`${src}/${name}`, rand(size, 7 + i));
      await Deno.chmod(`${src}/${name}`, mode);
      const t = new Date(Date.UTC(2024, 0, 1 + i, 12));
      await Deno.utime(`${src}/${name}`, t, t);
    }
    await Deno.chmod(`${src}/a/b`, 0o750);
    for (const d of ["a/b", "a", "empty"]) {
      const t = new Date(Date.UTC(2023, 5, 1));
      await Deno.utime(`${src}/${d}`, t, t);
    }
    await ok("put", `${src}/a`, `${src}/top.bin`, "/t", "--cluster", dir);
    await ok("checkpoint", "--cluster", dir);
    await ok("put", `${src}/empty`, "/t", "--cluster", dir);
    await Deno.writeFile(`${dir}/late.bin`, rand(500_000, 99));
    await ok("put", `${dir}/late.bin`, "/t/late.bin", "--cluster", dir);
    await ok("put", `${dir}/late.bin`, "/t/gone.bin", "--cluster", dir);
    await ok("rm", "/t/gone.bin", "--cluster", dir);
    await ok("mv", "/t/a/small.txt", "/t/small-moved.txt", "--cluster", dir);
    // A sync job run twice: two snapshots, the second after an edit.
    await Deno.mkdir(`${dir}/docs`);
    await Deno.writeTextFile(`${dir}/docs/a.txt`, "first\n");
    await Deno.writeFile(`${dir}/docs/b.bin`, rand(90_000, 3));
    await Deno.writeTextFile(
      `${dir}/docs.yaml`,
      "name: docs\ntarget: /docs\nsources:\n  - folder: ./docs\n",
    );
    await ok("sync", "--cluster", dir, `${dir}/docs.yaml`);
    await new Promise((r) => setTimeout(r, 1100)); // snapshot names are to the second
    await Deno.writeTextFile(`${dir}/docs/a.txt`, "second\n");
    await ok("sync", "--cluster", dir, `${dir}/docs.yaml`);
    const snaps = JSON.parse(await ok("snapshots", "--cluster", dir, "--json")) as {
      name: string;
    }[];
    assert.deepStrictEqual(snaps.length, 2);
    // A symbolic link, as `pifs mount` makes one.
    const st = await Store.open(dir);
    await st.commit({ op: "symlink", p: "/t/a/link", target: "b/big.bin", mtime: Date.now() });
    await st.close();
    // What the store holds, as `get` gives it back.
    await ok("get", "/t", `${dir}/want`, "--cluster", dir);

    await ok("sim", "down", "--dir", dir);
    const images: string[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (/^node\d+\.img$/.test(e.name)) images.push(`${dir}/${e.name}`);
    }
    images.sort();
    assert.deepStrictEqual(images.length, 4);
    // One Pi lost for good; the others' images read-only and hashed.
    await Deno.remove(images[2]);
    const left = [images[0], images[1], images[3]];
    const before = await Promise.all(left.map(sha256));
    for (const img of left) await Deno.chmod(img, 0o444);

    const r = await pifs("recover", "--out", `${dir}/out`, "--snapshots", ...left, "--json");
    assert.deepStrictEqual(r.code, 0, r.err + r.out);
    const rep = JSON.parse(r.out);
    assert.deepStrictEqual(rep.failed, []);
    assert.deepStrictEqual(rep.files, 8); // 6 under /t, 2 under /docs
    assert.deepStrictEqual(rep.snapshots, 2);
    assert.deepStrictEqual(rep.links, 1);
    assert.deepStrictEqual(await Deno.readLink(`${dir}/out/t/a/link`), "b/big.bin");
    const [s1, s2] = snaps.map((x) => `${dir}/out/.snapshots/${x.name}`);
    assert.deepStrictEqual(await Deno.readTextFile(`${s1}/a.txt`), "first\n");
    assert.deepStrictEqual(await Deno.readTextFile(`${s2}/a.txt`), "second\n");
    assert.deepStrictEqual(await Deno.readFile(`${s1}/b.bin`), rand(90_000, 3));
    assert.deepStrictEqual(await Deno.readTextFile(`${dir}/out/docs/a.txt`), "second\n");
    assert.deepStrictEqual(rep.cards.map((c: { error?: string }) => c.error), [
      undefined,
      undefined,
      undefined,
    ]);
    assert.deepStrictEqual(await tree(`${dir}/out/t`), await tree(`${dir}/want`));
    // The rm and mv after the checkpoint were applied.
    const got = await tree(`${dir}/out`);
    assert(got.has("/t/small-moved.txt") && !got.has("/t/a/small.txt") && !got.has("/t/gone.bin"));
    assert.deepStrictEqual(
      await Deno.readFile(`${dir}/out/t/late.bin`),
      await Deno.readFile(`${dir}/late.bin`),
    );
    assert.deepStrictEqual(await Promise.all(left.map(sha256)), before, "a card image changed");

    // The output directory now holds data: a second recover refuses it and writes nothing.
    const again = await pifs("recover", "--out", `${dir}/out`, ...left);
    assert.deepStrictEqual(again.code, 1);
    assert(again.err.includes("not empty"), again.err);
    assert.deepStrictEqual(await tree(`${dir}/out`), got);
  });
});

Deno.test("recover: files whose every copy was on lost cards are listed, the rest rebuilt; bad input refused", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const data: Record<string, Uint8Array> = {};
    for (let i = 0; i < 6; i++) {
      data[`f${i}`] = rand(100_000 + i * 90_000, 200 + i);
      await Deno.writeFile(`${dir}/f${i}`, data[`f${i}`]);
    }
    // One copy: every file lives on one card only.
    await ok(
      "put",
      ...Object.keys(data).map((n) => `${dir}/${n}`),
      "/one",
      "--cluster",
      dir,
      "--copies",
      "1",
    );
    await ok("sim", "down", "--dir", dir);
    await Deno.remove(`${dir}/node1.img`).catch(async () => await Deno.remove(`${dir}/node2.img`));
    const left: string[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (/^node\d+\.img$/.test(e.name)) left.push(`${dir}/${e.name}`);
    }
    assert.deepStrictEqual(left.length, 2);

    const r = await pifs("recover", "--out", `${dir}/out`, ...left, "--json");
    assert.deepStrictEqual(r.code, 1, r.err + r.out);
    const rep = JSON.parse(r.out);
    assert(rep.failed.length >= 1, "nothing reported lost with a card of three gone at R=1");
    assert.deepStrictEqual(rep.files + rep.failed.length, 6);
    for (const f of rep.failed) assert(/^\/one\/f\d$/.test(f.path) && f.error.length > 0, f);
    for (const [name, bytes] of Object.entries(data)) {
      const lost = rep.failed.some((f: { path: string }) => f.path === `/one/${name}`);
      const have = await Deno.readFile(`${dir}/out/one/${name}`).catch(() => undefined);
      if (lost) assert.deepStrictEqual(have, undefined, `${name}: lost, yet written`);
      else assert.deepStrictEqual(have, bytes, name);
    }
    for await (const e of Deno.readDir(`${dir}/out/one`)) {
      assert(!e.name.endsWith(".pifs-part"), `left behind: ${e.name}`);
    }

    // Bad input, each refused with a message naming it, nothing written.
    const cases: [string[], RegExp][] = [
      [[left[0], left[0]], /given twice/],
      [[`${dir}/nope.img`], /nope\.img: no such file/],
      [[dir], /is a directory/],
    ];
    await Deno.writeFile(`${dir}/junk.img`, new Uint8Array(1 << 20));
    cases.push([[`${dir}/junk.img`], /no image holds a pifs store: .*junk\.img/]);
    for (const [args, re] of cases) {
      const x = await pifs("recover", "--out", `${dir}/out2`, ...args);
      assert.deepStrictEqual(x.code, 1, `${args}: ${x.err}`);
      assert(re.test(x.err), `${args}: ${x.err}`);
      const made = await Deno.readDir(`${dir}/out2`)[Symbol.asyncIterator]().next().then(
        (n) => !n.done,
        () => false,
      );
      assert(!made, `${args}: wrote into out2`);
    }
  });
});
