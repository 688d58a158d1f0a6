/**
 * `pifs mount` (read-only slice): the struct layouts against the C
 * compiler's view of libfuse's headers, the file system's read path over a
 * fake backend, and end to end through the kernel: a 3-node hosted cluster,
 * a tree put with `pifs put`, mounted with `pifs mount`, compared with
 * `diff -r`, `stat`, `ls -lR` and random preads, writes refused with EROFS,
 * a Pi killed during a large read (R=2), `pifs umount`, and a dead daemon
 * detected.
 */
import { pifs } from "./_cli.ts";
import { assert, assertEquals } from "./_assert.ts";
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
    assertEquals(b.code, 0, b.out);
    const out = (await run(`${dir}/l`)).out;
    const v = Object.fromEntries(
      out.trim().split("\n").map((l: string) => {
        const [k, ...rest] = l.split(" ");
        return [k, rest.map(Number)];
      }),
    );
    assertEquals(v.ops[0], OPS.length * 8, "fuse_lowlevel_ops");
    assertEquals(v.slot_read[0], OPS.indexOf("read"));
    assertEquals(v.slot_readdirplus[0], OPS.indexOf("readdirplus"));
    assertEquals(v.slot_lseek[0], OPS.indexOf("lseek"));
    assertEquals(v.entry[0], entryParamSize(), "fuse_entry_param");
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
    assertEquals(v.stat[0], st.length, "struct stat");
    const dv = new DataView(st.buffer);
    assertEquals(dv.getUint32(v.st_mode[0], true), 0o100644);
    assertEquals(Number(dv.getBigInt64(v.st_size[0], true)), 1234);
    assertEquals(Number(dv.getBigInt64(v.st_mtim[0], true)), 1_700_000_000);
    assertEquals(Number(dv.getBigInt64(v.st_mtim[0] + 8, true)), 123_000_000);
    const e = entryParam(attr, 0, 9.5);
    assertEquals(new DataView(e.buffer).getFloat64(v.attr_timeout[0], true), 9.5);
    assertEquals(
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
    assertEquals(v.fi[0], 40);
    assertEquals(Array.from(fileInfo(7, FI_KEEP_CACHE)), v.fibytes);
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
    snapshotObject: () =>
      Promise.resolve({
        v: 1 as const,
        name: "s1",
        target: "/",
        time: 5,
        files: [["a/b/c.txt", "/big", files.get("/big")!.length, 0o600, 9]],
      }),
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
  assertEquals((await fs.readFile("/empty", 0, 100)).length, 0);
  // Snapshots appear under /.snapshots/<name>/, directories implied.
  assertEquals((await fs.resolve("/.snapshots/s1/a/b"))?.type, "d");
  const snapFile = await fs.resolve("/.snapshots/s1/a/b/c.txt");
  assertEquals(snapFile?.size, big.length);
  assertEquals((await fs.children("/.snapshots")).map((c) => c.name), ["s1"]);
  assertEquals((await fs.children("/.snapshots/s1/a")).map((c) => c.name), ["b"]);
  assertEquals(await fs.resolve("/.snapshots/nope/x"), undefined);
  const part = await fs.readFile("/.snapshots/s1/a/b/c.txt", 1234, 10);
  assertEquals(Array.from(part), Array.from(big.subarray(1234, 1244)));
});

// ---- end to end, through the kernel ----

function sh(script: string) {
  return run("bash", "-c", script);
}

async function mountsOf(mp: string): Promise<string[]> {
  const t = (await run("cat", "/proc/mounts")).out;
  return t.split("\n").filter((l) => l.split(" ")[1] === mp);
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
      assertEquals(up.code, 0, up.err);
      // As cp -r: the tree lands at /src.
      const put = await pifs("put", "--cluster", `${dir}/c`, src, "/");
      assertEquals(put.code, 0, put.err);
      const root = `${mp}/src`;

      // RW refused, clearly.
      const rw = await pifs("mount", mp, "--cluster", `${dir}/c`, "-o", "rw");
      assertEquals(rw.code, 2, rw.err);
      assert(/read-only/.test(rw.err), rw.err);

      const m = await pifs("mount", mp, "--cluster", `${dir}/c`, "--json");
      assertEquals(m.code, 0, m.err);
      const info = JSON.parse(m.out);
      assertEquals((await mountsOf(mp)).length, 1);
      assert((await mountsOf(mp))[0].includes("fuse.pifs"), (await mountsOf(mp))[0]);
      // Mounted twice: refused.
      const again = await pifs("mount", mp, "--cluster", `${dir}/c`);
      assertEquals(again.code, 2);
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
          assertEquals(got, want.length, `pread ${len} at ${off}`);
          for (let k = 0; k < got; k++) {
            if (buf[k] !== want[k]) throw new Error(`pread ${len} at ${off}: byte ${k} differs`);
          }
        }
      } finally {
        f.close();
      }

      // The whole tree, byte for byte (the huge file is kept for the kill below).
      const diff = await run("diff", "-r", "-x", "huge.bin", src, root);
      assertEquals(diff.code, 0, diff.out);
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
      assertEquals(statMnt.code, 0, statMnt.out);
      assertEquals(norm(statMnt), norm(statSrc));
      const ls = await run("ls", "-lR", mp);
      assertEquals(ls.code, 0, ls.out);
      assertEquals((ls.out.match(/\.bin$/gm) ?? []).length, 305);
      const df = await run("df", "-B1", mp);
      assertEquals(df.code, 0, df.out);

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
      assertEquals((await run("cat", `${root}/d0/f0.bin`)).code, 0);

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
        assertEquals(await hf.read(new Uint8Array(10)), null, "end of file");
        console.log(
          `  node 1 killed after 512 KiB: the other 5.5 MiB in ${
            (performance.now() - t).toFixed(0)
          } ms`,
        );
      } finally {
        hf.close();
      }
      assertEquals(at, huge.length);
      let same = true;
      for (let k = 0; k < huge.length; k++) if (back[k] !== huge[k]) same = false;
      assert(same, "huge.bin read after the kill differs");
      assertEquals((await run("ls", mp)).code, 0, "the daemon is still up");
      const mlog = await Deno.readTextFile(`${dir}/c/mount.log`);
      assert(/node 1 is down/.test(mlog), `the daemon did not notice node 1 die:\n${mlog}`);

      // umount: gone from /proc/mounts, daemon ended.
      const um = await pifs("umount", mp);
      assertEquals(um.code, 0, um.err);
      assertEquals(await mountsOf(mp), []);
      assert(/ended/.test(um.err), um.err);
      // Gone, or a zombie its new parent has not reaped yet.
      const ps = await run("ps", "-o", "stat=", "-p", String(info.pid));
      const pidGone = ps.code !== 0 || ps.out.trim().startsWith("Z");
      assert(pidGone, `daemon ${info.pid} still running`);
      const um2 = await pifs("umount", mp);
      assertEquals(um2.code, 2);
      assert(/not mounted/.test(um2.err), um2.err);

      // A daemon that died: detected by mount and umount, which cleans it up.
      const m2 = await pifs("mount", mp, "--cluster", `${dir}/c`, "--json");
      assertEquals(m2.code, 0, m2.err);
      Deno.kill(JSON.parse(m2.out).pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 300));
      const m3 = await pifs("mount", mp, "--cluster", `${dir}/c`);
      assertEquals(m3.code, 2);
      assert(/daemon died/.test(m3.err) && /pifs umount/.test(m3.err), m3.err);
      const um3 = await pifs("umount", mp);
      assertEquals(um3.code, 0, um3.err);
      assert(/had died/.test(um3.err), um3.err);
      assertEquals(await mountsOf(mp), []);
    } finally {
      if ((await mountsOf(mp)).length) await run("fusermount3", "-u", "-z", mp);
      await pifs("sim", "down", "--dir", `${dir}/c`);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
