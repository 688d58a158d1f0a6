/**
 * `pifs init` on emulated Pis started by hand (`deno task test:qemu`): a
 * QEMU `raspi3b` and a QEMU `raspi0`, each on a card made by `pifs card
 * init` and with its UART on a pty of its own (QEMU's `-serial pty`, a real
 * serial port to pifs), are made into a cluster the way a user with real
 * boards does it. Every QEMU runs under `timeout` and is stopped in
 * `finally`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { firmwareImage } from "../../sim/sim.ts";
import { probePort } from "../../store/init.ts";
import { ok, pifs, rand } from "../_cli.ts";

/** No QEMU of these tests outlives this many seconds. */
const LIMIT_S = "600";

/** How QEMU takes each board's bootloader image (as `pifs sim` starts it). */
const BOARDS: Record<string, { bin: string; load: string }> = {
  raspi3b: { bin: "qemu-system-aarch64", load: "-kernel" },
  raspi0: { bin: "qemu-system-arm", load: "-bios" },
};

interface HandPi {
  board: string;
  /** The Pi's serial port: the pty QEMU made for its UART. */
  pty: string;
  child: Deno.ChildProcess;
  /** What QEMU has said on its standard output and error so far. */
  said: () => string;
  /** Ends when QEMU's standard output and error do. */
  drained: Promise<void>;
}

/** `s` as a regular expression matching it literally. */
function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function until(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Starts QEMU `board` on the card `card` as a user would, its UART on a new
 * pty; pushed to `pis` at once (so it is stopped whatever happens), returned
 * once the Pi runs its node firmware.
 */
async function startByHand(card: string, board: string, pis: HandPi[]): Promise<HandPi> {
  const b = BOARDS[board];
  const child = new Deno.Command("timeout", {
    args: [
      "-k",
      "5",
      LIMIT_S,
      b.bin,
      "-M",
      board,
      b.load,
      await firmwareImage(board),
      "-drive",
      `if=sd,format=raw,file=${card}`,
      "-serial",
      "pty",
      "-display",
      "none",
      "-monitor",
      "none",
    ],
    stdin: "null",
    stdout: "piped", // where QEMU names its pty
    stderr: "piped",
  }).spawn();
  let said = "", exited = false;
  child.status.then(() => exited = true);
  const drained = Promise.all([child.stdout, child.stderr].map(async (s) => {
    for await (const t of s.pipeThrough(new TextDecoderStream())) said += t;
  })).then(() => {});
  const pi: HandPi = { board, pty: "", child, said: () => said, drained };
  pis.push(pi);
  const alive = () => {
    if (exited) throw new Error(`QEMU ${board} exited: ${said.trim()}`);
  };
  await until(`QEMU ${board} to name its pty`, 20_000, () => {
    alive();
    pi.pty = said.match(/char device redirected to (\/dev\/pts\/\d+)/)?.[1] ?? "";
    return Promise.resolve(pi.pty !== "");
  });
  // Its bootloader answers HELLO too, for about a second after power-up;
  // then the node firmware it loads from the card does.
  await until(`${board} on ${pi.pty} to run its node firmware`, 30_000, async () => {
    alive();
    return (await probePort(pi.pty, { timeoutMs: 300 })).kind === "node";
  });
  return pi;
}

interface StatusRow {
  id: number;
  answers: boolean;
  board: string;
  card: string;
  cluster_ok: boolean;
  chunks: number;
  capacity: number;
  free: number;
}

async function status(c: string): Promise<StatusRow[]> {
  return JSON.parse(await ok("status", "--cluster", c, "--json")).nodes;
}

Deno.test("qemu init: a raspi3b and a raspi0 started by hand become a cluster; a second init is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-qemu-init-" });
  const pis: HandPi[] = [];
  try {
    // Cards one after the other: each `card init` may build the firmware.
    for (const board of ["raspi3b", "raspi0"]) {
      await ok("card", "init", `${dir}/${board}.img`, "--size", "64M");
    }
    const [pi3, pi0] = await Promise.all(
      ["raspi3b", "raspi0"].map((board) => startByHand(`${dir}/${board}.img`, board, pis)),
    );
    const ports = [pi3.pty, pi0.pty];

    // What the user sees at the two ports: two node firmwares, blank cards.
    const before = JSON.parse(await ok("ports", "--json", "--port", ...ports));
    assert.deepStrictEqual(
      before.map((p: { port: string; kind: string; board: string; card: string }) => [
        p.port,
        p.kind,
        p.board,
        p.card,
      ]),
      [
        [pi3.pty, "node", "raspi3b", "EUNFORMATTED (the card holds no pifs store (run FORMAT))"],
        [pi0.pty, "node", "raspi0", "EUNFORMATTED (the card holds no pifs store (run FORMAT))"],
      ],
    );

    const c = `${dir}/cluster`;
    const r = await pifs("init", c, "--port", ...ports, "--copies", "2");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), `export PIFS_CLUSTER=${c}`);
    const file = JSON.parse(await Deno.readTextFile(`${c}/cluster.json`));
    assert.deepStrictEqual(file.nodes.map((n: { id: number; tty: string }) => [n.id, n.tty]), [
      [0, pi3.pty],
      [1, pi0.pty],
    ]);
    assert.equal(file.baud, 115200);
    const fresh = await status(c);
    assert.deepStrictEqual(
      fresh.map((n) => [n.id, n.answers, n.board, n.card, n.cluster_ok, n.chunks]),
      [[0, true, "raspi3b", "ok", true, 0], [1, true, "raspi0", "ok", true, 0]],
    );
    assert.equal((await ok("copies", "--cluster", c, "/")).trim().split(/\s+/).pop(), "2");
    // And `ports` now names each Pi's cluster and node id.
    const after = JSON.parse(await ok("ports", "--json", "--port", ...ports));
    assert.deepStrictEqual(
      after.map((p: { kind: string; card: string; clusterId: string; nodeId: number }) => [
        p.kind,
        p.card,
        p.clusterId,
        p.nodeId,
      ]),
      [["node", "ok", file.cluster_id, 0], ["node", "ok", file.cluster_id, 1]],
    );

    // The cluster works: a small tree in and out, bit-exact, every chunk on both Pis.
    const files: Record<string, Uint8Array> = {
      "a.bin": rand(200_000, 1),
      "sub/b.bin": rand(70_000, 2),
      "sub/c.txt": new TextEncoder().encode("hello from two Pis started by hand\n"),
    };
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    for (const [p, d] of Object.entries(files)) await Deno.writeFile(`${dir}/src/${p}`, d);
    await ok("put", "--cluster", c, `${dir}/src`, "/t");
    await ok("get", "--cluster", c, "/t", `${dir}/out`);
    for (const [p, d] of Object.entries(files)) {
      assert.deepStrictEqual(await Deno.readFile(`${dir}/out/${p}`), d, p);
    }
    const db = new DatabaseSync(`${c}/index.db`, { readOnly: true });
    const copies = db.prepare("SELECT id, COUNT(*) AS n FROM locations GROUP BY id").all() as {
      n: number;
    }[];
    db.close();
    assert(copies.length >= 3, `${copies.length} chunks`);
    for (const x of copies) assert.equal(x.n, 2);
    const stored = await status(c);
    for (const n of stored) assert(n.chunks >= copies.length, `node ${n.id}: ${n.chunks} chunks`);

    // Again on the same Pis, without --force: each card holds this store now;
    // the refusal names what would be lost, and nothing is formatted.
    const again = await pifs("init", `${dir}/other`, "--port", ...ports);
    assert.equal(again.code, 1, again.err);
    assert.match(again.err, /nothing was formatted: 2 of 2 Pis cannot join:/);
    for (const [i, n] of stored.entries()) {
      assert.match(
        again.err,
        new RegExp(
          `${literal(ports[i])}: its card holds a pifs store \\(cluster ${file.cluster_id}'s, ` +
            `node ${i}, ${n.chunks} chunks, ${n.capacity - n.free} bytes\\): pifs never ` +
            `formats over a store without --force`,
        ),
      );
    }
    // Nothing is left behind, not even the directory init made.
    assert.equal(await Deno.stat(`${dir}/other`).catch(() => null), null);
    // The first cluster is intact: both Pis answer as its nodes, with their chunks.
    assert.deepStrictEqual(
      (await status(c)).map((n) => [n.id, n.answers, n.cluster_ok, n.chunks]),
      stored.map((n) => [n.id, true, true, n.chunks]),
    );

    // The same port twice, or under two names: refused, naming it.
    const twice = await pifs("init", `${dir}/twice`, "--port", pi0.pty, pi0.pty);
    assert.equal(twice.code, 1, twice.err);
    assert.match(twice.err, new RegExp(`${literal(pi0.pty)}: given twice`));
    await Deno.symlink(pi3.pty, `${dir}/alias.tty`);
    const alias = await pifs("init", `${dir}/alias`, "--port", pi3.pty, `${dir}/alias.tty`);
    assert.equal(alias.code, 1, alias.err);
    assert.match(
      alias.err,
      new RegExp(`alias\\.tty and ${literal(pi3.pty)} are the same port`),
    );
    for (const x of ["twice", "alias"]) {
      assert.equal(await Deno.stat(`${dir}/${x}/cluster.json`).catch(() => null), null, x);
    }
    for (const x of [again, twice, alias]) assert(!/^\s+at /m.test(x.err), x.err);
  } finally {
    for (const pi of pis) {
      try {
        pi.child.kill("SIGTERM"); // timeout passes it on to QEMU
      } catch { /* gone */ }
      await pi.child.status;
      await pi.drained;
    }
    await Deno.remove(dir, { recursive: true });
  }
});
