/**
 * `pifs deploy IMAGE...`: node firmware to every Pi of the cluster at once.
 *
 * @module
 */
import type { Command } from "commander";
import { DeployError, deployImage, type DeployResult, imageInfo } from "../link/deploy.ts";
import { SerialPort } from "../link/serial.ts";
import { nearestBaud, readClusterFile, resolveIn } from "../store/cluster.ts";
import { clusterDir } from "../store/cluster.ts";
import { MultiProgress } from "./_progress.ts";
import { info, intOption, UsageError } from "./_util.ts";

interface Target {
  label: string;
  port: string;
}

/** Adds `deploy` to `program`. */
export function registerDeploy(program: Command): void {
  program.command("deploy")
    .description(
      "send node firmware to every Pi of the cluster (or --port) at once: each Pi reboots into " +
        "its bootloader, takes the image for its board, checks it and runs it",
    )
    .argument("<image...>", "sealed firmware images (firmware/build/pi3/node.img, pi0/node.img)")
    .option("--cluster <dir>", "cluster directory (default: $PIFS_CLUSTER)")
    .option("--port <path...>", "serial ports instead of the cluster's Pis")
    .option("--install", "also write the image to each card, so it survives a reboot")
    .option(
      "--baud <rate>",
      "line rate (default: the cluster's, else 115200)",
      intOption("--baud", 1, 100_000_000),
    )
    .option("--json", "one JSON object with each Pi's outcome")
    .action(async (files: string[], o) => {
      const images = new Map<string, Uint8Array>();
      for (const f of files) {
        let img: Uint8Array;
        try {
          img = await Deno.readFile(f);
        } catch (e) {
          throw new UsageError(`${f}: cannot read: ${(e as Error).message}`);
        }
        let board: string;
        try {
          const i = imageInfo(img);
          if (i.kind !== "node") throw new DeployError("a bootloader image, not node firmware");
          board = i.board;
        } catch (e) {
          if (e instanceof DeployError) throw new UsageError(`${f}: ${e.message}`);
          throw e;
        }
        if (images.has(board)) throw new UsageError(`${f}: a second image for ${board}`);
        images.set(board, img);
      }
      let targets: Target[];
      // The line rate, when known (--baud, or a cluster paced at one): only
      // then is a fraction of it reported.
      let known: number | undefined = o.baud;
      if (o.port) {
        targets = (o.port as string[]).map((p) => ({ label: p, port: p }));
      } else {
        const dir = clusterDir(o.cluster);
        const c = await readClusterFile(dir);
        known = o.baud ?? (c.baud || undefined);
        targets = c.nodes.map((n) => ({ label: `node ${n.id}`, port: resolveIn(dir, n.tty) }));
      }
      const baud = known ?? 115200;
      const sent = targets.map(() => 0), totals = targets.map(() => 0);
      const bar = o.json
        ? undefined
        : new MultiProgress(() =>
          targets.map((t, i) =>
            [t.label, sent[i], totals[i] || undefined] as [string, number, number?]
          )
        );
      const results = await Promise.all(targets.map(async (t, i) => {
        try {
          const r = await deployImage(
            () => SerialPort.open(t.port, { baud: nearestBaud(baud) }),
            (board) => images.get(board),
            {
              baud,
              install: !!o.install,
              onProgress: (done, total) => {
                sent[i] = done;
                totals[i] = total;
              },
            },
          );
          return { ...t, ok: true as const, r };
        } catch (e) {
          return { ...t, ok: false as const, error: (e as Error).message };
        }
      }));
      bar?.done();
      const lineRate = baud / 10;
      const out = results.map((x) => {
        if (!x.ok) return { pi: x.label, port: x.port, ok: false, error: x.error };
        const r: DeployResult = x.r;
        return {
          pi: x.label,
          port: x.port,
          ok: true,
          board: r.board,
          before: r.before,
          after: r.after,
          bytes: r.bytes,
          seconds: Number(r.transferS.toFixed(3)),
          bytes_per_s: Math.round(r.bytes / r.transferS),
          line_fraction: known ? Number((r.bytes / lineRate / r.transferS).toFixed(3)) : null,
          installed: !!o.install,
        };
      });
      if (o.json) console.log(JSON.stringify({ baud: known ?? null, pis: out }));
      else {
        for (const r of out) {
          if (!r.ok) info(`${r.pi}: FAILED: ${r.error}`);
          else {
            info(
              `${r.pi} (${r.board}): ${r.before} -> ${r.after}, ${r.bytes} bytes in ${r.seconds} s ` +
                `(${
                  r.line_fraction !== null
                    ? `${r.line_fraction} of ${baud} baud`
                    : `${(r.bytes_per_s! / 1000).toFixed(1)} kB/s, unpaced line`
                })${r.installed ? ", installed" : ""}`,
            );
          }
        }
      }
      if (out.some((r) => !r.ok)) Deno.exit(1);
    });
}
