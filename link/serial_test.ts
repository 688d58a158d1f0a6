import { SerialError, SerialPort, UnsupportedBaudError, type WaitMethod } from "./serial.ts";

/** A linked pty pair made by socat; `close()` kills socat. */
interface PtyPair {
  a: string;
  b: string;
  close(): Promise<void>;
}

async function ptyPair(): Promise<PtyPair> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("socat", {
      args: ["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("these tests need socat (apt-get install socat)", { cause: e });
    }
    throw e;
  }
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const paths: string[] = [];
  try {
    // socat prints "PTY is /dev/pts/N" twice, then "starting data transfer
    // loop" once it is ready.
    while (!log.includes("starting data transfer loop")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`socat exited early:\n${log}`);
      log += value;
    }
    for (const m of log.matchAll(/PTY is (\/dev\/pts\/\d+)/g)) paths.push(m[1]);
    assertEquals(paths.length, 2, log);
  } catch (e) {
    child.kill();
    await reader.cancel();
    await child.status;
    throw e;
  }
  // Keep draining socat's log so it can never block on a full pipe.
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    a: paths[0],
    b: paths[1],
    async close() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
    },
  };
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** Reads exactly `n` bytes from `port`; fails if the stream ends first. */
async function readExactly(port: SerialPort, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  const reader = port.readable.getReader();
  try {
    while (got < n) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended after ${got} of ${n} bytes`);
      assert(got + value.length <= n, `got ${got + value.length} > ${n}`);
      out.set(value, got);
      got += value.length;
    }
  } finally {
    reader.releaseLock();
  }
  return out;
}

/** Writes in pieces of varying size, like a real producer would. */
async function writeInPieces(port: SerialPort, data: Uint8Array) {
  let off = 0;
  let size = 1;
  while (off < data.length) {
    const end = Math.min(data.length, off + size);
    await port.write(data.subarray(off, end));
    off = end;
    size = size >= 200_000 ? 1 : size * 7;
  }
}

const MiB = 1024 * 1024;

// Small assertion helpers (JSR's @std/assert is not reachable here).

function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals<T>(actual: T, expected: T, msg?: string) {
  assert(
    Object.is(actual, expected),
    `${msg ? msg + ": " : ""}expected ${String(expected)}, got ${String(actual)}`,
  );
}

function assertStringIncludes(actual: string, expected: string) {
  assert(
    actual.includes(expected),
    `${JSON.stringify(actual)} lacks ${JSON.stringify(expected)}`,
  );
}

async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof type, `expected ${type.name}, got ${e}`);
    return e;
  }
  throw new Error(`expected ${type.name} to be thrown`);
}

Deno.test("1 MiB one way arrives intact", async () => {
  const pair = await ptyPair();
  const a = await SerialPort.open(pair.a);
  const b = await SerialPort.open(pair.b, { baud: 921600 });
  try {
    const data = randomBytes(MiB);
    const [received] = await Promise.all([
      readExactly(b, data.length),
      writeInPieces(a, data),
    ]);
    assertEquals(received.length, data.length);
    assert(equalBytes(received, data), "bytes differ");
  } finally {
    await a.close();
    await b.close();
    await pair.close();
  }
});

for (const wait of ["poll", "select"] as WaitMethod[]) {
  Deno.test(`1 MiB both directions at once (${wait})`, async () => {
    const pair = await ptyPair();
    const a = await SerialPort.open(pair.a, { wait });
    const b = await SerialPort.open(pair.b, { wait });
    try {
      const ab = randomBytes(MiB);
      const ba = randomBytes(MiB);
      const [atB, atA] = await Promise.all([
        readExactly(b, ab.length),
        readExactly(a, ba.length),
        a.write(ab),
        b.write(ba),
      ]);
      assert(equalBytes(atB, ab), "a -> b bytes differ");
      assert(equalBytes(atA, ba), "b -> a bytes differ");
    } finally {
      await a.close();
      await b.close();
      await pair.close();
    }
  });
}

for (const wait of ["poll", "select"] as WaitMethod[]) {
  Deno.test(`close() is prompt while a read waits (${wait})`, async () => {
    const pair = await ptyPair();
    try {
      const a = await SerialPort.open(pair.a, { wait });
      const reader = a.readable.getReader();
      const pending = reader.read(); // nothing is flowing: this waits
      await new Promise((r) => setTimeout(r, 120));
      const t0 = performance.now();
      await a.close();
      const ms = performance.now() - t0;
      assert(ms < 300, `close() took ${ms.toFixed(1)} ms`);
      assertEquals((await pending).done, true);
      assertEquals(a.closed, true);
      await a.close(); // again: no-op
      await assertRejects(() => a.write(new Uint8Array([1])), SerialError);
    } finally {
      await pair.close();
    }
  });
}

Deno.test("close() is prompt while a write waits for room", async () => {
  const pair = await ptyPair();
  try {
    const a = await SerialPort.open(pair.a);
    // Nobody reads the other side, so the pty and socat buffers fill up and
    // the write has to wait in poll().
    const writing = a.write(new Uint8Array(4 * MiB));
    const failed = assertRejects(() => writing, SerialError);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await a.close();
    const ms = performance.now() - t0;
    assert(ms < 300, `close() took ${ms.toFixed(1)} ms`);
    assertStringIncludes((await failed).message, "not written");
  } finally {
    await pair.close();
  }
});

Deno.test("the stream ends when the pty's other side goes away", async () => {
  const pair = await ptyPair();
  const a = await SerialPort.open(pair.a);
  try {
    const reader = a.readable.getReader();
    const pending = reader.read();
    await pair.close(); // socat closes the pty master: read() gets EIO
    assertEquals((await pending).done, true);
  } finally {
    await a.close();
  }
});

Deno.test("opening a path that does not exist names the path", async () => {
  const path = "/dev/pifs-no-such-port";
  const e = await assertRejects(() => SerialPort.open(path), SerialError);
  assertStringIncludes(e.message, path);
  assertEquals(e.path, path);
  assertEquals(e.call, "open");
  assertEquals(e.errno, 2); // ENOENT on Linux and macOS
  assertStringIncludes(e.message, "No such file or directory");
});

Deno.test("opening a regular file names tcgetattr", async () => {
  const path = await Deno.makeTempFile({ prefix: "pifs_serial_test_" });
  try {
    const e = await assertRejects(() => SerialPort.open(path), SerialError);
    assertStringIncludes(e.message, "tcgetattr");
    assertStringIncludes(e.message, path);
    assertEquals(e.call, "tcgetattr");
    assertEquals(e.errno, 25); // ENOTTY on Linux and macOS
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("an unsupported baud rate is refused before opening", async () => {
  const e = await assertRejects(
    () => SerialPort.open("/dev/null", { baud: 12345 }),
    UnsupportedBaudError,
  );
  assert(e instanceof SerialError);
  assertEquals(e.baud, 12345);
  assertStringIncludes(e.message, "12345");
});

function equalBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
