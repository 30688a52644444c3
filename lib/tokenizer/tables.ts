/**
 * A loaded tokenizer as tables a serialized model stores (lib/formats/serialized.ts): the scalars as JSON, the bulk
 * (token bytes, scores, the BPE merge hash table as it is in memory) as typed arrays. Loading them back parses no
 * tokenizer file and rebuilds no merge table; every table is checked against the others first.
 */
import * as fs from "node:fs";
import { FieldChecker } from "../formats/field-checker";
import type { TokenizerSource } from "../formats/types";
import { MergeTable } from "./bpe-merge";
import { preTokenizerByName, preTokenizerName } from "./bpe-pretokenizer";
import { type AddedToken, BpeTokenizer } from "./bpe-tokenizer";
import { loadSentencePieceEncoderFromBytes } from "./sentencepiece-encoder";
import { SpmTokenizer } from "./spm";
import type { Tokenizer } from "./types";

export type TableArray = Uint8Array | Int32Array | Float32Array;

/** The scalars of a tokenizer's tables; `arrays` of TokenizerTables holds the rest, by name. */
export type TokenizerTablesMeta =
  | {
      kind: "spm";
      origin: string;
      bosId: number | null;
      eosIds: number[];
      unkId: number | null;
      addBos: boolean;
      addDummyPrefix: boolean;
      /** "sentencepiece": fragments are encoded by SentencePiece from the tokenizer.model bytes in the tables. */
      encoder: "spm" | "sentencepiece";
    }
  | {
      kind: "bpe";
      origin: string;
      bosId: number | null;
      eosIds: number[];
      addBosDefault: boolean;
      ignoreMerges: boolean;
      preTokenizer: string;
      addedTokens: AddedToken[];
    };

export interface TokenizerTables {
  meta: TokenizerTablesMeta;
  arrays: Record<string, TableArray>;
}

/** Byte strings packed into one array, with the end offset of each. */
function packStrings(strings: readonly Uint8Array[]): { bytes: Uint8Array; ends: Int32Array } {
  const ends = new Int32Array(strings.length);
  let total = 0;
  strings.forEach((s, i) => (ends[i] = total += s.length));
  const bytes = new Uint8Array(total);
  strings.forEach((s, i) => bytes.set(s, ends[i] - s.length));
  return { bytes, ends };
}

const utf8 = new TextEncoder();

/**
 * The tables of a tokenizer loadTokenizer made from `source`. A SentencePiece tokenizer.model's own encoder
 * travels as the file's bytes: SentencePiece normalizes and encodes, and only it does so exactly.
 */
export function tokenizerTables(tokenizer: Tokenizer, source: TokenizerSource): TokenizerTables {
  if (source.kind === "serialized") return source.tables;
  if (tokenizer instanceof SpmTokenizer) {
    const { vocab } = tokenizer;
    const pieces = packStrings(vocab.pieces.map((p) => utf8.encode(p)));
    const arrays: Record<string, TableArray> = {
      "pieces.bytes": pieces.bytes,
      "pieces.ends": pieces.ends,
      scores: Float32Array.from(vocab.scores),
      types: Uint8Array.from(vocab.types),
    };
    if (source.kind === "sentencepiece") arrays.sentencepieceModel = fs.readFileSync(source.path);
    return {
      meta: {
        kind: "spm", origin: vocab.origin, bosId: vocab.bosId ?? null, eosIds: vocab.eosIds, unkId: vocab.unkId ?? null,
        addBos: vocab.addBos, addDummyPrefix: vocab.addDummyPrefix, encoder: source.kind === "sentencepiece" ? "sentencepiece" : "spm",
      },
      arrays,
    };
  }
  if (tokenizer instanceof BpeTokenizer) {
    const { spec } = tokenizer;
    const preTokenizer = preTokenizerName(spec.preTokenizer);
    // Every pre-tokenizer a loader can pick is named; one that is not would be a bug here, not a bad file.
    if (preTokenizer === undefined) throw new Error(`${spec.origin}: its pre-tokenizer has no name to serialize it by`);
    const tokens = packStrings(spec.tokenBytes);
    const merges = spec.merges.toArrays();
    return {
      meta: {
        kind: "bpe", origin: spec.origin, bosId: spec.bosId ?? null, eosIds: spec.eosIds, addBosDefault: spec.addBosDefault,
        ignoreMerges: spec.ignoreMerges, preTokenizer, addedTokens: spec.addedTokens,
      },
      arrays: {
        "tokens.bytes": tokens.bytes,
        "tokens.ends": tokens.ends,
        vocabIds: Int32Array.from(spec.vocab.values()),
        "merges.lefts": merges.lefts,
        "merges.rights": merges.rights,
        "merges.ranks": merges.ranks,
        "merges.rankToId": merges.rankToId,
      },
    };
  }
  throw new Error("tokenizerTables: a tokenizer of neither kind");
}

/** The element type each table has: serialized.ts reads and checks them by it. */
export const TABLE_TYPES: Record<string, "u8" | "i32" | "f32"> = {
  "pieces.bytes": "u8", "pieces.ends": "i32", scores: "f32", types: "u8", sentencepieceModel: "u8",
  "tokens.bytes": "u8", "tokens.ends": "i32", vocabIds: "i32",
  "merges.lefts": "i32", "merges.rights": "i32", "merges.ranks": "i32", "merges.rankToId": "i32",
};

/** Reads TokenizerTables back, checking each value; a bad one is a SerializedModelError naming its field. */
class TablesReader extends FieldChecker {
  constructor(
    private readonly tables: TokenizerTables,
    path: string,
  ) {
    super(path, "tokenizer.");
  }

  array<T extends TableArray>(name: string, type: new (n: number) => T): T {
    const a = this.tables.arrays[name];
    if (!(a instanceof type)) this.fail(name, "is missing");
    return a as T;
  }

  /** The strings packed by packStrings, `count` of them. */
  strings(name: string, count: number): Uint8Array[] {
    const bytes = this.array(`${name}.bytes`, Uint8Array);
    const ends = this.array(`${name}.ends`, Int32Array);
    if (ends.length !== count) this.fail(`${name}.ends`, `has ${ends.length} entries for ${count} tokens`);
    const out: Uint8Array[] = new Array(count);
    let start = 0;
    for (let i = 0; i < count; i++) {
      if (ends[i] < start || ends[i] > bytes.length) this.fail(`${name}.ends`, `entry ${i} (${ends[i]}) is out of order or past the bytes`);
      out[i] = bytes.subarray(start, ends[i]);
      start = ends[i];
    }
    return out;
  }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The tokenizer tokenizerTables() saved; `path` (the serialized model) is named by every error. */
export async function tokenizerFromTables(tables: TokenizerTables, path: string): Promise<Tokenizer> {
  const r = new TablesReader(tables, path);
  const meta = tables.meta as Record<string, unknown>;
  if (meta === null || typeof meta !== "object") r.fail("meta", "is not an object");
  const origin = `${path} (serialized from ${r.text("origin", meta.origin)})`;
  if (meta.kind === "spm") {
    const scores = r.array("scores", Float32Array);
    const n = scores.length;
    const types = r.array("types", Uint8Array);
    const pieces = r.strings("pieces", n).map((p) => {
      try {
        return utf8Decoder.decode(p);
      } catch {
        return r.fail("pieces.bytes", "holds a piece that is not UTF-8");
      }
    });
    const vocab = {
      origin, pieces, scores, types,
      bosId: r.optionalTokenId("bosId", meta.bosId, n), eosIds: r.tokenIds("eosIds", meta.eosIds, n), unkId: r.optionalTokenId("unkId", meta.unkId, n),
      addBos: r.flag("addBos", meta.addBos), addDummyPrefix: r.flag("addDummyPrefix", meta.addDummyPrefix),
    };
    if (meta.encoder === "spm") return new SpmTokenizer(vocab);
    if (meta.encoder !== "sentencepiece") r.fail("encoder", `(${String(meta.encoder)}) is neither "spm" nor "sentencepiece"`);
    return new SpmTokenizer(vocab, await loadSentencePieceEncoderFromBytes(r.array("sentencepieceModel", Uint8Array), origin));
  }
  if (meta.kind !== "bpe") r.fail("kind", `(${String(meta.kind)}) is neither "spm" nor "bpe"`);
  const ends = r.array("tokens.ends", Int32Array);
  const n = ends.length;
  const tokenBytes = r.strings("tokens", n);
  // The keys are slices of one latin1 string of all the bytes: no buffer per token (Llama 3 has 128k of them).
  const allBytes = r.array("tokens.bytes", Uint8Array);
  const latin1 = Buffer.from(allBytes.buffer, allBytes.byteOffset, allBytes.length).toString("latin1");
  const vocab = new Map<string, number>();
  for (const id of r.array("vocabIds", Int32Array)) {
    r.tokenId("vocabIds", id, n);
    vocab.set(latin1.slice(id === 0 ? 0 : ends[id - 1], ends[id]), id);
  }
  const merges = MergeTable.fromArrays(
    {
      lefts: r.array("merges.lefts", Int32Array), rights: r.array("merges.rights", Int32Array),
      ranks: r.array("merges.ranks", Int32Array), rankToId: r.array("merges.rankToId", Int32Array),
    },
    n,
  );
  if (typeof merges === "string") r.fail("merges", `are inconsistent: ${merges}`);
  const preTokenizer = preTokenizerByName(r.text("preTokenizer", meta.preTokenizer));
  if (preTokenizer === undefined) r.fail("preTokenizer", `(${String(meta.preTokenizer)}) is not a pre-tokenizer this version knows`);
  if (!Array.isArray(meta.addedTokens)) r.fail("addedTokens", "is not a list");
  const addedTokens = (meta.addedTokens as Record<string, unknown>[]).map((t, i) => ({
    id: r.tokenId(`addedTokens[${i}].id`, t?.id, n), text: r.text(`addedTokens[${i}].text`, t?.text), special: r.flag(`addedTokens[${i}].special`, t?.special),
  }));
  return new BpeTokenizer({
    origin, tokenBytes, vocab, merges: merges as MergeTable, addedTokens, preTokenizer: preTokenizer!,
    ignoreMerges: r.flag("ignoreMerges", meta.ignoreMerges),
    bosId: r.optionalTokenId("bosId", meta.bosId, n), eosIds: r.tokenIds("eosIds", meta.eosIds, n), addBosDefault: r.flag("addBosDefault", meta.addBosDefault),
  });
}
