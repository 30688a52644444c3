/** Tells which kind of tokenizer a file holds, from its content (names lie: Llama 3's tokenizer.model is tiktoken). */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError } from "../errors";
import { BinaryFile } from "./binary-file";
import { GGUF_MAGIC, readGguf } from "./gguf";
import type { TokenizerSource } from "./types";

const SNIFF_BYTES = 4096;

/** llama2.c tokenizer.bin: int32 max_token_length, then {f32 score, int32 length, bytes} per token. */
function looksLikeLlama2c(head: Buffer): boolean {
  if (head.length < 12) return false;
  const maxLength = head.readInt32LE(0);
  const firstLength = head.readInt32LE(8);
  return maxLength > 0 && maxLength <= 1024 && Number.isFinite(head.readFloatLE(4)) && firstLength >= 0 && firstLength <= maxLength;
}

/** tiktoken ranks file: lines of "base64 rank". */
function looksLikeTiktoken(head: Buffer): boolean {
  const firstLine = head.toString("latin1").split("\n", 1)[0];
  return /^[A-Za-z0-9+/]+=*\s+\d+\r?$/.test(firstLine);
}

/**
 * The tokenizer source for a file, by content: GGUF → its vocabulary; JSON → HF tokenizer.json (with
 * tokenizer_config.json beside `path`, when present); llama2.c tokenizer.bin; SentencePiece protobuf; tiktoken.
 */
export function tokenizerSourceFromFile(file: string): TokenizerSource {
  const path = nodePath.resolve(file);
  const head = BinaryFile.with(path, (f) => f.read(0, Math.min(f.size, SNIFF_BYTES), "start"));

  if (head.subarray(0, 4).toString("latin1") === GGUF_MAGIC) {
    const { metadata, metadataTypes } = readGguf(path);
    return { kind: "gguf", path, metadata, metadataTypes };
  }
  if (head.toString("utf8").trimStart().startsWith("{")) {
    const configPath = nodePath.join(nodePath.dirname(path), "tokenizer_config.json");
    return fs.existsSync(configPath) ? { kind: "hf-json", path, configPath } : { kind: "hf-json", path };
  }
  if (looksLikeLlama2c(head)) return { kind: "llama2c", path };
  // A SentencePiece ModelProto starts with field 1 (pieces), wire type 2: byte 0x0a.
  if (head[0] === 0x0a) return { kind: "sentencepiece", path };
  if (looksLikeTiktoken(head)) return { kind: "tiktoken", path };
  throw new ModelFormatError(
    `${path}: not a tokenizer file this library reads (GGUF, tokenizer.json, SentencePiece tokenizer.model, tiktoken, llama2.c tokenizer.bin)`,
  );
}
