/**
 * The work queue of SPM merging: candidate merges of adjacent symbols, best first (highest score; on ties the
 * leftmost), as in SentencePiece and llama.cpp. Entries live in typed arrays that grow as needed and are reused
 * from one chunk of text to the next, so merging allocates next to nothing.
 */
import { withCapacity } from "./typed-array";

export class BigramQueue {
  left: Int32Array = new Int32Array(64);
  right: Int32Array = new Int32Array(64);
  /** Length of the merged text in UTF-16 units; a popped entry whose symbols no longer add up to it is stale. */
  size: Int32Array = new Int32Array(64);
  private score: Float64Array = new Float64Array(64);
  /** Binary max-heap of entry indexes. */
  private heap: Int32Array = new Int32Array(64);
  private heapLength = 0;
  private entries = 0;

  /** Empties the queue for the next chunk. */
  clear(): void {
    this.heapLength = 0;
    this.entries = 0;
  }

  get length(): number {
    return this.heapLength;
  }

  push(score: number, left: number, right: number, size: number): void {
    if (this.entries === this.heap.length) this.grow();
    const e = this.entries++;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.size[e] = size;
    let i = this.heapLength++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, this.heap[parent])) break;
      this.heap[i] = this.heap[parent];
      i = parent;
    }
    this.heap[i] = e;
  }

  /** Removes the best entry and returns its index (read left/right/size with it). The queue must not be empty. */
  pop(): number {
    const top = this.heap[0];
    const last = this.heap[--this.heapLength];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.heapLength) break;
      if (child + 1 < this.heapLength && this.before(this.heap[child + 1], this.heap[child])) child++;
      if (!this.before(this.heap[child], last)) break;
      this.heap[i] = this.heap[child];
      i = child;
    }
    this.heap[i] = last;
    return top;
  }

  private before(a: number, b: number): boolean {
    return this.score[a] > this.score[b] || (this.score[a] === this.score[b] && this.left[a] < this.left[b]);
  }

  private grow(): void {
    const capacity = 2 * this.heap.length;
    this.left = withCapacity(this.left, capacity);
    this.right = withCapacity(this.right, capacity);
    this.size = withCapacity(this.size, capacity);
    this.heap = withCapacity(this.heap, capacity);
    this.score = withCapacity(this.score, capacity);
  }
}
