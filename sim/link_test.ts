/**
 * The link emulator as a library (`startLink`) and inside a simulated cluster
 * (`pifs sim up --ber --drop`): bytes pass bit-exact without faults, bits
 * flip with a bit error rate, the line is paced at baud/10 bytes/s, bad
 * options are refused, and a faulty cluster still stores chunks bit-exact
 * and stops without leaving a process behind.
 */
import { pifs } from "../tests/_cli.ts";
import { chunkId } from "../ids.ts";
import { SerialPort } from "../link/serial.ts";
import { connectNode, readClusterFile } from "../store/cluster.ts";
import assert from "node:assert/strict";
import { isLinkProcess, LinkError, type LinkOptions, type LinkStats, startLink } from "./link.ts";
import { isNodeProcess } from "./sim.ts";

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k += 65536) {
    crypto.getRandomValues(out.subarray(k, Math.min(n, k + 65536)));
  }
  return out;
}

/** Reads exactly `n` bytes from `port` (within `ms`). */
async function readN(port: SerialPort, n: number, ms = 10000): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  const reader = port.readable.getReader();
  const timer = setTimeout(() => reader.cancel().catch(() => {}), ms);
  try {
    while (got < n) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, n - got);
      out.set(value.subarray(0, take), got);
      got += take;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  if (got < n) throw new Error(`read ${got} of ${n} bytes from ${port.path} in ${ms} ms`);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Runs fn with a link between dir/a and dir/b and both ends open as ports. */
async function withLink(
  opts: Omit<LinkOptions, "a" | "b">,
  fn: (pa: SerialPort, pb: SerialPort) => Promise<void>,
): Promise<LinkStats> {
  const dir = await Deno.makeTempDir({ prefix: "pifs-link-" });
  const link = await startLink({ a: `${dir}/a`, b: `${dir}/b`, ...opts });
  let pa: SerialPort | undefined, pb: SerialPort | undefined;
  let stats: LinkStats | undefined;
  try {
    pa = await SerialPort.open(link.a);
    pb = await SerialPort.open(link.b);
    await fn(pa, pb);
  } finally {
    await pa?.close();
    await pb?.close();
    stats = await link.stop();
    await Deno.remove(dir, { recursive: true });
  }
  return stats;
}

Deno.test("link: 200 KiB each way, no faults, bit-exact", async () => {
  const n = 200 * 1024;
  const ab = randomBytes(n), ba = randomBytes(n);
  const stats = await withLink({}, async (pa, pb) => {
    const [, , gotB, gotA] = await Promise.all([
      pa.write(ab),
      pb.write(ba),
      readN(pb, n),
      readN(pa, n),
    ]);
    assert(sameBytes(gotB, ab), "a->b differs");
    assert(sameBytes(gotA, ba), "b->a differs");
  });
  assert.deepStrictEqual(stats.aToB, { bytes: n, flipped: 0, dropped: 0 });
  assert.deepStrictEqual(stats.bToA, { bytes: n, flipped: 0, dropped: 0 });
});

Deno.test("link: ber 1e-3 flips bits, and stop() counts them", async () => {
  const n = 64 * 1024;
  const ab = randomBytes(n);
  let diff = 0;
  const stats = await withLink({ ber: 1e-3, seed: 5 }, async (pa, pb) => {
    const [, got] = await Promise.all([pa.write(ab), readN(pb, n)]);
    for (let i = 0; i < n; i++) {
      for (let x = got[i] ^ ab[i]; x; x &= x - 1) diff++;
    }
  });
  // ~524 expected (64 KiB * 8 * 1e-3); without drops every flip shows.
  assert(diff > 100, `only ${diff} bits differ`);
  assert.deepStrictEqual(stats.flipped, diff);
  assert.deepStrictEqual(stats.aToB.bytes, n);
  assert.deepStrictEqual(stats.dropped, 0);
});

Deno.test("link: baud 115200 carries 11,520 bytes/s", async () => {
  const n = 23_040;
  await withLink({ baud: 115200 }, async (pa, pb) => {
    const t0 = performance.now();
    await Promise.all([pa.write(randomBytes(n)), readN(pb, n)]);
    const s = (performance.now() - t0) / 1000;
    assert(s >= 1.85 && s < 4, `${n} bytes at 115200 baud took ${s.toFixed(2)} s, not ~2 s`);
  });
});

Deno.test("link: latency delays every byte; stalls stop the line", async () => {
  await withLink({ latencyMs: 300 }, async (pa, pb) => {
    const t0 = performance.now();
    await pa.write(new Uint8Array([1, 2, 3]));
    const got = await readN(pb, 3);
    const ms = performance.now() - t0;
    assert.deepStrictEqual(got, new Uint8Array([1, 2, 3]));
    assert(ms >= 290 && ms < 1500, `3 bytes with 300 ms latency took ${ms.toFixed(0)} ms`);
  });
  // Paced at 11,520 B/s, stalled 300 ms of every 600: about twice as long.
  const n = 11_520;
  await withLink({ baud: 115200, stallEveryMs: 600, stallMs: 300 }, async (pa, pb) => {
    const t0 = performance.now();
    await Promise.all([pa.write(randomBytes(n)), readN(pb, n)]);
    const s = (performance.now() - t0) / 1000;
    assert(
      s >= 1.6 && s < 4,
      `${n} bytes at 115200 with 50 % stalls took ${s.toFixed(2)} s, not ~2`,
    );
  });
  await assert.rejects(() => startLink({ a: "/tmp/x", b: "/tmp/y", stallMs: 100 }));
  await assert.rejects(() => startLink({ a: "/tmp/x", b: "/tmp/y", latencyMs: -1 }));
});

Deno.test("link: bad options are refused, naming the value", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-link-" });
  try {
    const bad: [Record<string, number>, string][] = [
      [{ ber: 2 }, "ber 2"],
      [{ ber: -0.5 }, "ber -0.5"],
      [{ ber: NaN }, "ber NaN"],
      [{ drop: 1.5 }, "drop 1.5"],
      [{ baud: -1 }, "baud -1"],
      [{ baud: 9600.5 }, "baud 9600.5"],
      [{ seed: -3 }, "seed -3"],
    ];
    for (const [o, name] of bad) {
      await assert.rejects(() => startLink({ a: `${dir}/a`, b: `${dir}/b`, ...o }), (e) => {
        assert(e instanceof LinkError, `${name}: ${e}`);
        assert(e.message.includes(name), `${name}: ${e.message}`);
        return true;
      });
    }
    // A relay that cannot start says why.
    await assert.rejects(() => startLink({ a: `${dir}/no/such/a`, b: `${dir}/b` }), (e: Error) => {
      assert(e instanceof LinkError && /exited at start.*no\/such/.test(e.message), e.message);
      return true;
    });
    // The CLI: a usage error, exit 2.
    const r = await pifs("sim", "link", "--a", `${dir}/a`, "--b", `${dir}/b`, "--ber", "1.5");
    assert.deepStrictEqual(r.code, 2, r.err);
    assert(r.err.includes("--ber '1.5'"), r.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Processes whose command line mentions `dir` and `name`. */
async function processesOf(dir: string, name: string): Promise<number[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,args="], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((l) => l.includes(dir) && l.includes(name) && !l.includes(" ps "))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

Deno.test("link: sim up --ber --drop, chunks bit-exact, sim down stops links and nodes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-simlink-" });
  try {
    const up = await pifs(
      "sim",
      "up",
      "--dir",
      dir,
      "--nodes",
      "2",
      "--ber",
      "1e-5",
      "--drop",
      "1e-5",
    );
    assert.deepStrictEqual(up.code, 0, up.err);
    let c = await readClusterFile(dir);
    assert.deepStrictEqual(c.faults, { ber: 1e-5, drop: 1e-5 });
    for (const n of c.nodes) {
      assert.deepStrictEqual(n.tty, `node${n.id}.tty`);
      assert(await isLinkProcess(n.link?.pid), `node ${n.id}: no link running`);
      assert(await isNodeProcess(n.pid), `node ${n.id}: not running`);
      assert.deepStrictEqual([n.link!.ber, n.link!.drop, n.link!.line], [
        1e-5,
        1e-5,
        `node${n.id}.line`,
      ]);
    }

    const clients = await Promise.all(
      c.nodes.map((n) => connectNode(dir, c, n, { timeoutMs: 300, retries: 30 })),
    );
    try {
      await Promise.all(clients.map(async (cl) => {
        const chunks = [randomBytes(50_000), randomBytes(50_000), randomBytes(50_000)];
        for (const ch of chunks) {
          assert.deepStrictEqual((await cl.putChunk(ch)).id, await chunkId(ch));
        }
        for (const ch of chunks) {
          assert(sameBytes(await cl.getChunk(await chunkId(ch)), ch), "chunk differs");
        }
        assert(Number.isInteger(cl.retransmissions) && cl.retransmissions >= 0);
      }));
    } finally {
      await Promise.all(clients.map((cl) => cl.close()));
    }

    // Down, then up again on the existing cluster: the links come back too.
    const down = await pifs("sim", "down", "--dir", dir);
    assert.deepStrictEqual(down.code, 0, down.err);
    assert(/link stopped: a->b \d+ bytes/.test(down.err), down.err);
    const again = await pifs("sim", "up", "--dir", dir);
    assert.deepStrictEqual(again.code, 0, again.err);
    c = await readClusterFile(dir);
    for (const n of c.nodes) assert(await isLinkProcess(n.link?.pid), `node ${n.id}: no link`);
    const cl = await connectNode(dir, c, c.nodes[1], { timeoutMs: 300, retries: 30 });
    try {
      assert.deepStrictEqual((await cl.listChunks()).length, 3);
    } finally {
      await cl.close();
    }

    const down2 = await pifs("sim", "down", "--dir", dir);
    assert.deepStrictEqual(down2.code, 0, down2.err);
    assert.deepStrictEqual(await processesOf(dir, "pifs-link"), []);
    assert.deepStrictEqual(await processesOf(dir, "pifs-node"), []);
    c = await readClusterFile(dir);
    assert(c.nodes.every((n) => n.pid === null && n.link?.pid === null), JSON.stringify(c));
  } finally {
    await pifs("sim", "down", "--dir", dir);
    for (
      const pid of [
        ...await processesOf(dir, "pifs-node"),
        ...await processesOf(dir, "pifs-link"),
      ]
    ) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await Deno.remove(dir, { recursive: true });
  }
});
