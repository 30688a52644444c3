/** Rows of any engine type ⇄ f32: floats are converted here, block-quantized types by the engine's quantizers. */
import type { TensorType } from "../formats/types";
import { dequantizeRows, quantizeRows, type QuantizedType } from "../native/quant";
import { decodeFloats, encodeFloats, type FloatType } from "./float-codec";

const isFloat = (type: TensorType): type is FloatType => type === "f32" || type === "f16" || type === "bf16";

/** rows × cols values stored as `type` → f32. */
export function decodeRows(type: TensorType, bytes: Uint8Array, rows: number, cols: number): Promise<Float32Array> {
  if (isFloat(type)) return Promise.resolve(decodeFloats(type, bytes, rows * cols));
  return dequantizeRows(type as QuantizedType, bytes, rows, cols);
}

/** rows × cols f32 values → `type` bytes (cols must be a whole number of the type's blocks). */
export function encodeRows(type: TensorType, values: Float32Array, rows: number, cols: number): Promise<Uint8Array> {
  if (isFloat(type)) return Promise.resolve(encodeFloats(type, values));
  return quantizeRows(type as QuantizedType, values, rows, cols);
}
