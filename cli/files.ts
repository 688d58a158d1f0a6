/**
 * The everyday commands: put, get, ls, cat, rm, mv, mkdir, du, copies, gc, checkpoint, attach.
 *
 * @module
 */
import { formatBytes } from "../units.ts";
import { type Command, Option } from "commander";
import type { Entry } from "../store/index_db.ts";
import { resolve } from "node:path";
import { isOsError, PifsError, printable } from "../errors.ts";
import { NOT_UTF8, openLocalFile, specialKind, walkLocalTree } from "../pipelines/folder.ts";
import {
  baseName,
  checkWritable,
  normalizePath,
  parentOf,
  PathError,
  SNAPSHOTS_DIR,
} from "../store/namespace.ts";
import type { NamespaceView } from "../store/snapshots.ts";
import picomatch from "picomatch";

type Matcher = (path: string) => boolean;
import { CHECKPOINT_ENTRIES, type PutStats, Store, type StoreOptions } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { MultiProgress } from "./_progress.ts";
import { info, intOption, UsageError } from "./_util.ts";
import { writeLocalFile } from "../store/local.ts";
import { PutQueue } from "../store/put.ts";

interface Common {
  cluster?: string;
  copies?: number;
  degraded?: boolean;
  json?: boolean;
}

async function withStore<T>(o: Common, fn: (s: Store) => Promise<T>): Promise<T> {
  const dir = clusterDir(o.cluster);
  const opts: StoreOptions = { copies: o.copies, degraded: o.degraded, log: info };
  const s = await Store.open(dir, opts);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

function need(v: NamespaceView, path: string): Entry {
  const e = v.get(path);
  if (!e) throw new UsageError(`${path}: no such file or directory in the store`);
  return e;
}

/** The namespace `path` is read from: the store's, or under /.snapshots a snapshot's. */
async function viewOf(s: Store, path: string): Promise<NamespaceView> {
  const v = await s.view(path);
  if (!v) {
    const name = path.split("/")[2];
    throw new UsageError(`${name}: no such snapshot (see pifs snapshots)`);
  }
  return v;
}

/** What {@linkcode writeEntries} did. */
interface Written {
  files: number;
  bytes: number;
  notWritten: NotStored[];
}

/**
 * Writes `rows` (a walk of the remote directory or file `src`, parents
 * before children) to the local path `dest`, as cp -r would: files through
 * the one local-file writer, directories with their modes and (afterwards)
 * times, links as links. An entry that cannot be written is named and
 * skipped with everything under it; the rest is written. `dryRun`: nothing
 * is written, each file is passed to `onFile`.
 */
async function writeEntries(
  s: Store,
  rows: Entry[],
  src: string,
  dest: string,
  opts: { dryRun?: boolean; onFile?: (local: string, e: Entry) => void } = {},
): Promise<Written> {
  const notWritten: NotStored[] = [];
  const refused = new Set<string>(); // store directories not written: nothing under them is
  let files = 0, bytes = 0;
  for (const x of rows) {
    if (refused.has(parentOf(x.path))) {
      if (x.type === "d") refused.add(x.path);
      continue;
    }
    const lp = dest + x.path.slice(src.length);
    if (x.type === "f") opts.onFile?.(lp, x);
    if (opts.dryRun) {
      if (x.type === "f") files++, bytes += x.size;
      continue;
    }
    try {
      if (x.type === "d") await makeLocalDir(lp, x.mode);
      else if (x.type === "l") {
        await Deno.remove(lp).catch(() => {});
        await Deno.symlink(x.target!, lp);
      } else {
        await writeLocalFile(s, x.manifest!, lp, x.mode, x.mtime);
        files++;
        bytes += x.size;
      }
    } catch (e) {
      if (!(e instanceof PifsError) && !isOsError(e)) throw e;
      notWritten.push({ path: lp, message: localErrorText(e) });
      if (x.type === "d") refused.add(x.path);
    }
  }
  if (!opts.dryRun) {
    for (const x of [...rows].reverse()) {
      if (x.type === "d" && !refused.has(x.path)) {
        const lp = dest + x.path.slice(src.length);
        await Deno.utime(lp, new Date(x.mtime), new Date(x.mtime)).catch(() => {});
      }
    }
  }
  return { files, bytes, notWritten };
}

/** The one-line summary (and the entries not written) of a get or a restore; exit 1 if any. */
function reportWritten(
  w: Written,
  secs: number,
  json: boolean,
  extra: Record<string, unknown> = {},
) {
  if (json) {
    console.log(JSON.stringify({
      ...extra,
      files: w.files,
      bytes: w.bytes,
      files_failed: w.notWritten.length,
      failed: w.notWritten,
      seconds: Number(secs.toFixed(3)),
    }));
  } else {
    for (const n of w.notWritten) info(`not written: ${printable(n.path)}: ${n.message}`);
    info(
      `${extra.dry_run ? "would write" : "wrote"} ${plural(w.files, "file")}, ${
        formatBytes(w.bytes)
      } in ${secs.toFixed(1)} s` +
        (w.notWritten.length ? `; ${w.notWritten.length} not written (listed above)` : ""),
    );
  }
  if (w.notWritten.length) Deno.exitCode = 1;
}

function modeString(e: Entry): string {
  const bits = "rwxrwxrwx";
  let m = "";
  for (let i = 0; i < 9; i++) m += e.mode & (1 << (8 - i)) ? bits[i] : "-";
  return (e.type === "d" ? "d" : e.type === "l" ? "l" : "-") + m;
}

function lsLine(e: Entry, long: boolean, shown?: string): string {
  const name = shown ?? (baseName(e.path) || "/");
  if (!long) return name + (e.type === "d" ? "/" : "");
  const t = new Date(e.mtime).toISOString().replace("T", " ").slice(0, 19);
  const tail = e.type === "d" ? "/" : e.type === "l" ? ` -> ${e.target}` : "";
  return `${modeString(e)} ${String(e.size).padStart(12)} ${t} ${name}${tail}`;
}

/** A local path named on the command line, or an entry under it, that was not stored. */
interface NotStored {
  /** The local path. */
  path: string;
  /** Why. */
  message: string;
}

async function localStat(p: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && p.includes("\uFFFD")) {
      throw new UsageError(`${p}: ${NOT_UTF8}`);
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${p}: no such local file or directory`);
    }
    if (e instanceof Deno.errors.PermissionDenied) throw new UsageError(`${p}: permission denied`);
    throw e;
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** One thing `put` stores: a file, a directory or a symbolic link, at `dest`. */
type PutItem =
  | { kind: "file"; local: string; dest: string; size: number; mode: number; mtime: number }
  | { kind: "dir"; dest: string; mode: number; mtime: number }
  | { kind: "symlink"; dest: string; target: string; mtime: number };

/**
 * What `put` stores, in order (a directory before what it holds), from the
 * LOCAL paths `infos`: each walked by the one local walk of pifs
 * ({@linkcode walkLocalTree}). An entry that cannot be stored goes to
 * `fail` with why, and the rest of the plan stands.
 */
async function planPut(
  s: Store,
  infos: { path: string; info: Deno.FileInfo }[],
  target: string,
  intoDir: boolean,
  fail: (path: string, message: string) => void,
): Promise<PutItem[]> {
  const plan: PutItem[] = [];
  // What this put has planned: the index does not show it, and a file must
  // not replace a directory (or the other way round) that an earlier LOCAL made.
  const planned = new Map<string, "d" | "f" | "l">();
  const kindAt = (p: string) => planned.get(p) ?? s.index.get(p)?.type;
  const bits = (m: number | null | undefined, dflt: number) => (m ?? dflt) & 0o777;
  for (const x of infos) {
    // The local name, even for "." or "..": the real directory's name.
    const localName = baseName(await Deno.realPath(x.path));
    let dest: string;
    try {
      dest = intoDir ? checkWritable(normalizePath(`${target}/${localName}`)) : target;
    } catch (e) {
      if (!(e instanceof PathError)) throw e;
      fail(x.path, e.message);
      continue;
    }
    if (parentOf(dest) !== "/" && kindAt(parentOf(dest)) === "f") {
      fail(x.path, `${parentOf(dest)}: is a file, not a directory`);
      continue;
    }
    const mtime = x.info.mtime?.getTime() ?? Date.now();
    if (x.info.isFile) {
      if (kindAt(dest) === "d") {
        fail(x.path, `${dest}: is a directory`);
        continue;
      }
      planned.set(dest, "f");
      const mode = bits(x.info.mode, 0o644);
      plan.push({ kind: "file", local: x.path, dest, size: x.info.size, mode, mtime });
      continue;
    }
    if (!x.info.isDirectory) {
      fail(x.path, `${specialKind(x.info)} skipped (not a regular file)`);
      continue;
    }
    if (kindAt(dest) === "f" || kindAt(dest) === "l") {
      fail(x.path, `${dest}: is a file, not a directory`);
      continue;
    }
    if (!kindAt(dest)) plan.push({ kind: "dir", dest, mode: bits(x.info.mode, 0o755), mtime });
    planned.set(dest, "d");
    const local = (rel: string) => `${x.path === "/" ? "" : x.path}/${rel}`;
    const walk = walkLocalTree(
      resolve(x.path),
      { directories: true, keepSymlinks: true },
      (p) => fail(local(p.path), p.message),
    );
    const refused = new Set<string>(); // directories not stored: nothing under them is
    for await (const it of walk) {
      const cut = it.relPath.lastIndexOf("/");
      if (cut > 0 && refused.has(it.relPath.slice(0, cut))) {
        if (it.type === "dir") refused.add(it.relPath);
        continue;
      }
      let rp: string;
      try {
        rp = normalizePath(`${dest}/${it.relPath}`);
      } catch (e) {
        if (!(e instanceof PathError)) throw e;
        fail(local(it.relPath), e.message);
        if (it.type === "dir") refused.add(it.relPath);
        continue;
      }
      const cur = kindAt(rp);
      if (it.type === "dir") {
        if (cur === "f" || cur === "l") {
          fail(local(it.relPath), `${rp}: is a file, not a directory`);
          refused.add(it.relPath);
          continue;
        }
        if (!cur) {
          plan.push({ kind: "dir", dest: rp, mode: bits(it.mode, 0o755), mtime: it.mtimeMs });
        }
        planned.set(rp, "d");
      } else if (cur === "d") {
        fail(local(it.relPath), `${rp}: is a directory`);
      } else if (it.type === "symlink") {
        planned.set(rp, "l");
        plan.push({ kind: "symlink", dest: rp, target: it.target, mtime: it.mtimeMs });
      } else {
        planned.set(rp, "f");
        const mode = bits(it.mode, 0o644);
        plan.push({
          kind: "file",
          local: it.absPath,
          dest: rp,
          size: it.size,
          mode,
          mtime: it.mtimeMs,
        });
      }
    }
  }
  return plan;
}

/** Writes all of `b` to `w`. */
async function writeAll(w: { write(b: Uint8Array): Promise<number> }, b: Uint8Array) {
  for (let off = 0; off < b.length;) off += await w.write(b.subarray(off));
}

/** Refuses a LOCAL whose parent directory does not exist or is not a directory (as cp does). */
async function checkLocalParent(path: string): Promise<void> {
  const cut = path.replace(/\/+$/, "").lastIndexOf("/");
  const parent = cut < 0 ? "." : cut === 0 ? "/" : path.slice(0, cut);
  const st = await Deno.stat(parent).catch(() => undefined);
  if (!st) throw new UsageError(`${path}: cannot create it: ${parent}: no such directory`);
  if (!st.isDirectory) {
    throw new UsageError(`${path}: cannot create it: ${parent}: not a directory`);
  }
}

/** Makes the local directory `path` (its parent exists); one already there is kept. */
async function makeLocalDir(path: string, mode: number): Promise<void> {
  try {
    await Deno.mkdir(path, { mode });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    if (!(await Deno.stat(path)).isDirectory) {
      throw new UsageError("exists and is not a directory");
    }
  }
}

/** An error while writing to the local disk, in words (the path is said apart). */
function localErrorText(e: unknown): string {
  if (e instanceof Deno.errors.NotADirectory) return "a parent is not a directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.AlreadyExists) return "exists and is not a directory";
  return (e as Error).message;
}

/** Adds the file commands to `program`. */
export function registerFiles(program: Command): void {
  const clusterOpt = () =>
    new Option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)");
  const copiesOpt = () =>
    new Option("--copies <r>", "copies of each chunk on distinct Pis (default 2)").argParser(
      intOption("--copies", 1, 64),
    );

  program.command("put")
    .description(
      "store local files and directories (recursively) at REMOTE, as cp -r would: into REMOTE " +
        "if it is a directory, else as REMOTE. Symbolic links inside a directory are stored as " +
        "links. An entry that cannot be stored (unreadable, a special file, a name the store " +
        "refuses) is named and skipped, the rest is stored, and the exit code is 1",
    )
    .argument("<paths...>", "LOCAL... REMOTE: local files or directories, then the remote path")
    .addOption(clusterOpt())
    .addOption(copiesOpt())
    .option("--degraded", "accept fewer copies when Pis are down (recorded for repair)")
    .option("--json", "print a JSON summary")
    .action(async (paths: string[], o) => {
      if (paths.length < 2) throw new UsageError("put needs LOCAL... REMOTE (at least two paths)");
      const locals = paths.slice(0, -1), remote = paths[paths.length - 1];
      const target = checkWritable(normalizePath(remote));
      const infos: { path: string; info: Deno.FileInfo }[] = [];
      for (const l of locals) {
        infos.push({ path: l.replace(/\/+$/, "") || "/", info: await localStat(l) });
      }
      const stats: PutStats = { files: 0, bytesRead: 0, chunksNew: 0, chunksDeduplicated: 0 };
      const notStored: NotStored[] = [];
      const fail = (path: string, message: string) => notStored.push({ path, message });
      const t0 = performance.now();
      await withStore(o, async (s) => {
        const existing = s.index.get(target);
        const intoDir = existing?.type === "d" || remote.endsWith("/") || locals.length > 1;
        if (existing?.type === "f" && (locals.length > 1 || infos[0].info.isDirectory)) {
          throw new UsageError(
            `${target}: is a file; cannot put a directory or several files there`,
          );
        }
        const plan = await planPut(s, infos, target, intoDir, fail);
        let total = 0;
        for (const p of plan) if (p.kind === "file") total += p.size;
        let done = 0;
        const copies = o.copies ?? s.copies;
        const wire0 = s.wireBytes;
        const bar = new MultiProgress(() => [
          // Bytes on the links / copies: the job's share, before whole files land.
          ["put", Math.min(total, Math.max(done, (s.wireBytes - wire0) / copies)), total],
          ...[...s.nodes.values()].map((st): [string, number] => [
            `node ${st.entry.id}${st.client ? "" : " DOWN"}`,
            st.client?.bytesWritten ?? 0,
          ]),
        ]);
        const localOf = new Map<string, string>();
        const stored = new Set<string>();
        // Many files in flight (store/put.ts says why), each visible once whole;
        // a file that cannot be read is named and the others go on.
        const q = new PutQueue(s, {
          stats,
          onBytes: (n) => done += n,
          onFile: (p) => stored.add(p),
          onFailed: (p, e) => {
            fail(localOf.get(p) ?? p, e.reason);
          },
        });
        let fatal: Error | undefined;
        try {
          for (const p of plan) {
            if (p.kind === "dir") q.mkdir(p.dest, p.mode, p.mtime);
            else if (p.kind === "symlink") q.symlink(p.dest, p.target, p.mtime);
            else {
              localOf.set(p.dest, p.local);
              const listed = { size: p.size, mtimeMs: p.mtime };
              await q.add(p.dest, () => openLocalFile(p.local, listed, p.local), {
                size: p.size,
                mode: p.mode,
                mtime: p.mtime,
              });
            }
          }
          await q.finish();
        } catch (e) {
          await q.finish().catch(() => {}); // let the files in flight land or fail first
          fatal = e instanceof Error ? e : new Error(String(e));
        } finally {
          bar.done();
        }
        const secs = (performance.now() - t0) / 1000;
        // Stopped by an error of the store: what it did not get to.
        const failedLocal = new Set(notStored.map((n) => n.path));
        const left = fatal === undefined
          ? []
          : plan.flatMap((p) =>
            p.kind === "file" && !stored.has(p.dest) && !failedLocal.has(p.local) ? [p.local] : []
          );
        const summary = {
          files: stats.files,
          files_failed: notStored.length,
          failed: notStored,
          files_not_reached: left.length,
          not_reached: left,
          bytes_read: stats.bytesRead,
          chunks_new: stats.chunksNew,
          chunks_deduplicated: stats.chunksDeduplicated,
          wire_bytes: s.wireBytes,
          seconds: Number(secs.toFixed(3)),
          complete: fatal === undefined && notStored.length === 0,
        };
        if (o.json) console.log(JSON.stringify(summary));
        else {
          for (const n of notStored) info(`not stored: ${printable(n.path)}: ${n.message}`);
          info(
            `stored ${plural(stats.files, "file")} in ${secs.toFixed(1)} s: ` +
              `${formatBytes(stats.bytesRead)} read, ${stats.chunksNew} chunks sent, ` +
              `${stats.chunksDeduplicated} already stored` +
              (notStored.length ? `; ${notStored.length} not stored (listed above)` : "") +
              (fatal !== undefined
                ? `; stopped by the error below: ${plural(left.length, "file")} not stored`
                : ""),
          );
          if (left.length) {
            const shown = left.slice(0, 10).map(printable).join(", ");
            info(`not stored: ${shown}${left.length > 10 ? `, and ${left.length - 10} more` : ""}`);
          }
        }
        if (fatal !== undefined) {
          if (fatal instanceof PifsError && q.failedPath !== undefined) {
            const local = localOf.get(q.failedPath) ?? q.failedPath;
            fatal.message = `${local}: ${fatal.message}`;
          }
          throw fatal;
        }
        if (notStored.length) Deno.exitCode = 1;
      });
    });

  program.command("get")
    .description(
      "copy REMOTE (a file or a directory tree; /.snapshots/NAME/... from a snapshot) to LOCAL, " +
        "as cp -r would (LOCAL's parent must exist; - writes a file to standard output). An " +
        "entry that cannot be written is named " +
        "and skipped, the rest is written, and the exit code is 1",
    )
    .argument("<remote>")
    .argument("<local>")
    .addOption(clusterOpt())
    .option("--json", "print a JSON summary")
    .action(async (remote: string, local: string, o) => {
      const src = normalizePath(remote);
      await withStore(o, async (s) => {
        const v = await viewOf(s, src);
        const top = need(v, src);
        if (local === "-") {
          if (top.type !== "f") {
            throw new UsageError(
              `${src}: is a ${
                top.type === "d" ? "directory" : "symbolic link"
              }: only a file can be written to standard output`,
            );
          }
          const m = await s.manifestOf(top.manifest!);
          for await (const b of s.fileStream(m)) await writeAll(Deno.stdout, b);
          return;
        }
        const lst = await Deno.stat(local).catch(() => undefined);
        const dest = lst?.isDirectory
          ? `${local.replace(/\/+$/, "")}/${baseName(src) || "root"}`
          : local;
        await checkLocalParent(dest);
        const t0 = performance.now();
        const w = await writeEntries(s, v.walk(src), src, dest);
        reportWritten(w, (performance.now() - t0) / 1000, !!o.json);
      });
    });

  program.command("restore")
    .description(
      "write snapshot SNAPSHOT (or the file or directory PATH in it) into the local directory " +
        "DEST (made if missing): files with their modes and times, directories, links. An entry " +
        "that cannot be written is named and skipped, the rest is written, and the exit code is 1",
    )
    .argument("<snapshot>", "SNAPSHOT or SNAPSHOT:PATH (see pifs snapshots)")
    .argument("<dest>", "local directory")
    .option(
      "--include <glob>",
      "only files whose path in the snapshot matches (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      "--exclude <glob>",
      "leave out files whose path in the snapshot matches (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--dry-run", "list what would be written; write nothing")
    .addOption(clusterOpt())
    .option("--json", "print a JSON summary")
    .action(async (spec: string, dest: string, o) => {
      const colon = spec.indexOf(":");
      const name = colon < 0 ? spec : spec.slice(0, colon);
      const inner = colon < 0 ? "/" : normalizePath(spec.slice(colon + 1) || "/");
      if (!name) throw new UsageError(`${spec}: no snapshot named (SNAPSHOT or SNAPSHOT:PATH)`);
      const base = `/${SNAPSHOTS_DIR}/${name}`;
      const src = inner === "/" ? base : base + inner;
      const include = (o.include ?? []).map((g: string) => picomatch(g, { dot: true }));
      const exclude = (o.exclude ?? []).map((g: string) => picomatch(g, { dot: true }));
      await withStore(o, async (s) => {
        const v = await viewOf(s, base);
        const top = need(v, src);
        const out = dest.replace(/\/+$/, "") || "/";
        // What goes into DEST: PATH's contents (a directory), or PATH itself (a file or link).
        const from = top.type === "d" ? src : parentOf(src);
        const rel = (p: string) => p.slice(base.length + 1); // the path in the snapshot
        let rows = top.type === "d" ? v.walk(src) : [top];
        if (include.length || exclude.length) {
          const wanted = rows.filter((e) =>
            e.type !== "d" && (!include.length || include.some((m: Matcher) => m(rel(e.path)))) &&
            !exclude.some((m: Matcher) => m(rel(e.path)))
          );
          // Their directories, and no others.
          const dirs = new Set<string>();
          for (const e of wanted) {
            for (let d = parentOf(e.path); d.length > from.length; d = parentOf(d)) dirs.add(d);
          }
          const keep = new Set(wanted);
          rows = rows.filter((e) => e.type === "d" ? dirs.has(e.path) : keep.has(e));
        } else if (top.type === "d") rows = rows.filter((e) => e.path !== src);
        const at = await Deno.stat(out).catch(() => undefined);
        if (at && !at.isDirectory) throw new UsageError(`${out}: exists and is not a directory`);
        if (!o.dryRun) await Deno.mkdir(out, { recursive: true });
        const t0 = performance.now();
        const w = await writeEntries(s, rows, from, out, {
          dryRun: !!o.dryRun,
          onFile: o.dryRun && !o.json ? (lp) => console.log(printable(lp)) : undefined,
        });
        reportWritten(w, (performance.now() - t0) / 1000, !!o.json, {
          snapshot: name,
          ...(o.dryRun ? { dry_run: true } : {}),
        });
      });
    });

  program.command("ls")
    .description("list a directory of the store (default /); /.snapshots/NAME/... lists a snapshot")
    .argument("[path]", "remote path", "/")
    .option("-l, --long", "mode, size, time")
    .option("-R, --recursive", "everything under the directory, by path (relative to it)")
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, async (s) => {
        const v = await viewOf(s, p);
        const e = need(v, p);
        const rows = e.type !== "d"
          ? [e]
          : o.recursive
          ? v.walk(p).filter((x) => x.path !== p)
          : v.list(p);
        if (o.recursive && !o.json) {
          const from = p === "/" ? 1 : p.length + 1;
          for (const r of rows) {
            // The path relative to the directory instead of the name.
            console.log(lsLine(r, !!o.long, r.path.slice(from) || baseName(r.path)));
          }
          return;
        }
        if (o.json) {
          console.log(JSON.stringify(rows.map((r) => ({
            name: baseName(r.path),
            path: r.path,
            type: r.type === "d" ? "dir" : r.type === "l" ? "symlink" : "file",
            ...(r.type === "l" ? { target: r.target } : {}),
            size: r.size,
            mode: r.mode,
            mtime: r.mtime,
            copies: r.copies,
          }))));
        } else for (const r of rows) console.log(lsLine(r, !!o.long));
        return;
      });
    });

  program.command("cat")
    .description(
      "write a stored file (or /.snapshots/NAME/FILE, as a snapshot holds it) to standard output",
    )
    .argument("<path>")
    .addOption(clusterOpt())
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, async (s) => {
        const e = need(await viewOf(s, p), p);
        if (e.type !== "f") {
          throw new UsageError(`${p}: is a ${e.type === "d" ? "directory" : "symbolic link"}`);
        }
        const m = await s.manifestOf(e.manifest!);
        for await (const b of s.fileStream(m)) await Deno.stdout.write(b);
      });
    });

  program.command("mkdir")
    .description("make a directory (and its parents)")
    .argument("<path>")
    .addOption(clusterOpt())
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, (s) => s.mkdir(p));
    });

  program.command("rm")
    .description("remove a file, or a directory tree with -r (space returns after `gc`)")
    .argument("<path>")
    .option("-r, --recursive", "remove directories and their contents")
    .addOption(clusterOpt())
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, (s) => s.remove(p, { recursive: !!o.recursive }));
    });

  program.command("mv")
    .description("move or rename; into FROM's target if it is a directory")
    .argument("<from>")
    .argument("<to>")
    .addOption(clusterOpt())
    .action(async (from: string, to: string, o) => {
      const a = normalizePath(from);
      let b = normalizePath(to);
      await withStore(o, async (s) => {
        // As mv: into TO when it is a directory.
        if (a !== "/" && s.index.get(b)?.type === "d") b = normalizePath(`${b}/${baseName(a)}`);
        await s.move(a, b);
      });
    });

  program.command("du")
    .description("files and bytes under a path")
    .argument("[path]", "remote path", "/")
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, (s) => {
        need(s.index, p);
        const u = s.index.usage(p);
        if (o.json) console.log(JSON.stringify({ path: p, ...u }));
        else console.log(`${formatBytes(u.bytes)}\t${u.files} files\t${p}`);
        return Promise.resolve();
      });
    });

  program.command("copies")
    .description(
      "per-path copies: with PATH and R, new files at or under PATH get R copies of each " +
        "chunk (existing files keep theirs until repair); with PATH alone, what applies " +
        "there; with nothing, every rule",
    )
    .argument("[path]", "remote path")
    .argument("[r]", "copies (1 .. number of Pis)")
    .option("--clear", "remove the rule at PATH")
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (path: string | undefined, r: string | undefined, o) => {
      await withStore(o, async (s) => {
        if (path === undefined) {
          const rules = s.index.policies();
          if (o.json) console.log(JSON.stringify({ default: s.copies, rules }));
          else {
            console.log(`default\t${s.copies}`);
            for (const x of rules) console.log(`${x.path}\t${x.copies}`);
          }
          return;
        }
        const p = normalizePath(path);
        if (o.clear || r !== undefined) {
          if (o.clear && r !== undefined) {
            throw new UsageError("copies: give R or --clear, not both");
          }
          const n = o.clear ? 0 : intOption("copies R", 1, s.nodes.size)(r!);
          if (o.clear && !s.index.policies().some((x) => x.path === p)) {
            throw new UsageError(`${p}: no copies rule to clear`);
          }
          await s.setCopies(p, n);
        }
        const eff = s.copiesFor(p);
        if (o.json) console.log(JSON.stringify({ path: p, copies: eff }));
        else console.log(`${p}\t${eff}`);
      });
    });

  program.command("gc")
    .description("delete chunks that no file references, first stored longer ago than --grace")
    .option(
      "--grace <seconds>",
      "keep chunks first stored less than this long ago (a put may still need them)",
      intOption("--grace", 0, 1e9),
      3600,
    )
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      await withStore(o, async (s) => {
        const r = await s.gc(o.grace * 1000);
        if (o.json) {
          console.log(JSON.stringify({ chunks: r.chunks, copies_deleted: r.copiesDeleted }));
        } else info(`gc: ${r.chunks} unreferenced chunks, ${r.copiesDeleted} copies deleted`);
      });
    });

  program.command("checkpoint")
    .description(
      "write the namespace to the Pis as content-addressed objects (a tree object per " +
        "directory and a root), commit a checkpoint entry naming it, and trim every node's " +
        "journal to that entry; also done automatically every " +
        `${CHECKPOINT_ENTRIES} journal entries ($PIFS_CHECKPOINT_ENTRIES)`,
    )
    .addOption(clusterOpt())
    .addOption(copiesOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      await withStore(o, async (s) => {
        const r = await s.checkpoint();
        const down = [...s.nodes.values()].filter((n) => !n.client).map((n) => n.entry.id);
        if (o.json) console.log(JSON.stringify({ ...r, down }));
        else {
          info(
            `checkpoint ${r.gen} at journal entry ${r.s}: ${r.objects} objects (${r.objectsNew} ` +
              `sent), journals now start at byte ${r.offset} on nodes ${
                r.trimmed.join(", ") || "none"
              }` + (down.length ? `; down (trimmed when they are back): ${down.join(", ")}` : ""),
          );
        }
      });
    });

  program.command("attach")
    .description("rebuild this host's index from the cards alone (the Pis hold the truth)")
    .addOption(clusterOpt())
    .action(async (o) => {
      const dir = clusterDir(o.cluster);
      for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
        await Deno.remove(`${dir}/${f}`).catch(() => {});
      }
      await withStore(o, (s) => {
        const u = s.index.usage("/");
        info(
          `attached: ${u.files} files, ${
            formatBytes(u.bytes)
          }; ${s.up().length} of ${s.nodes.size} nodes answer`,
        );
        return Promise.resolve();
      });
    });
}
