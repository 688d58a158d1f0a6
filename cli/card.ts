/**
 * `pifs card`: prepare the SD card of a Pi.
 *
 * @module
 */
import type { Command } from "commander";
import { CardHoldsDataError, initCard } from "../card/card.ts";
import { formatBytes, parseSize, SizeError } from "../units.ts";
import { info, UsageError } from "./_util.ts";

/** A commander parser for `--size`. */
function sizeOption(v: string): number {
  try {
    return parseSize(v);
  } catch (e) {
    if (e instanceof SizeError) {
      throw new UsageError(`--size '${v}': not a size (use e.g. 64M, 1G)`);
    }
    throw e;
  }
}

/** A commander parser for `--label`: a FAT volume label. */
function labelOption(v: string): string {
  if (!/^[A-Za-z0-9_-]{1,11}$/.test(v)) {
    throw new UsageError(`--label '${v}': 1 to 11 letters, digits, '_' or '-'`);
  }
  return v.toUpperCase();
}

const EXAMPLES = `
Examples:
  pifs card init /dev/sdb --boot-files ~/pi-firmware/boot
        a real card, with the Raspberry Pi firmware files (bootcode.bin, start.elf,
        fixup.dat, *.dtb, overlays/ ...) from a directory
  pifs card init card.img --size 64M
        a new image file for QEMU's Pi (-drive if=sd,format=raw,file=card.img)

The card gets an MBR with one FAT32 partition at 1 MiB (type 0x0C), the boot
files (stand-ins without --boot-files: they do not boot a real Pi), a config.txt
unless --boot-files brings one, the pifs bootloader as kernel8.img (Pi 3) and
kernel.img (Pi Zero/1), and the node firmware it loads as PIFS/NODE8.IMG and
PIFS/NODE.IMG (1 MiB each). A card that holds files, or data pifs cannot read,
is refused unless --force, with what would be destroyed; a mounted card always.`;

/** Adds `card init` to `program`. */
export function registerCard(program: Command): void {
  const card = program.command("card").description("prepare the SD card of a Pi");
  card.command("init")
    .description(
      "make PATH a pifs card: a block device (e.g. /dev/sdb, /dev/mmcblk0) or an image file",
    )
    .argument("<path>", "block device or image file")
    .option(
      "--size <size>",
      "size of a new image file: a power of two of at least 64M (QEMU needs one); an " +
        "existing file keeps its size",
      sizeOption,
    )
    .option(
      "--boot-files <dir>",
      "copy this directory's tree as the Pi boot files (default: stand-ins)",
    )
    .option("--label <name>", "FAT volume label (default PIFS)", labelOption)
    .option("--force", "overwrite a card that holds files or other data")
    .option("--json", "print a summary as JSON")
    .addHelpText("after", EXAMPLES)
    .action(async (path: string, o) => {
      let s;
      try {
        s = await initCard(path, {
          size: o.size,
          bootFiles: o.bootFiles,
          force: o.force === true,
          label: o.label,
          log: o.json ? undefined : info,
        });
      } catch (e) {
        if (e instanceof CardHoldsDataError && o.json) {
          console.log(JSON.stringify({ path, refused: true, holds: e.survey }));
        }
        throw e;
      }
      if (o.json) {
        console.log(JSON.stringify(s));
        return;
      }
      for (const n of s.notes) info(`note: ${n}`);
      const w = Math.max(...s.files.map((f) => f.path.length));
      console.log(
        `${s.path}: pifs card ready, ${
          formatBytes(s.size)
        }; FAT32 partition ${s.partition.label} ` +
          `at sector ${s.partition.start}, ${s.partition.sectors} sectors; boot files: ` +
          s.boot_files,
      );
      for (const f of s.files) {
        console.log(`  ${f.path.padEnd(w)}  ${String(f.bytes).padStart(9)}  ${f.source}`);
      }
    });
}
