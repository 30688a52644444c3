/**
 * The byte-level BPE Tokenizer, whatever file it came from: added tokens are cut out of the text first, the rest is
 * pre-tokenized, each piece turned into UTF-8 bytes and merged. Loaders (bpe-hf, bpe-tiktoken, bpe-gguf) build the
 * BpeSpec it runs on.
 */
import { InvalidArgumentError, ModelFormatError } from "../errors";
import { BYTE_TO_CHAR } from "./bpe-byte-level";
import type { MergeTable } from "./bpe-merge";
import type { PreTokenizer } from "./bpe-pretokenizer";
import { SpecialTokenSplitter } from "./special-tokens";
import { decodeTokens } from "./stream";
import type { TokenizeOptions, Tokenizer } from "./types";

/** A token matched in raw text before pre-tokenizing: special ones only with {special: true}, others always. */
export interface AddedToken {
  id: number;
  text: string;
  special: boolean;
}

export interface BpeSpec {
  /** What the spec came from, for error messages. */
  origin: string;
  /** The bytes each id stands for, indexed by id (empty for special tokens). */
  tokenBytes: Uint8Array[];
  /** The mergeable (model) tokens by their bytes as a latin1 string (one character per byte: cheap to make and hash). */
  vocab: Map<string, number>;
  merges: MergeTable;
  addedTokens: AddedToken[];
  preTokenizer: PreTokenizer;
  /** A piece that is itself a vocab token is emitted whole, unmerged (HF ignore_merges; tiktoken always does). */
  ignoreMerges: boolean;
  bosId: number | undefined;
  eosIds: number[];
  addBosDefault: boolean;
}

/** Pieces remembered per tokenizer; past this many the cache starts over (English text repeats few words). */
const CACHE_LIMIT = 1 << 16;

/** Bytes 0xC0, 0xC1 and 0xF5..0xFF never occur in UTF-8, so a vocab may lack tokens for them. */
const isUtf8Byte = (b: number) => b !== 0xc0 && b !== 0xc1 && b < 0xf5;

export class BpeTokenizer implements Tokenizer {
  readonly kind = "bpe";
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: number[];
  readonly addBosDefault: boolean;

  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly special: Uint8Array;
  private readonly addedTexts = new Map<number, string>();
  /** Cut the added tokens out of the text: all of them ({special: true}), or only the non-special ones. */
  private readonly allAdded: SpecialTokenSplitter;
  private readonly nonSpecialAdded: SpecialTokenSplitter;
  private readonly cache = new Map<string, number[]>();

  constructor(
    /** @internal The tables it runs on (a serialized model stores them). */
    readonly spec: BpeSpec,
  ) {
    this.vocabSize = spec.tokenBytes.length;
    this.bosId = spec.bosId;
    this.eosIds = spec.eosIds;
    this.addBosDefault = spec.addBosDefault && spec.bosId !== undefined;
    for (let b = 0; b < 256; b++) {
      const id = spec.vocab.get(String.fromCharCode(b));
      if (id !== undefined) this.byteIds[b] = id;
      else if (isUtf8Byte(b)) throw new ModelFormatError(`${spec.origin}: no token for byte 0x${b.toString(16)}`);
    }
    this.special = new Uint8Array(this.vocabSize);
    for (const t of spec.addedTokens) {
      if (t.special) this.special[t.id] = 1;
      this.addedTexts.set(t.id, t.text);
    }
    this.allAdded = new SpecialTokenSplitter(spec.addedTokens.map((t) => [t.text, t.id] as const));
    this.nonSpecialAdded = new SpecialTokenSplitter(spec.addedTokens.filter((t) => !t.special).map((t) => [t.text, t.id] as const));
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    const out: number[] = [];
    if (options.addBos ?? this.addBosDefault) {
      if (this.bosId === undefined) throw new InvalidArgumentError(`addBos: ${this.spec.origin} has no BOS token`);
      out.push(this.bosId);
    }
    for (const part of (options.special ? this.allAdded : this.nonSpecialAdded).split(text)) {
      if (typeof part === "number") out.push(part);
      else this.encodeText(part, out);
    }
    return out;
  }

  detokenize(ids: number[]): string {
    return decodeTokens(this, ids);
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.spec.tokenBytes[id];
  }

  tokenText(id: number): string {
    this.checkId(id);
    const added = this.addedTexts.get(id);
    if (added !== undefined) return added;
    let text = "";
    for (const b of this.spec.tokenBytes[id]) text += BYTE_TO_CHAR[b];
    return text;
  }

  isSpecial(id: number): boolean {
    this.checkId(id);
    return this.special[id] === 1;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidArgumentError(`token id ${id} is out of range (vocab size ${this.vocabSize})`);
    }
  }

  private encodeText(text: string, out: number[]): void {
    if (text.length === 0) return;
    for (const piece of this.spec.preTokenizer.split(text)) {
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = this.encodePiece(piece);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  private encodePiece(piece: string): number[] {
    const bytes = Buffer.from(piece, "utf8");
    if (this.spec.ignoreMerges) {
      const whole = this.spec.vocab.get(bytes.toString("latin1"));
      if (whole !== undefined) return [whole];
    }
    const symbols = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) symbols[i] = this.byteIds[bytes[i]];
    const ids: number[] = [];
    this.spec.merges.apply(symbols, ids);
    return ids;
  }
}
