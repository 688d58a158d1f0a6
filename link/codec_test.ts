import { crc32c } from "./crc32c.ts";
import { encodeFrame, FrameParser, Op, opToStr, Reader, statusToStr, Writer } from "./codec.ts";
import assert from "node:assert/strict";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) =>
  s === "-" ? new Uint8Array() : Uint8Array.from(s.match(/../g)!, (x) => parseInt(x, 16));

const vectors = (await Deno.readTextFile(new URL("../tests/vectors/frames.txt", import.meta.url)))
  .split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(" "));

function events(p: FrameParser): string[] {
  const out: string[] = [];
  for (let e = p.next(); e; e = p.next()) {
    if (e.kind === "frame") out.push(`F${e.frame.op.toString(16)}/${e.frame.reqid}`);
    else if (e.kind === "badcrc") out.push(`B${e.op.toString(16)}/${e.reqid}`);
    else out.push(`T${e.op.toString(16)}/${e.reqid}`);
  }
  return out;
}

Deno.test("codec: CRC-32C vectors", () => {
  const crcs = vectors.filter((v) => v[0] === "crc");
  assert(crcs.length >= 2);
  for (const [, text, want] of crcs) {
    assert.deepStrictEqual(
      crc32c(new TextEncoder().encode(text)).toString(16).padStart(8, "0"),
      want,
    );
  }
});

Deno.test("codec: frame vectors encode and decode", () => {
  const frames = vectors.filter((v) => v[0] === "frame");
  assert(frames.length >= 4);
  for (const [, name, op, flags, reqid, payload, frame] of frames) {
    const f = {
      op: parseInt(op, 16),
      flags: parseInt(flags, 16),
      reqid: Number(reqid),
      payload: unhex(payload),
    };
    assert.deepStrictEqual(hex(encodeFrame(f)), frame, name);
    const p = new FrameParser();
    p.push(unhex(frame));
    const e = p.next();
    assert(e?.kind === "frame", name);
    assert.deepStrictEqual(e.frame, f, name);
  }
});

Deno.test("codec: stream vectors parse the same whole and byte by byte", () => {
  const streams = vectors.filter((v) => v[0] === "stream");
  assert(streams.length >= 7);
  for (const [, name, bytes, ev, dropped] of streams) {
    const whole = new FrameParser();
    whole.push(unhex(bytes));
    assert.deepStrictEqual(events(whole).join(",") || "-", ev, name);
    assert.deepStrictEqual(whole.dropped, Number(dropped), name);
    const one = new FrameParser();
    const got: string[] = [];
    for (const b of unhex(bytes)) {
      one.push(new Uint8Array([b]));
      got.push(...events(one));
    }
    assert.deepStrictEqual(got.join(",") || "-", ev, `${name} (byte by byte)`);
  }
});

Deno.test("codec: random frames survive random splits; flipped bytes never pass as frames", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const sent: string[] = [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    const payload = Uint8Array.from({ length: rnd(3000) }, () => rnd(256));
    const f = encodeFrame({ op: Op.PUT_DATA, flags: 0, reqid: i, payload });
    sent.push(`${i}:${hex(payload).slice(0, 16)}`);
    parts.push(f);
  }
  const all = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, o), o += p.length;
  const p = new FrameParser();
  const got: string[] = [];
  for (let i = 0; i < all.length;) {
    const n = 1 + rnd(5000);
    p.push(all.subarray(i, i + n));
    i += n;
    for (let e = p.next(); e; e = p.next()) {
      assert(e.kind === "frame");
      got.push(`${e.frame.reqid}:${hex(e.frame.payload).slice(0, 16)}`);
    }
  }
  assert.deepStrictEqual(got, sent);
  // Flip one bit anywhere in a frame: it is never delivered as a good frame.
  for (let t = 0; t < 300; t++) {
    const f = parts[rnd(parts.length)].slice();
    const at = rnd(f.length);
    f[at] ^= 1 << rnd(8);
    const q = new FrameParser();
    q.push(f);
    for (let e = q.next(); e; e = q.next()) assert(e.kind !== "frame", `bit flip at ${at} passed`);
  }
});

Deno.test("codec: a byte lost, added or flipped on the line costs one frame, not the next", () => {
  let seed = 777;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let t = 0; t < 300; t++) {
    const frames = 10 + rnd(20);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < frames; i++) {
      const payload = Uint8Array.from({ length: rnd(700) }, () => rnd(256));
      parts.push(encodeFrame({ op: Op.PUT_DATA, flags: 0, reqid: i, payload }));
    }
    const line = [...parts.flatMap((p) => [...p])];
    const at = 1 + rnd(line.length - 2), kind = rnd(3);
    if (kind === 0) line.splice(at, 1);
    else if (kind === 1) line.splice(at, 0, rnd(256));
    else line[at] ^= 1 << rnd(8);
    const p = new FrameParser();
    p.push(Uint8Array.from(line));
    const got = events(p).filter((e) => e.startsWith("F")).map((e) => Number(e.split("/")[1]));
    // a flip can make a 00 (splitting one frame) or clear one (merging two)
    assert(got.length >= frames - (kind === 2 ? 2 : 1), `trial ${t}: kind ${kind} at ${at}`);
    assert.deepStrictEqual(got, [...got].sort((a, b) => a - b));
  }
});

Deno.test("codec: names, readers and writers", () => {
  assert.deepStrictEqual(opToStr(Op.JOURNAL_APPEND), "JOURNAL_APPEND");
  assert.deepStrictEqual(opToStr(0x01), "UNKNOWN(0x01)");
  assert(statusToStr(-16).startsWith("EWRONGCLUSTER"));
  const w = new Writer(32).u8(1).u16(0x203).u32(0xdeadbeef).u64(2 ** 40 + 5).bytes(
    new Uint8Array([9]),
  );
  const r = new Reader(w.done());
  assert.deepStrictEqual([r.u8(), r.u16(), r.u32(), r.u64(), r.bytes(1)[0]], [
    1,
    0x203,
    0xdeadbeef,
    2 ** 40 + 5,
    9,
  ]);
  let threw = false;
  try {
    r.u8();
  } catch (e) {
    threw = (e as Error).name === "ProtocolError";
  }
  assert(threw, "reading past the end must throw ProtocolError");
});
