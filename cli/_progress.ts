/**
 * A one-line progress bar on stderr: bytes, rate and ETA. Drawn only when
 * stderr is a terminal and the work has run for more than a second.
 */
import { formatBytes } from "../units.ts";
export class Progress {
  #label: string;
  #total: number;
  #start = performance.now();
  #last = 0;
  #drawn = false;
  #tty = Deno.stderr.isTerminal();

  /** A bar for `total` bytes of work named `label`. */
  constructor(label: string, total: number) {
    this.#label = label;
    this.#total = total;
  }

  /** Reports `done` bytes finished. */
  update(done: number): void {
    const now = performance.now();
    if (!this.#tty || now - this.#start < 1000 || now - this.#last < 100) return;
    this.#last = now;
    const secs = (now - this.#start) / 1000;
    const rate = done / secs;
    const frac = this.#total ? done / this.#total : 1;
    const width = 24, fill = Math.round(frac * width);
    const eta = rate > 0 ? (this.#total - done) / rate : 0;
    const line = `${this.#label} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ${
      (frac * 100).toFixed(0)
    }% ${(rate / 1024).toFixed(1)} KiB/s ETA ${eta.toFixed(0)}s`;
    Deno.stderr.writeSync(new TextEncoder().encode(`\r${line}\x1b[K`));
    this.#drawn = true;
  }

  /** Clears the bar. */
  done(): void {
    if (this.#drawn) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
  }
}

/** One line of a {@linkcode MultiProgress}. */
export interface ProgressRow {
  /** What the line is about: a job's name, `node 2`. */
  label: string;
  /** Bytes done. */
  done: number;
  /** Bytes expected in all, when known or estimated (then a bar, a percentage and an ETA). */
  total?: number;
  /** The total is a lower bound or an estimate (shown with `~`). */
  approx?: boolean;
  /** Files done and listed, and whether more may be listed yet. */
  files?: { done: number; total: number; more: boolean };
  /** Appended as is (e.g. `DOWN`). */
  note?: string;
}

/** Seconds left for a progress line: `45s`, `3m07s`, `2h05m`; `?` when unknown. */
export function fmtEta(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return "?";
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 100 * 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  return ">99h";
}

/**
 * One progress line (no terminal codes): label, files done/total, bytes done
 * of the total, rate, and with a total a bar, a percentage and the ETA at
 * `rate` bytes/s. E.g.
 * `photos     12/40+ files  1.2 GiB of ~3.4 GiB  45.1 MiB/s [######--------------]  35% ETA 1m12s`.
 */
export function formatProgressLine(row: ProgressRow, rate: number): string {
  let line = row.label.padEnd(10);
  if (row.files) {
    line += ` ${
      `${row.files.done}/${row.files.total}${row.files.more ? "+" : ""}`.padStart(9)
    } files`;
  }
  const total = row.total !== undefined && row.total > 0
    ? Math.max(row.total, row.done)
    : undefined;
  line += ` ${formatBytes(row.done).padStart(10)}`;
  if (total !== undefined) line += ` of ${row.approx ? "~" : ""}${formatBytes(total)}`;
  line += ` ${`${formatBytes(Math.max(0, rate))}/s`.padStart(12)}`;
  if (total !== undefined) {
    const frac = Math.min(1, row.done / total), w = 20, fill = Math.round(frac * w);
    const left = total - row.done;
    const eta = left <= 0 ? 0 : rate > 0 ? left / rate : NaN;
    line += ` [${"#".repeat(fill)}${"-".repeat(w - fill)}] ${
      (frac * 100).toFixed(0).padStart(3)
    }% ETA ${fmtEta(eta)}`;
  }
  if (row.note) line += ` ${row.note}`;
  return line;
}

/** What {@linkcode estimateNodeTotals} needs of a sync run in progress. */
export interface SyncCounters {
  /** Every source listed. */
  listing_done: boolean;
  /** Sizes of the entries listed so far. */
  bytes_listed: number;
  /** Sizes of the entries skipped as unchanged (never read). */
  bytes_skipped: number;
  /** Bytes read so far. */
  bytes_read: number;
  /** Chunk bytes × copies handed to the Pis so far. */
  bytes_planned: number;
  /** Of those, committed. */
  bytes_stored: number;
}

/**
 * The bytes each Pi's link is expected to carry in all during a sync run,
 * from what it carried so far (`wires`, this run's bytes per Pi; `up[i]`
 * false for a Pi that is down): the bytes planned for the Pis but not yet
 * stored, plus the bytes still to read times the bytes planned per byte read
 * so far (the dedup the run has seen), times the link overhead seen so far,
 * shared among the Pis as the bytes sent so far were (evenly among the Pis
 * that are up before anything was sent).
 */
export function estimateNodeTotals(p: SyncCounters, wires: number[], up: boolean[]): number[] {
  const sent = wires.reduce((a, b) => a + b, 0);
  const toRead = Math.max(0, p.bytes_listed - p.bytes_skipped - p.bytes_read);
  const perRead = p.bytes_read > 0 ? p.bytes_planned / p.bytes_read : 0;
  const overhead = p.bytes_stored > 0 ? Math.min(2, Math.max(1, sent / p.bytes_stored)) : 1;
  const left = (Math.max(0, p.bytes_planned - p.bytes_stored) + toRead * perRead) * overhead;
  const live = up.filter(Boolean).length;
  return wires.map((w, i) => {
    if (!up[i]) return w;
    const share = sent > 0 ? w / sent : live ? 1 / live : 0;
    return Math.round(w + share * left);
  });
}

/**
 * Several lines of progress on stderr, redrawn in place: e.g. a job line,
 * then one line per Pi. Each line shows bytes and a rate (smoothed per
 * label), and with a total a bar and an ETA ({@linkcode formatProgressLine}).
 * Drawn only on a terminal, after the first second.
 */
export class MultiProgress {
  #start = performance.now();
  #lines = 0;
  #tty = Deno.stderr.isTerminal();
  #timer?: ReturnType<typeof setInterval>;
  #last = new Map<string, { bytes: number; t: number; rate: number }>();

  /** Redraws every 250 ms from what `rows` returns: rows, or [label, done, total?]. */
  constructor(rows: () => (ProgressRow | [string, number, number?])[]) {
    if (!this.#tty) return;
    this.#timer = setInterval(
      () =>
        this.#draw(
          rows().map((r) => Array.isArray(r) ? { label: r[0], done: r[1], total: r[2] } : r),
        ),
      250,
    );
  }

  #draw(rows: ProgressRow[]) {
    const now = performance.now();
    if (now - this.#start < 1000) return;
    const out: string[] = [];
    for (const row of rows) {
      const prev = this.#last.get(row.label);
      let rate = prev?.rate ?? 0;
      if (prev && now > prev.t) {
        const r = (row.done - prev.bytes) / ((now - prev.t) / 1000);
        rate = prev.rate ? 0.8 * rate + 0.2 * r : r;
      }
      this.#last.set(row.label, { bytes: row.done, t: now, rate });
      out.push(formatProgressLine(row, rate));
    }
    const up = this.#lines ? `\x1b[${this.#lines}A` : "";
    Deno.stderr.writeSync(new TextEncoder().encode(up + out.map((l) => `\r${l}\x1b[K\n`).join("")));
    this.#lines = out.length;
  }

  /** Stops redrawing and clears the lines. */
  done(): void {
    clearInterval(this.#timer);
    if (this.#lines) {
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `\x1b[${this.#lines}A` + "\r\x1b[K\n".repeat(this.#lines) + `\x1b[${this.#lines}A`,
        ),
      );
    }
  }
}
