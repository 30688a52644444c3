/**
 * The engine's grammar matcher (native/engine/grammar.h) in the library's terms: the vocabulary's token trie, built
 * once per model from the tokenizer, and a matcher per generation over a table compiled by lib/grammar.
 */
import type { CompiledGrammar } from "../grammar";
import type { Tokenizer } from "../tokenizer/types";
import { loadBinding, type NativeGrammar, type NativeTokenTrie } from "./binding";
import { toTypedError } from "./engine";

/**
 * The trie of every token's bytes, for `vocabSize` ids: control tokens (and ids past the tokenizer's) get none, so
 * no grammar produces them; the end of a generation is the end ids' business.
 */
export function buildTokenTrie(tokenizer: Tokenizer, vocabSize: number): NativeTokenTrie {
  const pieces: Uint8Array[] = [];
  const offsets = new Uint32Array(vocabSize + 1);
  let total = 0;
  for (let id = 0; id < vocabSize; id++) {
    const bytes = id < tokenizer.vocabSize && !tokenizer.isSpecial(id) ? tokenizer.tokenBytes(id) : new Uint8Array(0);
    pieces.push(bytes);
    total += bytes.length;
    offsets[id + 1] = total;
  }
  const all = new Uint8Array(total);
  for (let id = 0; id < vocabSize; id++) all.set(pieces[id], offsets[id]);
  try {
    return new (loadBinding().TokenTrie)(all, offsets);
  } catch (err) {
    throw toTypedError(err);
  }
}

/** A fresh matcher (one generation's parser state) of a compiled grammar. */
export function createGrammarMatcher(trie: NativeTokenTrie, grammar: CompiledGrammar): NativeGrammar {
  try {
    return new (loadBinding().Grammar)(trie, grammar.table);
  } catch (err) {
    throw toTypedError(err);
  }
}
