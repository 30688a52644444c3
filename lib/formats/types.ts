/**
 * What a format parser produces: the model's configuration, where each weight lives on disk, and where its
 * tokenizer comes from. Parsers read headers only; the native side maps the files and computes.
 */

import type { KvCacheType } from "../native/binding";
import type { TokenizerTables } from "../tokenizer/tables";

/**
 * Weight element types the engine computes with: floats, and ggml's block-quantized types (a row is a run of
 * blocks; GGML_TYPES in ./ggml-types has each type's block size and bytes, see tensorTypeLayout()).
 */
export type TensorType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q2_K" | "q3_K" | "q4_K" | "q5_K" | "q6_K" | "iq4_nl" | "iq4_xs";

/**
 * One weight tensor, stored contiguously in row-major order.
 * `name` is canonical (GGUF naming, whatever the source format):
 *   token_embd.weight [vocab, dim]          output_norm.weight [dim]        output.weight [vocab, dim] (absent when tied)
 *   blk.N.attn_norm.weight [dim]            blk.N.ffn_norm.weight [dim]
 *   blk.N.attn_q.weight [heads*headDim, dim]    blk.N.attn_k.weight [kvHeads*headDim, dim]
 *   blk.N.attn_v.weight [kvHeads*headDim, dim]  blk.N.attn_output.weight [dim, heads*headDim]
 *   blk.N.ffn_gate.weight [hidden, dim]     blk.N.ffn_up.weight [hidden, dim]   blk.N.ffn_down.weight [dim, hidden]
 * `shape` is outermost first (PyTorch order: [rows, cols]); GGUF's ne[] order is reversed by its parser.
 */
export interface TensorInfo {
  name: string;
  /** Index into ModelDescriptor.files. */
  file: number;
  /** Absolute byte offset of the first element in that file. */
  offset: number;
  /** Bytes the tensor occupies (rows × blocks per row × block bytes). */
  byteLength: number;
  type: TensorType;
  shape: number[];
}

export type RopeScaling =
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalContextLength: number }
  | { type: "linear"; factor: number };

export interface ModelConfig {
  architecture: "llama";
  dim: number;
  hiddenDim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Training context length from the file (the default context size). */
  contextLength: number;
  normEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  /**
   * Per-frequency divisors (headDim/2 of them) applied after ropeTheta, as llama.cpp's rope_freqs.weight tensor
   * stores Llama 3.1 scaling in GGUF files. Absent when the scaling is described by ropeScaling (or there is none).
   */
  ropeFreqFactors?: Float32Array;
  /**
   * How q/k pairs are rotated: "interleaved" pairs (2i, 2i+1) as in Meta checkpoints, GGUF and llama2.c;
   * "half" pairs (i, i + headDim/2) as in HF transformers checkpoints (rotate_half).
   */
  ropeLayout: "interleaved" | "half";
  tiedEmbeddings: boolean;
}

/** Where the tokenizer comes from; resolved into a Tokenizer by lib/tokenizer. */
export type TokenizerSource =
  | {
      kind: "gguf";
      /** The GGUF file, named by every error about its tokenizer keys. */
      path: string;
      metadata: Map<string, unknown>;
      /** readGguf's metadataTypes, to write the keys back. */
      metadataTypes?: Map<string, string>;
    }
  | { kind: "sentencepiece"; path: string }
  | { kind: "llama2c"; path: string }
  | { kind: "hf-json"; path: string; configPath?: string }
  | { kind: "tiktoken"; path: string }
  /** The tables a serialized model carries (lib/formats/serialized.ts); `path` is that model's file. */
  | { kind: "serialized"; path: string; tables: TokenizerTables };

export type ModelFormat = "gguf" | "hf" | "meta" | "llama2c" | "serialized";

export interface ModelDescriptor {
  format: ModelFormat;
  /** Absolute paths of the files holding tensor data (TensorInfo.file indexes this). */
  files: string[];
  config: ModelConfig;
  tensors: TensorInfo[];
  /** Undefined when the format keeps the tokenizer apart and none was found or given. */
  tokenizer?: TokenizerSource;
  /** Token ids from the model files (config.json / generation_config.json / GGUF keys), when present. */
  bosId?: number;
  eosIds: number[];
  /** The dominant weight type, for model.info. */
  weightType: TensorType;
  /** Format-specific metadata worth showing (GGUF key/values, HF config), for model.info and tooling. */
  metadata: Record<string, unknown>;
  /** The chat template a serialized model carries in its manifest (other formats keep theirs in their files). */
  chatTemplate?: { text: string; origin: string };
  /** What a serialized model was prepared for: its backend and default KV options. */
  prepared?: PreparedFor;
}

/** What a serialized model was prepared for: the backend it ran on, and the KV options it loads with by default. */
export interface PreparedFor {
  backend: "cpu" | "cuda";
  kvCacheType: KvCacheType;
  contextSize: number;
}
