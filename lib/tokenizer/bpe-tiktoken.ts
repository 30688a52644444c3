/**
 * Reads Meta's Llama 3 tokenizer.model: tiktoken's "base64(token bytes) rank" lines. Merges are implied: two
 * adjacent tokens merge when their concatenation is a token, lowest rank first. The special tokens are not in the
 * file; they follow the ranks in Meta's order.
 */
import { readFile } from "node:fs/promises";
import { ModelFormatError } from "../errors";
import { MergeTable } from "./bpe-merge";
import { llama3PreTokenizer } from "./bpe-pretokenizer";
import { BEGIN_OF_TEXT, collectEosIds, llama3SpecialTokenTexts } from "./bpe-special";
import type { AddedToken, BpeSpec } from "./bpe-tokenizer";

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export async function loadTiktokenBpeSpec(path: string): Promise<BpeSpec> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ModelFormatError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  const byRank = readRanks(path, text);
  const rankCount = byRank.length;

  const vocab = new Map<string, number>();
  byRank.forEach((bytes, rank) => {
    const key = bytes.toString("latin1");
    if (vocab.has(key)) throw new ModelFormatError(`${path}: rank ${rank} repeats the token of rank ${vocab.get(key)}`);
    vocab.set(key, rank);
  });

  const specials = llama3SpecialTokenTexts();
  const addedTokens: AddedToken[] = specials.map((t, i) => ({ id: rankCount + i, text: t, special: true }));
  const pairs: number[] = []; // (left, right, rank) triples: every way to cut a token into two tokens
  byRank.forEach((bytes, rank) => {
    for (let cut = 1; cut < bytes.length; cut++) {
      const left = vocab.get(bytes.toString("latin1", 0, cut));
      if (left === undefined) continue;
      const right = vocab.get(bytes.toString("latin1", cut));
      if (right !== undefined) pairs.push(left, right, rank);
    }
  });
  const merges = new MergeTable(pairs.length / 3, rankCount);
  for (let i = 0; i < pairs.length; i += 3) merges.add(pairs[i], pairs[i + 1], pairs[i + 2], pairs[i + 2]);

  const specialIds = new Map(addedTokens.map((t) => [t.text, t.id]));
  const idOf = (t: string) => specialIds.get(t);
  return {
    origin: path,
    tokenBytes: [...byRank, ...specials.map(() => new Uint8Array(0))],
    vocab,
    merges,
    addedTokens,
    preTokenizer: llama3PreTokenizer,
    ignoreMerges: true, // tiktoken emits a piece that is itself a token without merging
    bosId: idOf(BEGIN_OF_TEXT),
    eosIds: collectEosIds([], idOf),
    addBosDefault: true,
  };
}

/** Token bytes by rank; every rank from 0 up must appear exactly once. */
function readRanks(path: string, text: string): Buffer[] {
  const byRank: Buffer[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (line.length === 0) return;
    const fields = line.split(" ");
    const rank = Number(fields[1]);
    // A rank beyond the line count could not be filled, so refuse it before it makes a huge sparse array.
    if (fields.length !== 2 || fields[0].length === 0 || !BASE64.test(fields[0]) || !/^\d+$/.test(fields[1]) || rank >= lines.length) {
      throw new ModelFormatError(`${path}: line ${i + 1} is not "base64 rank"`);
    }
    if (byRank[rank] !== undefined) throw new ModelFormatError(`${path}: line ${i + 1}: rank ${rank} appears twice`);
    byRank[rank] = Buffer.from(fields[0], "base64");
  });
  for (let rank = 0; rank < byRank.length; rank++) {
    if (byRank[rank] === undefined) throw new ModelFormatError(`${path}: rank ${rank} is missing`);
  }
  if (byRank.length === 0) throw new ModelFormatError(`${path}: no ranks`);
  return byRank;
}
