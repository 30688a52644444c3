/**
 * The SentencePiece (Llama 2) tokenizer over an SpmVocab, whatever file the vocab came from. Text fragments are
 * encoded by SpmEncoder, or by another FragmentEncoder (tokenizer.model goes through sentencepiece-js);
 * decoding is always ours, built on tokenBytes through decodeTokens (./stream).
 */
import { InvalidArgumentError, ModelFormatError } from "../errors";
import { SpecialTokenSplitter } from "./special-tokens";
import { SpmEncoder, type FragmentEncoder } from "./spm-encode";
import { SPACE_SYMBOL, SpmTokenType, parseBytePiece, type SpmVocab } from "./spm-vocab";
import { decodeTokens } from "./stream";
import type { TokenizeOptions, Tokenizer } from "./types";

const utf8 = new TextEncoder();
/** What SentencePiece prints for an unknown piece (its default unk_surface, " ⁇ "). */
const UNK_SURFACE = utf8.encode(" \u2047 ");
const NO_BYTES = new Uint8Array(0);

export class SpmTokenizer implements Tokenizer {
  readonly kind = "spm";
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: number[];
  readonly addBosDefault: boolean;
  readonly addsDummyPrefix: boolean;
  private readonly types: ArrayLike<number>;
  private readonly pieces: readonly string[];
  private readonly bytes: Uint8Array[];
  private readonly specials: SpecialTokenSplitter;
  private readonly encodeFragment: FragmentEncoder;

  /** Throws ModelFormatError (naming vocab.origin) when the vocab is inconsistent. */
  constructor(
    /** @internal The tables it runs on (a serialized model stores them). */
    readonly vocab: SpmVocab,
    encodeFragment?: FragmentEncoder,
  ) {
    checkVocab(vocab);
    this.vocabSize = vocab.pieces.length;
    this.bosId = vocab.bosId;
    this.eosIds = vocab.eosIds;
    this.addBosDefault = vocab.addBos && vocab.bosId !== undefined;
    this.addsDummyPrefix = vocab.addDummyPrefix;
    this.types = vocab.types;
    this.pieces = vocab.pieces;
    this.bytes = vocab.pieces.map((piece, id) => pieceBytes(piece, vocab.types[id]));
    // As in llama.cpp: control, user-defined and unknown pieces ("<s>", "</s>", "<unk>") are what special parsing finds.
    const specialTypes = [SpmTokenType.Control, SpmTokenType.UserDefined, SpmTokenType.Unknown];
    this.specials = new SpecialTokenSplitter(
      vocab.pieces.flatMap((piece, id) => (specialTypes.includes(vocab.types[id]) ? [[piece, id] as const] : [])),
    );
    this.encodeFragment = encodeFragment ?? new SpmEncoder(vocab).encode;
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    const ids: number[] = [];
    if (options.addBos ?? this.addBosDefault) {
      if (this.bosId === undefined) throw new InvalidArgumentError("addBos: this vocab has no BOS token");
      ids.push(this.bosId);
    }
    // Each fragment between special tokens is encoded as a text of its own, dummy prefix included (llama.cpp does so).
    for (const part of options.special ? this.specials.split(text) : [text]) {
      if (typeof part === "number") ids.push(part);
      else this.encodeFragment(part, ids);
    }
    return ids;
  }

  detokenize(ids: number[]): string {
    return decodeTokens(this, ids);
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.bytes[id].slice();
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.pieces[id];
  }

  isSpecial(id: number): boolean {
    this.checkId(id);
    return this.types[id] === SpmTokenType.Control;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidArgumentError(`token id ${id} is out of range (vocab size ${this.vocabSize})`);
    }
  }
}

function pieceBytes(piece: string, type: number): Uint8Array {
  switch (type) {
    case SpmTokenType.Control:
      return NO_BYTES;
    case SpmTokenType.Unknown:
      return UNK_SURFACE;
    case SpmTokenType.Byte:
      return Uint8Array.of(parseBytePiece(piece)!);
    default:
      return utf8.encode(piece.replaceAll(SPACE_SYMBOL, " "));
  }
}

function checkVocab(vocab: SpmVocab): void {
  const fail = (what: string): never => {
    throw new ModelFormatError(`${vocab.origin}: invalid SentencePiece vocab: ${what}`);
  };
  const n = vocab.pieces.length;
  if (n === 0) fail("no tokens");
  if (vocab.scores.length !== n) fail(`${vocab.scores.length} scores for ${n} tokens`);
  if (vocab.types.length !== n) fail(`${vocab.types.length} token types for ${n} tokens`);
  for (let id = 0; id < n; id++) {
    const type = vocab.types[id];
    if (!(type in SpmTokenType)) fail(`token ${id} has unknown type ${type}`);
    if (type === SpmTokenType.Byte && parseBytePiece(vocab.pieces[id]) === undefined) {
      fail(`byte token ${id} is ${JSON.stringify(vocab.pieces[id])}, not <0xNN>`);
    }
  }
  const special: [string, number | undefined][] = [
    ["bos", vocab.bosId],
    ["unk", vocab.unkId],
    ...vocab.eosIds.map((id): [string, number] => ["eos", id]),
  ];
  for (const [name, id] of special) {
    if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id < n)) fail(`${name} id ${id} outside 0..${n - 1}`);
  }
}
