"use strict";
// Edits values in place in the bytes of a GGUF file, found by their key: for tests and the fuzz harness that
// corrupt one field of a real file.

/** GGUF value type codes of the integer types, with their byte widths. */
const INT_WIDTHS = new Map([[0, 1], [1, 1], [2, 2], [3, 2], [4, 4], [5, 4], [10, 8], [11, 8]]);

/** The type code and byte offset of the scalar value stored under metadata `key` (a u64-length string + u32 type). */
function ggufValueAt(bytes, key) {
  const name = Buffer.from(key, "utf8");
  for (let at = bytes.indexOf(name); at >= 8; at = bytes.indexOf(name, at + 1)) {
    if (bytes.readBigUInt64LE(at - 8) !== BigInt(name.length)) continue; // the text inside a longer string
    return { type: bytes.readUInt32LE(at + name.length), offset: at + name.length + 4 };
  }
  throw new Error(`GGUF key ${key} not found`);
}

/** Sets the integer stored under `key` to `value`, in that key's own integer width (two's complement). */
function setGgufInt(bytes, key, value) {
  const { type, offset } = ggufValueAt(bytes, key);
  const width = INT_WIDTHS.get(type);
  if (width === undefined) throw new Error(`GGUF key ${key} holds type ${type}, not an integer`);
  const bits = BigInt.asUintN(width * 8, BigInt(value));
  for (let i = 0; i < width; i++) bytes[offset + i] = Number((bits >> BigInt(8 * i)) & 0xffn);
  return bytes;
}

/** The byte offset of item `index` of the i32/u32 array stored under `key` (after its item type and u64 count). */
function ggufArrayItemOffset(bytes, key, index) {
  const { type, offset } = ggufValueAt(bytes, key);
  if (type !== 9) throw new Error(`GGUF key ${key} is not an array`);
  return offset + 4 + 8 + 4 * index;
}

module.exports = { ggufValueAt, setGgufInt, ggufArrayItemOffset, INT_WIDTHS };
