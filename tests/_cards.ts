/**
 * Oracles for card images: `fsck.fat -n` on the FAT32 partition and the Pi
 * boot files read back through mtools.
 *
 * @module
 */
import { bootFileContents, mtoolsImage, PARTITION_START } from "../card/card.ts";
import assert from "node:assert/strict";

/** Runs `fsck.fat -n` on the card's partition; throws with its output unless clean. */
export async function assertFsckClean(card: string): Promise<void> {
  const part = await Deno.makeTempFile({ prefix: "pifs-part-" });
  try {
    const dd = await new Deno.Command("dd", {
      args: [
        `if=${card}`,
        `of=${part}`,
        "bs=1M",
        `skip=${PARTITION_START / 2048}`,
        "conv=sparse",
        "status=none",
      ],
    }).output();
    assert(dd.success, `dd of ${card} failed`);
    const out = await new Deno.Command("fsck.fat", { args: ["-n", part] }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    // A clean run prints exactly the version line and the summary line.
    const lines = text.trim().split("\n");
    assert(
      out.success && lines.length === 2 && /files, \d+\/\d+ clusters/.test(lines[1]),
      `fsck.fat -n ${card}: exit ${out.code}\n${text}`,
    );
  } finally {
    await Deno.remove(part);
  }
}

/** Reads each Pi boot file through mtools and compares it with what the card was made with. */
export async function assertBootFilesIntact(card: string): Promise<void> {
  for (const [name, want] of bootFileContents()) {
    const out = await new Deno.Command("mtype", { args: ["-i", mtoolsImage(card), `::/${name}`] })
      .output();
    assert(out.success, `mtype ${name} from ${card} failed`);
    const got = out.stdout;
    assert(
      got.length === want.length && got.every((b, i) => b === want[i]),
      `${card}: boot file ${name} changed (${got.length} bytes, expected ${want.length})`,
    );
  }
}
