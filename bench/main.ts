/**
 * `deno task bench`: every benchmark of the issues, one after the other, in
 * one report.
 *
 *   deno task bench [--quick] [--only link,cluster,catchup,cdc,sync,e2e,resync,repair,rebalance,mount] [--out report.md]
 *
 * Each section is a program of its own in `bench/`, run here as a subprocess
 * so that it has its own memory (the sync section measures the peak RSS of
 * its process) and its own V8 flags. A section's tables (its stdout) go into
 * the report as it finishes; its progress lines (stderr) pass through. A
 * section that fails is reported as failed and the others still run; the
 * exit code is then 1.
 *
 * `--quick` (a few minutes on 2 cores) is passed to every section, which then
 * measures less data or fewer configurations; ratios stay comparable within a
 * section, as each measures everything it compares in the same run.
 *
 * @module
 */

/** One benchmark program and its arguments. */
export interface Section {
  /** Short name, for `--only`. */
  name: string;
  /** What the issues ask it to measure. */
  title: string;
  /** The program, relative to `bench/`. */
  file: string;
  /** V8 flags (the sync sections run as the `pifs` launcher does). */
  v8?: string;
}

/** The sections of the report, in the order they run. */
export const SECTIONS: Section[] = [
  {
    name: "link",
    title: "One link: chunk put and get against the line rate and ZMODEM (issue 2)",
    file: "link_bench.ts",
  },
  {
    name: "cluster",
    title:
      "Cluster: aggregate put throughput against N/R × line rate; ls -l of many files (issue 3)",
    file: "cluster_bench.ts",
  },
  {
    name: "catchup",
    title: "A short command with a node's journal behind, against all in sync (issue 3)",
    file: "catchup_bench.ts",
  },
  {
    name: "cdc",
    title: "Content-defined chunking: speed, chunk sizes, chunks changed by edits (issue 4)",
    file: "cdc_bench.ts",
  },
  {
    name: "sync",
    title: "Sync memory against file size; wire bytes of a re-sync and of a 1 MiB edit (issue 4)",
    file: "sync_bench.ts",
    v8: "--max-semi-space-size=2",
  },
  {
    name: "e2e",
    title:
      "Sync end to end: chunk + hash against read; throughput against N/R × line rate (issue 4)",
    file: "sync_e2e_bench.ts",
    v8: "--max-semi-space-size=2",
  },
  {
    name: "resync",
    title:
      "Many small files synced again: wire bytes and time of an unchanged re-sync, a one-file change, a diff (issue 21)",
    file: "resync_bench.ts",
  },
  {
    name: "repair",
    title:
      "Scrub time per GiB against sha256sum; repair throughput against the line rate (issue 7)",
    file: "repair_bench.ts",
  },
  {
    name: "rebalance",
    title:
      "Rebalance after a Pi joins: bytes moved against the minimum, shares, throughput (issue 7)",
    file: "rebalance_bench.ts",
  },
  {
    name: "mount",
    title:
      "The mount: reads and writes against get/put, cached reads against a passthrough, ls -lR (issue 6)",
    file: "mount_bench.ts",
  },
];

/** The command line of a section's subprocess (after the deno executable). */
export function sectionArgs(s: Section, quick: boolean): string[] {
  const file = new URL(s.file, import.meta.url).pathname;
  return [
    "run",
    "-A",
    `--config=${new URL("../deno.json", import.meta.url).pathname}`,
    ...(s.v8 ? [`--v8-flags=${s.v8}`] : []),
    file,
    ...(quick ? ["--quick"] : []),
  ];
}

/** The sections `--only` names (all when undefined); throws on an unknown name. */
export function chosenSections(only: string | undefined): Section[] {
  if (only === undefined) return SECTIONS;
  const names = only.split(",").map((x) => x.trim()).filter(Boolean);
  for (const n of names) {
    if (!SECTIONS.some((s) => s.name === n)) {
      throw new Error(`--only ${n}: no such section (${SECTIONS.map((s) => s.name).join(", ")})`);
    }
  }
  return SECTIONS.filter((s) => names.includes(s.name));
}

async function main(args: string[]): Promise<number> {
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "usage: deno task bench [--quick] [--only " + SECTIONS.map((s) => s.name).join(",") +
        "] [--out FILE]\n\nSections:\n" +
        SECTIONS.map((s) => `  ${s.name.padEnd(8)} bench/${s.file}: ${s.title}`).join("\n"),
    );
    return 0;
  }
  const quick = args.includes("--quick");
  let sections: Section[];
  try {
    sections = chosenSections(opt("--only"));
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 2;
  }
  const out = opt("--out");
  const report: string[] = [];
  const say = (text: string) => {
    console.log(text);
    report.push(text);
  };
  const cpu = (() => {
    try {
      return /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? "?";
    } catch {
      return "?";
    }
  })();
  say(
    `# pifs benchmarks${quick ? " (--quick)" : ""}\n\n` +
      `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ${cpu}, ` +
      `${new Date().toISOString()}. Each section is one run of its program; the ratios in a ` +
      "section come from that run.\n",
  );
  const results: { s: Section; ok: boolean; code: number }[] = [];
  for (const [i, s] of sections.entries()) {
    const a = sectionArgs(s, quick);
    const shown = a.filter((x) => !x.startsWith("--config=")).join(" ").replace(
      /\S*\/bench\//,
      "bench/",
    );
    say(`## ${i + 1}. ${s.title}\n\n\`deno ${shown}\`\n`);
    console.error(`bench: ${s.name} ...`);
    const child = new Deno.Command(Deno.execPath(), {
      args: a,
      stdout: "piped",
      stderr: "inherit",
      stdin: "null",
    }).spawn();
    const text = await new Response(child.stdout).text();
    const st = await child.status;
    say(text.trim() || "(no output)");
    if (!st.success) {
      say(`\n**section failed: exit code ${st.code}${st.signal ? ` (${st.signal})` : ""}**`);
    }
    say("");
    results.push({ s, ok: st.success, code: st.code });
  }
  say("## Sections\n\n| section | program | outcome |\n| --- | --- | --- |");
  for (const r of results) {
    say(`| ${r.s.name} | bench/${r.s.file} | ${r.ok ? "ok" : `failed (exit ${r.code})`} |`);
  }
  if (out) await Deno.writeTextFile(out, report.join("\n") + "\n");
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
