/**
 * Offline recovery: rebuilds the namespace and every file of a cluster from
 * its card images alone, with no Pi and no host state, and never writes to
 * the cards.
 *
 * Each image is served by a hosted node started with `--read-only` (the
 * image is opened read-only, so no write can reach it), and a store is
 * opened on those nodes read-only: the index is rebuilt from the cards as
 * `pifs attach` does (the last checkpoint, then the journal after it, from
 * the longest journal), the nodes' journals are not brought up to date, and
 * any write is refused. Every file is then read from whichever card holds a
 * healthy copy of each chunk (every chunk is checked against its hash), and
 * written under the output directory with its mode and modification time.
 * A file that cannot be rebuilt (a chunk whose every copy is lost or
 * damaged) is reported and left out; nothing half-written stays behind.
 *
 * @example
 * ```ts ignore
 * import { recover } from "./recover.ts";
 * const r = await recover(["n1.img", "n2.img", "n3.img"], { out: "rescued" });
 * console.log(`${r.files} files, ${r.failed.length} lost`);
 * ```
 *
 * @module
 */
import { PifsError } from "../errors.ts";
import { statusToStr } from "../link/codec.ts";
import { nodeBinary } from "../card/card.ts";
import { type ClusterFile, connectNode } from "./cluster.ts";
import { Store } from "./store.ts";
import { writeLocalFile } from "./local.ts";
import { snapshotContents } from "./snapshots.ts";

/** Options of {@linkcode recover}. */
export interface RecoverOptions {
  /** Where the tree is written: a directory that does not exist or is empty. */
  out: string;
  /** Also write every snapshot, under `OUT/.snapshots/NAME/`. */
  snapshots?: boolean;
  /** Progress messages. */
  log?: (msg: string) => void;
  /** Called after each file: files done, files in all, bytes written. */
  progress?: (done: number, total: number, bytes: number) => void;
}

/** What one card image turned out to be. */
export interface RecoverCard {
  /** The image as given. */
  card: string;
  /** Node id it belongs to (when it holds a pifs store). */
  node?: number;
  /** Its cluster id. */
  cluster?: string;
  /** Chunks on it. */
  chunks?: number;
  /** Why it was not used. */
  error?: string;
}

/** What {@linkcode recover} rebuilt. */
export interface RecoverReport {
  /** Cluster id of the cards used. */
  cluster: string;
  /** Each image given. */
  cards: RecoverCard[];
  /** Files written. */
  files: number;
  /** Directories written. */
  dirs: number;
  /** Symbolic links written. */
  links: number;
  /** Bytes of file data written. */
  bytes: number;
  /** Snapshots written (with `snapshots`). */
  snapshots: number;
  /** What could not be rebuilt: a path in the store (or `/.snapshots/NAME/…`) and why. */
  failed: { path: string; error: string }[];
}

/** Input `recover` refuses: named images, an output directory that holds data. */
export class RecoverError extends PifsError {
  /** What kind of failure this is (see `PifsError.code`). */
  override readonly code: string = "RECOVER";
  /** The error's name. */
  override name = "RecoverError";
}

interface Served {
  card: string;
  tty: string;
  child: Deno.ChildProcess;
  stderr: Promise<string>;
}

async function exists(p: string): Promise<Deno.FileInfo | undefined> {
  return await Deno.stat(p).catch(() => undefined);
}

/** Checks the output directory: absent (made) or empty; never one that holds anything. */
async function prepareOut(out: string): Promise<void> {
  const st = await exists(out);
  if (!st) {
    await Deno.mkdir(out, { recursive: true });
    return;
  }
  if (!st.isDirectory) throw new RecoverError(`--out ${out}: exists and is not a directory`);
  for await (const e of Deno.readDir(out)) {
    throw new RecoverError(
      `--out ${out}: the directory is not empty (it holds ${e.name}); ` +
        `recover never writes over anything: give a new or empty directory`,
    );
  }
}

/** Starts a hosted node on `card` (read-only) with its pty linked at `tty`. */
async function serve(bin: string, card: string, tty: string): Promise<Served> {
  const child = new Deno.Command(bin, {
    args: ["--card", card, "--read-only", "--pty-link", tty, "--baud", "0", "--no-sync"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text().catch(() => "");
  let exited = false;
  child.status.then(() => exited = true);
  const end = Date.now() + 10_000;
  while (!(await Deno.lstat(tty).then(() => true, () => false))) {
    if (exited) {
      const msg = (await stderr).trim().split("\n").pop() ?? "";
      throw new RecoverError(`${card}: the node could not serve it: ${msg}`);
    }
    if (Date.now() > end) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      throw new RecoverError(`${card}: the node did not start within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { card, tty, child, stderr };
}

async function stop(s: Served): Promise<void> {
  try {
    s.child.kill("SIGTERM");
  } catch { /* already gone */ }
  await s.child.status;
  await s.stderr;
}

/**
 * Rebuilds the cluster on `cards` (card image paths) under `opts.out`.
 * Throws {@linkcode RecoverError} for input it refuses (no usable image,
 * images of two clusters, two images of one node, an output directory that
 * is not empty); files that cannot be rebuilt are listed in the report's
 * `failed`.
 */
export async function recover(cards: string[], opts: RecoverOptions): Promise<RecoverReport> {
  const log = opts.log ?? (() => {});
  if (cards.length === 0) throw new RecoverError("no card image given");
  const real = new Map<string, string>();
  for (const c of cards) {
    const st = await exists(c);
    if (!st) throw new RecoverError(`${c}: no such file`);
    if (st.isDirectory) throw new RecoverError(`${c}: is a directory, not a card image`);
    const r = await Deno.realPath(c);
    if (real.has(r)) throw new RecoverError(`${c}: given twice (also as ${real.get(r)})`);
    real.set(r, c);
    // Readable? (A device needs the rights; say so before starting a node.)
    try {
      (await Deno.open(c, { read: true })).close();
    } catch (e) {
      throw new RecoverError(`${c}: cannot be read: ${(e as Error).message}`);
    }
  }
  await prepareOut(opts.out);

  const bin = await nodeBinary();
  const tmp = await Deno.makeTempDir({ prefix: "pifs-recover-" });
  const served: Served[] = [];
  const report: RecoverReport = {
    cluster: "",
    cards: cards.map((card) => ({ card })),
    files: 0,
    dirs: 0,
    links: 0,
    bytes: 0,
    snapshots: 0,
    failed: [],
  };
  let store: Store | undefined;
  try {
    // One read-only node per image; ask each who it is.
    const probe: ClusterFile = { version: 1, cluster_id: "0".repeat(32), baud: 0, nodes: [] };
    const usable: { i: number; node: number; tty: string }[] = [];
    for (let i = 0; i < cards.length; i++) {
      const s = await serve(bin, await Deno.realPath(cards[i]), `${tmp}/card${i}.pty`);
      served.push(s);
      const rc = report.cards[i];
      try {
        const c = await connectNode(tmp, probe, { id: i, tty: s.tty }, { timeoutMs: 2000 });
        try {
          const info = await c.info();
          if (info.status !== 0) {
            rc.error = `not usable: ${statusToStr(info.status)}`;
          } else {
            rc.node = info.nodeId;
            rc.cluster = info.clusterId;
            rc.chunks = info.chunks;
            usable.push({ i, node: info.nodeId, tty: s.tty });
          }
        } finally {
          await c.close();
        }
      } catch (e) {
        rc.error = `the node serving it does not answer: ${(e as Error).message}`;
      }
      log(
        `${cards[i]}: ${
          rc.error ?? `node ${rc.node} of cluster ${rc.cluster}, ${rc.chunks} chunks`
        }`,
      );
    }
    const clusters = new Set(usable.map((u) => report.cards[u.i].cluster!));
    if (usable.length === 0) {
      throw new RecoverError(
        `no image holds a pifs store: ` +
          report.cards.map((c) => `${c.card}: ${c.error}`).join("; "),
      );
    }
    if (clusters.size > 1) {
      throw new RecoverError(
        `the images belong to ${clusters.size} different clusters: ` +
          usable.map((u) => `${cards[u.i]}: ${report.cards[u.i].cluster}`).join(", ") +
          `; recover one cluster at a time`,
      );
    }
    const byNode = new Map<number, number>();
    for (const u of usable) {
      const other = byNode.get(u.node);
      if (other !== undefined) {
        throw new RecoverError(
          `${cards[other]} and ${cards[u.i]} are both node ${u.node}: give one image per Pi`,
        );
      }
      byNode.set(u.node, u.i);
    }
    report.cluster = [...clusters][0];
    const cluster: ClusterFile = {
      version: 1,
      cluster_id: report.cluster,
      baud: 0,
      nodes: usable.map((u) => ({ id: u.node, tty: u.tty })).sort((a, b) => a.id - b.id),
    };
    await Deno.writeTextFile(`${tmp}/cluster.json`, JSON.stringify(cluster, null, 2) + "\n");
    store = await Store.open(tmp, { readOnly: true, log, timeoutMs: 2000 });
    const s = store;

    const entries = s.index.walk("/");
    const total = entries.filter((e) => e.type === "f").length;
    let done = 0;
    const out = opts.out.replace(/\/+$/, "") || "/";
    const local = (p: string) => p === "/" ? out : `${out}${p}`;
    for (const e of entries) {
      if (e.path === "/") continue;
      if (e.type === "d") {
        await Deno.mkdir(local(e.path), { recursive: true });
        report.dirs++;
        continue;
      }
      if (e.type === "l") {
        // A symbolic link (made through `pifs mount`): its target as it was given.
        try {
          await Deno.symlink(e.target ?? "", local(e.path));
          report.links++;
        } catch (err) {
          report.failed.push({ path: e.path, error: (err as Error).message });
        }
        continue;
      }
      try {
        await writeLocalFile(s, e.manifest!, local(e.path), e.mode, e.mtime);
        report.files++;
        report.bytes += e.size;
      } catch (err) {
        report.failed.push({ path: e.path, error: (err as Error).message });
        log(`cannot rebuild ${e.path}: ${(err as Error).message}`);
      }
      opts.progress?.(++done, total, report.bytes);
    }
    if (opts.snapshots) {
      for (const snap of s.index.snapshots()) {
        const base = `/.snapshots/${snap.name}`;
        try {
          const { files } = await snapshotContents(s, snap.root);
          for (const [rel, manifest, size, mode, mtime] of files) {
            const p = `${base}/${rel}`;
            const lp = local(p);
            await Deno.mkdir(lp.slice(0, lp.lastIndexOf("/")), { recursive: true });
            try {
              await writeLocalFile(s, manifest, lp, mode, mtime);
              report.bytes += size;
            } catch (err) {
              report.failed.push({ path: p, error: (err as Error).message });
            }
          }
          report.snapshots++;
        } catch (err) {
          report.failed.push({ path: base, error: (err as Error).message });
        }
      }
    }
    // Directory modes and times last: writing inside a directory changes its mtime.
    for (const e of [...entries].reverse()) {
      if (e.type !== "d" || e.path === "/") continue;
      await Deno.chmod(local(e.path), e.mode & 0o7777);
      await Deno.utime(local(e.path), new Date(e.mtime), new Date(e.mtime));
    }
    return report;
  } finally {
    await store?.close().catch(() => {});
    await Promise.all(served.map(stop));
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
