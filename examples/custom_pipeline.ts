/**
 * A sync pipeline written in TypeScript instead of YAML: a source of your
 * own (CSV files of sensor readings, generated here from a seeded generator
 * as a data logger would export them) and a built-in source seen through a
 * transform (the sample dataset, gzipped on the way in), in one job, run
 * exactly as `pifs sync` runs a YAML job.
 *
 * ```sh
 * deno run --allow-write --allow-read examples/make_samples.ts   # the sample dataset
 * deno run -A examples/custom_pipeline.ts [--cluster DIR] [--samples DIR] [--json]
 * ```
 *
 * The cluster is `--cluster DIR` or `$PIFS_CLUSTER`; `--samples DIR` is where
 * `make_samples.ts` wrote `sample-dataset/` (default: this folder). `--json`
 * prints the summary as one JSON line. Run it twice: the second run finds
 * every file unchanged and sends no chunk.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  defineJob,
  FolderSource,
  openCluster,
  type Source,
  type SourceEntry,
  sync,
  type SyncSummary,
  transformSource,
} from "../mod.ts";

// ------------------------------------------------------------- a custom source

/** The sensors of the (imaginary) greenhouse, and the days exported. */
const SENSORS = ["north", "south", "door"] as const;
const DAYS = ["2024-06-01", "2024-06-02", "2024-06-03"] as const;

/** A seeded pseudo-random generator (mulberry32): the same readings on every run. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** One day of readings, every 5 minutes, as CSV. */
function readingsCsv(day: string, seed: number): string {
  const random = generator(seed);
  const rows = ["time,sensor,temperature_c,humidity_pct"];
  const start = Date.parse(`${day}T00:00:00Z`);
  for (let m = 0; m < 24 * 60; m += 5) {
    const time = new Date(start + m * 60_000).toISOString().replace(".000Z", "Z");
    const daylight = Math.sin(((m / 60 - 6) / 24) * 2 * Math.PI); // warmest mid-afternoon
    for (const [i, sensor] of SENSORS.entries()) {
      const t = 21 + 6 * daylight - 2 * i + (random() - 0.5);
      const h = 60 - 15 * daylight + 4 * i + 3 * (random() - 0.5);
      rows.push(`${time},${sensor},${t.toFixed(2)},${h.toFixed(1)}`);
    }
  }
  return rows.join("\n") + "\n";
}

/**
 * The data logger's export: `sensors/greenhouse-DAY.csv`, one file a day.
 * Each entry's key names what the content depends on (day and generator
 * version), and its size and mtime are fixed: a second run finds every file
 * unchanged without opening it.
 */
const sensorReadings: Source = {
  kind: "sensors",
  description: "greenhouse sensor readings (generated)",
  async *list(_report, signal) {
    for (const [i, day] of DAYS.entries()) {
      signal?.throwIfAborted();
      const bytes = new TextEncoder().encode(readingsCsv(day, 1000 + i));
      const entry: SourceEntry = {
        path: `sensors/greenhouse-${day}.csv`,
        size: bytes.length,
        mtimeMs: Date.parse(`${day}T23:59:59Z`), // when the logger closed the file
        mode: 0o644,
        key: `sensors:greenhouse:${day}:v1`,
        open: (offset = 0) => Promise.resolve(ReadableStream.from([bytes.subarray(offset)])),
      };
      yield entry;
    }
  },
};

// ------------------------------------------------------------------ main

function usage(message: string): never {
  console.error(
    `${message}\nusage: custom_pipeline.ts [--cluster DIR] [--samples DIR] [--json]`,
  );
  Deno.exit(2);
}

function summaryText(s: SyncSummary): string {
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  const lines = [
    `${s.job}: ${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged` +
    (s.files_failed ? `, ${s.files_failed} FAILED` : "") + ` in ${s.seconds.toFixed(1)} s`,
    `  read ${kib(s.bytes_read)}, sent ${kib(s.wire_bytes)} on the wires; ` +
    `chunks ${s.chunks_new} new, ${s.chunks_deduplicated} deduplicated`,
  ];
  if (s.snapshot) lines.push(`  snapshot ${s.snapshot}`);
  for (const p of s.problems) lines.push(`  problem: ${p.path}: ${p.message}`);
  return lines.join("\n");
}

if (import.meta.main) {
  let cluster: string | undefined;
  let samples = fileURLToPath(new URL(".", import.meta.url));
  let json = false;
  const args = [...Deno.args];
  while (args.length) {
    const a = args.shift()!;
    if (a === "--cluster") cluster = args.shift() ?? usage("--cluster needs a directory");
    else if (a === "--samples") samples = args.shift() ?? usage("--samples needs a directory");
    else if (a === "--json") json = true;
    else usage(`unknown argument ${a}`);
  }
  const dataset = `${samples.replace(/\/+$/, "")}/sample-dataset`;
  if (!(await Deno.stat(dataset).catch(() => undefined))?.isDirectory) {
    usage(`${dataset}: not found (run examples/make_samples.ts first)`);
  }

  // The sample dataset, gzipped on the way in: `dataset-gz/NAME.gz`. The
  // manifest is left out. `version` is part of every entry's key: change it
  // when the transform changes, and the files are stored again. (The sample's
  // random bytes do not compress; CSV or JSON would.) A transformed entry
  // keeps the original's key, size and mtime, so a second run skips it unread.
  const gzipped = transformSource(new FolderSource({ root: dataset }), {
    path: (e) => e.path === "manifest.json" ? undefined : `dataset-gz/${e.path}.gz`,
    content: () => new CompressionStream("gzip"),
    version: "gzip1",
  });

  const job = defineJob({
    name: "lab",
    target: "/lab",
    sources: [sensorReadings, gzipped],
    copies: 2,
    chunking: { avg: 256 * 1024 },
    snapshots: { keepLast: 5 },
  });

  const store = await openCluster(cluster);
  let summary: SyncSummary;
  try {
    summary = await sync(store, job);
  } finally {
    await store.close();
  }
  if (json) {
    console.log(JSON.stringify(summary));
  } else console.log(summaryText(summary));
  if (summary.files_failed) Deno.exitCode = 1;
}
