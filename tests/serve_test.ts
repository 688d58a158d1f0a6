/**
 * `pifs serve`: while one process holds the cluster open, other pifs
 * commands on it are run by that process (output, exit code, working
 * directory and all), one at a time; those it does not run are refused
 * with a message naming it.
 */
import { ok, PIFS, pifs, rand, withSim } from "./_cli.ts";
import assert from "node:assert/strict";

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("serve: commands on a held cluster run in the holder, with their output, exit codes and directory", async () => {
  await withSim(["--nodes", "3"], async (dir) => {
    const server = new Deno.Command(PIFS, {
      args: ["serve", "--cluster", dir],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const serverErr = new Response(server.stderr).text();
    let stopped = false;
    try {
      await waitFor("cmd.sock", () => Deno.lstat(`${dir}/cmd.sock`).then(() => true, () => false));
      await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
      const bin = rand(700_000, 42); // binary, several chunks: `cat` must give back exactly these bytes
      await Deno.writeFile(`${dir}/src/sub/bin`, bin);
      await Deno.writeTextFile(`${dir}/src/t.txt`, "text\n");

      await ok("put", `${dir}/src`, "/s", "--cluster", dir);
      const ls = JSON.parse(await ok("ls", "-R", "/s", "--json", "--cluster", dir));
      assert.deepStrictEqual(ls.map((e: { path: string }) => e.path).sort(), [
        "/s/sub",
        "/s/sub/bin",
        "/s/t.txt",
      ]);
      const cat = await new Deno.Command(PIFS, {
        args: ["cat", "/s/sub/bin", "--cluster", dir],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.deepStrictEqual(cat.code, 0, new TextDecoder().decode(cat.stderr));
      assert.deepStrictEqual(cat.stdout, bin);

      // The caller's working directory and PIFS_CLUSTER.
      await Deno.mkdir(`${dir}/here`);
      const rel = await new Deno.Command(PIFS, {
        args: ["get", "/s/t.txt", "t-copy.txt"],
        cwd: `${dir}/here`,
        env: { PIFS_CLUSTER: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.deepStrictEqual(rel.code, 0, new TextDecoder().decode(rel.stderr));
      assert.deepStrictEqual(await Deno.readTextFile(`${dir}/here/t-copy.txt`), "text\n");

      // A failing command: its message and exit code come back.
      const bad = await pifs("get", "/nope", `${dir}/x`, "--cluster", dir);
      assert.deepStrictEqual(bad.code, 2);
      assert(bad.err.includes("/nope: no such file"), bad.err);

      // A sync job (relative spec path) and two commands at once.
      await Deno.writeTextFile(
        `${dir}/here/j.yaml`,
        `name: j\ntarget: /j\nsources:\n  - folder: ${dir}/src\n`,
      );
      const sync = new Deno.Command(PIFS, {
        args: ["sync", "j.yaml", "--cluster", dir],
        cwd: `${dir}/here`,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const du = pifs("du", "/s", "--cluster", dir);
      const [s1, d1] = await Promise.all([sync, du]);
      assert.deepStrictEqual(s1.code, 0, new TextDecoder().decode(s1.stderr));
      assert.deepStrictEqual(d1.code, 0, d1.err);
      assert.deepStrictEqual(
        await ok("cat", "/j/sub/bin", "--cluster", dir).then((t) => t.length > 0),
        true,
      );

      // status asks the holder's own sessions (a second session on a line would steal its bytes).
      const st0 = JSON.parse(await ok("status", "--json", "--cluster", dir));
      assert.deepStrictEqual(st0.nodes.map((n: { answers: boolean }) => n.answers), [
        true,
        true,
        true,
      ]);
      assert(st0.nodes.every((n: { chunks: number }) => n.chunks > 0), JSON.stringify(st0));
      assert.deepStrictEqual(await ok("cat", "/s/t.txt", "--cluster", dir), "text\n"); // the holder still works

      // What it does not run for others is refused, naming the holder.
      const att = await pifs("attach", "--cluster", dir);
      assert.deepStrictEqual(att.code, 1);
      assert(att.err.includes("held open by `pifs serve`"), att.err);

      server.kill("SIGTERM");
      const st = await server.status;
      stopped = true;
      assert.deepStrictEqual(st.code, 0, await serverErr);
      assert(!(await Deno.lstat(`${dir}/cmd.sock`).then(() => true, () => false)), "cmd.sock left");
      const log = await serverErr;
      assert(/ran for another command: pifs put .* \(exit 0\)/.test(log), log);
      // Without a holder, commands run on their own again.
      assert.deepStrictEqual(await ok("cat", "/s/t.txt", "--cluster", dir), "text\n");
    } finally {
      if (!stopped) {
        server.kill("SIGKILL");
        await server.status;
      }
    }
  });
});
