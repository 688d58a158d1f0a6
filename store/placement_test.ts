import assert from "node:assert/strict";
import { placeChunk, PlacementError, type PlacementNode, rankNodes } from "./placement.ts";

function random_ids(count: number): string[] {
  const ids: string[] = [];
  const bytes = new Uint8Array(32);
  for (let i = 0; i < count; i++) {
    crypto.getRandomValues(bytes);
    ids.push(Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return ids;
}

function equal_nodes(ids: number[]): PlacementNode[] {
  return ids.map((id) => ({ id, weight: 1 }));
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function throws_placement_error(fn: () => unknown, names: string): PlacementError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof PlacementError, `expected a PlacementError, got ${e}`);
    assert.deepStrictEqual(e.name, "PlacementError");
    assert(e.message.includes(names), `message ${JSON.stringify(e.message)} lacks ${names}`);
    return e;
  }
  throw new Error(`expected a PlacementError naming ${names}`);
}

// The hash as the module documentation specifies it, in BigInt arithmetic.
const M64 = (1n << 64n) - 1n;

function ref_mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

function ref_rank(chunkId: string, nodes: readonly PlacementNode[]): number[] {
  const c = BigInt(`0x${chunkId.slice(0, 16)}`);
  const scored = nodes.map(({ id, weight }) => {
    const k = ref_mix64((BigInt(id) + 0x9e3779b97f4a7c15n) & M64);
    const h = ref_mix64(c ^ k);
    const u = (Number(h >> 12n) + 0.5) / 2 ** 52;
    return { id, score: weight / -Math.log(u) };
  });
  scored.sort((a, b) => b.score - a.score || a.id - b.id);
  return scored.map((s) => s.id);
}

Deno.test("rankNodes matches the documented hash (BigInt reference)", () => {
  const nodes: PlacementNode[] = [
    { id: 0, weight: 1 },
    { id: 1, weight: 2.5 },
    { id: 7, weight: 64e9 },
    { id: 2 ** 32 - 1, weight: 3 },
    { id: 2 ** 32, weight: 1e-3 },
    { id: 2 ** 40 + 12345, weight: 7 },
    { id: Number.MAX_SAFE_INTEGER, weight: 1 },
  ];
  const ids = [...random_ids(3000), "0".repeat(64), "f".repeat(64)];
  for (const id of ids) {
    assert.deepStrictEqual(rankNodes(id, nodes), ref_rank(id, nodes), id);
    for (let n = 1; n <= nodes.length; n++) {
      assert.deepStrictEqual(placeChunk(id, nodes, n), ref_rank(id, nodes).slice(0, n), id);
    }
  }
});

Deno.test("the hash is pinned: placements of existing chunks never move", () => {
  const nodes = [{ id: 1, weight: 4 }, { id: 2, weight: 2 }, { id: 3, weight: 1 }, {
    id: 4,
    weight: 1,
  }];
  const vectors: [string, number[]][] = [
    ["0".repeat(64), [1, 2, 3, 4]],
    ["f".repeat(64), [1, 3, 2, 4]],
    ["0123456789abcdef".repeat(4), [4, 2, 1, 3]],
    ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", [1, 4, 3, 2]],
  ];
  for (const [id, want] of vectors) assert.deepStrictEqual(rankNodes(id, nodes), want, id);
});

Deno.test("deterministic: same input, same output, whatever the order of nodes", () => {
  const nodes: PlacementNode[] = [
    { id: 3, weight: 5 },
    { id: 9, weight: 1 },
    { id: 4, weight: 2 },
    { id: 12, weight: 2 },
    { id: 0, weight: 8 },
  ];
  for (const id of random_ids(500)) {
    const ranked = rankNodes(id, nodes);
    assert.deepStrictEqual([...ranked].sort((a, b) => a - b), [0, 3, 4, 9, 12]);
    assert.deepStrictEqual(rankNodes(id, nodes), ranked);
    assert.deepStrictEqual(rankNodes(id, shuffled(nodes)), ranked);
    assert.deepStrictEqual(rankNodes(id, [...nodes].reverse()), ranked);
    assert.deepStrictEqual(placeChunk(id, shuffled(nodes), 3), ranked.slice(0, 3));
  }
});

Deno.test("distinct: placeChunk returns `copies` distinct ids, for every copies", () => {
  const nodes: PlacementNode[] = [1, 2, 3, 5, 8, 13, 21, 34].map((id) => ({ id, weight: id }));
  const all = new Set(nodes.map((n) => n.id));
  for (const id of random_ids(300)) {
    const ranked = rankNodes(id, nodes);
    for (let copies = 1; copies <= nodes.length; copies++) {
      const where = placeChunk(id, nodes, copies);
      assert.deepStrictEqual(where.length, copies);
      assert.deepStrictEqual(new Set(where).size, copies);
      assert(where.every((n) => all.has(n)), `unknown node in ${where}`);
      assert.deepStrictEqual(where, ranked.slice(0, copies));
    }
  }
});

Deno.test("weighted: primaries follow the weights 1:2:3", () => {
  const nodes: PlacementNode[] = [{ id: 1, weight: 1 }, { id: 2, weight: 2 }, { id: 3, weight: 3 }];
  const n = 60_000;
  const count = new Map<number, number>([[1, 0], [2, 0], [3, 0]]);
  for (const id of random_ids(n)) {
    const [primary] = placeChunk(id, nodes, 1);
    count.set(primary, count.get(primary)! + 1);
  }
  const share = [1, 2, 3].map((node) => count.get(node)! / n);
  console.log(`primary shares for weights 1:2:3: ${share.map((s) => s.toFixed(4)).join(" ")}`);
  for (const [i, want] of [1 / 6, 2 / 6, 3 / 6].entries()) {
    assert(Math.abs(share[i] - want) <= 0.02, `node ${i + 1}: share ${share[i]}, want ${want}`);
  }
});

Deno.test("weighted: scale-free, only ratios of weights matter", () => {
  const small = [{ id: 1, weight: 1 }, { id: 2, weight: 2 }, { id: 3, weight: 3 }];
  const large = small.map((n) => ({ id: n.id, weight: n.weight * 2 ** 40 }));
  for (const id of random_ids(500)) {
    assert.deepStrictEqual(rankNodes(id, large), rankNodes(id, small));
  }
});

Deno.test("stable: adding a node moves only its share; removing one moves only its chunks", () => {
  const ids = random_ids(20_000);
  const three = equal_nodes([1, 2, 3]);
  const four = equal_nodes([1, 2, 3, 4]);
  let with_new = 0;
  for (const id of ids) {
    const before = new Set(placeChunk(id, three, 2));
    const after = new Set(placeChunk(id, four, 2));
    const changed = [...after].filter((n) => !before.has(n));
    assert(changed.length <= 1, `${id}: ${[...before]} -> ${[...after]}`);
    if (after.has(4)) {
      with_new++;
      assert.deepStrictEqual(changed, [4], id);
    } else {
      assert.deepStrictEqual([...after].sort(), [...before].sort(), id);
    }
  }
  const share = with_new / ids.length;
  console.log(`new 4th node is in ${(share * 100).toFixed(2)}% of the 2-copy sets`);
  assert(Math.abs(share - 2 / 4) <= 0.03, `new node in ${share} of the sets, want 0.5`);

  // Remove node 2 from the four: only the sets that held it change, by that one node.
  const without = equal_nodes([1, 3, 4]);
  let moved = 0;
  for (const id of ids) {
    const before = placeChunk(id, four, 2);
    const after = placeChunk(id, without, 2);
    if (!before.includes(2)) {
      assert.deepStrictEqual(after, before, id);
      continue;
    }
    moved++;
    const kept = before.filter((n) => n !== 2);
    assert(kept.every((n) => after.includes(n)), `${id}: ${before} -> ${after}`);
    assert(!after.includes(2) && new Set(after).size === 2, `${id}: ${before} -> ${after}`);
  }
  assert(Math.abs(moved / ids.length - 2 / 4) <= 0.03, `removal moved ${moved} sets`);
});

Deno.test("bad input throws PlacementError naming the bad value", () => {
  const id = "ab".repeat(32);
  const nodes = equal_nodes([1, 2, 3]);
  assert.deepStrictEqual(throws_placement_error(() => placeChunk(id, nodes, 0), "got 0").value, 0);
  assert.deepStrictEqual(throws_placement_error(() => placeChunk(id, nodes, 4), "got 4").value, 4);
  throws_placement_error(() => placeChunk(id, nodes, 1.5), "got 1.5");
  throws_placement_error(() => placeChunk(id, nodes, NaN), "got NaN");
  throws_placement_error(() => placeChunk(id, [], 1), "got 1");
  const dup = [{ id: 1, weight: 1 }, { id: 5, weight: 2 }, { id: 5, weight: 3 }];
  assert.deepStrictEqual(
    throws_placement_error(() => placeChunk(id, dup, 1), "duplicate node id 5").value,
    5,
  );
  throws_placement_error(() => rankNodes(id, dup), "duplicate node id 5");
  for (
    const [weight, text] of [[0, "weight 0"], [-2, "weight -2"], [NaN, "weight NaN"], [
      Infinity,
      "weight Infinity",
    ]] as const
  ) {
    const bad = [{ id: 1, weight: 1 }, { id: 6, weight }];
    const e = throws_placement_error(() => placeChunk(id, bad, 1), text);
    assert(e.message.includes("node 6"), e.message);
    assert(Object.is(e.value, weight), `value ${e.value}`);
    throws_placement_error(() => rankNodes(id, bad), text);
  }
  for (const bad_id of [-1, 1.5, NaN, 2 ** 53]) {
    throws_placement_error(() => rankNodes(id, [{ id: bad_id, weight: 1 }]), `got ${bad_id}`);
  }
  for (const bad of ["", "abc", id.slice(1), id + "0", id.toUpperCase(), "g" + id.slice(1)]) {
    const e = throws_placement_error(() => placeChunk(bad, nodes, 1), JSON.stringify(bad));
    assert.deepStrictEqual(e.value, bad);
    throws_placement_error(() => rankNodes(bad, nodes), JSON.stringify(bad));
  }
  throws_placement_error(() => rankNodes(undefined as unknown as string, nodes), "undefined");
});

Deno.test("speed: 100,000 chunks on 8 nodes", () => {
  const nodes: PlacementNode[] = [...Array(8).keys()].map((i) => ({ id: i, weight: 16e9 + i }));
  const ids = random_ids(100_000);
  const t0 = performance.now();
  let check = 0;
  for (const id of ids) check += placeChunk(id, nodes, 3)[0];
  const ms = performance.now() - t0;
  const rate = Math.round(ids.length / (ms / 1000));
  console.log(`placed ${ids.length} chunks (3 copies, 8 nodes) in ${ms.toFixed(0)} ms: ${rate}/s`);
  assert(check >= 0);
  assert(ms < 10_000, `took ${ms} ms`);
});
