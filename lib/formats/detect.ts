/**
 * Recognises what a path holds (GGUF, HF directory, Meta checkpoint directory, llama2.c .bin, serialized model) and
 * parses it.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError } from "../errors";
import { BinaryFile } from "./binary-file";
import { GGUF_MAGIC, parseGgufModel } from "./gguf";
import { parseHfModel } from "./hf";
import { looksLikeLlama2c, parseLlama2cModel } from "./llama2c";
import { parseMetaModel } from "./meta";
import { hasSerializedMagic, parseSerializedModel } from "./serialized";
import { tokenizerSourceFromFile } from "./tokenizer-file";
import type { ModelDescriptor } from "./types";

export interface ParseModelOptions {
  /** A tokenizer file to use instead of the model's own (its kind is told from its content). */
  tokenizer?: string;
}

const NOT_A_MODEL = "is not a model file this library reads (GGUF, HF directory, Meta checkpoint directory, llama2.c .bin, serialized model)";

function parseDirectory(dir: string): ModelDescriptor {
  if (fs.existsSync(nodePath.join(dir, "config.json"))) return parseHfModel(dir);
  const hasCheckpoint = fs.readdirSync(dir).some((f) => /^consolidated\.\d+\.pth$/.test(f));
  if (hasCheckpoint && fs.existsSync(nodePath.join(dir, "params.json"))) return parseMetaModel(dir);
  throw new ModelFormatError(`${dir}: ${NOT_A_MODEL}: the directory has neither config.json nor params.json + consolidated.*.pth`);
}

function parseFile(path: string): ModelDescriptor {
  const kind = BinaryFile.with(path, (file) => {
    if (file.size >= 4 && file.read(0, 4, "magic").toString("latin1") === GGUF_MAGIC) return "gguf";
    if (hasSerializedMagic(file)) return "serialized";
    return looksLikeLlama2c(file) ? "llama2c" : undefined;
  });
  if (kind === "gguf") return parseGgufModel(path);
  if (kind === "serialized") return parseSerializedModel(path);
  if (kind === "llama2c") return parseLlama2cModel(path);
  throw new ModelFormatError(`${path} ${NOT_A_MODEL}`);
}

/** Parses the model at `pathOrDir` into a descriptor; `options.tokenizer` replaces the model's tokenizer. */
export async function parseModel(pathOrDir: string, options: ParseModelOptions = {}): Promise<ModelDescriptor> {
  const path = nodePath.resolve(pathOrDir);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch (err) {
    throw new ModelFormatError(`${path}: cannot open: ${(err as Error).message}`, { cause: err });
  }
  const model = stat.isDirectory() ? parseDirectory(path) : parseFile(path);
  if (options.tokenizer !== undefined) model.tokenizer = tokenizerSourceFromFile(options.tokenizer);
  return model;
}
