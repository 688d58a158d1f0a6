/**
 * The daemon scrubs on a schedule and repairs on its own: a cluster with a
 * byte flipped in every data chunk on one card, the daemon scrubbing every
 * second or two; it waits for the sync lock, finds every damaged copy,
 * repairs them, and logs both to DIR/jobs.log. With `--no-repair` it only
 * reports.
 */
import { ok, PIFS, pifs } from "./_cli.ts";
import assert from "node:assert/strict";
import { assertScrubClean, assertTree, damagedCluster } from "./_damage.ts";
import type { RunRecord } from "../sync/runs.ts";

const runs = async (dir: string): Promise<RunRecord[]> =>
  JSON.parse(await ok("jobs", "--cluster", dir, "--json"));

/** Polls `pifs jobs` until `cond` holds (up to `secs` seconds). */
async function waitFor(
  dir: string,
  what: string,
  cond: (r: RunRecord[]) => boolean,
  secs = 60,
): Promise<RunRecord[]> {
  const end = Date.now() + secs * 1000;
  while (Date.now() < end) {
    const r = await runs(dir);
    if (cond(r)) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await runs(dir))}`);
}

function daemon(args: string[]): Deno.ChildProcess {
  return new Deno.Command(PIFS, {
    args: ["daemon", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** SIGTERM, then its stderr; fails unless it stopped cleanly. */
async function stop(d: Deno.ChildProcess): Promise<string> {
  d.kill("SIGTERM");
  const out = await d.output();
  const err = new TextDecoder().decode(out.stderr);
  assert.deepStrictEqual(out.code, 0, err);
  assert(err.includes("daemon stopped"), err);
  return err;
}

Deno.test("daemon: a scheduled scrub waits for the sync lock, finds every damaged copy and repairs it; logged in jobs.log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-dscrub-" });
  try {
    const { files, pieces } = await damagedCluster(dir);
    const ids = pieces.map((p) => p.id).sort();
    // A sync holds the lock when the daemon starts: no scrub may run meanwhile.
    await Deno.writeTextFile(`${dir}/sync.lock`, `${Deno.pid}\n`);
    const d = daemon(["--cluster", dir, "--scrub", "*/2 * * * * *"]);
    let err = "";
    let log: RunRecord[] = [];
    try {
      await new Promise((r) => setTimeout(r, 3500));
      assert.deepStrictEqual(await runs(dir), [], "a scrub ran while a sync held the lock");
      await Deno.remove(`${dir}/sync.lock`);
      log = await waitFor(dir, "the repair", (r) => r.some((x) => x.kind === "repair"));
      // Then a later scrub finds nothing wrong.
      log = await waitFor(
        dir,
        "a clean scrub after the repair",
        (r) =>
          r.slice(r.findIndex((x) => x.kind === "repair")).some((x) =>
            x.kind === "scrub" && x.outcome === "ok"
          ),
      );
    } finally {
      err = await stop(d);
    }
    const first = log[0];
    assert.deepStrictEqual([first.kind, first.job, first.outcome, first.trigger], [
      "scrub",
      "scrub",
      "partial",
      "schedule",
    ]);
    const s = first.scrub!;
    assert.deepStrictEqual([s.missing, s.damaged, s.lost], [ids.length, ids.length, 0]);
    assert.deepStrictEqual(s.nodes.find((n) => n.node === 1)!.damaged, ids.length);
    for (const n of s.nodes) {
      if (n.node !== 1) assert.deepStrictEqual([n.damaged, n.error], [0, undefined]);
    }
    assert.deepStrictEqual(s.problems.length, Math.min(20, ids.length));
    assert(s.problems.every((p) => ids.includes(p.id)), JSON.stringify(s.problems));
    assert(s.problems.every((p) => p.damaged.join() === "1" && p.healthy === 1 && p.want === 2));
    // The repair came right after that scrub, from its findings.
    const rep = log[1];
    assert.deepStrictEqual([rep.kind, rep.outcome, rep.trigger], ["repair", "ok", "scrub"]);
    assert(rep.start >= first.end, `${rep.start} < ${first.end}`);
    assert.deepStrictEqual([rep.repair!.deleted, rep.repair!.failed], [ids.length, 0]);
    assert(rep.repair!.copied >= ids.length, `${rep.repair!.copied} copies made`);
    assert.deepStrictEqual(log.filter((x) => x.kind === "repair").length, 1, JSON.stringify(log));
    // One run at a time: none starts before the one before it ended.
    for (let i = 1; i < log.length; i++) {
      assert(log[i].start >= log[i - 1].end, JSON.stringify(log));
    }
    assert(/scrub partial: .* short of copies/.test(err), err);
    assert(/repair ok: \d+ damaged copies deleted/.test(err), err);
    // `pifs jobs` lists them.
    const text = await ok("jobs", "--cluster", dir);
    assert(
      text.includes(`${ids.length} short of copies (${ids.length} damaged)`) &&
        text.includes(`${ids.length} damaged copies deleted`),
      text,
    );
    await assertScrubClean(dir);
    await assertTree(dir, files, "back");
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("daemon: --no-repair only reports what the scrubs find; bad --scrub is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-dscrub-" });
  try {
    const { pieces } = await damagedCluster(dir);
    const ids = pieces.map((p) => p.id).sort();
    // Usage errors, before anything runs.
    for (
      const [args, msg] of [
        [["--scrub", "61 * * * *"], /--scrub '61 \* \* \* \*': not a cron pattern/],
        [["--scrub", "off"], /no job files and --scrub off: nothing for the daemon to do/],
        [["--scrub", "0 0 30 2 *"], /the pattern never fires/],
      ] as const
    ) {
      const r = await pifs("daemon", "--cluster", dir, ...args);
      assert.deepStrictEqual(r.code, 2, r.err);
      assert(msg.test(r.err), r.err);
    }
    const d = daemon(["--cluster", dir, "--scrub", "* * * * * *", "--no-repair"]);
    let err = "";
    try {
      await waitFor(dir, "two scrubs", (r) => r.filter((x) => x.kind === "scrub").length >= 2);
    } finally {
      err = await stop(d);
    }
    const log = await runs(dir);
    assert(log.every((x) => x.kind === "scrub"), JSON.stringify(log));
    for (const x of log) {
      assert.deepStrictEqual(x.outcome, "partial");
      assert.deepStrictEqual([x.scrub!.missing, x.scrub!.damaged], [ids.length, ids.length]);
    }
    assert(err.includes("not repaired (--no-repair): run pifs repair"), err);
    // Still damaged: the daemon changed nothing.
    const r = await pifs("scrub", "--cluster", dir, "--json");
    assert.deepStrictEqual(r.code, 1, r.err);
    const rep = JSON.parse(r.out);
    assert.deepStrictEqual(rep.nodes.find((n: { node: number }) => n.node === 1).damaged, ids);
  } finally {
    await pifs("sim", "down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});
