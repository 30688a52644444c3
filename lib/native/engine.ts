/**
 * The typed boundary to the native engine: turns a ModelDescriptor into the addon's spec, and native error
 * codes into the library's error classes. Nothing above this file sees the raw binding.
 */
import {
  ContextOverflowError,
  CustomOpDeviceError,
  CustomOpError,
  DeviceError,
  DisposedError,
  InvalidArgumentError,
  LlamaNapiError,
  ModelFormatError,
  NumericalError,
  OutOfMemoryError,
  UnsupportedModelError,
} from "../errors";
import type { ModelDescriptor } from "../formats/types";
import {
  gpuPresent,
  loadBinding,
  loadedBinary,
  nativeTypeCode,
  type NativeContext,
  type NativeCudaInfo,
  type NativeDecodeOptions,
  type KvCacheType,
  type NativeDevice,
  type NativeKvCacheInfo,
  type NativeKvCacheUsage,
  type NativeDecodeResult,
  type NativeLimits,
  type NativeModel,
} from "./binding";
import { EngineDecodeLoop } from "./decode-loop";
import { ropeFrequencies } from "./rope";

/**
 * What the addon puts on the errors it throws (native/addon/binding.h): a `code`, and the numbers of the failure as
 * properties, set where they apply.
 */
interface NativeError extends Error {
  code?: string;
  /** INVALID_ARGUMENT: the argument at fault. */
  option?: string;
  /** CONTEXT_OVERFLOW: the positions needed, and those the context holds. */
  tokens?: number;
  contextSize?: number;
  /** OUT_OF_MEMORY: the bytes the allocation needed. */
  bytes?: number;
  /** CUSTOM_OP, or DEVICE_ERROR for a missing CUDA launcher: the library, and the symbol at fault (none when the file itself is). */
  library?: string;
  symbol?: string;
}

/**
 * Maps an error thrown by the addon (which carries a `code`) to the library's typed errors; `modelPath` names the
 * model in errors about its numbers (non-finite logits).
 */
export function toTypedError(err: unknown, modelPath = "the model"): unknown {
  if (!(err instanceof Error) || err instanceof LlamaNapiError) return err;
  const { code, option, tokens, contextSize, bytes, library, symbol } = err as NativeError;
  switch (code) {
    case "MODEL_FORMAT":
      return new ModelFormatError(err.message, { cause: err });
    case "UNSUPPORTED_MODEL":
      return new UnsupportedModelError(err.message, { cause: err });
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(err.message, { cause: err, option });
    case "DISPOSED":
      return new DisposedError(err.message, { cause: err });
    case "DEVICE_ERROR":
      if (symbol !== undefined) return new CustomOpDeviceError(err.message, library ?? "", symbol, { cause: err });
      return new DeviceError(err.message, { cause: err });
    case "OUT_OF_MEMORY":
      return new OutOfMemoryError(err.message, bytes ?? NaN, undefined, { cause: err });
    case "NUMERICAL":
      return new NumericalError(`${modelPath}: ${err.message}`, modelPath, undefined, undefined, { cause: err });
    case "CONTEXT_OVERFLOW":
      return new ContextOverflowError(err.message, tokens ?? NaN, contextSize ?? NaN);
    case "CUSTOM_OP":
      return new CustomOpError(err.message, library ?? "", symbol, { cause: err });
    default:
      // CONTEXT_BUSY, SYSTEM_ERROR (allocation failures): still a library error, with the engine's message.
      return code ? new LlamaNapiError(err.message, { cause: err }) : err;
  }
}

function rethrowTyped(err: unknown, modelPath?: string): never {
  throw toTypedError(err, modelPath);
}

/** The engine's code for `type` (`what` names the tensor or argument it is for in the error). */
export function engineTypeCode(type: string, what: string): number {
  const code = nativeTypeCode(type);
  if (code === undefined) {
    throw new UnsupportedModelError(`${what} has type ${type}, which this build of the native addon does not compute with; rebuild it (npm run build:native)`);
  }
  return code;
}

export function physicalCores(): number {
  return loadBinding().physicalCores();
}

export function cpuFeatures(): string {
  return loadBinding().cpuFeatures();
}

const NO_DRIVER_REASON = "no NVIDIA driver is installed or loaded on this machine (neither /dev/nvidiactl nor /proc/driver/nvidia exists)";

/**
 * Whether the addon has the CUDA backend and how many GPUs it can use. With none, the reason says what went wrong in
 * place of the addon's own (the CPU binary's would only say it has no CUDA, and the CUDA runtime reports a missing
 * driver as "driver version is insufficient", as it does a driver too old): the CUDA binary's failed check when it
 * was passed over, and that no NVIDIA driver is present when none is.
 */
export function cudaInfo(): NativeCudaInfo {
  const info = loadBinding().cudaInfo();
  if (info.devices > 0) return info;
  const reasons = [loadedBinary().cudaFailure, gpuPresent() ? undefined : NO_DRIVER_REASON].filter((r) => r !== undefined);
  return reasons.length > 0 ? { ...info, reason: reasons.join("; ") } : info;
}

/**
 * Reads every byte of the model's tensor data once (in file order, contiguous tensors merged into one range) into the
 * page cache that the engine maps the weights from, reporting the bytes read so far: strictly rising, the last
 * report at the total. This is the disk work the first forward pass or the GPU upload would otherwise do unseen.
 */
export async function readWeights(desc: ModelDescriptor, onProgress: (loadedBytes: number, totalBytes: number) => void): Promise<void> {
  const ranges: { file: number; offset: number; length: number }[] = [];
  const sorted = [...desc.tensors].sort((a, b) => a.file - b.file || a.offset - b.offset);
  for (const t of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && last.file === t.file && t.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, t.offset + t.byteLength - last.offset);
    } else {
      ranges.push({ file: t.file, offset: t.offset, length: t.byteLength });
    }
  }
  const total = ranges.reduce((n, r) => n + r.length, 0);
  let reported = 0;
  onProgress(0, total);
  const report = (bytes: number) => {
    if (bytes > reported) onProgress((reported = bytes), total);
  };
  await typed(() => loadBinding().pageIn(desc.files, ranges, report));
  report(total); // the worker's last count may be coalesced away
}

/** Runs a native call, turning a synchronous throw or a rejection into the library's typed errors. */
function typed<T>(call: () => Promise<T>, modelPath?: string): Promise<T> {
  try {
    return call().catch((err) => rethrowTyped(err, modelPath));
  } catch (err) {
    return Promise.reject(toTypedError(err, modelPath));
  }
}

function typedSync<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    rethrowTyped(err);
  }
}

/** A KV cache of one sequence. */
export class EngineContext {
  private inFlight: Promise<unknown> = Promise.resolve();

  /** @internal */
  constructor(
    readonly native: NativeContext,
    private readonly modelPath: string,
  ) {}

  get contextSize(): number {
    return this.native.contextSize;
  }

  decode(tokens: readonly number[] | Int32Array, pos: number, options?: NativeDecodeOptions): Promise<NativeDecodeResult> {
    return this.track(typed(() => this.native.decode(toInt32(tokens), pos, options), this.modelPath));
  }

  /** The engine's own greedy loop (see NativeContext.greedy): the baseline the JavaScript loop is measured against. */
  greedy(tokens: readonly number[] | Int32Array, pos: number, n: number): Promise<Int32Array> {
    return this.track(typed(() => this.native.greedy(toInt32(tokens), pos, n), this.modelPath));
  }

  /** Makes this cache's first nPositions source's, sharing its blocks copy-on-write. */
  copyFrom(source: EngineContext, nPositions: number): void {
    typedSync(() => this.native.copyFrom(source.native, nPositions));
  }

  /** The positions of `tokens` the cache now holds without evaluating them (NativeContext.adoptPrefix). */
  adoptPrefix(tokens: readonly number[] | Int32Array): number {
    return typedSync(() => this.native.adoptPrefix(toInt32(tokens)));
  }

  readState(nPositions: number, type?: KvCacheType): Uint8Array {
    return new Uint8Array(typedSync(() => this.native.readState(nPositions, type)));
  }

  writeState(nPositions: number, state: Uint8Array, tokens: readonly number[] | Int32Array, type?: KvCacheType): void {
    typedSync(() => this.native.writeState(nPositions, state, toInt32(tokens), type));
  }

  /** @internal Records a native call or decode loop request on this context so that settled() can wait for it. */
  track<T>(result: Promise<T>): Promise<T> {
    this.inFlight = result.catch(() => {});
    return result;
  }

  /** Resolves once no decode or decode loop request uses this context. */
  async settled(): Promise<void> {
    await this.inFlight;
  }

  close(): void {
    this.native.close();
  }
}

export function toInt32(tokens: readonly number[] | Int32Array): Int32Array {
  return tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
}

/** One sequence of Engine.decodeBatch. */
export interface BatchEntry extends NativeDecodeOptions {
  context: EngineContext;
  tokens: Int32Array;
  pos: number;
}

/** Where checkTensors found the first NaN or infinity. */
export interface TensorFault {
  /** The tensor's name. */
  tensor: string;
  /** The element (f32, f16, bf16) or block (quantized types) holding it. */
  index: number;
  /** True: a quantized block's scale (or min) is not finite. */
  inScale: boolean;
}

export class Engine {
  private loop: EngineDecodeLoop | undefined;

  private constructor(
    private readonly native: NativeModel,
    private readonly desc: ModelDescriptor,
    /** The model as the caller named it, for errors about its numbers. */
    readonly modelPath: string,
    private readonly customOpsLibrary: string | undefined,
  ) {}

  /**
   * Opens the weights on the CPU, or uploads them to a CUDA GPU (`device.kind` "cuda"), and allocates the KV pool
   * there (`kvCache`: its row type and positions; an OutOfMemoryError when it does not fit). `customOps`: a library
   * whose functions replace the named ops (a CustomOpError, or CustomOpDeviceError on the GPU, when it cannot).
   */
  static open(
    desc: ModelDescriptor,
    modelPath: string,
    threads: number,
    device: { kind: "cpu" | "cuda"; gpu?: number } = { kind: "cpu" },
    kvCache: { type?: KvCacheType; tokens?: number } = {},
    customOps?: { path: string; ops: string[] },
  ): Engine {
    const { config } = desc;
    try {
      const native = new (loadBinding().Model)({
        files: desc.files,
        tensors: desc.tensors.map((t) => ({
          name: t.name,
          file: t.file,
          offset: t.offset,
          type: engineTypeCode(t.type, `tensor ${t.name}`),
          shape: t.shape,
        })),
        config: {
          dim: config.dim,
          hiddenDim: config.hiddenDim,
          layers: config.layers,
          heads: config.heads,
          kvHeads: config.kvHeads,
          headDim: config.headDim,
          vocabSize: config.vocabSize,
          normEps: config.normEps,
          ropeInterleaved: config.ropeLayout === "interleaved",
          ropeFreqs: ropeFrequencies(config),
        },
        threads,
        device: device.kind,
        gpu: device.gpu ?? 0,
        kvCacheType: kvCache.type,
        kvCacheTokens: kvCache.tokens,
        customOps,
      });
      return new Engine(native, desc, modelPath, customOps?.path);
    } catch (err) {
      rethrowTyped(err);
    }
  }

  /** Every entry's sequence in one forward pass; results in the same order. */
  decodeBatch(entries: readonly BatchEntry[]): Promise<NativeDecodeResult[]> {
    const result = typed(() =>
      this.native.decodeBatch(
        entries.map((e) => ({
          context: e.context.native,
          tokens: e.tokens,
          pos: e.pos,
          logits: e.logits,
          topK: e.topK,
        })),
      ),
      this.modelPath,
    );
    for (const e of entries) e.context.track(result);
    return result;
  }

  /** The model's decode loop: generations run in it, sampled natively (its thread starts with the first request). */
  get decodeLoop(): EngineDecodeLoop {
    return (this.loop ??= new EngineDecodeLoop(this.native, this.modelPath));
  }

  /** Where the weights live and the forward passes run. */
  get device(): NativeDevice {
    return this.native.device;
  }

  /** The custom op library this model's passes call, and the ops it provides; undefined when all are built in. */
  get customOps(): { library: string; ops: string[] } | undefined {
    const ops = this.native.customOps;
    return this.customOpsLibrary !== undefined && ops.length > 0 ? { library: this.customOpsLibrary, ops } : undefined;
  }

  /** The engine's limits for this model on its device (the pass size the scheduler slices prompts to). */
  get limits(): NativeLimits {
    return this.native.limits;
  }

  /** The KV pool: its row type, block size, positions and bytes per position. */
  get kvCache(): NativeKvCacheInfo {
    return this.native.kvCache;
  }

  /** See NativeModel.repackedBytes. */
  get repackedBytes(): number {
    return this.native.repackedBytes;
  }

  /** The KV pool's blocks now: used by sequences, cached (adoptable prefixes), free. */
  kvCacheUsage(): NativeKvCacheUsage {
    return typedSync(() => this.native.kvCacheUsage());
  }

  createContext(contextSize: number): EngineContext {
    try {
      return new EngineContext(this.native.createContext(contextSize), this.modelPath);
    } catch (err) {
      rethrowTyped(err, this.modelPath);
    }
  }

  /** Scans every tensor's stored values (all of the model's files) for NaN and infinity; the first one, or undefined. */
  async checkTensors(): Promise<TensorFault | undefined> {
    const fault = await typed(() => this.native.checkTensors(), this.modelPath);
    return fault ? { tensor: this.desc.tensors[fault.tensor].name, index: fault.index, inScale: fault.inScale } : undefined;
  }

  /** Ends the decode loop's requests (finish "abort") and stops its thread; resolves once their ends arrived. */
  async closeDecodeLoop(): Promise<void> {
    await this.loop?.close();
  }

  close(): void {
    this.native.close();
  }
}
