/**
 * Which type each tensor gets, following llama.cpp's llama-quantize (llama_tensor_get_type) for the types we have:
 * 1-D tensors (norms, rope_freqs) stay f32; output.weight (or token_embd when the embeddings are tied) goes to q6_K
 * under any quantized type but q8_0; the q4_K_M mix puts attn_v and ffn_down of the "use more bits" layers at q6_K;
 * a row length that is not a whole number of blocks falls back to a type whose blocks fit.
 */
import { TENSOR_TYPE_LAYOUT } from "../formats/ggml-types";
import type { TensorType } from "../formats/types";

export const QUANTIZE_TYPES = ["q8_0", "q4_0", "q4_K", "q6_K", "f16", "bf16", "f32"] as const;
export type QuantizeType = (typeof QUANTIZE_TYPES)[number];
export const QUANTIZE_MIXES = ["q4_K_M"] as const;
export type QuantizeMix = (typeof QUANTIZE_MIXES)[number];

/** The base type of each mix. */
const MIX_BASE: Record<QuantizeMix, QuantizeType> = { q4_K_M: "q4_K" };

/**
 * general.file_type: llama.cpp's LLAMA_FTYPE. Plain q4_K is written as Q4_K_S (14), its closest llama.cpp mix
 * (Q4_K_S also raises a few attn_v/ffn_down tensors to q5_K, a type we do not have).
 */
const FILE_TYPES: Record<QuantizeType | QuantizeMix, number> = {
  f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_K: 14, q4_K_M: 15, q6_K: 18, bf16: 32,
};

export function fileType(type: QuantizeType, mix?: QuantizeMix): number {
  return FILE_TYPES[mix ?? type];
}

export function mixBase(mix: QuantizeMix): QuantizeType {
  return MIX_BASE[mix];
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
  tiedEmbeddings: boolean;
}

/** The type a tensor is written as under `type` (the mix's base type when `mix` is set). */
export function chooseTensorType(t: TypeRuleInput, type: QuantizeType, mix?: QuantizeMix): TensorTypeChoice {
  if (t.shape.length < 2) return { type: "f32" };
  const base: TensorType = mix ? MIX_BASE[mix] : type;
  if (!isQuantized(base)) return { type: base };
  const cols = t.shape[t.shape.length - 1];
  const wanted = ruleType(t, base, cols, mix);
  if (fits(wanted, cols)) return { type: wanted };
  // llama.cpp falls back q4_K → q5_0 and q6_K → q8_0; without q5_0, q8_0 serves both. f16 when 32 does not fit.
  return { type: fits("q8_0", cols) ? "q8_0" : "f16", fallbackFrom: wanted };
}

function ruleType(t: TypeRuleInput, base: TensorType, cols: number, mix: QuantizeMix | undefined): TensorType {
  const isOutput = t.name === "output.weight" || (t.tiedEmbeddings && t.name === "token_embd.weight");
  if (isOutput) {
    if (!fits(base, cols)) return "q8_0";
    return base === "q8_0" ? "q8_0" : "q6_K";
  }
  const layer = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(t.name);
  if (mix === "q4_K_M" && layer && useMoreBits(Number(layer[1]), t.layers)) return "q6_K";
  return base;
}
