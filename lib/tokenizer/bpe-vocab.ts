/**
 * Builds the id tables of a vocab stored as text (tokenizer.json, GGUF "gpt2"): byte-level texts for the mergeable
 * tokens, plain text for added tokens, and merges as pairs of token texts.
 */
import { ModelFormatError } from "../errors";
import { byteLevelToBytes } from "./bpe-byte-level";
import { MergeTable } from "./bpe-merge";
import type { AddedToken, BpeSpec } from "./bpe-tokenizer";

export type TextVocab = Pick<BpeSpec, "tokenBytes" | "vocab" | "merges" | "addedTokens"> & {
  /** The id of a token by its text as the file writes it (added tokens first). */
  idOf(text: string): number | undefined;
};

/**
 * @param texts token text by id; a missing id is an error
 * @param added tokens matched in raw text (special ones carry no bytes; the others decode as their text)
 * @param merges pairs of token texts, highest priority first
 */
export function buildTextVocab(
  origin: string,
  texts: (string | undefined)[],
  added: AddedToken[],
  merges: [string, string][],
): TextVocab {
  const addedById = new Map(added.map((t) => [t.id, t]));
  const tokenBytes: Uint8Array[] = [];
  const vocab = new Map<string, number>();
  const idsByText = new Map<string, number>(); // mergeable tokens as the file writes them, for the merges
  for (let id = 0; id < texts.length; id++) {
    const text = texts[id];
    if (text === undefined) throw new ModelFormatError(`${origin}: no token has id ${id}`);
    const addedToken = addedById.get(id);
    if (addedToken) {
      tokenBytes.push(addedToken.special ? new Uint8Array(0) : Buffer.from(text, "utf8"));
      continue;
    }
    const bytes = byteLevelToBytes(text);
    tokenBytes.push(bytes);
    const key = bytes.toString("latin1");
    if (!vocab.has(key)) vocab.set(key, id);
    if (!idsByText.has(text)) idsByText.set(text, id);
  }

  const table = new MergeTable(merges.length, merges.length);
  merges.forEach(([left, right], rank) => {
    const l = idsByText.get(left);
    const r = idsByText.get(right);
    const merged = idsByText.get(left + right);
    if (l === undefined || r === undefined || merged === undefined) {
      throw new ModelFormatError(`${origin}: merge ${rank} ("${left} ${right}") uses a token not in the vocab`);
    }
    table.add(l, r, rank, merged);
  });

  const addedIds = new Map(added.map((t) => [t.text, t.id]));
  return { tokenBytes, vocab, merges: table, addedTokens: added, idOf: (text) => addedIds.get(text) ?? idsByText.get(text) };
}

/** Splits a merge written as "left right" (byte-level texts never hold a space); undefined when malformed. */
export function splitMerge(merge: string): [string, string] | undefined {
  const space = merge.indexOf(" ");
  if (space <= 0 || space === merge.length - 1 || merge.indexOf(" ", space + 1) !== -1) return undefined;
  return [merge.slice(0, space), merge.slice(space + 1)];
}
