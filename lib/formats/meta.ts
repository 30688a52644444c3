/**
 * Meta's original Llama checkpoint directories: params.json, consolidated.00.pth (one model-parallel shard) and
 * tokenizer.model (SentencePiece for Llama 2, tiktoken for Llama 3).
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { JsonConfig } from "./json-config";
import { canonicalName, checkConfig, checkTensors, dominantType, type TensorNaming } from "./llama-tensors";
import { readTorchCheckpoint } from "./pytorch";
import { tokenizerSourceFromFile } from "./tokenizer-file";
import type { ModelConfig, ModelDescriptor, RopeScaling, TensorInfo, TensorType, TokenizerSource } from "./types";

const META_TYPES: Record<string, TensorType> = { f32: "f32", f16: "f16", bf16: "bf16" };

const META_NAMING: TensorNaming = {
  layer: /^layers\.(\d+)\.(.+)$/,
  layerNames: {
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "attention_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
  },
  modelNames: {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
  },
};

/** Llama 2's default context; params.json of Meta's releases does not carry max_seq_len. */
const DEFAULT_CONTEXT_LENGTH = 4096;

/** What Meta's llama3 code applies when params.json says use_scaled_rope. */
const META_LLAMA3_SCALING: RopeScaling = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 };

/** The FFN width Meta's model code derives from params.json (to cross-check the w1 tensor). */
function metaHiddenDim(params: JsonConfig, dim: number): number {
  let hidden = Math.trunc((2 * 4 * dim) / 3);
  const multiplier = params.get("ffn_dim_multiplier");
  if (multiplier !== undefined) hidden = Math.trunc(params.number("ffn_dim_multiplier") * hidden);
  const multipleOf = params.integer("multiple_of", 256);
  return multipleOf * Math.ceil(hidden / multipleOf);
}

/** Meta keeps bos/eos in the tokenizer code; these are the ids that code uses. */
function metaSpecialTokens(tokenizer: TokenizerSource | undefined, vocabSize: number): { bosId?: number; eosIds: number[] } {
  if (tokenizer?.kind === "sentencepiece") return { bosId: 1, eosIds: [2] };
  // Llama 3: 256 special tokens follow the ranks; <|begin_of_text|>, <|end_of_text|>, ..., <|eot_id|> at +9.
  if (tokenizer?.kind === "tiktoken" && vocabSize > 256) return { bosId: vocabSize - 256, eosIds: [vocabSize - 255, vocabSize - 247] };
  return { eosIds: [] };
}

/** Builds the model descriptor of a Meta checkpoint directory. */
export function parseMetaModel(directory: string): ModelDescriptor {
  const dir = nodePath.resolve(directory);
  const params = JsonConfig.read(nodePath.join(dir, "params.json"));
  const shards = fs.readdirSync(dir).filter((f) => /^consolidated\.\d+\.pth$/.test(f)).sort();
  if (shards.length === 0) throw new ModelFormatError(`${dir}: has no consolidated.00.pth`);
  if (shards.length > 1) {
    throw new UnsupportedModelError(`${dir}: has ${shards.length} model-parallel shards (${shards.join(", ")}); only single-shard checkpoints are supported`);
  }
  const checkpoint = nodePath.join(dir, shards[0]);

  const tensors: TensorInfo[] = readTorchCheckpoint(checkpoint).map((t) => {
    // Some exports keep the precomputed rotary table; the engine computes its own.
    if (t.name === "rope.freqs") return undefined;
    const name = canonicalName(t.name, META_NAMING);
    if (!name) throw new UnsupportedModelError(`${checkpoint}: tensor ${t.name} is not part of a Llama model this library runs`);
    const type = META_TYPES[t.dtype];
    if (!type) throw new UnsupportedModelError(`${checkpoint}: tensor ${t.name} has dtype ${t.dtype}, not supported (bf16, f16, f32)`);
    return { name, file: 0, offset: t.offset, byteLength: t.byteLength, type, shape: t.shape };
  }).filter((t): t is TensorInfo => t !== undefined);

  const dim = params.integer("dim");
  const heads = params.integer("n_heads");
  const gate = tensors.find((t) => t.name === "blk.0.ffn_gate.weight");
  const embedding = tensors.find((t) => t.name === "token_embd.weight");
  const hiddenDim = gate?.shape[0] ?? 0;
  const derivedHidden = metaHiddenDim(params, dim);
  if (gate && hiddenDim !== derivedHidden) {
    throw new ModelFormatError(`${checkpoint}: tensor layers.0.feed_forward.w1.weight has ${hiddenDim} rows, but params.json implies ${derivedHidden}`);
  }
  // Llama 1's params.json says vocab_size -1: the embedding tensor decides.
  const vocabSize = params.integer("vocab_size", -1) > 0 ? params.integer("vocab_size") : (embedding?.shape[0] ?? 0);
  const config: ModelConfig = {
    architecture: "llama",
    dim,
    hiddenDim,
    layers: params.integer("n_layers"),
    heads,
    kvHeads: params.integer("n_kv_heads", heads),
    headDim: dim / heads,
    vocabSize,
    contextLength: params.integer("max_seq_len", DEFAULT_CONTEXT_LENGTH),
    normEps: params.number("norm_eps"),
    ropeTheta: params.number("rope_theta", 10000),
    ropeScaling: params.get("use_scaled_rope") === true ? META_LLAMA3_SCALING : undefined,
    ropeLayout: "interleaved",
    tiedEmbeddings: false,
  };
  checkConfig(params.path, config);
  checkTensors(checkpoint, config, tensors);

  const tokenizerPath = nodePath.join(dir, "tokenizer.model");
  const tokenizer = fs.existsSync(tokenizerPath) ? tokenizerSourceFromFile(tokenizerPath) : undefined;
  return {
    format: "meta",
    files: [checkpoint],
    config,
    tensors,
    tokenizer,
    ...metaSpecialTokens(tokenizer, vocabSize),
    weightType: dominantType(tensors),
    metadata: { ...params.fields, contextLengthSource: params.get("max_seq_len") === undefined ? "default (4096)" : "params.json" },
  };
}
