/**
 * ggml tensor element types as numbered in GGUF files: name, elements per block and bytes per block, so a
 * tensor's byte size can be checked for every type, including the ones the engine does not compute with. The one
 * table of block layouts: the engine's types are looked up here too (TENSOR_TYPE_LAYOUT).
 */
import type { TensorType } from "./types";

export interface GgmlType {
  name: string;
  blockSize: number;
  blockBytes: number;
  /** The engine's type, for the ones it computes with. */
  tensorType?: TensorType;
}

const QK_K = 256;

/** Indexed by the ggml type number; numbers ggml removed (4, 5, 31-33, 36-38) are absent. */
export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map<number, GgmlType>([
  [0, { name: "F32", blockSize: 1, blockBytes: 4, tensorType: "f32" }],
  [1, { name: "F16", blockSize: 1, blockBytes: 2, tensorType: "f16" }],
  [2, { name: "Q4_0", blockSize: 32, blockBytes: 18, tensorType: "q4_0" }],
  [3, { name: "Q4_1", blockSize: 32, blockBytes: 20, tensorType: "q4_1" }],
  [6, { name: "Q5_0", blockSize: 32, blockBytes: 22, tensorType: "q5_0" }],
  [7, { name: "Q5_1", blockSize: 32, blockBytes: 24, tensorType: "q5_1" }],
  [8, { name: "Q8_0", blockSize: 32, blockBytes: 34, tensorType: "q8_0" }],
  [9, { name: "Q8_1", blockSize: 32, blockBytes: 36 }],
  [10, { name: "Q2_K", blockSize: QK_K, blockBytes: 84, tensorType: "q2_K" }],
  [11, { name: "Q3_K", blockSize: QK_K, blockBytes: 110, tensorType: "q3_K" }],
  [12, { name: "Q4_K", blockSize: QK_K, blockBytes: 144, tensorType: "q4_K" }],
  [13, { name: "Q5_K", blockSize: QK_K, blockBytes: 176, tensorType: "q5_K" }],
  [14, { name: "Q6_K", blockSize: QK_K, blockBytes: 210, tensorType: "q6_K" }],
  [15, { name: "Q8_K", blockSize: QK_K, blockBytes: 292 }],
  [16, { name: "IQ2_XXS", blockSize: QK_K, blockBytes: 66 }],
  [17, { name: "IQ2_XS", blockSize: QK_K, blockBytes: 74 }],
  [18, { name: "IQ3_XXS", blockSize: QK_K, blockBytes: 98 }],
  [19, { name: "IQ1_S", blockSize: QK_K, blockBytes: 50 }],
  [20, { name: "IQ4_NL", blockSize: 32, blockBytes: 18, tensorType: "iq4_nl" }],
  [21, { name: "IQ3_S", blockSize: QK_K, blockBytes: 110 }],
  [22, { name: "IQ2_S", blockSize: QK_K, blockBytes: 82 }],
  [23, { name: "IQ4_XS", blockSize: QK_K, blockBytes: 136, tensorType: "iq4_xs" }],
  [24, { name: "I8", blockSize: 1, blockBytes: 1 }],
  [25, { name: "I16", blockSize: 1, blockBytes: 2 }],
  [26, { name: "I32", blockSize: 1, blockBytes: 4 }],
  [27, { name: "I64", blockSize: 1, blockBytes: 8 }],
  [28, { name: "F64", blockSize: 1, blockBytes: 8 }],
  [29, { name: "IQ1_M", blockSize: QK_K, blockBytes: 56 }],
  [30, { name: "BF16", blockSize: 1, blockBytes: 2, tensorType: "bf16" }],
  [34, { name: "TQ1_0", blockSize: QK_K, blockBytes: 54 }],
  [35, { name: "TQ2_0", blockSize: QK_K, blockBytes: 66 }],
  [39, { name: "MXFP4", blockSize: 32, blockBytes: 17 }],
]);

/** The ggml type number and block layout of each engine type. */
export const TENSOR_TYPE_LAYOUT: Readonly<Record<TensorType, GgmlType & { code: number }>> = Object.fromEntries(
  [...GGML_TYPES].filter(([, t]) => t.tensorType).map(([code, t]) => [t.tensorType, { ...t, code }]),
) as Record<TensorType, GgmlType & { code: number }>;

/** Bytes of one row of `cols` elements; undefined when `cols` is not a whole number of blocks. */
export function rowBytes(type: TensorType, cols: number): number | undefined {
  const { blockSize, blockBytes } = TENSOR_TYPE_LAYOUT[type];
  return cols % blockSize === 0 ? (cols / blockSize) * blockBytes : undefined;
}
