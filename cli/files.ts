/**
 * The everyday commands: put, get, ls, cat, rm, mv, mkdir, du, copies, gc, checkpoint, attach.
 *
 * @module
 */
import { type Command, Option } from "commander";
import type { Entry } from "../store/index_db.ts";
import { baseName, normalizePath, parentOf } from "../store/namespace.ts";
import { CHECKPOINT_ENTRIES, type PutStats, Store, type StoreOptions } from "../store/store.ts";
import { clusterDir } from "../store/cluster.ts";
import { MultiProgress } from "./_progress.ts";
import { humanBytes, info, intOption, UsageError } from "./_util.ts";
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

function need(s: Store, path: string): Entry {
  const e = s.index.get(path);
  if (!e) throw new UsageError(`${path}: no such file or directory in the store`);
  return e;
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

async function localStat(p: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${p}: no such local file or directory`);
    }
    throw e;
  }
}

/** Local files under `root` (recursively), with their paths relative to it. */
async function* walkLocal(
  root: string,
  rel = "",
): AsyncGenerator<{ abs: string; rel: string; info: Deno.FileInfo }> {
  const abs = rel ? `${root}/${rel}` : root;
  const st = await Deno.lstat(abs);
  if (st.isSymlink) return; // symlinks are not stored yet; skipped, not followed
  yield { abs, rel, info: st };
  if (st.isDirectory) {
    const names: string[] = [];
    for await (const d of Deno.readDir(abs)) names.push(d.name);
    names.sort();
    for (const n of names) yield* walkLocal(root, rel ? `${rel}/${n}` : n);
  }
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
        "if it is a directory, else as REMOTE",
    )
    .argument("<paths...>", "LOCAL... REMOTE: local files or directories, then the remote path")
    .addOption(clusterOpt())
    .addOption(copiesOpt())
    .option("--degraded", "accept fewer copies when Pis are down (recorded for repair)")
    .option("--json", "print a JSON summary")
    .action(async (paths: string[], o) => {
      if (paths.length < 2) throw new UsageError("put needs LOCAL... REMOTE (at least two paths)");
      const locals = paths.slice(0, -1), remote = paths[paths.length - 1];
      const target = normalizePath(remote);
      const infos: { path: string; info: Deno.FileInfo }[] = [];
      for (const l of locals) {
        infos.push({ path: l.replace(/\/+$/, "") || "/", info: await localStat(l) });
      }
      const stats: PutStats = { files: 0, bytesRead: 0, chunksNew: 0, chunksDeduplicated: 0 };
      const t0 = performance.now();
      await withStore(o, async (s) => {
        const existing = s.index.get(target);
        const intoDir = existing?.type === "d" || remote.endsWith("/") || locals.length > 1;
        if (existing?.type === "f" && (locals.length > 1 || infos[0].info.isDirectory)) {
          throw new UsageError(
            `${target}: is a file; cannot put a directory or several files there`,
          );
        }
        let total = 0;
        for (const x of infos) {
          for await (const f of walkLocal(x.path)) if (f.info.isFile) total += f.info.size;
        }
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
        // Many files in flight (store/put.ts says why), each visible once whole.
        const q = new PutQueue(s, { stats, onBytes: (n) => done += n });
        // What this put has queued but maybe not committed yet: the index
        // does not show it, and a file must not replace a directory (or the
        // other way round) that an earlier LOCAL made.
        const queued = new Map<string, "d" | "f">();
        try {
          for (const x of infos) {
            // The local name, even for "." or "..": the real directory's name.
            const localName = baseName(await Deno.realPath(x.path));
            const dest = intoDir ? normalizePath(`${target}/${localName}`) : target;
            if (parentOf(dest) !== "/" && s.index.get(parentOf(dest))?.type === "f") {
              throw new UsageError(`${parentOf(dest)}: is a file, not a directory`);
            }
            for await (const f of walkLocal(x.path)) {
              const rp = f.rel ? normalizePath(`${dest}/${f.rel}`) : dest;
              const mtime = f.info.mtime?.getTime() ?? Date.now();
              const mode = (f.info.mode ?? 0o644) & 0o777;
              const cur = queued.get(rp) ?? s.index.get(rp)?.type;
              if (f.info.isDirectory) {
                if (cur === "f") throw new UsageError(`${rp}: is a file, not a directory`);
                if (!cur) q.mkdir(rp, mode, mtime);
                queued.set(rp, "d");
              } else if (f.info.isFile) {
                if (cur === "d") throw new UsageError(`${rp}: is a directory`);
                if (infos.length > 1) queued.set(rp, "f"); // only another LOCAL can clash
                await q.add(rp, async () => (await Deno.open(f.abs, { read: true })).readable, {
                  size: f.info.size,
                  mode,
                  mtime,
                });
              }
            }
          }
          await q.finish();
        } catch (e) {
          await q.finish().catch(() => {}); // let the files in flight land or fail first
          throw e;
        } finally {
          bar.done();
        }
        const secs = (performance.now() - t0) / 1000;
        const summary = {
          files: stats.files,
          bytes_read: stats.bytesRead,
          chunks_new: stats.chunksNew,
          chunks_deduplicated: stats.chunksDeduplicated,
          wire_bytes: s.wireBytes,
          seconds: Number(secs.toFixed(3)),
        };
        if (o.json) console.log(JSON.stringify(summary));
        else {
          info(
            `stored ${stats.files} files, ${humanBytes(stats.bytesRead)} in ${
              secs.toFixed(1)
            } s: ` +
              `${stats.chunksNew} chunks sent, ${stats.chunksDeduplicated} already stored`,
          );
        }
      });
    });

  program.command("get")
    .description("copy REMOTE (a file or a directory tree) to LOCAL, as cp -r would")
    .argument("<remote>")
    .argument("<local>")
    .addOption(clusterOpt())
    .action(async (remote: string, local: string, o) => {
      const src = normalizePath(remote);
      await withStore(o, async (s) => {
        need(s, src);
        const lst = await Deno.stat(local).catch(() => undefined);
        const dest = lst?.isDirectory
          ? `${local.replace(/\/+$/, "")}/${baseName(src) || "root"}`
          : local;
        for (const x of s.index.walk(src)) {
          const lp = dest + x.path.slice(src.length);
          if (x.type === "d") {
            await Deno.mkdir(lp, { recursive: true, mode: x.mode });
            continue;
          }
          if (x.type === "l") {
            await Deno.remove(lp).catch(() => {});
            await Deno.symlink(x.target!, lp);
            continue;
          }
          await writeLocalFile(s, x.manifest!, lp, x.mode, x.mtime);
        }
        for (const x of s.index.walk(src).reverse()) {
          if (x.type === "d") {
            await Deno.utime(dest + x.path.slice(src.length), new Date(x.mtime), new Date(x.mtime));
          }
        }
      });
    });

  program.command("ls")
    .description("list a directory of the store (default /)")
    .argument("[path]", "remote path", "/")
    .option("-l, --long", "mode, size, time")
    .option("-R, --recursive", "everything under the directory, by path (relative to it)")
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, (s) => {
        const e = need(s, p);
        const rows = e.type !== "d"
          ? [e]
          : o.recursive
          ? s.index.walk(p).filter((x) => x.path !== p)
          : s.index.list(p);
        if (o.recursive && !o.json) {
          const from = p === "/" ? 1 : p.length + 1;
          for (const r of rows) {
            // The path relative to the directory instead of the name.
            console.log(lsLine(r, !!o.long, r.path.slice(from) || baseName(r.path)));
          }
          return Promise.resolve();
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
        return Promise.resolve();
      });
    });

  program.command("cat")
    .description("write a stored file to standard output")
    .argument("<path>")
    .addOption(clusterOpt())
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      await withStore(o, async (s) => {
        const e = need(s, p);
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
      await withStore(o, async (s) => {
        const e = s.index.get(p);
        if (e && e.type !== "d") throw new UsageError(`${p}: a file of that name exists`);
        for (let q = parentOf(p); q !== "/"; q = parentOf(q)) {
          const t = s.index.get(q)?.type;
          if (t && t !== "d") {
            throw new UsageError(`${q}: is a file, not a directory`);
          }
        }
        if (!e) await s.commit({ op: "mkdir", p, mode: 0o755, mtime: Date.now() });
      });
    });

  program.command("rm")
    .description("remove a file, or a directory tree with -r (space returns after `gc`)")
    .argument("<path>")
    .option("-r, --recursive", "remove directories and their contents")
    .addOption(clusterOpt())
    .action(async (path: string, o) => {
      const p = normalizePath(path);
      if (p === "/") throw new UsageError("refusing to remove /");
      await withStore(o, async (s) => {
        const e = need(s, p);
        if (e.type === "d" && !o.recursive && s.index.list(p).length > 0) {
          throw new UsageError(`${p}: is a directory (use -r)`);
        }
        await s.commit({ op: "rm", p });
      });
    });

  program.command("mv")
    .description("move or rename; into FROM's target if it is a directory")
    .argument("<from>")
    .argument("<to>")
    .addOption(clusterOpt())
    .action(async (from: string, to: string, o) => {
      const a = normalizePath(from);
      let b = normalizePath(to);
      if (a === "/") throw new UsageError("cannot move /");
      await withStore(o, async (s) => {
        need(s, a);
        if (s.index.get(b)?.type === "d") b = normalizePath(`${b}/${baseName(a)}`);
        if (b === a) return;
        if (b.startsWith(a + "/")) throw new UsageError(`cannot move ${a} into itself (${b})`);
        if (s.index.get(b)?.type === "d") throw new UsageError(`${b}: is a directory`);
        await s.commit({ op: "mv", p: a, to: b, mtime: Date.now() });
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
        need(s, p);
        const u = s.index.usage(p);
        if (o.json) console.log(JSON.stringify({ path: p, ...u }));
        else console.log(`${humanBytes(u.bytes)}\t${u.files} files\t${p}`);
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
          await s.commit({ op: "copies", p, copies: n });
        }
        const eff = s.copiesFor(p);
        if (o.json) console.log(JSON.stringify({ path: p, copies: eff }));
        else console.log(`${p}\t${eff}`);
      });
    });

  program.command("gc")
    .description("delete chunks that no file references, first stored longer ago than --grace")
    .option("--grace <seconds>", "grace period (default 3600)", intOption("--grace", 0, 1e9), 3600)
    .addOption(clusterOpt())
    .option("--json", "machine-readable output")
    .action(async (o) => {
      await withStore(o, async (s) => {
        // What the nodes really hold: a host killed between a node's commit
        // and its own index update must not leave a chunk nobody deletes.
        await s.relist();
        await s.fillMissing(); // every live file's chunk list, before anything is deleted
        const dead = s.index.unreferenced(Date.now() - o.grace * 1000);
        let deleted = 0;
        for (const c of dead) {
          for (const nid of c.nodes) {
            const st = s.nodes.get(nid);
            if (!st?.client) continue;
            await st.client.deleteChunk(c.id);
            s.index.removeLocation(c.id, nid);
            deleted++;
          }
        }
        if (o.json) console.log(JSON.stringify({ chunks: dead.length, copies_deleted: deleted }));
        else info(`gc: ${dead.length} unreferenced chunks, ${deleted} copies deleted`);
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
            humanBytes(u.bytes)
          }; ${s.up().length} of ${s.nodes.size} nodes answer`,
        );
        return Promise.resolve();
      });
    });
}
