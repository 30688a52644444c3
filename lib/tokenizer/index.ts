/** Resolves a TokenizerSource into a Tokenizer: SentencePiece (Llama 2) here, byte-level BPE (Llama 3) in ./bpe. */
import { ModelFormatError, UnsupportedModelError } from "../errors";
import type { ModelDescriptor, TokenizerSource } from "../formats/types";
import { loadBpeTokenizer } from "./bpe";
import { loadSentencePieceEncoder } from "./sentencepiece-encoder";
import { SpmTokenizer } from "./spm";
import { tokenizerFromTables } from "./tables";
import type { Tokenizer } from "./types";
import { readGgufSpmVocab } from "./vocab-gguf";
import { readLlama2cVocab } from "./vocab-llama2c";
import { readSentencePieceVocab } from "./vocab-sentencepiece";

export { SpmTokenizer } from "./spm";
export { StreamingDetokenizer } from "./stream";
export type { TokenizeOptions, Tokenizer } from "./types";

export async function loadTokenizer(source: TokenizerSource): Promise<Tokenizer> {
  switch (source.kind) {
    case "gguf": {
      const model = source.metadata.get("tokenizer.ggml.model");
      if (model === "llama") return new SpmTokenizer(readGgufSpmVocab(source.metadata, source.path));
      if (model === "gpt2") return loadBpeTokenizer(source);
      if (model === undefined) throw new ModelFormatError(`${source.path}: metadata has no tokenizer.ggml.model key`);
      throw new UnsupportedModelError(
        `${source.path}: tokenizer.ggml.model ${JSON.stringify(model)} is not supported (supported: "llama" SentencePiece, "gpt2" byte-level BPE)`,
      );
    }
    case "llama2c":
      return new SpmTokenizer(await readLlama2cVocab(source.path));
    case "sentencepiece": {
      // The tables (piece bytes, types, special ids) come from our own parse; encoding from SentencePiece itself.
      const vocab = await readSentencePieceVocab(source.path);
      return new SpmTokenizer(vocab, await loadSentencePieceEncoder(source.path));
    }
    case "hf-json":
    case "tiktoken":
      return loadBpeTokenizer(source);
    case "serialized":
      return tokenizerFromTables(source.tables, source.path);
  }
}

/**
 * Throws unless every id the tokenizer can produce, and the BOS/EOS ids the model's own files name, are rows of the
 * model's embedding: a mismatched tokenizer is refused at load, not at the first generate. `modelPath` names the
 * model in the message; the tokenizer is named by its source's path.
 */
export function checkTokenizerFitsModel(tokenizer: Tokenizer, source: TokenizerSource, model: ModelDescriptor, modelPath: string): void {
  const { vocabSize } = model.config;
  if (tokenizer.vocabSize > vocabSize) {
    throw new ModelFormatError(
      `${source.path}: the tokenizer has ${tokenizer.vocabSize} tokens (ids up to ${tokenizer.vocabSize - 1}), but the model ${modelPath} has a vocabulary of ${vocabSize}`,
    );
  }
  const named: [string, number | undefined][] = [["BOS", model.bosId], ...model.eosIds.map((id): [string, number] => ["EOS", id])];
  for (const [name, id] of named) {
    if (id !== undefined && id >= vocabSize) {
      throw new ModelFormatError(`${modelPath}: the ${name} token id ${id} is outside the model's vocabulary of ${vocabSize}`);
    }
  }
}
