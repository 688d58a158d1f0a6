/**
 * The job-spec fuzz target of `deno task fuzz` (`fuzz_spec`): hostile job
 * files from `tests/_hostile_specs.ts`, a new seed per round, each loaded by
 * `loadSpec` as `pifs sync` does. A file must load, or fail with a
 * `SpecError` (the one error a bad job file may raise), within 5 s. Anything
 * else is a failure; its file is kept in `firmware/build/fuzz/artifacts/`.
 *
 *   deno run -A tests/fuzz_spec.ts [SECONDS] [SEED]
 *
 * Prints the runs and ends with "N passed, N failed" (one target).
 *
 * @module
 */
import { loadSpec, SpecError } from "../sync/spec.ts";
import { hostileSpecs } from "./_hostile_specs.ts";

const seconds = Number(Deno.args[0] ?? Deno.env.get("FUZZ_SECONDS") ?? 60);
let seed = Number(Deno.args[1] ?? (Date.now() % 0x7fffffff));
const ARTIFACTS = new URL("../firmware/build/fuzz/artifacts/", import.meta.url).pathname;
const LIMIT_MS = 5000;

const dir = await Deno.makeTempDir({ prefix: "pifs-fuzz-spec-" });
let runs = 0, refused = 0;
const failures: string[] = [];
const t0 = performance.now();
try {
  console.log(`fuzz_spec: first seed ${seed}, ${seconds} s`);
  while ((performance.now() - t0) / 1000 < seconds && failures.length === 0) {
    const specs = await hostileSpecs(seed, 50);
    for (const [i, s] of specs.entries()) {
      const file = `${dir}/spec.yaml`;
      await Deno.writeFile(file, s.bytes);
      const start = performance.now();
      let bad: string | undefined;
      try {
        await loadSpec(file);
      } catch (e) {
        if (e instanceof SpecError) refused++;
        else bad = `threw ${(e as Error)?.name}: ${(e as Error)?.message}`;
      }
      const ms = performance.now() - start;
      if (ms > LIMIT_MS) bad ??= `took ${Math.round(ms)} ms`;
      runs++;
      if (bad) {
        await Deno.mkdir(ARTIFACTS, { recursive: true });
        const keep = `${ARTIFACTS}fuzz_spec-${seed}-${i}.yaml`;
        await Deno.writeFile(keep, s.bytes);
        failures.push(`seed ${seed} #${i} (${s.what}): ${bad}; input kept in ${keep}`);
      }
    }
    seed = (seed + 1) % 0x7fffffff;
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
const secs = (performance.now() - t0) / 1000;
console.log(
  `   runs: ${runs}  refused: ${refused}  exec/s: ${Math.round(runs / secs)}  last seed: ${seed}`,
);
for (const f of failures) console.log(`FAIL fuzz_spec: ${f}`);
if (!failures.length) console.log("ok   fuzz_spec");
console.log(`${failures.length ? 0 : 1} passed, ${failures.length ? 1 : 0} failed`);
Deno.exit(failures.length ? 1 : 0);
