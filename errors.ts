/**
 * The one base class of pifs's errors. Every error pifs throws on purpose is
 * a {@linkcode PifsError} with a stable {@linkcode PifsError.code}: callers
 * decide what to do by `instanceof` or by the code, never by the message or
 * the `name` string, and the CLI prints such an error as one line without a
 * stack trace (`--debug` or `PIFS_DEBUG=1` shows the stack).
 *
 * @example
 * ```ts
 * import { errorCode, PifsError } from "./errors.ts";
 * class FullError extends PifsError {
 *   override readonly code = "ENOSPC";
 * }
 * const e = new FullError("node 2: no space left on the card");
 * if (!(e instanceof PifsError) || errorCode(e) !== "ENOSPC") throw new Error();
 * if (errorCode(new TypeError("x")) !== undefined) throw new Error();
 * ```
 *
 * @module
 */

/**
 * An error pifs raises on purpose: its message says what went wrong and
 * where (file, node, field), and {@linkcode PifsError.code} names the kind.
 * Subclasses set `code` (and `name`, for the stack's first line).
 */
export class PifsError extends Error {
  /** The error's name. */
  override name = "PifsError";
  /** What kind of failure this is, for callers and scripts (stable across releases). */
  readonly code: string = "PIFS";
  /** Exit status the CLI uses for this error: 2 for a usage error, 1 otherwise. */
  readonly exitCode: number = 1;
}

/**
 * The code of `e` if it is a {@linkcode PifsError}, else undefined.
 *
 * @example
 * ```ts
 * import { errorCode, PifsError } from "./errors.ts";
 * if (errorCode(new PifsError("x")) !== "PIFS") throw new Error();
 * ```
 */
export function errorCode(e: unknown): string | undefined {
  return e instanceof PifsError ? e.code : undefined;
}

/**
 * `s` with control characters written as escapes (`\n`, `\t`, `\x1b`), so
 * that a file name in a message stays on its one line.
 *
 * @example
 * ```ts
 * import { printable } from "./errors.ts";
 * if (printable("new\nline") !== "new\\nline") throw new Error();
 * ```
 */
export function printable(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/**
 * Whether `e` is an error of the operating system that Deno raises (one of
 * `Deno.errors`: NotFound, PermissionDenied, ...): its message names the
 * call and the path.
 *
 * @example
 * ```ts
 * import { isOsError } from "./errors.ts";
 * if (!isOsError(new Deno.errors.NotFound("x")) || isOsError(new TypeError("x"))) throw new Error();
 * ```
 */
export function isOsError(e: unknown): e is Error {
  return e instanceof Error &&
    Object.values(Deno.errors).some((c) => typeof c === "function" && e instanceof c);
}
