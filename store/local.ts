/**
 * Writing a stored file to the local disk, as `pifs get` and `pifs recover`
 * do.
 *
 * @module
 */
import { objectId } from "../ids.ts";
import type { Store } from "./store.ts";

/** Suffix of the file a stored file is written to before it is whole. */
export const PART_SUFFIX = ".pifs-part";
/** Longest file name, in bytes, on the file systems pifs writes to (ext4, FAT's long names, APFS). */
const NAME_MAX = 255;

/**
 * The temporary name `path` is written under: `NAME.pifs-part` beside it,
 * or, when that would be longer than 255 bytes, the name cut short (on a
 * UTF-8 character boundary) with a hash of the whole name, so that two long
 * names never share a part file.
 *
 * @example
 * ```ts
 * import { partPath } from "./local.ts";
 * if (partPath("/d/a.txt") !== "/d/a.txt.pifs-part") throw new Error();
 * const long = partPath("/d/" + "é".repeat(127));
 * const name = long.slice(3);
 * if (new TextEncoder().encode(name).length > 255 || !name.endsWith(".pifs-part")) {
 *   throw new Error(name);
 * }
 * ```
 */
export function partPath(path: string): string {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1), name = path.slice(slash + 1);
  const bytes = new TextEncoder().encode(name);
  if (bytes.length + PART_SUFFIX.length <= NAME_MAX) return `${path}${PART_SUFFIX}`;
  const tag = `~${objectId(bytes).slice(0, 12)}`;
  let cut = NAME_MAX - PART_SUFFIX.length - tag.length;
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--; // not inside a character
  return `${dir}${new TextDecoder().decode(bytes.subarray(0, cut))}${tag}${PART_SUFFIX}`;
}

/**
 * Writes the file whose manifest is `manifestId` to `path` with `mode` and
 * `mtime` (ms): through {@linkcode partPath}, renamed over `path` only when
 * whole, so `path` never holds a partial file; the part file is removed if
 * anything fails.
 */
export async function writeLocalFile(
  store: Store,
  manifestId: string,
  path: string,
  mode: number,
  mtime: number,
): Promise<void> {
  const tmp = partPath(path);
  try {
    const m = await store.manifestOf(manifestId);
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    await store.fileStream(m).pipeTo(f.writable);
    await Deno.chmod(tmp, mode & 0o7777);
    await Deno.utime(tmp, new Date(mtime), new Date(mtime));
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
