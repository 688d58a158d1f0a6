/**
 * `pifs mount`: the struct layouts against the C compiler's view of libfuse's
 * headers, the file system's read path over a fake backend, the new journal
 * entries (`attr`, `symlink`) in the index, and end to end through the
 * kernel: a 3-node hosted cluster, a tree put with `pifs put`, mounted
 * read-only with `pifs mount -o ro`, compared with `diff -r`, `stat`,
 * `ls -lR` and random preads, writes refused with EROFS, a Pi killed during a
 * large read (R=2), `pifs umount`, and a dead daemon detected; then a
 * read-write mount: a tree of ~2000 files with modes, times and symbolic
 * links copied in with `cp -a` and compared (`diff -r`, `stat`), POSIX cases
 * (rename over files and directories, rmdir, truncate, chmod, chown, hard
 * links, devices and fifos refused with their errno), the fsx-style
 * exerciser (tests/fsx.ts, 10,000 operations), and the same tree after a
 * remount with the host's index rebuilt from the journals, and again from a
 * checkpoint (`pifs attach`).
 */
import { ok, pifs, rand } from "./_cli.ts";
import assert from "node:assert/strict";
import { readClusterFile } from "../store/cluster.ts";
import {
  entryParam,
  entryParamSize,
  FI_KEEP_CACHE,
  fileInfo,
  fuseUnavailable,
  OPS,
  statStruct,
  statvfsStruct,
} from "../fuse/ffi.ts";
import { type Backend, type FsNode, PifsFs } from "../fuse/fs.ts";
import type { Manifest } from "../store/namespace.ts";

async function run(cmd: string, ...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const o = await new Deno.Command(cmd, { args, stdin: "null" }).output();
    const t = new TextDecoder();
    return { code: o.code, out: t.decode(o.stdout) + t.decode(o.stderr) };
  } catch (e) {
    return { code: 127, out: (e as Error).message };
  }
}

/** Why the kernel tests cannot run here (printed), or undefined. */
async function fuseSkipReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return `${Deno.build.os}: pifs mount is Linux-only so far`;
  if ((await run("test", "-c", "/dev/fuse")).code !== 0) return "/dev/fuse is missing";
  const lib = fuseUnavailable();
  if (lib) return lib;
  if (Deno.uid() !== 0 && (await run("fusermount3", "-V")).code !== 0) {
    return "not root and no fusermount3: mounting is not permitted";
  }
  return undefined;
}

const SKIP = await fuseSkipReason();
if (SKIP) console.log(`mount_test: SKIPPING the kernel tests: ${SKIP}`);

Deno.test("fuse structs match the C compiler's layout of libfuse 3 headers", async () => {
  const cc = await run("cc", "--version");
  if (cc.code !== 0 || (await run("test", "-f", "/usr/include/fuse3/fuse_lowlevel.h")).code) {
    console.log("  (skipped: no C compiler or no fuse3 headers to compare with)");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "pifs-fuse-layout-" });
  try {
    // Prints sizes and offsets; the bytes we build are compared with them.
    await Deno.writeTextFile(
      `${dir}/l.c`,
      `#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
int main(void) {
  struct fuse_file_info fi; memset(&fi, 0, sizeof fi); fi.keep_cache = 1; fi.fh = 7;
  unsigned char *p = (unsigned char *)&fi;
  printf("ops %zu\\nentry %zu\\nstat %zu\\nstatvfs %zu\\nfi %zu\\n",
    sizeof(struct fuse_lowlevel_ops), sizeof(struct fuse_entry_param), sizeof(struct stat),
    sizeof(struct statvfs), sizeof(struct fuse_file_info));
  printf("fibytes");
  for (size_t i = 0; i < sizeof fi; i++) printf(" %u", p[i]);
  printf("\\nslot_read %zu\\nslot_readdirplus %zu\\nslot_lseek %zu\\n",
    offsetof(struct fuse_lowlevel_ops, read) / sizeof(void *),
    offsetof(struct fuse_lowlevel_ops, readdirplus) / sizeof(void *),
    offsetof(struct fuse_lowlevel_ops, lseek) / sizeof(void *));
  printf("st_mode %zu\\nst_size %zu\\nst_mtim %zu\\nattr_timeout %zu\\nf_namemax %zu\\n",
    offsetof(struct stat, st_mode), offsetof(struct stat, st_size),
    offsetof(struct stat, st_mtim), offsetof(struct fuse_entry_param, attr_timeout),
    offsetof(struct statvfs, f_namemax));
  return 0;
}
`,
    );
    const b = await run("cc", "-I/usr/include/fuse3", `${dir}/l.c`, "-o", `${dir}/l`);
    assert.deepStrictEqual(b.code, 0, b.out);
    const out = (await run(`${dir}/l`)).out;
    const v = Object.fromEntries(
      out.trim().split("\n").map((l: string) => {
        const [k, ...rest] = l.split(" ");
        return [k, rest.map(Number)];
      }),
    );
    assert.deepStrictEqual(v.ops[0], OPS.length * 8, "fuse_lowlevel_ops");
    assert.deepStrictEqual(v.slot_read[0], OPS.indexOf("read"));
    assert.deepStrictEqual(v.slot_readdirplus[0], OPS.indexOf("readdirplus"));
    assert.deepStrictEqual(v.slot_lseek[0], OPS.indexOf("lseek"));
    assert.deepStrictEqual(v.entry[0], entryParamSize(), "fuse_entry_param");
    const attr = {
      ino: 5,
      mode: 0o100644,
      nlink: 1,
      uid: 1,
      gid: 2,
      size: 1234,
      mtimeMs: 1_700_000_000_123,
      blksize: 4096,
    };
    const st = statStruct(attr);
    assert.deepStrictEqual(v.stat[0], st.length, "struct stat");
    const dv = new DataView(st.buffer);
    assert.deepStrictEqual(dv.getUint32(v.st_mode[0], true), 0o100644);
    assert.deepStrictEqual(Number(dv.getBigInt64(v.st_size[0], true)), 1234);
    assert.deepStrictEqual(Number(dv.getBigInt64(v.st_mtim[0], true)), 1_700_000_000);
    assert.deepStrictEqual(Number(dv.getBigInt64(v.st_mtim[0] + 8, true)), 123_000_000);
    const e = entryParam(attr, 0, 9.5);
    assert.deepStrictEqual(new DataView(e.buffer).getFloat64(v.attr_timeout[0], true), 9.5);
    assert.deepStrictEqual(
      v.statvfs[0],
      statvfsStruct({
        bsize: 1,
        blocks: 1,
        bfree: 1,
        bavail: 1,
        files: 1,
        ffree: 1,
        flag: 1,
        namemax: 255,
      }).length,
    );
    assert.deepStrictEqual(v.fi[0], 40);
    assert.deepStrictEqual(Array.from(fileInfo(7, FI_KEEP_CACHE)), v.fibytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A namespace and chunks in memory; chunk reads can fail on demand. */
function fakeBackend(files: Map<string, Uint8Array>, chunk = 1000) {
  const nodes = new Map<string, FsNode>([["/", {
    type: "d",
    size: 0,
    mode: 0o755,
    mtime: 0,
    manifest: null,
  }]]);
  const manifests = new Map<string, Manifest>();
  const chunks = new Map<string, Uint8Array>();
  let fetches = 0;
  for (const [path, data] of files) {
    const list: [string, number][] = [];
    // Uneven chunk sizes, as content-defined chunking makes them.
    for (let o = 0, k = 0; o < data.length; k++) {
      const id = `${path}#${k}`;
      const piece = data.subarray(o, Math.min(data.length, o + chunk - (k % 3) * 100));
      chunks.set(id, piece);
      list.push([id, piece.length]);
      o += piece.length;
    }
    manifests.set(path, { v: 1, size: data.length, chunks: list });
    nodes.set(path, { type: "f", size: data.length, mode: 0o644, mtime: 1, manifest: path });
  }
  const b: Backend = {
    get: (p) => nodes.get(p),
    list: () => [],
    manifest: (id) => Promise.resolve(manifests.get(id)!),
    chunk: (id) => {
      fetches++;
      return Promise.resolve(chunks.get(id)!);
    },
    capacity: () => Promise.resolve({ capacity: 0, free: 0, copies: 2, entries: 0 }),
    snapshots: () => [{ name: "s1", root: "r1", time: 5 }],
    snapshotFiles: () =>
      Promise.resolve([["a/b/c.txt", "/big", files.get("/big")!.length, 0o600, 9]]),
    readAhead: () => 2,
  };
  return { b, fetches: () => fetches };
}

Deno.test("fuse read path: random reads over uneven chunks match a shadow; cache bounded; snapshots", async () => {
  const big = new Uint8Array(50_000);
  crypto.getRandomValues(big);
  const { b, fetches } = fakeBackend(new Map([["/big", big], ["/empty", new Uint8Array(0)]]));
  const fs = new PifsFs(b, { cacheBytes: 5000 });
  let seed = Number(Deno.env.get("PIFS_TEST_SEED") ?? Date.now() % 1e9);
  console.log(`  seed ${seed}`);
  const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
  for (let i = 0; i < 2000; i++) {
    const off = rnd(big.length + 100);
    const size = 1 + rnd(i % 10 === 0 ? 20_000 : 3000);
    const got = await fs.readFile("/big", off, size);
    const want = big.subarray(Math.min(off, big.length), Math.min(big.length, off + size));
    assert(
      got.length === want.length && got.every((x, k) => x === want[k]),
      `read ${size} at ${off}`,
    );
  }
  assert(fs.cache.bytes <= 5000, `cache holds ${fs.cache.bytes} bytes`);
  assert(fetches() > 50, "a small cache refetches");
  assert.deepStrictEqual((await fs.readFile("/empty", 0, 100)).length, 0);
  // Snapshots appear under /.snapshots/<name>/, directories implied.
  assert.deepStrictEqual((await fs.resolve("/.snapshots/s1/a/b"))?.type, "d");
  const snapFile = await fs.resolve("/.snapshots/s1/a/b/c.txt");
  assert.deepStrictEqual(snapFile?.size, big.length);
  assert.deepStrictEqual((await fs.children("/.snapshots")).map((c) => c.name), ["s1"]);
  assert.deepStrictEqual((await fs.children("/.snapshots/s1/a")).map((c) => c.name), ["b"]);
  assert.deepStrictEqual(await fs.resolve("/.snapshots/nope/x"), undefined);
  const part = await fs.readFile("/.snapshots/s1/a/b/c.txt", 1234, 10);
  assert.deepStrictEqual(Array.from(part), Array.from(big.subarray(1234, 1244)));
});

// ---- end to end, through the kernel ----

function sh(script: string) {
  return run("bash", "-c", script);
}

async function mountsOf(mp: string): Promise<string[]> {
  const t = (await run("cat", "/proc/mounts")).out;
  return t.split("\n").filter((l) => l.split(" ")[1] === mp);
}

/**
 * Runs `fn` with a new temporary directory DIR, an empty mount point
 * DIR/mnt and a cluster directory DIR/c (not made); afterwards unmounts
 * whatever is still mounted there, stops the cluster and removes DIR. The
 * mount's log is printed when `fn` fails.
 */
async function withMountDir(
  prefix: string,
  fn: (dir: string, mp: string, c: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const mp = `${dir}/mnt`;
  const c = `${dir}/c`;
  try {
    await Deno.mkdir(mp);
    await fn(dir, mp, c);
  } catch (e) {
    console.log(await Deno.readTextFile(`${c}/mount.log`).catch(() => "(no mount.log)"));
    throw e;
  } finally {
    if ((await mountsOf(mp)).length) await run("fusermount3", "-u", "-z", mp);
    await pifs("sim", "down", "--dir", c);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "pifs mount: tree, stat, preads, EROFS, a Pi killed mid-read (R=2), umount" +
    (SKIP ? ` (SKIPPED: ${SKIP})` : ""),
  ignore: !!SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pifs-mount-" });
    const src = `${dir}/src`;
    const mp = `${dir}/mnt`;
    let seed = Number(Deno.env.get("PIFS_TEST_SEED") ?? Date.now() % 1e9);
    console.log(`  seed ${seed}`);
    const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
    try {
      // A tree: 300 small files in 12 directories, 4 files of 1-3 MB, one of 6 MB.
      const t0 = Date.now() - 86_400_000;
      for (let i = 0; i < 300; i++) {
        const d = `${src}/d${i % 12}${i % 3 ? `/sub${i % 5}` : ""}`;
        await Deno.mkdir(d, { recursive: true });
        const data = new Uint8Array(rnd(5000));
        crypto.getRandomValues(data);
        const f = `${d}/f${i}.bin`;
        await Deno.writeFile(f, data, { mode: 0o644 });
        await Deno.chmod(f, [0o644, 0o600, 0o755, 0o444][i % 4]);
        await Deno.utime(f, new Date(t0 + i * 1000), new Date(t0 + i * 1013));
      }
      await Deno.mkdir(`${src}/big/deeper`, { recursive: true });
      const bigs: string[] = [];
      for (let i = 0; i < 4; i++) {
        const data = new Uint8Array(1_000_000 + rnd(2_000_000));
        for (let k = 0; k < data.length; k += 65536) {
          crypto.getRandomValues(data.subarray(k, Math.min(data.length, k + 65536)));
        }
        const f = `${src}/big${i % 2 ? "/deeper" : ""}/b${i}.bin`;
        await Deno.writeFile(f, data);
        bigs.push(f);
      }
      const huge = new Uint8Array(6 * 1024 * 1024 + 12345);
      for (let k = 0; k < huge.length; k += 65536) {
        crypto.getRandomValues(huge.subarray(k, Math.min(huge.length, k + 65536)));
      }
      await Deno.writeFile(`${src}/big/huge.bin`, huge);
      await Deno.mkdir(mp);

      const up = await pifs("sim", "up", "--dir", `${dir}/c`, "--nodes", "3");
      assert.deepStrictEqual(up.code, 0, up.err);
      // As cp -r: the tree lands at /src.
      const put = await pifs("put", "--cluster", `${dir}/c`, src, "/");
      assert.deepStrictEqual(put.code, 0, put.err);
      const root = `${mp}/src`;

      // An unknown option is refused, clearly.
      const bad = await pifs("mount", mp, "--cluster", `${dir}/c`, "-o", "rw,bogus");
      assert.deepStrictEqual(bad.code, 2, bad.err);
      assert(/unknown option/.test(bad.err), bad.err);

      // Read-only (-o ro): the kernel and the daemon refuse every change.
      const m = await pifs("mount", mp, "--cluster", `${dir}/c`, "-o", "ro", "--json");
      assert.deepStrictEqual(m.code, 0, m.err);
      const info = JSON.parse(m.out);
      assert.deepStrictEqual((await mountsOf(mp)).length, 1);
      assert((await mountsOf(mp))[0].includes("fuse.pifs"), (await mountsOf(mp))[0]);
      assert(/ ro[, ]/.test((await mountsOf(mp))[0]), (await mountsOf(mp))[0]);
      // Mounted twice: refused.
      const again = await pifs("mount", mp, "--cluster", `${dir}/c`);
      assert.deepStrictEqual(again.code, 2);
      assert(/already mounted/.test(again.err), again.err);

      // Random preads on a big file first (nothing cached yet), against the source.
      const shadow = await Deno.readFile(bigs[0]);
      const rel = bigs[0].slice(src.length);
      const f = await Deno.open(`${root}${rel}`, { read: true });
      try {
        const buf = new Uint8Array(300_000);
        for (let i = 0; i < 2000; i++) {
          const off = rnd(shadow.length + 1000);
          const len = 1 + rnd(i % 20 === 0 ? 300_000 : 9000);
          await f.seek(off, Deno.SeekMode.Start);
          let got = 0;
          while (got < len) {
            const n = await f.read(buf.subarray(got, len));
            if (n === null) break;
            got += n;
          }
          const want = shadow.subarray(Math.min(off, shadow.length), off + len);
          assert.deepStrictEqual(got, want.length, `pread ${len} at ${off}`);
          for (let k = 0; k < got; k++) {
            if (buf[k] !== want[k]) throw new Error(`pread ${len} at ${off}: byte ${k} differs`);
          }
        }
      } finally {
        f.close();
      }

      // The whole tree, byte for byte (the huge file is kept for the kill below).
      const diff = await run("diff", "-r", "-x", "huge.bin", src, root);
      assert.deepStrictEqual(diff.code, 0, diff.out);
      // Sizes, modes, mtimes, types.
      const statSrc = await sh(
        `cd '${src}' && find . -not -name huge.bin -print0 | sort -z | xargs -0 stat -c '%n %s %a %Y %F'`,
      );
      const statMnt = await sh(
        `cd '${root}' && find . -not -name huge.bin -print0 | sort -z | xargs -0 stat -c '%n %s %a %Y %F'`,
      );
      const norm = (s: { out: string }) =>
        s.out.trim().split("\n").map((l: string) => {
          const [n, size, mode, mtime, ...type] = l.split(" ");
          // Directories: the store keeps no size; their mtime changes as files are added locally.
          return type.join(" ") === "directory"
            ? `${n} ${mode} dir`
            : `${n} ${size} ${mode} ${mtime}`;
        }).join("\n");
      assert.deepStrictEqual(statMnt.code, 0, statMnt.out);
      assert.deepStrictEqual(norm(statMnt), norm(statSrc));
      const ls = await run("ls", "-lR", mp);
      assert.deepStrictEqual(ls.code, 0, ls.out);
      assert.deepStrictEqual((ls.out.match(/\.bin$/gm) ?? []).length, 305);
      const df = await run("df", "-B1", mp);
      assert.deepStrictEqual(df.code, 0, df.out);

      // Writes fail with EROFS; the daemon stays up.
      for (
        const cmd of [
          `touch '${mp}/new'`,
          `echo x > '${root}${rel}'`,
          `mkdir '${mp}/nd'`,
          `rm '${root}${rel}'`,
          `mv '${root}${rel}' '${mp}/moved'`,
          `chmod 600 '${root}${rel}'`,
          `ln '${root}${rel}' '${mp}/hard'`,
          `ln -s x '${mp}/sym'`,
        ]
      ) {
        const r = await sh(cmd);
        assert(r.code !== 0, `${cmd} succeeded`);
        assert(/Read-only file system/.test(r.out), `${cmd}: ${r.out}`);
      }
      assert.deepStrictEqual((await run("cat", `${root}/d0/f0.bin`)).code, 0);

      // A Pi killed during a large read: the rest comes from the other copies.
      const c = await readClusterFile(`${dir}/c`);
      const hf = await Deno.open(`${root}/big/huge.bin`, { read: true });
      const back = new Uint8Array(huge.length);
      let at = 0;
      try {
        while (at < 512 * 1024) at += (await hf.read(back.subarray(at, 512 * 1024)))!;
        const victim = c.nodes[1].pid!;
        Deno.kill(victim, "SIGKILL");
        const t = performance.now();
        while (at < huge.length) {
          const n = await hf.read(back.subarray(at));
          if (n === null) break;
          at += n;
        }
        assert.deepStrictEqual(await hf.read(new Uint8Array(10)), null, "end of file");
        console.log(
          `  node 1 killed after 512 KiB: the other 5.5 MiB in ${
            (performance.now() - t).toFixed(0)
          } ms`,
        );
      } finally {
        hf.close();
      }
      assert.deepStrictEqual(at, huge.length);
      let same = true;
      for (let k = 0; k < huge.length; k++) if (back[k] !== huge[k]) same = false;
      assert(same, "huge.bin read after the kill differs");
      assert.deepStrictEqual((await run("ls", mp)).code, 0, "the daemon is still up");
      const mlog = await Deno.readTextFile(`${dir}/c/mount.log`);
      assert(/node 1 is down/.test(mlog), `the daemon did not notice node 1 die:\n${mlog}`);

      // umount: gone from /proc/mounts, daemon ended.
      const um = await pifs("umount", mp);
      assert.deepStrictEqual(um.code, 0, um.err);
      assert.deepStrictEqual(await mountsOf(mp), []);
      assert(
        /ended/.test(um.err),
        `${um.err}\nmount.log:\n${await Deno.readTextFile(`${dir}/c/mount.log`).catch(() => "")}`,
      );
      // Gone, or a zombie its new parent has not reaped yet.
      const ps = await run("ps", "-o", "stat=", "-p", String(info.pid));
      const pidGone = ps.code !== 0 || ps.out.trim().startsWith("Z");
      assert(pidGone, `daemon ${info.pid} still running`);
      const um2 = await pifs("umount", mp);
      assert.deepStrictEqual(um2.code, 2);
      assert(/not mounted/.test(um2.err), um2.err);

      // A daemon that died: detected by mount and umount, which cleans it up.
      const m2 = await pifs("mount", mp, "--cluster", `${dir}/c`, "--json");
      assert.deepStrictEqual(m2.code, 0, m2.err);
      Deno.kill(JSON.parse(m2.out).pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 300));
      const m3 = await pifs("mount", mp, "--cluster", `${dir}/c`);
      assert.deepStrictEqual(m3.code, 2);
      assert(/daemon died/.test(m3.err) && /pifs umount/.test(m3.err), m3.err);
      const um3 = await pifs("umount", mp);
      assert.deepStrictEqual(um3.code, 0, um3.err);
      assert(/had died/.test(um3.err), um3.err);
      assert.deepStrictEqual(await mountsOf(mp), []);
    } finally {
      if ((await mountsOf(mp)).length) await run("fusermount3", "-u", "-z", mp);
      await pifs("sim", "down", "--dir", `${dir}/c`);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("index: attr and symlink entries; a symbolic link in a checkpoint tree", async () => {
  const { Index } = await import("../store/index_db.ts");
  const { decodeTree } = await import("../store/namespace.ts");
  const ix = Index.open(":memory:");
  try {
    let s = 0;
    ix.apply({ s: ++s, op: "mkdir", p: "/d", mode: 0o755, mtime: 5 });
    ix.apply({ s: ++s, op: "symlink", p: "/d/l", target: "../x/ü", mtime: 7 });
    const l = ix.get("/d/l")!;
    assert.deepStrictEqual([l.type, l.target, l.size, l.manifest, l.mode], [
      "l",
      "../x/ü",
      7,
      null,
      0o777,
    ]);
    assert.deepStrictEqual(ix.list("/d").map((e) => e.target), ["../x/ü"]);
    ix.apply({ s: ++s, op: "attr", p: "/d", mode: 0o700 });
    ix.apply({ s: ++s, op: "attr", p: "/d", mtime: 1234 });
    assert.deepStrictEqual([ix.get("/d")!.mode, ix.get("/d")!.mtime], [0o700, 1234]);
    ix.apply({ s: ++s, op: "attr", p: "/", mode: 0o711, mtime: 99 });
    assert.deepStrictEqual([ix.get("/")!.mode, ix.get("/")!.mtime], [0o711, 99]);
    // A symlink replaces what was at its path; a move carries it.
    ix.apply({ s: ++s, op: "mv", p: "/d/l", to: "/d/m", mtime: 8 });
    assert.deepStrictEqual(ix.get("/d/m")?.target, "../x/ü");
    assert.deepStrictEqual(ix.get("/d/l"), undefined);
    // Links hold no manifest: nothing for gc to keep or fetch.
    assert.deepStrictEqual(ix.missingManifests(), []);
    // Loading a checkpoint resets the root's attributes (the checkpoint carries them).
    ix.resetNamespace(s, 0);
    assert.deepStrictEqual([ix.get("/")!.mode, ix.get("/")!.mtime], [0o755, 0]);
    ix.insertEntry({
      path: "/k",
      type: "l",
      size: 1,
      mode: 0o777,
      mtime: 3,
      manifest: null,
      copies: 0,
      target: "t",
    });
    assert.deepStrictEqual(ix.get("/k")?.target, "t");
  } finally {
    ix.close();
  }
  // Tree objects accept symbolic links ("l"), and refuse unknown types.
  const ok = new TextEncoder().encode(
    JSON.stringify({ v: 1, kind: "tree", entries: [["a", "l", 1, 511, 0, "t", 0]] }),
  );
  assert.deepStrictEqual(decodeTree(ok, "x"), {
    v: 1,
    kind: "tree",
    entries: [["a", "l", 1, 511, 0, "t", 0]],
  });
  const bad = new TextEncoder().encode(
    JSON.stringify({ v: 1, kind: "tree", entries: [["a", "p", 1, 511, 0, "t", 0]] }),
  );
  let refused = false;
  try {
    decodeTree(bad, "x");
  } catch {
    refused = true;
  }
  assert(refused, "a tree entry of unknown type accepted");
});

Deno.test("store errors become errnos: ENOSPC for a full node, EIO for links, ENAMETOOLONG", async () => {
  const { errnoOf } = await import("../fuse/store_backend.ts");
  const { NodeError } = await import("../link/client.ts");
  const { Status } = await import("../link/codec.ts");
  const { NoSpaceError, QuorumError } = await import("../store/store.ts");
  const { PathError } = await import("../store/namespace.ts");
  assert.deepStrictEqual(errnoOf(new NodeError("PUT_BEGIN", Status.ENOSPC)), 28);
  assert.deepStrictEqual(errnoOf(new QuorumError("chunk x: 1 of 2 copies stored")), 5);
  assert.deepStrictEqual(errnoOf(new Error("timeout")), 5);
  const long = new PathError("/x", "name 'x…' is longer than 255 bytes", "NAME_TOO_LONG");
  assert.deepStrictEqual(errnoOf(long), 36);
  assert.deepStrictEqual(errnoOf(new PathError("/x", "contains a control character")), 22);
  // By the error's class and code, never by its message.
  assert.deepStrictEqual(errnoOf(new PathError("/x", "is longer than you think")), 22);
  assert.deepStrictEqual(errnoOf(new PathError("/.snapshots/x", "reserved", "RESERVED")), 30);
  assert.deepStrictEqual(errnoOf(new NoSpaceError("chunk x: no space left on node 1", [1])), 28);
  assert.deepStrictEqual(errnoOf(new Error("ENOSPC somewhere in a message")), 5);
});

/** `stat` of every path under `dir`: name, size (files), mode, mtime (s), type, link target. */
async function statTree(dir: string): Promise<string> {
  const r = await sh(
    `cd '${dir}' && find . -print0 | sort -z | xargs -0 stat -c '%n|%s|%a|%Y|%F|%N'`,
  );
  assert.deepStrictEqual(r.code, 0, r.out);
  return r.out.trim().split("\n").map((l) => {
    const [n, size, mode, mtime, type, name] = l.split("|");
    // A directory's size is the file system's own business.
    return `${n} ${type === "directory" ? "-" : size} ${mode} ${mtime} ${type} ${name}`;
  }).join("\n");
}

async function errCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).name;
  }
}

Deno.test({
  name: "pifs mount read-write: cp -a of ~2000 files, POSIX errnos, fsx, remount and attach" +
    (SKIP ? ` (SKIPPED: ${SKIP})` : ""),
  ignore: !!SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { fsx } = await import("./fsx.ts");
    const dir = await Deno.makeTempDir({ prefix: "pifs-mount-rw-" });
    const src = `${dir}/src`;
    const mp = `${dir}/mnt`;
    const c = `${dir}/c`;
    let seed = Number(Deno.env.get("PIFS_TEST_SEED") ?? Date.now() % 1e9);
    console.log(`  seed ${seed}`);
    const rnd = (n: number) => (seed = (seed * 1664525 + 1013904223) >>> 0) % n;
    try {
      // The tree: 2000 small files in 20 directories (some nested), varied
      // modes and mtimes, 4 files of 200-500 KiB, 30 symbolic links (relative
      // ones that resolve, absolute ones that dangle), directories with their
      // own modes and times.
      const t0 = 1_600_000_000_000;
      const modes = [0o644, 0o600, 0o755, 0o444, 0o640, 0o700];
      const files: string[] = [];
      for (let i = 0; i < 2000; i++) {
        const rel = `d${i % 20}${i % 3 ? `/s${i % 7}` : ""}/f${i}.dat`;
        await Deno.mkdir(`${src}/${rel.slice(0, rel.lastIndexOf("/"))}`, { recursive: true });
        const data = new Uint8Array(rnd(3000));
        crypto.getRandomValues(data);
        await Deno.writeFile(`${src}/${rel}`, data);
        await Deno.chmod(`${src}/${rel}`, modes[i % modes.length]);
        const t = new Date(t0 + i * 3_600_000 + rnd(1000));
        await Deno.utime(`${src}/${rel}`, t, t);
        files.push(rel);
      }
      for (let i = 0; i < 4; i++) {
        const data = new Uint8Array(200_000 + i * 100_000 + rnd(1000));
        crypto.getRandomValues(data.subarray(0, 65536));
        for (let k = 65536; k < data.length; k++) data[k] = data[k - 65536] ^ (k & 0xff);
        await Deno.writeFile(`${src}/big${i}.bin`, data);
      }
      for (let i = 0; i < 30; i++) {
        const target = i % 2 ? `../${files[i]}` : `/nonexistent/${i}`;
        await Deno.symlink(target, `${src}/d${i % 20}/link${i}`);
      }
      await Deno.chmod(`${src}/d3`, 0o700);
      await Deno.chmod(`${src}/d4`, 0o750);
      await Deno.chmod(`${src}/d5/s5`, 0o711);
      const dirs = (await sh(`cd '${src}' && find . -type d`)).out.trim().split("\n");
      for (const d of dirs) {
        const t = new Date(1_500_000_000_000 + rnd(1e9));
        await Deno.utime(`${src}/${d}`, t, t);
      }
      await Deno.mkdir(mp);
      await ok("sim", "up", "--dir", c, "--nodes", "3", "--card-size", "256M");

      const m = await pifs("mount", mp, "--cluster", c, "--json");
      assert.deepStrictEqual(m.code, 0, m.err);
      assert(!/ ro[, ]/.test((await mountsOf(mp))[0]), (await mountsOf(mp))[0]);

      // (a) cp -a in, then diff -r and stat.
      let t = performance.now();
      const cp = await run("cp", "-a", src, `${mp}/tree`);
      assert.deepStrictEqual(cp.code, 0, cp.out);
      const cpMs = performance.now() - t;
      const diff = await run("diff", "-r", "--no-dereference", src, `${mp}/tree`);
      assert.deepStrictEqual(diff.code, 0, diff.out);
      const want = await statTree(src);
      assert.deepStrictEqual(await statTree(`${mp}/tree`), want);
      assert.deepStrictEqual(await Deno.readLink(`${mp}/tree/d1/link1`), `../${files[1]}`);
      assert.deepStrictEqual(
        await Deno.readFile(`${mp}/tree/d1/link1`),
        await Deno.readFile(`${src}/${files[1]}`),
        "a relative link resolves through the mount",
      );
      console.log(
        `  cp -a of ${files.length + 4} files, 30 links, ${dirs.length} directories: ` +
          `${(cpMs / 1000).toFixed(1)} s`,
      );

      // A program sees its own writes at once (before any commit), appends, truncates.
      const w = `${mp}/w`;
      await Deno.mkdir(w);
      const f = await Deno.open(`${w}/a`, { read: true, write: true, create: true });
      await f.write(new TextEncoder().encode("hello world"));
      assert.deepStrictEqual((await f.stat()).size, 11);
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/a`), "hello world");
      f.close();
      await Deno.writeTextFile(`${w}/a`, "!", { append: true });
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/a`), "hello world!");
      await Deno.writeTextFile(`${w}/a`, "new");
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/a`), "new");
      // truncate of a closed file: shrink, then grow with zeros.
      await Deno.truncate(`${mp}/tree/big1.bin`, 1000);
      await Deno.truncate(`${mp}/tree/big1.bin`, 300_000);
      const big1 = await Deno.readFile(`${mp}/tree/big1.bin`);
      const big1src = await Deno.readFile(`${src}/big1.bin`);
      assert.deepStrictEqual(big1.length, 300_000);
      assert.deepStrictEqual(
        Array.from(big1.subarray(0, 1000)),
        Array.from(big1src.subarray(0, 1000)),
      );
      assert(big1.subarray(1000).every((b) => b === 0), "a grown file reads zeros");
      // chmod and utimens of a closed file, a directory; chown only to oneself.
      await Deno.chmod(`${w}/a`, 0o604);
      await Deno.utime(`${w}`, new Date(1_234_567_000), new Date(1_234_567_000));
      assert.deepStrictEqual((await Deno.stat(`${w}/a`)).mode! & 0o7777, 0o604);
      assert.deepStrictEqual((await Deno.stat(w)).mtime!.getTime(), 1_234_567_000);
      await Deno.chown(`${w}/a`, Deno.uid(), Deno.gid());
      assert.deepStrictEqual(await errCode(Deno.chown(`${w}/a`, Deno.uid()! + 1, null)), "EPERM");

      // rename: over a file (replaced), a directory over an empty one, the
      // wrong kinds and a non-empty target refused with their errno.
      await Deno.writeTextFile(`${w}/b`, "bee");
      await Deno.rename(`${w}/b`, `${w}/a`);
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/a`), "bee");
      assert.deepStrictEqual(await errCode(Deno.stat(`${w}/b`)), "ENOENT");
      await Deno.mkdir(`${w}/d1/sub`, { recursive: true });
      await Deno.writeTextFile(`${w}/d1/sub/x`, "x");
      await Deno.mkdir(`${w}/d2`);
      await Deno.rename(`${w}/d1`, `${w}/d2`);
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/d2/sub/x`), "x");
      await Deno.mkdir(`${w}/d3`);
      assert.deepStrictEqual(await errCode(Deno.rename(`${w}/d3`, `${w}/d2`)), "ENOTEMPTY");
      assert.deepStrictEqual(await errCode(Deno.rename(`${w}/a`, `${w}/d3`)), "EISDIR");
      assert.deepStrictEqual(await errCode(Deno.rename(`${w}/d3`, `${w}/a`)), "ENOTDIR");
      assert.deepStrictEqual(await errCode(Deno.rename(`${w}/d2`, `${w}/d2/sub/in`)), "EINVAL");
      assert.deepStrictEqual(await errCode(Deno.remove(`${w}/d2`)), "ENOTEMPTY");
      await Deno.remove(`${w}/d3`);
      assert.deepStrictEqual(await errCode(Deno.stat(`${w}/d3`)), "ENOENT");
      // A file renamed and removed while open for writing.
      const g = await Deno.open(`${w}/open`, { write: true, create: true });
      await g.write(new Uint8Array(5000).fill(7));
      await Deno.rename(`${w}/open`, `${w}/moved`);
      await g.write(new Uint8Array(10).fill(8));
      g.close();
      const moved = await Deno.readFile(`${w}/moved`);
      assert.deepStrictEqual(moved.length, 5010);
      assert.deepStrictEqual([moved[0], moved[5009]], [7, 8]);
      const h = await Deno.open(`${w}/gone`, { write: true, create: true });
      await h.write(new Uint8Array(100));
      await Deno.remove(`${w}/gone`);
      await h.write(new Uint8Array(100));
      h.close();
      assert.deepStrictEqual(await errCode(Deno.stat(`${w}/gone`)), "ENOENT");
      await Deno.symlink("d2/sub/x", `${w}/sym`);
      assert.deepStrictEqual((await Deno.lstat(`${w}/sym`)).isSymlink, true);
      assert.deepStrictEqual((await Deno.lstat(`${w}/sym`)).size, 8);
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/sym`), "x");

      // As git and editors do, from 4 writers at once: write a lock file, close, rename it
      // over the real one, chmod it at once (while its last close may still be committing).
      await Promise.all([0, 1, 2, 3].map(async (k) => {
        for (let i = 0; i < 25; i++) {
          await Deno.writeTextFile(`${w}/g${k}.lock`, `v${i} of ${k}`);
          await Deno.rename(`${w}/g${k}.lock`, `${w}/g${k}`);
          await Deno.chmod(`${w}/g${k}`, i % 2 ? 0o444 : 0o644);
          assert.deepStrictEqual(await Deno.readTextFile(`${w}/g${k}`), `v${i} of ${k}`);
        }
      }));

      // (c) What the store cannot keep fails with its errno; the daemon stays up.
      assert.deepStrictEqual(await errCode(Deno.link(`${w}/a`, `${w}/hard`)), "EPERM");
      const fifo = await run("mkfifo", `${w}/fifo`);
      assert(fifo.code !== 0 && /Operation not supported/.test(fifo.out), fifo.out);
      const dev = await run("mknod", `${w}/dev`, "c", "1", "3");
      assert(dev.code !== 0 && /Operation not permitted/.test(dev.out), dev.out);
      assert.deepStrictEqual(await errCode(Deno.stat(`${w}/hard`)), "ENOENT");
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/a`), "bee", "the mount still works");
      await Deno.writeTextFile(`${w}/after`, "still up");
      assert.deepStrictEqual(await Deno.readTextFile(`${w}/after`), "still up");

      // (b) The exerciser: 10,000 operations against a shadow copy.
      t = performance.now();
      const fx = await fsx({
        file: `${mp}/fsx.bin`,
        ops: 10_000,
        seed: Number(Deno.env.get("FSX_SEED") ?? rnd(2 ** 31)),
        maxSize: 512 * 1024,
        keepShadow: `${dir}/fsx.shadow`,
        log: (msg) => console.log(`  ${msg}`),
      });
      console.log(`  fsx: ${JSON.stringify(fx.counts)} in ${(fx.ms / 1000).toFixed(1)} s`);

      const wantW = await statTree(w);
      const um = await pifs("umount", mp);
      assert.deepStrictEqual(um.code, 0, um.err);
      const mlog = await Deno.readTextFile(`${c}/mount.log`);
      assert(!/not committed|failed/.test(mlog), mlog.slice(-3000));
      // Every spool file went with its commit (the directory goes when empty).
      assert.deepStrictEqual(await errCode(Deno.stat(`${c}/mount-spool`)), "ENOENT");
      const ls = await ok("ls", "-l", "--cluster", c, "/tree/d1");
      assert(ls.includes(`link1 -> ../${files[1]}`), ls);
      assert(/^l/m.test(ls), ls);
      // `pifs get` makes them symbolic links again.
      await ok("get", "--cluster", c, "/tree/d1", `${dir}/got`);
      assert.deepStrictEqual(await Deno.readLink(`${dir}/got/link1`), `../${files[1]}`);
      assert.deepStrictEqual(await Deno.readLink(`${dir}/got/link21`), `../${files[21]}`);

      // (d) The same tree after a remount whose index is rebuilt from the
      // journals, and after a checkpoint and `pifs attach`.
      const same = async (what: string) => {
        const d = await run("diff", "-r", "--no-dereference", src, `${mp}/tree`);
        assert(
          d.code === 1 && d.out.trim().split("\n").length === 1 && /big1\.bin/.test(d.out),
          `${what}: ${d.out}`,
        );
        assert.deepStrictEqual(
          (await statTree(`${mp}/tree`)).split("\n").filter((l) => !l.includes("big1.bin")),
          want.split("\n").filter((l) => !l.includes("big1.bin")),
          what,
        );
        assert.deepStrictEqual(await Deno.readFile(`${mp}/tree/big1.bin`), big1, what);
        assert.deepStrictEqual(await statTree(w), wantW, what);
        const cmp = await run("cmp", `${mp}/fsx.bin`, `${dir}/fsx.shadow`);
        assert.deepStrictEqual(cmp.code, 0, `${what}: ${cmp.out}`);
      };
      for (const e of ["index.db", "index.db-wal", "index.db-shm"]) {
        await Deno.remove(`${c}/${e}`).catch(() => {});
      }
      t = performance.now();
      assert.deepStrictEqual((await pifs("mount", mp, "--cluster", c)).code, 0);
      await same("remounted, index rebuilt from the journals");
      assert.deepStrictEqual((await pifs("umount", mp)).code, 0);
      await ok("checkpoint", "--cluster", c);
      for (const e of ["index.db", "index.db-wal", "index.db-shm"]) {
        await Deno.remove(`${c}/${e}`).catch(() => {});
      }
      await ok("attach", "--cluster", c);
      assert.deepStrictEqual((await pifs("mount", mp, "--cluster", c, "-o", "ro")).code, 0);
      await same("attached from a checkpoint, mounted read-only");
      for (
        const [what, fn] of [
          ["chmod", () => Deno.chmod(`${w}/a`, 0o600)],
          ["write", () => Deno.writeTextFile(`${w}/a`, "x")],
          ["symlink", () => Deno.symlink("x", `${w}/s2`)],
          ["truncate", () => Deno.truncate(`${w}/a`, 0)],
          ["mkdir", () => Deno.mkdir(`${w}/nd`)],
          ["rename", () => Deno.rename(`${w}/a`, `${w}/a2`)],
        ] as const
      ) assert.deepStrictEqual(await errCode(fn()), "EROFS", what);
      assert.deepStrictEqual((await pifs("umount", mp)).code, 0);
      console.log(
        `  two remounts with the tree compared: ${((performance.now() - t) / 1000).toFixed(1)} s`,
      );
    } finally {
      if ((await mountsOf(mp)).length) await run("fusermount3", "-u", "-z", mp);
      await pifs("sim", "down", "--dir", c);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "pifs mount: ENOSPC when the cluster is full, EIO with a Pi down; files stay, the daemon up" +
    (SKIP ? ` (SKIPPED: ${SKIP})` : ""),
  ignore: !!SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withMountDir("pifs-mount-full-", async (_dir, mp, c) => {
      // Two nodes of 64 MiB cards, R=2: less than 64 MiB for data.
      await ok("sim", "up", "--dir", c, "--nodes", "2");
      const m = await pifs("mount", mp, "--cluster", c);
      assert.deepStrictEqual(m.code, 0, m.err);
      await Deno.writeTextFile(`${mp}/small`, "small");
      const f = await Deno.open(`${mp}/big`, { write: true, create: true });
      const b = new Uint8Array(1 << 20);
      for (let i = 0; i < 80; i++) {
        for (let k = 0; k < b.length; k += 65536) crypto.getRandomValues(b.subarray(k, k + 65536));
        await f.write(b);
      }
      assert.deepStrictEqual(await errCode(f.sync()), "ENOSPC");
      f.close();
      // Not committed, not lost: still there (from the host's spool) with what was written.
      assert.deepStrictEqual((await Deno.stat(`${mp}/big`)).size, 80 << 20);
      const tail = new Uint8Array(1000);
      const g = await Deno.open(`${mp}/big`, { read: true });
      await g.seek((80 << 20) - 1000, Deno.SeekMode.Start);
      let got = 0;
      while (got < 1000) got += (await g.read(tail.subarray(got)))!;
      g.close();
      assert.deepStrictEqual(Array.from(tail), Array.from(b.subarray(b.length - 1000)));
      assert.deepStrictEqual(await Deno.readTextFile(`${mp}/small`), "small", "the daemon is up");
      // Removing it drops it; the rest of the mount carries on.
      await Deno.remove(`${mp}/big`);
      assert.deepStrictEqual(await errCode(Deno.stat(`${mp}/big`)), "ENOENT");
      const af = await Deno.open(`${mp}/after`, { write: true, create: true });
      await af.write(new TextEncoder().encode("after"));
      await af.sync(); // committed now (a close commits later, at the release)
      af.close();
      // A Pi down: R=2 copies cannot be made, the commit answers EIO; reads go on from the other.
      Deno.kill((await readClusterFile(c)).nodes[1].pid!, "SIGKILL");
      const h = await Deno.open(`${mp}/lost`, { write: true, create: true });
      await h.write(new TextEncoder().encode("cannot be stored"));
      assert.deepStrictEqual(await errCode(h.sync()), "EIO");
      h.close();
      assert.deepStrictEqual(await Deno.readTextFile(`${mp}/small`), "small", "the daemon is up");
      assert.deepStrictEqual(
        await Deno.readTextFile(`${mp}/lost`),
        "cannot be stored",
        "kept on the host",
      );
      await Deno.remove(`${mp}/lost`);
      assert.deepStrictEqual((await pifs("umount", mp)).code, 0);
      const log = await Deno.readTextFile(`${c}/mount.log`);
      assert(/ENOSPC/.test(log), log.slice(-2000));
      const ls = await ok("ls", "--cluster", c, "/");
      assert.deepStrictEqual(ls.trim().split("\n"), ["after", "small"]);
      // Nothing left in the spool: the removed file's copy went with it.
      assert.deepStrictEqual(await errCode(Deno.stat(`${c}/mount-spool`)), "ENOENT");
    });
  },
});

Deno.test("fsx finds a difference: a byte flipped behind its back is reported with the op log", async () => {
  const { fsx, FsxMismatch } = await import("./fsx.ts");
  const dir = await Deno.makeTempDir({ prefix: "pifs-fsx-self-" });
  try {
    // On the local disk, the exerciser finds nothing...
    const clean = await fsx({ file: `${dir}/a`, ops: 1000, seed: 7, log: () => {} });
    assert.deepStrictEqual(clean.ops, 1000);
    // ...and a fault injected into the file under test is found and reported.
    let err: Error | undefined;
    try {
      await fsx({ file: `${dir}/b`, ops: 3000, seed: 7, faultAfter: 300, log: () => {} });
    } catch (e) {
      err = e as Error;
    }
    assert(err instanceof FsxMismatch, `no difference found: ${err}`);
    assert(/seed 7/.test(err.message), err.message);
    assert(/fault injected: byte \d+ flipped/.test(err.message), err.message);
    assert(/differs at byte \d+|first difference at byte \d+/.test(err.message), err.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "pifs mount: a sync while mounted runs in the mount; a file it replaces is read whole, old or new, never half" +
    (SKIP ? ` (SKIPPED: ${SKIP})` : ""),
  ignore: !!SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withMountDir("pifs-mount-sync-", async (dir, mp, c) => {
      await Deno.mkdir(`${dir}/src`);
      const a = rand(600_000, 11);
      const b = rand(1_300_000, 12);
      await Deno.writeFile(`${dir}/src/big.bin`, a);
      await Deno.writeTextFile(
        `${dir}/job.yaml`,
        "name: j\ntarget: /j\nsources:\n  - folder: ./src\n",
      );
      await ok("sim", "up", "--dir", c, "--nodes", "3", "--baud", "921600");
      await ok("sync", "--cluster", c, `${dir}/job.yaml`);
      // Read-only here: the kernel keeps pages and listings across opens (the
      // strongest caching); the sync writes through the store, not the mount.
      assert.deepStrictEqual((await pifs("mount", mp, "--cluster", c, "-o", "ro")).code, 0);
      // Read once, and list: the kernel now holds its size, pages and the listing.
      const before: string[] = [];
      for await (const e of Deno.readDir(`${mp}/j`)) before.push(e.name);
      assert.deepStrictEqual(before, ["big.bin"]);
      assert.deepStrictEqual(await Deno.readFile(`${mp}/j/big.bin`), a);

      // The source changes; the sync runs (in the mount's process) while a reader loops.
      await Deno.writeFile(`${dir}/src/big.bin`, b);
      await Deno.writeTextFile(`${dir}/src/new.txt`, "new\n");
      const sync = pifs("sync", "--cluster", c, `${dir}/job.yaml`);
      let done = false;
      sync.then(() => done = true);
      const seen = { a: 0, b: 0 };
      while (!done) {
        const got = await Deno.readFile(`${mp}/j/big.bin`);
        if (got.length === a.length && got.every((v, i) => v === a[i])) seen.a++;
        else if (got.length === b.length && got.every((v, i) => v === b[i])) seen.b++;
        else throw new Error(`read ${got.length} bytes that are neither the old nor the new file`);
      }
      const r = await sync;
      assert.deepStrictEqual(r.code, 0, r.err);
      assert(seen.a > 0, "the reader never ran while the sync did");
      // Committed: the new content, whole, and the new file, through the same mount.
      assert.deepStrictEqual(await Deno.readFile(`${mp}/j/big.bin`), b);
      assert.deepStrictEqual(await Deno.readTextFile(`${mp}/j/new.txt`), "new\n");
      const names: string[] = [];
      for await (const e of Deno.readDir(`${mp}/j`)) names.push(e.name);
      assert.deepStrictEqual(names.sort(), ["big.bin", "new.txt"]);
      const log = await Deno.readTextFile(`${c}/mount.log`);
      assert(/ran for another command: pifs sync/.test(log), log.slice(-2000));
      const um = await pifs("umount", mp);
      assert.deepStrictEqual(um.code, 0, um.err);
    });
  },
});

Deno.test({
  name:
    "pifs mount: the disk cache is bounded, survives remounts, is checked on read, and serves reads with every Pi down" +
    (SKIP ? ` (SKIPPED: ${SKIP})` : ""),
  ignore: !!SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withMountDir("pifs-mount-cache-", async (dir, mp, c) => {
      const cache = `${c}/mount-cache`;
      const cached = async () => {
        let n = 0, bytes = 0;
        for await (const e of Deno.readDir(cache)) {
          if (/^[0-9a-f]{64}$/.test(e.name)) {
            n++, bytes += (await Deno.stat(`${cache}/${e.name}`)).size;
          }
        }
        return { n, bytes };
      };
      const mount = async (diskMb: number) => {
        const m = await pifs(
          "mount",
          mp,
          "--cluster",
          c,
          "--cache-mb",
          "1",
          "--cache-disk-mb",
          `${diskMb}`,
        );
        assert.deepStrictEqual(m.code, 0, m.err);
      };
      const umount = async () => {
        const u = await pifs("umount", mp);
        assert.deepStrictEqual(u.code, 0, u.err);
      };
      const big = new Uint8Array(3 << 20);
      for (let k = 0; k < big.length; k += 65536) {
        crypto.getRandomValues(big.subarray(k, k + 65536));
      }
      await Deno.writeFile(`${dir}/big`, big);
      await ok("sim", "up", "--dir", c, "--nodes", "3");
      await ok("put", `${dir}/big`, "/big", "--cluster", c);

      // Bounded: 1 MiB of disk for a 3 MiB file.
      await mount(1);
      assert.deepStrictEqual(await Deno.readFile(`${mp}/big`), big);
      await umount();
      const small = await cached();
      assert(small.bytes <= 1 << 20 && small.n > 0, JSON.stringify(small));

      // Room for it all: after one read it is all on the disk, and stays there unmounted.
      await mount(16);
      assert.deepStrictEqual(await Deno.readFile(`${mp}/big`), big);
      await umount();
      const all = await cached();
      assert(all.bytes >= big.length, JSON.stringify(all));

      // A damaged cache file is found, dropped and read again from the Pis.
      const names: string[] = [];
      for await (const e of Deno.readDir(cache)) names.push(e.name);
      const victim = `${cache}/${names.sort()[0]}`;
      const bytes = await Deno.readFile(victim);
      bytes[100] ^= 0xff;
      await Deno.writeFile(victim, bytes);
      await mount(16);
      assert.deepStrictEqual(await Deno.readFile(`${mp}/big`), big);
      await umount();
      const log = await Deno.readTextFile(`${c}/mount.log`);
      assert(/\(1 found damaged there\)/.test(log), log.slice(-1500));

      // Every Pi down: the file still reads back, from the disk (memory holds 1 MiB of it).
      await mount(16);
      for (const n of (await readClusterFile(c)).nodes) Deno.kill(n.pid!, "SIGKILL");
      assert.deepStrictEqual(await Deno.readFile(`${mp}/big`), big);
      await umount();
    });
  },
});
