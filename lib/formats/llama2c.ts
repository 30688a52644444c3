/**
 * llama2.c model files (f32): the legacy v0 layout (a 7-int32 header, weights in run.c order, freq_cis tables,
 * a negative vocab_size meaning an unshared classifier at the end) and version 1 of the "ak42" header.
 */
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { BinaryFile } from "./binary-file";
import { checkConfig } from "./llama-tensors";
import type { ModelConfig, ModelDescriptor, TensorInfo, TokenizerSource } from "./types";

/** "ak42" as a little-endian uint32: the magic of llama2.c's versioned exports. */
const AK42_MAGIC = 0x616b3432;
const V0_HEADER_BYTES = 7 * 4;
const V1_HEADER_BYTES = 256;
const F32_BYTES = 4;
const NORM_EPS = 1e-5;

export interface Llama2cHeader {
  version: 0 | 1;
  headerBytes: number;
  dim: number;
  hiddenDim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
}

/** A run of weights in file order: one tensor, or one per layer (`blk.N.` prefixed). */
interface Block {
  name: string;
  shape: number[];
  perLayer: boolean;
}

/** Reads the header of a llama2.c file; throws for headers that are not llama2.c at all. */
export function readLlama2cHeader(file: BinaryFile): Llama2cHeader {
  const c = file.cursor(0);
  const first = c.u32("header");
  let version: 0 | 1 = 0;
  if (first === AK42_MAGIC) {
    const v = c.i32("version");
    if (v !== 1) throw new UnsupportedModelError(`${file.path}: llama2.c export version ${v} is not supported (only v0 and v1, f32)`);
    version = 1;
  } else {
    c.position = 0;
  }
  const fields = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"].map((name) => ({ name, value: c.i32(name) }));
  const sharedFlag = version === 1 ? c.u8("shared_classifier") : undefined;
  const [dim, hiddenDim, layers, heads, kvHeads, vocab, seqLen] = fields.map((f) => f.value);
  for (const f of fields) {
    if (f.value === 0 || (f.value < 0 && f.name !== "vocab_size")) {
      throw new ModelFormatError(`${file.path}: llama2.c header ${f.name} is ${f.value}`);
    }
  }
  return {
    version,
    headerBytes: version === 1 ? V1_HEADER_BYTES : V0_HEADER_BYTES,
    dim, hiddenDim, layers, heads, kvHeads,
    vocabSize: Math.abs(vocab),
    seqLen,
    // v0 marks an unshared classifier with a negative vocab_size; v1 has a flag byte.
    sharedClassifier: version === 1 ? sharedFlag === 1 : vocab > 0,
  };
}

/** Upper bounds no real llama2.c model reaches; they keep arbitrary files from passing as one. */
const PLAUSIBLE_MAX = { dim: 1 << 16, hiddenDim: 1 << 18, layers: 1024, heads: 1024, vocabSize: 1 << 22, seqLen: 1 << 24 };

/** Whether the file starts with a llama2.c header whose numbers fit together (used to recognise .bin files). */
export function looksLikeLlama2c(file: BinaryFile): boolean {
  if (file.size < V0_HEADER_BYTES) return false;
  let h: Llama2cHeader;
  try {
    h = readLlama2cHeader(file);
  } catch (err) {
    if (err instanceof UnsupportedModelError) return true; // an "ak42" file of another version
    return false;
  }
  const within = (Object.keys(PLAUSIBLE_MAX) as (keyof typeof PLAUSIBLE_MAX)[]).every((k) => h[k] <= PLAUSIBLE_MAX[k]);
  return within && h.kvHeads <= h.heads && h.dim % h.heads === 0 && h.heads % h.kvHeads === 0;
}

function blocks(h: Llama2cHeader): Block[] {
  const kvDim = (h.dim / h.heads) * h.kvHeads;
  const b = (name: string, shape: number[], perLayer = true): Block => ({ name, shape, perLayer });
  const embedding = b("token_embd.weight", [h.vocabSize, h.dim], false);
  const attnNorm = b("attn_norm.weight", [h.dim]);
  const ffnNorm = b("ffn_norm.weight", [h.dim]);
  const outputNorm = b("output_norm.weight", [h.dim], false);
  const matrices = [
    b("attn_q.weight", [h.dim, h.dim]),
    b("attn_k.weight", [kvDim, h.dim]),
    b("attn_v.weight", [kvDim, h.dim]),
    b("attn_output.weight", [h.dim, h.dim]),
  ];
  const ffn = [b("ffn_gate.weight", [h.hiddenDim, h.dim]), b("ffn_down.weight", [h.dim, h.hiddenDim]), b("ffn_up.weight", [h.hiddenDim, h.dim])];
  const classifier = h.sharedClassifier ? [] : [b("output.weight", [h.vocabSize, h.dim], false)];
  if (h.version === 1) return [attnNorm, ffnNorm, outputNorm, embedding, ...matrices, ...ffn, ...classifier];
  // v0 still carries run.c's old freq_cis_real/imag tables (seq_len × head_size/2 each), skipped here.
  const freqCis = b("freq_cis", [2, h.seqLen, h.dim / h.heads / 2], false);
  return [embedding, attnNorm, ...matrices, ffnNorm, ...ffn, outputNorm, freqCis, ...classifier];
}

const blockBytes = (block: Block): number => block.shape.reduce((a, d) => a * d, F32_BYTES);

/**
 * The file size the header implies, by arithmetic alone (a float: a corrupt header may imply more than 2^53), so
 * that it is checked against the real size before one tensor per layer is laid out.
 */
function llama2cExpectedBytes(h: Llama2cHeader): number {
  return blocks(h).reduce((n, block) => n + blockBytes(block) * (block.perLayer ? h.layers : 1), h.headerBytes);
}

/** Lays the weights out from the header (whose implied size has been checked against the file). */
function llama2cLayout(h: Llama2cHeader): TensorInfo[] {
  const tensors: TensorInfo[] = [];
  let offset = h.headerBytes;
  for (const block of blocks(h)) {
    const byteLength = blockBytes(block);
    for (let layer = 0; layer < (block.perLayer ? h.layers : 1); layer++) {
      const name = block.perLayer ? `blk.${layer}.${block.name}` : block.name;
      if (name !== "freq_cis") tensors.push({ name, file: 0, offset, byteLength, type: "f32", shape: block.shape });
      offset += byteLength;
    }
  }
  return tensors;
}

function llama2cTokenizer(modelPath: string): TokenizerSource | undefined {
  const beside = nodePath.join(nodePath.dirname(modelPath), "tokenizer.bin");
  return fs.existsSync(beside) ? { kind: "llama2c", path: beside } : undefined;
}

/** Builds the model descriptor of a llama2.c .bin; its tokenizer is tokenizer.bin beside it, when there is one. */
export function parseLlama2cModel(file: string): ModelDescriptor {
  const path = nodePath.resolve(file);
  const { header, size } = BinaryFile.with(path, (f) => ({ header: readLlama2cHeader(f), size: f.size }));
  const config: ModelConfig = {
    architecture: "llama",
    dim: header.dim,
    hiddenDim: header.hiddenDim,
    layers: header.layers,
    heads: header.heads,
    kvHeads: header.kvHeads,
    headDim: header.dim / header.heads,
    vocabSize: header.vocabSize,
    contextLength: header.seqLen,
    normEps: NORM_EPS,
    ropeTheta: 10000,
    ropeLayout: "interleaved",
    tiedEmbeddings: header.sharedClassifier,
  };
  checkConfig(path, config);
  const expectedBytes = llama2cExpectedBytes(header);
  if (size !== expectedBytes) {
    const what = size < expectedBytes ? "truncated" : "longer than its header implies";
    throw new ModelFormatError(`${path}: ${what}: the llama2.c header implies ${expectedBytes} bytes, the file has ${size}`);
  }
  const tensors = llama2cLayout(header);
  return {
    format: "llama2c",
    files: [path],
    config,
    tensors,
    tokenizer: llama2cTokenizer(path),
    bosId: 1,
    eosIds: [2],
    weightType: "f32",
    metadata: { llama2cVersion: header.version, sharedClassifier: header.sharedClassifier },
  };
}
