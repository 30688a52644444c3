/** The SentencePiece vocabulary every SPM source (GGUF, llama2.c tokenizer.bin, tokenizer.model) is read into. */

/** Piece types; SentencePiece's ModelProto and GGUF's tokenizer.ggml.token_type number them alike. */
export enum SpmTokenType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export interface SpmVocab {
  /** Where the vocab came from (a file path, or "GGUF metadata"), for error messages. */
  origin: string;
  /** Pieces as SentencePiece stores them: spaces are "▁", byte-fallback pieces are "<0xNN>". */
  pieces: string[];
  scores: ArrayLike<number>;
  types: ArrayLike<number>;
  bosId: number | undefined;
  eosIds: number[];
  unkId: number | undefined;
  addBos: boolean;
  addDummyPrefix: boolean;
}

export const SPACE_SYMBOL = "\u2581";

/** The byte a "<0xNN>" byte-fallback piece stands for, or undefined when the piece is not of that form. */
export function parseBytePiece(piece: string): number | undefined {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return m ? parseInt(m[1], 16) : undefined;
}
