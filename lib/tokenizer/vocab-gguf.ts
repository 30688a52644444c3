/** The SPM vocab from GGUF metadata (tokenizer.ggml.model = "llama"), with llama.cpp's defaults for absent keys. */
import { ModelFormatError } from "../errors";
import { SpmTokenType, type SpmVocab } from "./spm-vocab";

/** `path` is the GGUF file, named by every error (as "PATH: metadata KEY ..."). */
export function readGgufSpmVocab(metadata: Map<string, unknown>, path: string): SpmVocab {
  const origin = `${path}: metadata`;
  const pieces = metadata.get("tokenizer.ggml.tokens");
  if (!Array.isArray(pieces) || !pieces.every((p) => typeof p === "string")) {
    throw new ModelFormatError(`${origin}: tokenizer.ggml.tokens is missing or not an array of strings`);
  }
  const n = pieces.length;
  const eosId = optionalId(metadata, origin, "tokenizer.ggml.eos_token_id", 2);
  const eotId = optionalId(metadata, origin, "tokenizer.ggml.eot_token_id", undefined);
  return {
    origin: path,
    pieces,
    scores: numberArray(metadata, origin, "tokenizer.ggml.scores") ?? new Float32Array(n),
    types: numberArray(metadata, origin, "tokenizer.ggml.token_type") ?? new Uint8Array(n).fill(SpmTokenType.Normal),
    bosId: optionalId(metadata, origin, "tokenizer.ggml.bos_token_id", 1),
    eosIds: [eosId, eotId].filter((id, i, all): id is number => id !== undefined && all.indexOf(id) === i),
    unkId: optionalId(metadata, origin, "tokenizer.ggml.unknown_token_id", 0),
    addBos: optionalBool(metadata, origin, "tokenizer.ggml.add_bos_token", true),
    addDummyPrefix: optionalBool(metadata, origin, "tokenizer.ggml.add_space_prefix", true),
  };
}

function numberArray(metadata: Map<string, unknown>, origin: string, key: string): number[] | undefined {
  const value = metadata.get(key);
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === "number")) {
    throw new ModelFormatError(`${origin}: ${key} is not an array of numbers`);
  }
  return value;
}

/** A token id key; absent gives `fallback`; -1 (or its uint32 form) means "none", as GGUF writers store it. */
function optionalId(metadata: Map<string, unknown>, origin: string, key: string, fallback: number | undefined): number | undefined {
  const value = metadata.get(key);
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value)) throw new ModelFormatError(`${origin}: ${key} is not an integer`);
  return value === -1 || value === 0xffffffff ? undefined : value;
}

function optionalBool(metadata: Map<string, unknown>, origin: string, key: string, fallback: boolean): boolean {
  const value = metadata.get(key);
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new ModelFormatError(`${origin}: ${key} is not a boolean`);
  return value;
}
