/**
 * SentencePiece-BPE encoding of one plain-text fragment (no special tokens): dummy prefix, spaces to "▁", then
 * repeated merging of the best-scoring adjacent pair, as llama.cpp's llm_tokenizer_spm and SentencePiece's
 * bpe_model do. Characters no piece covers fall back to their UTF-8 byte pieces, or to unk without them.
 *
 * For speed, symbols are tracked by id rather than by text: a symbol is a piece (its token id) or a single
 * character (its piece id, or a pseudo id past the vocab for a character that occurs only inside longer pieces,
 * or -1 for one that occurs in no piece), and merges are looked up by the pair of ids. The text is also cut into
 * chunks no merge can span (see innerPairs), merged one at a time in reused buffers, with a cache of chunk results.
 */
import { BigramQueue } from "./bigram-queue";
import { PairTable } from "./pair-table";
import { SPACE_SYMBOL, SpmTokenType, parseBytePiece, type SpmVocab } from "./spm-vocab";
import { withCapacity } from "./typed-array";

/** Appends the ids of a plain-text fragment to `out`. */
export type FragmentEncoder = (text: string, out: number[]) => void;

const utf8 = new TextEncoder();
/** Code points below this get their symbol id from an array rather than a Map. */
const DIRECT_CHARS = 0x10000;
/** Chunks cached at most (then the cache starts over), to bound memory on endless distinct text. */
const CACHE_LIMIT = 1 << 16;

export class SpmEncoder {
  private readonly vocabSize: number;
  private readonly scores: ArrayLike<number>;
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly unkId: number | undefined;
  private readonly addDummyPrefix: boolean;
  /** Symbol id of each character occurring in a piece merging may produce (-1: none). */
  private readonly directCharIds = new Int32Array(DIRECT_CHARS).fill(-1);
  private readonly otherCharIds = new Map<number, number>();
  /** (left symbol, right symbol) → the piece they merge into. */
  private readonly merges = new PairTable();
  /**
   * Adjacent character pairs occurring inside some piece. No merge can span a boundary between two characters
   * that form no such pair, so the text splits there into chunks merged independently with the same result
   * (in Llama 2 no piece has "▁" after another character, so chunks are words).
   */
  private readonly innerPairs = new PairTable();
  /** Per-call state and scratch, reused across calls (encoding is synchronous: no two calls overlap). */
  private readonly chunk = new SymbolChain();
  private readonly queue = new BigramQueue();
  private lastWasUnk = false;
  /** Chunk text → ids, for chunks of known characters. */
  private readonly cache = new Map<string, number[]>();

  constructor(vocab: SpmVocab) {
    this.vocabSize = vocab.pieces.length;
    this.scores = vocab.scores;
    this.unkId = vocab.unkId;
    this.addDummyPrefix = vocab.addDummyPrefix;

    // Pieces merging may produce. SentencePiece keeps control, unknown and byte pieces out, so "<s>" in text stays
    // literal; of duplicate pieces the first id wins, as in SentencePiece.
    const pieceIds = new Map<string, number>();
    vocab.pieces.forEach((piece, id) => {
      const type = vocab.types[id];
      if (type === SpmTokenType.Byte) this.byteIds[parseBytePiece(piece)!] = id;
      else if (type === SpmTokenType.Normal || type === SpmTokenType.UserDefined || type === SpmTokenType.Unused) {
        if (!pieceIds.has(piece)) pieceIds.set(piece, id);
      }
    });
    let nextPseudoId = this.vocabSize;
    for (const piece of pieceIds.keys()) {
      for (const c of piece) {
        const cp = c.codePointAt(0)!;
        if (this.charId(cp) < 0) this.setCharId(cp, pieceIds.get(c) ?? nextPseudoId++);
      }
    }
    // Symbols are only ever pieces or single characters, so only splits into those can produce a piece.
    const symbolId = (s: string): number => {
      const cp = s.codePointAt(0)!;
      return s.length === (cp > 0xffff ? 2 : 1) ? this.charId(cp) : (pieceIds.get(s) ?? -1);
    };
    for (const [piece, id] of pieceIds) {
      let prevChar = -1;
      for (let split = 0; split < piece.length; ) {
        const cp = piece.codePointAt(split)!;
        if (split > 0) {
          this.innerPairs.setIfAbsent(prevChar, this.charId(cp), 1);
          const left = symbolId(piece.slice(0, split));
          const right = symbolId(piece.slice(split));
          if (left >= 0 && right >= 0) this.merges.setIfAbsent(left, right, id);
        }
        prevChar = this.charId(cp);
        split += cp > 0xffff ? 2 : 1;
      }
    }
  }

  readonly encode: FragmentEncoder = (fragment, out) => {
    if (fragment === "") return;
    const text = (this.addDummyPrefix ? SPACE_SYMBOL : "") + fragment.replaceAll(" ", SPACE_SYMBOL);
    const chunk = this.chunk;
    chunk.clear();
    this.lastWasUnk = false;
    for (let pos = 0; pos < text.length; ) {
      const codePoint = text.codePointAt(pos)!;
      const id = this.charId(codePoint);
      if (chunk.length > 0) {
        const prevId = chunk.id[chunk.length - 1];
        if (id < 0 || prevId < 0 || this.innerPairs.get(prevId, id) < 0) {
          this.encodeChunk(text, pos, out);
          chunk.clear();
        }
      }
      const width = codePoint > 0xffff ? 2 : 1;
      chunk.append(id, pos, width);
      pos += width;
    }
    this.encodeChunk(text, text.length, out);
  };

  /** Encodes this.chunk, which ends at `end` in `text`. Chunks of text repeat (words), so results are cached. */
  private encodeChunk(text: string, end: number, out: number[]): void {
    const key = text.slice(this.chunk.start[0], end);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      for (const id of cached) out.push(id);
      this.lastWasUnk = false;
      return;
    }
    this.mergeChunk();
    const { id, start, len, next } = this.chunk;
    const ids: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) {
      if (id[i] >= 0 && id[i] < this.vocabSize) {
        out.push(id[i]);
        ids.push(id[i]);
        this.lastWasUnk = false;
      } else {
        this.encodeUnknownChar(text.slice(start[i], start[i] + len[i]), out);
        ids.push(-1);
      }
    }
    // Chunks with unknown characters stay uncached: their output depends on the previous chunk (unk runs).
    if (ids.includes(-1)) return;
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(key, ids);
  }

  /** A character with no piece of its own: its UTF-8 byte pieces, or unk. */
  private encodeUnknownChar(char: string, out: number[]): void {
    const byteIds = Array.from(utf8.encode(char), (b) => this.byteIds[b]);
    if (!byteIds.includes(-1)) {
      out.push(...byteIds);
      this.lastWasUnk = false;
    } else if (this.unkId !== undefined && !this.lastWasUnk) {
      // SentencePiece collapses a run of unknown characters into one unk.
      out.push(this.unkId);
      this.lastWasUnk = true;
    }
  }

  /** Merges the symbols of this.chunk as far as the pieces allow. */
  private mergeChunk(): void {
    const { chunk, queue } = this;
    const { id, len, prev, next } = chunk;
    queue.clear();
    for (let i = 1; i < chunk.length; i++) this.tryAddPair(i - 1, i);

    while (queue.length > 0) {
      const e = queue.pop();
      const left = queue.left[e];
      const right = queue.right[e];
      // Stale: one of the two was merged with another neighbour since the pair was queued.
      if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== queue.size[e]) continue;
      id[left] = this.merges.get(id[left], id[right]);
      len[left] += len[right];
      len[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      this.tryAddPair(prev[left], left);
      this.tryAddPair(left, next[left]);
    }
  }

  /** Queues the merge of two adjacent symbols of the chunk (indexes; -1 for none) when their pair forms a piece. */
  private tryAddPair(left: number, right: number): void {
    const { id, len } = this.chunk;
    if (left < 0 || right < 0 || id[left] < 0 || id[right] < 0) return;
    const merged = this.merges.get(id[left], id[right]);
    if (merged >= 0) this.queue.push(this.scores[merged], left, right, len[left] + len[right]);
  }

  private charId(codePoint: number): number {
    return codePoint < DIRECT_CHARS ? this.directCharIds[codePoint] : (this.otherCharIds.get(codePoint) ?? -1);
  }

  private setCharId(codePoint: number, id: number): void {
    if (codePoint < DIRECT_CHARS) this.directCharIds[codePoint] = id;
    else this.otherCharIds.set(codePoint, id);
  }
}

/** The symbols of a chunk: one per character at first, merged in place; a doubly linked list of text ranges. */
class SymbolChain {
  length = 0;
  id: Int32Array = new Int32Array(64);
  /** Start in the text, in UTF-16 units. */
  start: Int32Array = new Int32Array(64);
  /** Length in UTF-16 units; 0 once merged into its left neighbour. */
  len: Int32Array = new Int32Array(64);
  prev: Int32Array = new Int32Array(64);
  next: Int32Array = new Int32Array(64);

  clear(): void {
    this.length = 0;
  }

  append(id: number, start: number, len: number): void {
    const i = this.length++;
    if (i === this.id.length) this.grow();
    this.id[i] = id;
    this.start[i] = start;
    this.len[i] = len;
    this.prev[i] = i - 1;
    this.next[i] = -1;
    if (i > 0) this.next[i - 1] = i;
  }

  private grow(): void {
    const capacity = 2 * this.id.length;
    this.id = withCapacity(this.id, capacity);
    this.start = withCapacity(this.start, capacity);
    this.len = withCapacity(this.len, capacity);
    this.prev = withCapacity(this.prev, capacity);
    this.next = withCapacity(this.next, capacity);
  }
}
