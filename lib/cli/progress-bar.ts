/** A one-line progress bar on a terminal (redrawn in place); silent when the stream is not a TTY. */
import { performance } from "node:perf_hooks";

const WIDTH = 30;

export class ProgressBar {
  private readonly start = performance.now();
  private drawn = false;

  /** formatCount shows `done` and `total` (e.g. as bytes); default: the plain number. */
  constructor(
    private readonly formatCount: (n: number) => string = String,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Draws `done`/`total` with a label and, given bytes processed so far, the throughput in MB/s. */
  update(done: number, total: number, label: string, bytes?: number): void {
    if (!this.stream.isTTY) return;
    const filled = Math.round((WIDTH * done) / Math.max(total, 1));
    const seconds = (performance.now() - this.start) / 1000;
    const rate = bytes !== undefined && seconds > 0 ? ` ${(bytes / 1e6 / seconds).toFixed(1)} MB/s` : "";
    const line = `[${"#".repeat(filled)}${" ".repeat(WIDTH - filled)}] ${this.formatCount(done)}/${this.formatCount(total)}${rate} ${label}`;
    this.stream.write(`\r\x1b[2K${line.slice(0, (this.stream.columns ?? 100) - 1)}`);
    this.drawn = true;
  }

  /** Clears the bar so that what follows starts on a clean line. */
  finish(): void {
    if (this.drawn) this.stream.write("\r\x1b[2K");
    this.drawn = false;
  }
}
