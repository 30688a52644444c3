/** Loads the byte-level BPE tokenizer (Llama 3 and kin) from any source that carries one. */
import { InvalidArgumentError } from "../errors";
import type { TokenizerSource } from "../formats/types";
import { ggufBpeSpec } from "./bpe-gguf";
import { loadHfBpeSpec } from "./bpe-hf";
import { loadTiktokenBpeSpec } from "./bpe-tiktoken";
import { BpeTokenizer } from "./bpe-tokenizer";
import type { Tokenizer } from "./types";

export async function loadBpeTokenizer(source: TokenizerSource): Promise<Tokenizer> {
  switch (source.kind) {
    case "hf-json":
      return new BpeTokenizer(await loadHfBpeSpec(source.path, source.configPath));
    case "tiktoken":
      return new BpeTokenizer(await loadTiktokenBpeSpec(source.path));
    case "gguf":
      return new BpeTokenizer(ggufBpeSpec(source.metadata, source.path));
    default:
      throw new InvalidArgumentError(`a ${source.kind} tokenizer source is not byte-level BPE`);
  }
}
