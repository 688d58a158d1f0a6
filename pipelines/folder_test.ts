import assert from "node:assert/strict";
import { type SourceEntry, SourceError, type SourceProblem } from "./source.ts";
import {
  CHANGED_WHILE_READ,
  FolderSource,
  folderSource,
  READ_PIECE,
  SYMLINK_SKIPPED,
} from "./folder.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pifs_folder_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function collect(
  source: FolderSource,
): Promise<{ entries: SourceEntry[]; problems: SourceProblem[] }> {
  const problems: SourceProblem[] = [];
  const entries: SourceEntry[] = [];
  for await (const entry of source.list((p) => problems.push(p))) entries.push(entry);
  return { entries, problems };
}

async function readAll(
  stream: ReadableStream<Uint8Array>,
  sizes: number[] = [],
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) {
    parts.push(part);
    sizes.push(part.length);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
}

async function write(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text);
}

Deno.test("folder: lists regular files depth-first in name order with size, mtime, mode and dev:ino", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(`${root}/a/b`, { recursive: true });
    await Deno.mkdir(`${root}/empty`);
    await write(`${root}/b.txt`, "bee");
    await write(`${root}/a-b.txt`, "dash");
    await write(`${root}/A.txt`, "upper");
    await write(`${root}/a/z.txt`, "zed!");
    await write(`${root}/a/b/c.txt`, "");
    await Deno.chmod(`${root}/a/z.txt`, 0o640);
    await Deno.utime(`${root}/b.txt`, new Date(1_600_000_000_000), new Date(1_500_000_000_000));

    const { entries, problems } = await collect(folderSource({ root }));
    assert.deepStrictEqual(problems, []);
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "A.txt",
      "a/b/c.txt",
      "a/z.txt",
      "a-b.txt",
      "b.txt",
    ]);
    for (const entry of entries) {
      const info = await Deno.stat(`${root}/${entry.path}`);
      assert.deepStrictEqual(entry.size, info.size, entry.path);
      assert.deepStrictEqual(entry.mtimeMs, info.mtime!.getTime(), entry.path);
      assert.deepStrictEqual(entry.mode, info.mode! & 0o7777, entry.path);
      assert.deepStrictEqual(entry.key, `${info.dev}:${info.ino}`, entry.path);
      assert.deepStrictEqual(entry.sha256, undefined);
    }
    const z = entries.find((e) => e.path === "a/z.txt")!;
    assert.deepStrictEqual([z.size, z.mode], [4, 0o640]);
    assert.deepStrictEqual(entries.find((e) => e.path === "b.txt")!.mtimeMs, 1_500_000_000_000);
    const text = new TextDecoder().decode(await readAll(await z.open()));
    assert.deepStrictEqual(text, "zed!");

    const source = new FolderSource({ root });
    assert.deepStrictEqual([source.kind, source.description], ["folder", `folder ${root}`]);
  });
});

Deno.test("folder: symbolic links are skipped and reported when not followed", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(`${root}/dir`);
    await write(`${root}/dir/f.txt`, "f");
    await Deno.symlink(`${root}/dir/f.txt`, `${root}/link-file`);
    await Deno.symlink(`${root}/dir`, `${root}/link-dir`);
    const { entries, problems } = await collect(folderSource({ root }));
    assert.deepStrictEqual(entries.map((e) => e.path), ["dir/f.txt"]);
    assert.deepStrictEqual(problems, [
      { path: "link-dir", message: SYMLINK_SKIPPED, skipped: true },
      { path: "link-file", message: SYMLINK_SKIPPED, skipped: true },
    ]);
  });
});

Deno.test("folder: followed symbolic links are listed; a loop and a broken link are reported", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(`${root}/dir/sub`, { recursive: true });
    await write(`${root}/dir/sub/f.txt`, "f");
    await Deno.symlink(`${root}/dir/sub/f.txt`, `${root}/link-file`);
    await Deno.symlink(`${root}/dir/sub`, `${root}/link-dir`);
    await Deno.symlink("..", `${root}/dir/sub/up`); // leads back to dir
    await Deno.symlink(`${root}/missing`, `${root}/broken`);

    const { entries, problems } = await collect(folderSource({ root, followSymlinks: true }));
    assert.deepStrictEqual(entries.map((e) => e.path), [
      "dir/sub/f.txt",
      "link-dir/f.txt",
      "link-file",
    ]);
    const target = await Deno.stat(`${root}/dir/sub/f.txt`);
    for (const entry of entries) assert.deepStrictEqual(entry.key, `${target.dev}:${target.ino}`);
    assert.deepStrictEqual(problems.map((p) => p.path), [
      "broken",
      "dir/sub/up", // -> dir, its parent
      "link-dir/up/sub", // link-dir/up -> dir, whose sub is link-dir itself
    ]);
    assert(problems[0].message.includes("broken symbolic link"), problems[0].message);
    for (const p of problems.slice(1)) assert(p.message.includes("loop"), p.message);
  });
});

Deno.test("folder: fifos are reported and skipped", async () => {
  await withTempDir(async (root) => {
    await write(`${root}/a.txt`, "a");
    let made = false;
    try {
      const out = await new Deno.Command("mkfifo", { args: [`${root}/pipe`] }).output();
      made = out.success;
    } catch {
      // no mkfifo on this system
    }
    const { entries, problems } = await collect(folderSource({ root }));
    assert.deepStrictEqual(entries.map((e) => e.path), ["a.txt"]);
    if (!made) {
      console.warn("mkfifo is not available: fifo assertion skipped");
      return;
    }
    assert.deepStrictEqual(problems, [{
      path: "pipe",
      message: "fifo skipped (not a regular file)",
    }]);
  });
});

Deno.test("folder: an unreadable directory is reported, not thrown", async () => {
  await withTempDir(async (root) => {
    await Deno.mkdir(`${root}/locked`);
    await write(`${root}/locked/x.txt`, "x");
    await write(`${root}/ok.txt`, "ok");
    await Deno.chmod(`${root}/locked`, 0o000);
    try {
      let privileged = true;
      try {
        for await (const _ of Deno.readDir(`${root}/locked`)) break;
      } catch {
        privileged = false;
      }
      const { entries, problems } = await collect(folderSource({ root }));
      if (privileged) {
        console.warn("running with privileges that read any directory: assertion skipped");
        return;
      }
      assert.deepStrictEqual(entries.map((e) => e.path), ["ok.txt"]);
      assert.deepStrictEqual(problems.map((p) => p.path), ["locked"]);
      assert(problems[0].message.startsWith("directory not readable"), problems[0].message);
    } finally {
      await Deno.chmod(`${root}/locked`, 0o755);
    }
  });
});

Deno.test("folder: open streams 256 KiB pieces, from an offset, and closes on cancel", async () => {
  await withTempDir(async (root) => {
    const data = pattern(READ_PIECE * 2 + 12345);
    await Deno.writeFile(`${root}/big.bin`, data);
    const [entry] = (await collect(folderSource({ root }))).entries;

    const sizes: number[] = [];
    assert.deepStrictEqual(await readAll(await entry.open(), sizes), data);
    assert.deepStrictEqual(sizes, [READ_PIECE, READ_PIECE, 12345]);

    const offset = READ_PIECE + 7;
    assert.deepStrictEqual(await readAll(await entry.open(offset)), data.subarray(offset));
    assert.deepStrictEqual((await readAll(await entry.open(data.length))).length, 0);

    // Cancelling after one piece closes the file (the resource sanitizer checks).
    const reader = (await entry.open()).getReader();
    const first = await reader.read();
    assert.deepStrictEqual(first.value?.length, READ_PIECE);
    await reader.cancel();

    // Aborting the signal errors the stream with its reason and closes the file.
    const abort = new AbortController();
    const aborted = (await entry.open(0, abort.signal)).getReader();
    assert(!(await aborted.read()).done);
    abort.abort(new Error("stop"));
    await assert.rejects(() => aborted.read(), (why: Error) => {
      assert.deepStrictEqual(why.message, "stop");
      return true;
    });

    await assert.rejects(() => entry.open(data.length + 1), (err) => {
      assert(err instanceof SourceError, String(err));
      return true;
    });
  });
});

Deno.test("folder: a file appended to or touched while read errors with 'changed while being read'", async () => {
  await withTempDir(async (root) => {
    const path = `${root}/grow.bin`;
    await Deno.writeFile(path, pattern(READ_PIECE * 3));
    const [entry] = (await collect(folderSource({ root }))).entries;

    const reader = (await entry.open()).getReader();
    assert(!(await reader.read()).done);
    await Deno.writeFile(path, pattern(1000), { append: true });
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break;
    }, (err) => {
      assert(err instanceof SourceError, String(err));
      assert.deepStrictEqual(err.message, `grow.bin: ${CHANGED_WHILE_READ}`);
      assert.deepStrictEqual(err.path, "grow.bin");
      return true;
    });

    // Same size, different mtime.
    await Deno.writeFile(`${root}/same.bin`, pattern(100));
    const same = (await collect(folderSource({ root }))).entries.find((e) =>
      e.path === "same.bin"
    )!;
    await Deno.utime(`${root}/same.bin`, new Date(), new Date(same.mtimeMs - 5000));
    await assert.rejects(async () => await readAll(await same.open()), (err2: Error) => {
      assert(err2.message.endsWith(CHANGED_WHILE_READ), err2.message);
      return true;
    });
  });
});

Deno.test("folder: a missing root or a root that is a file is a SourceError naming it", async () => {
  await withTempDir(async (dir) => {
    const missing = `${dir}/nope`;
    await assert.rejects(() => collect(folderSource({ root: missing })), (err) => {
      assert(err instanceof SourceError, String(err));
      assert(err.message.includes(missing), err.message);
      assert(err.message.includes("does not exist"), err.message);
      return true;
    });

    await write(`${dir}/file`, "x");
    await assert.rejects(() => collect(folderSource({ root: `${dir}/file` })), (err2) => {
      assert(err2 instanceof SourceError, String(err2));
      assert.deepStrictEqual(err2.message, `${dir}/file is not a directory`);
      return true;
    });

    let err3: unknown;
    try {
      folderSource({ root: "relative/dir" });
    } catch (e) {
      err3 = e;
    }
    assert(err3 instanceof SourceError, String(err3));
  });
});
