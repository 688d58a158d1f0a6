/**
 * Hostile job files, made from the examples with a seeded generator: the
 * inputs of the bad-input suite (`tests/bad_input_test.ts`) and of the job
 * spec fuzz target (`deno task fuzz`). The same seed gives the same files.
 *
 * Each case is a mutation of a valid job file: a value of another type, a
 * field missing or unknown, a bad cron, huge, negative and fractional
 * numbers, aliases and merge keys (bombs among them), duplicate keys, tabs,
 * binary junk, invalid UTF-8, deep nesting, truncation, several documents.
 * Some mutations leave the file valid; the suite only asks that every file
 * is either accepted or refused with a clear error, quickly.
 *
 * @module
 */
import { parse, stringify } from "yaml";

/** A generated job file. */
export interface HostileSpec {
  /** What was done to it, e.g. `type: sources[0].folder = 5`. */
  what: string;
  /** Its bytes. */
  bytes: Uint8Array;
}

/** The valid job files the mutations start from (besides the examples). */
const BASES: string[] = [
  "name: docs\ntarget: /docs\nsources:\n  - folder: ./my-docs\n",
  [
    "jobs:",
    "  - name: a",
    "    target: /a",
    "    source: { folder: ./a, follow_symlinks: true }",
    "    include: ['*.txt']",
    "    exclude: ['tmp/**']",
    "    schedule: '0 3 * * *'",
    "    chunking: { avg: 256KiB, min: 64KiB, max: 1MiB }",
    "  - name: b",
    "    target: /b",
    "    copies: 3",
    "    sources:",
    "      - http: { urls: ['http://127.0.0.1:1/x.bin'], concurrency: 2, retries: 1, timeout: 5 }",
    "      - photos: [./p1, ./p2]",
    "        layout: '{camera}/{yyyy}-{mm}/{name}'",
    "        dedupe: false",
    "    snapshots: { keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 12 }",
    "",
  ].join("\n"),
];

/** A small seeded generator (xorshift32). */
class Rng {
  #x: number;
  constructor(seed: number) {
    this.#x = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#x = x >>> 0;
    return this.#x;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(a: readonly T[]): T {
    if (a.length === 0) throw new RangeError("nothing to pick from");
    return a[this.int(a.length)];
  }
}

const enc = new TextEncoder();

const ODD_VALUES: unknown[] = [
  5,
  -1,
  0,
  0.5,
  1e308,
  -1e308,
  2 ** 53 + 1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  "",
  "x",
  " ",
  "\u0000",
  "../../etc",
  "/",
  "//a",
  "x".repeat(5000),
  "🙂".repeat(200),
  null,
  true,
  false,
  [],
  [1, 2],
  [[[]]],
  {},
  { a: 1 },
  { folder: 5 },
  "1.5MiB",
  "-4K",
  "999999T",
  "0x10",
  "1e3",
];

const ODD_NUMBERS: unknown[] = [
  -1,
  0,
  0.5,
  1e12,
  2 ** 63,
  -(2 ** 31),
  Number.NaN,
  "1.5MiB",
  "-4K",
  "999999T",
  "4 GiB",
  "64",
  "1e3",
  "0.1K",
];

const BAD_CRONS: string[] = [
  "* * *",
  "61 * * * *",
  "* 25 * * *",
  "0 0 32 1 *",
  "0 0 31 2 *",
  "*/0 * * * *",
  "",
  "a b c d e",
  "@yearly2",
  "* * * * * * * *",
  "0 3 * * 8",
  "1-0 * * * *",
  "9".repeat(400),
];

const NUMERIC_FIELDS: string[][] = [
  ["copies"],
  ["chunking", "avg"],
  ["chunking", "min"],
  ["chunking", "max"],
  ["snapshots", "keep_last"],
  ["snapshots", "keep_daily"],
  ["snapshots", "keep_weekly"],
  ["snapshots", "keep_monthly"],
];

type Json = unknown;

/** Every path to a value in `v` (object keys and list indices). */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  }
  return out;
}

function isObject(v: Json): v is Record<string | number, Json> {
  return typeof v === "object" && v !== null;
}

/** `root` with `value` at `at` (missing or scalar parents become mappings). */
function setAt(root: Json, at: (string | number)[], value: Json): Json {
  if (at.length === 0) return value;
  const copy = isObject(root) ? structuredClone(root) : {};
  let cur = copy;
  for (const k of at.slice(0, -1)) {
    if (!isObject(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string | number, Json>;
  }
  cur[at[at.length - 1]] = value;
  return copy;
}

function deleteAt(root: Json, at: (string | number)[]): Json {
  if (at.length === 0 || !isObject(root)) return {};
  const copy = structuredClone(root);
  let cur = copy;
  for (const k of at.slice(0, -1)) {
    if (!isObject(cur[k])) return copy;
    cur = cur[k] as Record<string | number, Json>;
  }
  const last = at[at.length - 1];
  if (Array.isArray(cur) && typeof last === "number") cur.splice(last, 1);
  else delete cur[last];
  return copy;
}

/** The job objects of a parsed file (the file itself, or each of `jobs`). */
function jobPaths(doc: Json): (string | number)[][] {
  const jobs = isObject(doc) ? doc.jobs : undefined;
  return Array.isArray(jobs) ? jobs.map((_, i) => ["jobs", i]) : [[]];
}

function show(at: (string | number)[]): string {
  return at.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("").replace(/^\./, "") ||
    "(root)";
}

function yamlText(v: Json): string {
  // NaN and infinities as YAML writes them; the yaml package does this itself.
  return stringify(v, { aliasDuplicateObjects: false });
}

/** Mutations of the parsed document: each returns a description and the new text. */
const STRUCTURAL: ((r: Rng, doc: Json) => [string, string])[] = [
  (r, doc) => {
    const at = r.pick(paths(doc));
    const v = r.pick(ODD_VALUES);
    return [`type: ${show(at)} = ${JSON.stringify(v)?.slice(0, 30)}`, yamlText(setAt(doc, at, v))];
  },
  (r, doc) => {
    const at = r.pick(paths(doc).filter((p) => p.length > 0));
    return [`missing: ${show(at)}`, yamlText(deleteAt(doc, at))];
  },
  (r, doc) => {
    const job = r.pick(jobPaths(doc));
    const key = r.pick(["nmae", "sourcse", "target ", "Copies", "constructor", "x"]);
    return [`unknown: ${show([...job, key])}`, yamlText(setAt(doc, [...job, key], "1"))];
  },
  (r, doc) => {
    const job = r.pick(jobPaths(doc));
    const cron = r.pick(BAD_CRONS);
    return [`cron: ${cron.slice(0, 30)}`, yamlText(setAt(doc, [...job, "schedule"], cron))];
  },
  (r, doc) => {
    const job = r.pick(jobPaths(doc));
    const field = r.pick(NUMERIC_FIELDS);
    const v = r.pick(ODD_NUMBERS);
    let d = doc;
    if (field.length === 2) {
      const parent = [...job, field[0]];
      const cur = paths(doc).some((p) => show(p) === show(parent));
      if (!cur) d = setAt(d, parent, {});
    }
    return [
      `number: ${show([...job, ...field])} = ${String(v)}`,
      yamlText(setAt(d, [...job, ...field], v)),
    ];
  },
  (r, doc) => {
    const job = r.pick(jobPaths(doc));
    const v = r.pick([
      "/",
      "relative",
      "/a/../b",
      "/a//b",
      "/.snapshots/x",
      "/a\nb",
      "/" + "n".repeat(300),
    ]);
    return [
      `target: ${JSON.stringify(v).slice(0, 30)}`,
      yamlText(setAt(doc, [...job, "target"], v)),
    ];
  },
  (r, doc) => {
    const job = r.pick(jobPaths(doc));
    const v = r.pick([["[unclosed"], ["**/{a,b"], [""], ["!(x"], 5, "*.txt"]);
    const key = r.pick(["include", "exclude"]);
    return [`glob: ${key} = ${JSON.stringify(v)}`, yamlText(setAt(doc, [...job, key], v))];
  },
];

/** Mutations of the text itself. */
const TEXTUAL: ((r: Rng, text: string) => [string, string | Uint8Array])[] = [
  (r, t) => {
    const depth = 3 + r.int(7);
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < depth; i++) {
      lines.push(`a${i}: &a${i} [${Array(10).fill(i === 1 ? "*a" : `*a${i - 1}`).join(",")}]`);
    }
    return [`alias bomb, depth ${depth}`, lines.join("\n") + "\n" + t];
  },
  (_r, t) => [`merge key`, "base: &b { name: merged, target: /m }\n<<: *b\n" + t],
  (r, t) => {
    const n = 2 + r.int(30);
    return [
      `merge bomb ${n}`,
      `x: &x {a: 1}\n` +
      Array.from({ length: n }, (_, i) => `y${i}: {<<: [*x, *x, *x]}`).join("\n") +
      "\n" + t,
    ];
  },
  (_r, t) => [`undefined alias`, t + "extra: *nowhere\n"],
  (r, t) => {
    const key = r.pick(["name", "target", "copies", "sources", "jobs"]);
    return [`duplicate key ${key}`, `${t}${key}: again\n`];
  },
  (_r, t) => [`tabs`, t.replace(/^( +)/gm, (s) => "\t".repeat(Math.max(1, s.length / 2)))],
  (r, t) => {
    const b = enc.encode(t);
    const out = new Uint8Array(b.length + 16);
    const at = r.int(b.length + 1);
    out.set(b.subarray(0, at));
    for (let i = 0; i < 16; i++) out[at + i] = r.int(256);
    out.set(b.subarray(at), at + 16);
    return [`binary junk at ${at}`, out];
  },
  (r, t) => {
    const b = enc.encode(t);
    const at = r.int(b.length);
    const out = b.slice();
    out[at] = 0xff;
    return [`invalid UTF-8 at ${at}`, out];
  },
  (r, t) => {
    const n = r.pick([40, 200, 1000, 5000]);
    return [`flow nesting ${n}`, t + `deep: ${"[".repeat(n)}${"]".repeat(n)}\n`];
  },
  (r, t) => {
    const n = r.pick([40, 200, 1000]);
    const lines = Array.from({ length: n }, (_, i) => `${"  ".repeat(i)}k${i}:`);
    return [`block nesting ${n}`, t + "deep:\n" + lines.map((l) => "  " + l).join("\n") + " 1\n"];
  },
  (r, t) => {
    const at = r.int(t.length);
    return [`truncated at ${at}`, t.slice(0, at)];
  },
  (_r, _t) => [`empty`, ""],
  (_r, _t) => [`comments only`, "# nothing\n# here\n"],
  (_r, t) => [`two documents`, `${t}---\n${t}`],
  (_r, t) => [`BOM and CRLF`, "\ufeff" + t.replace(/\n/g, "\r\n")],
  (_r, t) => [`NUL bytes`, t.replace(/: /, ":\u0000 ")],
  (r, t) => {
    const n = r.pick([10_000, 100_000]);
    return [`long line ${n}`, `${t}note: ${"y".repeat(n)}\n`];
  },
  (_r, _t) => [`scalar file`, "just a string\n"],
  (_r, _t) => [`list file`, "- name: a\n  target: /a\n"],
  (_r, t) => [`tag`, t.replace(/^name: /m, "name: !!binary ")],
  (_r, t) => [`custom tag`, t + "x: !custom {a: 1}\n"],
];

/**
 * `count` hostile job files from `seed`: mutations of the examples
 * (`examples/*.yaml`) and of the built-in bases, structural and textual in
 * turn. The same arguments give the same files.
 */
export async function hostileSpecs(seed: number, count: number): Promise<HostileSpec[]> {
  const examples = new URL("../examples/", import.meta.url);
  const texts = [...BASES];
  for await (const e of Deno.readDir(examples)) {
    if (e.name.endsWith(".yaml")) texts.push(await Deno.readTextFile(new URL(e.name, examples)));
  }
  texts.sort();
  const r = new Rng(seed);
  const out: HostileSpec[] = [];
  for (let i = 0; i < count; i++) {
    const base = r.pick(texts);
    if (i % 2 === 0) {
      const doc = parse(base) as Json;
      // One to three structural mutations in a row.
      const what: string[] = [];
      let d = doc, text = base;
      for (let k = 1 + r.int(3); k > 0; k--) {
        let w: string, t: string;
        try {
          [w, t] = r.pick(STRUCTURAL)(r, d);
        } catch {
          continue; // nothing of that kind to mutate in this document
        }
        what.push(w);
        text = t;
        try {
          d = parse(t) as Json;
        } catch {
          break;
        }
      }
      out.push({ what: what.join("; "), bytes: enc.encode(text) });
    } else {
      const [w, t] = r.pick(TEXTUAL)(r, base);
      out.push({ what: w, bytes: typeof t === "string" ? enc.encode(t) : t });
    }
  }
  return out;
}
