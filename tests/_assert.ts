/**
 * Small assertion helpers for the tests (JSR's @std/assert is not reachable
 * from here). Failures show both values.
 *
 * @module
 */

/** An assertion that did not hold. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Throws unless `cond` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

function canon(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (x instanceof Uint8Array) return `bytes:${Array.from(x).join(",")}`;
    if (typeof x === "bigint") return `${x}n`;
    return x;
  });
}

/** Throws unless `a` and `b` are structurally equal (bytes compared by value). */
export function assertEquals(a: unknown, b: unknown, msg = ""): void {
  const ca = canon(a), cb = canon(b);
  if (ca !== cb) {
    const show = (s: string) => s.length > 400 ? `${s.slice(0, 400)}…` : s;
    throw new AssertionError(`${msg ? msg + ": " : ""}got ${show(ca)}, expected ${show(cb)}`);
  }
}

/** Resolves to the error `fn` rejects with; throws if it does not reject. */
export async function assertRejects(fn: () => Promise<unknown>, msg = ""): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return e as Error;
  }
  throw new AssertionError(`expected a rejection${msg ? `: ${msg}` : ""}`);
}
