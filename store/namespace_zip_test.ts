import assert from "node:assert/strict";
import {
  decodeJournal,
  encodeEntry,
  expandEntries,
  type JournalEntry,
  JournalError,
  unzipEntry,
  zipEntries,
} from "./namespace.ts";

const puts = (from: number, n: number): JournalEntry[] =>
  Array.from({ length: n }, (_, i) => ({
    op: "put",
    p: `/d/f${from + i}`,
    m: (from + i).toString(16).padStart(64, "0"),
    size: 100 + i,
    mode: 0o644,
    mtime: 1_700_000_000_000 + i,
    copies: 2,
    s: from + i,
  }));

function journal(entries: JournalEntry[]): Uint8Array {
  const parts = entries.map(encodeEntry);
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of parts) out.set(b, o), o += b.length;
  return out;
}

function refused(bytes: Uint8Array, like: RegExp) {
  try {
    decodeJournal(bytes);
  } catch (e) {
    assert(e instanceof JournalError, String(e));
    assert(like.test((e as Error).message), (e as Error).message);
    return;
  }
  throw new Error("accepted");
}

Deno.test("zip: a packed line stands for its entries; sequence numbers go on after it", () => {
  const z = zipEntries(puts(2, 30));
  const lines: JournalEntry[] = [
    { op: "mkdir", p: "/d", mode: 0o755, mtime: 1, s: 1 },
    z,
    { op: "rm", p: "/d/f3", s: 32 },
  ];
  const back = decodeJournal(journal(lines));
  assert.deepStrictEqual(back, lines);
  const all = expandEntries(back);
  assert.deepStrictEqual(all.map((e) => e.s), Array.from({ length: 32 }, (_, i) => i + 1));
  // back[1] was decoded from bytes: this inflates it (z itself is known from packing).
  assert.deepStrictEqual(unzipEntry(back[1] as typeof z), puts(2, 30));
  assert.deepStrictEqual(all.slice(1, 31), puts(2, 30));
  // Re-encoding a decoded line gives the same bytes (catch-up relies on it).
  assert.deepStrictEqual(encodeEntry(back[1]), encodeEntry(z));
});

Deno.test("zip: damaged or inconsistent packed lines are refused with JournalError", () => {
  const z = zipEntries(puts(1, 10));
  // A gap: the next line must be entry 11.
  refused(journal([z, { op: "rm", p: "/x", s: 12 }]), /journal entry 11: carries sequence 12/);
  // Another count than it holds.
  refused(journal([{ ...z, n: 9 }]), /holds 10 entries, says 9/);
  refused(journal([{ ...z, n: 0 }]), /bad count 0/);
  // Damaged data.
  const bad = z.z.slice(0, 20) + (z.z[20] === "A" ? "B" : "A") + z.z.slice(21);
  refused(journal([{ ...z, z: bad }]), /journal entry 1 \(z\)/);
  refused(journal([{ ...z, z: "not base64 at all!" }]), /journal entry 1 \(z\)/);
  // A checkpoint entry may not be packed, nor packed lines nested.
  let thrown = false;
  try {
    zipEntries([{ op: "ckpt", gen: 1, root: "00".repeat(32), s: 1 }]);
  } catch (e) {
    thrown = e instanceof RangeError;
  }
  assert(thrown, "a ckpt entry was packed");
});
