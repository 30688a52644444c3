/**
 * Reads a byte-level BPE vocab from GGUF metadata (tokenizer.ggml.model "gpt2"), with llama.cpp's meaning of each key.
 */
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { llama3PreTokenizer, preTokenizerForGguf } from "./bpe-pretokenizer";
import { collectEosIds } from "./bpe-special";
import type { AddedToken, BpeSpec } from "./bpe-tokenizer";
import { buildTextVocab, splitMerge } from "./bpe-vocab";

/** llama.cpp token types that are not ordinary vocab tokens. */
const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_USER_DEFINED = 4;

/** `path` is the GGUF file, named by every error. */
export function ggufBpeSpec(metadata: Map<string, unknown>, path: string): BpeSpec {
  const origin = `${path}: tokenizer metadata`;
  const model = metadata.get("tokenizer.ggml.model");
  if (model !== "gpt2") {
    throw new UnsupportedModelError(`${origin}: tokenizer.ggml.model ${JSON.stringify(model)} is not byte-level BPE ("gpt2")`);
  }
  const pre = metadata.get("tokenizer.ggml.pre");
  const preTokenizer = typeof pre === "string" ? preTokenizerForGguf(pre) : undefined;
  if (preTokenizer === undefined) {
    throw new UnsupportedModelError(`${origin}: pre-tokenizer tokenizer.ggml.pre ${JSON.stringify(pre)} is not supported`);
  }

  const tokens = stringArray(metadata, origin, "tokenizer.ggml.tokens");
  const types = metadata.get("tokenizer.ggml.token_type");
  if (types !== undefined && (!Array.isArray(types) || types.length !== tokens.length)) {
    throw new ModelFormatError(`${origin}: tokenizer.ggml.token_type does not have one entry per token`);
  }
  const added: AddedToken[] = [];
  tokens.forEach((text, id) => {
    const type = types?.[id];
    if (type === TOKEN_TYPE_CONTROL || type === TOKEN_TYPE_USER_DEFINED) added.push({ id, text, special: type === TOKEN_TYPE_CONTROL });
  });
  const merges = stringArray(metadata, origin, "tokenizer.ggml.merges").map((m, i): [string, string] => {
    const pair = splitMerge(m);
    if (pair === undefined) throw new ModelFormatError(`${origin}: tokenizer.ggml.merges[${i}] is not "left right": ${JSON.stringify(m)}`);
    return pair;
  });
  const vocab = buildTextVocab(origin, tokens, added, merges);

  const tokenId = (key: string): number | undefined => {
    const id = metadata.get(key);
    if (id === undefined) return undefined;
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= tokens.length) {
      throw new ModelFormatError(`${origin}: ${key} ${String(id)} is not a token id`);
    }
    return id as number;
  };
  const addBos = metadata.get("tokenizer.ggml.add_bos_token");
  return {
    origin: path,
    ...vocab,
    preTokenizer,
    ignoreMerges: preTokenizer === llama3PreTokenizer, // llama.cpp sets ignore_merges for the Llama 3 pre-tokenizer only
    bosId: tokenId("tokenizer.ggml.bos_token_id"),
    eosIds: collectEosIds([tokenId("tokenizer.ggml.eos_token_id"), tokenId("tokenizer.ggml.eot_token_id")], vocab.idOf),
    addBosDefault: typeof addBos === "boolean" ? addBos : true,
  };
}

function stringArray(metadata: Map<string, unknown>, origin: string, key: string): string[] {
  const v = metadata.get(key);
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new ModelFormatError(`${origin}: ${key} is missing or not a string array`);
  return v;
}
