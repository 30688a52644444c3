/** The tokenizer contract the rest of the library relies on, whatever file it was loaded from. */

export interface TokenizeOptions {
  /** Prepend the BOS token (default: the tokenizer's own add_bos setting, true for Llama). */
  addBos?: boolean;
  /** Parse special-token strings such as "<s>" into their ids (default false: text is literal). */
  special?: boolean;
}

export interface Tokenizer {
  readonly kind: "spm" | "bpe";
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: number[];
  readonly addBosDefault: boolean;
  /**
   * SPM's add_dummy_prefix: tokenize puts a space before the text, so decoding strips one leading space from the
   * first text token of a sequence. Absent means false (byte-level BPE adds nothing).
   */
  readonly addsDummyPrefix?: boolean;
  tokenize(text: string, options?: TokenizeOptions): number[];
  /** Full decode of ids to text (the leading dummy-prefix space of SPM is stripped when ids start the text). */
  detokenize(ids: number[]): string;
  /**
   * The raw bytes a token stands for (byte-fallback tokens give their single byte, "▁" becomes a space;
   * control tokens such as <s> give no bytes). Streaming decode is built on this.
   */
  tokenBytes(id: number): Uint8Array;
  /**
   * The token as the vocabulary spells it: "<s>" and "<|eot_id|>" for special tokens, "▁the" in SPM, "Ġthe" in
   * byte-level BPE (GPT-2's byte alphabet). Chat templates take their bos_token / eos_token strings from it.
   */
  tokenText(id: number): string;
  /** Whether the id is a control/special token (never printed). */
  isSpecial(id: number): boolean;
}
