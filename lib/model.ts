/**
 * The public model object: loads any supported format, owns the engine (with the paged KV pool every sequence
 * takes its blocks from) and the tokenizer, and offers evaluate / generate / complete.
 */
import {
  applyChatTemplate, renderChat, resolveChatTemplateLimits, type ChatMessage, type ChatPrompt, type ChatTemplate, type ChatTemplateLimits,
  type ChatTemplateOptions, loadChatTemplate,
} from "./chat";
import {
  ContextOverflowError, CustomOpDeviceError, DeviceError, DisposedError, InvalidArgumentError, NumericalError, OutOfMemoryError, SerializedModelMismatchError,
  UnsupportedModelError,
} from "./errors";
import { parseModel } from "./formats/detect";
import { writeSerializedModel } from "./formats/serialized";
import type { ModelConfig, ModelDescriptor, ModelFormat, PreparedFor, TensorType } from "./formats/types";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import nodePath from "node:path";
import { runGeneration, type Sequence } from "./generation/generate";
import { type EmbedOptions, poolHiddenStates, resolveEmbedOptions } from "./generation/embed";
import { DecodeScheduler } from "./generation/scheduler";
import { ChatSession, type SessionHost, type SessionOptions } from "./generation/session";
import type { Completion, GeneratedToken, GenerateOptions, Prompt } from "./generation/types";
import { resolveConstraint } from "./grammar";
import { resolveModelPath } from "./hub";
import { KV_CACHE_TYPES, type KvCacheType, type NativeKvCacheUsage, type NativeTokenTrie } from "./native/binding";
import { cudaInfo, Engine, type EngineContext, physicalCores, readWeights, toInt32 } from "./native/engine";
import { buildTokenTrie, createGrammarMatcher } from "./native/grammar";
import { checkOptionNames, type OptionNames } from "./option-names";
import { resolveSampling, Sampler, SAMPLING_OPTION_NAMES } from "./sampling/sampler";
import { checkTokenizerFitsModel, loadTokenizer } from "./tokenizer";
import { tokenizerTables } from "./tokenizer/tables";
import type { TokenizeOptions, Tokenizer } from "./tokenizer/types";

/** How far loadModel has read the weights: the bytes of tensor data read from disk so far, of all of them. */
export interface LoadProgress {
  loadedBytes: number;
  totalBytes: number;
}

export interface LoadModelOptions {
  /** Worker threads for the matrix work. Default: the number of physical cores. */
  threads?: number;
  /**
   * Tokens the KV cache holds. Default: the model's context length, at most 4096. At most the context the model
   * was trained for (times a linear rope scaling factor); the cache must fit in memory.
   */
  contextSize?: number;
  /** A tokenizer file, for formats that keep it apart (llama2.c tokenizer.bin, tokenizer.model). */
  tokenizer?: string;
  /** Use Hub models from the cache only, never the network. Default: HF_HUB_OFFLINE=1. */
  offline?: boolean;
  /**
   * Where the weights live and the forward passes run. "cuda": the whole model on a GPU (a DeviceError when the
   * addon has no CUDA backend, no GPU or driver is present, or the GPU lacks the memory; a CustomOpDeviceError when
   * an enabled custom op has no CUDA launcher); "cpu"; "auto" (default): the GPU when there is one and it can run
   * the model (every custom op enabled included), else the CPU.
   */
  device?: "cuda" | "cpu" | "auto";
  /** The CUDA device index for device "cuda" or "auto". Default 0. */
  gpu?: number;
  /**
   * Called as the weights are read: first with loadedBytes 0, then with strictly rising counts, last with the total.
   * With it, loadModel reads all the tensor data into memory before it resolves (the work the first generation, or
   * the GPU upload, would otherwise do); without it, the mapped weights are read on first use.
   */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Scan every tensor for NaN and infinity before resolving (each stored value; each block scale of the quantized
   * types): a NumericalError names the first bad tensor. Reads all the weights once. Default false.
   */
  checkTensors?: boolean;
  /**
   * How the KV cache stores keys and values: "f16" (default; half the memory of f32, logits within ~1e-3 of it),
   * "f32" (exact: the reference tests hold HF's logits to 1e-4), or "q8_0" (about a quarter of f32; needs a head size
   * that is a multiple of 32).
   */
  kvCacheType?: KvCacheType;
  /**
   * Positions the model's KV pool holds for all its sequences together (rounded up to blocks of
   * info.kvCache.blockTokens); a sequence takes blocks as it grows, and identical prompt prefixes share theirs.
   * At least contextSize. Default 8 × contextSize, or contextSize when that does not fit in memory. The pool is
   * allocated at load: an OutOfMemoryError when it does not fit; a sequence that finds it full fails with one.
   */
  kvCacheTokens?: number;
  /**
   * Bounds on rendering the model's own chat template, which comes with its files and is not trusted: timeMs
   * (default 1000), memoryMb (128), outputChars (4 Mi). A render past one throws a ChatTemplateLimitError.
   */
  chatTemplateLimits?: Partial<ChatTemplateLimits>;
  /**
   * A custom op library (a shared library built against native/include/llama_napi_ops.h, e.g. with `llama-napi
   * build-op`) whose functions replace the built-in operations named in enableCustomOps. A CustomOpError when it is
   * missing, not a library, built for another ABI version or lacks an enabled op's function; on the GPU, a
   * CustomOpDeviceError when it lacks an enabled op's CUDA launcher (device "auto" then runs on the CPU).
   */
  customOps?: string;
  /** The ops customOps replaces: "rope", "rmsnorm", "swiglu" (at least one; only with customOps). */
  enableCustomOps?: readonly CustomOpName[];
}

/** The operations a custom op library can replace (llama_napi_ops.h). */
export type CustomOpName = "rope" | "rmsnorm" | "swiglu";

const LOAD_MODEL_OPTION_NAMES = {
  threads: true, contextSize: true, tokenizer: true, offline: true, device: true, gpu: true, onProgress: true, checkTensors: true,
  chatTemplateLimits: true, kvCacheType: true, kvCacheTokens: true, customOps: true, enableCustomOps: true,
} as const satisfies OptionNames<LoadModelOptions>;

export type ModelInfo = Pick<
  ModelConfig,
  | "architecture" | "vocabSize" | "contextLength" | "dim" | "hiddenDim" | "layers" | "heads" | "kvHeads"
  | "headDim" | "ropeTheta" | "ropeScaling" | "tiedEmbeddings"
> & {
  format: ModelFormat;
  /** The context size of this loaded model (KV cache length); contextLength is what the model was trained for. */
  contextSize: number;
  weightType: TensorType;
  parameters: number;
  tokenizer: Tokenizer["kind"];
  bosId: number | undefined;
  eosIds: number[];
  threads: number;
  /** Where the model runs. */
  device: "cpu" | "cuda";
  /** The GPU, when device is "cuda". */
  gpu?: { index: number; name: string };
  /**
   * The KV pool shared by all sequences: its row type, positions per block, positions in all (capacityTokens ×
   * bytesPerToken bytes are reserved at load; on the CPU memory is committed as blocks are first used).
   */
  kvCache: KvCacheInfo;
  /**
   * Bytes of weights held a second time at load, in the layout the CPU's SIMD kernels read fastest (q4_0, q8_0, q4_K,
   * q5_K and q6_K matrices on x86 with AVX2 or AVX-512), instead of the mapped file's pages; 0 on CUDA or with
   * LLAMA_NAPI_REPACK=0.
   */
  repackedBytes: number;
  /** The custom op library whose ops this model's passes run, and those ops; absent when every op is built in. */
  customOps?: CustomOpsInfo;
};

/** See ModelInfo.customOps. */
export interface CustomOpsInfo {
  /** The library's absolute path. */
  library: string;
  ops: CustomOpName[];
}

/** See ModelInfo.kvCache. */
export interface KvCacheInfo {
  type: KvCacheType;
  blockTokens: number;
  capacityTokens: number;
  /** Keys and values of every layer for one position. */
  bytesPerToken: number;
}

/** See LlamaModel.kvCacheUsage(). */
export type KvCacheUsage = NativeKvCacheUsage;

const DEFAULT_MAX_CONTEXT = 4096;
const DEFAULT_KV_CACHE_TYPE: KvCacheType = "f16";
/** Default KV pool size in contexts: room for several sequences, and for cached prefixes beside them. */
const DEFAULT_KV_CACHE_CONTEXTS = 8;

/** The device loadModel runs on: "auto" takes the GPU when the addon has CUDA and sees it. */
function resolveDevice(device: LoadModelOptions["device"], gpu: unknown): { kind: "cpu" | "cuda"; gpu: number } {
  if (gpu !== undefined && (typeof gpu !== "number" || !Number.isInteger(gpu) || gpu < 0)) {
    throw new InvalidArgumentError(`gpu must be a CUDA device index, an integer >= 0 (got ${String(gpu)})`);
  }
  const index = gpu ?? 0;
  if (device === "cpu") return { kind: "cpu", gpu: index };
  const cuda = cudaInfo();
  if (device === "cuda" && cuda.devices <= index) {
    throw new DeviceError(
      cuda.devices === 0
        ? `device "cuda" was asked for, but CUDA is not available: ${cuda.reason ?? "no CUDA device"}`
        : `gpu ${index} was asked for, but this machine has ${cuda.devices} CUDA device(s)`,
    );
  }
  return { kind: cuda.devices > index ? "cuda" : "cpu", gpu: index };
}

function checkPositiveInteger(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== "number" || !Number.isInteger(value) || value < 1)) {
    throw new InvalidArgumentError(`${name} must be a positive integer (got ${String(value)})`);
  }
}

/** The load options' rules that need no model, on their own so that a caller (the CLI) can check them before any loading. */
export function checkLoadOptions(options: Pick<LoadModelOptions, "threads" | "contextSize" | "kvCacheType" | "kvCacheTokens" | "device" | "customOps" | "enableCustomOps">): void {
  const { device } = options;
  if (device !== undefined && device !== "auto" && device !== "cpu" && device !== "cuda") {
    throw new InvalidArgumentError(`device must be "auto", "cpu" or "cuda" (got ${String(device)})`, { option: "device" });
  }
  checkPositiveInteger("threads", options.threads);
  const { customOps, enableCustomOps } = options;
  if (customOps !== undefined && (typeof customOps !== "string" || customOps.length === 0)) {
    throw new InvalidArgumentError(`customOps must be the path of an op library (got ${String(customOps)})`, { option: "customOps" });
  }
  if (enableCustomOps !== undefined) {
    if (!Array.isArray(enableCustomOps) || !enableCustomOps.every((op) => typeof op === "string")) {
      throw new InvalidArgumentError("enableCustomOps must be an array of op names", { option: "enableCustomOps" });
    }
    if (customOps === undefined) {
      throw new InvalidArgumentError(`enableCustomOps (${enableCustomOps.join(", ")}) needs customOps: the library the ops come from`, {
        option: "enableCustomOps",
      });
    }
  }
  checkPositiveInteger("contextSize", options.contextSize);
  const { kvCacheType, kvCacheTokens } = options;
  if (kvCacheType !== undefined && !KV_CACHE_TYPES.includes(kvCacheType)) {
    throw new InvalidArgumentError(`kvCacheType must be "f32", "f16" or "q8_0" (got ${String(kvCacheType)})`, { option: "kvCacheType" });
  }
  if (kvCacheTokens !== undefined && (typeof kvCacheTokens !== "number" || !Number.isInteger(kvCacheTokens) || kvCacheTokens < 1)) {
    throw new InvalidArgumentError(`kvCacheTokens must be a positive integer (got ${String(kvCacheTokens)})`, { option: "kvCacheTokens" });
  }
}

/** The most positions a model can attend over: its trained context, stretched by a linear rope scaling factor. */
export function maxContextSize(config: Pick<ModelConfig, "contextLength" | "ropeScaling">): number {
  // Llama 3 scaling is already in the trained context (max_position_embeddings counts the scaled positions).
  return config.ropeScaling?.type === "linear" ? Math.floor(config.contextLength * config.ropeScaling.factor) : config.contextLength;
}

/** The KV options' rules that need the model (checkLoadOptions has checked their shape): kvCacheTokens against the resolved contextSize, q8_0 against the head size. */
function checkKvCacheOptions(options: LoadModelOptions, config: ModelConfig, contextSize: number): void {
  const { kvCacheType, kvCacheTokens } = options;
  if (kvCacheType === "q8_0" && config.headDim % 32 !== 0) {
    throw new InvalidArgumentError(`kvCacheType "q8_0" needs a head size that is a multiple of 32; this model's is ${config.headDim}`, {
      option: "kvCacheType",
    });
  }
  if (kvCacheTokens !== undefined && kvCacheTokens < contextSize) {
    throw new InvalidArgumentError(`kvCacheTokens must be an integer of at least contextSize ${contextSize} (got ${String(kvCacheTokens)})`, {
      option: "kvCacheTokens",
    });
  }
}

/** A contextSize (a positive integer, or undefined) within what the model allows: an InvalidArgumentError naming the value and the limit. */
function checkContextSize(contextSize: number | undefined, config: ModelConfig, path: string): void {
  const limit = maxContextSize(config);
  if (contextSize !== undefined && contextSize > limit) {
    const scaling = config.ropeScaling?.type === "linear" ? ` × linear rope scaling ${config.ropeScaling.factor}` : "";
    throw new InvalidArgumentError(
      `contextSize ${contextSize} is more than ${path} allows: ${limit} (trained context ${config.contextLength}${scaling})`,
      { option: "contextSize" },
    );
  }
}

/**
 * Refuses a serialized model on another backend than it was prepared for: given explicitly (`asked`), or "auto"
 * resolved to another (`device`). "auto" takes the file's backend when this machine has it, so `device` is
 * switched to the CPU for a model prepared there.
 */
function checkPreparedDevice(prepared: PreparedFor, asked: LoadModelOptions["device"], device: { kind: "cpu" | "cuda" }, path: string): void {
  if ((asked === undefined || asked === "auto") && prepared.backend === "cpu") device.kind = "cpu";
  if (device.kind === prepared.backend) return;
  const why = asked === "cpu" || asked === "cuda" ? `device "${asked}" was asked for` : "this machine has no CUDA device";
  throw new SerializedModelMismatchError(
    `${path} was prepared for the ${prepared.backend} backend, but ${why}: load it with device "${prepared.backend}", or save it again from the original model on this backend`,
    path, "backend", device.kind, prepared.backend,
  );
}

export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LlamaModel> {
  if (typeof path !== "string" || path.length === 0) {
    throw new InvalidArgumentError(`loadModel: path must be a non-empty string (got ${String(path)})`);
  }
  checkOptionNames(options, LOAD_MODEL_OPTION_NAMES, "loadModel");
  checkLoadOptions(options);
  const device = resolveDevice(options.device, options.gpu);
  const { onProgress, checkTensors } = options;
  const chatTemplateLimits = resolveChatTemplateLimits(options.chatTemplateLimits);
  if (onProgress !== undefined && typeof onProgress !== "function") throw new InvalidArgumentError("onProgress must be a function");
  if (checkTensors !== undefined && typeof checkTensors !== "boolean") throw new InvalidArgumentError("checkTensors must be a boolean");

  // hf:OWNER/REPO[/FILE] and https:// specs are downloaded into the cache first (once).
  path = await resolveModelPath(path, { offline: options.offline });
  const desc = await parseModel(path, { tokenizer: options.tokenizer });
  const prepared = desc.prepared;
  if (prepared) checkPreparedDevice(prepared, options.device, device, path);
  // A serialized model's options are the defaults of its load; options given still win.
  const contextSize = options.contextSize ?? prepared?.contextSize ?? Math.min(desc.config.contextLength, DEFAULT_MAX_CONTEXT);
  checkContextSize(contextSize, desc.config, path);
  if (!desc.tokenizer) {
    throw new InvalidArgumentError(
      `no tokenizer found for ${path}: pass { tokenizer: "path/to/tokenizer" } (llama2.c tokenizer.bin, tokenizer.model or tokenizer.json)`,
    );
  }
  const tokenizer = await loadTokenizer(desc.tokenizer);
  checkTokenizerFitsModel(tokenizer, desc.tokenizer, desc, path);
  const chatTemplate = loadChatTemplate(desc, tokenizer, chatTemplateLimits);
  if (onProgress) await readWeights(desc, (loadedBytes, totalBytes) => onProgress({ loadedBytes, totalBytes }));
  const threads = options.threads ?? physicalCores();
  const kvCacheType = options.kvCacheType ?? prepared?.kvCacheType ?? DEFAULT_KV_CACHE_TYPE;
  checkKvCacheOptions({ ...options, kvCacheType }, desc.config, contextSize);
  // A model prepared for CUDA runs there or not at all: no quiet fall back to the CPU.
  const cudaAsked = options.device === "cuda" || prepared?.backend === "cuda";
  // Absolute: dlopen would search the system's library directories for a bare file name.
  const customOps = options.customOps === undefined ? undefined : { path: nodePath.resolve(options.customOps), ops: [...(options.enableCustomOps ?? [])] };
  const engine = openEngine(desc, path, threads, device, cudaAsked, kvCacheType, options.kvCacheTokens, contextSize, customOps);
  try {
    if (checkTensors) {
      const fault = await engine.checkTensors();
      if (fault) {
        const where = fault.inScale ? `the scale of block ${fault.index}` : `element ${fault.index}`;
        throw new NumericalError(`${path}: tensor ${fault.tensor} holds NaN or infinity (${where})`, path, fault.tensor, fault.index);
      }
    }
    return new LlamaModel(desc, tokenizer, engine, contextSize, threads, chatTemplate);
  } catch (err) {
    engine.close();
    throw err;
  }
}

/**
 * The engine with its KV pool: kvCacheTokens positions, or by default DEFAULT_KV_CACHE_CONTEXTS contexts' worth, and
 * one context's when that does not fit. Device "auto" (cudaAsked false) runs a model that holds a weight type the GPU
 * lacks, or whose custom ops lack CUDA launchers, on the CPU instead.
 */
function openEngine(
  desc: ModelDescriptor,
  path: string,
  threads: number,
  device: { kind: "cpu" | "cuda"; gpu: number },
  cudaAsked: boolean,
  type: KvCacheType,
  tokens: number | undefined,
  contextSize: number,
  customOps: { path: string; ops: string[] } | undefined,
): Engine {
  type Device = { kind: "cpu" | "cuda"; gpu: number };
  const open = (on: Device, poolTokens: number) => {
    try {
      return Engine.open(desc, path, threads, on, { type, tokens: poolTokens }, customOps);
    } catch (err) {
      if (!(err instanceof OutOfMemoryError)) throw err;
      const available = on.kind === "cpu" ? os.totalmem() : undefined;
      throw new OutOfMemoryError(`${path}: ${err.message}`, err.bytesNeeded, available, { cause: err });
    }
  };
  const openWithPool = (on: Device) => {
    if (tokens !== undefined) return open(on, tokens);
    try {
      return open(on, DEFAULT_KV_CACHE_CONTEXTS * contextSize);
    } catch (err) {
      if (!(err instanceof OutOfMemoryError)) throw err;
      return open(on, contextSize);
    }
  };
  try {
    return openWithPool(device);
  } catch (err) {
    if (cudaAsked || !(err instanceof CustomOpDeviceError)) throw err;
    return openWithPool({ kind: "cpu", gpu: device.gpu });
  }
}

const GENERATE_OPTION_NAMES = {
  ...SAMPLING_OPTION_NAMES, maxTokens: true, stop: true, signal: true, ignoreEos: true, contextOverflow: true,
  grammar: true, jsonSchema: true, json: true,
} as const satisfies OptionNames<GenerateOptions>;

const SESSION_OPTION_NAMES = { systemPrompt: true, contextSize: true, restore: true, contextOverflow: true } as const satisfies OptionNames<SessionOptions>;
const TOKENIZE_OPTION_NAMES = { addBos: true, special: true } as const satisfies OptionNames<TokenizeOptions>;
const CHAT_TEMPLATE_OPTION_NAMES = { addGenerationPrompt: true, tools: true } as const satisfies OptionNames<ChatTemplateOptions>;

/** The rules of generate's own options (the sampling ones are resolveSampling's). */
export function checkGenerateOptions(options: GenerateOptions): void {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("options must be an object");
  checkOptionNames(options, GENERATE_OPTION_NAMES, "generate");
  checkPositiveInteger("maxTokens", options.maxTokens);
  const { stop, contextOverflow, signal } = options;
  if (stop !== undefined && (!Array.isArray(stop) || !stop.every((s) => typeof s === "string" && s.length > 0))) {
    throw new InvalidArgumentError("stop must be an array of non-empty strings");
  }
  if (contextOverflow !== undefined && contextOverflow !== "error" && contextOverflow !== "truncate-middle") {
    throw new InvalidArgumentError(`contextOverflow must be "error" or "truncate-middle" (got ${String(contextOverflow)})`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgumentError("signal must be an AbortSignal");
}

export class LlamaModel implements AsyncDisposable {
  readonly info: ModelInfo;
  /** The chat template (Jinja) the model's files carry; undefined when they carry none (a built-in one is used). */
  readonly chatTemplate: string | undefined;
  /**
   * Every context alive, for dispose. A generation takes a fresh one and closes it when done; its blocks stay cached
   * in the KV pool, so that the next prompt with the same prefix adopts them instead of evaluating it again.
   */
  private readonly contexts = new Set<EngineContext>();
  private readonly scheduler: DecodeScheduler;
  private readonly stopIds: ReadonlySet<number>;
  private fingerprintPromise: Promise<string> | undefined;
  /** The vocabulary's token trie, built with the first constrained generation. */
  private tokenTrie: NativeTokenTrie | undefined;
  private disposed = false;

  /** @internal Use loadModel(). */
  constructor(
    private readonly desc: ModelDescriptor,
    private readonly tokenizer: Tokenizer,
    private readonly engine: Engine,
    contextSize: number,
    threads: number,
    private readonly chat: ChatTemplate | undefined,
  ) {
    this.chatTemplate = chat?.builtin ? undefined : chat?.text;
    this.scheduler = new DecodeScheduler(engine);
    const { architecture, vocabSize, contextLength, dim, hiddenDim, layers, heads, kvHeads, headDim, ropeTheta, ropeScaling, tiedEmbeddings } =
      desc.config;
    const eosIds = [...new Set([...desc.eosIds, ...tokenizer.eosIds])];
    this.stopIds = new Set(eosIds);
    const customOps = engine.customOps;
    this.info = {
      format: desc.format,
      architecture, vocabSize, contextLength, dim, hiddenDim, layers, heads, kvHeads, headDim, ropeTheta, ropeScaling, tiedEmbeddings,
      contextSize,
      weightType: desc.weightType,
      parameters: desc.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
      tokenizer: tokenizer.kind,
      bosId: desc.bosId ?? tokenizer.bosId,
      eosIds,
      threads,
      device: engine.device.kind,
      ...(engine.device.kind === "cuda" ? { gpu: { index: engine.device.gpu!, name: engine.device.name! } } : {}),
      kvCache: { ...engine.kvCache },
      repackedBytes: engine.repackedBytes,
      ...(customOps ? { customOps: { library: customOps.library, ops: customOps.ops as CustomOpName[] } } : {}),
    };
  }

  tokenize(text: string, options?: TokenizeOptions): number[] {
    this.assertUsable();
    if (typeof text !== "string") throw new InvalidArgumentError(`tokenize: text must be a string`);
    checkOptionNames(options, TOKENIZE_OPTION_NAMES, "tokenize");
    return this.tokenizer.tokenize(text, options);
  }

  /**
   * Renders a conversation with the model's chat template (or the built-in Llama 2 / Llama 3 one) and tokenizes it.
   * The result is a prompt: `model.generate(model.applyChatTemplate(messages))`.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): ChatPrompt {
    this.assertUsable();
    checkOptionNames(options, CHAT_TEMPLATE_OPTION_NAMES, "applyChatTemplate");
    if (!this.chat) throw new UnsupportedModelError("this model carries no chat template, and no built-in one fits its tokenizer");
    return applyChatTemplate(this.chat, this.tokenizer, messages, options);
  }

  detokenize(ids: readonly number[]): string {
    this.assertUsable();
    this.checkTokenIds(ids, "detokenize");
    return this.tokenizer.detokenize([...ids]);
  }

  /** The logits of the last position after running `ids` from position 0. */
  async evaluate(ids: readonly number[]): Promise<Float32Array> {
    this.assertUsable();
    const promptIds = this.promptIds({ tokens: [...ids] });
    const sequence = this.acquire();
    try {
      const reuse = sequence.context.adoptPrefix(promptIds);
      const out = await this.scheduler.decode(sequence.context, promptIds.slice(reuse), reuse, { logits: "last" });
      return out.logits!;
    } finally {
      this.release(sequence);
    }
  }

  /**
   * @internal Every position's logits of `ids` run from position 0 on a fresh context, `batchSize` positions per
   * native call: yields each batch's logits (count × vocab) before running the next, so memory stays bounded.
   * For evaluation tools (perplexity); ids are trusted to be in range.
   */
  async *logitBatches(ids: Int32Array, batchSize: number): AsyncGenerator<{ first: number; count: number; logits: Float32Array }> {
    this.assertUsable();
    if (ids.length > this.info.contextSize) {
      throw new ContextOverflowError(`${ids.length} tokens do not fit the context of ${this.info.contextSize}`, ids.length, this.info.contextSize);
    }
    const sequence = this.acquire();
    try {
      for (let first = 0; first < ids.length; first += batchSize) {
        const count = Math.min(batchSize, ids.length - first);
        const { logits } = await sequence.context.decode(ids.subarray(first, first + count), first, { logits: "all" });
        yield { first, count, logits: logits! };
      }
    } finally {
      this.release(sequence);
    }
  }

  /**
   * Streams generated tokens; breaking out of the loop stops the native work after the current step. Concurrent
   * generations on one model share forward passes (continuous batching).
   */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, Completion> {
    this.assertUsable();
    checkGenerateOptions(options);
    const promptIds = this.promptIds(prompt, options.contextOverflow === "truncate-middle");
    const sequence = this.acquire();
    try {
      return yield* this.runOn(sequence, promptIds, options, promptIds[0] === this.info.bosId ? 1 : 0);
    } finally {
      this.release(sequence);
    }
  }

  /** Runs generate() to the end and returns the whole text with the finish reason and speed figures. */
  async complete(prompt: Prompt, options: GenerateOptions = {}): Promise<Completion> {
    const it = this.generate(prompt, options);
    for (;;) {
      const step = await it.next();
      if (step.done) return step.value;
    }
  }

  /**
   * Completes every prompt, all sequences decoding together in shared forward passes. With a `seed`, prompt i
   * samples with seed + i. Results in prompt order.
   */
  async generateBatch(prompts: readonly Prompt[], options: GenerateOptions = {}): Promise<Completion[]> {
    this.assertUsable();
    if (!Array.isArray(prompts)) throw new InvalidArgumentError("generateBatch: prompts must be an array");
    const { seed } = options;
    return Promise.all(prompts.map((p, i) => this.complete(p, seed === undefined ? options : { ...options, seed: seed + i })));
  }

  /**
   * One embedding per text (or `{ tokens }`), pooled from the model's final-norm hidden states (see EmbedOptions):
   * many texts run together in one forward pass. Texts are tokenized with BOS, as prompts are. CPU only: a model
   * on a GPU throws a DeviceError.
   */
  async embed(texts: readonly Prompt[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    this.assertUsable();
    const resolved = resolveEmbedOptions(options);
    if (!Array.isArray(texts)) throw new InvalidArgumentError("embed: texts must be an array of strings or { tokens: number[] }");
    if (this.info.device !== "cpu") {
      throw new DeviceError(`embed runs on the CPU only; this model is on ${this.info.gpu?.name ?? "a GPU"}: load it with { device: "cpu" } to embed`);
    }
    const prompts = texts.map((text) => this.promptIds(text));
    const vectors: Float32Array[] = new Array(prompts.length);
    // A call holds at most a context's worth of tokens (at least one text), so it always fits the KV pool.
    for (let first = 0; first < prompts.length; ) {
      let end = first + 1;
      for (let tokens = prompts[first].length; end < prompts.length && tokens + prompts[end].length <= this.info.contextSize; end++) {
        tokens += prompts[end].length;
      }
      const group = prompts.slice(first, end);
      const contexts = group.map((ids) => this.createContext(ids.length));
      try {
        const results = await this.engine.decodeBatch(group.map((ids, i) => ({ context: contexts[i], tokens: toInt32(ids), pos: 0, logits: "hidden" })));
        results.forEach((result, i) => (vectors[first + i] = poolHiddenStates(result.logits!, group[i].length, this.info.dim, resolved)));
      } finally {
        for (const context of contexts) this.release({ context, tokens: [] });
      }
      first = end;
    }
    return vectors;
  }

  /**
   * A chat conversation that keeps its KV cache between turns: each prompt evaluates only its new tokens.
   * `restore` reopens a session saved with session.save().
   */
  async createSession(options: SessionOptions = {}): Promise<ChatSession> {
    this.assertUsable();
    checkOptionNames(options, SESSION_OPTION_NAMES, "createSession");
    checkPositiveInteger("contextSize", options.contextSize);
    checkContextSize(options.contextSize, this.desc.config, this.engine.modelPath);
    if (!this.chat) throw new UnsupportedModelError("this model carries no chat template, and no built-in one fits its tokenizer");
    return ChatSession.open(this.sessionHost, options, this.info.contextSize);
  }

  /**
   * Writes the prepared model to one file that loadModel(file) maps with no conversion and no tokenizer parsing:
   * configuration, tokenizer tables, chat template and every weight in the engine's run-time layout, with the
   * backend it runs on and its KV cache type and context size (the defaults of loading it). A load on another
   * backend, or by another version of this package, is refused with a SerializedModelMismatchError. Resolves with
   * the bytes written; the file appears under its name only once complete.
   */
  async saveSerialized(file: string): Promise<{ path: string; bytes: number }> {
    this.assertUsable();
    if (typeof file !== "string" || file.length === 0) throw new InvalidArgumentError("saveSerialized: file must be a non-empty string", { option: "file" });
    const path = nodePath.resolve(file);
    if (this.desc.files.includes(path)) {
      throw new InvalidArgumentError(`saveSerialized: ${path} is the model's own file; write to another path`, { option: "file" });
    }
    const bytes = await writeSerializedModel(path, {
      desc: this.desc,
      tokenizer: tokenizerTables(this.tokenizer, this.desc.tokenizer!),
      chatTemplate: this.chat && !this.chat.builtin ? { text: this.chat.text, origin: this.chat.origin } : undefined,
      prepared: { backend: this.info.device, kvCacheType: this.info.kvCache.type, contextSize: this.info.contextSize },
    });
    return { path, bytes };
  }

  /** Sequences generating (or evaluating) right now, sessions included; each holds one KV cache. */
  get activeSequences(): number {
    return this.contexts.size;
  }

  /**
   * The KV pool's blocks now (of info.kvCache.blockTokens positions each): usedBlocks held by sequences,
   * cachedBlocks held by none but keeping a prefix a later prompt adopts (reused for new sequences, least recently
   * used first, once no block is free), freeBlocks never used or released; totalBlocks in all.
   */
  kvCacheUsage(): KvCacheUsage {
    this.assertUsable();
    return this.engine.kvCacheUsage();
  }

  /** @internal The engine's own greedy loop on `prompt` (benchmark baseline for the JavaScript loop). */
  async nativeGreedy(prompt: Prompt, n: number): Promise<number[]> {
    this.assertUsable();
    const promptIds = this.promptIds(prompt);
    const sequence = this.acquire();
    try {
      return [...(await sequence.context.greedy(promptIds, 0, n))];
    } finally {
      this.release(sequence);
    }
  }

  /**
   * Ends the generations in the decode loop and waits for the forward passes already queued or running, then frees
   * the KV caches and unmaps the weights. A generation still being iterated ends with a DisposedError at its next
   * step.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.engine.closeDecodeLoop();
    await this.scheduler.drained();
    await Promise.all([...this.contexts].map((ctx) => ctx.settled()));
    for (const ctx of this.contexts) ctx.close();
    this.contexts.clear();
    this.engine.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private assertUsable(): void {
    if (this.disposed) throw new DisposedError("this model was disposed; load it again to use it");
  }

  private checkTokenIds(ids: readonly number[], where: string): void {
    if (!Array.isArray(ids)) throw new InvalidArgumentError(`${where}: token ids must be an array of integers`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.info.vocabSize) {
        throw new InvalidArgumentError(
          `${where}: token id ${String(id)} is out of range (vocabulary size ${this.info.vocabSize})`,
        );
      }
    }
  }

  private promptIds(prompt: Prompt, truncatable = false): number[] {
    let ids: number[];
    if (typeof prompt === "string") {
      ids = this.tokenizer.tokenize(prompt, { addBos: true });
    } else if (prompt && typeof prompt === "object" && Array.isArray(prompt.tokens)) {
      this.checkTokenIds(prompt.tokens, "prompt.tokens");
      ids = [...prompt.tokens];
    } else {
      throw new InvalidArgumentError("prompt must be a string or { tokens: number[] }");
    }
    if (ids.length === 0) throw new InvalidArgumentError("the prompt is empty (no tokens to evaluate)");
    if (ids.length > this.info.contextSize && !truncatable) {
      throw new ContextOverflowError(
        `the prompt has ${ids.length} tokens but the context holds ${this.info.contextSize}`,
        ids.length,
        this.info.contextSize,
      );
    }
    return ids;
  }

  /** @internal The generation loop on a given sequence (generate() and sessions). */
  private runOn(sequence: Sequence, promptIds: number[], options: GenerateOptions, keepTokens: number): AsyncGenerator<GeneratedToken, Completion> {
    checkGenerateOptions(options);
    const sampler = new Sampler(resolveSampling(options, this.info.vocabSize), this.info.vocabSize);
    const constraint = resolveConstraint(options);
    if (constraint) this.tokenTrie ??= buildTokenTrie(this.tokenizer, this.info.vocabSize);
    return runGeneration({
      grammar: constraint && createGrammarMatcher(this.tokenTrie!, constraint),
      sequence,
      loop: this.engine.decodeLoop,
      tokenizer: this.tokenizer,
      promptIds,
      sampler,
      maxTokens: options.maxTokens ?? Infinity,
      stop: options.stop ?? [],
      stopIds: options.ignoreEos ? new Set() : this.stopIds,
      signal: options.signal,
      overflow: options.contextOverflow ?? "error",
      keepTokens,
      assertUsable: () => this.assertUsable(),
    });
  }

  /** A fresh sequence: its first decode adopts what the KV pool has cached of its prompt (EngineContext.adoptPrefix). */
  private acquire(): Sequence {
    return { context: this.createContext(this.info.contextSize), tokens: [] };
  }

  /**
   * Closes the sequence's context (the engine frees it once no pass uses it); its blocks stay
   * cached in the pool.
   */
  private release(sequence: Sequence): void {
    this.contexts.delete(sequence.context);
    sequence.context.close();
  }

  private createContext(contextSize: number): EngineContext {
    const context = this.engine.createContext(contextSize);
    this.contexts.add(context);
    return context;
  }

  /** What sessions use of the model. */
  private readonly sessionHost: SessionHost = {
    createContext: (contextSize) => {
      this.assertUsable();
      return this.createContext(contextSize);
    },
    releaseContext: (context) => {
      context.close();
      this.contexts.delete(context);
    },
    renderChat: (messages, tools) => this.applyChatTemplate(messages, { tools }),
    renderChatText: (messages, tools) => renderChat(this.chat!, this.tokenizer, messages, { tools }),
    tokenizeTemplateText: (text) => this.tokenizer.tokenize(text, { special: true, addBos: false }),
    runOn: (sequence, promptIds, options, keepTokens) => {
      this.assertUsable();
      return this.runOn(sequence, promptIds, options, keepTokens);
    },
    fingerprint: () => (this.fingerprintPromise ??= modelFingerprint(this.desc)),
    kvCacheType: () => this.info.kvCache.type,
  };
}

/**
 * A hash of what determines the model's outputs: the configuration, every tensor's name, type and shape, and
 * samples of every tensor's bytes (its first and last 64), enough to tell two models of one shape apart.
 */
async function modelFingerprint(desc: ModelDescriptor): Promise<string> {
  const hash = createHash("sha256");
  hash.update(JSON.stringify(desc.config));
  const files = await Promise.all(desc.files.map((f) => fs.open(f, "r")));
  try {
    const sample = Buffer.alloc(64);
    for (const t of desc.tensors) {
      hash.update(`${t.name}:${t.type}:${t.shape.join("x")};`);
      for (const at of [t.offset, t.offset + Math.max(0, t.byteLength - sample.length)]) {
        const { bytesRead } = await files[t.file].read(sample, 0, Math.min(sample.length, t.byteLength), at);
        hash.update(sample.subarray(0, bytesRead));
      }
    }
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
  return hash.digest("hex");
}
