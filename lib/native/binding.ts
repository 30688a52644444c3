/**
 * The shape of the compiled addon (native/addon/), and which binary of it to load. Only lib/native/ touches it;
 * everything above speaks the typed API. The addon is loaded lazily so that importing the package never fails on a
 * machine without it.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

export interface NativeTensorSpec {
  name: string;
  file: number;
  offset: number;
  /** The type's code in the engine's table (nativeTypeCode): ggml's number of it. */
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
  /** The KV pool's row type; default "f32" (loadModel passes its own default, "f16"). */
  kvCacheType?: KvCacheType;
  /** Positions the KV pool holds, rounded up to whole blocks; default 16384. */
  kvCacheTokens?: number;
  /** A custom op library (native/include/llama_napi_ops.h, an absolute path) and the ops its functions replace. */
  customOps?: { path: string; ops: string[] };
}

/** How the KV cache stores keys and values (native/engine/kv_cache.h). */
export type KvCacheType = "f32" | "f16" | "q8_0";
export const KV_CACHE_TYPES: readonly KvCacheType[] = ["f32", "f16", "q8_0"];

/** The KV pool of a model: its row type, positions per block, positions in all, and bytes per position. */
export interface NativeKvCacheInfo {
  type: KvCacheType;
  blockTokens: number;
  capacityTokens: number;
  /** Keys and values of every layer for one position. */
  bytesPerToken: number;
}

/**
 * The KV pool's blocks: owned by a sequence (used), owned by none but holding a prefix another sequence may adopt
 * (cached: handed out again, least recently used first, once no block is free), and free.
 */
export interface NativeKvCacheUsage {
  totalBlocks: number;
  usedBlocks: number;
  cachedBlocks: number;
  freeBlocks: number;
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
  /**
   * Which logits to return: none, the last position's, or every position's (n × vocab); "hidden": every position's
   * final-norm hidden state instead (n × dim, for embeddings; CPU only). Default "last".
   */
  logits?: "none" | "last" | "all" | "hidden";
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
  /**
   * Makes this cache's first nPositions the source's (same model; neither may be decoding), sharing its blocks:
   * whichever of the two writes into a shared block first copies it.
   */
  copyFrom(source: NativeContext, nPositions: number): void;
  /**
   * Makes the cache hold the longest prefix of `tokens` it can without evaluating anything (what it holds already,
   * then full blocks other sequences computed, from the pool's prefix index), at most tokens.length - 1 positions,
   * dropping what follows. Returns the positions held: decode the rest from there.
   */
  adoptPrefix(tokens: Int32Array): number;
  /**
   * The keys and values of the first nPositions (at most those the cache holds): every layer's keys, then every
   * layer's values, rows of `type` (default the pool's; another type is converted).
   */
  readState(nPositions: number, type?: KvCacheType): ArrayBuffer;
  /** Restores what readState returned: `tokens` are the ids at those positions, `type` the rows' (default the pool's). */
  writeState(nPositions: number, state: Uint8Array, tokens: Int32Array, type?: KvCacheType): void;
  /** Frees the KV cache. Idempotent. */
  close(): void;
}

export interface NativeBatchEntry extends NativeDecodeOptions {
  context: NativeContext;
  tokens: Int32Array;
  pos: number;
}

/** The engine's limits for one model on its device (native/engine/forward.h): JavaScript reads them, never restates them. */
export interface NativeLimits {
  /** The most tokens one forward pass holds on the model's device; longer batches run in several passes. */
  passTokens: number;
}

export interface NativeModel {
  readonly device: NativeDevice;
  readonly limits: NativeLimits;
  readonly kvCache: NativeKvCacheInfo;
  /** Bytes of the weights copied at load into the CPU kernels' repacked layout (0 on CUDA or with LLAMA_NAPI_REPACK=0). */
  readonly repackedBytes: number;
  /** The ops a custom library provides for this model's passes (NativeModelSpec.customOps); empty: all built in. */
  readonly customOps: string[];
  kvCacheUsage(): NativeKvCacheUsage;
  createContext(contextSize: number): NativeContext;
  /**
   * Runs several sequences (distinct contexts of this model) in one forward pass: one matrix product per weight
   * for all their tokens, attention per sequence. Each result equals what decode() on that context alone gives.
   */
  decodeBatch(entries: NativeBatchEntry[]): Promise<NativeDecodeResult[]>;
  /**
   * Scans every tensor of the spec for NaN and infinity as stored (each f32/f16/bf16 value, each quantized block's
   * f16 scales), on a worker thread with the model's threads; resolves with the first one's tensor (an index into
   * spec.tensors), element or block index, and whether it is a block scale; null when every value is finite.
   */
  checkTensors(): Promise<{ tensor: number; index: number; inScale: boolean } | null>;
  /** Unmaps the weights; the model's contexts must be closed first. Idempotent. */
  close(): void;
}

/**
 * The options of the engine's sampler (native/engine/sampler.h), already validated by lib/sampling/options.ts:
 * its ResolvedSampling with the bias as two arrays and logprobs -1 for none.
 */
export interface NativeSamplerOptions {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  typicalP: number;
  repeatPenalty: number;
  repeatLastN: number;
  frequencyPenalty: number;
  presencePenalty: number;
  biasIds: Int32Array;
  biasValues: Float64Array;
  seed: number;
  samplers: readonly string[];
  logprobs: number;
}

/** One sequence's sampler: options set once, the penalty history appended as tokens come. */
export interface NativeSampler {
  /** How many top ids of the unmodified logits, ranked, sample() can use instead of ranking them itself. */
  readonly candidatesNeeded: number;
  /** Whether sample() reads the logits (else the ranked ids alone will do). */
  readonly needsLogits: boolean;
  /** Whether the pick is always the top id (greedy, nothing changes the logits). */
  /** The penalty window in tokens (-1: every token); 0 when the penalties change nothing and accept() keeps nothing. */
  readonly historyWindow: number;
  /** Appends tokens to the history the penalties look at. */
  accept(tokens: Int32Array): void;
  resetHistory(): void;
  /**
   * One step: the logits (changed in place by the bias and the penalties) and optionally the top ids of the
   * unmodified logits, best first. Returns the id; with logprobs, `report` (2 + 2 × logprobs entries) receives
   * [logprob, count, id0, logprob0, id1, logprob1, ...].
   */
  sample(logits: Float32Array | null, ranked: Int32Array | null, report: Float64Array | null): number;
}

/** How a decode loop request ended (native/engine/decode_loop.h). */
export type NativeFinish = "stop" | "length" | "context_full" | "abort" | "grammar";

/** One event of a decode loop pass (native/addon/decode_loop.cc). */
export interface NativeLoopEvent {
  id: number;
  /**
   * token: a new token; done: the request is over (`finish`; with "stop", `token` is the end id, not evaluated);
   * error: a pass with this request failed (`error`); logits: pauseEachStep, the request waits for resume() (with
   * a grammar, its logits come masked). Finish "grammar": the grammar is complete and nothing can follow.
   */
  kind: "token" | "done" | "error" | "logits";
  /** Positions the request's cache holds now. */
  evaluated: number;
  /** Passes the loop had run when the event was made: the events of one pass share it. */
  pass: number;
  /** When the loop delivered it, in seconds on a monotonic clock of its own (differences are what count). */
  seconds: number;
  token?: number;
  /** Tokens the loop sampled, when the request asked for logprobs. */
  logprob?: number;
  top?: { id: number; logprob: number }[];
  finish?: NativeFinish;
  error?: Error;
  logits?: Float32Array;
}

export interface NativeLoopOptions {
  /** Tokens to generate at most, >= 1. */
  maxTokens: number;
  /** Ids that end the generation. */
  endIds?: Int32Array;
  /** Token events carry the sampler's logprob report. */
  logprobs?: boolean;
  /** After each pass the request emits a logits event and waits for resume(id, token). */
  pauseEachStep?: boolean;
  /** Constrains every token to continue this grammar (borrowed until the request ends; one request at a time). */
  grammar?: NativeGrammar;
}

/** The vocabulary's token bytes as a trie (native/engine/grammar.h), built once per model for its grammars. */
export interface NativeTokenTrie {
  /** Its memory in bytes. */
  readonly bytes: number;
}

/** One request's grammar matcher over a compiled table (lib/grammar). */
export interface NativeGrammar {
  /** Bans (-Infinity) in place every token that cannot continue the grammar; end ids only while incomplete. */
  mask(logits: Float32Array, endIds: Int32Array): void;
  /** Advances over the token; INVALID_ARGUMENT when the grammar does not allow it. */
  accept(token: number): void;
  /** The text so far is a whole match. */
  readonly complete: boolean;
  /** Complete, and nothing can continue it. */
  readonly finished: boolean;
}

/**
 * The engine's decode loop for one model: a native thread that runs passes back to back for every request,
 * samples natively, and calls onEvents once per pass with that pass's events.
 */
export interface NativeDecodeLoop {
  /**
   * Starts generating on context after evaluating tokens at pos.. (the context is busy until the request's done or
   * error event); the sampler's history must already hold the prompt, and the loop appends each token. Returns
   * the request's id.
   */
  submit(context: NativeContext, tokens: Int32Array, pos: number, sampler: NativeSampler, options: NativeLoopOptions): number;
  /** The request ends before the next pass (a done event with finish "abort" follows); false when it is not active. */
  cancel(id: number): boolean;
  /** The token picked for a request paused by its logits event. */
  resume(id: number, token: number): void;
  /** Forward passes run, and calls of onEvents. */
  stats(): { passes: number; deliveries: number };
  /** Ends every request (done, "abort") and joins the thread. Idempotent. */
  close(): void;
}

export interface NativeBinding {
  Model: new (spec: NativeModelSpec) => NativeModel;
  Sampler: new (options: NativeSamplerOptions, vocabSize: number) => NativeSampler;
  DecodeLoop: new (model: NativeModel, onEvents: (events: NativeLoopEvent[]) => void) => NativeDecodeLoop;
  /** Token i's bytes are bytes[offsets[i]..offsets[i + 1]) (no bytes: a token no grammar allows). */
  TokenTrie: new (bytes: Uint8Array, offsets: Uint32Array) => NativeTokenTrie;
  Grammar: new (trie: NativeTokenTrie, table: Int32Array) => NativeGrammar;
  /** Physical CPU cores (not hyperthreads), the default thread count. */
  physicalCores(): number;
  /** Which kernel set the CPU dispatch picked: "avx512-vnni", "avx512", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon" or "scalar" (LLAMA_NAPI_KERNELS forces one). */
  cpuFeatures(): string;
  /** The CUDA backend: compiled in, and GPUs usable. */
  cudaInfo(): NativeCudaInfo;
  /** Encodes rows × cols f32 values as `typeCode` blocks (ggml's reference quantizers), on a worker thread. */
  quantize(typeCode: number, src: Float32Array, rows: number, cols: number): Promise<Uint8Array>;
  /** Decodes rows × cols values of `typeCode` blocks to f32, on a worker thread. */
  dequantize(typeCode: number, src: Uint8Array, rows: number, cols: number): Promise<Float32Array>;
  /** The engine's weight types and their block layouts (tensor.c's table), in code order. */
  typeInfo(): NativeTypeInfo[];
  /** The codes of a compiled grammar's table elements (native/engine/grammar.h). */
  grammarElements: GrammarElementCodes;
  /**
   * Reads the byte ranges of the files once, on a worker thread, calling onProgress with the bytes read so far
   * (rising, the last call at the total); fills the page cache the weights are mapped from.
   */
  pageIn(files: string[], ranges: { file: number; offset: number; length: number }[], onProgress: (bytes: number) => void): Promise<void>;
}

export interface NativeTypeInfo {
  code: number;
  name: string;
  blockSize: number;
  blockBytes: number;
}

/** The addon binary this process loaded, and why the CUDA binary was passed over when one was. */
export interface LoadedBinary {
  path: string;
  /** "cuda": the separate CUDA prebuild; "cpu": the CPU prebuild, or a source build (which has CUDA when nvcc was found). */
  kind: "cpu" | "cuda";
  /** Set when a GPU seemed present but the CUDA binary failed its check: what went wrong. */
  cudaFailure?: string;
}

/** The package root: this file is dist/cjs/native/binding.js. */
export const PACKAGE_ROOT = path.resolve(__dirname, "../../..");

let version: string | undefined;

/** The package's version (package.json), which is also the engine's. */
export function packageVersion(): string {
  return (version ??= (JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version);
}
/** How long the CUDA binary's check may take: loading the CUDA runtime and JIT-compiling PTX for a new GPU is slow. */
const CUDA_PROBE_TIMEOUT_MS = 60_000;
const CUDA_FALLBACK_WARNING = "LLAMA_NAPI_CUDA_FALLBACK";

let binding: NativeBinding | undefined;
let loaded: LoadedBinary | undefined;

export function loadBinding(): NativeBinding {
  if (!binding) {
    loaded = chooseBinary();
    binding = loadNative(loaded.path) as NativeBinding;
  }
  return binding;
}

/** What each element of a compiled grammar's flat table is (native/engine/grammar.h's enum llm_grammar_element). */
export interface GrammarElementCodes {
  altEnd: number;
  ruleEnd: number;
  ref: number;
  chars: number;
}

/** The grammar table's element codes as the engine defines them, rather than restated in lib/grammar. */
export function grammarElementCodes(): GrammarElementCodes {
  return loadBinding().grammarElements;
}

let typeCodes: Map<string, number> | undefined;

/**
 * The engine's code for a weight type, read from the addon's type table (ggml's numbering, native/engine/tensor.c)
 * rather than restated here; undefined for a type the loaded addon does not compute with.
 */
export function nativeTypeCode(type: string): number | undefined {
  typeCodes ??= new Map(loadBinding().typeInfo().map((t) => [t.name, t.code]));
  return typeCodes.get(type);
}

/** Loads a file as a native addon whatever its name (require would run a file not named *.node as JavaScript). */
function loadNative(file: string): unknown {
  const module = { exports: {} };
  process.dlopen(module, file);
  return module.exports;
}

/** Which binary loadBinding() loaded (loading it if it has not yet). */
export function loadedBinary(): LoadedBinary {
  loadBinding();
  return loaded!;
}

/**
 * The CPU binary is what node-gyp-build finds: build/Release (a source build) or prebuilds/<platform>-<arch>/.
 * The CUDA prebuild sits in a cuda/ folder beside the CPU one, where node-gyp-build does not look, with the same
 * name (LLAMA_NAPI_CUDA_BINARY names another file). It is used only when a GPU seems present (LLAMA_NAPI_CUDA=1:
 * always tried; 0: never) and it passes a check in a child process: a binary that cannot load (wrong driver, a
 * missing library, a crash in its initializers) then costs a warning instead of this process.
 */
function chooseBinary(): LoadedBinary {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cpu: string = require("node-gyp-build").resolve(PACKAGE_ROOT);
  const wanted = process.env.LLAMA_NAPI_CUDA;
  const explicit = process.env.LLAMA_NAPI_CUDA_BINARY;
  // A source build is one binary with both backends: there is no CUDA prebuild to choose unless one is named.
  const isSourceBuild = path.relative(path.join(PACKAGE_ROOT, "prebuilds"), cpu).startsWith("..");
  const candidate = explicit || (isSourceBuild ? undefined : path.join(path.dirname(cpu), "cuda", path.basename(cpu)));
  if (wanted === "0" || !candidate || !fs.existsSync(candidate) || (wanted !== "1" && !gpuPresent())) {
    return { path: cpu, kind: "cpu" };
  }
  const failure = probeCudaBinary(candidate);
  if (failure === undefined) return { path: candidate, kind: "cuda" };
  process.emitWarning(`the CUDA binary ${candidate} cannot be used (${failure}); running on the CPU with ${cpu}`, {
    code: CUDA_FALLBACK_WARNING,
  });
  return { path: cpu, kind: "cpu", cudaFailure: `the CUDA binary ${candidate} cannot be used: ${failure}` };
}

/** An NVIDIA driver is loaded: its control device or its /proc entry exists. */
export function gpuPresent(): boolean {
  return fs.existsSync("/dev/nvidiactl") || fs.existsSync("/proc/driver/nvidia");
}

/** Loads the binary in a child process and asks it for a GPU; undefined when it has one, else what went wrong. */
function probeCudaBinary(file: string): string | undefined {
  const script = `const addon = { exports: {} }; process.dlopen(addon, ${JSON.stringify(file)});
                  process.stdout.write(JSON.stringify(addon.exports.cudaInfo()));`;
  const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: CUDA_PROBE_TIMEOUT_MS });
  if ((child.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT") {
    return `its check did not finish in ${CUDA_PROBE_TIMEOUT_MS / 1000} s`;
  }
  if (child.error) return `its check could not start: ${child.error.message}`;
  if (child.signal) return `loading it killed the checking process with ${child.signal}`;
  if (child.status !== 0) {
    // Node prints the stack of the failed dlopen; its first line with "Error" says what failed.
    const line = child.stderr.split("\n").find((l) => /Error\b/.test(l)) ?? child.stderr.trim().split("\n").pop();
    return `loading it failed: ${line?.trim() || `exit status ${child.status}`}`;
  }
  let info: NativeCudaInfo;
  try {
    info = JSON.parse(child.stdout) as NativeCudaInfo;
  } catch {
    return `its check printed no result`;
  }
  return info.devices > 0 ? undefined : `it sees no usable GPU: ${info.reason ?? "no CUDA device"}`;
}
