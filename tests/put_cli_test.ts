/**
 * `pifs put` of several LOCALs whose names clash at REMOTE: what one LOCAL
 * queued (a directory, a file) is known before it is committed, so a later
 * LOCAL cannot replace it; the command fails naming the path and what the
 * first LOCAL stored stays whole.
 */
import { ok, pifs, withSim } from "./_cli.ts";
import assert from "node:assert/strict";

Deno.test("put: a file cannot replace a directory an earlier LOCAL of the same put made, nor the reverse", async () => {
  await withSim(
    ["--nodes", "2"],
    async (dir) => {
      const c = `${dir}/c`;
      await Deno.mkdir(`${dir}/a/x`, { recursive: true });
      for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${dir}/a/x/f${i}`, `a ${i}\n`);
      await Deno.mkdir(`${dir}/b`);
      await Deno.writeTextFile(`${dir}/b/x`, "a file named x\n");

      const r = await pifs("put", `${dir}/a/x`, `${dir}/b/x`, "/dst", "--cluster", c);
      assert(r.code !== 0, "a clash was accepted");
      assert(r.err.includes("/dst/x: is a directory"), r.err);
      const ls = await ok("ls", "/dst/x", "--cluster", c, "--json");
      assert.deepStrictEqual(JSON.parse(ls).length, 20);
      assert.deepStrictEqual(await ok("cat", "/dst/x/f7", "--cluster", c), "a 7\n");

      // The reverse: the file first, then a directory of the same name.
      const r2 = await pifs("put", `${dir}/b/x`, `${dir}/a/x`, "/other", "--cluster", c);
      assert(r2.code !== 0, "a clash was accepted");
      assert(r2.err.includes("/other/x: is a file, not a directory"), r2.err);
      assert.deepStrictEqual(await ok("cat", "/other/x", "--cluster", c), "a file named x\n");
    },
    "pifs-test-",
    "c",
  );
});
