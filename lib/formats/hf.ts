/**
 * Hugging Face transformers Llama directories: config.json (+ generation_config.json), model.safetensors or
 * shards listed in model.safetensors.index.json, and tokenizer.json or tokenizer.model.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { JsonConfig } from "./json-config";
import { canonicalName, checkConfig, checkTensors, dominantType, type TensorNaming } from "./llama-tensors";
import { readSafetensors } from "./safetensors";
import { tokenizerSourceFromFile } from "./tokenizer-file";
import type { ModelConfig, ModelDescriptor, RopeScaling, TensorInfo, TensorType, TokenizerSource } from "./types";

const HF_DTYPES: Record<string, TensorType> = { F32: "f32", F16: "f16", BF16: "bf16" };

const HF_NAMING: TensorNaming = {
  layer: /^model\.layers\.(\d+)\.(.+)$/,
  layerNames: {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
  },
  modelNames: {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  },
};

/** rope_scaling (classic) or rope_parameters (transformers 5) → our RopeScaling. */
function hfRopeScaling(config: JsonConfig, params: Record<string, unknown> | undefined): RopeScaling | undefined {
  if (!params) return undefined;
  const scaling = new JsonConfig(config.path, params);
  const type = scaling.get("rope_type") ?? scaling.get("type");
  switch (type) {
    case undefined:
    case "default":
      return undefined;
    case "linear":
      return { type: "linear", factor: scaling.number("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: scaling.number("factor"),
        lowFreqFactor: scaling.number("low_freq_factor"),
        highFreqFactor: scaling.number("high_freq_factor"),
        originalContextLength: scaling.integer("original_max_position_embeddings"),
      };
    default:
      throw new UnsupportedModelError(`${config.path}: RoPE scaling type ${JSON.stringify(type)} is not supported (llama3, linear)`);
  }
}

function objectField(config: JsonConfig, key: string): Record<string, unknown> | undefined {
  const v = config.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "object" || Array.isArray(v) || v === null) throw new ModelFormatError(`${config.path}: "${key}" is not an object`);
  return v as Record<string, unknown>;
}

function hfModelConfig(config: JsonConfig): ModelConfig {
  const modelType = config.get("model_type");
  const architectures = config.get("architectures");
  const isLlama = modelType === "llama" || (modelType === undefined && Array.isArray(architectures) && architectures.includes("LlamaForCausalLM"));
  if (!isLlama) {
    const what = modelType !== undefined ? `model_type ${JSON.stringify(modelType)}` : `architectures ${JSON.stringify(architectures)}`;
    throw new UnsupportedModelError(`${config.path}: ${what} is not supported (only llama / LlamaForCausalLM)`);
  }
  for (const key of ["attention_bias", "mlp_bias"]) {
    if (config.get(key) === true) throw new UnsupportedModelError(`${config.path}: ${key} is true; Llama models with biases are not supported`);
  }
  const act = config.get("hidden_act");
  if (act !== undefined && act !== "silu") throw new UnsupportedModelError(`${config.path}: hidden_act ${JSON.stringify(act)} is not supported (silu)`);

  const dim = config.integer("hidden_size");
  const heads = config.integer("num_attention_heads");
  const ropeParameters = objectField(config, "rope_parameters");
  const ropeTheta = config.number("rope_theta", (ropeParameters?.rope_theta as number | undefined) ?? 10000);
  return {
    architecture: "llama",
    dim,
    hiddenDim: config.integer("intermediate_size"),
    layers: config.integer("num_hidden_layers"),
    heads,
    kvHeads: config.integer("num_key_value_heads", heads),
    headDim: config.integer("head_dim", dim / heads),
    vocabSize: config.integer("vocab_size"),
    contextLength: config.integer("max_position_embeddings"),
    normEps: config.number("rms_norm_eps"),
    ropeTheta,
    ropeScaling: hfRopeScaling(config, objectField(config, "rope_scaling") ?? ropeParameters),
    ropeLayout: "half",
    tiedEmbeddings: config.get("tie_word_embeddings") === true,
  };
}

/** The safetensors files of the directory: the shards named by the index, or model.safetensors. */
function weightFiles(dir: string): string[] {
  const indexPath = nodePath.join(dir, "model.safetensors.index.json");
  if (!fs.existsSync(indexPath)) {
    const single = nodePath.join(dir, "model.safetensors");
    if (!fs.existsSync(single)) {
      throw new ModelFormatError(`${dir}: has neither model.safetensors nor model.safetensors.index.json (only safetensors weights are read)`);
    }
    return [single];
  }
  const index = JsonConfig.read(indexPath);
  const weightMap = index.get("weight_map");
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelFormatError(`${indexPath}: "weight_map" is missing or not an object`);
  }
  const shards = [...new Set(Object.values(weightMap))];
  for (const shard of shards) {
    if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
      throw new ModelFormatError(`${indexPath}: weight_map names ${JSON.stringify(shard)}, not a file name in the directory`);
    }
    if (!fs.existsSync(nodePath.join(dir, shard))) throw new ModelFormatError(`${indexPath}: shard ${shard} is missing`);
  }
  return shards.map((shard) => nodePath.join(dir, shard as string));
}

function hfTokenizer(dir: string): TokenizerSource | undefined {
  for (const name of ["tokenizer.json", "tokenizer.model"]) {
    const path = nodePath.join(dir, name);
    if (fs.existsSync(path)) return tokenizerSourceFromFile(path);
  }
  return undefined;
}

/** Builds the model descriptor of an HF Llama directory (BF16/F16/F32 safetensors). */
export function parseHfModel(directory: string): ModelDescriptor {
  const dir = nodePath.resolve(directory);
  const config = JsonConfig.read(nodePath.join(dir, "config.json"));
  const modelConfig = hfModelConfig(config);
  checkConfig(config.path, modelConfig);

  const files = weightFiles(dir);
  const tensors: TensorInfo[] = [];
  files.forEach((path, file) => {
    for (const t of readSafetensors(path).tensors) {
      if (t.name.endsWith(".rotary_emb.inv_freq")) continue; // a recomputed buffer some exports include
      const name = canonicalName(t.name, HF_NAMING);
      if (name === "output.weight" && modelConfig.tiedEmbeddings) continue; // a saved copy of the tied embedding
      if (!name) throw new UnsupportedModelError(`${path}: tensor ${t.name} is not part of a Llama model this library runs`);
      const type = HF_DTYPES[t.dtype];
      if (!type) throw new UnsupportedModelError(`${path}: tensor ${t.name} has dtype ${t.dtype}, not supported (BF16, F16, F32)`);
      tensors.push({ name, file, offset: t.offset, byteLength: t.byteLength, type, shape: t.shape });
    }
  });
  checkTensors(dir, modelConfig, tensors);

  const generationPath = nodePath.join(dir, "generation_config.json");
  const generation = fs.existsSync(generationPath) ? JsonConfig.read(generationPath) : undefined;
  const generationEos = generation?.tokenIds("eos_token_id") ?? [];
  const bos = generation?.tokenIds("bos_token_id")[0] ?? config.tokenIds("bos_token_id")[0];
  return {
    format: "hf",
    files,
    config: modelConfig,
    tensors,
    tokenizer: hfTokenizer(dir),
    bosId: bos,
    eosIds: generationEos.length > 0 ? generationEos : config.tokenIds("eos_token_id"),
    weightType: dominantType(tensors),
    metadata: config.fields,
  };
}
