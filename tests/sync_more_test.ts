/**
 * More of `pifs sync`: the progress lines (pure formatting and estimates),
 * the http source's Last-Modified, photo duplicates counted as duplicates
 * (not problems), and the daemon reading edited job files again.
 */
import { formatBytes } from "../units.ts";
import { ok, PIFS, pifs, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import {
  estimateNodeTotals,
  fmtEta,
  formatProgressLine,
  type SyncCounters,
} from "../cli/_progress.ts";
import { syncRows } from "../cli/sync.ts";
import { newSyncProgress } from "../sync/engine.ts";
import { defineJob, openCluster, sync } from "../mod.ts";

/** A new simulated cluster in DIR/c for `fn(DIR)`, stopped and removed afterwards. */
function withCluster(args: string[], fn: (dir: string) => Promise<void>): Promise<void> {
  return withSim(args, fn, "pifs-sync-more-", "c");
}

function lines(out: string): Record<string, unknown>[] {
  return out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

const KiB = 1024, MiB = 1024 * KiB;

Deno.test("progress: sizes, ETAs and a line with files, bytes, rate, bar and ETA", () => {
  assert.deepStrictEqual(formatBytes(512), "512 B");
  assert.deepStrictEqual(formatBytes(1536), "1.5 KiB");
  assert.deepStrictEqual(formatBytes(3 * 1024 * MiB), "3.0 GiB");
  assert.deepStrictEqual(formatBytes(4 * MiB, true), "4 MiB");
  assert.deepStrictEqual(formatBytes(4 * MiB + 1024, true), "4097 KiB");
  assert.deepStrictEqual(fmtEta(0), "0s");
  assert.deepStrictEqual(fmtEta(59.4), "59s");
  assert.deepStrictEqual(fmtEta(187), "3m07s");
  assert.deepStrictEqual(fmtEta(7500), "2h05m");
  assert.deepStrictEqual(fmtEta(NaN), "?");
  assert.deepStrictEqual(fmtEta(1e9), ">99h");

  // A job: 12 of 40 files listed so far, 25 of 100 MiB at 5 MiB/s: 15 s left.
  const job = formatProgressLine({
    label: "photos",
    done: 25 * MiB,
    total: 100 * MiB,
    approx: true,
    files: { done: 12, total: 40, more: true },
  }, 5 * MiB);
  assert.deepStrictEqual(
    job,
    "photos        12/40+ files   25.0 MiB of ~100.0 MiB    5.0 MiB/s [#####---------------]  25% ETA 15s",
  );
  // A Pi without a total yet: bytes and rate only, no bar.
  assert.deepStrictEqual(
    formatProgressLine({ label: "node 2", done: 300 * KiB }, 0),
    "node 2      300.0 KiB        0 B/s",
  );
  // Stalled: no rate, the ETA is unknown; a done row says 0s; DOWN is noted.
  assert(formatProgressLine({ label: "n", done: 1, total: 2 }, 0).endsWith("ETA ?"));
  assert(formatProgressLine({ label: "n", done: 2, total: 2 }, 0).endsWith("100% ETA 0s"));
  assert(
    formatProgressLine({ label: "n", done: 2, total: 4, note: "DOWN" }, 1).endsWith(" DOWN"),
  );
  // A total below what is done (an estimate overtaken) is shown as done.
  assert(formatProgressLine({ label: "n", done: 5, total: 4 }, 1).includes("100% ETA 0s"));
});

Deno.test("progress: each Pi's total is its bytes plus its share of what the job still has to send", () => {
  const p: SyncCounters = {
    listing_done: true,
    bytes_listed: 100 * MiB,
    bytes_skipped: 20 * MiB, // unchanged, never read
    bytes_read: 40 * MiB,
    bytes_planned: 80 * MiB, // 2 copies of all read so far
    bytes_stored: 60 * MiB,
  };
  // 60 MiB stored, 61.2 MiB on the wires (2 % overhead), 1:2 between the Pis;
  // left: 20 MiB planned + 40 MiB to read × 2 = 100 MiB × 1.02.
  const wires = [20.4 * MiB, 40.8 * MiB, 0];
  const t = estimateNodeTotals(p, wires, [true, true, false]);
  const left = 100 * MiB * 1.02;
  assert.deepStrictEqual(t, [
    Math.round(20.4 * MiB + left / 3),
    Math.round(40.8 * MiB + 2 * left / 3),
    0, // down: no more
  ]);
  // Nothing sent yet: shared evenly among the Pis that are up.
  const fresh: SyncCounters = {
    listing_done: false,
    bytes_listed: 10 * MiB,
    bytes_skipped: 0,
    bytes_read: 2 * MiB,
    bytes_planned: 2 * MiB,
    bytes_stored: 0,
  };
  assert.deepStrictEqual(estimateNodeTotals(fresh, [0, 0], [true, true]), [5 * MiB, 5 * MiB]);
  // An unchanged re-sync plans nothing: the totals are what was sent.
  const same = { ...p, bytes_skipped: 0, bytes_read: 50 * MiB, bytes_planned: 0, bytes_stored: 0 };
  assert.deepStrictEqual(estimateNodeTotals(same, [1000, 2000], [true, true]), [1000, 2000]);

  // The rows of `pifs sync`: the job with files done/listed, then each Pi.
  const prog = { ...newSyncProgress(), ...p, files_listed: 30, files_done: 10 };
  const rows = syncRows("docs", prog, [
    { id: 0, wire: wires[0], up: true },
    { id: 1, wire: wires[1], up: true },
    { id: 2, wire: 0, up: false },
  ]);
  assert.deepStrictEqual(rows[0], {
    label: "docs",
    done: 40 * MiB,
    total: 80 * MiB,
    approx: false,
    files: { done: 10, total: 30, more: false },
  });
  assert.deepStrictEqual(rows.slice(1).map((r) => [r.label, r.done, r.total, r.note]), [
    ["node 0", wires[0], t[0], undefined],
    ["node 1", wires[1], t[1], undefined],
    ["node 2", 0, 0, "DOWN"],
  ]);
  const line = formatProgressLine(rows[0], 4 * MiB);
  assert(line.includes("10/30 files") && line.includes("ETA 10s"), line);
});

Deno.test("sync: an http manifest's file takes the server's Last-Modified; the unchanged re-sync still skips it unread", async () => {
  await withCluster(["--nodes", "2"], async (dir) => {
    const a = crypto.getRandomValues(new Uint8Array(50_000));
    const b = crypto.getRandomValues(new Uint8Array(40_000));
    const lastModified = "Tue, 03 Mar 2026 10:20:30 GMT";
    const hex = async (x: Uint8Array<ArrayBuffer>) =>
      Array.from(
        new Uint8Array(await crypto.subtle.digest("SHA-256", x)),
        (v) => v.toString(16).padStart(2, "0"),
      ).join("");
    const gets: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const path = new URL(req.url).pathname;
      gets.push(path);
      if (path === "/a.bin") {
        return new Response(a, { headers: { "last-modified": lastModified } });
      }
      if (path === "/b.bin") return new Response(b); // no Last-Modified: stays 0
      return new Response("no", { status: 404 });
    });
    try {
      const u = `http://127.0.0.1:${server.addr.port}`;
      await Deno.writeTextFile(
        `${dir}/m.txt`,
        `${await hex(a)} ${a.length} ${u}/a.bin\n${await hex(b)} ${b.length} ${u}/b.bin\n`,
      );
      const store = await openCluster(`${dir}/c`, { copies: 1 });
      try {
        const job = defineJob({
          name: "lm",
          target: "/lm",
          sources: [{
            kind: "http",
            manifest: `${dir}/m.txt`,
            concurrency: 2,
            retries: 2,
            timeout: 10,
          }],
        });
        const first = await sync(store, job);
        assert.deepStrictEqual(
          [first.files_new, first.files_failed],
          [2, 0],
          JSON.stringify(first),
        );
        assert.deepStrictEqual(store.index.get("/lm/a.bin")?.mtime, Date.parse(lastModified));
        assert.deepStrictEqual(store.index.get("/lm/b.bin")?.mtime, 0);
        // Again: both skipped by the cache, nothing fetched.
        gets.length = 0;
        const again = await sync(store, job);
        assert.deepStrictEqual(
          [again.files_unchanged, again.bytes_read],
          [2, 0],
          JSON.stringify(again),
        );
        assert.deepStrictEqual(gets, []);
        assert.deepStrictEqual(store.index.get("/lm/a.bin")?.mtime, Date.parse(lastModified));
      } finally {
        await store.close();
      }
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("sync: photo duplicates are counted as duplicates, not problems, and the run exits 0", async () => {
  await withCluster(["--nodes", "2"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/lib/backup`, { recursive: true });
    const photo = crypto.getRandomValues(new Uint8Array(30_000));
    await Deno.writeFile(`${dir}/lib/IMG_1.jpg`, photo);
    await Deno.writeTextFile(`${dir}/lib/IMG_1.xmp`, "<xmp/>");
    await Deno.writeFile(`${dir}/lib/backup/IMG_1 copy.jpg`, photo);
    await Deno.writeTextFile(`${dir}/lib/backup/IMG_1 copy.xmp`, "<xmp/>"); // the same sidecar
    await Deno.writeFile(`${dir}/lib/IMG_2.jpg`, crypto.getRandomValues(new Uint8Array(20_000)));
    await Deno.writeTextFile(
      `${dir}/photos.yaml`,
      "name: pics\ntarget: /pics\ncopies: 1\nsources:\n  - photos: ./lib\n",
    );
    for (const run of [1, 2]) {
      const r = await pifs("sync", "--cluster", c, "--json", `${dir}/photos.yaml`);
      assert.deepStrictEqual(r.code, 0, r.err);
      const events = lines(r.out);
      const sum = events[events.length - 1];
      assert.deepStrictEqual(
        [sum.files_new, sum.files_unchanged, sum.files_failed, sum.duplicates, sum.problems],
        run === 1 ? [3, 0, 0, 2, 0] : [0, 3, 0, 2, 0],
        JSON.stringify(sum),
      );
      const dups = events.filter((e) => e.event === "duplicate");
      assert.deepStrictEqual(dups.map((e) => [e.path, e.of]), [
        [`${dir}/lib/backup/IMG_1 copy.jpg`, `${dir}/lib/IMG_1.jpg`],
        [`${dir}/lib/backup/IMG_1 copy.xmp`, `${dir}/lib/IMG_1.xmp`],
      ]);
      assert.deepStrictEqual(events.filter((e) => e.event === "problem"), []);
    }
    const text = await pifs("sync", "--cluster", c, `${dir}/photos.yaml`);
    assert.deepStrictEqual(text.code, 0, text.err);
    assert(text.out.includes("2 duplicates left out") && !text.out.includes("problem"), text.out);
    const runs = JSON.parse(await ok("jobs", "--cluster", c, "--json"));
    assert(runs.every((r: { outcome: string }) => r.outcome === "ok"), JSON.stringify(runs));
  });
});

Deno.test("sync: the daemon reads an edited job file again; one that became invalid is logged and the other jobs go on", async () => {
  await withCluster(["--nodes", "2"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.txt`, "hello\n");
    const spec = (name: string, target: string) =>
      `name: ${name}\ntarget: ${target}\ncopies: 1\nschedule: "* * * * * *"\n` +
      "sources:\n  - folder: ./src\n";
    await Deno.writeTextFile(`${dir}/one.yaml`, spec("one", "/one"));
    await Deno.writeTextFile(`${dir}/two.yaml`, spec("two", "/two"));
    const daemon = new Deno.Command(PIFS, {
      args: ["daemon", "--cluster", c, `${dir}/one.yaml`, `${dir}/two.yaml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    type Run = { job: string; outcome: string; error?: string };
    const runs = async (): Promise<Run[]> => JSON.parse(await ok("jobs", "--cluster", c, "--json"));
    const waitFor = async (what: string, cond: (r: Run[]) => boolean) => {
      for (let i = 0; i < 150; i++) {
        const r = await runs();
        if (cond(r)) return r;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await runs())}`);
    };
    let err = "";
    try {
      await waitFor(
        "a run of each",
        (r) => ["one", "two"].every((j) => r.some((x) => x.job === j)),
      );
      // Job one now goes to /moved; job two's file breaks.
      await Deno.writeTextFile(`${dir}/one.yaml`, spec("one", "/moved"));
      await Deno.writeTextFile(`${dir}/two.yaml`, "name: two\ntarget: /two\nsorces: []\n");
      const before = (await runs()).length;
      await waitFor("job one into /moved and job two refused", (r) => {
        const later = r.slice(before);
        return later.some((x) => x.job === "two" && x.outcome === "failed") &&
          later.some((x) => x.job === "one" && x.outcome === "ok") &&
          later.filter((x) => x.job === "one" && x.outcome === "ok").length >= 2;
      });
      // The daemon runs a job every second and holds the cluster meanwhile;
      // `ls` refuses a busy cluster at once, so it is tried between runs.
      let ls = await pifs("ls", "--cluster", c, "/moved");
      for (let i = 0; i < 50 && /another pifs command is using this cluster/.test(ls.err); i++) {
        await new Promise((res) => setTimeout(res, 100));
        ls = await pifs("ls", "--cluster", c, "/moved");
      }
      assert.deepStrictEqual([ls.code, ls.out], [0, "a.txt\n"], ls.err);
      // Fixed again: job two runs again.
      await Deno.writeTextFile(`${dir}/two.yaml`, spec("two", "/two"));
      const fixed = (await runs()).length;
      await waitFor(
        "job two fixed",
        (r) => r.slice(fixed).some((x) => x.job === "two" && x.outcome === "ok"),
      );
    } finally {
      daemon.kill("SIGTERM");
      const out = await daemon.output();
      err = new TextDecoder().decode(out.stderr);
      assert.deepStrictEqual(out.code, 0, err);
    }
    assert(err.includes(`${dir}/one.yaml: changed, read again: one`), err);
    assert(err.includes(`${dir}/two.yaml: changed and now invalid`), err);
    assert(/sorces: unknown field/.test(err), err);
    assert(err.includes(`${dir}/two.yaml: fixed, read again: two`), err);
    assert(err.includes("daemon stopped"), err);
    const failed = (await runs()).filter((r) => r.outcome === "failed");
    assert(failed.length > 0 && failed.every((r) => r.job === "two"), JSON.stringify(failed));
    assert(failed[0].error!.includes("the job file is invalid"), failed[0].error);
  });
});
