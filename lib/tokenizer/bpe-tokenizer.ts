/**
 * The byte-level BPE Tokenizer, whatever file it came from: added tokens are cut out of the text first, the rest is
 * pre-tokenized, each piece turned into UTF-8 bytes and merged. Loaders (bpe-hf, bpe-tiktoken, bpe-gguf) build the
 * BpeSpec it runs on.
 */
import { InvalidArgumentError, ModelFormatError } from "../errors";
import type { MergeTable } from "./bpe-merge";
import type { PreTokenizer } from "./bpe-pretokenizer";
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
  private readonly addedIds = new Map<string, number>();
  /** Match the added tokens to cut out of the text, with and without the special ones (undefined: none). */
  private readonly allAddedRegex: RegExp | undefined;
  private readonly nonSpecialAddedRegex: RegExp | undefined;
  private readonly cache = new Map<string, number[]>();
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // a leading U+FEFF is text, not a marker

  constructor(private readonly spec: BpeSpec) {
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
      this.addedIds.set(t.text, t.id);
    }
    this.allAddedRegex = alternation(spec.addedTokens);
    this.nonSpecialAddedRegex = alternation(spec.addedTokens.filter((t) => !t.special));
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    const out: number[] = [];
    if (options.addBos ?? this.addBosDefault) {
      if (this.bosId === undefined) throw new InvalidArgumentError(`addBos: ${this.spec.origin} has no BOS token`);
      out.push(this.bosId);
    }
    const regex = options.special ? this.allAddedRegex : this.nonSpecialAddedRegex;
    if (regex === undefined) {
      this.encodeText(text, out);
      return out;
    }
    let start = 0;
    regex.lastIndex = 0;
    for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
      this.encodeText(text.slice(start, m.index), out);
      out.push(this.addedIds.get(m[0])!);
      start = m.index + m[0].length;
    }
    this.encodeText(text.slice(start), out);
    return out;
  }

  detokenize(ids: number[]): string {
    const parts: Uint8Array[] = [];
    for (const id of ids) if (!this.isSpecial(id)) parts.push(this.spec.tokenBytes[id]);
    return this.decoder.decode(Buffer.concat(parts));
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.spec.tokenBytes[id];
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

/** A regex matching any of the tokens' texts, longest first so that the leftmost-longest match wins. */
function alternation(tokens: AddedToken[]): RegExp | undefined {
  const texts = tokens.map((t) => t.text).filter((t) => t.length > 0);
  if (texts.length === 0) return undefined;
  texts.sort((a, b) => b.length - a.length);
  return new RegExp(texts.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
}
