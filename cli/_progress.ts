/**
 * A one-line progress bar on stderr: bytes, rate and ETA. Drawn only when
 * stderr is a terminal and the work has run for more than a second.
 */
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

/**
 * Several lines of progress on stderr, redrawn in place: a job line, then one
 * line per Pi (bytes sent on its link, rate). Drawn only on a terminal, after
 * the first second.
 */
export class MultiProgress {
  #start = performance.now();
  #lines = 0;
  #tty = Deno.stderr.isTerminal();
  #timer?: ReturnType<typeof setInterval>;
  #last = new Map<string, { bytes: number; t: number; rate: number }>();

  /** Redraws every 250 ms from what `rows` returns: [label, done, total?]. */
  constructor(rows: () => [string, number, number?][]) {
    if (!this.#tty) return;
    this.#timer = setInterval(() => this.#draw(rows()), 250);
  }

  #draw(rows: [string, number, number?][]) {
    const now = performance.now();
    if (now - this.#start < 1000) return;
    const out: string[] = [];
    for (const [label, done, total] of rows) {
      const prev = this.#last.get(label);
      let rate = prev?.rate ?? 0;
      if (prev && now > prev.t) {
        rate = 0.7 * rate + 0.3 * ((done - prev.bytes) / ((now - prev.t) / 1000));
      }
      this.#last.set(label, { bytes: done, t: now, rate });
      let line = `${label.padEnd(10)} ${(done / 1024).toFixed(0).padStart(8)} KiB ${
        (rate / 1024).toFixed(1).padStart(7)
      } KiB/s`;
      if (total) {
        const frac = Math.min(1, done / total), w = 20, fill = Math.round(frac * w);
        const eta = rate > 0 ? ((total - done) / rate).toFixed(0) : "?";
        line += ` [${"#".repeat(fill)}${"-".repeat(w - fill)}] ${
          (frac * 100).toFixed(0)
        }% ETA ${eta}s`;
      }
      out.push(line);
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
