/**
 * The node firmware on emulated Pis (`deno task test:qemu`): QEMU `raspi3b`
 * and `raspi0` machines boot the firmware images, serve their SD card images
 * over their PL011 UARTs, and survive `kill -9`. Every cluster here runs with
 * `--qemu-limit` (QEMU stops by itself) and is stopped in `finally`.
 */
import { DatabaseSync } from "node:sqlite";
import { pifs } from "../_cli.ts";
import { chunkId } from "../../ids.ts";
import { NodeClient } from "../../link/client.ts";
import { crc32c } from "../../link/crc32c.ts";
import { DeployError, deployImage } from "../../link/deploy.ts";
import { SerialPort } from "../../link/serial.ts";
import { connectNode, readClusterFile } from "../../store/cluster.ts";
import assert from "node:assert/strict";
import { assertBootFilesIntact, assertFsckClean } from "../_cards.ts";

/** No QEMU of these tests outlives this many seconds. */
const LIMIT_S = "600";

async function up(dir: string, nodes = 3, qemu = "mixed") {
  const r = await pifs(
    "sim",
    "up",
    "--dir",
    dir,
    "--nodes",
    String(nodes),
    "--qemu",
    qemu,
    "--qemu-limit",
    LIMIT_S,
  );
  assert.deepStrictEqual(r.code, 0, r.err);
}

async function down(dir: string) {
  await pifs("sim", "down", "--dir", dir);
}

/** The QEMU process under node `id`'s `timeout` wrapper. */
async function qemuPid(dir: string, id: number): Promise<number> {
  const c = await readClusterFile(dir);
  const wrapper = c.nodes[id].pid!;
  const o = await new Deno.Command("ps", { args: ["--ppid", String(wrapper), "-o", "pid=,args="] })
    .output();
  const line = new TextDecoder().decode(o.stdout).split("\n").find((l) =>
    l.includes("qemu-system")
  );
  assert(line, `no QEMU under pid ${wrapper}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** CPU seconds (user + system) a process has used, from /proc (read by `cat`: Deno reads /proc only with -A). */
async function cpuSeconds(pid: number): Promise<number> {
  const o = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const f = new TextDecoder().decode(o.stdout).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** Chunk copies the host's index records on node `id` (none yet: 0). */
async function locationsOn(dir: string, id: number): Promise<number> {
  if (!(await Deno.stat(`${dir}/index.db`).then(() => true, () => false))) return 0;
  const db = new DatabaseSync(`${dir}/index.db`, { readOnly: true });
  try {
    const row = db.prepare("SELECT COUNT(*) AS n FROM locations WHERE node = ?").get(id) as {
      n: number;
    };
    return row.n;
  } catch {
    return 0; // the put has not created its tables yet
  } finally {
    db.close();
  }
}

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let k = 0; k < n; k += 65536) crypto.getRandomValues(b.subarray(k, Math.min(n, k + 65536)));
  return b;
}

async function cleanCards(dir: string) {
  const c = await readClusterFile(dir);
  for (const n of c.nodes) {
    await assertFsckClean(`${dir}/${n.card}`);
    await assertBootFilesIntact(`${dir}/${n.card}`);
  }
}

Deno.test("qemu: a mixed cluster boots, reports its boards, and idles without host CPU", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir);
    const st = await pifs("status", "--cluster", dir, "--json");
    assert.deepStrictEqual(st.code, 0, st.err);
    const nodes = JSON.parse(st.out).nodes;
    assert.deepStrictEqual(nodes.map((n: { board: string }) => n.board), [
      "raspi3b",
      "raspi0",
      "raspi3b",
    ]);
    for (const n of nodes) {
      assert.deepStrictEqual(n.answers, true);
      assert.deepStrictEqual(n.card, "ok");
      assert.deepStrictEqual(n.cluster_ok, true);
      assert(n.capacity > 50 * 1024 * 1024, `capacity ${n.capacity}`);
      // From the Pi's mailbox: QEMU's Pi 3B is revision 1.2 (a02082), its
      // Pi Zero revision 1.2 (920092); the ARM's share of RAM.
      assert.deepStrictEqual(n.board_revision, n.board === "raspi3b" ? 0xa02082 : 0x920092);
      assert(n.memory >= 256 * 1024 * 1024, `memory ${n.memory}`);
      // The SD card's CID as QEMU's card model (hw/sd/sd.c) makes it, read
      // at CMD2 and parsed by the firmware; its capacity, the image's size.
      const card = (await readClusterFile(dir)).nodes[n.id].card!;
      assert.deepStrictEqual(n.sd_card, {
        bytes: (await Deno.stat(`${dir}/${card}`)).size,
        manufacturer_id: 0xaa,
        oem_id: "XY",
        product: "QEMU!",
        revision: "0.1",
        serial: "deadbeef",
        manufactured: "2006-02",
        speed_class: "class 0", // QEMU's SD status is all zero (ACMD13 answered)
        uhs_grade: 0,
        bus_width: 4,
        high_capacity: false,
        clock_hz: 25_000_000,
      });
      // Both boards run with the instruction cache on, and alignment faults
      // only in the alignment-checked build; each measured its SHA-256 speed.
      assert.deepStrictEqual(n.cpu.instruction_cache, true);
      assert.deepStrictEqual(n.cpu.data_cache, false);
      assert.deepStrictEqual(
        n.cpu.alignment_checks,
        Deno.env.get("PIFS_FIRMWARE_ALIGN_CHECK") === "1",
      );
      assert(n.cpu.sha256_mb_s > 0.5, `SHA-256 at ${n.cpu.sha256_mb_s} MB/s`);
    }
    // An idle emulated Pi sleeps in WFI: over 3 s it takes well under a
    // tenth of a core (a spinning core would take all of one).
    for (const id of [0, 1]) {
      const pid = await qemuPid(dir, id);
      const a = await cpuSeconds(pid);
      await new Promise((r) => setTimeout(r, 3000));
      const used = (await cpuSeconds(pid)) - a;
      assert(used < 0.3, `node ${id} (QEMU pid ${pid}) used ${used} s of CPU in 3 s idle`);
    }
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu: put and get a tree with 2 copies, bit-exact; cards fsck-clean", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir);
    const src = `${dir}/src`;
    await Deno.mkdir(`${src}/sub/deeper`, { recursive: true });
    const files: Record<string, Uint8Array> = {
      "a.bin": random(600_000),
      "sub/b.txt": new TextEncoder().encode("hello from a Pi\n"),
      "sub/deeper/c.bin": random(70_000),
      "empty": new Uint8Array(0),
    };
    for (const [p, d] of Object.entries(files)) await Deno.writeFile(`${src}/${p}`, d);
    const put = await pifs("put", src, "/t", "--cluster", dir);
    assert.deepStrictEqual(put.code, 0, put.err);
    const get = await pifs("get", "/t", `${dir}/out`, "--cluster", dir);
    assert.deepStrictEqual(get.code, 0, get.err);
    for (const [p, d] of Object.entries(files)) {
      assert.deepStrictEqual(await Deno.readFile(`${dir}/out/${p}`), d, p);
    }
    // Every chunk on 2 distinct Pis.
    const db = new DatabaseSync(`${dir}/index.db`);
    const rows = db.prepare("SELECT id, COUNT(*) AS n FROM locations GROUP BY id").all() as {
      n: number;
    }[];
    db.close();
    assert(rows.length >= 4, `${rows.length} chunks`);
    for (const r of rows) assert.deepStrictEqual(r.n, 2);
    await down(dir);
    await cleanCards(dir);
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu: kill -9 of an emulated Pi during a put, restart: acknowledged chunks intact", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir);
    const data = random(1_500_000);
    await Deno.writeFile(`${dir}/big.bin`, data);
    const put = new Deno.Command("./pifs", {
      args: ["put", `${dir}/big.bin`, "/big.bin", "--cluster", dir],
      cwd: new URL("../..", import.meta.url).pathname,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Kill node 1 (a raspi0) once it has stored two chunks.
    const victim = await qemuPid(dir, 1);
    // Asked of the host's index, not of the Pi: a second program on the
    // Pi's serial line would take bytes meant for the put.
    const end = Date.now() + 120_000;
    while (Date.now() < end && await locationsOn(dir, 1) < 2) {
      await new Promise((r) => setTimeout(r, 100));
    }
    Deno.kill(victim, "SIGKILL");
    const out = await put.output();
    const err = new TextDecoder().decode(out.stderr);
    // Two of three Pis still answer: with R=2 the put completes.
    assert.deepStrictEqual(out.code, 0, err);
    const get = await pifs("get", "/big.bin", `${dir}/back.bin`, "--cluster", dir);
    assert.deepStrictEqual(get.code, 0, get.err);
    assert.deepStrictEqual(await Deno.readFile(`${dir}/back.bin`), data);

    // Restart the killed Pi: every chunk the host saw it acknowledge is on
    // its card, intact.
    await up(dir);
    const db = new DatabaseSync(`${dir}/index.db`);
    const acked = (db.prepare("SELECT id FROM locations WHERE node = 1").all() as { id: string }[])
      .map((r) => r.id);
    db.close();
    assert(acked.length > 0, "node 1 acknowledged no chunk before the kill");
    const c2 = await readClusterFile(dir);
    const n1 = await connectNode(dir, c2, c2.nodes[1]);
    try {
      const listed = new Set((await n1.listChunks()).map((e) => e.id));
      for (const id of acked) {
        assert(listed.has(id), `acknowledged chunk ${id} missing on node 1`);
        assert.deepStrictEqual(await chunkId(await n1.getChunk(id)), id);
      }
    } finally {
      await n1.close();
    }
    await down(dir);
    await cleanCards(dir);
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});

/** A node image whose firmware reports `version` (same length as 0.1.0), resealed. */
async function variant(path: string, version: string): Promise<Uint8Array> {
  const img = await Deno.readFile(path);
  const old = new TextEncoder().encode("0.1.0\0");
  let at = -1;
  for (let i = 48; i + old.length <= img.length && at < 0; i++) {
    if (old.every((b, k) => img[i + k] === b)) at = i;
  }
  assert(at > 0, `no version string in ${path}`);
  img.set(new TextEncoder().encode(version), at);
  const v = new DataView(img.buffer);
  v.setUint32(28, 0, true);
  v.setUint32(28, crc32c(img), true);
  return img;
}

async function firmwareOf(dir: string): Promise<string[]> {
  const st = await pifs("status", "--cluster", dir, "--json");
  assert.deepStrictEqual(st.code, 0, st.err);
  return JSON.parse(st.out).nodes.map((n: { firmware: string }) => n.firmware);
}

Deno.test("qemu: deploy to 3 Pis at once; --install survives a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir);
    const root = new URL("../../firmware/build/", import.meta.url).pathname;
    await Deno.writeFile(`${dir}/n3.img`, await variant(`${root}pi3/node.img`, "0.1.9"));
    await Deno.writeFile(`${dir}/n0.img`, await variant(`${root}pi0/node.img`, "0.1.9"));
    const dep = await pifs("deploy", `${dir}/n3.img`, `${dir}/n0.img`, "--cluster", dir, "--json");
    assert.deepStrictEqual(dep.code, 0, dep.err);
    const pis = JSON.parse(dep.out).pis;
    assert.deepStrictEqual(pis.map((p: { after: string }) => p.after), ["0.1.9", "0.1.9", "0.1.9"]);
    assert.deepStrictEqual(await firmwareOf(dir), ["0.1.9", "0.1.9", "0.1.9"]);
    // Not installed: a restart boots the card's firmware again.
    await down(dir);
    await up(dir);
    assert.deepStrictEqual(await firmwareOf(dir), ["0.1.0", "0.1.0", "0.1.0"]);
    const inst = await pifs(
      "deploy",
      `${dir}/n3.img`,
      `${dir}/n0.img`,
      "--cluster",
      dir,
      "--install",
    );
    assert.deepStrictEqual(inst.code, 0, inst.err);
    await down(dir);
    await up(dir);
    assert.deepStrictEqual(await firmwareOf(dir), ["0.1.9", "0.1.9", "0.1.9"]);
    // The store survived all of it.
    const st = await pifs("status", "--cluster", dir, "--json");
    for (const n of JSON.parse(st.out).nodes) assert.deepStrictEqual(n.cluster_ok, true);
    await down(dir);
    await cleanCards(dir);
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu: a damaged or wrong image is refused by the Pi, which stays in its bootloader", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir, 1, "raspi3b");
    const root = new URL("../../firmware/build/", import.meta.url).pathname;
    const good = await Deno.readFile(`${root}pi3/node.img`);
    const damaged = good.slice();
    damaged[Math.floor(damaged.length / 2)] ^= 0x40;
    const c = await readClusterFile(dir);
    const tty = `${dir}/${c.nodes[0].tty}`;
    const open = () => SerialPort.open(tty, { baud: 115200 });
    for (
      const [bad, why] of [
        [damaged, /CRC-32C/],
        [await Deno.readFile(`${root}pi0/node.img`), /not a node image for this board/],
        [new Uint8Array(5000), /not a node image/],
      ] as const
    ) {
      const err = await deployImage(open, bad, { unchecked: true }).then(() => null, (e) => e);
      assert(err instanceof DeployError, `accepted: ${err}`);
      assert(why.test(err.message), err.message);
      // Still the bootloader, still answering.
      const n = await NodeClient.connect(await open(), { helloRetries: 3 });
      assert.deepStrictEqual(n.hello.firmware, "boot-0.1.0");
      await n.close();
    }
    // Waiting in its bootloader, the Pi sleeps between bytes.
    const pid = await qemuPid(dir, 0);
    const a = await cpuSeconds(pid);
    await new Promise((r) => setTimeout(r, 2000));
    const used = (await cpuSeconds(pid)) - a;
    assert(used < 0.2, `used ${used} s of CPU in 2 s waiting in its bootloader`);
    // The host refuses the damaged image itself, before sending anything.
    await Deno.writeFile(`${dir}/bad.img`, damaged);
    const r = await pifs("deploy", `${dir}/bad.img`, "--cluster", dir);
    assert.deepStrictEqual(r.code, 2, r.err);
    assert(/CRC-32C does not match/.test(r.err), r.err);
    // A good image still goes in from the bootloader.
    const ok = await deployImage(open, good);
    assert.deepStrictEqual(ok.before, "boot-0.1.0");
    assert.deepStrictEqual(ok.after, "0.1.0");
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu: a panic reports file:line over the UART and the Pi stops cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-" });
  try {
    await up(dir, 2, "mixed");
    const c = await readClusterFile(dir);
    const root = new URL("../../firmware/build/", import.meta.url).pathname;
    await Promise.all(c.nodes.map(async (n) => {
      const heard: number[] = [];
      // The line as the client sees it, with every byte also kept here.
      const open = async () => {
        const port = await SerialPort.open(`${dir}/${n.tty}`, { baud: 115200 });
        const tap = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, ctl) {
            heard.push(...chunk);
            ctl.enqueue(chunk);
          },
        });
        return {
          readable: port.readable.pipeThrough(tap),
          write: (d: Uint8Array) => port.write(d),
          close: () => port.close(),
        };
      };
      const img = await Deno.readFile(
        `${root}${n.board === "raspi3b" ? "pi3" : "pi0"}/panic-test.img`,
      );
      const err = await deployImage(open, img, { runWaitMs: 3000 }).then(() => null, (e) => e);
      assert(err instanceof DeployError, `node ${n.id}: ${err}`);
      const text = new TextDecoder().decode(new Uint8Array(heard));
      assert(
        /PANIC pi\/panic_main\.c:\d+: panic test image: stopping on purpose/.test(text),
        `node ${n.id} said: ${JSON.stringify(text.slice(-200))}`,
      );
      // Stopped cleanly: asleep, not spinning.
      const pid = await qemuPid(dir, n.id);
      const a = await cpuSeconds(pid);
      await new Promise((r) => setTimeout(r, 2000));
      const used = (await cpuSeconds(pid)) - a;
      assert(used < 0.2, `node ${n.id} used ${used} s of CPU in 2 s after its panic`);
    }));
  } finally {
    await down(dir);
    await Deno.remove(dir, { recursive: true });
  }
});
