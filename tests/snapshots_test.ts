/**
 * Snapshots as trees, read back through the command line: `pifs restore`
 * (whole, a path, --include/--exclude, --dry-run), `ls`/`cat`/`get` of
 * `/.snapshots/NAME/...`, `diff`, and a snapshot of the first format (every
 * file's row in one object, as pifs wrote them before) that must stay
 * readable in all of them.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ok, pifs, rand, withSim } from "./_cli.ts";
import { Store } from "../store/store.ts";
import { encodeSnapshot, type SnapshotV1 } from "../store/namespace.ts";

const MTIME = new Date("2020-01-02T03:04:05Z");

/** What a local tree holds: path → [mode, mtime s, bytes or link target]. */
async function tree(dir: string): Promise<Record<string, [number, number, string]>> {
  const out: Record<string, [number, number, string]> = {};
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`, r = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.lstat(p);
      if (e.isDirectory) await walk(p, r);
      else {
        const body = e.isSymlink
          ? `-> ${await Deno.readLink(p)}`
          : Array.from(await Deno.readFile(p)).join(",").slice(0, 64) + `#${st.size}`;
        out[r] = [st.mode! & 0o7777, Math.floor(st.mtime!.getTime() / 1000), body];
      }
    }
  };
  await walk(dir, "");
  return out;
}

async function snapshotNames(c: string): Promise<string[]> {
  return (JSON.parse(await ok("snapshots", "--cluster", c, "--json")) as { name: string }[])
    .map((s) => s.name);
}

Deno.test("snapshots: restore, ls/cat/get of /.snapshots, diff; a first-format snapshot stays readable", async () => {
  await withSim(
    ["--nodes", "3"],
    async (dir) => {
      const c = `${dir}/c`, src = `${dir}/src`;
      await Deno.mkdir(`${src}/sub/deep`, { recursive: true });
      await Deno.writeTextFile(`${src}/a.txt`, "first\n");
      await Deno.utime(`${src}/a.txt`, MTIME, MTIME);
      await Deno.writeTextFile(`${src}/sub/b.txt`, "bee\n");
      await Deno.chmod(`${src}/sub/b.txt`, 0o600);
      await Deno.writeFile(`${src}/sub/deep/c.bin`, rand(300_000, 21));
      await Deno.writeFile(`${src}/sub/deep/d.log`, rand(1000, 22));
      const spec = `${dir}/t.yaml`;
      await Deno.writeTextFile(spec, `name: t\ntarget: /t\nsources:\n  - folder: ${src}\n`);
      await ok("sync", "--cluster", c, spec);
      const before = await tree(src);
      await Deno.writeTextFile(`${src}/a.txt`, "second\n");
      await Deno.remove(`${src}/sub/deep/d.log`);
      await ok("rm", "--cluster", c, "/t/sub/deep/d.log"); // a sync adds and updates; it does not delete
      await ok("sync", "--cluster", c, spec);
      const [s1, s2] = await snapshotNames(c);

      // The whole snapshot, as it was: bytes, modes, times.
      await ok("restore", "--cluster", c, s1, `${dir}/out`);
      assert.deepStrictEqual(await tree(`${dir}/out`), before);
      // A path in it, filtered.
      const r = JSON.parse(
        await ok(
          "restore",
          "--cluster",
          c,
          `${s1}:/sub`,
          `${dir}/out2`,
          "--include",
          "**/*.bin",
          "--include",
          "*.txt",
          "--exclude",
          "b.txt",
          "--json",
        ),
      );
      assert.deepStrictEqual([r.snapshot, r.files, r.bytes, r.files_failed], [s1, 1, 300_000, 0]);
      assert.deepStrictEqual(Object.keys(await tree(`${dir}/out2`)), ["deep/c.bin"]);
      // --dry-run lists and writes nothing.
      const dry = await ok("restore", "--cluster", c, s1, `${dir}/out3`, "--dry-run");
      assert.deepStrictEqual(
        dry.trim().split("\n").sort(),
        ["a.txt", "sub/b.txt", "sub/deep/c.bin", "sub/deep/d.log"].map((p) => `${dir}/out3/${p}`),
      );
      assert.equal(await Deno.stat(`${dir}/out3`).catch(() => null), null);
      // A snapshot that does not exist: one line, exit 1 or 2, nothing written.
      const bad = await pifs("restore", "--cluster", c, "nosuch", `${dir}/out4`);
      assert.notEqual(bad.code, 0);
      assert.match(bad.err, /^pifs: restore: nosuch: no such snapshot/);
      assert.equal(bad.err.trim().split("\n").length, 1);
      // DEST a file: refused in one line, the file untouched.
      await Deno.writeTextFile(`${dir}/afile`, "mine\n");
      const onFile = await pifs("restore", "--cluster", c, s1, `${dir}/afile`);
      assert.equal(onFile.code, 2);
      assert.match(onFile.err, /^pifs: restore: .*afile: exists and is not a directory\n$/);
      assert.equal(await Deno.readTextFile(`${dir}/afile`), "mine\n");

      // The same through /.snapshots paths.
      assert.deepStrictEqual(
        (await ok("ls", "--cluster", c, "/.snapshots")).trim().split("\n"),
        [`${s1}/`, `${s2}/`],
      );
      assert.equal(await ok("cat", "--cluster", c, `/.snapshots/${s1}/a.txt`), "first\n");
      assert.equal(await ok("cat", "--cluster", c, `/.snapshots/${s2}/a.txt`), "second\n");
      assert.equal(await ok("cat", "--cluster", c, "/t/a.txt"), "second\n");
      const ls = await ok("ls", "--cluster", c, "-R", `/.snapshots/${s1}`);
      assert.deepStrictEqual(ls.trim().split("\n"), [
        "a.txt",
        "sub/",
        "sub/b.txt",
        "sub/deep/",
        "sub/deep/c.bin",
        "sub/deep/d.log",
      ]);
      await ok("get", "--cluster", c, `/.snapshots/${s1}/sub`, `${dir}/got`);
      assert.deepStrictEqual(
        await tree(`${dir}/got`),
        Object.fromEntries(
          Object.entries(before).filter(([p]) => p.startsWith("sub/")).map((
            [p, v],
          ) => [p.slice(4), v]),
        ),
      );
      assert.deepStrictEqual(JSON.parse(await ok("diff", "--cluster", c, "--json", s1, s2)), [
        { kind: "M", path: "a.txt", size: 7 },
        { kind: "-", path: "sub/deep/d.log", size: 1000 },
      ]);

      // A snapshot of the first format, written as pifs wrote them before.
      const s = await Store.open(c);
      let old: string;
      try {
        const files: SnapshotV1["files"] = [];
        let bytes = 0;
        for (const e of s.index.walk("/t")) {
          if (e.type !== "f") continue;
          files.push([e.path.slice(3), e.manifest!, e.size, e.mode, e.mtime]);
          bytes += e.size;
        }
        old = "t-old-format";
        const time = Date.parse("2026-01-01T00:00:00Z");
        const obj: SnapshotV1 = { v: 1, name: old, target: "/t", time, files };
        const root = (await s.storeChunk(encodeSnapshot(obj))).id;
        await s.commit(
          { op: "snap", name: old, job: "t", target: "/t", root, time, files: files.length, bytes },
          undefined,
          files.map((f) => f[1]),
        );
      } finally {
        await s.close();
      }
      assert.equal(await ok("cat", "--cluster", c, `/.snapshots/${old}/a.txt`), "second\n");
      await ok("restore", "--cluster", c, `${old}:/sub/deep`, `${dir}/out5`);
      assert.deepStrictEqual(Object.keys(await tree(`${dir}/out5`)), ["c.bin"]);
      // Between the formats: compared file by file.
      assert.deepStrictEqual(JSON.parse(await ok("diff", "--cluster", c, "--json", s1, old)), [
        { kind: "M", path: "a.txt", size: 7 },
        { kind: "-", path: "sub/deep/d.log", size: 1000 },
      ]);

      // The live files gone and gc run: the snapshots hold their trees,
      // manifests and data, and read back whole, from a fresh host too.
      await ok("rm", "--cluster", c, "-r", "/t");
      const gc = JSON.parse(await ok("gc", "--cluster", c, "--grace", "0", "--json"));
      assert.equal(gc.chunks, 0, `gc deleted what a snapshot holds: ${JSON.stringify(gc)}`);
      for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
        await Deno.remove(`${c}/${f}`).catch(() => {});
      }
      await ok("restore", "--cluster", c, s1, `${dir}/out6`);
      assert.deepStrictEqual(await tree(`${dir}/out6`), before);
      assert.equal(await ok("cat", "--cluster", c, `/.snapshots/${old}/a.txt`), "second\n");
    },
    "pifs-snap-",
    "c",
  );
});
