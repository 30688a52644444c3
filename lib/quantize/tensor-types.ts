/**
 * Which type each tensor gets, following llama.cpp's llama-quantize (llama_tensor_get_type in src/llama-quant.cpp)
 * without an importance matrix, for the file types whose block types we have: 1-D tensors (norms, rope_freqs) stay
 * f32; output.weight (or token_embd when the embeddings are tied) goes to q6_K under any quantized type but q8_0;
 * the _S and _M mixes raise attn_v and ffn_down of some layers; a row length that is not a whole number of blocks
 * falls back to a type whose blocks fit.
 */
import { TENSOR_TYPE_LAYOUT } from "../formats/ggml-types";
import { llamaFileTypeCode } from "../formats/llama-file-types";
import type { TensorType } from "../formats/types";

/** The llama.cpp file types quantize writes, by llama-quantize's names, with the block type of their bulk. */
const FILE_TYPE_BASES = {
  Q4_0: "q4_0",
  Q4_1: "q4_1",
  Q5_0: "q5_0",
  Q5_1: "q5_1",
  Q8_0: "q8_0",
  Q2_K: "q2_K",
  Q3_K_S: "q3_K",
  Q3_K_M: "q3_K",
  Q3_K_L: "q3_K",
  Q4_K_S: "q4_K",
  Q4_K_M: "q4_K",
  Q5_K_S: "q5_K",
  Q5_K_M: "q5_K",
  Q6_K: "q6_K",
  IQ4_NL: "iq4_nl",
  IQ4_XS: "iq4_xs",
  F16: "f16",
  BF16: "bf16",
  F32: "f32",
} as const satisfies Record<string, TensorType>;
export type QuantizeFileType = keyof typeof FILE_TYPE_BASES;

/**
 * The engine's type names, each writing the file type of that type alone: plain q3_K, q4_K and q5_K are the _S
 * mixes (llama-quantize's own Q3_K / Q4_K / Q5_K aliases mean _M; here the others are asked for by name or with
 * --mix).
 */
const TYPE_NAME_FILE_TYPES = {
  q8_0: "Q8_0",
  q4_0: "Q4_0",
  q4_1: "Q4_1",
  q5_0: "Q5_0",
  q5_1: "Q5_1",
  q2_K: "Q2_K",
  q3_K: "Q3_K_S",
  q4_K: "Q4_K_S",
  q5_K: "Q5_K_S",
  q6_K: "Q6_K",
  iq4_nl: "IQ4_NL",
  iq4_xs: "IQ4_XS",
  f16: "F16",
  bf16: "BF16",
  f32: "F32",
} as const satisfies Record<string, QuantizeFileType>;

/** The mixes (with --type their base type): llama-quantize's file types, lower-cased as the block names are. */
const MIX_FILE_TYPES = {
  q3_K_S: "Q3_K_S",
  q3_K_M: "Q3_K_M",
  q3_K_L: "Q3_K_L",
  q4_K_S: "Q4_K_S",
  q4_K_M: "Q4_K_M",
  q5_K_S: "Q5_K_S",
  q5_K_M: "Q5_K_M",
} as const satisfies Record<string, QuantizeFileType>;

export const QUANTIZE_TYPES = [
  ...(Object.keys(TYPE_NAME_FILE_TYPES) as (keyof typeof TYPE_NAME_FILE_TYPES)[]),
  ...(Object.keys(FILE_TYPE_BASES) as QuantizeFileType[]),
] as const;
export type QuantizeType = (typeof QUANTIZE_TYPES)[number];
export const QUANTIZE_MIXES = Object.keys(MIX_FILE_TYPES) as (keyof typeof MIX_FILE_TYPES)[];
export type QuantizeMix = keyof typeof MIX_FILE_TYPES;

/** The llama.cpp file type that `type` (with `mix`) writes. */
export function quantizeFileType(type: QuantizeType, mix?: QuantizeMix): QuantizeFileType {
  if (mix) return MIX_FILE_TYPES[mix];
  return type in TYPE_NAME_FILE_TYPES ? TYPE_NAME_FILE_TYPES[type as keyof typeof TYPE_NAME_FILE_TYPES] : (type as QuantizeFileType);
}

/** general.file_type: llama.cpp's LLAMA_FTYPE. */
export function fileType(type: QuantizeType, mix?: QuantizeMix): number {
  return llamaFileTypeCode(quantizeFileType(type, mix))!;
}

/** The --type a mix goes with. */
export function mixBase(mix: QuantizeMix): TensorType {
  return FILE_TYPE_BASES[MIX_FILE_TYPES[mix]];
}

const isQuantized = (t: TensorType) => TENSOR_TYPE_LAYOUT[t].blockSize > 1;
const fits = (t: TensorType, cols: number) => cols % TENSOR_TYPE_LAYOUT[t].blockSize === 0;

/** llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer in between. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.trunc(layers / 8);
  return layer < eighth || layer >= Math.trunc((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

export interface TensorTypeChoice {
  type: TensorType;
  /** Set when the rules' type does not fit the row length and `type` is the fallback. */
  fallbackFrom?: TensorType;
}

export interface TypeRuleInput {
  name: string;
  /** Outermost first: [rows, cols] or [n]. */
  shape: number[];
  layers: number;
  heads: number;
  kvHeads: number;
  tiedEmbeddings: boolean;
}

/** The type a tensor is written as under `type` (with `mix`, the mix's file type). */
export function chooseTensorType(t: TypeRuleInput, type: QuantizeType, mix?: QuantizeMix): TensorTypeChoice {
  if (t.shape.length < 2) return { type: "f32" };
  const fileType = quantizeFileType(type, mix);
  const base: TensorType = FILE_TYPE_BASES[fileType];
  if (!isQuantized(base)) return { type: base };
  const cols = t.shape[t.shape.length - 1];
  const wanted = ruleType(t, fileType, base, cols);
  if (fits(wanted, cols)) return { type: wanted };
  const fallback = FALLBACKS[wanted];
  return { type: fallback && fits(fallback, cols) ? fallback : "f16", fallbackFrom: wanted };
}

/**
 * llama.cpp's types for rows that are not whole 256-value blocks (the 32-value types go to f16, as does a
 * fallback that does not fit either).
 */
const FALLBACKS: Partial<Record<TensorType, TensorType>> = { q2_K: "q4_0", q3_K: "q4_0", q4_K: "q5_0", q5_K: "q5_1", q6_K: "q8_0", iq4_xs: "iq4_nl" };

/** llama.cpp's LLM_TYPE_70B for the llama architecture: 80 layers with grouped-query attention. */
const is70B = (t: TypeRuleInput) => t.layers === 80 && t.heads !== t.kvHeads;

/** attn_output of the file types that raise it. */
const ATTN_OUTPUT_TYPES: Partial<Record<QuantizeFileType, TensorType>> = { Q2_K: "q3_K", Q3_K_M: "q4_K", Q3_K_L: "q5_K" };

function ruleType(t: TypeRuleInput, fileType: QuantizeFileType, base: TensorType, cols: number): TensorType {
  const isOutput = t.name === "output.weight" || (t.tiedEmbeddings && t.name === "token_embd.weight");
  if (isOutput) {
    if (!fits(base, cols)) return "q8_0";
    return base === "q8_0" ? "q8_0" : "q6_K";
  }
  const tensor = /^blk\.(\d+)\.(attn_v|ffn_down|attn_output)\.weight$/.exec(t.name);
  if (!tensor) return base;
  const layer = Number(tensor[1]);
  const medium = fileType === "Q4_K_M" || fileType === "Q5_K_M";
  const iq4 = fileType === "IQ4_NL" || fileType === "IQ4_XS";
  if (tensor[2] === "attn_v") {
    let type = base;
    if (fileType === "Q2_K") type = Math.trunc(t.heads / t.kvHeads) >= 4 ? "q4_K" : "q3_K";
    else if (fileType === "Q3_K_M") type = layer < 2 ? "q5_K" : "q4_K";
    else if (fileType === "Q3_K_L") type = "q5_K";
    else if (iq4 && Math.trunc(t.heads / t.kvHeads) >= 4) type = "q5_K";
    else if (medium && useMoreBits(layer, t.layers)) type = "q6_K";
    else if (fileType === "Q4_K_S" && layer < 4) type = "q5_K";
    // In a 70B, 8 heads share each attn_v row: more bits there cost little.
    if (is70B(t) && (type === "q3_K" || type === "q4_K")) type = "q5_K";
    return type;
  }
  if (tensor[2] === "attn_output") return ATTN_OUTPUT_TYPES[fileType] ?? base;
  if (fileType === "Q2_K") return "q3_K";
  if (fileType === "Q3_K_M") return layer < Math.trunc(t.layers / 16) ? "q5_K" : "q4_K";
  if (fileType === "Q3_K_L") return "q5_K";
  if (medium && useMoreBits(layer, t.layers)) return "q6_K";
  if ((fileType === "Q4_K_S" || iq4) && layer < Math.trunc(t.layers / 8)) return "q5_K";
  return base;
}
