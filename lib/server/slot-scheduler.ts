/**
 * Admission control for generations: at most `slots` run at once (the model batches whatever runs into one
 * forward pass per step, so a slot taken mid-generation joins at the next step), the rest wait in a bounded FIFO
 * queue. A slot is held for exactly the life of one generation and handed to the head of the queue when freed.
 */

export class SlotScheduler {
  private running = 0;
  /** The grant callbacks of the queued callers, in arrival order. */
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly slots: number,
    readonly queueLimit: number,
  ) {}

  get activeSlots(): number {
    return this.running;
  }

  get queueDepth(): number {
    return this.waiting.length;
  }

  /** Whether `count` more generations can be taken now: into free slots, then into the queue. */
  canAdmit(count: number): boolean {
    return count <= this.slots - this.running + this.queueLimit - this.waiting.length;
  }

  /**
   * Resolves with the function that frees the slot once one is this caller's. Aborting the signal while waiting
   * leaves the queue and rejects with the signal's reason. Callers check canAdmit first: acquire never refuses.
   */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.running < this.slots) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(this.releaser());
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(grant);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next in line, so `running` only drops when nobody waits.
      if (next) next();
      else this.running--;
    };
  }
}
