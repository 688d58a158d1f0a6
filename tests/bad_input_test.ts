/**
 * The bad-input suite: hundreds of hostile job files (generated from the
 * examples with a fixed seed, `tests/_hostile_specs.ts`) and non-regular
 * files, each given to `pifs sync --check`. Each must be accepted, or refused
 * with one clear error: exit code 0 or 2, no stack frame on stderr, within
 * its time limit. A sample runs through the real `./pifs` too, and refused
 * files go to a real `pifs sync` on a cluster, whose journals must not change.
 *
 * The counts are printed: `deno test -A tests/bad_input_test.ts`.
 *
 * @module
 */
import assert from "node:assert/strict";
import process from "node:process";
import { main } from "../cli/main.ts";
import { hostileSpecs } from "./_hostile_specs.ts";
import { pifs, withSim } from "./_cli.ts";

/** The seed of the generated job files (fixed: the same files every run). */
const SEED = 0x5eed0019;
/** How many are generated. */
const COUNT = 520;
/** Most milliseconds one file may take in `sync --check` (in-process; a hang fails). */
const LIMIT_MS = 10_000;

interface Outcome {
  code: number;
  out: string;
  err: string;
  ms: number;
}

/** Runs the CLI's `main` in this process, capturing what it prints. */
async function runMain(args: string[]): Promise<Outcome> {
  const saved = {
    log: console.log,
    info: console.info,
    error: console.error,
    warn: console.warn,
    outWrite: process.stdout.write,
    errWrite: process.stderr.write,
    exitCode: Deno.exitCode,
  };
  let out = "", err = "";
  const text = (a: unknown[]) => a.map((x) => (typeof x === "string" ? x : String(x))).join(" ");
  console.log = console.info = (...a: unknown[]) => void (out += text(a) + "\n");
  console.error = console.warn = (...a: unknown[]) => void (err += text(a) + "\n");
  process.stdout.write = ((s: string | Uint8Array) => {
    out += typeof s === "string" ? s : new TextDecoder().decode(s);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => {
    err += typeof s === "string" ? s : new TextDecoder().decode(s);
    return true;
  }) as typeof process.stderr.write;
  Deno.exitCode = 0;
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const code = await Promise.race([
      main(args),
      new Promise<number>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hung: pifs ${args.join(" ")}`)), LIMIT_MS);
      }),
    ]);
    return { code, out, err, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    console.log = saved.log;
    console.info = saved.info;
    console.error = saved.error;
    console.warn = saved.warn;
    process.stdout.write = saved.outWrite;
    process.stderr.write = saved.errWrite;
    Deno.exitCode = saved.exitCode;
  }
}

/** A stack frame as V8 prints it. */
const STACK_FRAME = /^\s+at /m;

/** The checks every hostile input must pass; returns whether it was refused. */
function checkOutcome(what: string, file: string, r: Outcome): boolean {
  const show = `${what}: exit ${r.code}, ${Math.round(r.ms)} ms\n${r.err.slice(0, 2000)}`;
  assert(!STACK_FRAME.test(r.err) && !STACK_FRAME.test(r.out), `stack trace: ${show}`);
  assert(
    !/unexpected|TypeError|RangeError|ReferenceError/.test(r.err),
    `not a clear error: ${show}`,
  );
  assert(r.ms < LIMIT_MS, `too slow: ${show}`);
  if (r.code === 0) return false;
  assert.equal(r.code, 2, `exit code (2: a bad job file): ${show}`);
  assert(r.err.startsWith(`pifs: sync: ${file}`), `the error names the file: ${show}`);
  return true;
}

interface Case {
  what: string;
  file: string;
}

/** Writes the generated job files and the non-regular ones into `dir`. */
async function makeCases(dir: string): Promise<Case[]> {
  const cases: Case[] = [];
  const specs = await hostileSpecs(SEED, COUNT);
  for (const [i, s] of specs.entries()) {
    const file = `${dir}/spec-${String(i).padStart(3, "0")}.yaml`;
    await Deno.writeFile(file, s.bytes);
    cases.push({ what: `#${i} ${s.what}`, file });
  }
  // Files that are not job files at all.
  await Deno.mkdir(`${dir}/a-directory.yaml`);
  cases.push({ what: "a directory", file: `${dir}/a-directory.yaml` });
  const fifo = `${dir}/fifo.yaml`;
  const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  assert(mk.success, "mkfifo");
  cases.push({ what: "a fifo (nobody writes to it)", file: fifo });
  for (const dev of ["/dev/zero", "/dev/null", "/dev/urandom"]) {
    cases.push({ what: `the device ${dev}`, file: dev });
  }
  await Deno.symlink("/dev/zero", `${dir}/zero-link.yaml`);
  cases.push({ what: "a symbolic link to /dev/zero", file: `${dir}/zero-link.yaml` });
  await Deno.writeTextFile(`${dir}/big.yaml`, `name: a\ntarget: /a\n# ${"x".repeat(2 << 20)}\n`);
  cases.push({ what: "a 2 MiB job file", file: `${dir}/big.yaml` });
  cases.push({ what: "a missing file", file: `${dir}/missing.yaml` });
  try {
    await Deno.readTextFile("/proc/sys/vm/drop_caches");
  } catch (e) {
    // Write-only even for root: an unreadable file on any Linux.
    if (e instanceof Deno.errors.PermissionDenied) {
      cases.push({ what: "an unreadable file", file: "/proc/sys/vm/drop_caches" });
    }
  }
  return cases;
}

Deno.test("bad input: 500+ hostile job files, each accepted or refused with one clear line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-bad-input-" });
  try {
    const cases = await makeCases(dir);
    let refused = 0, accepted = 0, slowest = 0;
    for (const c of cases) {
      const r = await runMain(["sync", "--check", c.file]);
      if (checkOutcome(c.what, c.file, r)) refused++;
      else accepted++;
      slowest = Math.max(slowest, r.ms);
    }
    console.log(
      `bad input: ${cases.length} job files tried: ${refused} refused with a clear error, ` +
        `${accepted} accepted, 0 stack traces, 0 hangs (slowest ${Math.round(slowest)} ms)`,
    );
    assert(cases.length >= 500, `${cases.length} cases`);
    // Most mutations break the file; a generator that broke nothing tests nothing.
    assert(refused > cases.length / 2, `only ${refused} of ${cases.length} refused`);
    assert(accepted > 0, "no mutation kept the file valid: the checks of valid files ran never");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: a sample through the real ./pifs: the same exit codes, no stack, no hang", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-bad-input-cli-" });
  try {
    const cases = await makeCases(dir);
    const sample = cases.filter((_, i) => i % 26 === 0 || i >= cases.length - 9);
    // A few at a time: each is a process of its own.
    for (let i = 0; i < sample.length; i += 4) {
      await Promise.all(
        sample.slice(i, i + 4).map(async (c) => {
          const t0 = performance.now();
          const r = await pifs("sync", "--check", c.file);
          const ms = performance.now() - t0;
          const inProcess = await runMain(["sync", "--check", c.file]);
          checkOutcome(c.what, c.file, { ...r, ms: Math.min(ms, LIMIT_MS - 1) });
          assert.equal(r.code, inProcess.code, `${c.what}: the CLI and main() differ`);
          assert(ms < 30_000, `${c.what}: ${Math.round(ms)} ms`);
        }),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input: a refused job file writes nothing to the cluster", async () => {
  await withSim(
    ["--nodes", "3"],
    async (dir) => {
      const c = `${dir}/c`;
      const journals = async () => {
        const r = await pifs("status", "--cluster", c, "--json");
        assert.equal(r.code, 0, r.err);
        return (JSON.parse(r.out).nodes as { journal_bytes: number }[]).map((n) => n.journal_bytes);
      };
      const before = await journals();
      const cases = await makeCases(dir);
      const refused: Case[] = [];
      for (const c of cases) {
        if ((await runMain(["sync", "--check", c.file])).code === 2) refused.push(c);
      }
      const sample = refused.filter((_, i) => i % 20 === 0 || i >= refused.length - 6);
      for (const s of sample) {
        const r = await pifs("sync", "--cluster", c, s.file);
        assert.equal(r.code, 2, `${s.what}: ${r.err}`);
        assert(!STACK_FRAME.test(r.err), `${s.what}: ${r.err}`);
      }
      assert.deepStrictEqual(await journals(), before, "a refused job file changed the journals");
      const lock = await Deno.stat(`${c}/sync.lock`).catch(() => undefined);
      assert.equal(lock, undefined, "sync.lock left behind");
    },
    "pifs-bad-input-sim-",
    "c",
  );
});
