/**
 * Writing a stored file to the local disk, as `pifs get` and `pifs recover`
 * do.
 *
 * @module
 */
import type { Store } from "./store.ts";

/**
 * Writes the file whose manifest is `manifestId` to `path` with `mode` and
 * `mtime` (ms): through `PATH.pifs-part`, renamed over `path` only when
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
  const tmp = `${path}.pifs-part`;
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
