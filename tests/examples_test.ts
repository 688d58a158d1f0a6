/**
 * The examples of `examples/` as a user runs them, on three hosted nodes:
 * `make_samples.ts` into a temporary folder, `serve_dataset.ts` on a free
 * port, `pifs sync` of copies of `photos.yaml` and `dataset.yaml` next to the
 * samples (the dataset's URL pointed at that port), and `custom_pipeline.ts`
 * twice. Everything is read back with `pifs get` and compared with the
 * samples.
 */
import { fileURLToPath } from "node:url";
import { ok, pifs } from "./_cli.ts";
import assert from "node:assert/strict";
import { fileTimeCaptureDate } from "../pipelines/photos.ts";
import {
  SAMPLE_DATASET,
  SAMPLE_DUPLICATE,
  SAMPLE_PHOTOS,
  SAMPLE_PNG,
  SAMPLE_PNG_MTIME,
  SAMPLE_SIDECAR,
} from "../examples/make_samples.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
const EXAMPLES = `${ROOT}/examples`;
const DENO = Deno.execPath();

/** Runs `deno run ARGS` from the repository's root; returns stdout, fails on a non-zero exit. */
async function deno(...args: string[]): Promise<string> {
  const o = await new Deno.Command(DENO, {
    args: ["run", "--quiet", "--config", `${ROOT}/deno.json`, ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const out = new TextDecoder().decode(o.stdout);
  assert.deepStrictEqual(
    o.code,
    0,
    `deno run ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`,
  );
  return out;
}

function lastJson(out: string): Record<string, unknown> {
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

/** Every file under `dir`, by path relative to it. */
async function tree(dir: string, rel = ""): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await tree(dir, p)) out.set(k, v); }
    else out.set(p, await Deno.readFile(`${dir}/${p}`));
  }
  return out;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && a.length === b.length &&
    a.every((x, i) => x === b[i]);
}

async function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const s = ReadableStream.from([bytes]).pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** `YYYY/MM/DD` of an EXIF date as written. */
function exifDay(taken: string): string {
  return taken.slice(0, 10).replaceAll(":", "/");
}

/** Starts serve_dataset.ts on a free port; resolves once it prints its URL. */
async function startServer(dir: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const proc = new Deno.Command(DENO, {
    args: [
      "run",
      "--quiet",
      "--allow-net=127.0.0.1",
      "--allow-read",
      `${EXAMPLES}/serve_dataset.ts`,
      "--port",
      "0",
      dir,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stop = async () => {
    try {
      proc.kill("SIGTERM");
    } catch { /* already gone */ }
    await proc.status;
  };
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) throw new Error(`serve_dataset.ts exited without listening: ${seen}`);
      seen += r.value;
      const m = /^serving http:\/\/127\.0\.0\.1:(\d+)\/$/m.exec(seen);
      if (m) return { port: Number(m[1]), stop };
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

Deno.test("examples: photos.yaml, dataset.yaml and custom_pipeline.ts on three hosted nodes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pifs-examples-" });
  const c = `${dir}/c`;
  let server: { port: number; stop: () => Promise<void> } | undefined;
  try {
    await deno("--allow-write", "--allow-read", `${EXAMPLES}/make_samples.ts`, dir);
    const photos = await tree(`${dir}/sample-photos`);
    const dataset = await tree(`${dir}/sample-dataset`);
    // Deterministic: made again, the samples are the same bytes.
    await deno("--allow-write", "--allow-read", `${EXAMPLES}/make_samples.ts`, `${dir}/again`);
    for (const [name, t] of [["sample-photos", photos], ["sample-dataset", dataset]] as const) {
      const again = await tree(`${dir}/again/${name}`);
      assert.deepStrictEqual([...again.keys()].sort(), [...t.keys()].sort());
      for (const [p, b] of t) assert(sameBytes(again.get(p), b), `${name}/${p} differs`);
    }

    server = await startServer(dir);
    await Deno.copyFile(`${EXAMPLES}/photos.yaml`, `${dir}/photos.yaml`);
    const spec = await Deno.readTextFile(`${EXAMPLES}/dataset.yaml`);
    assert(spec.includes("http://127.0.0.1:8642/manifest.json"), "dataset.yaml's URL moved");
    await Deno.writeTextFile(
      `${dir}/dataset.yaml`,
      spec.replace("127.0.0.1:8642", `127.0.0.1:${server.port}`),
    );
    await ok("sim", "up", "--dir", c, "--nodes", "3");

    // Photos: filed by EXIF date, the duplicate stored once, the sidecar next to its photo.
    const first = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/photos.yaml`));
    assert.deepStrictEqual(
      [first.files_new, first.files_failed, first.problems, first.duplicates],
      [
        7,
        0,
        0,
        1,
      ],
    );
    await ok("get", "--cluster", c, "/photos", `${dir}/photos-back`);
    const back = await tree(`${dir}/photos-back`);
    const expected = new Map<string, string>(); // target path -> sample path
    for (const p of SAMPLE_PHOTOS) {
      expected.set(`${exifDay(p.taken)}/${p.path.slice(p.path.lastIndexOf("/") + 1)}`, p.path);
    }
    const sidecarPhoto = SAMPLE_PHOTOS.find((p) =>
      p.path.replace(/\.jpg$/, ".xmp") === SAMPLE_SIDECAR
    )!;
    expected.set(`${exifDay(sidecarPhoto.taken)}/IMG_0002.xmp`, SAMPLE_SIDECAR);
    const d = fileTimeCaptureDate(SAMPLE_PNG_MTIME.getTime());
    const pad = (n: number) => String(n).padStart(2, "0");
    expected.set(
      `${d.year}/${pad(d.month)}/${pad(d.day)}/${SAMPLE_PNG.split("/").pop()}`,
      SAMPLE_PNG,
    );
    assert.deepStrictEqual([...back.keys()].sort(), [...expected.keys()].sort());
    for (const [target, source] of expected) {
      assert(sameBytes(back.get(target), photos.get(source)), `/photos/${target} differs`);
    }
    assert(sameBytes(photos.get(SAMPLE_DUPLICATE), photos.get(SAMPLE_PHOTOS[0].path)));
    assert(back.has("2023/07/14/IMG_0001.jpg") && back.has("2023/07/14/IMG_0002.xmp"));

    // The dataset: every file read back bit-exact; a second run downloads nothing.
    const ds = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/dataset.yaml`));
    assert.deepStrictEqual(
      [ds.files_new, ds.files_failed],
      [SAMPLE_DATASET.length, 0],
      JSON.stringify(ds),
    );
    await ok("get", "--cluster", c, "/datasets/sample", `${dir}/dataset-back`);
    const dsBack = await tree(`${dir}/dataset-back`);
    assert.deepStrictEqual([...dsBack.keys()].sort(), SAMPLE_DATASET.map((f) => f.name).sort());
    for (const f of SAMPLE_DATASET) {
      assert.deepStrictEqual(dsBack.get(f.name)?.length, f.size);
      assert(sameBytes(dsBack.get(f.name), dataset.get(f.name)), `${f.name} differs`);
    }
    const ds2 = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/dataset.yaml`));
    assert.deepStrictEqual([ds2.files_unchanged, ds2.bytes_read, ds2.chunks_new], [3, 0, 0]);

    // The custom pipeline: its generated CSVs and the gzipped dataset; again, all unchanged.
    const run = [
      "-A",
      `${EXAMPLES}/custom_pipeline.ts`,
      "--cluster",
      c,
      "--samples",
      dir,
      "--json",
    ];
    const lab = lastJson(await deno(...run));
    assert.deepStrictEqual([lab.files_new, lab.files_failed], [6, 0], JSON.stringify(lab));
    const lab2 = lastJson(await deno(...run));
    assert.deepStrictEqual(
      [lab2.files_new, lab2.files_changed, lab2.files_unchanged, lab2.chunks_new, lab2.bytes_read],
      [0, 0, 6, 0, 0],
      JSON.stringify(lab2),
    );
    await ok("get", "--cluster", c, "/lab", `${dir}/lab-back`);
    const labBack = await tree(`${dir}/lab-back`);
    assert.deepStrictEqual(
      [...labBack.keys()].sort(),
      [
        ...SAMPLE_DATASET.map((f) => `dataset-gz/${f.name}.gz`),
        "sensors/greenhouse-2024-06-01.csv",
        "sensors/greenhouse-2024-06-02.csv",
        "sensors/greenhouse-2024-06-03.csv",
      ].sort(),
    );
    for (const f of SAMPLE_DATASET) {
      const gz = labBack.get(`dataset-gz/${f.name}.gz`)! as Uint8Array<ArrayBuffer>;
      assert(sameBytes(await gunzip(gz), dataset.get(f.name)), `${f.name}.gz differs`);
    }
    const csv = new TextDecoder().decode(labBack.get("sensors/greenhouse-2024-06-02.csv"));
    assert(csv.startsWith("time,sensor,temperature_c,humidity_pct\n2024-06-02T00:00:00Z,"), csv);
    assert.deepStrictEqual(csv.trim().split("\n").length, 1 + 288 * 3);

    // Photos again: nothing read, no chunk sent.
    const again = lastJson(await ok("sync", "--cluster", c, "--json", `${dir}/photos.yaml`));
    assert.deepStrictEqual(
      [again.files_new, again.files_changed, again.files_unchanged, again.bytes_read],
      [0, 0, 7, 0],
    );
    assert.deepStrictEqual(again.chunks_new, 0);
    const snaps = JSON.parse(await ok("snapshots", "--cluster", c, "--json")) as {
      job: string;
      files: number;
    }[];
    assert.deepStrictEqual(snaps.map((s) => `${s.job}:${s.files}`), [
      "photos:7",
      "dataset:3",
      "dataset:3",
      "lab:6",
      "lab:6",
      "photos:7",
    ]);
  } finally {
    await server?.stop();
    await pifs("sim", "down", "--dir", c);
    await Deno.remove(dir, { recursive: true });
  }
});
