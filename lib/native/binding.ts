/**
 * The shape of the compiled addon (native/addon/). Only lib/native/ touches it; everything above speaks the
 * typed API. The addon is loaded lazily so that importing the package never fails on a machine without it.
 */
import path from "node:path";

/** Engine weight type codes: the order of `enum llm_type` in native/engine/tensor.h. */
export const NATIVE_TYPE_CODES = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_K: 5, q6_K: 6 } as const;

export interface NativeTensorSpec {
  name: string;
  file: number;
  offset: number;
  /** NATIVE_TYPE_CODES value. */
  type: number;
  shape: number[];
}

export interface NativeModelSpec {
  files: string[];
  tensors: NativeTensorSpec[];
  config: {
    dim: number;
    hiddenDim: number;
    layers: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    vocabSize: number;
    normEps: number;
    /** true: pairs (2i, 2i+1); false: pairs (i, i + headDim/2). */
    ropeInterleaved: boolean;
    /** headDim/2 inverse frequencies (rope theta and any scaling already applied). */
    ropeFreqs: Float32Array;
  };
  threads: number;
  /** Where the weights live and the forward passes run; default "cpu". */
  device?: "cpu" | "cuda";
  /** The CUDA device index, for device "cuda"; default 0. */
  gpu?: number;
}

/** Where a model runs: the CPU, or a CUDA GPU (its index and name). */
export interface NativeDevice {
  kind: "cpu" | "cuda";
  gpu?: number;
  name?: string;
}

/** Whether the addon was built with the CUDA backend, and how many GPUs it can use now (with the reason for none). */
export interface NativeCudaInfo {
  compiled: boolean;
  devices: number;
  reason?: string;
}

export interface NativeDecodeOptions {
  /** Which logits to return: none, the last position's, or every position's (n × vocab). Default "last". */
  logits?: "none" | "last" | "all";
  /** When > 0, also return the ids of the k largest last-position logits, largest first. */
  topK?: number;
}

export interface NativeDecodeResult {
  logits?: Float32Array;
  top?: Int32Array;
}

export interface NativeContext {
  readonly contextSize: number;
  /**
   * Runs tokens at positions pos.. pos+n-1 through the model (one batch: matrix-matrix products), writing
   * their keys/values into the cache. Runs on a worker thread; rejects if another call on this model is
   * still running on this context, or if pos + n > contextSize.
   */
  decode(tokens: Int32Array, pos: number, options?: NativeDecodeOptions): Promise<NativeDecodeResult>;
  /**
   * The engine's own greedy loop, for measuring what the JavaScript loop costs: prefill `tokens` at `pos`, then
   * n times pick the argmax and run it. Resolves with the n generated ids.
   */
  greedy(tokens: Int32Array, pos: number, n: number): Promise<Int32Array>;
  /** Makes this cache's first nPositions a copy of source's (same model; neither may be decoding). */
  copyFrom(source: NativeContext, nPositions: number): void;
  /** The keys and values of the first nPositions: every layer's keys, then every layer's values (f32). */
  readState(nPositions: number): ArrayBuffer;
  /** Restores what readState returned. */
  writeState(nPositions: number, state: Uint8Array): void;
  /** Frees the KV cache. Idempotent. */
  close(): void;
}

export interface NativeBatchEntry extends NativeDecodeOptions {
  context: NativeContext;
  tokens: Int32Array;
  pos: number;
}

export interface NativeModel {
  readonly device: NativeDevice;
  createContext(contextSize: number): NativeContext;
  /**
   * Runs several sequences (distinct contexts of this model) in one forward pass: one matrix product per weight
   * for all their tokens, attention per sequence. Each result equals what decode() on that context alone gives.
   */
  decodeBatch(entries: NativeBatchEntry[]): Promise<NativeDecodeResult[]>;
  /** Unmaps the weights; the model's contexts must be closed first. Idempotent. */
  close(): void;
}

export interface NativeBinding {
  Model: new (spec: NativeModelSpec) => NativeModel;
  /** Physical CPU cores (not hyperthreads), the default thread count. */
  physicalCores(): number;
  /** Which kernel variant the CPU dispatch picked, e.g. "avx2" or "scalar". */
  cpuFeatures(): string;
  /** The CUDA backend: compiled in, and GPUs usable. */
  cudaInfo(): NativeCudaInfo;
  /** Encodes rows × cols f32 values as `typeCode` blocks (ggml's reference quantizers), on a worker thread. */
  quantize(typeCode: number, src: Float32Array, rows: number, cols: number): Promise<Uint8Array>;
  /** Decodes rows × cols values of `typeCode` blocks to f32, on a worker thread. */
  dequantize(typeCode: number, src: Uint8Array, rows: number, cols: number): Promise<Float32Array>;
  /** The engine's weight types and their block layouts. */
  typeInfo(): NativeTypeInfo[];
}

export interface NativeTypeInfo {
  code: number;
  name: string;
  blockSize: number;
  blockBytes: number;
}

let binding: NativeBinding | undefined;

export function loadBinding(): NativeBinding {
  if (!binding) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require("node-gyp-build")(path.resolve(__dirname, "../../..")) as NativeBinding;
  }
  return binding;
}
