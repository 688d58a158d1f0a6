import assert from "node:assert/strict";
import { type HttpEntry, HttpSource, httpSource, HttpStatusError } from "./http.ts";
import { SourceError, type SourceProblem } from "./source.ts";

// ---------------------------------------------------------------- helpers

type Bytes = Uint8Array<ArrayBuffer>;

interface Logged {
  method: string;
  path: string;
  range: string | null;
}

interface TestServer {
  base: string;
  log: Logged[];
  /** GET requests for one path, in order. */
  gets(path: string): Logged[];
  /** Streams left open by stalling responses; closed on shutdown. */
  stalled: ReadableStreamDefaultController<Uint8Array>[];
  close(): Promise<void>;
}

/** A loopback server; `handler` gets the request and its attempt number (per method and path). */
function startServer(
  handler: (req: Request, attempt: number, ts: TestServer) => Response | Promise<Response>,
): TestServer {
  const counts = new Map<string, number>();
  const ts: TestServer = {
    base: "",
    log: [],
    gets: (path) => ts.log.filter((l) => l.method === "GET" && l.path === path),
    stalled: [],
    close: async () => {
      for (const c of ts.stalled) {
        try {
          c.close();
        } catch { /* already cancelled by the client */ }
      }
      await server.shutdown();
    },
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    ts.log.push({ method: req.method, path, range: req.headers.get("range") });
    const k = `${req.method} ${path}`;
    const n = (counts.get(k) ?? 0) + 1;
    counts.set(k, n);
    return handler(req, n, ts);
  });
  ts.base = `http://127.0.0.1:${server.addr.port}`;
  return ts;
}

interface ServeOpts {
  /** Send this many bytes of the body, then break the connection. */
  dropAfter?: number;
  /** Send this many bytes of the body, then nothing (until shutdown). */
  stallAfter?: number;
  /** Answer 200 with the whole content even to a Range request. */
  ignoreRange?: boolean;
  headers?: Record<string, string>;
}

/** Serves `data` with Range support (206 + Content-Range) and fault injection. */
function serveBytes(req: Request, data: Bytes, ts: TestServer, o: ServeOpts = {}): Response {
  const headers = new Headers({
    "content-type": "application/octet-stream",
    "accept-ranges": o.ignoreRange ? "none" : "bytes",
    ...o.headers,
  });
  let start = 0;
  let status = 200;
  const m = o.ignoreRange ? null : /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
  if (m) {
    start = Number(m[1]);
    if (start >= data.length) {
      headers.set("content-range", `bytes */${data.length}`);
      return new Response(null, { status: 416, headers });
    }
    status = 206;
    headers.set("content-range", `bytes ${start}-${data.length - 1}/${data.length}`);
  }
  headers.set("content-length", String(data.length - start));
  if (req.method === "HEAD") return new Response(null, { status, headers });
  const rest = data.subarray(start);
  let body: ReadableStream<Uint8Array> | Bytes = rest;
  if (o.dropAfter !== undefined) {
    const part = rest.slice(0, o.dropAfter);
    let sent = false;
    body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(part);
          return;
        }
        await new Promise((r) => setTimeout(r, 20)); // let the part reach the client
        c.close(); // shorter than Content-Length: the server must break the connection
      },
    });
  } else if (o.stallAfter !== undefined) {
    const part = rest.slice(0, o.stallAfter);
    body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(part);
        ts.stalled.push(c);
      },
    });
  }
  return new Response(body, { status, headers });
}

function randomBytes(n: number): Bytes {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

async function sha256Hex(b: Bytes): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function collect(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of s) {
    parts.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function assertBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.deepStrictEqual(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) throw new Error(`${what}: first difference at byte ${i}`);
  }
}

async function listAll(
  src: HttpSource,
): Promise<{ entries: HttpEntry[]; problems: SourceProblem[] }> {
  const entries: HttpEntry[] = [];
  const problems: SourceProblem[] = [];
  for await (const e of src.list((p) => problems.push(p))) entries.push(e);
  return { entries, problems };
}

function rangeStart(l: Logged): number {
  const m = /^bytes=(\d+)-$/.exec(l.range ?? "");
  assert(m, `expected a Range bytes=N- header, got ${l.range}`);
  return Number(m[1]);
}

async function expectSourceError(p: Promise<unknown>, ...needles: string[]): Promise<SourceError> {
  let caught: SourceError | undefined;
  await assert.rejects(p, (e) => {
    assert(e instanceof SourceError, `expected a SourceError, got ${e}`);
    for (const n of needles) {
      assert(e.message.includes(n), `message ${JSON.stringify(e.message)} lacks ${n}`);
    }
    caught = e;
    return true;
  });
  assert(caught);
  return caught;
}

// ------------------------------------------------------------------ tests

Deno.test("manifest source: drops, 5xx and Retry-After are resumed bit-exact; bad sha256 errors", async () => {
  const files: Record<string, Bytes> = {
    "/files/a.bin": randomBytes(1_572_864), // 1.5 MiB, dropped on the first attempt
    "/files/b.bin": randomBytes(1_048_576), // 1 MiB, 500 on the first attempt
    "/files/c.bin": randomBytes(200_000), // 503 + Retry-After: 0 on the first attempt
    "/files/d.bin": randomBytes(1_258_291), // dropped, then 500, then fine
    "/files/bad.bin": randomBytes(300_000), // served content differs from the manifest
  };
  const ts = startServer((req, n, ts) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path === "/manifest.json") {
      return Response.json({ files: manifestFiles });
    }
    const data = files[path];
    if (!data) return new Response("no", { status: 404 });
    if (path === "/files/a.bin" && n === 1) {
      return serveBytes(req, data, ts, { dropAfter: 300_000 });
    }
    if (path === "/files/b.bin" && n === 1) return new Response("boom", { status: 500 });
    if (path === "/files/c.bin" && n === 1) {
      return new Response("busy", { status: 503, headers: { "retry-after": "0" } });
    }
    if (path === "/files/d.bin" && n === 1) {
      return serveBytes(req, data, ts, { dropAfter: 700_000 });
    }
    if (path === "/files/d.bin" && n === 2) return new Response("boom", { status: 500 });
    return serveBytes(req, data, ts);
  });
  const manifestFiles: unknown[] = [];
  try {
    for (const [p, data] of Object.entries(files)) {
      const sha = p === "/files/bad.bin"
        ? await sha256Hex(randomBytes(data.length))
        : await sha256Hex(data);
      const f: Record<string, unknown> = { url: p.slice(1), size: data.length, sha256: sha };
      if (p === "/files/d.bin") f.path = "renamed/d.bin";
      manifestFiles.push(f);
    }
    const src = httpSource({
      manifest: `${ts.base}/manifest.json`,
      backoffMs: 5,
      timeoutMs: 5000,
      retries: 4,
    });
    assert.deepStrictEqual(src.kind, "http");
    const { entries, problems } = await listAll(src);
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "files/a.bin",
      "files/b.bin",
      "files/c.bin",
      "renamed/d.bin",
      "files/bad.bin",
    ]);
    assert.deepStrictEqual(
      ts.log.filter((l) => l.method === "HEAD").length,
      0,
      "no HEADs for a manifest",
    );
    for (const e of entries) {
      const served = `/${new URL(e.url).pathname.slice(1)}`;
      const data = files[served];
      assert.deepStrictEqual(e.size, data.length);
      assert.deepStrictEqual(e.key, `http:${ts.base}${served}:${e.sha256}`);
      const s = await e.open();
      assert.deepStrictEqual(s.verifiesSha256, true);
      if (served === "/files/bad.bin") {
        await expectSourceError(collect(s), "sha256 mismatch: expected", e.url);
      } else {
        assertBytes(await collect(s), data, e.path);
      }
    }
    // Resumed, not restarted: the retries after a drop asked for the rest only.
    const a = ts.gets("/files/a.bin");
    assert.deepStrictEqual(a.length, 2);
    assert.deepStrictEqual(a[0].range, null);
    const na = rangeStart(a[1]);
    assert(na > 0 && na <= 300_000, `a.bin resumed at ${na}`);
    const d = ts.gets("/files/d.bin");
    assert.deepStrictEqual(d.length, 3);
    const nd = rangeStart(d[1]);
    assert(nd > 0 && nd <= 700_000, `d.bin resumed at ${nd}`);
    assert.deepStrictEqual(rangeStart(d[2]), nd, "after a 500 the same byte is asked for again");
    // A failure before any byte retries from the start.
    assert.deepStrictEqual(ts.gets("/files/b.bin").map((l) => l.range), [null, null]);
    assert.deepStrictEqual(ts.gets("/files/c.bin").map((l) => l.range), [null, null]);
  } finally {
    await ts.close();
  }
});

Deno.test("URL list source: HEAD sizes, path checks, bounded HEADs; 404 is not retried", async () => {
  const files: Record<string, Bytes> = {};
  for (let i = 0; i < 6; i++) files[`/data/f${i}.bin`] = randomBytes(1000 + i);
  files["/data/y z.bin"] = randomBytes(4321);
  const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
  let inFlight = 0;
  let maxInFlight = 0;
  const ts = startServer(async (req, _n, ts) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const data = files[path];
    if (req.method === "HEAD") {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
    }
    if (!data) return new Response(null, { status: 404, statusText: "Not Found" });
    const headers: Record<string, string> = path === "/data/f0.bin"
      ? { etag: '"v1"', "last-modified": lastModified }
      : path === "/data/f1.bin"
      ? { "last-modified": lastModified }
      : {};
    return serveBytes(req, data, ts, { headers });
  });
  try {
    const b = ts.base;
    const urls = [
      ...Array.from({ length: 6 }, (_, i) => `${b}/data/f${i}.bin`),
      `${b}/data/y%20z.bin`,
      `${b}/missing.bin`,
      `${b}/dir/`, // a directory
      `${b}`, // empty path
      `${b}/data/f0.bin`, // duplicate
      `${b}/a%2F..%2Fb.bin`, // encoded slash
      `${b}/a//b.bin`, // empty segment
      "ftp://127.0.0.1/x.bin",
    ];
    const src = new HttpSource({ urls, concurrency: 2, backoffMs: 1, retries: 3, timeoutMs: 5000 });
    assert.deepStrictEqual(src.concurrency, 2);
    const { entries, problems } = await listAll(src);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      ...Array.from({ length: 6 }, (_, i) => `data/f${i}.bin`),
      "data/y z.bin",
      "missing.bin",
    ]);
    assert(maxInFlight <= 2 && maxInFlight >= 1, `max HEADs in flight ${maxInFlight}`);
    assert.deepStrictEqual(problems.length, 6, JSON.stringify(problems));
    for (const [i, u] of urls.slice(8).entries()) {
      const p = problems[i];
      assert(
        p.message.includes(new URL(u).href) || p.message.includes(u),
        `problem ${JSON.stringify(p)} names ${u}`,
      );
    }
    assert(problems[0].message.includes("ends with /"), problems[0].message);
    assert(problems[2].message.includes("duplicate path data/f0.bin"), problems[2].message);

    const [f0, f1, f2] = entries;
    assert.deepStrictEqual(f0.size, 1000);
    assert.deepStrictEqual(f0.mtimeMs, Date.parse(lastModified));
    assert.deepStrictEqual(f0.key, `http:${b}/data/f0.bin:"v1"`);
    assert.deepStrictEqual(f1.key, `http:${b}/data/f1.bin:${lastModified}`);
    assert.deepStrictEqual(f2.key, `http:${b}/data/f2.bin:1002`);
    assert.deepStrictEqual(f2.mtimeMs, 0);
    assert.deepStrictEqual(f2.sha256, undefined);
    const missing = entries[7];
    assert.deepStrictEqual([missing.size, missing.mtimeMs], [-1, 0]);
    assert.deepStrictEqual(missing.key, `http:${b}/missing.bin:-1`);

    const yz = await entries[6].open();
    assert.deepStrictEqual(yz.verifiesSha256, false);
    assertBytes(await collect(yz), files["/data/y z.bin"], "y z.bin");

    const e = await expectSourceError(missing.open(), "404", `${b}/missing.bin`);
    assert(e instanceof HttpStatusError && e.status === 404, `status of ${e}`);
    assert.deepStrictEqual(ts.gets("/missing.bin").length, 1, "a 404 is not retried");
  } finally {
    await ts.close();
  }
});

Deno.test("open(offset) on a server that ignores Range delivers exactly the bytes from offset", async () => {
  const data = randomBytes(500_000);
  const sha = await sha256Hex(data);
  const ts = startServer((req, _n, ts) => {
    const path = new URL(req.url).pathname;
    if (path === "/list.txt") {
      return new Response(`# sha256 size url\n${sha}  ${data.length}  data.bin\n`);
    }
    return serveBytes(req, data, ts, { ignoreRange: true });
  });
  try {
    const src = httpSource({ manifest: `${ts.base}/list.txt`, backoffMs: 1, timeoutMs: 5000 });
    const { entries, problems } = await listAll(src);
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.length, 1);
    const [e] = entries;
    assert.deepStrictEqual([e.path, e.size, e.sha256], ["data.bin", data.length, sha]);
    for (const off of [123_457, 1, data.length - 1]) {
      const s = await e.open(off);
      assert.deepStrictEqual(s.verifiesSha256, false, "the prefix is not hashed by the stream");
      assertBytes(await collect(s), data.subarray(off), `from ${off}`);
    }
    assert.deepStrictEqual(ts.gets("/data.bin").map((l) => l.range), [
      "bytes=123457-",
      "bytes=1-",
      `bytes=${data.length - 1}-`,
    ]);
    // At the end already: nothing to fetch, an empty stream.
    assert.deepStrictEqual((await collect(await e.open(data.length))).length, 0);
    assert.deepStrictEqual(ts.gets("/data.bin").length, 3);
  } finally {
    await ts.close();
  }
});

Deno.test("a stalled response times out and the download resumes where it stopped", async () => {
  const data = randomBytes(400_000);
  const ts = startServer((req, n, ts) => {
    if (req.method === "GET" && n === 1) return serveBytes(req, data, ts, { stallAfter: 100_000 });
    return serveBytes(req, data, ts);
  });
  try {
    const src = httpSource({ urls: [`${ts.base}/slow.bin`], timeoutMs: 250, backoffMs: 1 });
    const { entries } = await listAll(src);
    assert.deepStrictEqual(entries[0].size, data.length);
    const t0 = performance.now();
    assertBytes(await collect(await entries[0].open()), data, "slow.bin");
    assert(performance.now() - t0 >= 200, "waited for the stall timeout");
    const gets = ts.gets("/slow.bin");
    assert.deepStrictEqual(gets.length, 2);
    assert.deepStrictEqual(gets[0].range, null);
    const n = rangeStart(gets[1]);
    assert(n > 0 && n <= 100_000, `resumed at ${n}`);
  } finally {
    await ts.close();
  }
});

Deno.test("retries exhausted: SourceError naming the URL, the byte offset and the cause", async () => {
  const data = randomBytes(50_000);
  const ts = startServer((req, n, ts) => {
    const path = new URL(req.url).pathname;
    if (path === "/flaky.bin" && n === 1) return serveBytes(req, data, ts, { dropAfter: 1000 });
    return new Response("down", { status: 503 });
  });
  try {
    const b = ts.base;
    const src = httpSource({ urls: [`${b}/flaky.bin`, `${b}/down.bin`], retries: 2, backoffMs: 1 });
    const { entries } = await listAll(src);
    const s = await entries[0].open();
    await expectSourceError(collect(s), `${b}/flaky.bin`, "at byte 1000", "HTTP 503");
    // One attempt that delivered bytes, then `retries` retries without progress.
    assert.deepStrictEqual(ts.gets("/flaky.bin").length, 3);
    assert.deepStrictEqual(ts.gets("/flaky.bin").slice(1).map(rangeStart), [1000, 1000]);
    // Failing before any byte: open() itself rejects.
    await expectSourceError(entries[1].open(), `${b}/down.bin`, "at byte 0", "HTTP 503");
    assert.deepStrictEqual(ts.gets("/down.bin").length, 3);
  } finally {
    await ts.close();
  }
});

Deno.test("text manifest: malformed lines are reported with their line number, the rest is fine", async () => {
  const a = randomBytes(10_000);
  const b = randomBytes(20_000);
  const [sa, sb] = [await sha256Hex(a), await sha256Hex(b)];
  const ts = startServer((req, _n, ts) => {
    const path = new URL(req.url).pathname;
    return serveBytes(req, path === "/a.bin" ? a : b, ts);
  });
  const dir = await Deno.makeTempDir();
  try {
    const u = ts.base;
    const manifest = `${dir}/manifest.txt`;
    await Deno.writeTextFile(
      manifest,
      [
        "# sha256  size  url  [path]", // 1
        `${sa}  ${a.length}  ${u}/a.bin`, // 2
        "", // 3
        `nothex  10  ${u}/b.bin`, // 4: bad sha256
        `${sb}  ten  ${u}/b.bin`, // 5: bad size
        `${sb}  ${b.length}`, // 6: missing URL
        `${sb}  ${b.length}  ${u}/b.bin  out/b.bin   # a trailing comment`, // 7
        `${sa}  ${a.length}  rel/a.bin`, // 8: relative URL in a local manifest
        `${sa}  ${a.length}  ${u}/a.bin  ../evil`, // 9: bad path
        `${sa}  ${a.length}  ${u}/a.bin`, // 10: duplicate path
      ].join("\n"),
    );
    const src = httpSource({ manifest, backoffMs: 1 });
    const { entries, problems } = await listAll(src);
    assert.deepStrictEqual(entries.map((e) => [e.path, e.size, e.sha256, e.mtimeMs]), [
      ["a.bin", a.length, sa, 0],
      ["out/b.bin", b.length, sb, 0],
    ]);
    assert.deepStrictEqual(entries[1].key, `http:${u}/b.bin:${sb}`);
    const lines = [4, 5, 6, 8, 9, 10];
    assert.deepStrictEqual(problems.length, lines.length, JSON.stringify(problems));
    problems.forEach((p, i) => {
      assert(p.message.includes(`${manifest}:${lines[i]}:`), `${p.message} names line ${lines[i]}`);
    });
    assert(problems[0].message.includes(`${u}/b.bin`), "names the URL");
    assert(problems[4].message.includes("../evil"), problems[4].message);
    assertBytes(await collect(await entries[0].open()), a, "a.bin");
    assertBytes(await collect(await entries[1].open()), b, "b.bin");
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("manifest errors: unreadable manifest throws naming it; size contradicting the manifest", async () => {
  const data = randomBytes(5000);
  const sha = await sha256Hex(data);
  const ts = startServer((req, _n, ts) => {
    const path = new URL(req.url).pathname;
    if (path === "/m.json") {
      return Response.json({
        files: [{ url: "x.bin", size: data.length + 1, sha256: sha }, { url: "y.bin" }],
      });
    }
    if (path === "/x.bin") return serveBytes(req, data, ts);
    return new Response("no", { status: 404 });
  });
  try {
    const noop = () => {};
    const gone = `${ts.base}/gone.json`;
    await expectSourceError(
      (async () => {
        for await (const _ of httpSource({ manifest: gone, backoffMs: 1 }).list(noop)) { /* */ }
      })(),
      gone,
      "404",
    );
    const local = "/nonexistent/pifs/manifest.txt";
    await expectSourceError(
      (async () => {
        for await (const _ of httpSource({ manifest: local }).list(noop)) { /* */ }
      })(),
      local,
    );
    const { entries, problems } = await listAll(
      httpSource({ manifest: `${ts.base}/m.json`, backoffMs: 1 }),
    );
    assert.deepStrictEqual(problems.length, 1);
    assert(problems[0].message.includes(`${ts.base}/m.json files[1]`), problems[0].message);
    await expectSourceError(
      entries[0].open(),
      `size mismatch: expected ${data.length + 1}, got ${data.length}`,
    );
  } finally {
    await ts.close();
  }
});
