/**
 * `pifs card init`, through the real command line, checked with tools we did
 * not write: `file` reads the partition table, `fsck.fat -n` the volume,
 * mtools every file back; a card that holds data is left byte-identical.
 */
import { pifs } from "./_cli.ts";
import assert from "node:assert/strict";
import { assertBootFilesIntact, assertFsckClean } from "./_cards.ts";
import {
  bootFileContents,
  deviceProblems,
  firmwareFiles,
  type LsblkDev,
  mtoolsImage,
  NODE_SLOT,
  PIFS_CONFIG_TXT,
} from "../card/card.ts";
import { crc32c } from "../link/crc32c.ts";
import { readClusterFile } from "../store/cluster.ts";

const MiB = 1024 ** 2;

/** A file on the card's FAT volume, read back by mtools. */
async function mtype(card: string, path: string): Promise<Uint8Array> {
  const o = await new Deno.Command("mtype", { args: ["-i", mtoolsImage(card), `::/${path}`] })
    .output();
  assert(o.success, `mtype ${path} from ${card}: ${new TextDecoder().decode(o.stderr)}`);
  return o.stdout;
}

/** Every file path on the card's volume (mdir, hidden files too). */
async function listing(card: string): Promise<string[]> {
  const o = await new Deno.Command("mdir", {
    args: ["-/", "-a", "-b", "-i", mtoolsImage(card), "::"],
  })
    .output();
  assert(o.success, `mdir ${card}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout).split("\n").filter((l) =>
    l.startsWith("::/") && !l.endsWith("/")
  ).map((l) => l.slice(3)).sort();
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The partition table as `file` reads it. */
async function partitionTable(card: string): Promise<string> {
  const o = await new Deno.Command("file", { args: ["-b", card] }).output();
  return new TextDecoder().decode(o.stdout);
}

/** Asserts the pifs firmware and config.txt on the card, byte-exact. */
async function assertFirmware(card: string, config = PIFS_CONFIG_TXT): Promise<void> {
  const fw = await firmwareFiles();
  assert(same(await mtype(card, "kernel8.img"), await Deno.readFile(fw.kernel8)), "kernel8.img");
  assert(same(await mtype(card, "kernel.img"), await Deno.readFile(fw.kernel)), "kernel.img");
  for (const [onCard, src] of [["PIFS/NODE8.IMG", fw.node8], ["PIFS/NODE.IMG", fw.node]]) {
    const got = await mtype(card, onCard);
    const want = await Deno.readFile(src);
    assert.deepStrictEqual(got.length, NODE_SLOT, `${onCard} padded to 1 MiB`);
    assert(same(got.subarray(0, want.length), want), `${onCard} starts with ${src}`);
    assert(got.subarray(want.length).every((b) => b === 0), `${onCard} padded with zeros`);
  }
  assert.deepStrictEqual(new TextDecoder().decode(await mtype(card, "config.txt")), config);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pifs-card-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("card init: a new image is partitioned, fsck-clean, and holds every file exactly", async () => {
  await withDir(async (dir) => {
    const card = `${dir}/card.img`;
    const r = await pifs("card", "init", card, "--size", "64M", "--json");
    assert.deepStrictEqual(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assert.deepStrictEqual(s.path, card);
    assert.deepStrictEqual(s.size, 64 * MiB);
    assert.deepStrictEqual((await Deno.stat(card)).size, 64 * MiB);
    assert.deepStrictEqual(s.partition.start, 2048);
    assert.deepStrictEqual(s.partition.sectors, 64 * 2048 - 2048);
    const table = await partitionTable(card);
    assert(/partition 1 : ID=0xc,.*startsector 2048, 129024 sectors/.test(table), table);
    await assertFsckClean(card);
    await assertBootFilesIntact(card);
    await assertFirmware(card);
    const config = PIFS_CONFIG_TXT;
    for (const line of ["[pi3]\narm_64bit=1", "[pi0]\nkernel=kernel.img", "enable_uart=1"]) {
      assert(config.includes(line), `config.txt has ${line}`);
    }
    // The summary lists every file on the card, with its size on the card.
    const files = await listing(card);
    assert.deepStrictEqual(s.files.map((f: { path: string }) => f.path).sort(), files);
    for (const f of s.files) {
      assert.deepStrictEqual(f.bytes, (await mtype(card, f.path)).length, f.path);
    }
  });
});

Deno.test("card init --boot-files: the user's tree lands byte-exact, pifs keeps its kernels", async () => {
  await withDir(async (dir) => {
    const boot = `${dir}/boot`;
    await Deno.mkdir(`${boot}/overlays/deep`, { recursive: true });
    const tree: Record<string, Uint8Array> = {
      "bootcode.bin": crypto.getRandomValues(new Uint8Array(52_000)),
      "start.elf": crypto.getRandomValues(new Uint8Array(65_536)),
      "fixup.dat": crypto.getRandomValues(new Uint8Array(7_000)),
      "config.txt": new TextEncoder().encode("arm_64bit=1\nenable_uart=1\n# mine\n"),
      "bcm2710-rpi-3-b.dtb": crypto.getRandomValues(new Uint8Array(30_000)),
      "overlays/disable-bt.dtbo": crypto.getRandomValues(new Uint8Array(1_234)),
      "overlays/README": new TextEncoder().encode("overlays\n"),
      "overlays/deep/A Long Name.dtbo": crypto.getRandomValues(new Uint8Array(999)),
      "empty.txt": new Uint8Array(0),
    };
    for (const [p, b] of Object.entries(tree)) await Deno.writeFile(`${boot}/${p}`, b);
    // A kernel8.img of the user's is not copied: the card boots the pifs bootloader.
    await Deno.writeFile(`${boot}/kernel8.img`, new Uint8Array(100));

    const card = `${dir}/card.img`;
    const r = await pifs("card", "init", card, "--size", "64M", "--boot-files", boot);
    assert.deepStrictEqual(r.code, 0, r.err);
    assert(r.err.includes("kernel8.img not copied"), r.err);
    await assertFsckClean(card);
    for (const [p, want] of Object.entries(tree)) {
      assert(same(await mtype(card, p), want), `${p} byte-exact`);
    }
    await assertFirmware(card, "arm_64bit=1\nenable_uart=1\n# mine\n");
    assert.deepStrictEqual(
      await listing(card),
      [...Object.keys(tree), "kernel8.img", "kernel.img", "PIFS/NODE8.IMG", "PIFS/NODE.IMG"]
        .sort(),
    );

    // Without a config.txt of the user's, pifs writes its own.
    await Deno.remove(`${boot}/config.txt`);
    const card2 = `${dir}/card2.img`;
    const r2 = await pifs("card", "init", card2, "--size", "64M", "--boot-files", boot, "--json");
    assert.deepStrictEqual(r2.code, 0, r2.err);
    await assertFsckClean(card2);
    await assertFirmware(card2);
    assert.deepStrictEqual(JSON.parse(r2.out).boot_files, boot);
  });
});

/** A STORE.DAT head: slot 0 (generation 5) and slot 1 (generation 4), each a valid superblock. */
function storeHead(cluster: Uint8Array, node: number): Uint8Array {
  const head = new Uint8Array(4096);
  for (const [slot, gen] of [[0, 5], [1, 4]]) {
    const s = head.subarray(slot * 512, slot * 512 + 512);
    const v = new DataView(s.buffer, s.byteOffset, 512);
    s.set(new TextEncoder().encode("PIFSSTOR"));
    v.setUint32(8, 1, true);
    v.setUint32(12, gen, true);
    s.set(gen === 5 ? cluster : cluster.map((b) => b ^ 0xff), 16);
    v.setUint32(32, node, true);
    v.setUint32(508, crc32c(s.subarray(0, 508)), true);
  }
  return head;
}

Deno.test("card init: a card holding files is refused and untouched; --force re-makes it", async () => {
  await withDir(async (dir) => {
    const card = `${dir}/card.img`;
    assert.deepStrictEqual((await pifs("card", "init", card, "--size", "64M")).code, 0);
    // Files of someone's: one in a subdirectory, a hidden one, and a pifs store.
    await Deno.writeFile(`${dir}/notes.txt`, new TextEncoder().encode("keep me\n"));
    const cluster = crypto.getRandomValues(new Uint8Array(16));
    await Deno.writeFile(`${dir}/STORE.DAT`, storeHead(cluster, 7));
    const img = mtoolsImage(card);
    for (
      const args of [
        ["mmd", "-i", img, "::/docs"],
        ["mcopy", "-i", img, `${dir}/notes.txt`, "::/docs/notes.txt"],
        ["mcopy", "-i", img, `${dir}/notes.txt`, "::/hidden.txt"],
        ["mattrib", "-i", img, "+h", "::/hidden.txt"],
        ["mcopy", "-i", img, `${dir}/STORE.DAT`, "::/PIFS/STORE.DAT"],
      ]
    ) {
      const o = await new Deno.Command(args[0], { args: args.slice(1) }).output();
      assert(o.success, args.join(" "));
    }
    const before = await sha256(card);

    const r = await pifs("card", "init", card);
    assert(r.code !== 0, "refused");
    assert(r.err.includes("holds data") && r.err.includes("nothing was written"), r.err);
    assert(r.err.includes("11 files"), `names the file count: ${r.err}`);
    assert(r.err.includes("docs/notes.txt") && r.err.includes("hidden.txt"), r.err);
    const hex = [...cluster].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert(r.err.includes(`PIFS/STORE.DAT of cluster ${hex}, node 7`), r.err);
    assert.deepStrictEqual(await sha256(card), before, "the card is byte-identical");

    // --json: the refusal as an object on stdout, still a failure.
    const j = await pifs("card", "init", card, "--json");
    assert(j.code !== 0);
    const holds = JSON.parse(j.out).holds;
    assert.deepStrictEqual(holds.volumes[0].files.length, 11);
    assert.deepStrictEqual(holds.volumes[0].store.clusterId, hex);
    assert.deepStrictEqual(await sha256(card), before);

    // A bad --boot-files is found before anything is written, even with --force.
    const bad = await pifs("card", "init", card, "--force", "--boot-files", `${dir}/nope`);
    assert(bad.code !== 0 && bad.err.includes(`${dir}/nope: no such directory`), bad.err);
    assert.deepStrictEqual(await sha256(card), before);

    const f = await pifs("card", "init", card, "--force", "--json");
    assert.deepStrictEqual(f.code, 0, f.err);
    assert(JSON.parse(f.out).replaced.some((l: string) => l.includes("11 files")));
    await assertFsckClean(card);
    await assertBootFilesIntact(card);
    await assertFirmware(card);
    const files = await listing(card);
    assert(!files.includes("docs/notes.txt") && !files.includes("PIFS/STORE.DAT"), `${files}`);
    // Now it holds pifs's own files: refused again without --force.
    const again = await pifs("card", "init", card);
    assert(again.code !== 0 && again.err.includes("8 files"), again.err);
  });
});

Deno.test("card init: data that is not FAT counts; zeros do not; an existing file keeps its size", async () => {
  await withDir(async (dir) => {
    const junk = `${dir}/junk.img`;
    const f = await Deno.create(junk);
    await f.truncate(128 * MiB);
    await f.seek(300 * 512, Deno.SeekMode.Start);
    await f.write(crypto.getRandomValues(new Uint8Array(4096)));
    f.close();
    const before = await sha256(junk);
    const r = await pifs("card", "init", junk);
    assert(r.code !== 0 && r.err.includes("neither a partition table nor a FAT volume"), r.err);
    assert.deepStrictEqual(await sha256(junk), before);

    // An all-zero file is not holding anything: made without --force, at its own size.
    const zero = `${dir}/zero.img`;
    await Deno.writeFile(zero, new Uint8Array(0));
    await Deno.truncate(zero, 128 * MiB);
    const z = await pifs("card", "init", zero, "--json");
    assert.deepStrictEqual(z.code, 0, z.err);
    assert.deepStrictEqual(JSON.parse(z.out).size, 128 * MiB);
    assert.deepStrictEqual((await Deno.stat(zero)).size, 128 * MiB);
    await assertFsckClean(zero);
    await assertFirmware(zero);

    // A superfloppy FAT volume (no partition table) with a file is listed and refused.
    const sf = `${dir}/superfloppy.img`;
    const mk = await new Deno.Command("mkfs.fat", { args: ["-F", "32", "-C", sf, "65536"] })
      .output();
    assert(mk.success);
    await Deno.writeFile(`${dir}/a.txt`, new TextEncoder().encode("a"));
    assert(
      (await new Deno.Command("mcopy", { args: ["-i", sf, `${dir}/a.txt`, "::/"] }).output())
        .success,
    );
    const sb = await sha256(sf);
    const s = await pifs("card", "init", sf);
    assert(s.code !== 0 && s.err.includes("whole card") && s.err.includes("a.txt"), s.err);
    assert.deepStrictEqual(await sha256(sf), sb);
  });
});

Deno.test("card init: bad input is a clear error and writes nothing", async () => {
  await withDir(async (dir) => {
    const cases: { args: string[]; says: RegExp; path: string }[] = [
      { args: [`${dir}/a.img`, "--size", "100M"], says: /power of two/, path: `${dir}/a.img` },
      { args: [`${dir}/a.img`, "--size", "32M"], says: /at least 64 MiB/, path: `${dir}/a.img` },
      {
        args: [`${dir}/a.img`, "--size", "lots"],
        says: /--size 'lots': not a size/,
        path: `${dir}/a.img`,
      },
      { args: [`${dir}/b.img`], says: /does not exist: give --size/, path: `${dir}/b.img` },
      {
        args: [`${dir}/no/such/c.img`, "--size", "64M"],
        says: /directory .*no\/such does not exist/,
        path: `${dir}/no`,
      },
      {
        args: [`${dir}/d.img`, "--size", "64M", "--label", "much too long"],
        says: /--label/,
        path: `${dir}/d.img`,
      },
      {
        args: [`${dir}/e.img`, "--size", "64M", "--boot-files", `${dir}/missing`],
        says: /--boot-files .*missing: no such directory/,
        path: `${dir}/e.img`,
      },
    ];
    for (const c of cases) {
      const r = await pifs("card", "init", ...c.args);
      assert(r.code !== 0, `${c.args.join(" ")}: exit ${r.code}`);
      assert(c.says.test(r.err), `${c.args.join(" ")}: ${r.err}`);
      assert(!r.err.includes("    at "), `no stack trace: ${r.err}`);
      assert(!(await exists(c.path)), `${c.args.join(" ")}: ${c.path} was written`);
    }
    // A directory as PATH: refused, the directory untouched.
    await Deno.mkdir(`${dir}/adir`);
    const d = await pifs("card", "init", `${dir}/adir`, "--size", "64M");
    assert(d.code !== 0 && d.err.includes("is a directory"), d.err);
    assert.deepStrictEqual([...Deno.readDirSync(`${dir}/adir`)].length, 0);
    // An existing file too small, or with another --size: refused, unchanged.
    await Deno.writeFile(`${dir}/small.img`, new Uint8Array(MiB).fill(7));
    const small = await pifs("card", "init", `${dir}/small.img`);
    assert(small.code !== 0 && small.err.includes("at least 64 MiB"), small.err);
    const resize = await pifs("card", "init", `${dir}/small.img`, "--size", "64M");
    assert(resize.code !== 0 && resize.err.includes("keeps its size"), resize.err);
    assert((await Deno.readFile(`${dir}/small.img`)).every((b) => b === 7));
    // A character device is neither a card nor an image.
    const n = await pifs("card", "init", "/dev/null");
    assert(n.code !== 0 && n.err.includes("neither a block device nor a regular file"), n.err);
    // --help says what it does.
    const h = await pifs("card", "init", "--help");
    assert.deepStrictEqual(h.code, 0);
    assert(h.out.includes("--boot-files") && h.out.includes("--force"), h.out);
  });
});

Deno.test("card: a sim card from makeCard is FORMATted by a hosted node; card init then names its store", async () => {
  await withDir(async (dir) => {
    const up = await pifs("sim", "up", "--dir", dir, "--nodes", "1");
    assert.deepStrictEqual(up.code, 0, up.err);
    const down = await pifs("sim", "down", "--dir", dir);
    assert.deepStrictEqual(down.code, 0, down.err);
    const c = await readClusterFile(dir);
    const card = `${dir}/${c.nodes[0].card}`;
    await assertFsckClean(card);
    await assertBootFilesIntact(card);
    await assertFirmware(card);
    assert((await listing(card)).includes("PIFS/STORE.DAT"), "the node made its store");
    const before = await sha256(card);
    const r = await pifs("card", "init", card);
    assert(r.code !== 0, "refused");
    assert(r.err.includes(`PIFS/STORE.DAT of cluster ${c.cluster_id}, node 0`), r.err);
    assert.deepStrictEqual(await sha256(card), before);
  });
});

Deno.test("card: in-use devices are found from lsblk and /proc/mounts", () => {
  const disk = (children: LsblkDev[] = [], mountpoint: string | null = null): LsblkDev => ({
    name: "sdz",
    path: "/dev/sdz",
    type: "disk",
    size: 64 * MiB,
    ro: false,
    mountpoint,
    children,
  });
  const part = (n: number, mountpoint: string | null = null, children?: LsblkDev[]): LsblkDev => ({
    name: `sdz${n}`,
    path: `/dev/sdz${n}`,
    type: "part",
    size: 32 * MiB,
    ro: false,
    mountpoint,
    pkname: "sdz",
    children,
  });
  assert.deepStrictEqual(deviceProblems(disk([part(1), part(2)]), []), []);
  assert.deepStrictEqual(deviceProblems(disk([part(1), part(2, "/media/boot")]), []), [
    "/dev/sdz2 is mounted on /media/boot",
  ]);
  assert.deepStrictEqual(deviceProblems(disk([], "/mnt"), []), ["/dev/sdz is mounted on /mnt"]);
  // Mounted per /proc/mounts (source resolved from /dev/disk/by-uuid/...), not per lsblk.
  assert.deepStrictEqual(
    deviceProblems(disk([part(1)]), [{ source: "/dev/sdz1", target: "/boot/firmware" }, {
      source: "/dev/vda",
      target: "/",
    }]),
    ["/dev/sdz1 is mounted on /boot/firmware"],
  );
  const crypt: LsblkDev = {
    name: "luks",
    path: "/dev/mapper/luks",
    type: "crypt",
    size: 1,
    ro: false,
    mountpoint: null,
  };
  assert.deepStrictEqual(deviceProblems(disk([part(1, null, [crypt])]), []), [
    "/dev/mapper/luks (crypt) is built on it",
  ]);
});

/** Runs `cmd args`; its stdout, or throws. */
async function sh(cmd: string, ...args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  if (!o.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  }
  return new TextDecoder().decode(o.stdout).trim();
}

const canLoop = Deno.uid() === 0 && await sh("losetup", "--version").then(() => true, () => false);

Deno.test({
  name: "card init on a block device (a loop device): written, and refused while mounted",
  ignore: !canLoop,
  fn: async () => {
    await withDir(async (dir) => {
      const backing = `${dir}/dev.img`;
      await Deno.writeFile(backing, new Uint8Array(0));
      await Deno.truncate(backing, 128 * MiB);
      const loop = await sh("losetup", "-f", "--show", backing);
      // The Pi's own boot files (here: files with the stand-ins' bytes, as a user's would be).
      const boot = `${dir}/boot`;
      await Deno.mkdir(boot);
      for (const [name, bytes] of bootFileContents()) {
        await Deno.writeFile(`${boot}/${name}`, bytes);
      }
      try {
        // A real card without the Pi's boot files: refused, nothing written.
        const bare = await pifs("card", "init", loop);
        assert.equal(bare.code, 1, bare.err);
        assert.match(bare.err, /needs the Raspberry Pi's own boot files: give --boot-files DIR/);
        const partial = `${dir}/partial`;
        await Deno.mkdir(partial);
        await Deno.writeTextFile(`${partial}/start.elf`, "x");
        const half = await pifs("card", "init", loop, "--boot-files", partial);
        assert.equal(half.code, 1, half.err);
        assert.match(half.err, /has no bootcode\.bin, fixup\.dat: a Pi would not boot this card/);
        const head = await Deno.open(backing);
        const first = new Uint8Array(1 << 20);
        await head.read(first);
        head.close();
        assert(first.every((b) => b === 0), "a refused card init wrote to the device");
        const r = await pifs("card", "init", loop, "--json", "--boot-files", boot);
        assert.deepStrictEqual(r.code, 0, r.err);
        const s = JSON.parse(r.out);
        assert.deepStrictEqual([s.kind, s.size], ["device", 128 * MiB]);
        const refused = await pifs("card", "init", loop, "--size", "64M");
        assert(refused.code !== 0 && refused.err.includes("its size is its own"), refused.err);
      } finally {
        await sh("losetup", "-d", loop);
      }
      await assertFsckClean(backing);
      await assertBootFilesIntact(backing);
      await assertFirmware(backing);

      // A mounted file system on the device: refused, untouched.
      const ext = `${dir}/ext.img`;
      await Deno.writeFile(ext, new Uint8Array(0));
      await Deno.truncate(ext, 64 * MiB);
      const mkfs = await sh("mkfs.ext4", "-q", ext).then(() => true, () => false);
      if (!mkfs) return;
      const before = await sha256(ext);
      const loop2 = await sh("losetup", "-f", "--show", ext);
      const mnt = `${dir}/mnt`;
      await Deno.mkdir(mnt);
      let mounted = false;
      try {
        mounted = await sh("mount", "-o", "ro", loop2, mnt).then(() => true, () => false);
        if (mounted) {
          const m = await pifs("card", "init", loop2, "--force");
          assert(m.code !== 0 && m.err.includes(`is mounted on ${mnt}`), m.err);
        }
      } finally {
        if (mounted) await sh("umount", mnt);
        await sh("losetup", "-d", loop2);
      }
      assert.deepStrictEqual(await sha256(ext), before);
    });
  },
});

/**
 * The `kernel` and `arm_64bit` a board's firmware takes from `text`, by the
 * conditional filter rules of config.txt: a section applies when its filter
 * names the board or one of its families ([all] to everything); later
 * settings override earlier ones.
 */
function configFor(text: string, filters: string[]): { kernel?: string; arm64?: string } {
  let on = true;
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const f = /^\[(.*)\]$/.exec(line);
    if (f) {
      on = f[1] === "all" || filters.includes(f[1]);
      continue;
    }
    const [k, v] = line.split("=");
    if (on) out[k.trim()] = v.trim();
  }
  return {
    ...(out.kernel === undefined ? {} : { kernel: out.kernel }),
    ...(out.arm_64bit === undefined ? {} : { arm64: out.arm_64bit }),
  };
}

Deno.test("card: config.txt gives each supported board its image, through the firmware's filters", () => {
  // The filters each board matches (the Raspberry Pi documentation's table of
  // model filters: a Zero 2 W matches [pi0] and [pi02], a 3B+ [pi3] and [pi3+]).
  const boards: [string, string[], { kernel?: string; arm64?: string }][] = [
    ["Pi 1 (A, B, A+, B+)", ["pi1"], { kernel: "kernel.img" }],
    ["Pi Zero", ["pi0"], { kernel: "kernel.img" }],
    ["Pi Zero W", ["pi0", "pi0w"], { kernel: "kernel.img" }],
    ["Pi Zero 2 W", ["pi0", "pi02"], { kernel: "kernel8.img", arm64: "1" }],
    ["Pi 3B", ["pi3"], { kernel: "kernel8.img", arm64: "1" }],
    ["Pi 3B+", ["pi3", "pi3+"], { kernel: "kernel8.img", arm64: "1" }],
    ["Pi 3A+", ["pi3", "pi3+"], { kernel: "kernel8.img", arm64: "1" }],
  ];
  for (const [name, filters, want] of boards) {
    assert.deepStrictEqual(configFor(PIFS_CONFIG_TXT, filters), want, name);
  }
  // Every image named is one the card carries, and the UART is on for all.
  assert.match(PIFS_CONFIG_TXT, /^\[all\]\nenable_uart=1$/m);
  // The check itself can fail: the old order gave the Zero 2 W the ARMv6 image.
  const old = PIFS_CONFIG_TXT.replace(/\[pi02\]\narm_64bit=1\nkernel=kernel8\.img\n/, "");
  assert.deepStrictEqual(configFor(old, ["pi0", "pi02"]), { kernel: "kernel.img" });
});
