/**
 * A hash map from a pair of non-negative int32s to a non-negative int32: open addressing over one typed array of
 * [a, b, value] slots (one cache line per probe). It is the lookup in SPM merging's inner loop, where a Map keyed
 * by strings or numbers was the main cost.
 */
const SLOT = 3;

export class PairTable {
  private slots = new Int32Array(0);
  private mask = 0;
  private count = 0;

  constructor() {
    this.resize(1024);
  }

  /** The value stored for (a, b), or -1. */
  get(a: number, b: number): number {
    const slots = this.slots;
    for (let slot = this.hash(a, b); ; slot = (slot + 1) & this.mask) {
      const at = slot * SLOT;
      const value = slots[at + 2];
      if (value < 0 || (slots[at] === a && slots[at + 1] === b)) return value;
    }
  }

  /** Stores `value` (≥ 0) for (a, b) unless the pair already has one. */
  setIfAbsent(a: number, b: number, value: number): void {
    if (2 * (this.count + 1) > this.mask + 1) this.resize(2 * (this.mask + 1));
    let slot = this.hash(a, b);
    for (; this.slots[slot * SLOT + 2] >= 0; slot = (slot + 1) & this.mask) {
      if (this.slots[slot * SLOT] === a && this.slots[slot * SLOT + 1] === b) return;
    }
    this.slots.set([a, b, value], slot * SLOT);
    this.count++;
  }

  private hash(a: number, b: number): number {
    let h = Math.imul(a, 0x9e3779b1) + b;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    return (h ^ (h >>> 13)) & this.mask;
  }

  private resize(capacity: number): void {
    const old = this.slots;
    this.slots = new Int32Array(capacity * SLOT).fill(-1);
    this.mask = capacity - 1;
    this.count = 0;
    for (let at = 0; at < old.length; at += SLOT) {
      if (old[at + 2] >= 0) this.setIfAbsent(old[at], old[at + 1], old[at + 2]);
    }
  }
}
