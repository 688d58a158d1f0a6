/**
 * The **http dataset** source: files fetched over HTTP(S), either from a list
 * of URLs or from a manifest that gives each file's URL, size and SHA-256.
 *
 * Reading is resumable: {@linkcode HttpEntry.open} returns a pull-based
 * stream that, when the connection drops, the server answers 5xx/408/429 or a
 * read stalls, waits (exponential back-off with jitter, or the server's
 * `Retry-After`) and resumes with `Range: bytes=N-` from the first byte it has
 * not delivered yet, so the consumer never sees a duplicate or a missing byte.
 * A server that ignores `Range` (answers 200) is handled by skipping the bytes
 * already delivered.
 *
 * Verification done by the stream itself:
 * - size: when the manifest gives a size, the content must end exactly there
 *   ("size mismatch: expected N, got M"), whatever the offset;
 * - SHA-256: only when the stream starts at offset 0 (it cannot hash a prefix it
 *   never read). The stream then errors with "sha256 mismatch: expected X,
 *   got Y" *instead of* closing normally. The stream's `verifiesSha256` flag
 *   tells which case applies: when it is false and the entry has a `sha256`,
 *   the engine must check the digest itself (e.g. hash the prefix it already
 *   stored plus what the stream delivers) before committing.
 *
 * @module
 */

import { type Sha256Stream, sha256Stream } from "../ids.ts";
import { type Source, type SourceEntry, SourceError, type SourceProblem } from "./source.ts";

/** Options of {@linkcode HttpSource}. At least one of `urls` and `manifest` is required. */
export interface HttpSourceOptions {
  /** URLs of single files; each file's target path is the URL's path. */
  urls?: string[];
  /** A manifest, as an http(s) URL or an absolute local path (JSON or text format). */
  manifest?: string;
  /** Simultaneous HEAD requests while listing, and the bound the engine should
   * use for parallel opens. Default 4. */
  concurrency?: number;
  /** How many times a failure is retried in a row before the stream gives up;
   * an attempt that delivers at least one byte resets the count. Default 8. */
  retries?: number;
  /** Per attempt: how long to wait for response headers, and for each next
   * piece of the body, before the attempt counts as stalled. Default 60000. */
  timeoutMs?: number;
  /** Base of the exponential back-off between attempts. Default 500. */
  backoffMs?: number;
  /** Upper bound of one back-off wait, `Retry-After` included. Default 30000. */
  maxBackoffMs?: number;
  /** The fetch to use (tests inject one). Default: the global `fetch`. */
  fetch?: typeof fetch;
}

/** A stream of one file's content; see {@linkcode HttpEntry.open}. */
export type HttpStream = ReadableStream<Uint8Array> & {
  /** True when this stream checks the entry's `sha256` itself (the entry has one
   * and the stream starts at offset 0). When false and the entry has a
   * `sha256`, the engine must verify the digest before committing. */
  readonly verifiesSha256: boolean;
};

/** One file of an {@linkcode HttpSource}. */
export interface HttpEntry extends SourceEntry {
  /** The absolute URL the content is fetched from. */
  readonly url: string;
  /** Opens the content from byte `offset` (default 0): a pull-based stream that
   * retries and resumes internally. Rejects, like the stream errors, with a
   * {@linkcode SourceError} (an {@linkcode HttpStatusError} for a status that is
   * not retried) when it gives up, or with the signal's reason when aborted. The
   * first request is made before the promise resolves, so e.g. a 404 rejects it. */
  open(offset?: number, signal?: AbortSignal): Promise<HttpStream>;
}

/** A {@linkcode SourceError} for an HTTP status that is not retried (e.g. 404). */
export class HttpStatusError extends SourceError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "HTTP_STATUS";
  /** The error's name. */
  override name = "HttpStatusError";
  /** The HTTP status. */
  readonly status: number;
  /** The URL that answered it. */
  readonly url: string;
  /** The status, the URL and, optionally, the entry's path. */
  constructor(status: number, statusText: string, url: string, path?: string) {
    super(`HTTP ${status}${statusText ? ` ${statusText}` : ""} from ${url}`, path);
    this.status = status;
    this.url = url;
  }
}

/** Options after defaults. */
interface Settings {
  concurrency: number;
  retries: number;
  timeoutMs: number;
  backoffMs: number;
  maxBackoffMs: number;
  fetch: typeof fetch;
}

/** A failure worth another attempt. */
class Retryable extends Error {
  constructor(message: string, readonly retryAfterMs?: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A sync source of files served over HTTP(S). */
export class HttpSource implements Source {
  /** Always `"http"`. */
  readonly kind = "http";
  /** The manifest and/or the number of URLs. */
  readonly description: string;
  /** How many entries the engine should open at once (also bounds HEADs while listing). */
  readonly concurrency: number;
  readonly #urls: string[];
  readonly #manifest?: string;
  readonly #s: Settings;

  /** Checks the options; throws a {@linkcode SourceError} when they are unusable. */
  constructor(opts: HttpSourceOptions) {
    if (opts.urls === undefined && opts.manifest === undefined) {
      throw new SourceError("http source: give `urls` or `manifest`");
    }
    const int = (v: number | undefined, d: number, min: number, name: string): number => {
      const x = v ?? d;
      if (!Number.isSafeInteger(x) || x < min) {
        throw new SourceError(`http source: ${name} must be an integer >= ${min}, got ${v}`);
      }
      return x;
    };
    const userFetch = opts.fetch;
    this.#s = {
      concurrency: int(opts.concurrency, 4, 1, "concurrency"),
      retries: int(opts.retries, 8, 0, "retries"),
      timeoutMs: int(opts.timeoutMs, 60_000, 1, "timeoutMs"),
      backoffMs: int(opts.backoffMs, 500, 0, "backoffMs"),
      maxBackoffMs: int(opts.maxBackoffMs, 30_000, 0, "maxBackoffMs"),
      fetch: userFetch ?? ((input, init) => fetch(input, init)),
    };
    this.concurrency = this.#s.concurrency;
    this.#urls = [...(opts.urls ?? [])];
    this.#manifest = opts.manifest;
    const parts: string[] = [];
    if (this.#manifest !== undefined) parts.push(`manifest ${this.#manifest}`);
    if (this.#urls.length > 0 || this.#manifest === undefined) {
      parts.push(`${this.#urls.length} URL${this.#urls.length === 1 ? "" : "s"}`);
    }
    this.description = `http ${parts.join(" + ")}`;
  }

  /** Lists the manifest's files (no requests besides the manifest's), then the
   * URLs (one HEAD each, at most `concurrency` at once), in their order. A
   * manifest's file is listed with mtime 0; once opened, its mtime becomes the
   * server's `Last-Modified`, when the server sends one (the engine commits the
   * file with it and keys its unchanged-file cache on the listed 0).
   * Throws a {@linkcode SourceError} naming the manifest when it cannot be read. */
  async *list(
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): AsyncIterable<HttpEntry> {
    const seen = new Map<string, string>();
    const claim = (path: string, url: string, where: string): boolean => {
      const first = seen.get(path);
      if (first !== undefined) {
        report({ path, message: `${where}duplicate path ${path} (${url}; first from ${first})` });
        return false;
      }
      seen.set(path, url);
      return true;
    };
    if (this.#manifest !== undefined) {
      const rows = await this.#readManifest(this.#manifest, report, signal);
      for (const r of rows) {
        signal?.throwIfAborted();
        if (!claim(r.path, r.url, `${r.where}: `)) continue;
        yield this.#entry(r.url, r.path, r.size, 0, `http:${r.url}:${r.sha256}`, r.sha256, r.size);
      }
    }
    const valid: { url: string; path: string }[] = [];
    for (const raw of this.#urls) {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        report({ path: raw, message: `invalid URL: ${raw}` });
        continue;
      }
      if (u.protocol !== "http:" && u.protocol !== "https:") {
        report({ path: raw, message: `not an http(s) URL: ${raw}` });
        continue;
      }
      const p = pathFromUrl(u);
      if ("error" in p) {
        report({ path: raw, message: `${p.error}: ${u.href}` });
        continue;
      }
      if (claim(p.path, u.href, "")) valid.push({ url: u.href, path: p.path });
    }
    if (valid.length === 0) return;
    // A sliding window of HEADs keeps the order and at most `concurrency` in flight.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort);
    const pending: Promise<HeadInfo>[] = [];
    let next = 0;
    const fill = () => {
      while (pending.length < this.#s.concurrency && next < valid.length) {
        pending.push(this.#head(valid[next++].url, ctl.signal));
      }
    };
    try {
      fill();
      for (const v of valid) {
        const h = await pending.shift()!;
        signal?.throwIfAborted();
        fill();
        const version = h.etag ?? h.lastModified ?? String(h.size);
        yield this.#entry(v.url, v.path, h.size, h.mtimeMs, `http:${v.url}:${version}`);
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      ctl.abort();
      await Promise.all(pending);
    }
  }

  #entry(
    url: string,
    path: string,
    size: number,
    mtimeMs: number,
    key: string,
    sha?: string,
    expectedSize?: number,
  ): HttpEntry {
    const s = this.#s;
    const entry: HttpEntry = {
      url,
      path,
      size,
      mtimeMs,
      key,
      open: (offset = 0, signal?: AbortSignal) =>
        openStream(s, url, path, offset, expectedSize, sha, signal, (t) => {
          if (entry.mtimeMs === 0) entry.mtimeMs = t;
        }),
    };
    if (sha !== undefined) entry.sha256 = sha;
    return entry;
  }

  /** One HEAD; never rejects (a failure leaves size and mtime unknown). */
  async #head(url: string, signal: AbortSignal): Promise<HeadInfo> {
    const unknown: HeadInfo = { size: -1, mtimeMs: 0 };
    if (signal.aborted) return unknown;
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal.addEventListener("abort", onAbort);
    const timer = setTimeout(() => ctl.abort(), this.#s.timeoutMs);
    try {
      const res = await this.#s.fetch(url, {
        method: "HEAD",
        headers: { "accept-encoding": "identity" },
        signal: ctl.signal,
      });
      await res.body?.cancel().catch(() => {});
      if (!res.ok) return unknown;
      const len = res.headers.get("content-length");
      const size = len !== null && /^\d+$/.test(len.trim()) &&
          res.headers.get("content-encoding") === null
        ? Number(len.trim())
        : -1;
      const lm = res.headers.get("last-modified") ?? undefined;
      const t = lm === undefined ? NaN : Date.parse(lm);
      return {
        size: Number.isSafeInteger(size) ? size : -1,
        mtimeMs: Number.isFinite(t) ? t : 0,
        etag: res.headers.get("etag") ?? undefined,
        lastModified: lm,
      };
    } catch {
      return unknown;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Reads and parses the manifest; malformed rows are reported and left out. */
  async #readManifest(
    manifest: string,
    report: (problem: SourceProblem) => void,
    signal?: AbortSignal,
  ): Promise<ManifestRow[]> {
    let text: string;
    let base: URL | undefined;
    if (/^https?:\/\//i.test(manifest)) {
      base = new URL(manifest);
      text = await fetchText(this.#s, manifest, signal);
    } else if (manifest.startsWith("/") || /^[A-Za-z]:[\\/]/.test(manifest)) {
      try {
        text = await Deno.readTextFile(manifest, { signal });
      } catch (e) {
        signal?.throwIfAborted();
        throw new SourceError(`cannot read manifest ${manifest}: ${errText(e)}`, undefined, {
          cause: e,
        });
      }
    } else {
      throw new SourceError(`manifest ${manifest}: not an http(s) URL nor an absolute path`);
    }
    return parseManifest(manifest, text, base, report);
  }
}

/** Creates an {@linkcode HttpSource}. */
export function httpSource(opts: HttpSourceOptions): HttpSource {
  return new HttpSource(opts);
}

interface HeadInfo {
  size: number;
  mtimeMs: number;
  etag?: string;
  lastModified?: string;
}

interface ManifestRow {
  url: string;
  path: string;
  size: number;
  sha256: string;
  /** `manifest:line` (text) or `manifest files[i]` (JSON), for problems. */
  where: string;
}

const SHA_RE = /^[0-9a-fA-F]{64}$/;

/** Parses a manifest's text (JSON when it starts with `{`, else the line format). */
function parseManifest(
  manifest: string,
  text: string,
  base: URL | undefined,
  report: (problem: SourceProblem) => void,
): ManifestRow[] {
  const rows: ManifestRow[] = [];
  const add = (
    where: string,
    url: unknown,
    size: unknown,
    sha: unknown,
    path: unknown,
  ): void => {
    const bad = (message: string, p?: string) =>
      report({ path: p ?? where, message: `${where}: ${message}` });
    if (typeof url !== "string" || url === "") return bad("missing url");
    let u: URL;
    try {
      u = new URL(url, base);
    } catch {
      return bad(
        base === undefined && !/^[a-z][a-z0-9+.-]*:/i.test(url)
          ? `relative URL ${url} in a local manifest`
          : `invalid URL ${url}`,
      );
    }
    const href = u.href;
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      return bad(`not an http(s) URL: ${href}`);
    }
    if (typeof sha !== "string" || !SHA_RE.test(sha)) {
      return bad(`${href}: sha256 must be 64 hex digits, got ${JSON.stringify(sha ?? null)}`);
    }
    let n: number;
    if (typeof size === "number") n = size;
    else if (typeof size === "string" && /^\d+$/.test(size)) n = Number(size);
    else n = NaN;
    if (!Number.isSafeInteger(n) || n < 0) {
      return bad(
        `${href}: size must be a non-negative integer, got ${JSON.stringify(size ?? null)}`,
      );
    }
    let p: string;
    if (path === undefined || path === null) {
      const d = pathFromUrl(u);
      if ("error" in d) return bad(`${d.error}: ${href}`);
      p = d.path;
    } else if (typeof path !== "string") {
      return bad(`${href}: path must be a string`);
    } else {
      const e = checkPath(path);
      if (e !== undefined) return bad(`${href}: path ${JSON.stringify(path)}: ${e}`);
      p = path;
    }
    rows.push({ url: href, path: p, size: n, sha256: sha.toLowerCase(), where });
  };

  if (text.trimStart().startsWith("{")) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new SourceError(`manifest ${manifest}: invalid JSON: ${errText(e)}`);
    }
    const files = (doc as { files?: unknown }).files;
    if (!Array.isArray(files)) {
      throw new SourceError(`manifest ${manifest}: JSON without a "files" array`);
    }
    files.forEach((f, i) => {
      const where = `${manifest} files[${i}]`;
      if (typeof f !== "object" || f === null || Array.isArray(f)) {
        report({ path: where, message: `${where}: not an object` });
        return;
      }
      const o = f as Record<string, unknown>;
      add(where, o.url, o.size, o.sha256, o.path);
    });
    return rows;
  }

  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const where = `${manifest}:${i + 1}`;
    // `#` starts a comment at the start of a line or of a whitespace-separated field.
    const m = /(^|\s)#/.exec(line);
    const body = (m ? line.slice(0, m.index) : line).trim();
    if (body === "") return;
    const t = body.split(/\s+/);
    if (t.length < 3 || t.length > 4) {
      report({
        path: where,
        message: `${where}: expected "SHA256 SIZE URL [PATH]", got ${t.length} field${
          t.length === 1 ? "" : "s"
        }: ${JSON.stringify(body)}`,
      });
      return;
    }
    add(where, t[2], t[1], t[0], t[3]);
  });
  return rows;
}

/** Why a target path is unusable, or undefined when it is fine. */
function checkPath(p: string): string | undefined {
  if (p === "") return "empty path";
  if (p.startsWith("/")) return "absolute path";
  for (const seg of p.split("/")) {
    if (seg === "") return "empty path segment";
    if (seg === "." || seg === "..") return `"${seg}" path segment`;
    if (seg.includes("\0")) return "NUL in path";
  }
  return undefined;
}

/** The target path of a URL: its path, percent-decoded, without the leading slash. */
function pathFromUrl(u: URL): { path: string } | { error: string } {
  const raw = u.pathname;
  if (raw === "" || raw === "/") return { error: "URL has an empty path" };
  if (raw.endsWith("/")) return { error: "URL path ends with / (not a file)" };
  const segs: string[] = [];
  for (const seg of raw.slice(1).split("/")) {
    let d: string;
    try {
      d = decodeURIComponent(seg);
    } catch {
      return { error: `invalid percent-encoding in path segment ${JSON.stringify(seg)}` };
    }
    if (d.includes("/")) return { error: `encoded / in path segment ${JSON.stringify(seg)}` };
    segs.push(d);
  }
  const path = segs.join("/");
  const e = checkPath(path);
  return e === undefined ? { path } : { error: `URL path: ${e}` };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** The wait a `Retry-After` header asks for, capped; undefined when absent or unreadable. */
function retryAfterMs(h: string | null, cap: number): number | undefined {
  if (h === null) return undefined;
  const v = h.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const t = Date.parse(v);
    if (!Number.isFinite(t)) return undefined;
    ms = Math.max(0, t - Date.now());
  }
  return Math.min(ms, cap);
}

/** Back-off before attempt after `failures` failures: exponential, jittered, capped. */
function backoff(s: Settings, failures: number, e: Retryable): number {
  if (e.retryAfterMs !== undefined) return e.retryAfterMs;
  const exp = Math.min(s.maxBackoffMs, s.backoffMs * 2 ** Math.min(failures - 1, 30));
  return Math.round(exp * (0.5 + Math.random() * 0.5));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Fetches a (manifest) text with the source's retry policy. */
async function fetchText(s: Settings, url: string, signal?: AbortSignal): Promise<string> {
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort);
    const timer = setTimeout(
      () => ctl.abort(new Retryable(`no response within ${s.timeoutMs} ms`)),
      s.timeoutMs,
    );
    try {
      const res = await s.fetch(url, { signal: ctl.signal });
      if (res.ok) return await res.text();
      await res.body?.cancel().catch(() => {});
      if (!isRetryableStatus(res.status)) {
        throw new SourceError(
          `cannot fetch manifest ${url}: HTTP ${res.status} ${res.statusText}`.trimEnd(),
        );
      }
      throw new Retryable(
        `HTTP ${res.status}`,
        retryAfterMs(res.headers.get("retry-after"), s.maxBackoffMs),
      );
    } catch (e) {
      signal?.throwIfAborted();
      if (e instanceof SourceError) throw e;
      const r = e instanceof Retryable
        ? e
        : ctl.signal.reason instanceof Retryable
        ? ctl.signal.reason
        : new Retryable(errText(e), undefined, { cause: e });
      if (++failures > s.retries) {
        throw new SourceError(
          `cannot fetch manifest ${url}: gave up after ${failures} attempts: ${r.message}`,
          undefined,
          { cause: e },
        );
      }
      await sleep(backoff(s, failures, r), signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** Parses a Content-Range: `bytes START-END/TOTAL`, or `*` then `/TOTAL` (an unsatisfied range). */
function parseContentRange(
  h: string | null,
): { start?: number; total?: number } | undefined {
  if (h === null) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(h);
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    total: m[3] === "*" ? undefined : Number(m[3]),
  };
}

async function openStream(
  s: Settings,
  url: string,
  path: string,
  offset: number,
  expectedSize: number | undefined,
  sha: string | undefined,
  signal: AbortSignal | undefined,
  onLastModified?: (ms: number) => void,
): Promise<HttpStream> {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new SourceError(`${url}: invalid offset ${offset}`, path);
  }
  if (expectedSize !== undefined && offset > expectedSize) {
    throw new SourceError(`${url}: offset ${offset} is past the end (${expectedSize} bytes)`, path);
  }
  const dl = new Download(s, url, path, offset, expectedSize, sha, signal, onLastModified);
  try {
    await dl.start();
  } catch (e) {
    dl.dispose();
    throw e;
  }
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const chunk = await dl.next();
        if (chunk === null) {
          dl.dispose();
          c.close();
        } else c.enqueue(chunk);
      } catch (e) {
        dl.dispose();
        c.error(e);
      }
    },
    cancel() {
      dl.dispose();
    },
  }, { highWaterMark: 0 });
  Object.defineProperty(stream, "verifiesSha256", { value: dl.verifiesSha256, enumerable: true });
  return stream as HttpStream;
}

/** The state of one resumable download. */
class Download {
  readonly verifiesSha256: boolean;
  #pos: number;
  #skip = 0;
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  #attempt?: AbortController;
  #atEnd = false;
  #failures = 0;
  #total?: number;
  #etag?: string;
  readonly #hasher?: Sha256Stream;
  readonly #onAbort = () => this.#attempt?.abort(this.signal?.reason);

  constructor(
    readonly s: Settings,
    readonly url: string,
    readonly path: string,
    offset: number,
    readonly expectedSize: number | undefined,
    readonly sha: string | undefined,
    readonly signal: AbortSignal | undefined,
    readonly onLastModified?: (ms: number) => void,
  ) {
    this.#pos = offset;
    this.verifiesSha256 = sha !== undefined && offset === 0;
    if (this.verifiesSha256) this.#hasher = sha256Stream();
    signal?.addEventListener("abort", this.#onAbort);
  }

  /** Makes the first request (with retries); nothing is read yet. */
  start(): Promise<void> {
    if (this.expectedSize !== undefined && this.#pos === this.expectedSize && this.#pos > 0) {
      this.#atEnd = true; // nothing left to fetch
      return Promise.resolve();
    }
    return this.#retrying(() => this.#connect());
  }

  /** The next piece of content, or null at its (verified) end. */
  next(): Promise<Uint8Array | null> {
    return this.#retrying(() => this.#step());
  }

  /** Releases the connection and the signal listener. */
  dispose(): void {
    this.#release();
    this.signal?.removeEventListener("abort", this.#onAbort);
  }

  async #retrying<T>(op: () => Promise<T>): Promise<T> {
    for (;;) {
      this.signal?.throwIfAborted();
      try {
        return await op();
      } catch (e) {
        this.#release();
        this.signal?.throwIfAborted();
        if (!(e instanceof Retryable)) throw e;
        this.#failures++;
        if (this.#failures > this.s.retries) {
          throw new SourceError(
            `${this.url}: gave up at byte ${this.#pos} after ${this.#failures} failed attempt${
              this.#failures === 1 ? "" : "s"
            } in a row; last cause: ${e.message}`,
            this.path,
            { cause: e },
          );
        }
        await sleep(backoff(this.s, this.#failures, e), this.signal);
      }
    }
  }

  #release(): void {
    const r = this.#reader;
    this.#reader = undefined;
    r?.cancel().catch(() => {});
    this.#attempt?.abort();
    this.#attempt = undefined;
  }

  async #connect(): Promise<void> {
    const ctl = new AbortController();
    this.#attempt = ctl;
    if (this.signal?.aborted) ctl.abort(this.signal.reason);
    const headers = new Headers({ "accept-encoding": "identity" });
    const pos = this.#pos;
    if (pos > 0) headers.set("range", `bytes=${pos}-`);
    const timer = setTimeout(
      () => ctl.abort(new Retryable(`no response within ${this.s.timeoutMs} ms`)),
      this.s.timeoutMs,
    );
    let res: Response;
    try {
      res = await this.s.fetch(this.url, { headers, signal: ctl.signal });
    } catch (e) {
      this.signal?.throwIfAborted();
      if (ctl.signal.reason instanceof Retryable) throw ctl.signal.reason;
      throw new Retryable(`request failed: ${errText(e)}`, undefined, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    const drop = () => res.body?.cancel().catch(() => {});
    const st = res.status;
    let total: number | undefined;
    if (st === 206) {
      const cr = parseContentRange(res.headers.get("content-range"));
      if (cr?.start === undefined) {
        drop();
        throw new SourceError(`${this.url}: HTTP 206 without a usable Content-Range`, this.path);
      }
      if (cr.start > pos) {
        drop();
        throw new SourceError(
          `${this.url}: asked for bytes from ${pos}, the server sent from ${cr.start}`,
          this.path,
        );
      }
      this.#skip = pos - cr.start;
      total = cr.total;
    } else if (st === 200) {
      this.#skip = pos; // the server ignored Range: skip what was delivered already
      const len = res.headers.get("content-length");
      if (
        len !== null && /^\d+$/.test(len.trim()) && res.headers.get("content-encoding") === null
      ) {
        total = Number(len.trim());
      }
    } else if (st === 416) {
      drop();
      const cr = parseContentRange(res.headers.get("content-range"));
      if (cr?.total === undefined || cr.total > pos) {
        throw new HttpStatusError(st, res.statusText, this.url, this.path);
      }
      total = cr.total;
      this.#atEnd = true;
    } else if (isRetryableStatus(st)) {
      drop();
      throw new Retryable(
        `HTTP ${st}${res.statusText ? ` ${res.statusText}` : ""}`,
        retryAfterMs(res.headers.get("retry-after"), this.s.maxBackoffMs),
      );
    } else {
      drop();
      throw new HttpStatusError(st, res.statusText, this.url, this.path);
    }
    if (total !== undefined) {
      if (this.expectedSize !== undefined && total !== this.expectedSize) {
        drop();
        throw new SourceError(
          `${this.url}: size mismatch: expected ${this.expectedSize}, got ${total} (the server's size)`,
          this.path,
        );
      }
      if (this.#total !== undefined && total !== this.#total) {
        drop();
        throw new SourceError(
          `${this.url}: changed on the server while downloading (size ${this.#total}, now ${total})`,
          this.path,
        );
      }
      if (pos > total) {
        drop();
        throw new SourceError(
          `${this.url}: offset ${pos} is past the end (${total} bytes)`,
          this.path,
        );
      }
      this.#total = total;
    }
    if (st === 200 || st === 206) {
      const lm = res.headers.get("last-modified");
      const t = lm === null ? NaN : Date.parse(lm);
      if (Number.isFinite(t) && t > 0) this.onLastModified?.(t);
    }
    const etag = res.headers.get("etag");
    if (etag !== null && st !== 416) {
      if (this.#etag !== undefined && etag !== this.#etag) {
        drop();
        throw new SourceError(
          `${this.url}: changed on the server while downloading (ETag ${this.#etag}, now ${etag})`,
          this.path,
        );
      }
      this.#etag = etag;
    }
    if (!this.#atEnd) {
      this.#reader = (res.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }))
        .getReader();
    }
    // Headers arrived: that attempt got through, but only bytes count as progress.
  }

  async #read(reader: ReadableStreamDefaultReader<Uint8Array>) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Retryable(`stalled: no data for ${this.s.timeoutMs} ms`)),
        this.s.timeoutMs,
      );
    });
    try {
      return await Promise.race([
        reader.read().catch((e) => {
          this.signal?.throwIfAborted();
          throw new Retryable(`connection lost: ${errText(e)}`, undefined, { cause: e });
        }),
        stalled,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #step(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#atEnd) return this.#finish();
      if (this.#reader === undefined) await this.#connect();
      const reader = this.#reader;
      if (reader === undefined) continue; // a 416 at the end
      const r = await this.#read(reader);
      if (r.done) {
        this.#reader = undefined;
        this.#attempt = undefined;
        if (this.#skip > 0) {
          throw new SourceError(
            `${this.url}: offset ${this.#pos} is past the end (${this.#pos - this.#skip} bytes)`,
            this.path,
          );
        }
        if (this.#total !== undefined && this.#pos < this.#total) {
          throw new Retryable(`connection closed at byte ${this.#pos} of ${this.#total}`);
        }
        if (
          this.#total === undefined && this.expectedSize !== undefined &&
          this.#pos < this.expectedSize
        ) {
          // A body without a length that ends early may be a drop: ask again from here.
          throw new Retryable(
            `body ended at byte ${this.#pos}, expected ${this.expectedSize} bytes`,
          );
        }
        this.#atEnd = true;
        continue;
      }
      let chunk = r.value;
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.byteLength);
        this.#skip -= n;
        chunk = chunk.subarray(n);
      }
      if (chunk.byteLength === 0) continue;
      const end = this.#pos + chunk.byteLength;
      if (this.expectedSize !== undefined && end > this.expectedSize) {
        throw new SourceError(
          `${this.url}: size mismatch: expected ${this.expectedSize}, got at least ${end}`,
          this.path,
        );
      }
      this.#hasher?.update(chunk);
      this.#pos = end;
      this.#failures = 0;
      return chunk;
    }
  }

  #finish(): null {
    this.#release();
    if (this.expectedSize !== undefined && this.#pos !== this.expectedSize) {
      throw new SourceError(
        `${this.url}: size mismatch: expected ${this.expectedSize}, got ${this.#pos}`,
        this.path,
      );
    }
    if (this.#hasher !== undefined && this.sha !== undefined) {
      const got = this.#hasher.hex();
      if (got !== this.sha) {
        throw new SourceError(
          `${this.url}: sha256 mismatch: expected ${this.sha}, got ${got}`,
          this.path,
        );
      }
    }
    return null;
  }
}
