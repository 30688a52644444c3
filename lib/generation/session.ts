/**
 * Chat sessions: a conversation that keeps its KV cache between turns. Each turn renders the whole conversation
 * with the chat template and evaluates only the tokens the cache does not already hold (the new user message and
 * the headers around it), so a turn costs its own length, not the conversation's.
 */
import { checkTools, parseToolCalls } from "../chat/tools";
import type { ChatMessage, ChatPrompt, ToolCall, ToolDefinition } from "../chat/types";
import { InvalidArgumentError, LlamaNapiError } from "../errors";
import type { KvCacheType } from "../native/binding";
import type { EngineContext } from "../native/engine";
import { commonPrefixLength, type Sequence } from "./generate";
import { readSessionFile, writeSessionFile } from "./session-file";
import type { Completion, ContextOverflowPolicy, GeneratedToken, GenerateOptions } from "./types";

export interface SessionOptions {
  /** The system message that opens the conversation. */
  systemPrompt?: string;
  /** Tokens this session's KV cache holds. Default: the model's context size. */
  contextSize?: number;
  /** A file written by session.save(): the conversation and its KV cache come back as they were. */
  restore?: string;
  /** Default for every prompt of the session (see GenerateOptions.contextOverflow). Default "error". */
  contextOverflow?: ContextOverflowPolicy;
}

/** What a session needs from its model (implemented by LlamaModel). */
export interface SessionHost {
  createContext(contextSize: number): EngineContext;
  releaseContext(context: EngineContext): void;
  /** The conversation (and the tools offered) rendered with the chat template, ending with the assistant's header, and tokenized. */
  renderChat(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[]): ChatPrompt;
  /** The same text without tokenizing it. */
  renderChatText(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[]): string;
  /** Tokenizes a piece of rendered template text (special-token strings parsed, no BOS added). */
  tokenizeTemplateText(text: string): number[];
  runOn(sequence: Sequence, promptIds: number[], options: GenerateOptions, keepTokens: number): AsyncGenerator<GeneratedToken, Completion>;
  /** Identifies the weights, so that a saved cache is only ever restored into the model that computed it. */
  fingerprint(): Promise<string>;
  /** The type of the model's KV rows: what a saved state holds. */
  kvCacheType(): KvCacheType;
}

/** Stands for a reply's content when rendering, to find where the template puts it. */
const REPLY_MARKER = "\u{E000}llama-napi reply\u{E001}";

/** The last turn, as the tokens it actually ran: its prompt and the reply's tokens as generated. */
export interface LastTurn {
  /** The conversation up to and including the turn's user message. */
  messages: ChatMessage[];
  promptTokens: number[];
  replyTokens: number[];
  /** False when the reply is not rendered as exactly its tokens' text (a stop string cut it, or it was tool calls). */
  replyIsWhole: boolean;
  /** The tools the turn offered, rendered in its prompt. */
  tools?: ToolDefinition[];
}

/** A turn's options: generation's, and the tools the model may call in its reply. */
export interface PromptOptions extends GenerateOptions {
  /** Tools the model may call: a reply that is calls ends the turn with completion.toolCalls (see ChatSession.prompt). */
  tools?: readonly ToolDefinition[];
}

/** A turn's result: with tools, the calls the reply made (answer them with submitToolResults). */
export interface TurnCompletion extends Completion {
  toolCalls?: ToolCall[];
}

/** A tool's result for submitToolResults. */
export interface ToolResult {
  /** The id of the call it answers (ToolCall.id). */
  toolCallId: string;
  content: string;
}

/** A JavaScript function the model may call through promptWithTools. */
export interface ToolFunction extends Omit<ToolDefinition, "name"> {
  /** Runs the call with its parsed arguments; the result goes back to the model (a string as it is, else as JSON). */
  handler: (args: Record<string, unknown>) => unknown;
}

/**
 * A turn in progress: iterate it for the tokens as they come, or await it for the whole completion (with the tool
 * calls of a reply that made some).
 */
export class GenerationStream implements AsyncIterable<GeneratedToken>, PromiseLike<TurnCompletion> {
  private iterated = false;
  private result: Promise<TurnCompletion> | undefined;

  constructor(private readonly tokens: AsyncGenerator<GeneratedToken, TurnCompletion>) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<GeneratedToken, TurnCompletion> {
    this.claim();
    return yield* this.tokens;
  }

  then<A = TurnCompletion, B = never>(
    onFulfilled?: ((value: TurnCompletion) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    if (!this.result) {
      this.claim();
      this.result = (async () => {
        for (;;) {
          const step = await this.tokens.next();
          if (step.done) return step.value;
        }
      })();
    }
    return this.result.then(onFulfilled, onRejected);
  }

  private claim(): void {
    if (this.iterated) throw new InvalidArgumentError("a generation stream can be consumed once: iterate it or await it");
    this.iterated = true;
  }
}

export class ChatSession {
  private readonly messages: ChatMessage[] = [];
  private busy = false;
  private disposed = false;
  private lastTurn: LastTurn | undefined;
  /** Leading tokens that truncate-middle keeps: the rendered system prompt (BOS alone without one). */
  private keepTokens: number | undefined;

  /** @internal Use model.createSession(). */
  constructor(
    private readonly host: SessionHost,
    private readonly sequence: Sequence,
    readonly systemPrompt: string | undefined,
    private readonly overflow: ContextOverflowPolicy,
  ) {}

  /** @internal */
  static async open(host: SessionHost, options: SessionOptions, defaultContextSize: number): Promise<ChatSession> {
    const overflow = options.contextOverflow ?? "error";
    if (overflow !== "error" && overflow !== "truncate-middle") {
      throw new InvalidArgumentError(`contextOverflow must be "error" or "truncate-middle" (got ${String(overflow)})`);
    }
    if (options.systemPrompt !== undefined && typeof options.systemPrompt !== "string") {
      throw new InvalidArgumentError("systemPrompt must be a string");
    }
    if (options.restore === undefined) {
      const context = host.createContext(options.contextSize ?? defaultContextSize);
      return new ChatSession(host, { context, tokens: [] }, options.systemPrompt, overflow);
    }
    const { header, state } = await readSessionFile(options.restore);
    const fingerprint = await host.fingerprint();
    if (header.model !== fingerprint) {
      throw new InvalidArgumentError(
        `the session file ${options.restore} was saved with another model (its fingerprint ${header.model.slice(0, 16)}… ` +
          `is not this model's ${fingerprint.slice(0, 16)}…)`,
      );
    }
    const contextSize = options.contextSize ?? Math.max(header.contextSize, header.tokens.length);
    if (header.tokens.length > contextSize) {
      throw new InvalidArgumentError(`the saved session holds ${header.tokens.length} tokens, more than contextSize ${contextSize}`);
    }
    const context = host.createContext(contextSize);
    try {
      context.writeState(header.tokens.length, state, header.tokens, header.kvCacheType);
    } catch (err) {
      host.releaseContext(context);
      throw err;
    }
    const session = new ChatSession(host, { context, tokens: [...header.tokens] }, header.systemPrompt, overflow);
    session.messages.push(...header.history);
    session.lastTurn = header.lastTurn;
    return session;
  }

  /** The conversation so far (system prompt first when there is one). */
  get history(): readonly ChatMessage[] {
    const system: ChatMessage[] = this.systemPrompt !== undefined ? [{ role: "system", content: this.systemPrompt }] : [];
    return [...system, ...this.messages];
  }

  /** How many tokens the KV cache holds now. */
  get cachedTokens(): number {
    return this.sequence.tokens.length;
  }

  /** The tokens the KV cache holds now, in order. */
  get tokens(): readonly number[] {
    return [...this.sequence.tokens];
  }

  /**
   * One turn: the user's message, then the assistant's reply streamed. The reply (as far as it got, also when
   * aborted or stopped) joins the history.
   */
  prompt(text: string, options: PromptOptions = {}): GenerationStream {
    this.assertUsable();
    if (typeof text !== "string") throw new InvalidArgumentError("session.prompt: text must be a string");
    this.assertIdle("prompt");
    checkTools(options.tools, "session.prompt");
    return new GenerationStream(this.turn([{ role: "user", content: text }], options));
  }

  /**
   * Answers the tool calls of the last reply (completion.toolCalls): the results join the conversation and the
   * assistant replies to them, as a turn of its own.
   */
  submitToolResults(results: readonly ToolResult[], options: PromptOptions = {}): GenerationStream {
    this.assertIdle("submitToolResults");
    checkTools(options.tools, "session.submitToolResults");
    const asked = new Set(this.messages.at(-1)?.toolCalls?.map((call) => call.id) ?? []);
    if (!Array.isArray(results) || results.length === 0) throw new InvalidArgumentError("submitToolResults: results must be a non-empty array of { toolCallId, content }");
    for (const [i, r] of results.entries()) {
      if (typeof r !== "object" || r === null || typeof r.content !== "string" || !asked.has(r.toolCallId)) {
        throw new InvalidArgumentError(`submitToolResults: results[${i}] must be { toolCallId, content: string } answering a call of the last reply`);
      }
    }
    return new GenerationStream(this.turn(results.map((r) => ({ role: "tool", content: r.content, toolCallId: r.toolCallId })), options));
  }

  /**
   * A prompt whose tool calls are answered by JavaScript functions: each call runs its function's handler (a
   * handler that throws, or arguments that are not JSON, answer with {"error": message}), the results go back,
   * and so on until the model replies without calls, at most maxRounds times (then a LlamaNapiError).
   */
  async promptWithTools(
    text: string,
    functions: Readonly<Record<string, ToolFunction>>,
    options: Omit<PromptOptions, "tools"> & { maxRounds?: number } = {},
  ): Promise<TurnCompletion> {
    if (typeof functions !== "object" || functions === null) throw new InvalidArgumentError("promptWithTools: functions must be an object of { handler }");
    const { maxRounds = 8, ...generateOptions } = options;
    if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new InvalidArgumentError(`maxRounds must be a positive integer (got ${String(maxRounds)})`, { option: "maxRounds" });
    const tools = Object.entries(functions).map(([name, { description, parameters, handler }]) => {
      if (typeof handler !== "function") throw new InvalidArgumentError(`promptWithTools: functions.${name}.handler must be a function`);
      return { name, description, parameters };
    });
    let completion: TurnCompletion = await this.prompt(text, { ...generateOptions, tools });
    for (let round = 0; completion.toolCalls; round++) {
      if (round === maxRounds) throw new LlamaNapiError(`promptWithTools: the model still calls tools after ${maxRounds} rounds`);
      const results: ToolResult[] = [];
      for (const call of completion.toolCalls) results.push({ toolCallId: call.id, content: await runTool(functions[call.name], call) });
      completion = await this.submitToolResults(results, { ...generateOptions, tools });
    }
    return completion;
  }

  private async *turn(added: ChatMessage[], options: PromptOptions): AsyncGenerator<GeneratedToken, TurnCompletion> {
    this.assertIdle("prompt"); // another stream of this session may have started since this one was made
    this.busy = true;
    try {
      const { tools, ...generateOptions } = options;
      const offered = tools?.length ? [...tools] : undefined;
      const messages = [...this.history, ...added];
      const promptTokens = this.continuedPrompt(messages, added.length, offered) ?? this.host.renderChat(messages, offered).tokens;
      const completion: TurnCompletion = yield* this.host.runOn(
        this.sequence,
        promptTokens,
        { contextOverflow: this.overflow, ...generateOptions },
        this.keepLength(),
      );
      const toolCalls = offered && parseToolCalls(completion.text, offered);
      this.messages.push(...added, toolCalls ? { role: "assistant", content: "", toolCalls } : { role: "assistant", content: completion.text });
      this.lastTurn = {
        messages, promptTokens, replyTokens: completion.tokens, replyIsWhole: completion.stopString === undefined && !toolCalls, tools: offered,
      };
      if (toolCalls) completion.toolCalls = toolCalls;
      return completion;
    } finally {
      this.busy = false;
    }
  }

  /**
   * The prompt of a new turn as the last turn's tokens (its prompt, then the reply exactly as generated) followed
   * by the tokens of what the template writes after a reply: its closing and the new user message. Re-tokenizing
   * the rendered reply instead would not give back the generated tokens (templates trim replies, and text has
   * more than one tokenization), and the cache would be re-evaluated from the first difference. Undefined when the
   * template does not render the conversation as a continuation of the last prompt; then the whole conversation is
   * rendered and the cache reused up to where it agrees.
   */
  private continuedPrompt(messages: ChatMessage[], added: number, tools: ToolDefinition[] | undefined): number[] | undefined {
    const last = this.lastTurn;
    if (!last || !last.replyIsWhole || messages.length !== last.messages.length + 1 + added) return undefined;
    if (JSON.stringify(last.tools) !== JSON.stringify(tools)) return undefined;
    const previous = this.host.renderChatText(last.messages, tools);
    const marked = this.host.renderChatText([...last.messages, { role: "assistant", content: REPLY_MARKER }, ...messages.slice(-added)], tools);
    const at = marked.indexOf(REPLY_MARKER);
    const continues =
      marked.startsWith(previous) && at >= previous.length && marked.slice(previous.length, at).trim() === "" &&
      marked.indexOf(REPLY_MARKER, at + 1) < 0;
    if (!continues) return undefined;
    const after = this.host.tokenizeTemplateText(marked.slice(at + REPLY_MARKER.length));
    return [...last.promptTokens, ...last.replyTokens, ...after];
  }

  /** Forgets the conversation (the system prompt stays). */
  reset(): void {
    this.assertIdle("reset");
    this.messages.length = 0;
    this.sequence.tokens.length = 0;
    this.lastTurn = undefined;
  }

  /**
   * A new session with the same conversation, sharing the KV cache's blocks (each copies a shared block before
   * writing into it); the two then go their own ways.
   */
  fork(): ChatSession {
    this.assertIdle("fork");
    const context = this.host.createContext(this.sequence.context.contextSize);
    context.copyFrom(this.sequence.context, this.sequence.tokens.length);
    const copy = new ChatSession(this.host, { context, tokens: [...this.sequence.tokens] }, this.systemPrompt, this.overflow);
    copy.messages.push(...this.messages);
    copy.keepTokens = this.keepTokens;
    copy.lastTurn = this.lastTurn;
    return copy;
  }

  /** Writes the conversation and its KV cache to a file that createSession({ restore }) reads back. */
  async save(path: string): Promise<void> {
    this.assertIdle("save");
    const n = this.sequence.tokens.length;
    const state = this.sequence.context.readState(n);
    await writeSessionFile(
      path,
      {
        model: await this.host.fingerprint(),
        contextSize: this.sequence.context.contextSize,
        systemPrompt: this.systemPrompt,
        tokens: [...this.sequence.tokens],
        history: [...this.messages],
        lastTurn: this.lastTurn,
        kvCacheType: this.host.kvCacheType(),
        stateBytes: state.length,
      },
      state,
    );
  }

  /** Frees the session's KV cache. */
  dispose(): void {
    if (this.disposed) return;
    this.assertIdle("dispose");
    this.disposed = true;
    this.host.releaseContext(this.sequence.context);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * The system prompt's share of the rendered conversation: the tokens two conversations that differ only in
   * their first user message have in common.
   */
  private keepLength(): number {
    if (this.keepTokens === undefined) {
      const system: ChatMessage[] = this.systemPrompt !== undefined ? [{ role: "system", content: this.systemPrompt }] : [];
      const a = this.host.renderChat([...system, { role: "user", content: "a" }]).tokens;
      const b = this.host.renderChat([...system, { role: "user", content: "b" }]).tokens;
      this.keepTokens = commonPrefixLength(a, b);
    }
    return this.keepTokens;
  }

  private assertUsable(): void {
    if (this.disposed) throw new LlamaNapiError("this session was disposed");
  }

  private assertIdle(what: string): void {
    this.assertUsable();
    if (this.busy) throw new LlamaNapiError(`session.${what}: a prompt of this session is still running`);
  }
}

/** A call's result for the model: the handler's value (a string as it is, else JSON), or {"error": message}. */
async function runTool(fn: ToolFunction | undefined, call: ToolCall): Promise<string> {
  try {
    if (!fn) throw new Error(`no function named ${call.name}`);
    const result = await fn.handler(JSON.parse(call.arguments) as Record<string, unknown>);
    return typeof result === "string" ? result : JSON.stringify(result ?? null);
  } catch (err) {
    return JSON.stringify({ error: err instanceof Error ? err.message : String(err) });
  }
}
