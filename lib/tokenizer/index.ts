/** Resolves a TokenizerSource into a Tokenizer: SentencePiece (Llama 2) here, byte-level BPE (Llama 3) in ./bpe. */
import { ModelFormatError, UnsupportedModelError } from "../errors";
import type { TokenizerSource } from "../formats/types";
import { loadBpeTokenizer } from "./bpe";
import { loadSentencePieceEncoder } from "./sentencepiece-encoder";
import { SpmTokenizer } from "./spm";
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
      if (model === "llama") return new SpmTokenizer(readGgufSpmVocab(source.metadata));
      if (model === "gpt2") return loadBpeTokenizer(source);
      if (model === undefined) throw new ModelFormatError("GGUF metadata: no tokenizer.ggml.model key");
      throw new UnsupportedModelError(
        `GGUF tokenizer.ggml.model ${JSON.stringify(model)} is not supported (supported: "llama" SentencePiece, "gpt2" byte-level BPE)`,
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
  }
}
