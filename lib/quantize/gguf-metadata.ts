/**
 * The GGUF metadata of a converted model: general.* and llama.* keys in llama.cpp's spelling, and the tokenizer.*
 * keys. A GGUF source has all its keys copied (as llama-quantize does); other formats have them built from the
 * model config and the tokenizer file, read with the library's own vocab readers.
 */
import * as nodePath from "node:path";
import { ChatTemplate } from "../chat/template";
import { findChatTemplate } from "../chat/template-source";
import { InvalidArgumentError, ModelFormatError, UnsupportedModelError } from "../errors";
import type { GgufValue } from "../formats/gguf-writer";
import type { ModelConfig, ModelDescriptor, TokenizerSource } from "../formats/types";
import { loadHfBpe } from "../tokenizer/bpe-hf";
import { SpmTokenizer } from "../tokenizer/spm";
import { SpmTokenType, type SpmVocab } from "../tokenizer/spm-vocab";
import { tokenizerFromTables } from "../tokenizer/tables";
import { readLlama2cVocab } from "../tokenizer/vocab-llama2c";
import { readSentencePieceVocab } from "../tokenizer/vocab-sentencepiece";

export type GgufMetadata = [string, GgufValue][];

/** general.quantization_version: the ggml block format revision (GGML_QNT_VERSION). */
const QUANTIZATION_VERSION = 2;
/** Keys the writer sets itself rather than copies. */
const SET_BY_WRITER = new Set(["general.file_type", "general.quantization_version", "general.alignment"]);

const u32 = (value: number): GgufValue => ({ type: "u32", value });
const f32 = (value: number): GgufValue => ({ type: "f32", value });
const str = (value: string): GgufValue => ({ type: "string", value });
const bool = (value: boolean): GgufValue => ({ type: "bool", value });

/** Every key of a GGUF source, as stored there, except the ones the writer sets. */
function copiedKeys(metadata: Map<string, unknown>, types: Map<string, string>, keep: (key: string) => boolean): GgufMetadata {
  const out: GgufMetadata = [];
  for (const [key, value] of metadata) {
    if (SET_BY_WRITER.has(key) || !keep(key)) continue;
    const type = types.get(key);
    if (type === undefined) throw new ModelFormatError(`GGUF metadata ${key}: unknown value type`);
    const [kind, itemType] = type.split(":");
    if (kind !== "array") out.push([key, { type: kind, value } as GgufValue]);
    else if (itemType !== "array") out.push([key, { type: "array", itemType, value } as GgufValue]);
    else throw new UnsupportedModelError(`GGUF metadata ${key}: nested arrays cannot be written back`);
  }
  return out;
}

function llamaKeys(c: ModelConfig): GgufMetadata {
  const keys: GgufMetadata = [
    ["llama.vocab_size", u32(c.vocabSize)],
    ["llama.context_length", u32(c.contextLength)],
    ["llama.embedding_length", u32(c.dim)],
    ["llama.block_count", u32(c.layers)],
    ["llama.feed_forward_length", u32(c.hiddenDim)],
    ["llama.rope.dimension_count", u32(c.headDim)],
    ["llama.rope.freq_base", f32(c.ropeTheta)],
    ["llama.attention.head_count", u32(c.heads)],
    ["llama.attention.head_count_kv", u32(c.kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", f32(c.normEps)],
  ];
  if (c.headDim * c.heads !== c.dim) keys.push(["llama.attention.key_length", u32(c.headDim)], ["llama.attention.value_length", u32(c.headDim)]);
  // Llama 3.1 scaling travels as the rope_freqs.weight tensor instead (see quantize.ts), as llama.cpp writes it.
  if (c.ropeScaling?.type === "linear") keys.push(["llama.rope.scaling.type", str("linear")], ["llama.rope.scaling.factor", f32(c.ropeScaling.factor)]);
  return keys;
}

/** Pads a vocabulary to the embedding's row count, as llama.cpp's converters do ("[PADn]", unused). */
function padded<T>(items: ArrayLike<T>, vocabSize: number, pad: (id: number) => T, origin: string): T[] {
  if (items.length > vocabSize) throw new ModelFormatError(`${origin}: ${items.length} tokens, more than the model's ${vocabSize} embedding rows`);
  return Array.from({ length: vocabSize }, (_, id) => (id < items.length ? items[id] : pad(id)));
}

function idKey(key: string, id: number | undefined): GgufMetadata {
  return id === undefined ? [] : [[key, u32(id)]];
}

function spmKeys(v: SpmVocab, vocabSize: number, bosId: number | undefined, eosId: number | undefined): GgufMetadata {
  return [
    ["tokenizer.ggml.model", str("llama")],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: padded(v.pieces, vocabSize, (id) => `[PAD${id}]`, v.origin) }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: padded(v.scores, vocabSize, () => -1000, v.origin) }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: padded(v.types, vocabSize, () => SpmTokenType.Unused, v.origin) }],
    ...idKey("tokenizer.ggml.bos_token_id", bosId ?? v.bosId),
    ...idKey("tokenizer.ggml.eos_token_id", eosId ?? v.eosIds[0]),
    ...idKey("tokenizer.ggml.unknown_token_id", v.unkId),
    ["tokenizer.ggml.add_bos_token", bool(v.addBos)],
    ["tokenizer.ggml.add_space_prefix", bool(v.addDummyPrefix)],
  ];
}

async function hfBpeKeys(path: string, configPath: string | undefined, vocabSize: number, bosId: number | undefined, eosId: number | undefined): Promise<GgufMetadata> {
  const { spec, tables } = await loadHfBpe(path, configPath);
  const addedById = new Map(tables.added.map((t) => [t.id, t]));
  // llama.cpp token types: 1 normal, 3 control (special added tokens), 4 user-defined (other added tokens), 5 unused.
  const types = tables.texts.map((_, id) => {
    const added = addedById.get(id);
    return added ? (added.special ? 3 : 4) : 1;
  });
  return [
    ["tokenizer.ggml.model", str("gpt2")],
    // tokenizer.json only reaches here with Llama 3's split regex (loadHfBpe refuses others): llama.cpp's "llama-bpe".
    ["tokenizer.ggml.pre", str("llama-bpe")],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: padded(tables.texts as string[], vocabSize, (id) => `[PAD${id}]`, path) }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: padded(types, vocabSize, () => 5, path) }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", value: tables.merges.map(([l, r]) => `${l} ${r}`) }],
    ...idKey("tokenizer.ggml.bos_token_id", bosId ?? spec.bosId),
    ...idKey("tokenizer.ggml.eos_token_id", eosId ?? spec.eosIds[0]),
    ["tokenizer.ggml.add_bos_token", bool(spec.addBosDefault)],
  ];
}

async function tokenizerKeys(source: TokenizerSource | undefined, desc: ModelDescriptor): Promise<GgufMetadata> {
  const { vocabSize } = desc.config;
  const eosId = desc.eosIds[0];
  switch (source?.kind) {
    case undefined:
      throw new InvalidArgumentError(`no tokenizer found for ${desc.files[0]}: pass the tokenizer file (tokenizer.model, tokenizer.json or tokenizer.bin)`);
    case "gguf":
      if (!source.metadataTypes) throw new InvalidArgumentError("a GGUF tokenizer source needs its metadataTypes (from readGguf)");
      return copiedKeys(source.metadata, source.metadataTypes, (key) => key.startsWith("tokenizer."));
    case "sentencepiece":
      return spmKeys(await readSentencePieceVocab(source.path), vocabSize, desc.bosId, eosId);
    case "llama2c":
      return spmKeys(await readLlama2cVocab(source.path), vocabSize, desc.bosId, eosId);
    case "hf-json":
      return hfBpeKeys(source.path, source.configPath, vocabSize, desc.bosId, eosId);
    case "tiktoken":
      throw new UnsupportedModelError(
        `${source.path}: a tiktoken ranks file has no merges to write into GGUF; quantize from the HF directory with tokenizer.json instead`,
      );
    case "serialized": {
      const tokenizer = await tokenizerFromTables(source.tables, source.path);
      if (tokenizer instanceof SpmTokenizer) return spmKeys(tokenizer.vocab, vocabSize, desc.bosId, eosId);
      throw new UnsupportedModelError(`${source.path}: a serialized model keeps its BPE merges as a hash table, not the list GGUF stores; quantize the original model`);
    }
  }
}

/** A model directory's chat template as tokenizer.chat_template (a GGUF source's is among its copied tokenizer.* keys). */
function chatTemplateKeys(desc: ModelDescriptor): GgufMetadata {
  const source = desc.format === "gguf" ? undefined : findChatTemplate(desc);
  if (!source) return [];
  new ChatTemplate(source.text, source.origin); // a template that does not compile is refused here, not at load
  return [["tokenizer.chat_template", str(source.text)]];
}

/** The model's name for general.name: the GGUF's own, else the file or directory name. */
function modelName(desc: ModelDescriptor, inPath: string): string {
  const own = desc.metadata["general.name"];
  return typeof own === "string" ? own : nodePath.basename(nodePath.resolve(inPath)).replace(/\.[^.]*$/, "");
}

/** All metadata of the output file; `gguf` is the source's readGguf() result when the input is a GGUF file. */
export async function buildGgufMetadata(
  desc: ModelDescriptor,
  inPath: string,
  fileType: number,
  gguf?: { metadata: Map<string, unknown>; metadataTypes: Map<string, string> },
): Promise<GgufMetadata> {
  const model: GgufMetadata = gguf
    ? copiedKeys(gguf.metadata, gguf.metadataTypes, (key) => !key.startsWith("tokenizer."))
    : [["general.architecture", str("llama")], ["general.name", str(modelName(desc, inPath))], ...llamaKeys(desc.config)];
  return [
    ...model,
    ["general.file_type", u32(fileType)],
    ["general.quantization_version", u32(QUANTIZATION_VERSION)],
    ...(await tokenizerKeys(desc.tokenizer, desc)),
    ...chatTemplateKeys(desc),
  ];
}
