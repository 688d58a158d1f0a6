import assert from "node:assert/strict";
import { Feed } from "./feed.ts";
import type { Store } from "./store.ts";

/** The two things a Feed asks of a Store: is a Pi short, and copies landing. */
function fakeStore() {
  const state = { starved: true, lowSeen: 0 };
  let landed: (() => void)[] = [];
  const store = {
    starved: (low: number) => (state.lowSeen = low, state.starved),
    copyLanded: () => new Promise<void>((r) => landed.push(r)),
  } as unknown as Store;
  const land = () => {
    const l = landed;
    landed = [];
    for (const w of l) w();
  };
  return { store, state, land };
}

/** Whether `p` has settled after the microtasks queued so far have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true);
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

Deno.test("feed: one unplaced at a time, only while a Pi is short and under the cap", () => {
  const { store, state } = fakeStore();
  const feed = new Feed(store, { cap: 1000, lowWater: 4096 });
  assert(feed.extra(), "a short Pi and nothing pending: one more may start");
  assert.deepStrictEqual(state.lowSeen, 4096);
  const placed = feed.start();
  assert.deepStrictEqual(feed.pending, 1);
  assert(!feed.extra(), "the one started is not placed yet");
  placed();
  placed(); // a second call (the thing ending) does not count again
  assert.deepStrictEqual(feed.pending, 0);
  assert(feed.extra());
  const a = feed.start(), b = feed.start();
  a();
  assert(!feed.extra(), "b is still unplaced");
  b();
  assert(feed.extra());
  feed.bytes = 1000;
  assert(!feed.extra(), "at the byte cap");
  feed.bytes = 999;
  assert(feed.extra());
  state.starved = false;
  assert(!feed.extra(), "every Pi has enough queued");
});

Deno.test("feed: change() wakes on a placement and on a landed copy, not before", async () => {
  const { store, land } = fakeStore();
  const feed = new Feed(store, { cap: 1 });
  const placed = feed.start();
  const c1 = feed.change();
  assert(!(await settled(c1)), "nothing happened yet");
  placed();
  assert(await settled(c1), "a placement wakes it");
  const c2 = feed.change();
  assert(!(await settled(c2)));
  land();
  assert(await settled(c2), "a landed copy wakes it");
  let err: unknown;
  try {
    new Feed(store, { cap: 0 });
  } catch (e) {
    err = e;
  }
  assert(err instanceof RangeError && /feed cap must be positive/.test(err.message));
});
