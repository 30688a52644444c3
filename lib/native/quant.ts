/**
 * The engine's block quantizers (ggml's reference algorithms, so the bytes match llama-quantize's), run on a
 * worker thread. Typed wrappers over the addon's quantize / dequantize.
 */
import { UnsupportedModelError } from "../errors";
import type { TensorType } from "../formats/types";
import { loadBinding, type NativeBinding } from "./binding";
import { engineTypeCode, toTypedError } from "./engine";

export type QuantizedType = Exclude<TensorType, "f32" | "f16" | "bf16">;

function binding(fn: "quantize" | "dequantize"): NativeBinding {
  const b = loadBinding();
  if (typeof b[fn] !== "function") throw new UnsupportedModelError(`this build of the native addon has no ${fn}(); rebuild it (npm run build:native)`);
  return b;
}

/** rows × cols f32 values → `type` blocks, row after row. */
export async function quantizeRows(type: QuantizedType, src: Float32Array, rows: number, cols: number): Promise<Uint8Array> {
  try {
    return await binding("quantize").quantize(engineTypeCode(type, "quantizeRows: type"), src, rows, cols);
  } catch (err) {
    throw toTypedError(err);
  }
}

/** rows × cols values stored as `type` blocks → f32. */
export async function dequantizeRows(type: QuantizedType, src: Uint8Array, rows: number, cols: number): Promise<Float32Array> {
  try {
    return await binding("dequantize").dequantize(engineTypeCode(type, "dequantizeRows: type"), src, rows, cols);
  } catch (err) {
    throw toTypedError(err);
  }
}
