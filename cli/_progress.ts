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
