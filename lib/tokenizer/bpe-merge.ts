/**
 * The BPE merge loop: repeatedly merge the adjacent pair of lowest rank (leftmost first on ties) until no pair
 * merges. HF merge lists and tiktoken ranks both reduce to a table (left id, right id) → (rank, merged id).
 */

/** Priority keys pack (rank, position) into one double: rank in the high bits, so ties go to the leftmost pair. */
const POSITION_SPAN = 2 ** 32;

/** A MergeTable's arrays as they are in memory: what a serialized model stores, so that loading rebuilds nothing. */
export interface MergeTableArrays {
  lefts: Int32Array;
  rights: Int32Array;
  ranks: Int32Array;
  rankToId: Int32Array;
}

export class MergeTable {
  // An open-addressing hash table over (left, right) in typed arrays: Llama 3 has 280k merges, and a Map keyed by
  // left * vocab + right (beyond small integers) is several times slower to build and to probe.
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;
  private readonly mask: number;
  /** The token each rank merges into. */
  private readonly rankToId: Int32Array;

  /**
   * @param pairCount how many pairs will be added (sizes the table)
   * @param rankCount one more than the largest rank
   */
  constructor(pairCount: number, rankCount: number);
  /** @internal A table from arrays MergeTable.fromArrays checked. */
  constructor(arrays: MergeTableArrays);
  constructor(pairCountOrArrays: number | MergeTableArrays, rankCount = 0) {
    if (typeof pairCountOrArrays === "object") {
      ({ lefts: this.lefts, rights: this.rights, ranks: this.ranks, rankToId: this.rankToId } = pairCountOrArrays);
    } else {
      let capacity = 1024;
      while (capacity < pairCountOrArrays * 2) capacity *= 2;
      this.lefts = new Int32Array(capacity).fill(-1);
      this.rights = new Int32Array(capacity);
      this.ranks = new Int32Array(capacity);
      this.rankToId = new Int32Array(rankCount);
    }
    this.mask = this.lefts.length - 1;
  }

  /** The table's arrays (shared, not copied). */
  toArrays(): MergeTableArrays {
    return { lefts: this.lefts, rights: this.rights, ranks: this.ranks, rankToId: this.rankToId };
  }

  /**
   * A table over arrays toArrays() gave, once they are checked to be one: equal power-of-two lengths, every used
   * slot's ids below `vocabSize` and its rank one rankToId has, every merged id below `vocabSize`. Returns the
   * reason they are not, or the table. (Probing relies on at least one free slot, which the check also ensures.)
   */
  static fromArrays(arrays: MergeTableArrays, vocabSize: number): MergeTable | string {
    const { lefts, rights, ranks, rankToId } = arrays;
    const capacity = lefts.length;
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) return `the merge table's capacity ${capacity} is not a power of two`;
    if (rights.length !== capacity || ranks.length !== capacity) return "the merge table's arrays differ in length";
    let free = 0;
    for (let i = 0; i < capacity; i++) {
      const left = lefts[i];
      if (left === -1) {
        free++;
        continue;
      }
      if (left < 0 || left >= vocabSize || rights[i] < 0 || rights[i] >= vocabSize) return `merge slot ${i} holds a token id outside the vocabulary`;
      if (ranks[i] < 0 || ranks[i] >= rankToId.length) return `merge slot ${i} holds rank ${ranks[i]}, past the ${rankToId.length} ranks`;
    }
    if (free === 0) return "the merge table has no free slot";
    for (let r = 0; r < rankToId.length; r++) {
      if (rankToId[r] < 0 || rankToId[r] >= vocabSize) return `merge rank ${r} makes token ${rankToId[r]}, outside the vocabulary`;
    }
    return new MergeTable(arrays);
  }

  private slot(left: number, right: number): number {
    let i = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca77)) & this.mask;
    while (this.lefts[i] !== -1 && (this.lefts[i] !== left || this.rights[i] !== right)) i = (i + 1) & this.mask;
    return i;
  }

  /** Records that `left right` merges into `merged` with `rank`; a pair seen again takes the later rank, as HF does. */
  add(left: number, right: number, rank: number, merged: number): void {
    const i = this.slot(left, right);
    this.lefts[i] = left;
    this.rights[i] = right;
    this.ranks[i] = rank;
    this.rankToId[rank] = merged;
  }

  /** The rank of merging `left right`, or -1 when they do not merge. */
  private rank(left: number, right: number): number {
    const i = this.slot(left, right);
    return this.lefts[i] === -1 ? -1 : this.ranks[i];
  }

  /** Merges `symbols` (token ids, one per byte to start with) and appends the result to `out`. */
  apply(symbols: ArrayLike<number>, out: number[]): void {
    const n = symbols.length;
    if (n < 2) {
      if (n === 1) out.push(symbols[0]);
      return;
    }
    // A doubly linked list over positions: merging keeps the left symbol's position and unlinks the right one.
    const ids = Int32Array.from(symbols);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new MinHeap();
    for (let i = 0; i + 1 < n; i++) {
      const r = this.rank(ids[i], ids[i + 1]);
      if (r >= 0) heap.push(r * POSITION_SPAN + i);
    }
    while (heap.size > 0) {
      const key = heap.pop();
      const pos = key % POSITION_SPAN;
      const r = (key - pos) / POSITION_SPAN;
      const right = next[pos];
      // Entries go stale when a neighbour merged first; a pair still of this rank is a valid candidate though.
      if (ids[pos] < 0 || right < 0 || this.rank(ids[pos], ids[right]) !== r) continue;
      ids[pos] = this.rankToId[r];
      ids[right] = -1;
      next[pos] = next[right];
      if (next[pos] >= 0) prev[next[pos]] = pos;
      if (prev[pos] >= 0) {
        const rl = this.rank(ids[prev[pos]], ids[pos]);
        if (rl >= 0) heap.push(rl * POSITION_SPAN + prev[pos]);
      }
      if (next[pos] >= 0) {
        const rr = this.rank(ids[pos], ids[next[pos]]);
        if (rr >= 0) heap.push(rr * POSITION_SPAN + pos);
      }
    }
    for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
  }
}

/** A binary min-heap of numbers. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(value: number): void {
    const items = this.items;
    let i = items.length;
    items.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent] <= value) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = value;
  }

  pop(): number {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && items[child + 1] < items[child]) child++;
        if (items[child] >= last) break;
        items[i] = items[child];
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}
