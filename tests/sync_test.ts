/**
 * `pifs sync` end to end on hosted nodes: the smallest spec, deduplication
 * across runs (an unchanged source costs almost nothing on the wires, a 1 MiB
 * edit in a 100 MiB file costs about its chunks), snapshots and their diff,
 * and an HTTP dataset served by a flaky server.
 */
import { ok, PIFS, pifs, withSim } from "./_cli.ts";
import assert from "node:assert/strict";
import { retained } from "../sync/engine.ts";
import type { SnapshotRow } from "../store/index_db.ts";

/** Seeded pseudo-random bytes (xorshift32), so chunk boundaries are reproducible. */
function rand(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  const w = new Uint32Array(b.buffer, 0, n >> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x;
  }
  return b;
}

function lastJson(out: string): Record<string, unknown> {
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/** Runs `pifs sync ARGS` and SIGKILLs it after `ms` (unless it finished first). */
async function syncKilledAfter(ms: number, ...args: string[]): Promise<void> {
  const child = new Deno.Command(PIFS, {
    args: ["sync", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, ms));
  try {
    child.kill("SIGKILL");
  } catch {
    // it finished first: a run that was not cut
  }
  await child.status;
}

/** A new simulated cluster in DIR/c for `fn(DIR)`, stopped and removed afterwards. */
function withCluster(args: string[], fn: (dir: string) => Promise<void>): Promise<void> {
  return withSim(args, fn, "pifs-sync-", "c");
}

const MiB = 1024 * 1024;

Deno.test("sync: the smallest spec; an unchanged re-sync and 1 MiB edits of a 100 MiB file cost their share of the wires", async () => {
  await withCluster(["--nodes", "3", "--card-size", "256M"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/my-docs/notes`, { recursive: true });
    await Deno.writeTextFile(`${dir}/my-docs/notes/todo.txt`, "buy more SD cards\n");
    const big = rand(100 * MiB, 7);
    await Deno.writeFile(`${dir}/my-docs/big.bin`, big);
    // Exactly the smallest spec; relative paths are relative to it.
    await Deno.writeTextFile(
      `${dir}/docs.yaml`,
      "name: docs\ntarget: /docs\nsources:\n  - folder: ./my-docs\n",
    );
    const first = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/docs.yaml`));
    assert.deepStrictEqual(first.files_new, 2);
    assert.deepStrictEqual(first.bytes_read, 100 * MiB + 18);
    assert.deepStrictEqual(
      await ok("cat", "--cluster", c, "/docs/notes/todo.txt"),
      "buy more SD cards\n",
    );

    // Unchanged: skipped before being read; at most 0.1 % of the bytes on the wires.
    const again = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/docs.yaml`));
    assert.deepStrictEqual(again.files_unchanged, 2);
    assert.deepStrictEqual(again.bytes_read, 0);
    assert(
      (again.wire_bytes as number) <= 0.001 * 100 * MiB,
      `unchanged re-sync sent ${again.wire_bytes} bytes`,
    );

    // 1 MiB changed: at most 3 new chunks, and on average (over three edits:
    // in the middle and at a quarter and three quarters) at most 3 average
    // chunks' bytes (1 MiB each, two copies), plus metadata (manifest,
    // journal, snapshot, framing). One edit alone may cost more bytes: the
    // chunk around each end of the edit can be up to 4 MiB (the max).
    let sent = 0;
    const each: number[] = [];
    for (const [k, at] of [50, 25, 75].entries()) {
      big.set(rand(MiB, 99 + k), at * MiB);
      await Deno.writeFile(`${dir}/my-docs/big.bin`, big);
      const edit = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/docs.yaml`));
      assert.deepStrictEqual([edit.files_changed, edit.files_unchanged], [1, 1]);
      assert((edit.chunks_deduplicated as number) >= 95, JSON.stringify(edit));
      sent += edit.wire_bytes as number;
      each.push(edit.wire_bytes as number);
    }
    const limit = 3 * (2 * 3 * MiB * 1.01 + 128 * 1024);
    assert(sent <= limit, `3 edits of 1 MiB sent ${each.join(" + ")} bytes (limit ${limit})`);
    await ok("get", "--cluster", c, "/docs/big.bin", `${dir}/back.bin`);
    const back = await Deno.readFile(`${dir}/back.bin`);
    assert(back.length === big.length && back.every((x, i) => x === big[i]), "big.bin differs");

    // Five runs, five snapshots; the diff of the first and the last names the edit.
    const snaps = JSON.parse(await ok("snapshots", "--cluster", c, "--json")) as SnapshotRow[];
    assert.deepStrictEqual(snaps.length, 5);
    assert.deepStrictEqual(snaps.map((s) => s.files), [2, 2, 2, 2, 2]);
    const diff = JSON.parse(
      await ok("diff", "--cluster", c, "--json", snaps[0].name, snaps[4].name),
    );
    assert.deepStrictEqual(diff, [{ kind: "M", path: "big.bin", size: 100 * MiB }]);
    assert.deepStrictEqual(
      JSON.parse(await ok("diff", "--cluster", c, "--json", snaps[0].name, snaps[1].name)),
      [],
    );
  });
});

Deno.test("sync: an HTTP dataset from a flaky server: cut files resumed by range, a bad sha256 reported and skipped", async () => {
  const files: Record<string, Uint8Array<ArrayBuffer>> = {
    "a.csv": rand(300_000, 1),
    "cut.bin": rand(1_500_000, 2),
    "flaky.bin": rand(700_000, 3),
    "bad.bin": rand(200_000, 4),
  };
  const hex = async (b: Uint8Array<ArrayBuffer>) =>
    Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", b)),
      (x) => x.toString(16).padStart(2, "0"),
    ).join("");
  const manifest = {
    files: await Promise.all(
      Object.entries(files).map(async ([name, b]) => ({
        url: `data/${name}`,
        path: name,
        size: b.length,
        sha256: name === "bad.bin" ? "00".repeat(32) : await hex(b),
      })),
    ),
  };
  const log: { path: string; range: string | null }[] = [];
  const attempts = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    log.push({ path, range });
    if (path === "/manifest.json") return Response.json(manifest);
    const name = path.replace("/data/", "");
    const body = files[name];
    if (!body) return new Response("no", { status: 404 });
    const n = (attempts.get(name) ?? 0) + 1;
    attempts.set(name, n);
    if (name === "flaky.bin" && n === 1) return new Response("oops", { status: 500 });
    let start = 0;
    const m = range?.match(/^bytes=(\d+)-$/);
    if (m) start = Number(m[1]);
    const part = body.subarray(start);
    const headers = new Headers({ "content-length": String(part.length) });
    if (m) headers.set("content-range", `bytes ${start}-${body.length - 1}/${body.length}`);
    if (name === "cut.bin" && n === 1) {
      // Half the body, then the connection breaks.
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(part.slice(0, 600_000));
          } else c.error(new Error("connection cut"));
        },
      });
      return new Response(stream, { status: m ? 206 : 200, headers });
    }
    return new Response(part, { status: m ? 206 : 200, headers });
  });
  try {
    await withCluster(["--nodes", "2"], async (dir) => {
      const c = `${dir}/c`;
      const port = server.addr.port;
      await Deno.writeTextFile(
        `${dir}/dataset.yaml`,
        `name: dataset\ntarget: /datasets/demo\ncopies: 1\nsources:\n  - http:\n` +
          `      manifest: http://127.0.0.1:${port}/manifest.json\n      retries: 4\n`,
      );
      const r = await pifs("sync", "--cluster", c, "--json", `${dir}/dataset.yaml`);
      assert.deepStrictEqual(r.code, 1, "a failed file makes the exit code 1");
      const sum = lastJson(r.out);
      assert.deepStrictEqual([sum.files_new, sum.files_failed], [3, 1], JSON.stringify(sum));
      assert(/bad\.bin.*sha256 mismatch/.test(r.out), r.out);
      // The cut file was resumed with a range request, not restarted.
      assert(
        log.some((l) => l.path === "/data/cut.bin" && /^bytes=[1-9]\d*-$/.test(l.range ?? "")),
        JSON.stringify(log),
      );
      for (const name of ["a.csv", "cut.bin", "flaky.bin"]) {
        await ok("get", "--cluster", c, `/datasets/demo/${name}`, `${dir}/${name}`);
        const got = await Deno.readFile(`${dir}/${name}`);
        assert(got.every((x, i) => x === files[name][i]) && got.length === files[name].length);
      }
      const ls = await pifs("ls", "--cluster", c, "/datasets/demo/bad.bin");
      assert(ls.code !== 0, "the bad file must not be stored");
      // Again: the good files are unchanged (known by url and sha256), nothing re-read.
      const again = lastJson(
        (await pifs("sync", "--cluster", c, "--json", `${dir}/dataset.yaml`)).out,
      );
      assert.deepStrictEqual(again.files_unchanged, 3);
      assert.deepStrictEqual(again.files_failed, 1);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("sync: --check validates, a bad spec names file, line and field; schema is JSON Schema", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-spec-" });
  try {
    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      "name: docs\ntarget: docs\nsources:\n  - fodler: ./x\n",
    );
    const r = await pifs("sync", "--check", `${dir}/bad.yaml`);
    assert.deepStrictEqual(r.code, 2);
    assert(r.err.includes(`${dir}/bad.yaml:2:9: target:`), r.err);
    assert(r.err.includes("sources[0].fodler: unknown field"), r.err);
    await Deno.writeTextFile(
      `${dir}/good.yaml`,
      "name: docs\ntarget: /docs\nsources:\n  - folder: .\n",
    );
    const g = await pifs("sync", "--check", `${dir}/good.yaml`);
    assert.deepStrictEqual(g.code, 0, g.err);
    assert(g.out.includes("job docs ok"), g.out);
    const schema = JSON.parse((await pifs("schema")).out);
    assert(schema.properties?.sources && schema.properties?.target, "schema lacks job fields");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sync: retention keeps the last N and the newest per day, week and month", () => {
  const day = 86400_000;
  const t0 = Date.UTC(2026, 0, 1, 12);
  // Two snapshots a day for 60 days.
  const snaps: SnapshotRow[] = [];
  for (let i = 0; i < 120; i++) {
    snaps.push({
      name: `s${i}`,
      job: "j",
      target: "/",
      root: "",
      time: t0 + i * day / 2,
      files: 0,
      bytes: 0,
    });
  }
  const keep = retained(snaps, { keepLast: 3, keepDaily: 7, keepWeekly: 0, keepMonthly: 0 });
  // The 3 newest, then the newest of each of 7 days: even i fall at 12:00, odd
  // i at 00:00 of the next day, so it is the even one (the last day has s119).
  assert.deepStrictEqual(
    [...keep].sort(),
    ["s108", "s110", "s112", "s114", "s116", "s117", "s118", "s119"],
  );
  const monthly = retained(snaps, { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 12 });
  // Jan, Feb, Mar 2026: the newest of each month.
  assert.deepStrictEqual(monthly.size, 3);
  assert(monthly.has("s119"));
  const jan = snaps.filter((s) => new Date(s.time).getUTCMonth() === 0).at(-1)!;
  assert(monthly.has(jan.name), `${jan.name} (last of January) not kept`);
});

Deno.test("sync: the host killed mid-run; the rerun rereads no finished file and sends nothing twice", async () => {
  await withCluster(["--nodes", "3", "--baud", "3000000"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/src`);
    const files: Uint8Array[] = [];
    for (let i = 0; i < 12; i++) {
      files.push(rand(MiB / 2 + i * 1000, 100 + i));
      await Deno.writeFile(`${dir}/src/f${i}.bin`, files[i]);
    }
    await Deno.writeTextFile(
      `${dir}/job.yaml`,
      "name: k\ntarget: /k\nsources:\n  - folder: ./src\n",
    );
    // Killed (SIGKILL) part-way: some files committed, one chunk likely half sent.
    await syncKilledAfter(7000, "--cluster", c, `${dir}/job.yaml`);
    const r = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/job.yaml`));
    const total = files.reduce((a, f) => a + f.length, 0);
    assert(
      (r.files_unchanged as number) >= 1,
      `nothing was finished before the kill: ${JSON.stringify(r)}`,
    );
    assert.deepStrictEqual((r.files_unchanged as number) + (r.files_new as number), 12);
    assert((r.bytes_read as number) < total, "finished files were read again");
    // What it re-read went out at most once per copy (chunks stored before the
    // kill not at all, a chunk cut half-way only from where the Pi stood).
    assert(
      (r.wire_bytes as number) <= (r.bytes_read as number) * 2 * 1.03 + 256 * 1024,
      `rerun sent ${r.wire_bytes} bytes for ${r.bytes_read} bytes read: ${JSON.stringify(r)}`,
    );
    for (let i = 0; i < 12; i++) {
      await ok("get", "--cluster", c, `/k/f${i}.bin`, `${dir}/back${i}`);
      const b = await Deno.readFile(`${dir}/back${i}`);
      assert(b.length === files[i].length && b.every((x, k) => x === files[i][k]), `f${i} differs`);
    }
  });
});

Deno.test("sync: the daemon runs jobs on their schedule, one at a time, logs them; a held lock refuses a second sync", async () => {
  await withCluster(["--nodes", "2"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeFile(`${dir}/src/a.bin`, rand(300_000, 5));
    await Deno.writeTextFile(
      `${dir}/job.yaml`,
      'name: tick\ntarget: /tick\ncopies: 1\nschedule: "* * * * * *"\nsources:\n  - folder: ./src\n',
    );
    const daemon = new Deno.Command(PIFS, {
      args: ["daemon", "--cluster", c, `${dir}/job.yaml`],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let runs: { outcome: string; trigger: string; summary?: Record<string, number> }[] = [];
    try {
      for (let i = 0; i < 100 && runs.length < 2; i++) {
        await new Promise((r) => setTimeout(r, 200));
        runs = JSON.parse(await ok("jobs", "--cluster", c, "--json"));
      }
    } finally {
      daemon.kill("SIGTERM");
    }
    const out = await daemon.output();
    const err = new TextDecoder().decode(out.stderr);
    assert.deepStrictEqual(out.code, 0, err);
    assert(err.includes("daemon stopped"), err);
    assert(runs.length >= 2, `runs: ${JSON.stringify(runs)}`);
    assert(runs.every((r) => r.outcome === "ok" && r.trigger === "schedule"), JSON.stringify(runs));
    assert.deepStrictEqual(runs[0].summary!.files_new, 1);
    assert.deepStrictEqual(runs[1].summary!.files_unchanged, 1);
    assert.deepStrictEqual(await ok("ls", "--cluster", c, "/tick"), "a.bin\n");

    // A live process holds the lock: a sync is refused, naming it.
    await Deno.writeTextFile(`${c}/sync.lock`, `${Deno.pid}\n`);
    const held = await pifs("sync", "--cluster", c, `${dir}/job.yaml`);
    assert.deepStrictEqual(held.code, 1);
    assert(held.err.includes(`a sync of this cluster is running (pid ${Deno.pid})`), held.err);
    // A lock left by a process that died is taken over.
    const dead = new Deno.Command("true").spawn();
    const pid = dead.pid;
    await dead.status;
    await Deno.writeTextFile(`${c}/sync.lock`, `${pid}\n`);
    await ok("sync", "--cluster", c, `${dir}/job.yaml`);
    assert(!(await Deno.stat(`${c}/sync.lock`).then(() => true, () => false)), "lock left behind");
  });
});

Deno.test("sync: bad input — malformed YAML, a missing folder, an unreachable manifest, a bad cron — a clear error, nothing written", async () => {
  await withCluster(["--nodes", "2"], async (dir) => {
    const c = `${dir}/c`;
    const journal = async () => {
      const st = JSON.parse(await ok("status", "--cluster", c, "--json"));
      return st.nodes.map((n: { journal_bytes: number }) => n.journal_bytes);
    };
    const before = await journal();
    const cases: [string, string, RegExp][] = [
      ["yaml", "name: a\ntarget: /a\nsources: [\n", /yaml\.yaml:\d+:\d+: /],
      ["unknown", "name: a\ntarget: /a\nsorces:\n  - folder: .\n", /sorces: unknown field/],
      [
        "cron",
        'name: a\ntarget: /a\nschedule: "61 * * * *"\nsources:\n  - folder: .\n',
        /schedule: /,
      ],
      ["missing", "name: a\ntarget: /a\nsources:\n  - folder: ./nope\n", /nope/],
      [
        "unreachable",
        "name: a\ntarget: /a\nsources:\n  - http:\n      manifest: http://127.0.0.1:9/m.json\n      retries: 0\n",
        /127\.0\.0\.1:9\/m\.json/,
      ],
    ];
    for (const [name, text, want] of cases) {
      await Deno.writeTextFile(`${dir}/${name}.yaml`, text);
      const r = await pifs("sync", "--cluster", c, `${dir}/${name}.yaml`);
      assert(r.code !== 0, `${name}: exit code 0`);
      assert(want.test(r.err), `${name}: ${r.err}`);
      assert(!r.err.includes("    at "), `${name}: a stack trace: ${r.err}`);
    }
    assert.deepStrictEqual(await journal(), before, "a failed job wrote to the journals");
    assert.deepStrictEqual(await ok("ls", "--cluster", c, "/"), "");
  });
});

Deno.test("sync: the host killed at 20 random points; the rerun converges, and what was resent stays under a chunk per Pi per kill", async () => {
  await withCluster(["--nodes", "3", "--baud", "3000000"], async (dir) => {
    const c = `${dir}/c`;
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    let total = 0;
    for (let i = 0; i < 16; i++) {
      const b = rand(200_000 + i * 7_000, 500 + i);
      total += b.length;
      await Deno.writeFile(`${dir}/src/${i % 2 ? "sub/" : ""}f${i}.bin`, b);
    }
    for (let i = 0; i < 2; i++) {
      const b = rand(3 * MiB + i, 600 + i); // several chunks each
      total += b.length;
      await Deno.writeFile(`${dir}/src/big${i}.bin`, b);
    }
    await Deno.writeTextFile(
      `${dir}/job.yaml`,
      "name: k20\ntarget: /k20\nsources:\n  - folder: ./src\n",
    );
    const bytesIn = async () => {
      const st = JSON.parse(await ok("status", "--cluster", c, "--json"));
      return st.nodes.reduce((a: number, n: { bytes_in: number }) => a + n.bytes_in, 0);
    };
    const in0 = await bytesIn();
    let seed = 20;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const kills = 20;
    for (let k = 0; k < kills; k++) {
      await syncKilledAfter(300 + next() * 1200, "--cluster", c, `${dir}/job.yaml`);
    }
    const last = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/job.yaml`));
    const sent = (await bytesIn()) - in0;
    // The tree is the source's, as an uninterrupted run leaves it.
    await ok("get", "--cluster", c, "/k20", `${dir}/back`);
    const cmp = await new Deno.Command("diff", { args: ["-r", `${dir}/src`, `${dir}/back`] })
      .output();
    assert.deepStrictEqual(cmp.code, 0, new TextDecoder().decode(cmp.stdout));
    assert.deepStrictEqual(last.files_failed, 0);
    // Everything the nodes received: two copies of the data, protocol
    // overhead, metadata of 21 runs, and at most one chunk (1 MiB on average,
    // the chunk a Pi was receiving) per Pi per kill.
    const floor = 2 * total;
    const limit = floor * 1.02 + 21 * 64 * 1024 + kills * 3 * MiB;
    assert(sent <= limit, `nodes received ${sent} bytes for ${floor} (limit ${limit})`);
    console.log(
      `  nodes received ${sent} bytes; 2 copies of the data: ${floor}; resent ${
        sent - floor
      } over ${kills} kills (${((sent - floor) / kills / 3 / MiB).toFixed(3)} MiB per Pi per kill)`,
    );
  });
});
