/**
 * The public model object: loads any supported format, owns the engine, the tokenizer and a pool of contexts
 * (KV caches), and offers evaluate / generate / complete.
 */
import { applyChatTemplate, type ChatMessage, type ChatPrompt, type ChatTemplate, type ChatTemplateOptions, loadChatTemplate } from "./chat";
import { ContextOverflowError, DisposedError, InvalidArgumentError, UnsupportedModelError } from "./errors";
import { parseModel } from "./formats/detect";
import type { ModelConfig, ModelDescriptor, ModelFormat, TensorType } from "./formats/types";
import { runGeneration } from "./generation/generate";
import type { Completion, GeneratedToken, GenerateOptions, Prompt } from "./generation/types";
import { Engine, type EngineContext, physicalCores } from "./native/engine";
import { resolveSampling, Sampler } from "./sampling/sampler";
import { loadTokenizer } from "./tokenizer";
import type { TokenizeOptions, Tokenizer } from "./tokenizer/types";

export interface LoadProgress {
  stage: "parse" | "tokenizer" | "weights" | "ready";
  /** 0..1 over the whole load. */
  progress: number;
}

export interface LoadModelOptions {
  /** Worker threads for the matrix work. Default: the number of physical cores. */
  threads?: number;
  /** Tokens the KV cache holds. Default: the model's context length, at most 4096. */
  contextSize?: number;
  /** A tokenizer file, for formats that keep it apart (llama2.c tokenizer.bin, tokenizer.model). */
  tokenizer?: string;
  onProgress?: (progress: LoadProgress) => void;
}

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
};

const DEFAULT_MAX_CONTEXT = 4096;

function checkPositiveInteger(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== "number" || !Number.isInteger(value) || value < 1)) {
    throw new InvalidArgumentError(`${name} must be a positive integer (got ${String(value)})`);
  }
}

export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LlamaModel> {
  if (typeof path !== "string" || path.length === 0) {
    throw new InvalidArgumentError(`loadModel: path must be a non-empty string (got ${String(path)})`);
  }
  checkPositiveInteger("threads", options.threads);
  checkPositiveInteger("contextSize", options.contextSize);
  const report = options.onProgress ?? (() => {});

  report({ stage: "parse", progress: 0 });
  const desc = await parseModel(path, { tokenizer: options.tokenizer });
  report({ stage: "tokenizer", progress: 0.3 });
  if (!desc.tokenizer) {
    throw new InvalidArgumentError(
      `no tokenizer found for ${path}: pass { tokenizer: "path/to/tokenizer" } (llama2.c tokenizer.bin, tokenizer.model or tokenizer.json)`,
    );
  }
  const tokenizer = await loadTokenizer(desc.tokenizer);
  if (tokenizer.vocabSize > desc.config.vocabSize) {
    throw new InvalidArgumentError(
      `the tokenizer has ${tokenizer.vocabSize} tokens but the model ${path} only ${desc.config.vocabSize}`,
    );
  }
  const chatTemplate = loadChatTemplate(desc, tokenizer);
  report({ stage: "weights", progress: 0.6 });
  const threads = options.threads ?? physicalCores();
  const engine = Engine.open(desc, threads);
  const contextSize = options.contextSize ?? Math.min(desc.config.contextLength, DEFAULT_MAX_CONTEXT);
  report({ stage: "ready", progress: 1 });
  return new LlamaModel(desc, tokenizer, engine, contextSize, threads, chatTemplate);
}

export class LlamaModel implements AsyncDisposable {
  readonly info: ModelInfo;
  /** The chat template (Jinja) the model's files carry; undefined when they carry none (a built-in one is used). */
  readonly chatTemplate: string | undefined;
  /** Contexts not in use; `contexts` holds every context ever created (idle or not), for dispose. */
  private readonly idleContexts: EngineContext[] = [];
  private readonly contexts = new Set<EngineContext>();
  private readonly stopIds: ReadonlySet<number>;
  private disposed = false;

  /** @internal Use loadModel(). */
  constructor(
    desc: ModelDescriptor,
    private readonly tokenizer: Tokenizer,
    private readonly engine: Engine,
    contextSize: number,
    threads: number,
    private readonly chat: ChatTemplate | undefined,
  ) {
    this.chatTemplate = chat?.builtin ? undefined : chat?.text;
    const { architecture, vocabSize, contextLength, dim, hiddenDim, layers, heads, kvHeads, headDim, ropeTheta, ropeScaling, tiedEmbeddings } =
      desc.config;
    const eosIds = [...new Set([...desc.eosIds, ...tokenizer.eosIds])];
    this.stopIds = new Set(eosIds);
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
    };
  }

  tokenize(text: string, options?: TokenizeOptions): number[] {
    this.assertUsable();
    if (typeof text !== "string") throw new InvalidArgumentError(`tokenize: text must be a string`);
    return this.tokenizer.tokenize(text, options);
  }

  /**
   * Renders a conversation with the model's chat template (or the built-in Llama 2 / Llama 3 one) and tokenizes it.
   * The result is a prompt: `model.generate(model.applyChatTemplate(messages))`.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): ChatPrompt {
    this.assertUsable();
    if (!this.chat) throw new UnsupportedModelError("this model carries no chat template, and no built-in one fits its tokenizer");
    return applyChatTemplate(this.chat, this.tokenizer, messages, options);
  }

  detokenize(ids: readonly number[]): string {
    this.assertUsable();
    this.checkTokenIds(ids, "detokenize");
    return this.tokenizer.detokenize([...ids]);
  }

  /** The logits of the last position after running `ids` from position 0 on a fresh context. */
  async evaluate(ids: readonly number[]): Promise<Float32Array> {
    this.assertUsable();
    const promptIds = this.promptIds({ tokens: [...ids] });
    return this.withContext(async (ctx) => (await ctx.decode(promptIds, 0, { logits: "last" })).logits!);
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
    const context = this.acquireContext();
    try {
      for (let first = 0; first < ids.length; first += batchSize) {
        const count = Math.min(batchSize, ids.length - first);
        const { logits } = await context.decode(ids.subarray(first, first + count), first, { logits: "all" });
        yield { first, count, logits: logits! };
      }
    } finally {
      this.releaseContext(context);
    }
  }

  /** Streams generated tokens; breaking out of the loop stops the native work after the current step. */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, Completion> {
    this.assertUsable();
    const promptIds = this.promptIds(prompt);
    const sampler = new Sampler(resolveSampling(options, this.info.vocabSize), this.info.vocabSize);
    checkPositiveInteger("maxTokens", options.maxTokens);
    const context = this.acquireContext();
    try {
      return yield* runGeneration({
        context,
        tokenizer: this.tokenizer,
        promptIds,
        sampler,
        maxTokens: options.maxTokens ?? Infinity,
        stopIds: options.ignoreEos ? new Set() : this.stopIds,
        signal: options.signal,
        assertUsable: () => this.assertUsable(),
      });
    } finally {
      this.releaseContext(context);
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
   * Waits for the native step in flight (if any), then frees the KV caches and unmaps the weights. A generation
   * still being iterated ends with a DisposedError at its next step.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.all([...this.contexts].map((ctx) => ctx.settled()));
    for (const ctx of this.contexts) ctx.close();
    this.contexts.clear();
    this.idleContexts.length = 0;
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

  private promptIds(prompt: Prompt): number[] {
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
    if (ids.length > this.info.contextSize) {
      throw new ContextOverflowError(
        `the prompt has ${ids.length} tokens but the context holds ${this.info.contextSize}`,
        ids.length,
        this.info.contextSize,
      );
    }
    return ids;
  }

  private acquireContext(): EngineContext {
    const idle = this.idleContexts.pop();
    if (idle) return idle;
    const ctx = this.engine.createContext(this.info.contextSize);
    this.contexts.add(ctx);
    return ctx;
  }

  private releaseContext(ctx: EngineContext): void {
    if (!this.disposed) this.idleContexts.push(ctx);
  }

  private async withContext<T>(fn: (ctx: EngineContext) => Promise<T>): Promise<T> {
    const ctx = this.acquireContext();
    try {
      return await fn(ctx);
    } finally {
      this.releaseContext(ctx);
    }
  }
}
