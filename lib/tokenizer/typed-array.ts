/** A copy of `a` in a larger array (for the growable buffers of SPM merging). */
export function withCapacity<T extends Int32Array | Float64Array>(a: T, capacity: number): T {
  const b = new (a.constructor as new (n: number) => T)(capacity);
  b.set(a);
  return b;
}
