import process from "node:process";
import assert from "node:assert/strict";
import {
  jobSchema,
  type JobSpec,
  loadSpec,
  parseSpec,
  SpecError,
  specFileSchema,
  specJsonSchema,
} from "./spec.ts";
import { parseSize, SizeError } from "../units.ts";

const MiB = 1024 * 1024;

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pifs-spec-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `text` as `name` in `dir` and loads it. */
async function load(dir: string, name: string, text: string): Promise<JobSpec[]> {
  await Deno.writeTextFile(`${dir}/${name}`, text);
  return await loadSpec(`${dir}/${name}`);
}

/** The SpecError that parsing `text` as `file` throws. */
function specError(text: string, file = "/jobs/job.yaml"): SpecError {
  try {
    parseSpec(text, file);
  } catch (e) {
    assert(e instanceof SpecError, `expected a SpecError, got ${e}`);
    assert.deepStrictEqual(e.name, "SpecError");
    return e;
  }
  throw new Error(`expected a SpecError for:\n${text}`);
}

/** Asserts that the error's message has the line `FILE:LINE` (e.g. `/jobs/job.yaml:3:5: target: ...`). */
function assertLine(e: SpecError, line: string): void {
  const lines = e.message.split("\n");
  assert(
    lines.some((l) => l === line || l.startsWith(line)),
    `message lacks the line ${JSON.stringify(line)}:\n${e.message}`,
  );
}

const DEFAULTS = {
  include: [],
  exclude: [],
  chunking: { min: 256 * 1024, avg: MiB, max: 4 * MiB },
  snapshots: { keepLast: 10, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 },
};

Deno.test("loadSpec: the smallest spec gives the normalised job with defaults and an absolute folder", async () => {
  await withTempDir(async (dir) => {
    const envBefore = process.env;
    const jobs = await load(
      dir,
      "docs.yaml",
      "name: docs\ntarget: /docs\nsources:\n  - folder: ./my-docs\n",
    );
    assert.deepStrictEqual(jobs, [{
      name: "docs",
      target: "/docs",
      sources: [{ kind: "folder", path: `${dir}/my-docs`, followSymlinks: false }],
      ...DEFAULTS,
      specFile: `${dir}/docs.yaml`,
    }]);
    // parseSpec lends the yaml package an empty process.env only while it parses.
    assert(process.env === envBefore, "process.env was not restored");
    // No optional field is present, not even as undefined.
    assert.deepStrictEqual(
      Object.keys(jobs[0]).filter((k) => k === "copies" || k === "schedule"),
      [],
    );
  });
});

Deno.test("loadSpec: several jobs under jobs: keep their order and their own settings", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/sub`);
    const jobs = await load(
      dir,
      "sub/all.yaml",
      `jobs:
  - name: docs
    target: /docs/
    sources:
      - folder: ../docs
  - name: photos.2024
    target: /photos
    copies: 3
    schedule: "0 3 * * *"
    include: ["**/*.jpg", "**/*.heic"]
    exclude: ["**/.thumbnails/**"]
    chunking: { avg: 256KiB, max: 1MiB }
    snapshots: { keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 12 }
    source:
      photos: /mnt/camera
`,
    );
    assert.deepStrictEqual(jobs.map((j) => j.name), ["docs", "photos.2024"]);
    assert.deepStrictEqual(jobs[0].target, "/docs");
    assert.deepStrictEqual(jobs[0].sources, [{
      kind: "folder",
      path: `${dir}/docs`,
      followSymlinks: false,
    }]);
    assert.deepStrictEqual(jobs[1], {
      name: "photos.2024",
      target: "/photos",
      sources: [{
        kind: "photos",
        paths: ["/mnt/camera"],
        layout: "{yyyy}/{mm}/{dd}/{name}",
        dedupe: true,
      }],
      include: ["**/*.jpg", "**/*.heic"],
      exclude: ["**/.thumbnails/**"],
      copies: 3,
      chunking: { min: 64 * 1024, avg: 256 * 1024, max: MiB },
      schedule: "0 3 * * *",
      snapshots: { keepLast: 3, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
      specFile: `${dir}/sub/all.yaml`,
    });
  });
});

Deno.test("parseSpec: source: is shorthand for a sources list of one", () => {
  const short = parseSpec("name: a\ntarget: /a\nsource:\n  folder: data\n", "/j/a.yaml");
  const long = parseSpec("name: a\ntarget: /a\nsources:\n  - folder: data\n", "/j/a.yaml");
  assert.deepStrictEqual(short, long);
  assert.deepStrictEqual(short[0].sources, [{
    kind: "folder",
    path: "/j/data",
    followSymlinks: false,
  }]);
});

Deno.test("parseSpec: folder source with follow_symlinks and an absolute path", () => {
  const [job] = parseSpec(
    "name: a\ntarget: /a\nsources:\n  - folder: /srv/data\n    follow_symlinks: true\n",
    "/j/a.yaml",
  );
  assert.deepStrictEqual(job.sources, [{
    kind: "folder",
    path: "/srv/data",
    followSymlinks: true,
  }]);
});

Deno.test("parseSpec: photos source with one path or a list, layout and dedupe", () => {
  const [job] = parseSpec(
    `name: a
target: /a
sources:
  - photos: lib
  - photos: [one, /abs/two]
    layout: "{camera}/{yyyy}-{mm}/{name}"
    dedupe: false
`,
    "/j/a.yaml",
  );
  assert.deepStrictEqual(job.sources, [
    { kind: "photos", paths: ["/j/lib"], layout: "{yyyy}/{mm}/{dd}/{name}", dedupe: true },
    {
      kind: "photos",
      paths: ["/j/one", "/abs/two"],
      layout: "{camera}/{yyyy}-{mm}/{name}",
      dedupe: false,
    },
  ]);
});

Deno.test("parseSpec: http source with urls, a manifest URL or a manifest path", () => {
  const [job] = parseSpec(
    `name: data
target: /datasets/x
sources:
  - http:
      urls: [https://example.com/a.csv, "http://10.0.0.1:8080/b?x=1"]
  - http: { manifest: "https://example.com/list.txt", concurrency: 16, retries: 0, timeout: 2.5 }
  - http: { manifest: lists/files.txt }
`,
    "/j/data.yaml",
  );
  assert.deepStrictEqual(job.sources, [
    {
      kind: "http",
      urls: ["https://example.com/a.csv", "http://10.0.0.1:8080/b?x=1"],
      concurrency: 4,
      retries: 8,
      timeout: 60,
    },
    {
      kind: "http",
      manifest: "https://example.com/list.txt",
      concurrency: 16,
      retries: 0,
      timeout: 2.5,
    },
    { kind: "http", manifest: "/j/lists/files.txt", concurrency: 4, retries: 8, timeout: 60 },
  ]);
});

Deno.test("parseSpec: chunking sizes as numbers or strings, min and max defaulted from avg", () => {
  const chunking = (c: string) =>
    parseSpec(`name: a\ntarget: /a\nsource: { folder: . }\nchunking: ${c}\n`, "/j/a.yaml")[0]
      .chunking;
  assert.deepStrictEqual(chunking("{ avg: 4M }"), { min: MiB, avg: 4 * MiB, max: 8 * MiB });
  assert.deepStrictEqual(chunking("{ avg: 65536, min: 1KiB }"), {
    min: 1024,
    avg: 65536,
    max: 262144,
  });
  assert.deepStrictEqual(chunking('{ avg: "256 KiB", min: 64, max: 8MiB }'), {
    min: 64,
    avg: 262144,
    max: 8 * MiB,
  });
});

Deno.test("parseSize: bytes and binary units", () => {
  assert.deepStrictEqual(parseSize("4MiB"), 4 * MiB);
  assert.deepStrictEqual(parseSize("256KiB"), 256 * 1024);
  assert.deepStrictEqual(parseSize("4M"), 4 * MiB);
  assert.deepStrictEqual(parseSize("1.5 MiB"), 1.5 * MiB);
  assert.deepStrictEqual(parseSize("512"), 512);
  assert.deepStrictEqual(parseSize("512B"), 512);
  assert.deepStrictEqual(parseSize(4096), 4096);
  for (const bad of ["", "MiB", "4 XB", "-1", "1.5", "0.1K", "1e3", "4iB"]) {
    let threw = false;
    try {
      parseSize(bad);
    } catch (e) {
      threw = e instanceof SizeError && e.code === "SIZE" &&
        e.message.includes(JSON.stringify(bad));
    }
    assert(threw, `parseSize(${JSON.stringify(bad)}) did not throw a SizeError naming it`);
  }
});

Deno.test("SpecError: a non-http URL in jobs[1] names the file, line, column and field path", () => {
  const e = specError(`jobs:
  - name: a
    target: /a
    source: { folder: . }
  - name: b
    target: /b
    sources:
      - http:
          urls:
            - ftp://x
            - https://ok.example/
            - not a url
`);
  assert.deepStrictEqual(
    e.message,
    "/jobs/job.yaml:10:15: jobs[1].sources[0].http.urls[0]: not an http(s) URL\n" +
      "/jobs/job.yaml:12:15: jobs[1].sources[0].http.urls[2]: not a URL",
  );
  assert.deepStrictEqual(e.issues, [
    {
      path: "jobs[1].sources[0].http.urls[0]",
      line: 10,
      column: 15,
      message: "not an http(s) URL",
    },
    { path: "jobs[1].sources[0].http.urls[2]", line: 12, column: 15, message: "not a URL" },
  ]);
  assert.deepStrictEqual(e.file, "/jobs/job.yaml");
});

Deno.test("SpecError: a misspelt key is an unknown field, pointed at the key", () => {
  const e = specError("name: a\ntarget: /a\nsources:\n  - fodler: ./x\n");
  assertLine(e, '/jobs/job.yaml:4:5: sources[0].fodler: unknown field (did you mean "folder"?)');
  const e2 = specError(
    "name: a\ntarget: /a\nsource:\n  http:\n    urls: [https://x.example/]\n    concurency: 2\n",
  );
  assertLine(
    e2,
    '/jobs/job.yaml:6:5: source.http.concurency: unknown field (did you mean "concurrency"?)',
  );
  const e3 = specError("name: a\ntarget: /a\nsource: { folder: ., dedupe: true }\nowner: me\n");
  assertLine(e3, "/jobs/job.yaml:3:22: source.dedupe: unknown field");
  // No far-fetched suggestion for a key that resembles nothing.
  assert(e3.message.split("\n").includes("/jobs/job.yaml:4:1: owner: unknown field"), e3.message);
});

Deno.test("SpecError: a bad cron schedule gives croner's reason", () => {
  const e = specError('name: a\ntarget: /a\nsource: { folder: . }\nschedule: "0 25 * * *"\n');
  assertLine(e, "/jobs/job.yaml:4:11: schedule: bad cron schedule: Invalid value for hour: 25");
  const e2 = specError("name: a\ntarget: /a\nsource: { folder: . }\nschedule: daily\n");
  assertLine(e2, "/jobs/job.yaml:4:11: schedule: bad cron schedule: invalid configuration format");
});

Deno.test("SpecError: a bad size string", () => {
  const e = specError("name: a\ntarget: /a\nsource: { folder: . }\nchunking:\n  avg: 1 XB\n");
  assertLine(
    e,
    '/jobs/job.yaml:5:8: chunking.avg: not a size: "1 XB" (use a number of bytes or a size like',
  );
  const e2 = specError("name: a\ntarget: /a\nsource: { folder: . }\nchunking: { avg: true }\n");
  assertLine(e2, "/jobs/job.yaml:4:18: chunking.avg: expected a size: a number of bytes");
});

Deno.test("SpecError: chunking avg not a power of two, and bounds", () => {
  const at = (c: string) =>
    specError(`name: a\ntarget: /a\nsource: { folder: . }\nchunking: ${c}\n`).message;
  const e = at("{ avg: 1000000 }");
  assert.deepStrictEqual(
    e,
    "/jobs/job.yaml:4:18: chunking.avg: must be a power of two (e.g. 256KiB, 1MiB), not 1000000 B",
  );
  assert(
    at("{ avg: 128 }").includes("chunking.avg: 128 B gives a default min of 32 B, below 64 B"),
  );
  assert(at("{ avg: 1MiB, min: 32 }").includes("chunking.min: must be at least 64 B, not 32 B"));
  assert(at("{ avg: 1MiB, max: 16MiB }").includes("chunking.max: must be at most 8 MiB"));
  assert(at("{ avg: 1MiB, min: 1MiB }").includes("chunking.min: min (1 MiB) must be less than"));
  assert(at("{ avg: 8MiB }").includes("chunking.avg: must be less than 8 MiB"));
  assert(at("{ avg: 4MiB, max: 4MiB }").includes("chunking.max: max (4 MiB) must be more than"));
});

Deno.test("SpecError: duplicate job names, at the second one", () => {
  const e = specError(`jobs:
  - name: docs
    target: /a
    source: { folder: . }
  - name: docs
    target: /b
    source: { folder: . }
`);
  assert.deepStrictEqual(
    e.message,
    '/jobs/job.yaml:5:11: jobs[1].name: duplicate job name "docs" (also jobs[0])',
  );
});

Deno.test("SpecError: a relative target, '..', empty segments and a bad job name", () => {
  const target = (t: string) => specError(`name: a\ntarget: ${t}\nsource: { folder: . }\n`);
  assert.deepStrictEqual(
    target("docs").message,
    "/jobs/job.yaml:2:9: target: must be an absolute store path starting with /",
  );
  assert.deepStrictEqual(
    target("/a/../b").message,
    "/jobs/job.yaml:2:9: target: must not contain '..'",
  );
  assertLine(target("/a//b"), "/jobs/job.yaml:2:9: target: must not have an empty segment");
  assertLine(target(`/${"x".repeat(256)}`), "/jobs/job.yaml:2:9: target: segment 'xxxx");
  // A trailing slash is fine, and "/" itself is the store's root.
  assert.deepStrictEqual(
    parseSpec("name: a\ntarget: /a/b/\nsource: {folder: .}\n", "/j.yaml")[0].target,
    "/a/b",
  );
  assert.deepStrictEqual(
    parseSpec("name: a\ntarget: /\nsource: {folder: .}\n", "/j.yaml")[0].target,
    "/",
  );
  const name = specError("name: -bad\ntarget: /a\nsource: { folder: . }\n");
  assertLine(name, "/jobs/job.yaml:1:7: name: must be 1 to 64 letters, digits");
  assertLine(
    specError(`name: ${"a".repeat(65)}\ntarget: /a\nsource: {folder: .}\n`),
    "/jobs/job.yaml:1:7: name: must be",
  );
});

Deno.test("SpecError: a YAML syntax error has its line and column", () => {
  const e = specError("name: a\ntarget: /a\nsources:\n  - folder: [x\n");
  assert.deepStrictEqual(e.issues.length, 1);
  assert.deepStrictEqual(e.issues[0].line, 5);
  assertLine(e, "/jobs/job.yaml:5:1: YAML syntax error: Flow sequence in block collection");
  const dup = specError("name: a\nname: b\n");
  assert.deepStrictEqual(
    dup.message,
    "/jobs/job.yaml:2:1: YAML syntax error: Map keys must be unique",
  );
  assertLine(
    specError("name: a\n---\nname: b\n"),
    "/jobs/job.yaml:2:1: a job file holds one YAML document (put several jobs under jobs:)",
  );
});

Deno.test("SpecError: an empty file, a top-level list or a scalar", () => {
  assert.deepStrictEqual(
    specError("").message,
    "/jobs/job.yaml:1:1: the job file is empty: expected a job (name:, target:, sources:) or jobs:",
  );
  assert.deepStrictEqual(specError("# only a comment\n").issues[0].path, "");
  assert.deepStrictEqual(
    specError("- name: a\n").message,
    "/jobs/job.yaml:1:1: expected a mapping with a job's fields (name:, target:, sources:) or jobs:, got a list",
  );
  assertLine(specError("hello\n"), "/jobs/job.yaml:1:1: expected a mapping");
  assertLine(specError("jobs: []\n"), "/jobs/job.yaml:1:7: jobs: must not be empty");
  assertLine(specError("jobs:\n  - docs\n"), "/jobs/job.yaml:2:5: jobs[0]: expected a job");
});

Deno.test("SpecError: missing fields, conflicting fields and bad sources", () => {
  const missing = specError("include: ['*.txt']\n");
  assert.deepStrictEqual(missing.message.split("\n"), [
    "/jobs/job.yaml:1:1: name: required field missing",
    "/jobs/job.yaml:1:1: target: required field missing",
    "/jobs/job.yaml:1:1: sources: required field missing (a list of sources, or source: with one)",
  ]);
  const both = specError("name: a\ntarget: /a\nsource: {folder: .}\nsources: [{folder: .}]\n");
  assertLine(both, "/jobs/job.yaml:3:9: source: give either sources or source, not both");
  const mixed = specError("name: a\njobs:\n  - {name: b, target: /b, source: {folder: .}}\n");
  assertLine(mixed, "/jobs/job.yaml:1:7: name: not allowed next to jobs:");
  const sources = specError(`name: a
target: /a
sources:
  - ./plain-string
  - { folder: a, photos: b }
  - http: { urls: [https://x.example/], manifest: m.txt }
  - http: {}
  - photos: lib
    layout: "{yyyy}/{nme}"
  - photos: lib
    layout: "{yyyy}"
  - folder: ~/docs
  - folder: x
    follow_symlinks: yes
`);
  const lines = sources.message.split("\n");
  assert.deepStrictEqual(lines, [
    "/jobs/job.yaml:4:5: sources[0]: expected a source: a mapping with folder:, photos: or http:",
    "/jobs/job.yaml:5:18: sources[1].photos: a source has exactly one of folder:, photos: or http: (this one also has folder:)",
    "/jobs/job.yaml:6:51: sources[2].http.manifest: give either urls or manifest, not both",
    "/jobs/job.yaml:7:11: sources[3].http: needs urls or manifest",
    "/jobs/job.yaml:9:13: sources[4].layout: unknown placeholder {nme} (use {yyyy} {mm} {dd} {name} {camera})",
    "/jobs/job.yaml:11:13: sources[5].layout: must contain {name}",
    "/jobs/job.yaml:12:13: sources[6].folder: '~' is not expanded: give a full path, or one relative to the job file",
    '/jobs/job.yaml:14:22: sources[7].follow_symlinks: expected true or false, got a string ("yes")',
  ]);
  assertLine(
    specError("name: a\ntarget: /a\nsources: []\n"),
    "/jobs/job.yaml:3:10: sources: must not be empty",
  );
  assertLine(
    specError("name: a\ntarget: /a\nsource: {folder: .}\ninclude: ['[abc']\n"),
    '/jobs/job.yaml:4:11: include[0]: bad glob pattern: Missing closing: "]"',
  );
  assertLine(
    specError("name: a\ntarget: /a\nsource: {folder: .}\ncopies: 9\n"),
    "/jobs/job.yaml:4:9: copies: must be at most 8",
  );
  assertLine(
    specError("name: a\ntarget: /a\nsource: {folder: .}\nsnapshots: {keep_last: 0}\n"),
    "/jobs/job.yaml:4:24: snapshots.keep_last: must be at least 1",
  );
});

Deno.test("SpecError: every problem of a file is reported at once, in file order", () => {
  const e = specError(
    `jobs:
  - name: ok
    target: /ok
    source: { folder: . }
  - name: ok
    target: relative
    copies: 2.5
    schedule: "every day"
    chunking: { avg: 3MiB }
    sources:
      - fodler: x
      - http: { urls: [ftp://x] }
`,
    "job.yaml",
  );
  assert.deepStrictEqual(e.message.split("\n"), [
    'job.yaml:5:11: jobs[1].name: duplicate job name "ok" (also jobs[0])',
    "job.yaml:6:13: jobs[1].target: must be an absolute store path starting with /",
    "job.yaml:7:13: jobs[1].copies: must be a whole number",
    "job.yaml:8:15: jobs[1].schedule: bad cron schedule: invalid configuration format ('every day'), exactly five, six, or seven space separated parts are required.",
    "job.yaml:9:22: jobs[1].chunking.avg: must be a power of two (e.g. 256KiB, 1MiB), not 3 MiB",
    "job.yaml:11:9: jobs[1].sources[0]: a source needs one of folder:, photos: or http:",
    'job.yaml:11:9: jobs[1].sources[0].fodler: unknown field (did you mean "folder"?)',
    "job.yaml:12:24: jobs[1].sources[1].http.urls[0]: not an http(s) URL",
  ]);
  assert.deepStrictEqual(e.issues.length, 8);
});

Deno.test("loadSpec: a missing file is a SpecError naming the path", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/nope.yaml`;
    await assert.rejects(() => loadSpec(path), (e) => {
      assert(e instanceof SpecError, `expected a SpecError, got ${e}`);
      assert.deepStrictEqual(e.message, `${path}: cannot read the job file: no such file`);
      assert(e.cause instanceof Deno.errors.NotFound);
      return true;
    });
    await assert.rejects(() => loadSpec(dir), (d) => {
      assert(d instanceof SpecError && d.message.startsWith(`${dir}: cannot read the job file`));
      return true;
    });
  });
});

Deno.test("loadSpec: errors name the file as it was given", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      () => load(dir, "bad.yaml", "name: a\ntarget: a\nsource: {folder: .}\n"),
      (e) => {
        assert(e instanceof SpecError);
        assert.deepStrictEqual(
          e.message,
          `${dir}/bad.yaml:2:9: target: must be an absolute store path starting with /`,
        );
        return true;
      },
    );
  });
});

Deno.test("jobSchema and specFileSchema validate plain objects, paths as written", () => {
  const job = jobSchema.parse({ name: "a", target: "/a/", source: { folder: "rel" } });
  assert.deepStrictEqual(job, {
    name: "a",
    target: "/a",
    sources: [{ kind: "folder", path: "rel", followSymlinks: false }],
    ...DEFAULTS,
  });
  const jobs = specFileSchema.parse({
    jobs: [{ name: "a", target: "/a", sources: [{ http: { manifest: "m" } }] }],
  });
  assert.deepStrictEqual(jobs.length, 1);
  assert.deepStrictEqual(jobs[0].sources[0].kind, "http");
  assert(!jobSchema.safeParse({ name: "a", target: "/a" }).success, "a job without sources passed");
});

Deno.test("specJsonSchema: a JSON Schema of the file with the job's fields", () => {
  const schema = specJsonSchema() as {
    type?: string;
    properties?: Record<string, { default?: unknown; items?: unknown }>;
    additionalProperties?: boolean;
  };
  assert.deepStrictEqual(schema.type, "object");
  const props = Object.keys(schema.properties ?? {});
  for (const key of ["name", "target", "sources", "source", "jobs", "chunking", "schedule"]) {
    assert(props.includes(key), `properties lack ${key}: ${props}`);
  }
  assert.deepStrictEqual(schema.additionalProperties, false);
  assert.deepStrictEqual(schema.properties?.snapshots.default, { keep_last: 10 });
  // It is plain JSON.
  assert.deepStrictEqual(JSON.parse(JSON.stringify(schema)), schema);
});
