/** Tells which kind of tokenizer a file holds, from its content (names lie: Llama 3's tokenizer.model is tiktoken). */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError } from "../errors";
import { BinaryFile } from "./binary-file";
import { GGUF_MAGIC, readGguf } from "./gguf";
import type { TokenizerSource } from "./types";

const SNIFF_BYTES = 4096;
/** A tokenizer path stored as text (a git symlink checked out without symlink support) is a short line. */
const MAX_LINK_STUB_BYTES = 1024;

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

/** A short single-line text file naming another file relative to it. */
function linkStubTarget(path: string, head: Buffer, size: number): string | undefined {
  if (size > MAX_LINK_STUB_BYTES || head.includes(0)) return undefined;
  const text = head.toString("utf8").trim();
  if (text === "" || text.includes("\n") || text.startsWith("{")) return undefined;
  const target = nodePath.resolve(nodePath.dirname(path), text);
  return fs.existsSync(target) && fs.statSync(target).isFile() ? target : undefined;
}

/**
 * The tokenizer source for a file, by content: GGUF → its vocabulary; JSON → HF tokenizer.json (with
 * tokenizer_config.json beside `path`, when present); llama2.c tokenizer.bin; SentencePiece protobuf; tiktoken.
 */
export function tokenizerSourceFromFile(file: string): TokenizerSource {
  const path = nodePath.resolve(file);
  const { head, size } = BinaryFile.with(path, (f) => ({ head: f.read(0, Math.min(f.size, SNIFF_BYTES), "start"), size: f.size }));
  const target = linkStubTarget(path, head, size);
  const contentPath = target ?? path;
  const content = target ? BinaryFile.with(target, (f) => f.read(0, Math.min(f.size, SNIFF_BYTES), "start")) : head;

  if (content.subarray(0, 4).toString("latin1") === GGUF_MAGIC) {
    const { metadata, metadataTypes } = readGguf(contentPath);
    return { kind: "gguf", metadata, metadataTypes };
  }
  if (content.toString("utf8").trimStart().startsWith("{")) {
    const configPath = nodePath.join(nodePath.dirname(path), "tokenizer_config.json");
    return fs.existsSync(configPath) ? { kind: "hf-json", path: contentPath, configPath } : { kind: "hf-json", path: contentPath };
  }
  if (looksLikeLlama2c(content)) return { kind: "llama2c", path: contentPath };
  // A SentencePiece ModelProto starts with field 1 (pieces), wire type 2: byte 0x0a.
  if (content[0] === 0x0a) return { kind: "sentencepiece", path: contentPath };
  if (looksLikeTiktoken(content)) return { kind: "tiktoken", path: contentPath };
  throw new ModelFormatError(
    `${path}: not a tokenizer file this library reads (GGUF, tokenizer.json, SentencePiece tokenizer.model, tiktoken, llama2.c tokenizer.bin)`,
  );
}
