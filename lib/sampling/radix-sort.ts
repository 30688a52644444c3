/**
 * A stable LSD radix sort of positions by 32-bit unsigned keys: three passes of 11 bits, O(n) with typed
 * arrays. Ranking a 128k vocabulary this way took ~10 ms where a comparator sort of the ids took ~110 ms and
 * the built-in sort of (key, id) packed into float64s ~30 ms. Buffers are allocated once and reused.
 */
const DIGIT_BITS = 11;
const BUCKETS = 1 << DIGIT_BITS;

export class RadixSorter {
  /** The caller writes the keys of positions 0..n-1 here before sort(n). */
  readonly keys: Uint32Array;
  /** The same buffer as float32: non-negative floats sort like their bit patterns, so this sorts them. */
  readonly floatKeys: Float32Array;
  private readonly keysB: Uint32Array;
  private readonly order: Int32Array;
  private readonly orderB: Int32Array;
  private readonly counts = new Int32Array(BUCKETS);

  constructor(capacity: number) {
    this.keys = new Uint32Array(capacity);
    this.floatKeys = new Float32Array(this.keys.buffer);
    this.keysB = new Uint32Array(capacity);
    this.order = new Int32Array(capacity);
    this.orderB = new Int32Array(capacity);
  }

  /** Positions 0..n-1 by ascending key, equal keys in position order. The result is scratch: read it before the next sort. */
  sort(n: number): Int32Array {
    const counts = this.counts;
    let srcKeys = this.keys;
    let dstKeys = this.keysB;
    let srcOrder = this.order;
    let dstOrder = this.orderB;
    for (let i = 0; i < n; i++) srcOrder[i] = i;
    for (let shift = 0; shift < 32; shift += DIGIT_BITS) {
      counts.fill(0);
      for (let i = 0; i < n; i++) counts[(srcKeys[i] >>> shift) & (BUCKETS - 1)]++;
      let start = 0;
      for (let b = 0; b < BUCKETS; b++) {
        const count = counts[b];
        counts[b] = start;
        start += count;
      }
      for (let i = 0; i < n; i++) {
        const key = srcKeys[i];
        const to = counts[(key >>> shift) & (BUCKETS - 1)]++;
        dstKeys[to] = key;
        dstOrder[to] = srcOrder[i];
      }
      const keys = srcKeys;
      srcKeys = dstKeys;
      dstKeys = keys;
      const order = srcOrder;
      srcOrder = dstOrder;
      dstOrder = order;
    }
    return srcOrder;
  }
}
