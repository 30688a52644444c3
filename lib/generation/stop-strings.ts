/**
 * Stop strings over streamed text: finds the first occurrence of any stop string across token boundaries, and
 * holds back the tail of the text that could still be the start of one.
 */
export class StopStringMatcher {
  private pending = "";

  constructor(private readonly stops: readonly string[]) {}

  /**
   * Adds generated text. Returns the text now safe to emit, and whether a stop string was found (in which case
   * the emitted text ends just before it and nothing more may be pushed).
   */
  push(text: string): { emit: string; stopped: boolean; stop?: string } {
    if (this.stops.length === 0) return { emit: text, stopped: false };
    this.pending += text;
    let first = -1;
    let found: string | undefined;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) [first, found] = [at, stop];
    }
    if (found !== undefined) {
      const emit = this.pending.slice(0, first);
      this.pending = "";
      return { emit, stopped: true, stop: found };
    }
    const keep = this.partialMatchLength();
    const emit = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return { emit, stopped: false };
  }

  /** The held-back text, at the end of generation without a stop. */
  flush(): string {
    const rest = this.pending;
    this.pending = "";
    return rest;
  }

  /** The length of the longest tail of the pending text that is a proper prefix of a stop string. */
  private partialMatchLength(): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.pending.length); n > longest; n--) {
        if (this.pending.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
