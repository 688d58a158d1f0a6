/**
 * Serves the sample dataset (`DIR/sample-dataset/`, made by
 * `examples/make_samples.ts`) over HTTP on 127.0.0.1, as a dataset host
 * would: `Content-Length`, `Last-Modified`, `ETag`, and byte ranges
 * (`Range: bytes=N-`, `N-M`, `-N`, answered `206` with `Content-Range`), so
 * `pifs sync examples/dataset.yaml` can resume a cut download.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-read examples/serve_dataset.ts [--port 8642] [--log] [DIR]
 * ```
 *
 * DIR defaults to this `examples/` folder. `--port 0` picks a free port. Once
 * listening it prints `serving http://127.0.0.1:PORT/` on stdout; `--log`
 * prints one line per request on stderr. Stops on SIGINT or SIGTERM.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** Options of {@linkcode serveDataset}. */
export interface ServeOptions {
  /** The folder served (its files, not its subfolders' listings). */
  root: string;
  /** TCP port on 127.0.0.1 (0: any free port). */
  port: number;
  /** Called once listening, with the port. */
  onListen?: (port: number) => void;
  /** Called for every request answered (method, path, status). */
  onRequest?: (line: string) => void;
}

/** A byte range of a file of `size` bytes: `[start, end]` inclusive, or "unsatisfiable". */
export function parseRange(
  header: string,
  size: number,
): [number, number] | "unsatisfiable" | undefined {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return undefined; // not one simple range: ignore it
  if (m[1] === "") {
    const n = Number(m[2]); // the last n bytes
    if (n === 0 || size === 0) return "unsatisfiable";
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return [start, end];
}

/** The bytes `[start, end]` of a file, read as they are sent. */
async function fileSlice(path: string, start: number, end: number): Promise<ReadableStream> {
  const file = await Deno.open(path, { read: true });
  await file.seek(start, Deno.SeekMode.Start);
  let left = end - start + 1;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (left <= 0) {
        file.close();
        c.close();
        return;
      }
      const buf = new Uint8Array(Math.min(left, 64 * 1024));
      const n = await file.read(buf);
      if (n === null) {
        file.close();
        c.error(new Error(`${path}: shorter than expected`));
        return;
      }
      left -= n;
      c.enqueue(buf.subarray(0, n));
    },
    cancel() {
      file.close();
    },
  });
}

async function answer(root: string, req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  let rel: string;
  try {
    rel = decodeURIComponent(new URL(req.url).pathname).replace(/^\/+/, "");
  } catch {
    return new Response("bad path\n", { status: 400 });
  }
  if (rel === "" || rel.split("/").some((s) => s === "" || s === "." || s === "..")) {
    return new Response("not found\n", { status: 404 });
  }
  const path = `${root}/${rel}`;
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info?.isFile) return new Response("not found\n", { status: 404 });
  const size = info.size;
  const mtime = info.mtime ?? new Date(0);
  const etag = `"${size.toString(16)}-${mtime.getTime().toString(16)}"`;
  const headers = new Headers({
    "accept-ranges": "bytes",
    "last-modified": mtime.toUTCString(),
    etag,
    "content-type": rel.endsWith(".json") ? "application/json" : "application/octet-stream",
  });
  const rangeHeader = req.headers.get("range");
  const ifRange = req.headers.get("if-range");
  const range = rangeHeader !== null && (ifRange === null || ifRange === etag)
    ? parseRange(rangeHeader, size)
    : undefined;
  if (range === "unsatisfiable") {
    headers.set("content-range", `bytes */${size}`);
    return new Response(null, { status: 416, headers });
  }
  const [start, end] = range ?? [0, size - 1];
  headers.set("content-length", String(end - start + 1));
  if (range) headers.set("content-range", `bytes ${start}-${end}/${size}`);
  const status = range ? 206 : 200;
  if (req.method === "HEAD" || end < start) return new Response(null, { status, headers });
  return new Response(await fileSlice(path, start, end), { status, headers });
}

/** Serves `root` until the returned server is shut down. */
export function serveDataset(opts: ServeOptions): Deno.HttpServer<Deno.NetAddr> {
  const root = opts.root.replace(/\/+$/, "");
  return Deno.serve({
    hostname: "127.0.0.1",
    port: opts.port,
    onListen: ({ port }) => opts.onListen?.(port),
  }, async (req) => {
    const res = await answer(root, req);
    opts.onRequest?.(
      `${req.method} ${new URL(req.url).pathname}` +
        `${req.headers.has("range") ? ` (${req.headers.get("range")})` : ""} ${res.status}`,
    );
    return res;
  });
}

function usage(message: string): never {
  console.error(
    `${message}\nusage: serve_dataset.ts [--port 8642] [--log] [DIR]  (serves DIR/sample-dataset)`,
  );
  Deno.exit(2);
}

if (import.meta.main) {
  let port = 8642;
  let log = false;
  let dir: string | undefined;
  const args = [...Deno.args];
  while (args.length) {
    const a = args.shift()!;
    if (a === "--port") {
      const v = args.shift() ?? "";
      if (!/^\d+$/.test(v) || Number(v) > 65535) usage(`--port: not a port: ${v}`);
      port = Number(v);
    } else if (a === "--log") log = true;
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (dir === undefined) dir = a;
    else usage(`one DIR only (got ${dir} and ${a})`);
  }
  dir ??= fileURLToPath(new URL(".", import.meta.url));
  const root = `${dir.replace(/\/+$/, "")}/sample-dataset`;
  if (!(await Deno.stat(`${root}/manifest.json`).catch(() => undefined))?.isFile) {
    console.error(`${root}/manifest.json: not found (run examples/make_samples.ts first)`);
    Deno.exit(1);
  }
  const server = serveDataset({
    root,
    port,
    onListen: (p) => console.log(`serving http://127.0.0.1:${p}/`),
    onRequest: log ? (line) => console.error(line) : undefined,
  });
  const stop = async () => {
    await server.shutdown();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
}
