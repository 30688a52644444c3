/**
 * Incremental detokenization, and the one decoding path full detokenization uses too (so the two cannot disagree).
 * Bytes go through a streaming TextDecoder: a character split across tokens (byte-fallback pieces of an emoji, say)
 * is held back until complete, and invalid bytes become U+FFFD exactly as a one-shot decode of the whole sequence
 * would make them.
 */
import type { Tokenizer } from "./types";

export class StreamingDetokenizer {
  /** The text of the ids given to the constructor (a character they leave unfinished is held back, not included). */
  readonly contextText: string;
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  /** No token has produced bytes yet: the next one that does is the first text token of the sequence. */
  private atTextStart = true;

  /** `contextIds`: the ids already in the sequence (the prompt, BOS included), whose text precedes the deltas. */
  constructor(
    private readonly tokenizer: Tokenizer,
    contextIds: readonly number[] = [],
  ) {
    let text = "";
    for (const id of contextIds) text += this.push(id);
    this.contextText = text;
  }

  /** Text that token `id` completes; "" while a character is still incomplete, and for control tokens. */
  push(id: number): string {
    let bytes = this.tokenizer.tokenBytes(id);
    if (bytes.length === 0) return "";
    if (this.atTextStart) {
      this.atTextStart = false;
      // The space SPM's dummy prefix put before the text is not part of it (SentencePiece and llama2.c drop it too).
      if (this.tokenizer.addsDummyPrefix && bytes[0] === 0x20) bytes = bytes.subarray(1);
    }
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the text: bytes of an unfinished character come out as U+FFFD. */
  flush(): string {
    return this.decoder.decode();
  }
}

/** Full decode of `ids`: the streaming path run to the end, so full and incremental decoding cannot disagree. */
export function decodeTokens(tokenizer: Tokenizer, ids: readonly number[]): string {
  const stream = new StreamingDetokenizer(tokenizer, ids);
  return stream.contextText + stream.flush();
}
