/**
 * GGUF (v2, v3): the header reader (metadata key/values and tensor infos, reused by quantization and conversion)
 * and the Llama model descriptor built from it.
 */
import * as nodePath from "node:path";
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { BinaryFile, type Cursor } from "./binary-file";
import { GGML_TYPES } from "./ggml-types";
import { checkConfig, checkTensors, dominantType } from "./llama-tensors";
import type { ModelConfig, ModelDescriptor, RopeScaling, TensorInfo } from "./types";

export interface GgufTensor {
  name: string;
  /** GGUF order: ne[0] (the innermost, contiguous dimension) first. */
  dims: number[];
  ggmlType: number;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

export interface GgufFile {
  path: string;
  version: 2 | 3;
  alignment: number;
  /** Absolute offset of the (aligned) tensor data section. */
  dataOffset: number;
  /** Integers are numbers; a 64-bit value beyond 2^53 stays a bigint. Arrays are plain arrays. */
  metadata: Map<string, unknown>;
  /** How each value is stored, so that it can be written back as it was: "u32", "string", "array:f32", ... */
  metadataTypes: Map<string, string>;
  tensors: GgufTensor[];
}

export const GGUF_MAGIC = "GGUF";
const DEFAULT_ALIGNMENT = 32;
const MAX_DIMS = 4;
const MAX_ARRAY_NESTING = 8;

enum ValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Value type names as gguf-writer spells them. */
const VALUE_TYPE_NAMES: Record<ValueType, string> = {
  [ValueType.UINT8]: "u8", [ValueType.INT8]: "i8", [ValueType.UINT16]: "u16", [ValueType.INT16]: "i16",
  [ValueType.UINT32]: "u32", [ValueType.INT32]: "i32", [ValueType.FLOAT32]: "f32", [ValueType.BOOL]: "bool",
  [ValueType.STRING]: "string", [ValueType.ARRAY]: "array", [ValueType.UINT64]: "u64", [ValueType.INT64]: "i64", [ValueType.FLOAT64]: "f64",
};

/** The fewest bytes one value of each type occupies, to bound counts before allocating. */
const MIN_VALUE_BYTES: Record<ValueType, number> = {
  [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2,
  [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4, [ValueType.BOOL]: 1,
  [ValueType.STRING]: 8, [ValueType.ARRAY]: 12, [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8,
};

/** Reads a count of items taking at least `minBytes` each, refusing one the rest of the file cannot hold. */
function readCount(c: Cursor, minBytes: number, what: string): number {
  const count = c.u64(what);
  if (count * BigInt(minBytes) > BigInt(c.remaining)) {
    throw new ModelFormatError(`${c.file.path}: truncated or corrupt: ${what} says ${count} items, more than the rest of the file can hold`);
  }
  return Number(count);
}

function readString(c: Cursor, what: string): string {
  return c.utf8(readCount(c, 1, what), what);
}

function int64Value(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function readValue(c: Cursor, type: number, key: string, depth: number): unknown {
  switch (type) {
    case ValueType.UINT8: return c.u8(key);
    case ValueType.INT8: return c.i8(key);
    case ValueType.UINT16: return c.u16(key);
    case ValueType.INT16: return c.i16(key);
    case ValueType.UINT32: return c.u32(key);
    case ValueType.INT32: return c.i32(key);
    case ValueType.FLOAT32: return c.f32(key);
    case ValueType.FLOAT64: return c.f64(key);
    case ValueType.UINT64: return int64Value(c.u64(key));
    case ValueType.INT64: return int64Value(c.i64(key));
    case ValueType.BOOL: {
      const b = c.u8(key);
      if (b > 1) throw new ModelFormatError(`${c.file.path}: metadata ${key}: bool byte is ${b}`);
      return b === 1;
    }
    case ValueType.STRING: return readString(c, key);
    case ValueType.ARRAY: {
      if (depth >= MAX_ARRAY_NESTING) throw new ModelFormatError(`${c.file.path}: metadata ${key}: arrays nested too deep`);
      const itemType = c.u32(key);
      const minBytes = MIN_VALUE_BYTES[itemType as ValueType];
      if (minBytes === undefined) throw new ModelFormatError(`${c.file.path}: metadata ${key}: unknown array item type ${itemType}`);
      const count = readCount(c, minBytes, key);
      const items = new Array<unknown>(count);
      for (let i = 0; i < count; i++) items[i] = readValue(c, itemType, key, depth + 1);
      return items;
    }
    default:
      throw new ModelFormatError(`${c.file.path}: metadata ${key}: unknown value type ${type}`);
  }
}

/** The item type name of the array value starting at `offset` (already validated by readValue). */
function arrayItemTypeName(file: BinaryFile, offset: number): string {
  return VALUE_TYPE_NAMES[file.read(offset, 4, "array item type").readUInt32LE(0) as ValueType];
}

/** One tensor info record; its offset is relative to the data section. */
function readTensorInfo(c: Cursor): { name: string; dims: number[]; ggmlType: number; relativeOffset: number } {
  const path = c.file.path;
  const name = readString(c, "tensor name");
  const nDims = c.u32(`tensor ${name} dimension count`);
  if (nDims < 1 || nDims > MAX_DIMS) throw new ModelFormatError(`${path}: tensor ${name} has ${nDims} dimensions (1..${MAX_DIMS} allowed)`);
  const dims: number[] = [];
  for (let i = 0; i < nDims; i++) {
    const d = c.u64Number(`tensor ${name} dimension ${i}`);
    if (d < 1) throw new ModelFormatError(`${path}: tensor ${name} has dimension ${i} of size 0`);
    dims.push(d);
  }
  const ggmlType = c.u32(`tensor ${name} type`);
  const relativeOffset = c.u64Number(`tensor ${name} offset`);
  return { name, dims, ggmlType, relativeOffset };
}

function tensorByteLength(path: string, name: string, dims: number[], ggmlType: number): number {
  const type = GGML_TYPES.get(ggmlType);
  if (!type) throw new ModelFormatError(`${path}: tensor ${name} has unknown ggml type ${ggmlType}`);
  if (dims[0] % type.blockSize !== 0) {
    throw new ModelFormatError(`${path}: tensor ${name}: row length ${dims[0]} is not a multiple of the ${type.name} block size ${type.blockSize}`);
  }
  const elements = dims.reduce((a, b) => a * b, 1);
  const bytes = (elements / type.blockSize) * type.blockBytes;
  if (!Number.isSafeInteger(bytes)) throw new ModelFormatError(`${path}: tensor ${name} is impossibly large`);
  return bytes;
}

/** Reads a GGUF header: metadata and tensor infos, with every count, length and offset checked against the file. */
export function readGguf(path: string): GgufFile {
  return BinaryFile.with(path, (file) => {
    const c = file.cursor(0);
    const magic = file.size >= 4 ? c.bytes(4, "magic").toString("latin1") : "";
    if (magic !== GGUF_MAGIC) throw new ModelFormatError(`${path}: not a GGUF file (bad magic)`);
    const version = c.u32("version");
    if (version === 1) throw new UnsupportedModelError(`${path}: GGUF version 1 is not supported (re-convert to v3)`);
    if (version !== 2 && version !== 3) {
      const swapped = version > 0xffff ? " (a big-endian GGUF?)" : "";
      throw new UnsupportedModelError(`${path}: GGUF version ${version} is not supported${swapped}`);
    }
    const tensorCount = readCount(c, 24, "tensor count");
    const kvCount = readCount(c, 13, "metadata key/value count");

    const metadata = new Map<string, unknown>();
    const metadataTypes = new Map<string, string>();
    for (let i = 0; i < kvCount; i++) {
      const key = readString(c, `metadata key #${i}`);
      if (metadata.has(key)) throw new ModelFormatError(`${path}: metadata key ${key} appears twice`);
      const type = c.u32(`metadata ${key} type`);
      const start = c.position;
      metadata.set(key, readValue(c, type, key, 0));
      metadataTypes.set(key, type === ValueType.ARRAY ? `array:${arrayItemTypeName(file, start)}` : VALUE_TYPE_NAMES[type as ValueType]);
    }

    const alignment = metadata.get("general.alignment") ?? DEFAULT_ALIGNMENT;
    if (typeof alignment !== "number" || !Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
      throw new ModelFormatError(`${path}: general.alignment ${String(alignment)} is not a power of 2`);
    }

    const infos = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const info = readTensorInfo(c);
      if (names.has(info.name)) throw new ModelFormatError(`${path}: tensor ${info.name} appears twice`);
      names.add(info.name);
      infos.push(info);
    }

    const dataOffset = Math.ceil(c.position / alignment) * alignment;
    const tensors = infos.map(({ name, dims, ggmlType, relativeOffset }): GgufTensor => {
      if (relativeOffset % alignment !== 0) {
        throw new ModelFormatError(`${path}: tensor ${name} offset ${relativeOffset} is not aligned to ${alignment}`);
      }
      const byteLength = tensorByteLength(path, name, dims, ggmlType);
      const offset = dataOffset + relativeOffset;
      file.checkRange(offset, byteLength, `tensor ${name} data`);
      return { name, dims, ggmlType, offset, byteLength };
    });
    return { path, version, alignment, dataOffset, metadata, metadataTypes, tensors };
  });
}

/** The number under `key` (or `fallback` when absent); anything else is a ModelFormatError. */
function metaNumber(g: GgufFile, key: string, fallback?: number): number {
  const v = g.metadata.get(key) ?? fallback;
  if (typeof v !== "number") {
    throw new ModelFormatError(`${g.path}: metadata ${key} is ${v === undefined ? "missing" : `not a number (${String(v)})`}`);
  }
  return v;
}

function ggufRopeScaling(g: GgufFile): RopeScaling | undefined {
  const type = g.metadata.get("llama.rope.scaling.type");
  if (type === undefined || type === "none") return undefined;
  if (type === "linear") return { type: "linear", factor: metaNumber(g, "llama.rope.scaling.factor") };
  throw new UnsupportedModelError(`${g.path}: RoPE scaling type ${String(type)} is not supported`);
}

function tokenIds(g: GgufFile, key: string): number[] {
  const v = g.metadata.get(key);
  return typeof v === "number" ? [v] : [];
}

/** "Q4_0 × 57, F32 × 17, Q6_K × 1": the tensor types of a file, most common first. */
function typeCounts(g: GgufFile): string {
  const counts = new Map<string, number>();
  for (const t of g.tensors) {
    const name = GGML_TYPES.get(t.ggmlType)!.name;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} × ${n}`).join(", ");
}

const SUPPORTED_TYPE_NAMES = [...GGML_TYPES.values()].filter((t) => t.tensorType).map((t) => t.name).join(", ");

/** The headDim/2 f32 divisors of a rope_freqs.weight tensor (llama.cpp's encoding of Llama 3.1 RoPE scaling). */
function readRopeFreqFactors(path: string, t: TensorInfo, headDim: number): Float32Array {
  if (t.type !== "f32" || t.shape.length !== 1 || t.shape[0] !== headDim / 2) {
    throw new ModelFormatError(`${path}: tensor rope_freqs.weight must be ${headDim / 2} f32 values (found ${t.type} [${t.shape.join(", ")}])`);
  }
  const bytes = BinaryFile.with(path, (file) => file.read(t.offset, t.byteLength, "tensor rope_freqs.weight"));
  const factors = new Float32Array(t.shape[0]);
  for (let i = 0; i < factors.length; i++) factors[i] = bytes.readFloatLE(4 * i);
  if (!factors.every((f) => f > 0 && Number.isFinite(f))) throw new ModelFormatError(`${path}: rope_freqs.weight holds a factor that is not positive`);
  return factors;
}

/** Builds the model descriptor of a GGUF Llama model (F32/F16/BF16 and Q8_0/Q4_0/Q4_K/Q6_K tensors). */
export function parseGgufModel(file: string): ModelDescriptor {
  const path = nodePath.resolve(file);
  const g = readGguf(path);
  const arch = g.metadata.get("general.architecture");
  if (arch === undefined) throw new ModelFormatError(`${path}: metadata general.architecture is missing`);
  if (arch !== "llama") throw new UnsupportedModelError(`${path}: architecture ${String(arch)} is not supported (only llama)`);
  if (g.tensors.length === 0) {
    throw new ModelFormatError(`${path}: has no tensors (a vocabulary-only GGUF?); it holds no model weights`);
  }
  if ((g.metadata.get("llama.expert_count") ?? 0) !== 0) {
    throw new UnsupportedModelError(`${path}: mixture-of-experts llama models are not supported`);
  }

  const tensors: TensorInfo[] = [];
  let ropeFreqs: TensorInfo | undefined;
  for (const t of g.tensors) {
    const type = GGML_TYPES.get(t.ggmlType)!;
    if (!type.tensorType) {
      throw new UnsupportedModelError(
        `${path}: tensor ${t.name} has type ${type.name}, not supported (supported: ${SUPPORTED_TYPE_NAMES}; the file holds ${typeCounts(g)})`,
      );
    }
    const info: TensorInfo = { name: t.name, file: 0, offset: t.offset, byteLength: t.byteLength, type: type.tensorType, shape: [...t.dims].reverse() };
    if (t.name === "rope_freqs.weight") ropeFreqs = info;
    else tensors.push(info);
  }

  const dim = metaNumber(g, "llama.embedding_length");
  const heads = metaNumber(g, "llama.attention.head_count");
  const headDim = metaNumber(g, "llama.attention.key_length", dim / heads);
  const tokens = g.metadata.get("tokenizer.ggml.tokens");
  const embedding = tensors.find((t) => t.name === "token_embd.weight");
  const config: ModelConfig = {
    architecture: "llama",
    dim,
    hiddenDim: metaNumber(g, "llama.feed_forward_length"),
    layers: metaNumber(g, "llama.block_count"),
    heads,
    kvHeads: metaNumber(g, "llama.attention.head_count_kv", heads),
    headDim,
    vocabSize: Array.isArray(tokens) ? tokens.length : (embedding?.shape[0] ?? 0),
    contextLength: metaNumber(g, "llama.context_length"),
    normEps: metaNumber(g, "llama.attention.layer_norm_rms_epsilon"),
    ropeTheta: metaNumber(g, "llama.rope.freq_base", 10000),
    // With a rope_freqs.weight tensor (Llama 3.1 files) the scaling lives in that tensor, not in the keys.
    ropeScaling: ropeFreqs ? undefined : ggufRopeScaling(g),
    ropeLayout: "interleaved",
    tiedEmbeddings: !tensors.some((t) => t.name === "output.weight"),
  };
  if (ropeFreqs) config.ropeFreqFactors = readRopeFreqFactors(path, ropeFreqs, headDim);
  checkConfig(path, config);
  checkTensors(path, config, tensors);
  // After the checks: a head size derived from a corrupt embedding_length is a format error, not partial rotary.
  const ropeDims = metaNumber(g, "llama.rope.dimension_count", headDim);
  if (!(Number.isInteger(ropeDims) && ropeDims > 0 && ropeDims <= headDim)) {
    throw new ModelFormatError(`${path}: rope.dimension_count ${ropeDims} is not a size from 1 to the head size ${headDim}`);
  }
  if (ropeDims !== headDim) {
    throw new UnsupportedModelError(`${path}: partial rotary embedding (rope.dimension_count ${ropeDims} < head size ${headDim}) is not supported`);
  }

  const metadata: Record<string, unknown> = { "gguf.version": g.version };
  // Large arrays (the vocabulary) stay in the tokenizer source; metadata keeps what is worth showing.
  for (const [key, value] of g.metadata) if (!Array.isArray(value)) metadata[key] = value;
  if (ropeFreqs) metadata["rope_freqs.weight"] = ropeFreqs;

  const bos = g.metadata.get("tokenizer.ggml.bos_token_id");
  const eosIds = [...new Set([...tokenIds(g, "tokenizer.ggml.eos_token_id"), ...tokenIds(g, "tokenizer.ggml.eot_token_id")])];
  return {
    format: "gguf",
    files: [path],
    config,
    tensors,
    tokenizer: { kind: "gguf", path, metadata: g.metadata, metadataTypes: g.metadataTypes },
    bosId: typeof bos === "number" ? bos : undefined,
    eosIds,
    weightType: dominantType(tensors),
    metadata,
  };
}
