/**
 * No stack traces, no silent loss (issue 19): every bad input a clear error,
 * every entry not stored named and counted, the exit code honest. Each test
 * here failed on the code before that issue.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fuseUnavailable } from "../fuse/ffi.ts";
import { PIFS, pifs, rand, withSim } from "./_cli.ts";

const STACK_FRAME = /^\s+at /m;

/**
 * Runs `pifs` where a file with mode 000 cannot be read: as this user when
 * it is not root; as root, in a user namespace of its own (`unshare -U`:
 * the same user, without the power to read any file).
 */
function unprivileged(): (
  ...args: string[]
) => Promise<{ code: number; out: string; err: string }> {
  return async (...args: string[]) => {
    const [cmd, pre] = Deno.uid() === 0 ? ["unshare", ["-U", PIFS]] : [PIFS, []];
    const o = await new Deno.Command(cmd, { args: [...pre, ...args], stdin: "null" }).output();
    const t = new TextDecoder();
    return { code: o.code, out: t.decode(o.stdout), err: t.decode(o.stderr) };
  };
}

/** Asserts that `err` holds no stack frame and every line is `pifs: …` or a listed item. */
function noStack(err: string, what = ""): void {
  assert(!STACK_FRAME.test(err), `stack trace${what ? ` (${what})` : ""}:\n${err}`);
  assert(
    !/unexpected \w*Error/.test(err),
    `an unexpected error${what ? ` (${what})` : ""}:\n${err}`,
  );
}

async function sh(
  script: string,
  cwd?: string,
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command("bash", { args: ["-c", script], cwd, stdin: "null" }).output();
  const t = new TextDecoder();
  return { code: o.code, out: t.decode(o.stdout), err: t.decode(o.stderr) };
}

async function journals(c: string): Promise<number[]> {
  const r = await pifs("status", "--cluster", c, "--json");
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out).nodes as { journal_bytes: number }[]).map((n) => n.journal_bytes);
}

/** The paths under `/dir` in the store, relative to it. */
async function storeTree(c: string, dir: string): Promise<string[]> {
  const r = await pifs("ls", "-R", "--json", "--cluster", c, dir);
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out) as { path: string }[]).map((e) => e.path.slice(dir.length + 1)).sort();
}

/** Makes `src` with good files and entries that cannot be stored. */
async function hostileTree(src: string): Promise<void> {
  await Deno.mkdir(`${src}/sub`, { recursive: true });
  await Deno.writeFile(`${src}/ok.bin`, rand(70_000, 1));
  await Deno.writeFile(`${src}/sub/ok2.bin`, rand(3_000, 2));
  await Deno.symlink("ok.bin", `${src}/link`);
  await Deno.symlink("..", `${src}/sub/loop`); // a loop if followed
  const r = await sh(
    `cd '${src}' && mkfifo fifo && printf y > $'\\xff\\xfe'report.txt && printf n > $'new\\nline.txt'`,
  );
  assert.equal(r.code, 0, r.err);
  const sock = await sh(
    `cd '${src}' && python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')"`,
  );
  assert.equal(sock.code, 0, sock.err);
}

Deno.test("put: bad entries are named and skipped, the rest is stored, exit code 1", async () => {
  await withSim(
    ["--nodes", "3"],
    async (dir) => {
      const c = `${dir}/c`, src = `${dir}/src`;
      await hostileTree(src);
      const unreadable = `${dir}/unreadable.bin`;
      await Deno.writeTextFile(unreadable, "secret");
      await Deno.chmod(unreadable, 0o000);
      await Deno.mkdir(`${src}/locked`);
      await Deno.writeTextFile(`${src}/locked/in.txt`, "in");
      await Deno.chmod(`${src}/locked`, 0o000);
      const r = await unprivileged()("put", "--cluster", c, src, unreadable, "/dest");
      noStack(r.err, "put");
      assert.equal(r.code, 1, r.err);
      const notStored = r.err.split("\n").filter((l) => l.startsWith("not stored: "));
      const named = (s: string) => notStored.some((l) => l.includes(s));
      assert(named(`${src}/fifo: fifo skipped`), r.err);
      assert(named(`${src}/sock: socket skipped`), r.err);
      assert(named("report.txt: name is not valid UTF-8"), r.err);
      assert(named(`${src}/new\\nline.txt: remote path`), r.err); // escaped: one line
      assert(named(`${unreadable}: cannot open: `), r.err);
      assert(named(`${src}/locked: directory not readable`), r.err);
      assert.equal(notStored.length, 6, r.err);
      assert.match(r.err, /^stored 2 files in .*; 6 not stored \(listed above\)$/m);
      await Deno.chmod(`${src}/locked`, 0o755); // for the clean-up
      assert.deepStrictEqual(await storeTree(c, "/dest"), [
        "src",
        "src/link",
        "src/locked",
        "src/ok.bin",
        "src/sub",
        "src/sub/loop",
        "src/sub/ok2.bin",
      ]);
      // The links are stored as links, the files bit-exact.
      const got = await pifs("get", "--cluster", c, "/dest/src", `${dir}/back`);
      assert.equal(got.code, 0, got.err);
      assert.equal(await Deno.readLink(`${dir}/back/link`), "ok.bin");
      assert.equal(await Deno.readLink(`${dir}/back/sub/loop`), "..");
      assert.deepStrictEqual(await Deno.readFile(`${dir}/back/ok.bin`), rand(70_000, 1));
      assert.deepStrictEqual(await Deno.readFile(`${dir}/back/sub/ok2.bin`), rand(3_000, 2));
      // --json says the same.
      const j = await pifs("put", "--cluster", c, "--json", `${src}/fifo`, "/dest2");
      assert.equal(j.code, 1, j.err);
      const sum = JSON.parse(j.out);
      assert.deepStrictEqual([sum.files, sum.files_failed, sum.complete], [0, 1, false]);
      assert.deepStrictEqual(sum.failed, [{
        path: `${src}/fifo`,
        message: "fifo skipped (not a regular file)",
      }]);
    },
    "pifs-err-put-",
    "c",
  );
});

Deno.test("put: special files given by name are named, not 'stored 0 files' with exit 0", async () => {
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      const c = `${dir}/c`;
      for (const [path, kind] of [["/dev/null", "character device"]]) {
        const r = await pifs("put", "--cluster", c, path, "/x");
        assert.equal(r.code, 1, r.err);
        assert.match(r.err, new RegExp(`^not stored: ${path}: ${kind} skipped`, "m"));
        assert.match(r.err, /^stored 0 files in /m);
      }
      // A name that is not UTF-8, given as LOCAL: said so, nothing stored.
      const bad = await sh(
        `printf y > $'${dir}/\\xff'.txt && '${PIFS}' put --cluster '${c}' $'${dir}/\\xff'.txt /x`,
      );
      assert.equal(bad.code, 2, bad.err);
      assert.match(bad.err, /^pifs: put: .*: name is not valid UTF-8/);
      noStack(bad.err);
    },
    "pifs-err-special-",
    "c",
  );
});

Deno.test("/.snapshots is reserved: put, mkdir, mv and a job target are refused, nothing written", async () => {
  await withSim(
    ["--nodes", "3"],
    async (dir) => {
      const c = `${dir}/c`;
      await Deno.writeTextFile(`${dir}/hi.txt`, "hi\n");
      assert.equal((await pifs("mkdir", "--cluster", c, "/real")).code, 0);
      const before = await journals(c);
      for (
        const args of [
          ["put", `${dir}/hi.txt`, "/.snapshots/evil"],
          ["put", `${dir}/hi.txt`, "/.snapshots"],
          ["mkdir", "/.snapshots/photos-20260101-000000/zzz"],
          ["mv", "/real", "/.snapshots/x"],
          ["copies", "/.snapshots", "3"],
        ]
      ) {
        const r = await pifs(args[0], "--cluster", c, ...args.slice(1));
        assert.notEqual(r.code, 0, `${args.join(" ")}: accepted`);
        assert.match(r.err, new RegExp(`^pifs: ${args[0]}: .*/\\.snapshots is reserved`), r.err);
        noStack(r.err, args.join(" "));
      }
      await Deno.writeTextFile(
        `${dir}/job.yaml`,
        "name: evil\ntarget: /.snapshots/x\nsources:\n  - folder: .\n",
      );
      const job = await pifs("sync", "--cluster", c, `${dir}/job.yaml`);
      assert.equal(job.code, 2, job.err);
      assert.match(job.err, /target: \/\.snapshots is reserved/);
      assert.deepStrictEqual(await journals(c), before, "a refused command wrote to the journals");
      const ls = await pifs("ls", "--cluster", c, "/");
      assert.equal(ls.out, "real/\n");
    },
    "pifs-err-snap-",
    "c",
  );
});

Deno.test("get: names of 246 to 255 bytes come back (the part file fits); - is stdout; cp's rules", async () => {
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      const c = `${dir}/c`, src = `${dir}/long`;
      await Deno.mkdir(src);
      const names = [246, 250, 255].map((n) => "n".repeat(n - 4) + ".txt");
      names.push("é".repeat(125) + ".txt"); // 254 bytes, two per character
      for (const [i, n] of names.entries()) await Deno.writeFile(`${src}/${n}`, rand(100 + i, i));
      assert.equal((await pifs("put", "--cluster", c, src, "/long")).code, 0);
      const r = await pifs("get", "--cluster", c, "/long", `${dir}/back`);
      assert.equal(r.code, 0, r.err);
      noStack(r.err);
      assert.match(r.err, /^wrote 4 files, /m);
      const back: string[] = [];
      for await (const e of Deno.readDir(`${dir}/back`)) back.push(e.name);
      assert.deepStrictEqual(back.sort(), [...names].sort(), "every file, and no part file left");
      for (const [i, n] of names.entries()) {
        assert.deepStrictEqual(await Deno.readFile(`${dir}/back/${n}`), rand(100 + i, i));
      }
      // FILE - writes to standard output, and no file named "-".
      const out = await sh(
        `'${PIFS}' get --cluster '${c}' '/long/${names[0]}' - | od -An -tx1 | tr -d ' \\n'`,
        dir,
      );
      assert.equal(out.code, 0, out.err);
      const hex = Array.from(rand(100, 0), (b) => b.toString(16).padStart(2, "0")).join("");
      assert.equal(out.out, hex);
      assert.equal(await Deno.stat(`${dir}/-`).catch(() => null), null);
      // As cp: the parent of LOCAL must exist; a file in the way is named.
      const deep = await pifs("get", "--cluster", c, "/long", `${dir}/no/such/dir`);
      assert.equal(deep.code, 2, deep.err);
      assert.match(
        deep.err,
        /^pifs: get: .*no\/such\/dir: cannot create it: .*no\/such: no such directory$/m,
      );
      assert.equal(await Deno.stat(`${dir}/no`).catch(() => null), null, "parents were created");
      await Deno.writeTextFile(`${dir}/afile`, "x");
      const inTheWay = await pifs("get", "--cluster", c, "/long", `${dir}/afile/sub`);
      assert.equal(inTheWay.code, 2, inTheWay.err);
      assert.match(inTheWay.err, /afile: not a directory/);
      const onFile = await pifs("get", "--cluster", c, "/long", `${dir}/afile`);
      assert.equal(onFile.code, 1, onFile.err);
      assert.match(onFile.err, /^not written: .*afile: exists and is not a directory$/m);
      for (const x of [deep, inTheWay, onFile]) noStack(x.err);
    },
    "pifs-err-get-",
    "c",
  );
});

Deno.test("sync: files it could not store count in files_failed, exit 1, 'partial' in pifs jobs", async () => {
  await withSim(
    ["--nodes", "3"],
    async (dir) => {
      const c = `${dir}/c`, src = `${dir}/src`;
      await Deno.mkdir(src);
      await Deno.writeFile(`${src}/ok.bin`, rand(5_000, 9));
      const r0 = await sh(
        `cd '${src}' && printf y > $'\\xff\\xfe'report.txt && printf n > $'new\\nline.txt' && ` +
          `mkfifo fifo && ln -s nowhere broken && echo x > locked && chmod 000 locked`,
      );
      assert.equal(r0.code, 0, r0.err);
      await Deno.writeTextFile(
        `${dir}/job.yaml`,
        "name: tree\ntarget: /tree\nsources:\n  - folder: ./src\n    follow_symlinks: true\n",
      );
      const run = unprivileged();
      const r = await run("sync", "--cluster", c, "--json", `${dir}/job.yaml`);
      noStack(r.err);
      assert.equal(r.code, 1, r.err);
      const lines = r.out.trim().split("\n").map((l) => JSON.parse(l));
      const sum = lines.find((e) => e.event === "done").summary;
      assert.equal(sum.files_new, 1, JSON.stringify(sum));
      assert.equal(sum.files_failed, 5, JSON.stringify(sum.problems));
      const why = (p: string) => sum.problems.find((x: { path: string }) => x.path === p)?.message;
      assert.match(why("\ufffd\ufffdreport.txt"), /not valid UTF-8/);
      assert.match(why("new\nline.txt"), /control character/);
      assert.match(why("fifo"), /fifo skipped/);
      assert.match(why("locked"), /file not readable/);
      assert.match(why("broken"), /broken symbolic link/);
      const jobs = await pifs("jobs", "--cluster", c, "--json");
      const runs = JSON.parse(jobs.out);
      assert.equal(runs[runs.length - 1].outcome, "partial");
      // Without --json the summary names each one, on one line each.
      const t = await run("sync", "--cluster", c, `${dir}/job.yaml`);
      assert.equal(t.code, 1, t.err);
      assert.match(t.out, /^ {2}FAILED: new\\nline\.txt: /m);
      assert.match(t.out, /5 files were not stored: the run is partial/);
      // A symbolic link left out because links are not followed is a skip, not a failure.
      await Deno.writeTextFile(
        `${dir}/nolinks.yaml`,
        "name: ok\ntarget: /ok\nsources:\n  - folder: ./ok\n",
      );
      await Deno.mkdir(`${dir}/ok`);
      await Deno.writeTextFile(`${dir}/ok/a.txt`, "a");
      await Deno.symlink("a.txt", `${dir}/ok/link`);
      const s = await pifs("sync", "--cluster", c, "--json", `${dir}/nolinks.yaml`);
      assert.equal(s.code, 0, s.err);
      const last = JSON.parse(s.out.trim().split("\n").pop()!);
      assert.deepStrictEqual([last.files_new, last.files_failed, last.files_skipped], [1, 0, 1]);
    },
    "pifs-err-sync-",
    "c",
  );
});

Deno.test("daemon: a job file given by a relative path runs on its schedule", async () => {
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      const c = `${dir}/c`;
      await Deno.mkdir(`${dir}/src`);
      await Deno.writeTextFile(`${dir}/src/a.txt`, "a");
      await Deno.writeTextFile(
        `${dir}/jobs.yaml`,
        "name: every-second\ntarget: /t\nschedule: '* * * * * *'\nsources:\n  - folder: ./src\n",
      );
      const child = new Deno.Command(PIFS, {
        args: ["daemon", "--cluster", c, "--scrub", "off", "./jobs.yaml"],
        cwd: dir,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const errText = child.stderr.pipeThrough(new TextDecoderStream());
      let err = "";
      const reading = (async () => {
        for await (const t of errText) err += t;
      })();
      try {
        const deadline = Date.now() + 60_000;
        let ran = false;
        while (!ran && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 500));
          const log = await Deno.readTextFile(`${c}/jobs.log`).catch(() => "");
          ran = log.includes('"every-second"');
        }
        assert(ran, `no run logged in 60 s:\n${err}`);
        assert(!err.includes("no job has a schedule"), err);
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await reading;
      }
      noStack(err);
    },
    "pifs-err-daemon-",
    "c",
  );
});

Deno.test("CLI: one line per error, --debug and PIFS_DEBUG add the stack, exit codes 1 and 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-err-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/ok.yaml`, "name: a\ntarget: /a\nsources:\n  - folder: .\n");
    const env = { PIFS_CLUSTER: `${dir}/nonexistent` };
    const run = async (args: string[], extraEnv: Record<string, string> = {}) => {
      const o = await new Deno.Command(PIFS, {
        args,
        env: { ...env, ...extraEnv },
        stdin: "null",
      }).output();
      return { code: o.code, err: new TextDecoder().decode(o.stderr) };
    };
    for (const cmd of [["sync", `${dir}/ok.yaml`], ["ls", "/"], ["status"], ["jobs"]]) {
      const r = await run(cmd);
      assert.equal(r.code, 1, `${cmd[0]}: ${r.err}`);
      assert.match(r.err, new RegExp(`^pifs: ${cmd[0]}: .*nonexistent`), r.err);
      assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
      noStack(r.err, cmd[0]);
    }
    const debug = await run(["--debug", "sync", `${dir}/ok.yaml`]);
    assert.equal(debug.code, 1);
    assert(STACK_FRAME.test(debug.err), `--debug shows no stack:\n${debug.err}`);
    const envDebug = await run(["sync", `${dir}/ok.yaml`], { PIFS_DEBUG: "1" });
    assert(STACK_FRAME.test(envDebug.err), `PIFS_DEBUG=1 shows no stack:\n${envDebug.err}`);
    // A typo: one error line and a pointer to the help, not the whole help.
    const typo = await run(["statu"]);
    assert.equal(typo.code, 2);
    assert.match(typo.err, /^pifs: unknown command 'statu'/);
    assert(typo.err.split("\n").length <= 4, typo.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ls | head: a closed standard output ends the command quietly, also through serve", async () => {
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      const c = `${dir}/c`;
      // Enough output to fill a pipe: 300 names of 200 bytes.
      await Deno.mkdir(`${dir}/many`);
      for (let i = 0; i < 300; i++) {
        await Deno.writeTextFile(`${dir}/many/${String(i).padStart(4, "0")}${"x".repeat(196)}`, "");
      }
      assert.equal((await pifs("put", "--cluster", c, `${dir}/many`, "/many")).code, 0);
      const pipe = `set -o pipefail; '${PIFS}' ls -l -R --cluster '${c}' / | head -2 >/dev/null`;
      const direct = await sh(pipe);
      assert.equal(direct.err, "", "a message on a closed pipe");
      assert([0, 141].includes(direct.code), `exit ${direct.code}`);
      // The same through `pifs serve`, which holds the cluster.
      const serve = new Deno.Command(PIFS, {
        args: ["serve", "--cluster", c],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline && !(await Deno.stat(`${c}/cmd.sock`).catch(() => null))) {
          await new Promise((r) => setTimeout(r, 200));
        }
        const served = await sh(pipe);
        assert.equal(served.err, "", "a message on a closed pipe through serve");
        assert([0, 141].includes(served.code), `exit ${served.code}`);
      } finally {
        serve.kill("SIGTERM");
        await serve.status;
      }
    },
    "pifs-err-pipe-",
    "c",
  );
});

Deno.test("put: full cards: the file and the full nodes are named, no node is called down", async () => {
  await withSim(
    ["--nodes", "2", "--card-size", "64M"],
    async (dir) => {
      const c = `${dir}/c`;
      await Deno.mkdir(`${dir}/big`);
      await Deno.writeFile(`${dir}/big/a-small.bin`, rand(10_000, 3));
      await Deno.writeFile(`${dir}/big/b-huge.bin`, rand(70 << 20, 4));
      await Deno.writeFile(`${dir}/big/c-after.bin`, rand(10_000, 5));
      const r = await pifs("put", "--cluster", c, "--json", `${dir}/big`, "/big");
      noStack(r.err);
      assert.equal(r.code, 1, r.err);
      assert.match(
        r.err,
        /^pifs: put: .*\/big\/b-huge\.bin: chunk [0-9a-f]+ .*: no space left on nodes 0, 1 \(ENOSPC\)$/m,
      );
      assert(!/is down/.test(r.err), `a full node was called down:\n${r.err}`);
      const sum = JSON.parse(r.out);
      assert.equal(sum.complete, false);
      assert(sum.not_reached.includes(`${dir}/big/b-huge.bin`), r.out);
      // The summary's files are the ones in the store.
      const stored = (await storeTree(c, "/big")).filter((p) => p.endsWith(".bin"));
      assert.equal(stored.length, sum.files, r.out);
      const status = await pifs("status", "--cluster", c, "--json");
      for (const n of JSON.parse(status.out).nodes) assert.equal(n.answers, true);
    },
    "pifs-err-full-",
    "c",
  );
});

// `test -c`: Deno's own stat of a device needs more than --allow-read.
const FUSE_SKIP = Deno.build.os !== "linux"
  ? "not Linux"
  : !(await new Deno.Command("test", { args: ["-c", "/dev/fuse"] }).output()).success
  ? "/dev/fuse is missing"
  : fuseUnavailable();

Deno.test({
  name: "mount: ENAMETOOLONG at create, mkdir and rename; EFBIG for a huge truncate" +
    (FUSE_SKIP ? ` (SKIPPED: ${FUSE_SKIP})` : ""),
  ignore: !!FUSE_SKIP,
  fn: async () => {
    await withSim(
      ["--nodes", "2"],
      async (dir) => {
        const c = `${dir}/c`, mp = `${dir}/mnt`;
        await Deno.mkdir(mp);
        const m = await pifs("mount", "--cluster", c, mp);
        assert.equal(m.code, 0, m.err);
        try {
          const long = "a".repeat(256);
          const r = await sh(
            `cd '${mp}' && { touch ${long} 2>&1; mkdir ${long} 2>&1; echo x > ok; mv ok ${long} 2>&1; ` +
              `truncate -s 999999999999999 ok 2>&1; ` +
              `p=.; for i in $(seq 25); do p=$p/${
                "d".repeat(200)
              }; mkdir $p 2>&1 || break; done; }`,
          );
          const lines = r.out.trim().split("\n");
          assert.equal(lines.filter((l) => /File name too long/.test(l)).length, 4, r.out);
          assert.match(r.out, /truncate: .*File too large/);
          const ls = await sh(`ls -A '${mp}'`);
          assert.equal(ls.out.split("\n").filter((n) => n.startsWith("aaa")).length, 0, ls.out);
        } finally {
          await pifs("umount", mp);
        }
        const spool = [];
        for await (const e of Deno.readDir(c)) if (e.name.includes("orphaned")) spool.push(e.name);
        assert.deepStrictEqual(spool, [], "content orphaned in the spool");
      },
      "pifs-err-mount-",
      "c",
    );
  },
});

Deno.test("photos without a capture date are filed by their UTC file date whatever TZ, and noted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-err-tz-" });
  try {
    await Deno.mkdir(`${dir}/lib`);
    // 23:30 UTC: the next day east of UTC, so a local date would differ by TZ.
    await Deno.writeFile(`${dir}/lib/screenshot.png`, rand(2_000, 7));
    const t = new Date(Date.UTC(2024, 4, 2, 23, 30));
    await Deno.utime(`${dir}/lib/screenshot.png`, t, t);
    const photos = new URL("../pipelines/photos.ts", import.meta.url).href;
    const script = `import { PhotosSource } from "${photos}";
      const out = [];
      for await (const e of new PhotosSource({ roots: ["${dir}/lib"] }).list(() => {})) {
        out.push(e.path + " | " + (e.note ?? ""));
      }
      console.log(out.join("\\n"));`;
    const listed: string[] = [];
    for (const tz of ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"]) {
      const o = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--config",
          new URL("../deno.json", import.meta.url).pathname,
          script,
        ],
        env: { TZ: tz },
        stdin: "null",
      }).output();
      assert(o.success, new TextDecoder().decode(o.stderr));
      listed.push(new TextDecoder().decode(o.stdout).trim());
    }
    assert.equal(
      listed[0],
      "2024/05/02/screenshot.png | dated by its file time (UTC): no capture date in its metadata",
    );
    assert.deepStrictEqual(listed, [listed[0], listed[0], listed[0]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: sync --check warns of a missing source folder; .nan, gc --help and plurals read right", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-err-small-" });
  try {
    await Deno.writeTextFile(
      `${dir}/nope.yaml`,
      "name: a\ntarget: /a\nsources:\n  - folder: ./nope\n",
    );
    const check = await pifs("sync", "--check", `${dir}/nope.yaml`);
    assert.equal(check.code, 0, check.err);
    assert.match(check.err, /job a: warning: source folder .*\/nope does not exist/);
    await Deno.writeTextFile(
      `${dir}/nan.yaml`,
      "name: a\ntarget: /a\ncopies: .nan\nsources:\n  - folder: .\n",
    );
    const nan = await pifs("sync", "--check", `${dir}/nan.yaml`);
    assert.equal(nan.code, 2);
    assert.match(nan.err, /copies: expected a number, got not a number \(\.nan\)$/m);
    const gc = await pifs("gc", "--help");
    assert.equal(gc.out.match(/3600/g)?.length, 1, gc.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      await Deno.writeTextFile(`${dir}/one.txt`, "1");
      const r = await pifs("put", "--cluster", `${dir}/c`, `${dir}/one.txt`, "/one.txt");
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /^stored 1 file in /m);
    },
    "pifs-err-plural-",
    "c",
  );
});

Deno.test("sim up on a damaged card names the real reason and writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-err-card-" });
  try {
    const c = `${dir}/c`;
    assert.equal((await pifs("sim", "up", "--dir", c, "--nodes", "2")).code, 0);
    assert.equal((await pifs("sim", "down", "--dir", c)).code, 0);
    // Sectors per cluster (BPB byte 13 of the FAT32 partition at 1 MiB): 3 is no power of two.
    const f = await Deno.open(`${c}/node1.img`, { read: true, write: true });
    await f.seek(1024 * 1024 + 13, Deno.SeekMode.Start);
    await f.write(new Uint8Array([3]));
    f.close();
    const before = await Deno.readFile(`${c}/node1.img`);
    const r = await pifs("sim", "up", "--dir", c);
    noStack(r.err);
    assert.equal(r.code, 1, r.err);
    assert.match(
      r.err,
      /^pifs: sim: node 1: card node1\.img cannot be used: EBPB \(the card's FAT32 boot sector \(BPB\) is inconsistent\); nothing was written to it$/m,
    );
    assert.deepStrictEqual(await Deno.readFile(`${c}/node1.img`), before, "the card changed");
  } finally {
    await pifs("sim", "down", "--dir", `${dir}/c`);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a job file that is not UTF-8 is refused at its line, not read with U+FFFD", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-err-utf8-" });
  try {
    const f = `${dir}/job.yaml`;
    const bytes = new TextEncoder().encode("name: a\ntarget: /a\nsources:\n  - folder: ./x\n");
    bytes[bytes.indexOf(0x78)] = 0xff; // the x of ./x
    await Deno.writeFile(f, bytes);
    const r = await pifs("sync", "--check", f);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^pifs: sync: .*job\.yaml:4:1: not valid UTF-8 text/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
