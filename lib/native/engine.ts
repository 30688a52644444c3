/**
 * The typed boundary to the native engine: turns a ModelDescriptor into the addon's spec, and native error
 * codes into the library's error classes. Nothing above this file sees the raw binding.
 */
import {
  ContextOverflowError,
  DeviceError,
  DisposedError,
  InvalidArgumentError,
  LlamaNapiError,
  ModelFormatError,
  UnsupportedModelError,
} from "../errors";
import type { ModelDescriptor } from "../formats/types";
import {
  loadBinding,
  NATIVE_TYPE_CODES,
  type NativeContext,
  type NativeCudaInfo,
  type NativeDecodeOptions,
  type NativeDevice,
  type NativeDecodeResult,
  type NativeModel,
} from "./binding";
import { ropeFrequencies } from "./rope";

/** Maps an error thrown by the addon (which carries a `code`) to the library's typed errors. */
export function toTypedError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof LlamaNapiError) return err;
  const code = (err as Error & { code?: string }).code;
  switch (code) {
    case "MODEL_FORMAT":
      return new ModelFormatError(err.message, { cause: err });
    case "UNSUPPORTED_MODEL":
      return new UnsupportedModelError(err.message, { cause: err });
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(err.message, { cause: err });
    case "DISPOSED":
      return new DisposedError(err.message, { cause: err });
    case "DEVICE_ERROR":
      return new DeviceError(err.message, { cause: err });
    case "CONTEXT_OVERFLOW": {
      const [tokens, size] = (err.message.match(/\d+/g) ?? []).slice(-2).map(Number);
      return new ContextOverflowError(err.message, tokens ?? NaN, size ?? NaN);
    }
    default:
      // CONTEXT_BUSY, SYSTEM_ERROR (allocation failures): still a library error, with the engine's message.
      return code ? new LlamaNapiError(err.message, { cause: err }) : err;
  }
}

function rethrowTyped(err: unknown): never {
  throw toTypedError(err);
}

export function physicalCores(): number {
  return loadBinding().physicalCores();
}

export function cpuFeatures(): string {
  return loadBinding().cpuFeatures();
}

/** Whether the addon has the CUDA backend and how many GPUs it can use. */
export function cudaInfo(): NativeCudaInfo {
  return loadBinding().cudaInfo();
}

/** Runs a native call, turning a synchronous throw or a rejection into the library's typed errors. */
function typed<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call().catch(rethrowTyped);
  } catch (err) {
    return Promise.reject(toTypedError(err));
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
  constructor(readonly native: NativeContext) {}

  get contextSize(): number {
    return this.native.contextSize;
  }

  decode(tokens: readonly number[] | Int32Array, pos: number, options?: NativeDecodeOptions): Promise<NativeDecodeResult> {
    return this.track(typed(() => this.native.decode(toInt32(tokens), pos, options)));
  }

  /** The engine's own greedy loop (see NativeContext.greedy): the baseline the JavaScript loop is measured against. */
  greedy(tokens: readonly number[] | Int32Array, pos: number, n: number): Promise<Int32Array> {
    return this.track(typed(() => this.native.greedy(toInt32(tokens), pos, n)));
  }

  /** Makes this cache's first nPositions a copy of source's. */
  copyFrom(source: EngineContext, nPositions: number): void {
    typedSync(() => this.native.copyFrom(source.native, nPositions));
  }

  readState(nPositions: number): Uint8Array {
    return new Uint8Array(typedSync(() => this.native.readState(nPositions)));
  }

  writeState(nPositions: number, state: Uint8Array): void {
    typedSync(() => this.native.writeState(nPositions, state));
  }

  /** @internal Records a native call on this context so that settled() can wait for it. */
  track<T>(result: Promise<T>): Promise<T> {
    this.inFlight = result.catch(() => {});
    return result;
  }

  /** Resolves once no decode is running on this context. */
  settled(): Promise<unknown> {
    return this.inFlight;
  }

  close(): void {
    this.native.close();
  }
}

function toInt32(tokens: readonly number[] | Int32Array): Int32Array {
  return tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
}

/** One sequence of Engine.decodeBatch. */
export interface BatchEntry extends NativeDecodeOptions {
  context: EngineContext;
  tokens: Int32Array;
  pos: number;
}

export class Engine {
  private constructor(private readonly native: NativeModel) {}

  /** Opens the weights on the CPU, or uploads them to a CUDA GPU (`device.kind` "cuda"). */
  static open(desc: ModelDescriptor, threads: number, device: { kind: "cpu" | "cuda"; gpu?: number } = { kind: "cpu" }): Engine {
    const { config } = desc;
    try {
      const native = new (loadBinding().Model)({
        files: desc.files,
        tensors: desc.tensors.map((t) => ({
          name: t.name,
          file: t.file,
          offset: t.offset,
          type: NATIVE_TYPE_CODES[t.type],
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
      });
      return new Engine(native);
    } catch (err) {
      rethrowTyped(err);
    }
  }

  /** Every entry's sequence in one forward pass; results in the same order. */
  decodeBatch(entries: readonly BatchEntry[]): Promise<NativeDecodeResult[]> {
    const result = typed(() =>
      this.native.decodeBatch(
        entries.map((e) => ({ context: e.context.native, tokens: e.tokens, pos: e.pos, logits: e.logits, topK: e.topK })),
      ),
    );
    for (const e of entries) e.context.track(result);
    return result;
  }

  /** Where the weights live and the forward passes run. */
  get device(): NativeDevice {
    return this.native.device;
  }

  createContext(contextSize: number): EngineContext {
    try {
      return new EngineContext(this.native.createContext(contextSize));
    } catch (err) {
      rethrowTyped(err);
    }
  }

  close(): void {
    this.native.close();
  }
}
