/**
 * `pifs mount` and `pifs umount`: the whole store as a FUSE file system
 * (fuse/), read-write (or read-only with `-o ro`).
 *
 * @module
 */
import type { Command } from "commander";
import { clusterDir, readClusterFile } from "../store/cluster.ts";
import { Store } from "../store/store.ts";
import { fuseUnavailable } from "../fuse/ffi.ts";
import { PifsFs } from "../fuse/fs.ts";
import { StoreBackend } from "../fuse/store_backend.ts";
import { info, intOption, UsageError } from "./_util.ts";
import { type CommandServer, serveCommands } from "./_serve.ts";
import { DiskChunkCache } from "../fuse/disk_cache.ts";

/** The file system type of a pifs mount in /proc/mounts. */
export const FSTYPE = "fuse.pifs";

/** A mount as /proc/mounts lists it. */
export interface MountRow {
  /** Source (fsname): `pifs:DIR`, or `pifs`. */
  source: string;
  /** Mount point (absolute). */
  target: string;
  /** File system type. */
  fstype: string;
  /** Options. */
  options: string;
}

/** What the daemon writes to `DIR/mount.json` while it serves. */
interface MountState {
  pid: number;
  mountpoint: string;
  log: string;
  started: string;
}

function unescapeMounts(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** The mounts of this machine. */
export async function mounts(): Promise<MountRow[]> {
  // Deno lets a program read /proc only with --allow-all: cat reads it.
  const o = await new Deno.Command("cat", { args: ["/proc/mounts"], stdin: "null" }).output();
  if (!o.success) {
    throw new Error(`cannot read /proc/mounts: ${new TextDecoder().decode(o.stderr)}`);
  }
  const text = new TextDecoder().decode(o.stdout);
  return text.split("\n").filter((l) => l.trim()).map((l) => {
    const [source, target, fstype, options] = l.split(" ");
    return {
      source: unescapeMounts(source),
      target: unescapeMounts(target),
      fstype,
      options,
    };
  });
}

/**
 * The absolute path of `p` without following a dead mount at its end
 * (stat of such a mount point fails with ENOTCONN): the parent resolved,
 * the last name kept.
 */
async function absPath(p: string): Promise<string> {
  const trimmed = p.replace(/\/+$/, "") || "/";
  if (trimmed === "/") return "/";
  const i = trimmed.lastIndexOf("/");
  const dir = i < 0 ? "." : trimmed.slice(0, i) || "/";
  const name = trimmed.slice(i + 1);
  let real: string;
  try {
    real = await Deno.realPath(dir);
  } catch {
    throw new UsageError(`${p}: its directory ${dir} does not exist`);
  }
  if (name === "." || name === "..") return await Deno.realPath(trimmed);
  return real === "/" ? `/${name}` : `${real}/${name}`;
}

/** The state of a path as a mount point. */
type PointState =
  | { kind: "free" }
  | { kind: "live"; row: MountRow }
  | { kind: "dead"; row: MountRow };

async function pointState(abs: string): Promise<PointState> {
  const row = (await mounts()).reverse().find((m) => m.target === abs);
  if (!row) return { kind: "free" };
  try {
    // Opening the directory always reaches the daemon (a stat may be answered
    // from the kernel's attribute cache even after the daemon died).
    for await (const _ of Deno.readDir(abs)) break;
    return { kind: "live", row };
  } catch (e) {
    if (isNotConnected(e)) return { kind: "dead", row };
    return { kind: "live", row };
  }
}

function isNotConnected(e: unknown): boolean {
  return e instanceof Deno.errors.NotConnected ||
    (e as { code?: unknown } | null)?.code === "ENOTCONN";
}

function deadMessage(abs: string): string {
  return `${abs}: a pifs mount whose daemon died (Transport endpoint is not connected); ` +
    `unmount it with \`pifs umount ${abs}\` (or \`fusermount3 -u ${abs}\`), then mount again`;
}

/** `-o` options: what libfuse gets (`ro` included when read-only; the last of ro/rw wins). */
function mountOptions(o: string[] | undefined): string[] {
  const out: string[] = [];
  let ro = false;
  for (const opt of (o ?? []).flatMap((x) => x.split(",")).map((x) => x.trim()).filter((x) => x)) {
    if (opt === "ro") ro = true;
    else if (opt === "rw") ro = false;
    else if (opt === "allow_other" || opt === "allow_root") out.push(opt);
    else {
      throw new UsageError(`-o ${opt}: unknown option (known: ro, rw, allow_other, allow_root)`);
    }
  }
  return ro ? ["ro", ...out] : out;
}

/**
 * The spool directory of a writable mount (`DIR/mount-spool`): files open for
 * writing are kept there until committed. Files a crashed daemon left there
 * are moved aside (`DIR/mount-spool.orphaned-TIME`, with a `.json` per file
 * saying what it was when known) and reported, never deleted.
 */
async function spoolDir(absDir: string, log: (m: string) => void): Promise<string> {
  const dir = `${absDir}/mount-spool`;
  const left: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) left.push(e.name);
  } catch { /* none yet */ }
  if (left.length) {
    const aside = `${dir}.orphaned-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    await Deno.rename(dir, aside);
    log(
      `${left.length} spool files of an earlier mount were not committed (its daemon died ` +
        `or a commit failed); moved to ${aside}`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** The pid is a running process (not gone, not a zombie nobody reaped yet). */
function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
  } catch {
    return false;
  }
  try {
    const o = new Deno.Command("ps", { args: ["-o", "stat=", "-p", String(pid)] }).outputSync();
    return o.success && !new TextDecoder().decode(o.stdout).trim().startsWith("Z");
  } catch {
    return true; // no ps: the signal went through
  }
}

async function readState(dir: string): Promise<MountState | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/mount.json`));
  } catch {
    return undefined;
  }
}

/** The command that runs this CLI again (the `pifs` script, or a compiled binary). */
function selfCommand(): string[] {
  const script = new URL("../pifs", import.meta.url);
  if (script.protocol === "file:") {
    try {
      Deno.statSync(script.pathname);
      return [script.pathname];
    } catch { /* compiled: no script next to us */ }
  }
  return [Deno.execPath()];
}

async function tail(path: string, lines = 15): Promise<string> {
  const t = await Deno.readTextFile(path).catch(() => "");
  return t.trimEnd().split("\n").slice(-lines).join("\n");
}

async function runFusermount(args: string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const o = await new Deno.Command("fusermount3", { args, stdin: "null" }).output();
    return { ok: o.success, err: new TextDecoder().decode(o.stderr).trim() };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      // Without fusermount3 (root only): umount(8).
      const o = await new Deno.Command("umount", {
        args: args.includes("-z") ? ["-l", args[args.length - 1]] : [args[args.length - 1]],
        stdin: "null",
      }).output();
      return { ok: o.success, err: new TextDecoder().decode(o.stderr).trim() };
    }
    throw e;
  }
}

function stamp(msg: string): string {
  return `${new Date().toISOString()} ${msg}`;
}

interface MountOpts {
  cluster?: string;
  o?: string[];
  foreground?: boolean;
  cacheMb: number;
  cacheDiskMb: number;
  debug?: boolean;
  timeout: number;
  json?: boolean;
}

/** Checks the mount point and the machine; returns the absolute mount point. */
async function preflight(mountpoint: string): Promise<string> {
  const abs = await absPath(mountpoint);
  const st = await pointState(abs);
  if (st.kind === "dead") throw new UsageError(deadMessage(abs));
  if (st.kind === "live") {
    throw new UsageError(
      `${abs}: already mounted (${st.row.fstype} from ${st.row.source}); ` +
        `\`pifs umount ${abs}\` first`,
    );
  }
  let s: Deno.FileInfo;
  try {
    s = await Deno.stat(abs);
  } catch {
    throw new UsageError(`${abs}: no such directory (make it with mkdir first)`);
  }
  if (!s.isDirectory) throw new UsageError(`${abs}: not a directory`);
  // (Deno lets a program stat /dev only with --allow-all: test(1) looks.)
  const dev = await new Deno.Command("test", { args: ["-c", "/dev/fuse"] }).output();
  if (!dev.success) {
    throw new UsageError("/dev/fuse is missing: load the fuse module (modprobe fuse)");
  }
  const why = fuseUnavailable();
  if (why) throw new UsageError(why);
  return abs;
}

/** Runs a pifs command line for another process (the CLI's `main`), set by {@linkcode registerMount}. */
let runCommand: (argv: string[]) => Promise<number> = () => Promise.resolve(1);

async function mountForeground(abs: string, o: MountOpts, extra: string[]): Promise<void> {
  const absDir = await Deno.realPath(clusterDir(o.cluster));
  const st = await readState(absDir);
  if (st && st.pid !== Deno.pid && alive(st.pid)) {
    throw new UsageError(
      `${absDir}: already mounted at ${st.mountpoint} (pid ${st.pid}); one mount per cluster`,
    );
  }
  // The daemon holds the cluster's serial lines while mounted: other pifs
  // commands on this cluster get ClusterBusyError until it is unmounted.
  await serve(abs, absDir, o, extra);
}

async function serve(abs: string, absDir: string, o: MountOpts, extra: string[]) {
  const log = (m: string) => info(stamp(m));
  const readOnly = extra.includes("ro");
  log(`opening the cluster ${absDir}`);
  const store = await Store.open(absDir, { log, timeoutMs: o.timeout });
  let fs: PifsFs;
  let spool: string | undefined;
  try {
    spool = readOnly ? undefined : await spoolDir(absDir, log);
    const diskCache = o.cacheDiskMb > 0
      ? await DiskChunkCache.open(`${absDir}/mount-cache`, o.cacheDiskMb * 1024 * 1024)
      : undefined;
    if (diskCache) {
      log(`disk cache ${absDir}/mount-cache: ${diskCache.size} chunks, ${diskCache.bytes} bytes`);
    }
    fs = new PifsFs(new StoreBackend(store), {
      diskCache,
      cacheBytes: o.cacheMb * 1024 * 1024,
      log,
      debug: o.debug,
      readOnly,
      spoolDir: spool,
    });
    // Written before the mount appears, so an `umount` right after it finds the daemon to wait for.
    const state: MountState = {
      pid: Deno.pid,
      mountpoint: abs,
      log: `${absDir}/mount.log`,
      started: new Date().toISOString(),
    };
    await Deno.writeTextFile(`${absDir}/mount.json`, JSON.stringify(state) + "\n");
    // A fsname without commas or blanks names the cluster (read back by `umount`).
    const fsname = /^[^,\s\\]+$/.test(absDir) ? `pifs:${absDir}` : "pifs";
    fs.mount(abs, [`fsname=${fsname}`, "subtype=pifs", "default_permissions", ...extra]);
  } catch (e) {
    await Deno.remove(`${absDir}/mount.json`).catch(() => {});
    await store.close();
    throw e;
  }
  // Other pifs commands on this cluster (a sync, a put) run here, on this
  // store: what they commit is in the mount's index at once, and the
  // kernel's caches are dropped after each, so no reader sees a stale size
  // over new data.
  let server: CommandServer | undefined;
  try {
    server = await serveCommands(absDir, store, runCommand, log, () => fs.externalChange());
  } catch (e) {
    log(`other pifs commands cannot run through this mount: ${(e as Error).message}`);
  }
  const up = store.up().length;
  log(
    `mounted ${absDir} at ${abs} (${
      readOnly ? "read-only" : `read-write, spool ${spool}`
    }; ${up} of ${store.nodes.size} nodes answer, R=${store.copies}); pid ${Deno.pid}`,
  );
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: unmounting ${abs}`);
    let r = await runFusermount(["-u", abs]);
    if (!r.ok) {
      log(`unmount failed (${r.err}); detaching it lazily (it goes when no longer busy)`);
      r = await runFusermount(["-u", "-z", abs]);
      if (!r.ok) log(`lazy unmount failed too: ${r.err}`);
    }
  };
  const sigs: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const handlers = sigs.map((s) => [s, () => void stop(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    await fs.serve();
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    await server?.close();
    await fs.disk?.settle(); // chunks still being written to the disk cache
    const c = fs.cache;
    log(
      `unmounted ${abs}; chunks: ${c.hits} from memory, ` +
        (fs.disk
          ? `${fs.disk.hits} from the disk cache (${fs.disk.damaged} found damaged there), ` +
            `${c.misses - fs.disk.hits} read from the nodes; `
          : `${c.misses} read from the nodes; `) +
        `files committed: ${fs.commits}; ` +
        `requests: ${[...fs.counts].map(([k, v]) => `${k} ${v}`).join(", ")}`,
    );
    // An empty spool directory goes; one holding files whose commit failed stays (logged).
    if (spool) await Deno.remove(spool).catch(() => {});
    await Deno.remove(`${absDir}/mount.json`).catch(() => {});
    await store.close();
  }
}

async function mountBackground(abs: string, o: MountOpts, args: string[]): Promise<void> {
  const dir = await Deno.realPath(clusterDir(o.cluster));
  await readClusterFile(dir); // a bad cluster directory fails here, not in the log
  const st = await readState(dir);
  if (st && alive(st.pid)) {
    throw new UsageError(
      `${dir}: already mounted at ${st.mountpoint} (pid ${st.pid}); one mount per cluster`,
    );
  }
  const log = `${dir}/mount.log`;
  await Deno.writeTextFile(log, stamp(`pifs mount ${abs}\n`), { append: true });
  const cmd = [...selfCommand(), "mount", abs, "--foreground", "--cluster", dir, ...args];
  // The daemon: its own session, output appended to the log.
  const child = new Deno.Command("sh", {
    args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", log, ...cmd],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => exited = s);
  const t0 = Date.now();
  let said = false;
  for (;;) {
    const ps = await pointState(abs);
    if (ps.kind === "live" && ps.row.fstype === FSTYPE) break;
    if (exited) {
      throw new UsageError(
        `the mount daemon stopped (exit ${exited.code}); its log ${log} ends with:\n` +
          (await tail(log)),
      );
    }
    if (!said && Date.now() - t0 > 1000) {
      info(`opening the cluster and mounting (log: ${log}) …`);
      said = true;
    }
    if (Date.now() - t0 > 300_000) {
      child.kill("SIGTERM");
      throw new UsageError(`not mounted after 300 s; see ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.unref();
  if (o.json) {
    console.log(JSON.stringify({ mountpoint: abs, cluster: dir, pid: child.pid, log }));
  } else {
    info(
      `mounted ${dir} at ${abs} (${
        args.some((a) => a.split(",").includes("ro")) ? "read-only" : "read-write"
      }), daemon pid ${child.pid}; log: ${log}; ` +
        `unmount with: pifs umount ${abs}`,
    );
  }
}

/** Adds `mount` and `umount` to `program`. */
export function registerMount(
  program: Command,
  run: (argv: string[]) => Promise<number> = () => Promise.resolve(1),
): void {
  runCommand = run;
  program.command("mount")
    .description(
      "mount the whole store at MOUNTPOINT as a file system (FUSE), read-write unless -o ro: " +
        "files written are spooled on this host (DIR/mount-spool) and committed to the Pis " +
        "at the last close and at fsync; runs as a daemon (log: DIR/mount.log) unless --foreground",
    )
    .argument("<mountpoint>", "an existing directory")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option(
      "-o, --options <opts>",
      "mount options, comma-separated, may repeat: rw (the default), ro, allow_other, allow_root",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--foreground", "serve in this process until unmounted (SIGINT/SIGTERM unmount)")
    .option(
      "--cache-mb <n>",
      "chunks kept in memory, MiB",
      intOption("--cache-mb", 1, 1 << 20),
      64,
    )
    .option(
      "--cache-disk-mb <n>",
      "chunks kept on this host's disk too (DIR/mount-cache/, kept across mounts, each checked " +
        "against its id when read back), MiB; 0: none",
      intOption("--cache-disk-mb", 0, 1 << 30),
      1024,
    )
    .option(
      "--timeout <ms>",
      "base timeout of a node's answer, ms",
      intOption("--timeout", 50, 600_000),
      800,
    )
    .option("--debug", "log every request (foreground or the log)")
    .option("--json", "print {mountpoint, cluster, pid, log} once mounted")
    .action(async (mountpoint: string, raw) => {
      const o: MountOpts = { ...raw, o: raw.options };
      const extra = mountOptions(o.o);
      const abs = await preflight(mountpoint);
      if (o.foreground) return await mountForeground(abs, o, extra);
      const args: string[] = [
        "--cache-mb",
        String(o.cacheMb),
        "--cache-disk-mb",
        String(o.cacheDiskMb),
        "--timeout",
        String(o.timeout),
      ];
      if (extra.length) args.push("-o", extra.join(","));
      if (o.debug) args.push("--debug");
      await mountBackground(abs, o, args);
    });

  program.command("umount")
    .description("unmount a pifs mount (also one whose daemon died) and wait for its daemon")
    .argument("<mountpoint>")
    .option("--lazy", "detach now even if busy; it goes away when no longer in use")
    .option("--json", "print what was done")
    .action(async (mountpoint: string, o) => {
      const abs = await absPath(mountpoint);
      const st = await pointState(abs);
      if (st.kind === "free") throw new UsageError(`${abs}: not mounted`);
      if (st.row.fstype !== FSTYPE) {
        throw new UsageError(`${abs}: a ${st.row.fstype} mount, not pifs; not touching it`);
      }
      const dir = st.row.source.startsWith("pifs:") ? st.row.source.slice(5) : undefined;
      const state = dir ? await readState(dir) : undefined;
      const ours = state !== undefined && state.mountpoint === abs;
      // Asked before unmounting: once unmounted, a daemon may end before we look.
      const serving = ours && st.kind !== "dead" && alive(state.pid);
      const r = await runFusermount(o.lazy ? ["-u", "-z", abs] : ["-u", abs]);
      if (!r.ok) {
        throw new UsageError(
          `${abs}: unmount failed: ${r.err || "fusermount3 failed"}` +
            (/busy/i.test(r.err) ? " (a process uses it: close it, or use --lazy)" : ""),
        );
      }
      // The daemon ends once the kernel closed the connection.
      let daemon = st.kind === "dead" ? "had died" : "none";
      if (ours && !serving) {
        await Deno.remove(`${dir}/mount.json`).catch(() => {}); // left by a dead daemon
      } else if (ours) {
        // A read-write daemon commits the files still open before it ends.
        const t0 = Date.now();
        let said = false;
        while (alive(state.pid) && Date.now() < t0 + 300_000) {
          if (!said && Date.now() - t0 > 2000) {
            info(
              `waiting for the daemon (pid ${state.pid}) to finish its commits (log: ${state.log}) …`,
            );
            said = true;
          }
          await new Promise((res) => setTimeout(res, 50));
        }
        daemon = alive(state.pid) ? `pid ${state.pid} still running` : `pid ${state.pid} ended`;
      }
      if (o.json) {
        console.log(JSON.stringify({ mountpoint: abs, dead: st.kind === "dead", daemon }));
      } else info(`unmounted ${abs} (daemon: ${daemon})`);
    });
}
